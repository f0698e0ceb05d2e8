/**
 * Worker thread body: runs the uncompressed side of layer hashing (gunzip, diff_id, tarsum) so the
 * event loop only does the two sha256 over the raw bytes. Messages:
 *   in:  {type:'start', kind, extra} · {type:'chunk', buf} · {type:'end'}
 *   out: {type:'ack', bytes} · {type:'result', result}
 */
import { parentPort } from 'node:worker_threads';
import { createInlineInner, type Compression, type Inner, type InnerOptions } from './inner.js';

type In =
  | { type: 'start'; kind: Compression; extra: Uint8Array; opts?: InnerOptions }
  | { type: 'chunk'; buf: ArrayBuffer }
  | { type: 'end' };

let inner: Inner | undefined;
parentPort!.on('message', (m: In) => {
  if (m.type === 'start') {
    inner = createInlineInner(m.kind, Buffer.from(m.extra), m.opts);
  } else if (m.type === 'chunk') {
    const buf = Buffer.from(m.buf);
    inner!.write(buf, () => parentPort!.postMessage({ type: 'ack', bytes: buf.length }));
  } else if (m.type === 'end') {
    void inner!.end().then((result) => {
      inner = undefined;
      parentPort!.postMessage({ type: 'result', result });
    });
  }
});
