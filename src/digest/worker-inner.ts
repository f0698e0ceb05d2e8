import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { noteMemoryReleased } from '../util/malloc-trim.js';
import { GUNZIP_IN, createInlineInner, type Compression, type Inner, type InnerOptions, type InnerResult } from './inner.js';

const WORKER_URL = new URL('./inner-worker.js', import.meta.url);
/** Slab size: the unit handed to a worker (and to its zlib in one write). */
const SLAB = GUNZIP_IN;
/** Slabs per upload: the bytes handed to a worker and not yet read by its gunzip before the upload waits. */
const SLABS = 8;
const IDLE_MS = 30_000;

interface PooledWorker {
  readonly worker: Worker;
  idleTimer?: NodeJS.Timeout;
}

/**
 * A few worker threads, each serving one upload at a time. With none free, the upload hashes in
 * the event loop instead: never slower than before, and never a queue.
 */
export class DigestWorkers {
  private readonly idle: PooledWorker[] = [];
  private busy = 0;
  constructor(readonly max = Math.max(1, Math.min(4, availableParallelism()))) {}

  private acquire(): PooledWorker | undefined {
    const w = this.idle.pop();
    if (w) {
      clearTimeout(w.idleTimer);
      this.busy++;
      return w;
    }
    if (this.busy >= this.max) return undefined;
    this.busy++;
    const worker = new Worker(WORKER_URL);
    worker.unref();
    return { worker };
  }

  private release(w: PooledWorker, broken: boolean): void {
    this.busy--;
    w.worker.removeAllListeners('message');
    w.worker.removeAllListeners('error');
    if (broken) {
      void w.worker.terminate();
      return;
    }
    w.idleTimer = setTimeout(() => {
      const i = this.idle.indexOf(w);
      if (i >= 0) this.idle.splice(i, 1);
      // its thread's malloc arena stays behind, free: an idle server trims it (src/http/idle-memory.ts)
      void w.worker.terminate().then(noteMemoryReleased);
    }, IDLE_MS);
    w.idleTimer.unref();
    this.idle.push(w);
  }

  /**
   * An Inner that runs in a worker when one is free, else in this thread. A plain tar without
   * tarsums stays here: checking its structure costs less than handing the bytes over.
   */
  create(kind: Compression, extra: Buffer, opts: InnerOptions = {}): Inner {
    if (kind !== 'gzip' && kind !== 'none') return createInlineInner(kind, extra, opts);
    if (kind === 'none' && opts.tarsums === false) return createInlineInner(kind, extra, opts);
    const w = this.acquire();
    if (!w) return createInlineInner(kind, extra, opts);
    return new WorkerInner(w, kind, extra, opts, (broken) => this.release(w, broken));
  }

  /** create() as an InnerFactory. */
  readonly factory = (kind: Compression, extra: Buffer, opts?: InnerOptions): Inner => this.create(kind, extra, opts);

  async close(): Promise<void> {
    for (const w of this.idle.splice(0)) {
      clearTimeout(w.idleTimer);
      await w.worker.terminate();
    }
  }
}

/**
 * The event-loop side of an upload hashed in a worker: socket chunks are copied into 1 MiB slabs
 * (the one copy: a socket's buffers cannot be handed over), each full slab is transferred to the
 * worker and comes back transferred once its gunzip has read it. SLABS of them per upload bound
 * the bytes in flight; when all are out, the upload waits for one to come back. No allocation per
 * chunk (the slabs live as long as the upload), where a fresh ArrayBuffer per batch cost more
 * garbage collection than the copy itself (profile: 3.3 s of GC per 258 MiB layer under load).
 */
class WorkerInner implements Inner {
  private slabs = 0;
  private readonly free: ArrayBuffer[] = [];
  private cur: Uint8Array | undefined;
  private curLen = 0;
  /** A write that ran out of slabs: the rest of its chunk, and its callback. */
  private stalled: { chunk: Buffer; off: number; next: () => void } | undefined;
  private resultPromise: Promise<InnerResult>;
  private settled = false;

  constructor(
    private readonly w: PooledWorker,
    kind: Compression,
    extra: Buffer,
    opts: InnerOptions,
    private readonly done: (broken: boolean) => void,
  ) {
    w.worker.ref();
    this.resultPromise = new Promise<InnerResult>((resolve) => {
      w.worker.on('message', (m: { type: 'ack'; buf: ArrayBuffer } | { type: 'result'; result: InnerResult }) => {
        if (m.type === 'ack') {
          this.free.push(m.buf);
          this.resume();
        } else {
          this.finish(false);
          resolve(m.result);
        }
      });
      w.worker.once('error', (e: Error) => {
        this.finish(true);
        this.resume();
        resolve({ tarError: `digest worker failed: ${e.message}` });
      });
    });
    w.worker.postMessage({ type: 'start', kind, extra, opts });
  }

  private finish(broken: boolean): void {
    if (this.settled) return;
    this.settled = true;
    this.w.worker.unref();
    this.done(broken);
  }

  private take(): Uint8Array | undefined {
    const ab = this.free.pop() ?? (this.slabs < SLABS ? (this.slabs++, new ArrayBuffer(SLAB)) : undefined);
    return ab && new Uint8Array(ab);
  }

  private post(): void {
    if (!this.cur || this.curLen === 0) return;
    const buf = this.cur.buffer as ArrayBuffer;
    this.w.worker.postMessage({ type: 'chunk', buf, len: this.curLen }, [buf]);
    this.cur = undefined;
    this.curLen = 0;
  }

  /** Copy from `chunk` at `off` into slabs; false when they ran out (the write is parked). */
  private fill(chunk: Buffer, off: number, next: () => void): boolean {
    while (off < chunk.length) {
      if (!this.cur) {
        this.cur = this.take();
        if (!this.cur) {
          this.stalled = { chunk, off, next };
          return false;
        }
      }
      const n = Math.min(chunk.length - off, SLAB - this.curLen);
      this.cur.set(n === chunk.length ? chunk : chunk.subarray(off, off + n), this.curLen);
      this.curLen += n;
      off += n;
      if (this.curLen === SLAB) this.post();
    }
    return true;
  }

  private resume(): void {
    const s = this.stalled;
    if (!s) return;
    this.stalled = undefined;
    if (this.settled || this.fill(s.chunk, s.off, s.next)) s.next();
  }

  write(chunk: Buffer, next: () => void): void {
    if (this.settled || this.fill(chunk, 0, next)) next();
  }

  end(): Promise<InnerResult> {
    if (!this.settled) {
      this.post();
      this.w.worker.postMessage({ type: 'end' });
    }
    return this.resultPromise;
  }

  destroy(): void {
    // The upload failed: the worker's state is unknown, so it is not reused.
    if (!this.settled) {
      this.finish(true);
    }
  }
}
