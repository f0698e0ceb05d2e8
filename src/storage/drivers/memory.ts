import { Readable, Writable } from 'node:stream';
import {
  type PutOptions,
  type ReaderOptions,
  endWriterStream,
  ContentTooLargeError,
  InvalidOffsetError,
  SizeMismatchError,
  sizeToCheck,
  PathNotFoundError,
  StorageError,
  validateKey,
  type CommitOptions,
  type FileInfo,
  type GetOptions,
  type StorageDriver,
  type Writer,
  type WriterOptions,
} from '../driver.js';

/** Chunk size of reader streams. */
const READ_CHUNK = 256 * 1024;

interface Entry {
  /** Never mutated after it is stored: readers keep a reference to it. */
  readonly data: Buffer;
  readonly modTime: Date;
}

/**
 * A driver holding everything in a Map, for tests. Same semantics as the filesystem driver
 * (it passes the same conformance suite): prefixes exist while keys lie below them, a writer's
 * bytes become readable at commit(), a reader keeps the bytes the key held when it was opened.
 */
export function createMemoryDriver(): StorageDriver {
  return new MemoryDriver();
}

class MemoryDriver implements StorageDriver {
  readonly name = 'memory';
  private readonly files = new Map<string, Entry>();

  async getContent(key: string, options?: GetOptions): Promise<Buffer> {
    validateKey(key);
    const { data } = this.entry(key);
    if (options?.maxSize !== undefined && data.length > options.maxSize) throw new ContentTooLargeError(key, options.maxSize);
    return Buffer.from(data);
  }

  async putContent(key: string, data: Buffer, _options?: PutOptions): Promise<void> {
    validateKey(key);
    this.files.set(key, { data: Buffer.from(data), modTime: new Date() });
  }

  async putContentIfAbsent(key: string, data: Buffer): Promise<boolean> {
    validateKey(key);
    if (this.files.has(key)) return false;
    this.files.set(key, { data: Buffer.from(data), modTime: new Date() });
    return true;
  }

  async reader(key: string, offset = 0, length?: number, options?: ReaderOptions): Promise<Readable> {
    validateKey(key);
    if (!Number.isSafeInteger(offset) || offset < 0) throw new InvalidOffsetError(key, offset);
    if (length !== undefined && (!Number.isSafeInteger(length) || length < 0)) throw new InvalidOffsetError(key, offset);
    const known = sizeToCheck(offset, length, options);
    const { data } = this.entry(key);
    if (known !== undefined && data.length !== known) throw new SizeMismatchError(key, known, data.length);
    if (offset > data.length) throw new InvalidOffsetError(key, offset);
    const end = length === undefined ? data.length : Math.min(data.length, offset + length);
    return Readable.from(chunks(data.subarray(offset, end)), { objectMode: false });
  }

  async writer(key: string, options: WriterOptions = {}): Promise<Writer> {
    validateKey(key);
    const before = options.append === true ? this.files.get(key)?.data : undefined;
    return new MemoryWriter(
      key,
      before,
      (data) => {
        this.files.set(key, { data, modTime: new Date() });
      },
      () => {
        this.files.delete(key);
      },
    );
  }

  async stat(key: string): Promise<FileInfo> {
    validateKey(key);
    const file = this.files.get(key);
    if (file) return { size: file.data.length, modTime: file.modTime };
    let newest: Date | undefined;
    for (const [k, e] of this.files) {
      if (k.startsWith(`${key}/`) && (newest === undefined || e.modTime > newest)) newest = e.modTime;
    }
    if (newest === undefined) throw new PathNotFoundError(key);
    return { size: 0, modTime: newest };
  }

  async list(prefix: string): Promise<string[]> {
    validateKey(prefix, true);
    const head = prefix === '' ? '' : `${prefix}/`;
    const children = new Set<string>();
    for (const k of this.files.keys()) {
      if (!k.startsWith(head)) continue;
      const slash = k.indexOf('/', head.length);
      children.add(slash < 0 ? k : k.slice(0, slash));
    }
    if (children.size === 0 && prefix !== '') throw new PathNotFoundError(prefix);
    return [...children].sort();
  }

  async move(src: string, dst: string): Promise<void> {
    validateKey(src);
    validateKey(dst);
    const file = this.files.get(src);
    if (file) {
      if (src === dst) return;
      this.files.set(dst, file);
      this.files.delete(src);
      return;
    }
    // A prefix moves with everything below it, as a directory rename does.
    const below = [...this.files].filter(([k]) => k.startsWith(`${src}/`));
    if (below.length === 0) throw new PathNotFoundError(src);
    for (const [k] of below) this.files.delete(k);
    for (const [k, e] of below) this.files.set(dst + k.slice(src.length), e);
  }

  async delete(key: string): Promise<void> {
    validateKey(key);
    let found = this.files.delete(key);
    for (const k of [...this.files.keys()]) {
      if (k.startsWith(`${key}/`)) {
        this.files.delete(k);
        found = true;
      }
    }
    if (!found) throw new PathNotFoundError(key);
  }

  async close(): Promise<void> {
    this.files.clear();
  }

  private entry(key: string): Entry {
    const e = this.files.get(key);
    if (!e) throw new PathNotFoundError(key);
    return e;
  }
}

class MemoryWriter implements Writer {
  readonly stream: Writable;
  private chunks: Buffer[];
  private bytes: number;
  private state: 'open' | 'committing' | 'committed' | 'cancelled' = 'open';

  constructor(
    private readonly key: string,
    before: Buffer | undefined,
    private readonly publish: (data: Buffer) => void,
    private readonly remove: () => void,
  ) {
    this.chunks = before ? [before] : [];
    this.bytes = before?.length ?? 0;
    this.stream = new Writable({
      highWaterMark: 1 << 20,
      write: (chunk: Buffer, _encoding, callback) => {
        // A copy: the caller may reuse its buffer once the write is acknowledged.
        this.chunks.push(Buffer.from(chunk));
        this.bytes += chunk.length;
        callback();
      },
    });
    // A failed stream must not crash the process when the caller writes without pipeline():
    // commit() reports the error (stream.errored), and cancel() cleans up.
    this.stream.on('error', noteStreamError);
  }

  get size(): number {
    return this.bytes;
  }

  async commit(_options?: CommitOptions): Promise<void> {
    if (this.state !== 'open') throw new StorageError(`writer is ${this.state}: ${this.key}`, this.key);
    this.state = 'committing';
    try {
      await endWriterStream(this.stream, this.key);
    } catch (e) {
      this.state = 'open'; // the caller is expected to cancel()
      throw e;
    }
    this.publish(Buffer.concat(this.chunks, this.bytes));
    this.chunks = [];
    this.state = 'committed';
  }

  async cancel(): Promise<void> {
    if (this.state === 'cancelled') return;
    if (this.state !== 'open') throw new StorageError(`writer is ${this.state}: ${this.key}`, this.key);
    this.state = 'cancelled';
    if (!this.stream.destroyed) this.stream.destroy();
    this.chunks = [];
    this.remove();
  }
}

/** The stream keeps its error in `errored`; commit() rethrows it. */
function noteStreamError(): void {}

function* chunks(data: Buffer): Generator<Buffer> {
  for (let i = 0; i < data.length; i += READ_CHUNK) yield data.subarray(i, i + READ_CHUNK);
}
