import type { Readable, Writable } from 'node:stream';

/**
 * The byte-level storage driver contract. Drivers know only keys and bytes:
 * no digests, repositories or HTTP. Keys are '/'-separated relative paths made of
 * [A-Za-z0-9._-] segments (see validateKey); '.' and '..' segments are invalid.
 *
 * Visibility rules every driver must keep (the content layer relies on them):
 * - putContent is atomic: a reader sees the old bytes or the new bytes, never a mix.
 * - a Writer's bytes are durable after commit() (fsync on disk, completed multipart on S3).
 *   Before commit the key may or may not be readable; callers only write to private
 *   upload keys and publish with move().
 * - move(src, dst) publishes src at dst; dst is complete when it becomes readable. It may
 *   be implemented as rename (filesystem) or copy + delete (object stores): callers never
 *   rely on src and dst being swapped atomically as a pair.
 */
export interface FileInfo {
  readonly size: number;
  readonly modTime: Date;
}

export interface Writer {
  /** Bytes written so far (including bytes present before, when appending). */
  readonly size: number;
  /** The sink for the bytes. End it (or let pipeline end it) before commit(). */
  readonly stream: Writable;
  /** Make the written bytes durable at the key. Resolves after the data is safe. */
  commit(): Promise<void>;
  /** Discard everything written to the key by this writer and remove the key. */
  cancel(): Promise<void>;
}

export interface WriterOptions {
  /** Continue an existing key (v2 chunked uploads); otherwise the key is truncated. */
  readonly append?: boolean;
}

export interface StorageDriver {
  readonly name: string;
  /** Whole content of a small object. Throws PathNotFoundError. */
  getContent(key: string): Promise<Buffer>;
  /** Atomically replace the content of a small object. */
  putContent(key: string, data: Buffer): Promise<void>;
  /** Stream from offset (default 0) for length bytes (default: to the end). Throws PathNotFoundError, InvalidOffsetError. */
  reader(key: string, offset?: number, length?: number): Promise<Readable>;
  /** A streaming writer for a key. */
  writer(key: string, options?: WriterOptions): Promise<Writer>;
  /** Size and modification time. Throws PathNotFoundError for a missing key (a "directory" prefix has size 0). */
  stat(key: string): Promise<FileInfo>;
  /** Full keys of the direct children of a prefix, sorted. Throws PathNotFoundError when the prefix has none. */
  list(prefix: string): Promise<string[]>;
  /** Publish src at dst (overwriting dst), then src no longer exists. Throws PathNotFoundError. */
  move(src: string, dst: string): Promise<void>;
  /** Remove a key and everything below it. Throws PathNotFoundError. */
  delete(key: string): Promise<void>;
  /** Release resources (timers, sockets). */
  close?(): Promise<void>;
}

export class StorageError extends Error {
  constructor(message: string, readonly key: string) {
    super(message);
    this.name = new.target.name;
  }
}
export class PathNotFoundError extends StorageError {
  constructor(key: string) {
    super(`path not found: ${key}`, key);
  }
}
export class InvalidPathError extends StorageError {
  constructor(key: string) {
    super(`invalid path: ${JSON.stringify(key)}`, key);
  }
}
export class InvalidOffsetError extends StorageError {
  constructor(key: string, readonly offset: number) {
    super(`invalid offset ${offset} for ${key}`, key);
  }
}

const SEGMENT = /^[A-Za-z0-9._-]+$/;

/** Throws InvalidPathError unless key is a safe relative path ('' is the root, for list/delete). */
export function validateKey(key: string, allowRoot = false): void {
  if (key === '') {
    if (allowRoot) return;
    throw new InvalidPathError(key);
  }
  if (key.length > 1024) throw new InvalidPathError(key);
  for (const seg of key.split('/')) {
    if (!SEGMENT.test(seg) || seg === '.' || seg === '..') throw new InvalidPathError(key);
  }
}

export function isNotFound(err: unknown): err is PathNotFoundError {
  return err instanceof PathNotFoundError;
}
