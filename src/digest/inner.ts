import { createGunzip } from 'node:zlib';
import { nativeGunzip, type NativeGunzipModule } from './gunzip-native.js';
import { TarParser } from './tar-parser.js';
import { createSha256, type Sha256 } from './sha256.js';
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
  /** `whole`: a hash that takes every byte of the chunk too, in order (the tarsum pairs it with its content hashing). */
  write(chunk: Buffer, whole?: Sha256): void;
  end(): void;
  readonly error: string | undefined;
  result(): TarSums | undefined | true;
}

function tarCheck(extra: Buffer, tarsums: boolean, v1: boolean, maxEntries?: number): TarCheck {
  if (tarsums) {
    const t = new TarSum(extra, { v1, ...(maxEntries !== undefined ? { maxEntries } : {}) });
    return {
      write: (c, whole) => t.write(c, whole),
      end: () => t.end(),
      get error() {
        return t.error;
      },
      // past TarSum's entry cap the tar is still checked (the diff_id stands), it only has no tarsum
      result: () => t.result() ?? (t.tooManyEntries && t.complete ? true : undefined),
    };
  }
  const parser = new TarParser({ entry: () => undefined, data: () => undefined, entryEnd: () => undefined });
  return {
    write: (c, whole) => {
      whole?.update(c);
      parser.write(c);
    },
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
   * so it must not be modified afterwards — stream chunks never are. A chunk of GUNZIP_IN (1 MiB)
   * bytes or more is no longer referenced when `done` runs (a worker hands such slabs back then).
   */
  write(chunk: Buffer, done: () => void): void;
  end(): Promise<InnerResult>;
  destroy(): void;
}

/** Input smaller than this is gathered into one zlib write (each write is a thread-pool round trip). */
export const GUNZIP_IN = 1 << 20;
/** zlib output chunk size. */
const GUNZIP_OUT = 512 << 10;
/** Compressed bytes inside zlib (being inflated or queued for it) before write() holds `done` back. */
const MAX_IN_ZLIB = 2 << 20;
/** Uncompressed bytes allowed to wait for hashing before it is done in the data handler itself. */
const MAX_QUEUED = 4 << 20;

/** What the uncompressed side computes beyond the diff_id. */
export interface InnerOptions {
  /**
   * The tarsums (default true). False: the tar is only checked for being one (no tarsum hashing),
   * the diff_id is all the bridge needs (the importer, when its tree recorded no tarsum to compare).
   */
  readonly tarsums?: boolean;
  /** With tarsums: also the v1/dev ones (default true); see TarSumOptions. */
  readonly tarsumV1?: boolean;
  /** With tarsums: the entries a tarsum is computed for (default MAX_TARSUM_ENTRIES); past them, a diff_id and no tarsum. */
  readonly tarsumMaxEntries?: number;
}

/** Gunzip (for gzip) and tarsum in this thread; zlib itself runs on the libuv thread pool. */
export function createInlineInner(kind: Compression, extra: Buffer, opts: InnerOptions = {}): Inner {
  if (kind !== 'gzip' && kind !== 'none') {
    const tarError = `${kind} layers are stored as they are; tarsum and diff_id need gzip or a plain tar`;
    return { write: (_c, done) => done(), end: () => Promise.resolve({ tarError }), destroy: () => undefined };
  }
  if (kind === 'gzip') return createGunzipInner(nativeGunzip ? 'native' : 'zlib', extra, opts);
  const tarsum = tarCheck(extra, opts.tarsums ?? true, opts.tarsumV1 ?? true, opts.tarsumMaxEntries);
  const finish = finisher(tarsum);
  return {
    write: (c, done) => {
      tarsum.write(c);
      done();
    },
    end: () => Promise.resolve(finish(undefined)),
    destroy: () => undefined,
  };
}

/** The result from what the gunzip found and the tar check. */
function finisher(tarsum: TarCheck): (tarError: string | undefined, diffId?: string) => InnerResult {
  return (tarError, diffId) => {
    if (tarError) return { tarError };
    tarsum.end();
    const t = tarsum.result();
    if (!t) return { tarError: `not a tar archive: ${tarsum.error ?? 'incomplete'}` };
    return { ...(diffId ? { diffId } : {}), tar: true, ...(t === true ? {} : { tarsum: t }) };
  };
}

/**
 * The gzip Inner with a given engine: native/gunzip.c (what createInlineInner uses when it is
 * built) or node:zlib's Gunzip. For the tests that hold the two to the same results.
 */
export function createGunzipInner(engine: 'native' | 'zlib', extra: Buffer, opts: InnerOptions = {}): Inner {
  const tarsum = tarCheck(extra, opts.tarsums ?? true, opts.tarsumV1 ?? true, opts.tarsumMaxEntries);
  if (engine === 'zlib') return new InlineGunzip(tarsum);
  if (!nativeGunzip) throw new Error('native gunzip is not loaded');
  return new PoolGunzip(nativeGunzip, tarsum);
}

/**
 * What both gunzip engines share. The input side: small chunks are gathered into ~1 MiB writes
 * (each write is a thread-pool round trip), a chunk of GUNZIP_IN or more goes to the engine as it is
 * (a worker's slab: no copy; the caller gets it back once consumed), and `done` is held back while
 * more than MAX_IN_ZLIB input bytes wait inside the engine. The output side: every inflated piece
 * goes to the tar check with the diff_id's hash, and the result is made from both.
 */
abstract class GatheringGunzip {
  private batch: Buffer[] = [];
  private batchLen = 0;
  /** Callers waiting for the engine to hold less than MAX_IN_ZLIB, in order. */
  protected waiting: (() => void)[] = [];
  private readonly uncompressed = createSha256();
  /** Why the gzip stream failed, once it has. */
  protected tarError: string | undefined;
  private readonly finish: (tarError: string | undefined, diffId?: string) => InnerResult;

  constructor(private readonly tarsum: TarCheck) {
    this.finish = finisher(tarsum);
  }

  /** Input bytes handed to the engine and not consumed yet. */
  protected abstract held(): number;
  /** Hand `buf` to the engine; `consumed` runs once it no longer reads it (or never will). */
  protected abstract feed(buf: Buffer, consumed?: () => void): void;

  /** The stream failed (or, for an engine that says so, was closed): writes are taken and dropped. */
  protected stopped(): boolean {
    return this.tarError !== undefined;
  }

  /** An inflated piece, in order. */
  protected inflated(piece: Buffer): void {
    this.tarsum.write(piece, this.uncompressed);
  }

  /** The result, once the engine has ended or failed. */
  protected result(): InnerResult {
    return this.finish(this.tarError, this.tarError ? undefined : `sha256:${this.uncompressed.digest('hex')}`);
  }

  write(chunk: Buffer, done: () => void): void {
    if (this.stopped()) {
      done();
      return;
    }
    if (this.batchLen === 0 && chunk.length >= GUNZIP_IN) {
      this.feed(chunk, done);
      return;
    }
    this.batch.push(chunk);
    this.batchLen += chunk.length;
    if (this.batchLen >= GUNZIP_IN) this.flush();
    if (this.held() <= MAX_IN_ZLIB) done();
    else this.waiting.push(done);
  }

  protected flush(): void {
    if (this.batchLen === 0) return;
    const buf = this.batch.length === 1 ? this.batch[0]! : Buffer.concat(this.batch, this.batchLen);
    this.batch = [];
    this.batchLen = 0;
    this.feed(buf);
  }

  protected release(): void {
    while (this.waiting.length > 0 && (this.held() <= MAX_IN_ZLIB || this.stopped())) this.waiting.shift()!();
  }

  protected drop(): void {
    this.batch = [];
    this.batchLen = 0;
    this.waiting = [];
  }
}

/**
 * gunzip → sha256 (diff_id) + tarsum, in one pass over each inflated piece (both hashes read it
 * while it is in cache). Small input chunks are gathered into ~1 MiB writes; large ones go to zlib
 * as they are. zlib's output is hashed from a setImmediate queue, so the next piece is already
 * inflating on the thread pool meanwhile, and up to MAX_IN_ZLIB input bytes are handed to zlib
 * ahead, so it never waits for the caller between pieces. `done` of a write is called once its
 * bytes are no longer referenced here (gathered into a copy, or consumed by zlib) and zlib holds
 * at most MAX_IN_ZLIB; at most MAX_QUEUED inflated bytes wait for hashing: memory stays bounded.
 * Multi-member gzip is read through (zlib's default); a gzip error leaves tarError set and
 * swallows the rest of the input (every pending `done` is still called).
 */
class InlineGunzip extends GatheringGunzip implements Inner {
  private readonly gz = createGunzip({ chunkSize: GUNZIP_OUT });
  /** Input bytes written to zlib and not consumed yet. */
  private inZlib = 0;
  /** Settle functions of the writes zlib has not consumed yet. */
  private readonly unconsumed = new Set<() => void>();
  private queue: Buffer[] = [];
  private queued = 0;
  private scheduled = false;
  private readonly ended: Promise<void>;

  constructor(tarsum: TarCheck) {
    super(tarsum);
    this.gz.on('data', (c: Buffer) => {
      this.queue.push(c);
      this.queued += c.length;
      if (this.queued > MAX_QUEUED) this.hashQueue();
      else if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(this.hashQueue);
      }
    });
    this.ended = new Promise<void>((resolve) => {
      this.gz.once('end', () => {
        this.hashQueue();
        resolve();
      });
      this.gz.on('error', (e: Error) => {
        this.tarError ??= `gunzip: ${e.message}`;
        this.queue = [];
        this.queued = 0;
        this.inZlib = 0;
        resolve();
        // writes inside or waiting for zlib must not wait forever
        this.settleAll();
        this.release();
      });
    });
  }

  private readonly hashQueue = (): void => {
    this.scheduled = false;
    const q = this.queue;
    this.queue = [];
    this.queued = 0;
    for (const c of q) this.inflated(c);
  };

  protected held(): number {
    return this.inZlib;
  }

  protected feed(buf: Buffer, consumed?: () => void): void {
    this.inZlib += buf.length;
    const settle = (): void => {
      if (!this.unconsumed.delete(settle)) return; // already settled (stream error)
      if (!this.tarError) this.inZlib -= buf.length;
      consumed?.();
      this.release();
    };
    this.unconsumed.add(settle);
    this.gz.write(buf, settle);
  }

  /** On a gzip error: every write still inside zlib is settled now (zlib may not call back). */
  private settleAll(): void {
    for (const settle of [...this.unconsumed]) settle();
  }

  async end(): Promise<InnerResult> {
    if (!this.tarError) {
      this.flush();
      this.gz.end();
    }
    await this.ended;
    return this.result();
  }

  destroy(): void {
    this.drop();
    this.queue = [];
    this.unconsumed.clear();
    this.gz.destroy();
  }
}

