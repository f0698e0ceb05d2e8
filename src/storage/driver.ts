import type { Readable, Writable } from 'node:stream';
import { finished } from 'node:stream/promises';

/**
 * The byte-level storage driver contract. Drivers know only keys and bytes:
 * no digests, repositories or HTTP. Keys are '/'-separated relative paths made of
 * [A-Za-z0-9._-] segments (see validateKey); '.' and '..' segments are invalid.
 * Every method validates every key it is given and rejects with InvalidPathError
 * before touching storage.
 *
 * Visibility rules every driver must keep (the content layer relies on them):
 * - putContent is atomic: a reader sees the old bytes or the new bytes, never a mix,
 *   also when many callers put the same key concurrently (one complete value wins).
 * - a Writer's bytes are durable after commit() (fsync on disk, completed multipart on S3).
 *   Before commit the key may or may not be readable; callers only write to private
 *   upload keys and publish with move().
 * - move(src, dst) publishes src at dst; dst is complete when it becomes readable. It may
 *   be implemented as rename (filesystem) or copy + delete (object stores): callers never
 *   rely on src and dst being swapped atomically as a pair.
 * - move(src, …) claims src: of several moves of one src running at once (in one process or in
 *   several sharing the storage), exactly one succeeds and the others reject with
 *   PathNotFoundError. The content layer relies on it to let one request at a time work on an
 *   upload session (src/content/v2-uploads.ts). rename(2) gives it; an object store driver
 *   needs a conditional copy or a lock to give it.
 * - a stream returned by reader() keeps delivering the bytes the key held when it was
 *   opened (or, for object stores, the complete replacement), never a mix, even if the key
 *   is replaced or moved over while it is being read.
 * - prefixes ("directories") exist only while some key lies below them, as in an object
 *   store: deleting or moving away the last key below a prefix makes list/stat of that
 *   prefix throw PathNotFoundError (the filesystem driver removes emptied directories).
 * - a driver's own temporary objects are never visible through list() and cannot be
 *   addressed by a valid key.
 * - a key is either an object or a prefix: callers never put an object at a prefix of other
 *   keys, or below an object (a filesystem cannot hold both and throws StorageError; an
 *   object store could).
 *
 * test/storage/conformance.ts proves these rules; every driver must pass it unchanged.
 */
export interface FileInfo {
  readonly size: number;
  readonly modTime: Date;
}

export interface CommitOptions {
  readonly durable?: boolean | 'bytes';
}

export interface Writer {
  /** Bytes written so far (including bytes present before, when appending). */
  readonly size: number;
  /**
   * The sink for the bytes. End it (or let pipeline end it) before commit(); commit() also
   * ends it when the caller has not. Destroying it (a failed pipeline) makes commit() reject.
   */
  readonly stream: Writable;
  /**
   * End the stream if needed and make the written bytes durable at the key. Resolves after the
   * data is safe. Rejects if the stream failed or the writer was cancelled or already committed.
   * With `durable: false` the bytes are in place but a crash may lose them (a later durable commit
   * of the same key, or of an append to it, makes everything written before durable too).
   * `durable: 'bytes'`: the bytes are made durable but not the key's name, for a file the caller
   * moves next with a durable move (which makes the name at its destination durable); a driver
   * without that distinction treats it as `true`.
   */
  commit(options?: CommitOptions): Promise<void>;
  /**
   * Discard everything written to the key by this writer and remove the key (with append, the
   * bytes that were there before too). Safe to call after a failed stream; calling it twice is
   * a no-op. Rejects after a successful commit().
   */
  cancel(): Promise<void>;
}

/**
 * Where a resumable upload stands between requests, as its driver describes it: plain JSON, kept
 * by the caller (in storage, so that any node may continue) and handed back unchanged.
 */
export type ResumableState = { readonly [key: string]: unknown };

/** A Writer that may also stop without publishing, to be continued by a later resumableWriter. */
export interface ResumableWriter extends Writer {
  /**
   * End the stream and keep every byte written so far (with those of the state it continued) for
   * a later resumableWriter: not readable at the key yet. Resolves with the state to pass to it.
   * Like commit(), it rejects if the stream failed; the caller then cancels.
   */
  suspend(): Promise<ResumableState>;
}

