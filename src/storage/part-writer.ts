import { Writable } from 'node:stream';
import { endWriterStream, StorageError, type CommitOptions, type Writer } from './driver.js';

/**
 * What the object store writers (S3 multipart parts, Swift SLO segments) share: the bytes written
 * collect in memory until a part is full; one part uploads while the next fills, so a writer holds
 * at most about two parts; a failed part upload fails the next write or commit; commit and cancel
 * run once. A driver's writer says how a part is uploaded (`beforePart`, `uploadPart`), what
 * commit does once every full part is sent (`finish`) and what cancel removes (`discard`).
 */
export abstract class PartBufferWriter implements Writer {
  readonly stream: Writable;
  /** Bytes of the key: those present before (append) and those written since. */
  private bytes: number;
  /** Bytes written through this writer (not those present before). */
  protected appended = 0;
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private inflight: Promise<void> | undefined;
  private failure: unknown;
  protected state: 'open' | 'committing' | 'committed' | 'cancelled' = 'open';
  /**
   * A full part is sent only once this many more bytes are buffered, so that what remains at the
   * end is at least that much (S3: a resumable upload's rest at a suspend is then a part of its own
   * rather than a staged rest).
   */
  protected holdBack = 0;

  constructor(
    protected readonly key: string,
    startSize: number,
    private readonly partSize: number,
  ) {
    this.bytes = startSize;
    this.stream = new Writable({
      highWaterMark: 1 << 20,
      write: (chunk: Buffer, _enc, cb) => {
        this.pending.push(chunk);
        this.pendingBytes += chunk.length;
        this.bytes += chunk.length;
        this.appended += chunk.length;
        if (this.pendingBytes < this.partSize + this.holdBack) return cb();
        this.flushFull().then(() => cb(), cb);
      },
    });
    this.stream.on('error', () => undefined); // kept in stream.errored; commit() reports it
  }

  get size(): number {
    return this.bytes;
  }

  /** Bytes held in memory, not yet sent. */
  protected get buffered(): number {
    return this.pendingBytes;
  }

  /** Bytes the key held before (read back by the driver) start the first part. */
  prime(data: Buffer): void {
    if (data.length === 0) return;
    this.pending.push(data);
    this.pendingBytes += data.length;
  }

  /** Takes every buffered byte out as one Buffer (for a single PUT, or a staging object). */
  protected takeAll(): Buffer {
    const all = this.pending.length === 1 ? this.pending[0]! : Buffer.concat(this.pending, this.pendingBytes);
    this.pending = [];
    this.pendingBytes = 0;
    return all;
  }

  /** Set-up before each part is sent (start the multipart upload, mark the segments); after the previous part finished. */
  protected abstract beforePart(): Promise<void>;
  /**
   * Sends one part: `body` is its bytes in pieces (as they came, not copied into one buffer:
   * the copy and its fresh pages cost more than the upload's own work), `size` their total. It
   * records the part's slot before its first await (parts are numbered in the order of the calls);
   * its promise settles when the part is stored.
   */
  protected abstract uploadPart(body: Buffer[], size: number): Promise<void>;
  /** Commit, after the stream ended and every full part is stored: send the rest, publish. */
  protected abstract finish(): Promise<void>;
  /** Cancel, after the part in flight settled: remove what this writer left. */
  protected abstract discard(): Promise<void>;
  /** Maps a failure of commit to the driver's errors (default: as it is). */
  protected mapError(e: unknown): never {
    throw e;
  }

  /** Uploads every full part pending (a single large write may hold several). */
  private async flushFull(): Promise<void> {
    while (this.pendingBytes >= this.partSize + this.holdBack) await this.flushPart(false);
  }

  /**
   * Cuts a part from the pending bytes (a full part, or with `last` all of them) and sends it once
   * the part before is stored; with `last`, waits for it too.
   */
  protected async flushPart(last: boolean): Promise<void> {
    const size = last ? this.pendingBytes : this.partSize;
    const body: Buffer[] = [];
    let n = 0;
    let i = 0;
    while (n < size) {
      const c = this.pending[i]!;
      if (n + c.length <= size) {
        body.push(c);
        n += c.length;
        i++;
      } else {
        body.push(c.subarray(0, size - n));
        this.pending[i] = c.subarray(size - n);
        n = size;
      }
    }
    this.pending = this.pending.slice(i);
    this.pendingBytes -= size;
    await this.settled();
    await this.beforePart();
    const run = this.uploadPart(body, size).catch((e: unknown) => {
      this.failure ??= e;
    });
    this.inflight = run;
    if (last) await this.settled();
  }

  /** Waits for the part in flight; throws the first failure of any part. */
  protected async settled(): Promise<void> {
    if (this.inflight) await this.inflight;
    if (this.failure) throw this.failure;
  }

  async commit(_options?: CommitOptions): Promise<void> {
    if (this.state !== 'open') throw new StorageError(`writer is ${this.state}: ${this.key}`, this.key);
    this.state = 'committing';
    try {
      await endWriterStream(this.stream, this.key);
      await this.settled();
      await this.finish();
    } catch (e) {
      this.state = 'open'; // the caller is expected to cancel()
      if (e instanceof StorageError) throw e;
      if (this.stream.errored && e === this.stream.errored) throw e;
      this.mapError(e);
    }
    this.pending = [];
    this.state = 'committed';
  }

  async cancel(): Promise<void> {
    if (this.state === 'cancelled') return;
    if (this.state !== 'open') throw new StorageError(`writer is ${this.state}: ${this.key}`, this.key);
    this.state = 'cancelled';
    if (!this.stream.destroyed) this.stream.destroy();
    this.pending = [];
    this.pendingBytes = 0;
    if (this.inflight) await this.inflight;
    await this.discard();
  }
}
