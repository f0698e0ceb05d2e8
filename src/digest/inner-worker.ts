/**
 * Worker thread body: runs the uncompressed side of layer hashing (gunzip, diff_id, tarsum) so the
 * event loop only does the two sha256 over the raw bytes. Messages:
 *   in:  {type:'start', kind, extra, opts} · {type:'chunk', buf, len} · {type:'end'}
 *   out: {type:'ack', buf} (the slab handed back, transferred) · {type:'result', result}
 * Slabs come in transferred (no copy) and go back transferred once zlib has read them, so an upload
 * moves through a fixed set of buffers: nothing is allocated per chunk on either side.
 */
import { parentPort } from 'node:worker_threads';
import { GUNZIP_IN, createInlineInner, type Compression, type Inner, type InnerOptions } from './inner.js';

type In = { type: 'start'; kind: Compression; extra: Uint8Array; opts: InnerOptions } | { type: 'chunk'; buf: ArrayBuffer; len: number } | { type: 'end' };

let inner: Inner | undefined;
parentPort!.on('message', (m: In) => {
  if (m.type === 'start') {
    inner = createInlineInner(m.kind, Buffer.from(m.extra), m.opts);
  } else if (m.type === 'chunk') {
    const buf = m.buf;
    const back = (): void => parentPort!.postMessage({ type: 'ack', buf }, [buf]);
    if (m.len >= GUNZIP_IN) {
      inner!.write(Buffer.from(buf, 0, m.len), back);
    } else {
      // A short last slab may be gathered and kept past `done`: give it a copy of its own.
      inner!.write(Buffer.from(new Uint8Array(buf, 0, m.len)), back);
    }
  } else if (m.type === 'end') {
    void inner!.end().then((result) => {
      inner = undefined;
      parentPort!.postMessage({ type: 'result', result });
    });
  }
});