export interface PutOptions {
  /** Default true: fsync before resolving. */
  readonly durable?: boolean;
  /**
   * move() only: src's directory holds src alone, and nothing else will be written there (the
   * importer's staged blob in its own upload directory). A driver with directories may then move
   * the directory itself when dst's does not exist yet, instead of making dst's and removing src's.
   * src and dst must have the same last component.
   */
  readonly ownDirectory?: boolean;
  /**
   * move() only: src's directory still holds other objects the caller removes next (a v2 upload
   * session's state): a driver with directories need not try to remove src's directory.
   */
  readonly sourceDirInUse?: boolean;
  /**
   * putContent only: the key is new, and nothing reads it before this call has returned (the
   * objects of an upload session before its id is known to anyone). A driver may then write it in
   * place instead of writing a temporary object and renaming it: a failure part-way may leave a
   * partial object, which is removed when it can be. A key that exists is replaced as usual.
   */
  readonly fresh?: boolean;
  /**
   * putContent only: the object stands for a fact by its name and time (a repository's layer link),
   * and its bytes are never read. A driver may then write it in place instead of through a
   * temporary object: a crash during the call may leave it partly written (it still exists).
   */
  readonly marker?: boolean;
}

export interface GetOptions {
  /**
   * The most bytes the caller expects the object to hold (a tag's link, a record of known bounds):
   * a larger object rejects with ContentTooLargeError, and no more of it is read than about this
   * many bytes (an object store's answer is dropped once its length says so, or once it runs past
   * it), so that a store cannot make a small read hold megabytes. Without it, the object is read whole.
   */
  readonly maxSize?: number;
}

export interface ReaderOptions {
  /**
   * The size of the whole object as the caller knows it (from a stat, or a record of it). A read
   * that reaches that end (no length, or offset + length >= size) rejects with SizeMismatchError
   * before any byte when the object holds another number of bytes: its end is not where the caller
   * believes, and what it would get (cut, or short) would pass for the whole, or for the rest, of the
   * object (an object store whose HEAD told another size than its GET finds; a file cut since its
   * stat). A read that stops before that end gets the object's bytes as usual. Without it, a length
   * reaching past the end stops at the end.
   */
  readonly size?: number;
}

/** The size a reader must find the object to hold (ReaderOptions.size), when the read reaches the end the caller knows of. */
export function sizeToCheck(offset: number, length: number | undefined, options: ReaderOptions | undefined): number | undefined {
  const size = options?.size;
  return size !== undefined && (length === undefined || offset + length >= size) ? size : undefined;
}

export interface WriterOptions {
  /**
   * Continue an existing key (v2 chunked uploads): size starts at the key's current size and
   * new bytes follow it. A missing key starts empty. Without append the key is truncated.
   */
  readonly append?: boolean;
}

