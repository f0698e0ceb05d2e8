import { createHash, randomUUID, type Hash } from 'node:crypto';
import { Transform, type Readable, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { StorageDriver } from '../storage/driver.js';
import { V2Error } from '../errors/v2.js';
import type { BlobStore } from './blob-store.js';
import { keys } from './keys.js';
import { keyExists, readOptional, removeIfPresent } from './small-objects.js';
import type { V2Name } from './v2-names.js';

interface UploadState {
  readonly name: string;
  readonly offset: number;
  readonly started: number;
}

/** Hashes and counts bytes on their way to storage, without copying them. */
class HashTap extends Transform {
  bytes = 0;
  constructor(
    readonly hash: Hash,
    private readonly limit: number,
  ) {
    super({ highWaterMark: 1 << 20 });
  }
  override _transform(chunk: Buffer, _e: BufferEncoding, cb: TransformCallback): void {
    this.bytes += chunk.length;
    if (this.limit > 0 && this.bytes > this.limit) {
      cb(new V2Error('SIZE_INVALID', undefined, 'blob exceeds the configured maximum size'));
      return;
    }
    this.hash.update(chunk);
    cb(null, chunk);
  }
}

const stateKey = (uuid: string): string => `uploads/${uuid}/state`;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/**
 * Blob upload sessions of the v2 API (spec v2-bridge §1.4), kept server-side in storage
 * (uploads/<uuid>/{state,data}) so any node can continue one and every Location ever issued for a
 * live session keeps working. Session data and state are not fsynced chunk by chunk (as with
 * distribution, a crash may cost an upload in progress: the data no longer matches the state and
 * the client starts the blob again); the data is made durable once, before the blob is published.
 * The sha256 state lives in memory on the node that wrote the bytes; a node that
 * continues someone else's session (or one from before a restart) re-hashes the stored prefix once.
 */
export class V2Uploads {
  private readonly hashes = new Map<string, { hash: Hash; offset: number }>();

  constructor(
    private readonly driver: StorageDriver,
    private readonly blobs: BlobStore,
    private readonly maxSize: number,
  ) {}

  async start(name: V2Name): Promise<string> {
    const uuid = randomUUID();
    const state: UploadState = { name, offset: 0, started: Date.now() };
    // the session's state need not survive a crash (the client starts the blob again): no fsync
    await this.driver.putContent(stateKey(uuid), Buffer.from(JSON.stringify(state)), { durable: false });
    this.hashes.set(uuid, { hash: createHash('sha256'), offset: 0 });
    return uuid;
  }

  /** The session's state, or BLOB_UPLOAD_UNKNOWN (also for a session of another repository). */
  async state(name: V2Name, uuid: string): Promise<UploadState> {
    if (!UUID.test(uuid)) throw new V2Error('BLOB_UPLOAD_UNKNOWN');
    const raw = await readOptional(this.driver, stateKey(uuid));
    if (!raw) throw new V2Error('BLOB_UPLOAD_UNKNOWN');
    const st = JSON.parse(raw.toString('utf8')) as UploadState;
    if (st.name !== name) throw new V2Error('BLOB_UPLOAD_UNKNOWN');
    return st;
  }

  private async hashAt(uuid: string, offset: number): Promise<Hash> {
    const mine = this.hashes.get(uuid);
    if (mine && mine.offset === offset) return mine.hash;
    // Another node wrote the bytes so far (or we restarted): hash the stored prefix once.
    const hash = createHash('sha256');
    if (offset > 0) {
      const r = await this.driver.reader(keys.upload(uuid), 0, offset);
      for await (const c of r) hash.update(c as Buffer);
    }
    return hash;
  }

  /**
   * Append a body to the session. `start` is the Content-Range start when the client sent one:
   * it must equal the current size (spec §1.6 items 2–3: 416 otherwise).
   */
  async append(name: V2Name, uuid: string, body: Readable, opts: { start?: number; contentLength?: number; last?: boolean } = {}, known?: UploadState): Promise<number> {
    const st = known ?? (await this.state(name, uuid));
    if (opts.start !== undefined && opts.start !== st.offset) {
      throw new V2Error('RANGE_INVALID', undefined, undefined, { Range: st.offset > 0 ? `0-${st.offset - 1}` : '0-0' });
    }
    const hash = await this.hashAt(uuid, st.offset);
    this.hashes.delete(uuid); // until this append is complete, nobody may continue from it
    const tap = new HashTap(hash, this.maxSize > 0 ? this.maxSize - st.offset : 0);
    const writer = await this.driver.writer(keys.upload(uuid), { append: true });
    if (writer.size !== st.offset) {
      await writer.cancel().catch(() => undefined);
      throw new V2Error('BLOB_UPLOAD_INVALID', undefined, 'upload data does not match its state: start again');
    }
    try {
      await pipeline(body, tap, writer.stream);
      if (opts.contentLength !== undefined && tap.bytes !== opts.contentLength) throw new V2Error('SIZE_INVALID');
      // the last chunk is made durable with everything before it; earlier ones need not be
      await writer.commit({ durable: opts.last === true });
    } catch (e) {
      // A failed append leaves the session unusable (its data may hold part of the chunk): drop it,
      // the client starts the blob again. Nothing of it was ever visible.
      await writer.cancel().catch(() => undefined);
      await this.cancel(name, uuid).catch(() => undefined);
      throw e;
    }
    const offset = st.offset + tap.bytes;
    // the last chunk (PUT ?digest= with a body) is published right away: no state to keep
    if (!opts.last) await this.driver.putContent(stateKey(uuid), Buffer.from(JSON.stringify({ ...st, offset })), { durable: false });
    this.hashes.set(uuid, { hash, offset });
    return offset;
  }

  /** PUT ?digest=: append an optional last chunk, verify, publish, link into the repository. */
  async finish(name: V2Name, uuid: string, digest: string, body: Readable | undefined, contentLength?: number): Promise<number> {
    const st = await this.state(name, uuid);
    let offset = st.offset;
    if (body) offset = await this.append(name, uuid, body, { last: true, ...(contentLength !== undefined ? { contentLength } : {}) }, st);
    else if (offset > 0) {
      // the PATCHes before were not fsynced: make the whole file durable before it is published
      const w = await this.driver.writer(keys.upload(uuid), { append: true });
      await w.commit();
    }
    const hash = await this.hashAt(uuid, offset);
    this.hashes.delete(uuid);
    const actual = `sha256:${hash.copy().digest('hex')}`;
    if (actual !== digest) {
      await this.cancel(name, uuid);
      throw new V2Error('DIGEST_INVALID', { expected: digest, actual });
    }
    if (offset === 0) {
      // an empty blob: there is no data file to move
      await this.driver.putContent(keys.upload(uuid), Buffer.alloc(0));
    }
    await this.blobs.publish(keys.upload(uuid), digest, offset);
    await this.link(name, digest);
    await this.blobs.removeUpload(uuid);
    return offset;
  }

  async cancel(name: V2Name, uuid: string): Promise<void> {
    await this.state(name, uuid);
    this.hashes.delete(uuid);
    await this.blobs.removeUpload(uuid);
  }

  /** A blob is visible in a repository only once pushed or mounted there (spec §1.4). */
  async link(name: V2Name, digest: string): Promise<void> {
    await this.driver.putContent(linkKey(name, digest), Buffer.from(digest));
  }

  async linked(name: V2Name, digest: string): Promise<boolean> {
    return keyExists(this.driver, linkKey(name, digest));
  }

  async unlink(name: V2Name, digest: string): Promise<boolean> {
    return removeIfPresent(this.driver, linkKey(name, digest));
  }
}

export function linkKey(name: string, digest: string): string {
  return `v2/repositories/${name}/_layers/${digest.slice('sha256:'.length)}`;
}

