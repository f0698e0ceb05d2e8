import { createHash, randomUUID } from 'node:crypto';
import { Transform, type Readable, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { isNotFound, type StorageDriver } from '../storage/driver.js';
import { keys } from './keys.js';

export interface BlobInfo {
  readonly digest: string;
  readonly size: number;
}

/** Bytes hashed into an upload key, not yet at their digest (BlobStore.ingestStaged). */
export interface StagedBlob extends BlobInfo {
  readonly uuid: string;
  readonly uploadKey: string;
}

export class SizeLimitError extends Error {
  constructor(readonly limit: number) {
    super(`body exceeds ${limit} bytes`);
    this.name = 'SizeLimitError';
  }
}
export class ShortBodyError extends Error {
  constructor(
    readonly expected: number,
    readonly received: number,
  ) {
    super(`body ended after ${received} of ${expected} bytes`);
    this.name = 'ShortBodyError';
  }
}

/** Counts bytes and fails the pipeline past a limit (0 = none), without copying the chunks. */
export class Meter extends Transform {
  bytes = 0;
  constructor(private readonly limit: number) {
    super({ highWaterMark: 1 << 20 });
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.bytes += chunk.length;
    if (this.limit > 0 && this.bytes > this.limit) {
      cb(new SizeLimitError(this.limit));
      return;
    }
    cb(null, chunk);
  }
}

export class DigestMismatchError extends Error {
  constructor(
    readonly expected: string,
    readonly actual: string,
  ) {
    super(`the bytes hash to ${actual}, not ${expected}`);
    this.name = 'DigestMismatchError';
  }
}

export interface IngestOptions {
  /** Fail once more than this many bytes arrive (0 = no limit). */
  readonly maxSize: number;
  /** Content-Length, when the client gave one: fewer bytes is an incomplete upload. */
  readonly expectedSize?: number;
  /**
   * The digest the client named up front: bytes that hash otherwise are not published
   * (DigestMismatchError).
   */
  readonly digest?: string;
  /** Runs after the bytes are verified, before they are published: a throw publishes nothing. */
  readonly beforePublish?: () => Promise<void>;
}

export interface UploadPurgeListener {
  /** An upload (its uuid) the purge removed. */
  removed(uuid: string): void;
  /**
   * The uploads that existed when a purge pass that started at `startedAt` (ms) listed them, less
   * those it removed: one missing here and begun before that time has ended (on any node).
   */
  remaining?(uuids: ReadonlySet<string>, startedAt: number): void;
}

/** Something that sees the bytes in the pipeline and knows their sha256 when the stream ends. */
export interface HashingStage extends Transform {
  /** `sha256:<hex>` of the bytes that went through. */
  sha256(): string;
}

/**
 * Content-addressed blob storage over a driver: every layer byte is stored once, at its sha256.
 * Uploads stream to a private key, are verified, then published with move(); a failure at any step
 * cancels the upload, so no partial blob is ever visible. What is published at a digest is always
 * bytes hashed to that digest on their way in (never an object found there).
 */
export class BlobStore {
  private readonly purgeListeners: UploadPurgeListener[] = [];
  /**
   * Upload folders of single-request uploads (a v1 layer PUT, a v2 monolithic upload) this process
   * is writing right now. The purge leaves them alone however long their client stays silent: such
   * an upload is not removed under its own request (the campaign found 500s that way; the request
   * ends when the client does, or by the server's timeouts). v2 sessions are not held: an idle
   * session is purged even while a request holds it, which then ends with 404 (V2Uploads).
   * Folders of other nodes are judged by their age alone.
   */
  private readonly active = new Set<string>();
  private redirector: ((key: string) => Promise<string | undefined>) | undefined;

  constructor(private readonly driver: StorageDriver) {}

  /**
   * Serve blob reads by redirect: sign is the object store's pre-signed GET of a key (storage_redirect).
   * The routes decide who may read first; the URL only spares the registry the bytes.
   */
  redirectWith(sign: (key: string) => Promise<string | undefined>): void {
    this.redirector = sign;
  }

  /** A URL the client can GET the blob's bytes from directly, when redirects are on; else undefined. */
  async redirectURL(digest: string): Promise<string | undefined> {
    return this.redirector?.(keys.blob(hexOf(digest)));
  }

  async stat(digest: string): Promise<BlobInfo | undefined> {
    try {
      const info = await this.driver.stat(keys.blob(hexOf(digest)));
      return { digest, size: info.size };
    } catch (e) {
      if (isNotFound(e)) return undefined;
      throw e;
    }
  }

  /**
   * Whether the blob at digest holds exactly these bytes, read and compared (for small objects the
   * caller derived itself: an object of another size is not read).
   */
  async holds(digest: string, bytes: Buffer): Promise<boolean> {
    const info = await this.stat(digest);
    if (info?.size !== bytes.length) return false;
    return (await this.readSmall(digest, bytes.length))?.equals(bytes) ?? false;
  }

  /**
   * The bytes of a blob the caller knows to be small (stat first), or undefined when it is gone.
   * `maxSize`: its size as the stat told (a store that answers with more fails the read, unread).
   */
  async readSmall(digest: string, maxSize?: number): Promise<Buffer | undefined> {
    try {
      return await this.driver.getContent(keys.blob(hexOf(digest)), maxSize === undefined ? undefined : { maxSize });
    } catch (e) {
      if (isNotFound(e)) return undefined;
      throw e;
    }
  }

  /**
   * The blob's bytes from offset. `size`: the blob's size as the caller knows it (its stat, a link's
   * record): a stored object of another size fails the open (SizeMismatchError) instead of being
   * served cut or padded to it.
   */
  open(digest: string, offset = 0, length?: number, size?: number): Promise<Readable> {
    return this.driver.reader(keys.blob(hexOf(digest)), offset, length, size === undefined ? undefined : { size });
  }

  /**
   * Stream source → meter → hasher → upload key, make it durable, then publish it at its digest.
   * Returns the digest and size. The upload folder is held from the purge while this runs.
   */
  async ingest(source: Readable, hasher: HashingStage, opts: IngestOptions): Promise<BlobInfo> {
    if (opts.digest !== undefined && this.driver.atomicWriter) return this.ingestAtomic(opts.digest, source, hasher, opts);
    const uuid = randomUUID();
    this.active.add(uuid);
    try {
      return await this.ingestAt(uuid, source, hasher, opts);
    } finally {
      this.active.delete(uuid);
    }
  }

  private async ingestAt(uuid: string, source: Readable, hasher: HashingStage, opts: IngestOptions): Promise<BlobInfo> {
    const uploadKey = keys.upload(uuid);
    const writer = await this.driver.writer(uploadKey);
    const meter = new Meter(opts.maxSize);
    try {
      await pipeline(source, meter, hasher, writer.stream);
      if (opts.expectedSize !== undefined && meter.bytes !== opts.expectedSize) {
        throw new ShortBodyError(opts.expectedSize, meter.bytes);
      }
      await writer.commit();
      if (opts.digest !== undefined && hasher.sha256() !== opts.digest) throw new DigestMismatchError(opts.digest, hasher.sha256());
      await opts.beforePublish?.();
    } catch (e) {
      await writer.cancel().catch(() => undefined);
      await this.removeUpload(uuid);
      throw e;
    }
    const digest = hasher.sha256();
    try {
      await this.publish(uploadKey, digest);
    } finally {
      await this.removeUpload(uuid);
    }
    return { digest, size: meter.bytes };
  }

  /**
   * ingest of bytes whose digest is known before they arrive, on a driver with atomicWriter: they go
   * straight to the blob's key and are published there by the commit, once they hashed to the
   * digest (no upload key, no move: a small blob on S3 is one PutObject). A failure or a wrong
   * digest cancels the writer, which leaves whatever the key held before.
   */
  private async ingestAtomic(digest: string, source: Readable, hasher: HashingStage, opts: IngestOptions): Promise<BlobInfo> {
    const writer = await this.driver.atomicWriter!(keys.blob(hexOf(digest)));
    const meter = new Meter(opts.maxSize);
    try {
      await pipeline(source, meter, hasher, writer.stream);
      if (opts.expectedSize !== undefined && meter.bytes !== opts.expectedSize) throw new ShortBodyError(opts.expectedSize, meter.bytes);
      if (hasher.sha256() !== digest) throw new DigestMismatchError(digest, hasher.sha256());
      await opts.beforePublish?.();
      await writer.commit();
    } catch (e) {
      await writer.cancel().catch(() => undefined);
      throw e;
    }
    return { digest, size: meter.bytes };
  }

  /**
   * ingest in two steps, for a caller that makes many blobs durable at once (the importer, issue
   * 16): the bytes are hashed into an upload key and committed without a flush, and stay there
   * (held from this process's purge) until publishStaged moves them to their digest — which the
   * caller does only once the upload key is durable (StorageDriver.syncKeys), so that what is at a
   * digest is durable before anything can find it there. discardStaged drops them instead.
   */
  async ingestStaged(source: Readable, hasher: HashingStage, opts: IngestOptions): Promise<StagedBlob> {
    const uuid = randomUUID();
    this.active.add(uuid);
    const uploadKey = keys.upload(uuid);
    try {
      const writer = await this.driver.writer(uploadKey);
      const meter = new Meter(opts.maxSize);
      try {
        await pipeline(source, meter, hasher, writer.stream);
        if (opts.expectedSize !== undefined && meter.bytes !== opts.expectedSize) {
          throw new ShortBodyError(opts.expectedSize, meter.bytes);
        }
        await writer.commit({ durable: false });
      } catch (e) {
        await writer.cancel().catch(() => undefined);
        throw e;
      }
      return { digest: hasher.sha256(), size: meter.bytes, uuid, uploadKey };
    } catch (e) {
      await this.discardStaged({ uuid });
      throw e;
    }
  }

  /**
   * ingestStaged for bytes another thread writes straight into the upload key's local file
   * (`write(path)` creates it, and says what it wrote: digest and size, hashed from those very
   * bytes, with whatever else it computed). Undefined when the driver has no local files (then the
   * caller streams: ingestStaged).
   */
  async ingestStagedLocal<T extends { readonly digest: string; readonly size: number }>(
    write: (path: string) => Promise<T>,
  ): Promise<{ readonly staged: StagedBlob; readonly written: T } | undefined> {
    if (!this.driver.localUploadFile) return undefined;
    const uuid = randomUUID();
    this.active.add(uuid);
    const uploadKey = keys.upload(uuid);
    try {
      const written = await write(await this.driver.localUploadFile(uploadKey));
      return { staged: { digest: written.digest, size: written.size, uuid, uploadKey }, written };
    } catch (e) {
      await this.discardStaged({ uuid });
      throw e;
    }
  }

  /** Step 2 of ingestStaged: publish at the digest (not flushed: the caller syncs the key returned). */
  async publishStaged(b: StagedBlob): Promise<string> {
    const key = keys.blob(hexOf(b.digest));
    try {
      // the upload directory holds the data alone: it may become the blob's directory as a whole
      await this.driver.move(b.uploadKey, key, { durable: false, ownDirectory: true });
    } finally {
      await this.discardStaged(b);
    }
    return key;
  }

  /** Drop a staged blob that will not be published (or what is left of one that was). */
  async discardStaged(b: { readonly uuid: string }): Promise<void> {
    try {
      await this.removeUpload(b.uuid);
    } finally {
      this.active.delete(b.uuid);
    }
  }

  /**
   * Publish bytes the caller has just hashed (they are at uploadKey, complete, and written by no
   * one else) at their digest. Whatever is already at the digest is replaced, atomically: an
   * existing object is never trusted by its size or its presence (security issue 10, finding 13:
   * bytes that did not hash to their digest had been kept, and served to every repository).
   * Pushing the same content again is therefore still a success, it just costs a rename.
   */
  async publish(uploadKey: string, digest: string, options: { readonly sourceDirInUse?: boolean } = {}): Promise<void> {
    await this.driver.move(uploadKey, keys.blob(hexOf(digest)), options);
  }

  /**
   * Write a small object (a manifest, an image config) at its digest, replacing whatever is there:
   * the bytes are hashed here once more, so nothing but content that hashes to its digest is ever
   * stored under it.
   */
  async putSmall(digest: string, bytes: Buffer): Promise<void> {
    const actual = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
    if (actual !== digest) throw new Error(`putSmall: the bytes hash to ${actual}, not ${digest}`);
    await this.driver.putContent(keys.blob(hexOf(digest)), bytes);
  }

  /** Remove an upload's folder (data and state); nothing there is fine. */
  async removeUpload(uuid: string): Promise<void> {
    try {
      await this.driver.delete(keys.uploadDir(uuid));
    } catch (e) {
      if (!isNotFound(e)) throw e;
    }
  }

  /**
   * Remove uploads nobody has written to for maxAgeMs (a killed process, a vanished client, a
   * request that holds a session without sending bytes). An upload's age is that of its newest
   * object (data, state, or the data claimed by a request in progress). Every listener registered
   * with onUploadPurge hears of each upload removed, then of those that remain.
   */
  async purgeStaleUploads(maxAgeMs: number, now = Date.now()): Promise<number> {
    const startedAt = Date.now();
    let entries: string[];
    try {
      entries = await this.driver.list(keys.uploadsRoot);
    } catch (e) {
      if (!isNotFound(e)) throw e;
      entries = [];
    }
    const remaining = new Set(entries.map((dir) => dir.slice(dir.lastIndexOf('/') + 1)));
    let purged = 0;
    for (const dir of entries) {
      // in use by a request of this process: not stale, whatever its age
      if (this.active.has(dir.slice(dir.lastIndexOf('/') + 1))) continue;
      let newest = 0;
      try {
        for (const key of await this.driver.list(dir)) {
          try {
            newest = Math.max(newest, (await this.driver.stat(key)).modTime.getTime());
          } catch (e) {
            if (!isNotFound(e)) throw e; // moved or removed meanwhile: the others decide
          }
        }
      } catch (e) {
        if (!isNotFound(e)) throw e;
        continue; // removed meanwhile
      }
      if (now - newest >= maxAgeMs) {
        try {
          await this.driver.delete(dir);
        } catch (e) {
          if (!isNotFound(e)) throw e;
        }
        purged++;
        const uuid = dir.slice(dir.lastIndexOf('/') + 1);
        remaining.delete(uuid);
        for (const l of this.purgeListeners) l.removed(uuid);
      }
    }
    // writes a killed process left unfinished below uploads/ (a temporary file of putContent in an
    // otherwise empty session directory) are invisible to list(): the driver removes them itself
    if (this.driver.purgeLeftovers) await this.driver.purgeLeftovers(keys.uploadsRoot, maxAgeMs, now);
    for (const l of this.purgeListeners) l.remaining?.(remaining, startedAt);
    return purged;
  }

  /** Be told what each purge removes and leaves, to drop what is kept in memory about uploads. */
  onUploadPurge(listener: UploadPurgeListener): void {
    this.purgeListeners.push(listener);
  }
}

function hexOf(digest: string): string {
  const i = digest.indexOf(':');
  return i >= 0 ? digest.slice(i + 1) : digest;
}