export interface StorageDriver {
  readonly name: string;
  /**
   * Whole content of a small object. Throws PathNotFoundError (also for a prefix that holds no
   * object), and ContentTooLargeError for an object larger than `options.maxSize`.
   */
  getContent(key: string, options?: GetOptions): Promise<Buffer>;
  /**
   * Atomically replace the content of a small object (creating the prefixes above it). Durable when
   * it resolves, unless `options.durable` is false: then atomic all the same, but a crash may lose
   * it (for state that is worthless after a crash, such as an upload session's progress).
   */
  putContent(key: string, data: Buffer, options?: PutOptions): Promise<void>;
  /**
   * Stream from offset (default 0) for length bytes (default: to the end; a length past the end
   * stops at the end). offset == size gives an empty stream. Errors are reported by the returned
   * promise, before any byte: PathNotFoundError, InvalidOffsetError (offset > size, or a negative
   * or non-integer offset or length).
   */
  reader(key: string, offset?: number, length?: number, options?: ReaderOptions): Promise<Readable>;
  /** A streaming writer for a key (creating the prefixes above it). */
  writer(key: string, options?: WriterOptions): Promise<Writer>;
  /** Size and modification time. Throws PathNotFoundError for a missing key (a "directory" prefix has size 0). */
  stat(key: string): Promise<FileInfo>;
  /**
   * Full keys of the direct children of a prefix (objects and sub-prefixes alike), sorted by
   * code unit. '' lists the root (an empty root gives []). Throws PathNotFoundError when the
   * prefix has no children.
   */
  list(prefix: string): Promise<string[]>;
  /**
   * Publish src at dst (overwriting an object at dst), then src no longer exists. Throws
   * PathNotFoundError for a missing src. Durable when it resolves, unless `options.durable` is
   * false: then a crash may undo it (for renames that are worthless after a crash, such as a
   * request's claim on an upload session).
   */
  move(src: string, dst: string, options?: PutOptions): Promise<void>;
  /** Remove a key and everything below it. Throws PathNotFoundError. The root ('') cannot be deleted. */
  delete(key: string): Promise<void>;
  /**
   * Remove what the driver itself left below `prefix` by writes that never finished (a process
   * killed mid-write: temporary files, abandoned multipart uploads) and that are at least
   * `maxAgeMs` old, so writes in flight on other nodes stay. Invisible through list(), so only the
   * driver can find them. The upload purge calls it for the uploads prefix. Returns how many.
   */
  purgeLeftovers?(prefix: string, maxAgeMs: number, now?: number): Promise<number>;
  /**
   * Create a small object only if no object is at key: true when this call created it (with all
   * of data, atomically; durably unless `options.durable` is false), false when an object was there (nothing changed). Of several
   * calls for one missing key, in one process or in several sharing the storage, exactly one
   * returns true. Optional: the storage-level locks that keep several registry nodes on one
   * storage from interleaving their writes (src/content/storage-lock.ts) are built on it; a driver
   * without it gets locks that hold within one process only. (An object store gives it with a
   * conditional PUT, `If-None-Match: *`.)
   */
  putContentIfAbsent?(key: string, data: Buffer, options?: PutOptions): Promise<boolean>;
  /**
   * Object stores: a writer that continues an upload kept open between requests (v2 chunked
   * uploads), so that each request costs its own bytes, not a copy of those before. `state` is what
   * the last suspend() returned; undefined continues the object at key as writer(key, { append:
   * true }) does (a missing key starts empty). commit() publishes every byte at key, as a Writer's
   * commit does; cancel() discards them all. One writer at a time per key (the caller sees to it).
   * Without it, callers append with writer().
   */
  resumableWriter?(key: string, state: ResumableState | undefined): Promise<ResumableWriter>;
  /**
   * Discard a suspended upload (state from suspend()) that will not be continued. What a caller
   * fails to discard is removed by purgeAbandonedWrites once nothing beside it was written for its age.
   */
  discardResumable?(key: string, state: ResumableState): Promise<void>;
  /**
   * Object stores: a writer straight to a published key. Nothing of it is readable at key before
   * commit(), which replaces what is there at once (S3: one PutObject, or a completed multipart
   * upload); cancel() — and a process killed while writing — leaves key as it was (S3: what a
   * killed writer leaves is an incomplete multipart upload, invisible, removed by
   * purgeAbandonedWrites). A caller that can check the bytes before commit() (a v2 upload whose
   * digest the client named up front) saves the private upload key and the move(). Without it,
   * callers write to a private key and move().
   */
  atomicWriter?(key: string): Promise<Writer>;
  /**
   * Remove the object at key if there is one (no error if none); keys below it are not touched.
   * For callers that know key is an object (an upload session's claim): on an object store one
   * request, where delete() must first find out whether key is an object or a prefix.
   */
  removeObject?(key: string): Promise<void>;
  /**
   * Make durable what was written at these keys with `durable: false` (putContent, a writer's
   * commit, the destination of a move), with the directory entries naming them: one flush for many
   * small writes where each durable write would pay its own (the importer writes its records that
   * way, issue 16). Resolves once everything listed is durable; a key gone meanwhile is no error.
   * Optional: without it, a caller that needs durability writes durably.
   */
  syncKeys?(keys: readonly string[]): Promise<void>;
  /**
   * Drivers over a local directory: the file of a private upload key that does not exist yet, its
   * directories made, for a writer that is not this driver (the importer's layer-file worker,
   * which creates it with O_EXCL). Once written, the key is what a writer's commit with
   * `durable: false` leaves: syncKeys makes it durable, move publishes it, delete removes it.
   */
  localUploadFile?(key: string): Promise<string>;
  /** Release resources (timers, sockets). */
  close?(): Promise<void>;
  /**
   * Object stores: remove what writers of killed processes or dropped connections left behind
   * without a trace in list() (S3's incomplete multipart uploads, Swift's orphan segments) when
   * older than olderThanMs. Returns how many were removed. Run by the upload purge job.
   */
  purgeAbandonedWrites?(olderThanMs: number): Promise<number>;
}