const NO_INPUT = new Uint8Array(0);

/**
 * gunzip → sha256 (diff_id) + tarsum with native/gunzip.c (src/digest/gunzip-native.ts): the same
 * contract as InlineGunzip. Runs go to the thread pool one at a time, each inflating what it was
 * given into one of two output buffers; when one returns, the next starts at once (into the other
 * buffer) and the returned piece is hashed while it runs, so the inflating and the hashing overlap
 * and nothing is allocated per piece. Input is gathered as for InlineGunzip (GatheringGunzip).
 */
class PoolGunzip extends GatheringGunzip implements Inner {
  private readonly handle: object;
  private readonly outs = [Buffer.allocUnsafe(GUNZIP_OUT), Buffer.allocUnsafe(GUNZIP_OUT)];
  private outIdx = 0;
  /** Input not yet consumed, in order: the first one is being inflated. */
  private input: { buf: Buffer; off: number; consumed?: () => void }[] = [];
  private inQueue = 0;
  private running = false;
  /** The last run filled its output: zlib may hold more for the next one. */
  private full = false;
  private atEnd = false;
  private ending = false;
  private closed = false;
  private endedResolve!: () => void;
  private readonly ended = new Promise<void>((resolve) => (this.endedResolve = resolve));

  constructor(
    private readonly native: NativeGunzipModule,
    tarsum: TarCheck,
  ) {
    super(tarsum);
    this.handle = native.create();
  }

