/**
 * Worker thread body of LayerFiles (layer-files.ts): copies a layer file to a new file while
 * computing every digest of it (LayerHasher's, in this thread), for the importer. Messages:
 *   in:  {id, job: LayerFileJob}
 *   out: {id, ok: true, digests} · {id, ok: false, error: {kind, message, code?}}
 * Several jobs run at once. Each moves through a few buffers of its own, reused: a buffer is read
 * into (thread pool), hashed here, then written (thread pool) and inflated (zlib, thread pool) at
 * the same time, and taken again once both are done with it. Nothing is allocated per chunk, and
 * the bytes hashed are the bytes written.
 */
import { close, constants, fstat, open, read, type Stats, write } from 'node:fs';
import { parentPort } from 'node:worker_threads';
import { createInlineInner, GUNZIP_IN, type Inner, type InnerResult } from './inner.js';
import { layerDigests, sniffCompression } from './layer-hasher.js';
import { createSha256, updateBoth } from './sha256.js';
import type { LayerFileFailure, LayerFileJob } from './layer-files.js';
import { alignedBufferOf, closeDirectFd, directTwin, refuseDirect } from '../storage/direct-io.js';
import { openBeneathSync } from '../util/open-beneath.js';

/** Bytes per read and write; a full buffer goes to zlib as it is (GUNZIP_IN). */
const CHUNK = GUNZIP_IN;
/** Buffers per job: one being read, others being written and inflated. */
const BUFFERS = 4;
const O_NOFOLLOW = constants.O_NOFOLLOW ?? 0;

class Failure extends Error {
  constructor(
    readonly kind: LayerFileFailure['kind'],
    message: string,
  ) {
    super(message);
  }
}

/** The layer's descriptor (see LayerFileJob.src); a Failure('refused') for a link on its path. */
function openSource(src: LayerFileJob['src']): number {
  try {
    return openBeneathSync(src.root, src.path, constants.O_RDONLY | O_NOFOLLOW | (constants.O_NONBLOCK ?? 0));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ELOOP' || code === 'EXDEV') throw new Failure('refused', `${src.path}: a symbolic link on its path since it was checked: not followed`);
    // listed a moment ago: the tree changed under the import (the layer is skipped, not the import stopped)
    if (code === 'ENOENT' || code === 'ENOTDIR') throw new Failure('refused', `${src.path}: gone since it was listed (the tree changed during the import)`);
    throw e;
  }
}

const openFd = (path: string, flags: number, mode?: number): Promise<number> =>
  new Promise((res, rej) => open(path, flags, mode, (e, fd) => (e ? rej(e) : res(fd))));
const readAt = (fd: number, buf: Buffer, position: number): Promise<number> =>
  new Promise((res, rej) => read(fd, buf, 0, buf.length, position, (e, n) => (e ? rej(e) : res(n))));
const fstatOf = (fd: number): Promise<Stats> => new Promise((res, rej) => fstat(fd, (e, st) => (e ? rej(e) : res(st))));
const closeFd = (fd: number): Promise<void> => new Promise((res, rej) => close(fd, (e) => (e ? rej(e) : res())));

/** Write all of `chunk` at `position` (a write may take less than asked). */
function writeAll(fd: number, chunk: Buffer, position: number): Promise<void> {
  return new Promise((res, rej) => {
    const step = (off: number): void => {
      write(fd, chunk, off, chunk.length - off, position + off, (e, n) => {
        if (e) return rej(e);
        if (n <= 0) return rej(new Error('write made no progress'));
        if (off + n < chunk.length) step(off + n);
        else res();
      });
    };
    step(0);
  });
}

/**
 * Buffers of finished jobs, for the next ones: a buffer new to the process costs a page fault per
 * page when first filled (measured: ~3 % of an import's CPU in the reads alone).
 */
const spare: Buffer[] = [];
/**
 * A new buffer for a job: page aligned (native/directio.c) when the module is there, which it is
 * whenever a direct descriptor is (directTwin), so a direct write always has one.
 */
const newBuffer = (): Buffer => alignedBufferOf(CHUNK) ?? Buffer.allocUnsafeSlow(CHUNK);
/** Spare buffers kept (as many as jobs at once use, for the importer's lanes at once). */
const SPARE_MAX = 8 * BUFFERS;