export class StorageError extends Error {
  constructor(
    message: string,
    readonly key: string,
  ) {
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
/**
 * The storage cannot be reached or no longer holds what the registry needs (an object store's bucket
 * was removed, its credentials were revoked, it does not answer). Requests that need it answer 503;
 * the process keeps running and recovers when the storage does.
 */
export class StorageUnavailableError extends StorageError {
  constructor(message: string, key: string, options?: { cause?: unknown }) {
    super(message, key);
    if (options?.cause !== undefined) (this as { cause?: unknown }).cause = options.cause;
  }
}
/** The object holds more bytes than the caller allowed (GetOptions.maxSize). */
export class ContentTooLargeError extends StorageError {
  constructor(
    key: string,
    readonly maxSize: number,
  ) {
    super(`${key} holds more than the ${maxSize} bytes expected`, key);
  }
}
/** The object holds another number of bytes than the caller was told (ReaderOptions.size). */
export class SizeMismatchError extends StorageError {
  constructor(
    key: string,
    readonly expected: number,
    readonly found: number | string,
  ) {
    super(`${key} holds ${found} bytes, not the ${expected} expected`, key);
  }
}
export class InvalidOffsetError extends StorageError {
  constructor(
    key: string,
    readonly offset: number,
  ) {
    super(`invalid offset ${offset} for ${key}`, key);
  }
}

const SEGMENT = /^[A-Za-z0-9._-]+$/;
/** Longest key accepted (S3 allows 1024 bytes). */
export const MAX_KEY_LENGTH = 1024;
/** Longest segment accepted (NAME_MAX of common filesystems). */
export const MAX_SEGMENT_LENGTH = 255;

/** True when name can be one segment of a key. Drivers use it to hide their own entries. */
export function isValidSegment(name: string): boolean {
  return name.length <= MAX_SEGMENT_LENGTH && SEGMENT.test(name) && name !== '.' && name !== '..';
}

/**
 * Throws InvalidPathError unless key is a safe relative path. '' is the root and is
 * accepted only when allowRoot is set (list); it is never a valid key for delete.
 */
export function validateKey(key: string, allowRoot = false): void {
  if (key === '') {
    if (allowRoot) return;
    throw new InvalidPathError(key);
  }
  if (key.length > MAX_KEY_LENGTH) throw new InvalidPathError(key);
  for (const seg of key.split('/')) {
    if (!isValidSegment(seg)) throw new InvalidPathError(key);
  }
}

export function isNotFound(err: unknown): err is PathNotFoundError {
  return err instanceof PathNotFoundError;
}

/**
 * The first step of every Writer.commit(): fail if the stream broke, else end it and wait until
 * every byte has been handed on. Drivers then make the bytes durable in their own way.
 */
export async function endWriterStream(stream: Writable, key: string): Promise<void> {
  if (stream.destroyed && !stream.writableFinished) {
    throw stream.errored ?? new StorageError(`writer stream was destroyed: ${key}`, key);
  }
  if (!stream.writableEnded) stream.end();
  await finished(stream);
}