  private fail(message: string): void {
    this.tarError ??= `gunzip: ${message}`;
    const input = this.input;
    this.input = [];
    this.inQueue = 0;
    for (const i of input) i.consumed?.();
    this.release();
    this.close();
  }

  private close(): void {
    if (this.closed) return;
    this.closed = true;
    this.endedResolve();
    if (!this.running) this.native.close(this.handle);
  }

  protected held(): number {
    return this.inQueue;
  }

  protected override stopped(): boolean {
    return super.stopped() || this.closed;
  }

  /** Start the next run when none is running and there is input, or output zlib still holds. */
  private kick(): void {
    if (this.running || this.closed) return;
    const head = this.input[0];
    if (!head && !this.full) {
      if (this.ending) {
        if (this.atEnd) this.close();
        else this.fail('unexpected end of file');
      }
      return;
    }
    const out = this.outs[this.outIdx]!;
    this.outIdx ^= 1;
    this.running = true;
    this.native.run(this.handle, head ? head.buf.subarray(head.off) : NO_INPUT, out, (err, consumed, produced, atEnd) => {
      this.running = false;
      if (this.closed) {
        this.native.close(this.handle);
        return;
      }
      if (err !== null) {
        this.fail(err);
        return;
      }
      this.atEnd = atEnd;
      this.full = produced === out.length;
      if (head) {
        head.off += consumed;
        this.inQueue -= consumed;
        if (head.off >= head.buf.length) {
          this.input.shift();
          head.consumed?.();
        }
        this.release();
      }
      this.kick();
      // hashed while the next run inflates into the other buffer
      if (produced > 0 && !this.tarError) this.inflated(out.subarray(0, produced));
    });
  }

  protected feed(buf: Buffer, consumed?: () => void): void {
    this.input.push(consumed ? { buf, off: 0, consumed } : { buf, off: 0 });
    this.inQueue += buf.length;
    this.kick();
  }

  async end(): Promise<InnerResult> {
    if (!this.tarError && !this.closed) {
      this.flush();
      this.ending = true;
      this.kick();
    }
    await this.ended;
    return this.result();
  }

  destroy(): void {
    this.drop();
    this.input = [];
    this.close();
  }
}
