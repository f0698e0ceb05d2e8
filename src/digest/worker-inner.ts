import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { createInlineInner, type Compression, type Inner, type InnerOptions, type InnerResult } from './inner.js';

const WORKER_URL = new URL('./inner-worker.js', import.meta.url);
/** Bytes handed to a worker and not yet taken by its gunzip before the upload waits. */
const MAX_IN_FLIGHT = 8 << 20;
const IDLE_MS = 30_000;
const BATCH = 1 << 20;

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
      void w.worker.terminate();
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

  async close(): Promise<void> {
    for (const w of this.idle.splice(0)) {
      clearTimeout(w.idleTimer);
      await w.worker.terminate();
    }
  }
}

class WorkerInner implements Inner {
  private inFlight = 0;
  private waiting: (() => void) | undefined;
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
      w.worker.on('message', (m: { type: 'ack'; bytes: number } | { type: 'result'; result: InnerResult }) => {
        if (m.type === 'ack') {
          this.inFlight -= m.bytes;
          if (this.inFlight < MAX_IN_FLIGHT && this.waiting) {
            const go = this.waiting;
            this.waiting = undefined;
            go();
          }
        } else {
          this.finish(false);
          resolve(m.result);
        }
      });
      w.worker.once('error', (e: Error) => {
        this.finish(true);
        const go = this.waiting;
        this.waiting = undefined;
        go?.();
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

  private batch: Buffer[] = [];
  private batchLen = 0;

  /** Socket chunks are small (~64 KiB): send them in batches, one copy the worker owns. */
  private post(): void {
    if (this.batchLen === 0) return;
    const copy = new ArrayBuffer(this.batchLen);
    const view = new Uint8Array(copy);
    let off = 0;
    for (const b of this.batch) {
      view.set(b, off);
      off += b.length;
    }
    this.inFlight += this.batchLen;
    this.batch = [];
    this.batchLen = 0;
    this.w.worker.postMessage({ type: 'chunk', buf: copy }, [copy]);
  }

  write(chunk: Buffer, next: () => void): void {
    if (this.settled) {
      next();
      return;
    }
    this.batch.push(chunk);
    this.batchLen += chunk.length;
    if (this.batchLen >= BATCH) this.post();
    if (this.inFlight < MAX_IN_FLIGHT) next();
    else this.waiting = next;
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