async function run(job: LayerFileJob): Promise<ReturnType<typeof layerDigests>> {
  const extra = Buffer.from(job.extra);
  const raw = createSha256();
  const payload = createSha256().update(extra).update('\n', 'latin1');
  // taken as the job needs them (a 2 MiB layer uses three), up to BUFFERS
  const free: Buffer[] = [];
  let owned = 0;
  let waiter: (() => void) | undefined;
  const giveBack = (b: Buffer): void => {
    free.push(b);
    const w = waiter;
    waiter = undefined;
    w?.();
  };
  const take = async (): Promise<Buffer> => {
    if (free.length === 0 && owned < BUFFERS) {
      owned++;
      return spare.pop() ?? newBuffer();
    }
    while (free.length === 0) await new Promise<void>((r) => (waiter = r));
    return free.pop()!;
  };
  let inner: Inner | undefined;
  let compression: ReturnType<typeof sniffCompression> = 'none';
  let writeError: unknown;
  const writes = new Set<Promise<void>>();
  // the importer resolved the path inside its tree: opened relative to the tree's root, a link put
  // anywhere on it since is not followed (a directory swapped for a link out of the tree), and a
  // FIFO (or a device) is neither waited for nor read. A few syscalls, made here on the thread.
  const src = openSource(job.src);
  let dst: number | undefined;
  /** The copy opened again with O_DIRECT (job.direct), for its whole chunks; undefined once refused. */
  let direct: number | undefined;
  let twin: { readonly fd: number; readonly dev: number } | undefined;
  try {
    if (!(await fstatOf(src)).isFile()) throw new Failure('refused', `${job.src.path} is not a regular file`);
    dst = await openFd(job.dst, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | O_NOFOLLOW, 0o644);
    if (job.direct) direct = (twin = directTwin(dst))?.fd;
    const out = dst;
    /**
     * A whole chunk from an aligned buffer goes through the direct descriptor (its offset is a
     * multiple of CHUNK); the last, short one and any after a refusal through the page cache. A
     * file system that refuses a direct write (EINVAL) gets the chunk again through the page cache.
     */
    const writeChunk = (chunk: Buffer, position: number): Promise<void> => {
      const fd = direct;
      if (fd === undefined || chunk.length !== CHUNK) return writeAll(out, chunk, position);
      return writeAll(fd, chunk, position).catch((e: unknown) => {
        if ((e as NodeJS.ErrnoException).code !== 'EINVAL') throw e;
        direct = undefined;
        if (twin) refuseDirect(twin.dev);
        return writeAll(out, chunk, position);
      });
    };
    let size = 0;
    for (;;) {
      if (writeError) throw writeError;
      const buf = await take();
      // read to the end of the buffer or of the file (only the last chunk is short), and never more
      // than one byte past the size listed: a file that keeps growing is not read on
      const want = Math.min(buf.length, job.expectedSize + 1 - size);
      let n = 0;
      for (;;) {
        const got = await readAt(src, buf.subarray(n, want), size + n);
        if (got === 0) break;
        n += got;
        if (n === want) break;
      }
      if (n === 0) {
        giveBack(buf);
        break;
      }
      if (job.maxSize > 0 && size + n > job.maxSize) throw new Failure('too-large', `the layer exceeds ${job.maxSize} bytes`);
      if (size + n > job.expectedSize) throw new Failure('short', `the layer has grown past the ${job.expectedSize} bytes listed`);
      const end = n < want; // a short read: the end of the file
      const chunk = buf.subarray(0, n);
      updateBoth(raw, payload, chunk);
      inner ??= createInlineInner((compression = sniffCompression(chunk)), extra, job.innerOpts);
      let users = 2;
      const done = (): void => {
        if (--users === 0) giveBack(buf);
      };
      const w = writeChunk(chunk, size).then(done, (e: unknown) => {
        writeError ??= e;
        done();
      });
      writes.add(w);
      void w.then(() => writes.delete(w));
      // a short chunk may be kept past `done` (gathered for zlib): it gets a copy of its own
      inner.write(n === CHUNK ? chunk : Buffer.from(chunk), done);
      size += n;
      if (end) break;
    }
    await Promise.all(writes);
    if (writeError) throw writeError;
    if (size !== job.expectedSize) throw new Failure('short', `the layer has ${size} bytes, ${job.expectedSize} expected`);
    inner ??= createInlineInner((compression = sniffCompression(Buffer.alloc(0))), extra, job.innerOpts);
    let r: InnerResult;
    try {
      r = await inner.end();
    } catch (e) {
      r = { tarError: e instanceof Error ? e.message : String(e) };
    }
    inner = undefined;
    return layerDigests(raw.digest('hex'), payload.digest('hex'), size, compression, r);
  } finally {
    inner?.destroy();
    await Promise.allSettled(writes);
    // a buffer still inside zlib after a failure is not taken back (it is garbage once zlib is done)
    for (const b of free) if (spare.length < SPARE_MAX) spare.push(b);
    await closeFd(src).catch(() => undefined);
    if (twin) closeDirectFd(twin.fd);
    if (dst !== undefined) await closeFd(dst);
  }
}

parentPort!.on('message', (m: { id: number; job: LayerFileJob }) => {
  run(m.job).then(
    (digests) => parentPort!.postMessage({ id: m.id, ok: true, digests }),
    (e: unknown) => {
      const error: LayerFileFailure =
        e instanceof Failure
          ? { kind: e.kind, message: e.message }
          : {
              kind: 'io',
              message: e instanceof Error ? e.message : String(e),
              ...(typeof (e as NodeJS.ErrnoException)?.code === 'string' ? { code: (e as NodeJS.ErrnoException).code! } : {}),
            };
      parentPort!.postMessage({ id: m.id, ok: false, error });
    },
  );
});
