import { createHash } from 'node:crypto';
import { createGunzip } from 'node:zlib';
import { TarParser } from './tar-parser.js';
import { TarSum, type TarSums } from './tarsum.js';

export type Compression = 'gzip' | 'none' | 'bzip2' | 'xz' | 'zstd';

/** What is computed over the uncompressed tar: the diff_id (gzip only here) and the tarsums. */
export interface InnerResult {
  readonly diffId?: string;
  /** Only when asked for (see {@link createInlineInner}). */
  readonly tarsum?: TarSums;
  /** The uncompressed bytes are one complete tar archive (set whenever tarError is not). */
  readonly tar?: true;
  readonly tarError?: string;
}

/**
 * Over the uncompressed tar: the tarsums (every header and content byte hashed twice, four times
 * for entries with owner names), or only the archive's structure checked, which costs next to
 * nothing (the parser skips content). The v2 bridge needs a diff_id of a readable tar; tarsums
 * only serve a check against a client's or a tree's recorded tarsum.
 */
interface TarCheck {
  write(chunk: Buffer): void;
  end(): void;
  readonly error: string | undefined;
  result(): TarSums | undefined | true;
}

function tarCheck(extra: Buffer, tarsums: boolean): TarCheck {
  if (tarsums) return new TarSum(extra);
  const parser = new TarParser({ entry: () => undefined, data: () => undefined, entryEnd: () => undefined });
  return {
    write: (c) => parser.write(c),
    end: () => parser.end(),
    get error() {
      return parser.error;
    },
    result: () => (parser.error === undefined && parser.ended ? true : undefined),
  };
}

/** The uncompressed side of the layer hashing: fed the raw layer bytes, in order. */
export interface Inner {
  /**
   * Take a chunk; `done` is called when more may be sent (the backpressure: the caller waits, so
   * nothing piles up inside). The chunk may be kept a little longer (gathered into a bigger write),
   * so it must not be modified afterwards — stream chunks never are.
   */
  write(chunk: Buffer, done: () => void): void;
  end(): Promise<InnerResult>;
  destroy(): void;
}

/** Compressed input is handed to zlib in pieces of at least this size (fewer thread-pool trips). */
const GUNZIP_IN = 1 << 20;
/** zlib output chunk size. */
const GUNZIP_OUT = 512 << 10;
/** Uncompressed bytes allowed to wait for hashing before it is done in the data handler itself. */
const MAX_QUEUED = 4 << 20;

/** What the uncompressed side computes beyond the diff_id. */
export interface InnerOptions {
  /**
   * The tarsums (default true). False: the tar is only checked for being one (no tarsum hashing),
   * the diff_id is all the bridge needs (the importer, when its tree recorded no tarsum to compare).
   */
  readonly tarsums?: boolean;
}

/** Gunzip (for gzip) and tarsum in this thread; zlib itself runs on the libuv thread pool. */
export function createInlineInner(kind: Compression, extra: Buffer, opts: InnerOptions = {}): Inner {
  if (kind !== 'gzip' && kind !== 'none') {
    const tarError = `${kind} layers are stored as they are; tarsum and diff_id need gzip or a plain tar`;
    return { write: (_c, done) => done(), end: () => Promise.resolve({ tarError }), destroy: () => undefined };
  }
  const tarsum = tarCheck(extra, opts.tarsums ?? true);
  const finish = (tarError: string | undefined, diffId?: string): InnerResult => {
    if (tarError) return { tarError };
    tarsum.end();
    const t = tarsum.result();
    if (!t) return { tarError: `not a tar archive: ${tarsum.error ?? 'incomplete'}` };
    return { ...(diffId ? { diffId } : {}), tar: true, ...(t === true ? {} : { tarsum: t }) };
  };
  if (kind === 'none') {
    return {
      write: (c, done) => {
        tarsum.write(c);
        done();
      },
      end: () => Promise.resolve(finish(undefined)),
      destroy: () => undefined,
    };
  }
  return new InlineGunzip(tarsum, finish);
}

/**
 * gunzip → sha256 (diff_id) + tarsum. Small input chunks are gathered into ~1 MiB writes (each zlib
 * write is a thread-pool round trip); zlib's output is hashed from a setImmediate queue so that the
 * next piece is already inflating on the thread pool meanwhile. At most one write is inside zlib
 * and at most MAX_QUEUED bytes wait for hashing, so memory stays bounded. Multi-member gzip is read
 * through (zlib's default); a gzip error leaves tarError set and swallows the rest of the input.
 */
class InlineGunzip implements Inner {
  private readonly gz = createGunzip({ chunkSize: GUNZIP_OUT });
  private readonly uncompressed = createHash('sha256');
  private batch: Buffer[] = [];
  private batchLen = 0;
  private queue: Buffer[] = [];
  private queued = 0;
  private scheduled = false;
  private waiting: (() => void) | undefined;
  private tarError: string | undefined;
  private readonly ended: Promise<void>;

  constructor(
    private readonly tarsum: TarCheck,
    private readonly finish: (tarError: string | undefined, diffId?: string) => InnerResult,
  ) {
    this.gz.on('data', (c: Buffer) => {
      this.queue.push(c);
      this.queued += c.length;
      if (this.queued > MAX_QUEUED) this.hashQueue();
      else if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(this.hashQueue);
      }
    });
    this.gz.on('drain', this.release);
    this.ended = new Promise<void>((resolve) => {
      this.gz.once('end', () => {
        this.hashQueue();
        resolve();
      });
      this.gz.on('error', (e: Error) => {
        this.tarError ??= `gunzip: ${e.message}`;
        this.queue = [];
        this.queued = 0;
        resolve();
        this.release(); // a write waiting for 'drain' must not wait forever
      });
    });
  }

  private readonly hashQueue = (): void => {
    this.scheduled = false;
    const q = this.queue;
    this.queue = [];
    this.queued = 0;
    for (const c of q) {
      this.uncompressed.update(c);
      this.tarsum.write(c);
    }
  };

  private readonly release = (): void => {
    const w = this.waiting;
    this.waiting = undefined;
    w?.();
  };

  private flush(done: () => void): void {
    const buf = this.batch.length === 1 ? this.batch[0]! : Buffer.concat(this.batch, this.batchLen);
    this.batch = [];
    this.batchLen = 0;
    if (this.gz.write(buf) || this.tarError) done();
    else this.waiting = done;
  }

  write(chunk: Buffer, done: () => void): void {
    if (this.tarError) {
      done();
      return;
    }
    this.batch.push(chunk);
    this.batchLen += chunk.length;
    if (this.batchLen < GUNZIP_IN) done();
    else this.flush(done);
  }

  async end(): Promise<InnerResult> {
    if (!this.tarError) {
      if (this.batchLen > 0) this.flush(() => undefined);
      this.gz.end();
    }
    await this.ended;
    return this.finish(this.tarError, this.tarError ? undefined : `sha256:${this.uncompressed.digest('hex')}`);
  }

  destroy(): void {
    this.batch = [];
    this.queue = [];
    this.gz.destroy();
  }
}
