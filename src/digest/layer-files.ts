import { Worker } from 'node:worker_threads';
import type { InnerOptions } from './inner.js';
import type { LayerDigests } from './layer-hasher.js';
import type { BeneathRoot } from '../util/open-beneath.js';

const WORKER_URL = new URL('./layer-file-worker.js', import.meta.url);

/** A layer file to copy and hash (paths on the local disk). */
export interface LayerFileJob {
  /**
   * The layer, read from its start to its end: a regular file at a path below a tree's root with its
   * links resolved, opened relative to the root with no link followed (openBeneathSync: a link put
   * anywhere on the path since, a FIFO or a device there is refused, never followed or read).
   */
  readonly src: { readonly root: BeneathRoot; readonly path: string };
  /** The copy, created here (it must not exist). */
  readonly dst: string;
  /** The image json: the payload checksum's prefix and the tarsums' "extra". */
  readonly extra: Uint8Array;
  readonly innerOpts: InnerOptions;
  /** More bytes than this (0: no limit): the job fails (kind 'too-large') as soon as it reads them. */
  readonly maxSize: number;
  /** The size the layer had when it was listed: any other size fails the job (kind 'short'). */
  readonly expectedSize: number;
  /**
   * Write the copy's whole chunks with O_DIRECT (from page-aligned buffers, on a second descriptor),
   * where the file system takes it: no copy into the page cache and no write-back of it later.
   */
  readonly direct?: boolean;
}

export interface LayerFileFailure {
  /** refused: the source is not a regular file, or a symbolic link is on its path (its path was resolved before). */
  readonly kind: 'too-large' | 'short' | 'refused' | 'io';
  readonly message: string;
  readonly code?: string;
}

export class LayerFileError extends Error {
  constructor(readonly failure: LayerFileFailure) {
    super(failure.message);
    this.name = 'LayerFileError';
  }
  get code(): string | undefined {
    return this.failure.code;
  }
}

type Reply = { id: number; ok: true; digests: LayerDigests } | { id: number; ok: false; error: LayerFileFailure };

/**
 * Copies and hashes layer files in one worker thread, for the import command (issue 16): the copy
 * (reads and writes on libuv's thread pool), the sha256 of the bytes and the payload checksum, and
 * the uncompressed side (gunzip on the thread pool, diff_id, tar check, tarsums when asked) all
 * happen off the event loop, which is left to the images' records and the index. Jobs run at once
 * in the one thread (each hashes while the others' reads and writes are in flight): one more V8
 * isolate for the whole import, not one per layer in flight.
 */
export class LayerFiles {
  private worker: Worker | undefined;
  private next = 1;
  private readonly pending = new Map<number, { resolve: (d: LayerDigests) => void; reject: (e: Error) => void }>();

  /**
   * @param opts.direct every copy writes with O_DIRECT where it can (LayerFileJob.direct). A second
   *   worker thread was measured (2026-12-06, 2 cores): no faster, its buffers and isolate took the
   *   import's peak RSS to 200–217 MiB.
   */
  constructor(private readonly opts: { readonly direct?: boolean } = {}) {}

  private start(): Worker {
    // trackUnmanagedFds off: the worker opens layer files with openBeneath (native, src/util/open-beneath.ts)
    // and closes them with fs.close, which in a worker that tracks descriptors warns once per file
    // ("closed but not opened in unmanaged mode": 2,000 lines on stderr per 1,000 images). Every
    // descriptor it opens is closed by the job that opened it.
    const worker = new Worker(WORKER_URL, { trackUnmanagedFds: false, resourceLimits: { maxYoungGenerationSizeMb: 8, maxOldGenerationSizeMb: 64 } });
    worker.on('message', (m: Reply) => {
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      // idle, the worker does not keep the process alive; busy, it must (nothing else may)
      if (this.pending.size === 0) worker.unref();
      if (m.ok) p.resolve(m.digests);
      else p.reject(new LayerFileError(m.error));
    });
    const fail = (e: Error): void => {
      if (this.worker === worker) this.worker = undefined;
      for (const p of this.pending.values()) p.reject(e);
      this.pending.clear();
    };
    worker.on('error', fail);
    worker.on('exit', (code) => fail(new Error(`the layer-file worker exited (${code})`)));
    worker.unref();
    return worker;
  }

  /** Copy job.src to job.dst and hash it; rejects with a LayerFileError (job.dst may then be left, partly written). */
  copy(job: LayerFileJob): Promise<LayerDigests> {
    const worker = (this.worker ??= this.start());
    const id = this.next++;
    if (this.pending.size === 0) worker.ref();
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      worker.postMessage({ id, job: this.opts.direct && job.direct === undefined ? { ...job, direct: true } : job });
    });
  }

  async close(): Promise<void> {
    const w = this.worker;
    this.worker = undefined;
    if (w) await w.terminate();
  }
}
