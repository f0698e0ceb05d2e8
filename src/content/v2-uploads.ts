import { createHash, randomBytes, randomUUID, type Hash } from 'node:crypto';
import { Transform, type Readable, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { isNotFound, type ResumableState, type StorageDriver } from '../storage/driver.js';
import { V2Error } from '../errors/v2.js';
import { DigestMismatchError, ShortBodyError, type BlobStore, type HashingStage } from './blob-store.js';
import { keys } from './keys.js';
import { uploadSessions } from '../metrics/registry.js';
import { keyExists, readOptional, RECORD_MAX, removeIfPresent } from './small-objects.js';
import type { V2Name } from './v2-names.js';

/**
 * Bound of a session's state read back: a name, two numbers and an object store's suspended upload
 * (S3: up to 10,000 parts of ~50 bytes each, their number and ETag).
 */
const STATE_MAX = 1024 * 1024;

interface UploadState {
  readonly name: string;
  readonly offset: number;
  readonly started: number;
  /**
   * On a driver with resumable writers (object stores): the suspended upload that holds the bytes
   * so far (null or absent: the object at blobKey holds them, or nothing yet).
   */
  readonly parted?: ResumableState | null;
}

/**
 * Hashes and counts bytes on their way to storage, without copying them. `limit`: the bytes this
 * body may still bring (Infinity: no cap; 0: none, e.g. a session already holding max_layer_size).
 */
class HashTap extends Transform implements HashingStage {
  bytes = 0;
  constructor(
    readonly hash: Hash,
    private readonly limit: number,
  ) {
    super({ highWaterMark: 1 << 20 });
  }
  override _transform(chunk: Buffer, _e: BufferEncoding, cb: TransformCallback): void {
    this.bytes += chunk.length;
    if (this.bytes > this.limit) {
      cb(new V2Error('SIZE_INVALID', undefined, 'blob exceeds the configured maximum size'));
      return;
    }
    this.hash.update(chunk);
    cb(null, chunk);
  }
  sha256(): string {
    return `sha256:${this.hash.copy().digest('hex')}`;
  }
}

const stateKey = (uuid: string): string => `uploads/${uuid}/state`;
/** With resumable writers: where the bytes go (uploads/<uuid>/data is then an empty token to claim). */
const blobKey = (uuid: string): string => `uploads/${uuid}/blob`;
/** With resumable writers and putContentIfAbsent: the object a request creates to hold the session (see V2Uploads). */
const lockKey = (uuid: string): string => `uploads/${uuid}/claim`;
/** Where a request keeps the session's data while it works on it (see V2Uploads). */
const claimKey = (uuid: string): string => `uploads/${uuid}/claim-${randomBytes(8).toString('hex')}`;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export const SESSION_BUSY = 'another request of this upload session is in progress';
const busy = (): V2Error => new V2Error('BLOB_UPLOAD_INVALID', undefined, SESSION_BUSY);
const unknown = (): V2Error => new V2Error('BLOB_UPLOAD_UNKNOWN');

export interface UploadLimits {
  /** Open sessions per repository (0: no limit). */
  readonly perRepository: number;
  /** Open sessions per owner: an account, or a client address for anonymous callers (0: no limit). */
  readonly perOwner: number;
  /** Most sha256 states kept in memory; past it the least recently used is dropped. */
  readonly hashEntries?: number;
  /** Seconds a client refused for too many sessions is told to wait (Retry-After). */
  readonly retryAfter?: number;
  /**
   * The upload purge's age (ms): a request that held a session for less than half of it need not
   * check that the purge left the session alone. Unset: always checked.
   */
  readonly purgeAgeMs?: number;
}

const NO_LIMITS: UploadLimits = { perRepository: 0, perOwner: 0 };
const DEFAULT_HASH_ENTRIES = 4096;
/** A set of slots is checked against storage at most this often (ms) when it is full. */
const RECHECK_MS = 2000;

/**
 * Open sessions counted per repository and per owner, in this process (security issue 10, finding
 * 16). A session leaves when it is finished, cancelled or purged here; one that ended on another
 * node sharing the storage is found out (its state is gone) when its set is full, and by the next
 * purge pass (it is not listed), so the limits hold per node and no slot outlives its session
 * for long.
 */
class SessionSlots {
  private readonly sessions = new Map<string, { readonly keys: readonly string[]; readonly since: number }>();
  private readonly sets = new Map<string, Set<string>>();
  private readonly checked = new Map<string, number>();
  /** Reserved, state not written yet: not to be taken for dead by a check. */
  private readonly pending = new Set<string>();

  constructor(
    private readonly limits: UploadLimits,
    private readonly alive: (uuid: string) => Promise<boolean>,
  ) {}

  get size(): number {
    return this.sessions.size;
  }

  /** Take a slot in both sets for uuid, or throw TOOMANYREQUESTS. */
  async reserve(uuid: string, repoKey: string, ownerKey: string): Promise<void> {
    const wanted: [string, number][] = [
      [repoKey, this.limits.perRepository],
      [ownerKey, this.limits.perOwner],
    ];
    for (const [key, limit] of wanted) {
      if (limit > 0 && (this.sets.get(key)?.size ?? 0) >= limit) await this.recheck(key);
    }
    // decided and taken without awaiting: concurrent requests cannot both take the last slot
    for (const [key, limit] of wanted) {
      if (limit > 0 && (this.sets.get(key)?.size ?? 0) >= limit) {
        throw new V2Error('TOOMANYREQUESTS', { limit, open: this.sets.get(key)!.size }, 'too many upload sessions open: finish or cancel one', {
          'Retry-After': String(this.limits.retryAfter ?? 30),
        });
      }
    }
    const ks = wanted.map(([k]) => k);
    if (!this.sessions.has(uuid)) uploadSessions.inc();
    this.sessions.set(uuid, { keys: ks, since: Number.POSITIVE_INFINITY });
    for (const k of ks) {
      let set = this.sets.get(k);
      if (!set) this.sets.set(k, (set = new Set()));
      set.add(uuid);
    }
    this.pending.add(uuid);
  }

  /** The session's state is written: from now on a listing of the uploads shows it. */
  started(uuid: string): void {
    this.pending.delete(uuid);
    const s = this.sessions.get(uuid);
    if (s) this.sessions.set(uuid, { keys: s.keys, since: Date.now() });
  }

  release(uuid: string): void {
    this.pending.delete(uuid);
    const ks = this.sessions.get(uuid)?.keys;
    if (!ks) return;
    this.sessions.delete(uuid);
    uploadSessions.dec();
    for (const k of ks) {
      const set = this.sets.get(k);
      set?.delete(uuid);
      if (set?.size === 0) {
        this.sets.delete(k);
        this.checked.delete(k);
      }
    }
  }

  /** Sessions written before `time` (strictly) that are not among `present`: they have ended. */
  endedBefore(time: number, present: ReadonlySet<string>): string[] {
    const out: string[] = [];
    for (const [uuid, s] of this.sessions) if (s.since < time && !this.pending.has(uuid) && !present.has(uuid)) out.push(uuid);
    return out;
  }

  /** Drop the sessions of a full set that no longer exist in storage (ended on another node). */
  private async recheck(key: string): Promise<void> {
    const last = this.checked.get(key) ?? 0;
    if (Date.now() - last < RECHECK_MS) return;
    this.checked.set(key, Date.now());
    const uuids = [...(this.sets.get(key) ?? [])].filter((u) => !this.pending.has(u));
    const alive = await Promise.all(uuids.map((u) => this.alive(u)));
    uuids.forEach((u, i) => {
      if (!alive[i]) this.release(u);
    });
  }
}

/**
 * Blob upload sessions of the v2 API (spec v2-bridge §1.4), kept server-side in storage
 * (uploads/<uuid>/{state,data}) so any node can continue one and every Location ever issued for a
 * live session keeps working.
 *
 * One request at a time (security issue 10, finding 13): a PATCH, PUT or DELETE first claims the
 * session's data file by moving it to a name of its own (uploads/<uuid>/claim-<random>); the
 * driver lets exactly one of concurrent moves win, also across processes sharing the storage.
 * The request then writes, updates the state and moves the file back (PATCH), publishes it
 * (PUT) or removes the session (DELETE). A request that finds no data file to claim is refused
 * with 400 BLOB_UPLOAD_INVALID while the session's state exists (another request holds it), else
 * 404 BLOB_UPLOAD_UNKNOWN (the session is over), and changes nothing. In this process a set of
 * busy sessions answers before storage is asked. A node that dies holding a claim leaves the
 * session unusable; the purge job removes it.
 *
 * On a driver with resumable writers (object stores: S3) there is no data file: the bytes go to an
 * upload the driver keeps open between requests at uploads/<uuid>/blob (S3: one multipart upload,
 * its id and parts in the state's `parted`), so a PATCH costs its own bytes and not a copy of the
 * upload so far; the final PUT completes it and publishes it at the digest. A request claims the
 * session by creating uploads/<uuid>/claim (putContentIfAbsent: exactly one of concurrent creates
 * wins, across nodes too) with a token of its own, and removes it when done; it checks that its
 * token is still there before it writes the state or publishes (the purge may have removed the
 * session meanwhile). A PUT that brings the whole blob to a session with nothing in it yet writes
 * it straight to its digest's key (atomicWriter: one PutObject for a small blob), verified before
 * the write is committed. A POST ?digest= with the whole blob has no session in storage at all
 * (putWhole). On S3 a small blob pushed with POST + PUT thus costs 7 requests to the store: the
 * state; the claim, the state read, the blob, the claim check, the link, the folder's listing and
 * removal (a monolithic POST: the blob and the link).
 *
 * Session data and state are not fsynced chunk by chunk (as with distribution, a crash may cost an
 * upload in progress: the data no longer matches the state and the client starts the blob again);
 * the data is made durable once, before the blob is published. The sha256 state lives in memory on
 * the node that wrote the bytes (at most `hashEntries` of them); a node that continues someone
 * else's session (or one from before a restart, or whose state was dropped) re-hashes the stored
 * prefix once.
 */
export class V2Uploads {
  /** Per session this node wrote last: the sha256 state after its bytes, and the state it stored. */
  private readonly hashes = new Map<string, { hash: Hash; st: UploadState; at: number }>();
  private readonly busy = new Set<string>();
  private readonly slots: SessionSlots;
  private readonly hashEntries: number;
  /** The driver continues uploads kept open between requests (object stores): see write(). */
  private readonly resumable: boolean;
  /**
   * Object stores (resumable writers and putContentIfAbsent): a request holds a session by creating
   * its claim object (uploads/<uuid>/claim) rather than by moving its data token, which costs an
   * object store a copy each way. The token this request wrote there, per session it holds.
   */
  private readonly locking: boolean;
  private readonly tokens = new Map<string, Buffer>();
  /** When this request claimed the session (ms), per session it holds (see mayBePurged). */
  private readonly claimedAt = new Map<string, number>();
  private readonly purgeAgeMs: number | undefined;

  constructor(
    private readonly driver: StorageDriver,
    private readonly blobs: BlobStore,
    private readonly maxSize: number,
    limits: UploadLimits = NO_LIMITS,
  ) {
    this.hashEntries = limits.hashEntries ?? DEFAULT_HASH_ENTRIES;
    this.purgeAgeMs = limits.purgeAgeMs;
    this.resumable = typeof driver.resumableWriter === 'function';
    this.locking = this.resumable && typeof driver.putContentIfAbsent === 'function';
    this.slots = new SessionSlots(limits, (uuid) => keyExists(this.driver, stateKey(uuid)));
    blobs.onUploadPurge({
      removed: (uuid) => this.forget(uuid),
      // sessions that ended on another node sharing the storage leave this node's slots too
      remaining: (uuids, startedAt) => {
        for (const uuid of this.slots.endedBefore(startedAt, uuids)) this.forget(uuid);
        for (const [uuid, h] of this.hashes) if (h.at < startedAt && !uuids.has(uuid)) this.hashes.delete(uuid);
      },
    });
  }

  /** What this node keeps in memory about sessions (tests and diagnostics). */
  memory(): { sessions: number; hashes: number } {
    return { sessions: this.slots.size, hashes: this.hashes.size };
  }

  /**
   * Open a session for name on behalf of owner (`account:<name>` or `address:<ip>`), or throw
   * TOOMANYREQUESTS when the repository or the owner has its limit of open sessions.
   */
  async start(name: V2Name, owner: string): Promise<string> {
    const uuid = randomUUID();
    await this.slots.reserve(uuid, `repository:${name}`, owner);
    const state: UploadState = { name, offset: 0, started: Date.now() };
    try {
      // an empty data file to claim (unless requests claim with an object of their own); neither it
      // nor the state need survive a crash (the client starts the blob again): no fsync. Nobody
      // knows the session's id yet: both are written in place (fresh)
      if (!this.locking) await this.driver.putContent(keys.upload(uuid), Buffer.alloc(0), { durable: false, fresh: true });
      await this.driver.putContent(stateKey(uuid), Buffer.from(JSON.stringify(state)), { durable: false, fresh: true });
    } catch (e) {
      await this.drop(uuid).catch(() => undefined);
      throw e;
    }
    this.slots.started(uuid);
    this.keepHash(uuid, createHash('sha256'), state);
    return uuid;
  }

  /** The session's state, or BLOB_UPLOAD_UNKNOWN (also for a session of another repository). */
  async state(name: V2Name, uuid: string): Promise<UploadState> {
    if (!UUID.test(uuid)) throw unknown();
    const st = await this.readState(uuid);
    if (!st || st.name !== name) throw unknown();
    return st;
  }

  /**
   * Append a body to the session. `start` is the Content-Range start when the client sent one:
   * it must equal the current size (spec §1.6 items 2–3: 416 otherwise).
   */
  async append(name: V2Name, uuid: string, body: Readable, opts: { start?: number; contentLength?: number } = {}): Promise<number> {
    return this.exclusive(name, uuid, async (st, claim) => {
      if (opts.start !== undefined && opts.start !== st.offset) {
        await this.release(uuid, claim);
        throw new V2Error('RANGE_INVALID', undefined, undefined, { Range: st.offset > 0 ? `0-${st.offset - 1}` : '0-0' });
      }
      const { hash, offset, parted } = await this.write(uuid, st, claim, body, { ...opts, last: false });
      const next: UploadState = { ...st, offset, ...(parted !== undefined ? { parted } : {}) };
      // the purge may have removed a session held longer than upload_purge_age without a byte:
      // it stays removed (writing its state would bring it back)
      if (this.locking) {
        // the purge lists a folder before it deletes what it listed: a state written after its
        // listing stays, but the claim is gone then, and the session is dropped here
        await this.driver.putContent(stateKey(uuid), Buffer.from(JSON.stringify(next)), { durable: false });
        if (this.mayBePurged(uuid) && !(await this.stillClaimed(uuid))) {
          await this.drop(uuid, parted);
          throw unknown();
        }
      } else {
        if (!(await keyExists(this.driver, stateKey(uuid)))) {
          await this.drop(uuid, parted);
          throw unknown();
        }
        await this.driver.putContent(stateKey(uuid), Buffer.from(JSON.stringify(next)), { durable: false });
      }
      await this.release(uuid, claim);
      this.keepHash(uuid, hash, next);
      return offset;
    });
  }

  /** PUT ?digest=: append an optional last chunk, verify, publish, link into the repository. */
  async finish(name: V2Name, uuid: string, digest: string, body: Readable | undefined, contentLength?: number): Promise<number> {
    return this.exclusive(name, uuid, async (st, claim) => {
      // the whole blob in this request, on an object store: straight to its key (ingestWhole)
      if (body && st.offset === 0 && !st.parted && this.locking && this.driver.atomicWriter) {
        this.hashes.delete(uuid);
        let size: number;
        try {
          size = await this.ingestWhole(digest, body, contentLength, async () => {
            // a session purged while its body came (a client silent past upload_purge_age) stays
            // removed and publishes nothing, as on the other paths
            if (this.mayBePurged(uuid) && !(await this.stillClaimed(uuid))) throw unknown();
          });
        } catch (e) {
          await this.drop(uuid, null).catch(() => undefined);
          throw e;
        }
        try {
          await this.linkSession(name, uuid, digest);
        } finally {
          await this.drop(uuid, null, true);
        }
        return size;
      }
      let offset = st.offset;
      let hash: Hash;
      // the complete bytes: the claimed file, or with resumable writers the object they publish
      const source = this.resumable ? blobKey(uuid) : claim;
      if (body) {
        ({ hash, offset } = await this.write(uuid, st, claim, body, { last: true, ...(contentLength !== undefined ? { contentLength } : {}) }));
      } else if (this.resumable) {
        let at: UploadState;
        ({ hash, st: at } = await this.hashAt(uuid, claim, st));
        // the parts so far become the object (an object store completes its multipart upload)
        const w = await this.driver.resumableWriter!(source, at.parted ?? undefined);
        if (w.size !== offset) {
          await w.cancel().catch(() => undefined);
          await this.drop(uuid);
          throw new V2Error('BLOB_UPLOAD_INVALID', undefined, 'upload data does not match its state: start again');
        }
        await w.commit();
      } else {
        ({ hash } = await this.hashAt(uuid, claim, st));
        // the PATCHes before were not fsynced: make the whole file durable before it is published
        // (its name need not be: publishing moves it, durably)
        const w = await this.driver.writer(claim, { append: true });
        if (w.size !== offset) {
          await w.cancel().catch(() => undefined);
          await this.drop(uuid);
          throw new V2Error('BLOB_UPLOAD_INVALID', undefined, 'upload data does not match its state: start again');
        }
        await w.commit({ durable: 'bytes' });
      }
      this.hashes.delete(uuid);
      const actual = `sha256:${hash.copy().digest('hex')}`;
      if (actual !== digest) {
        await this.drop(uuid);
        throw new V2Error('DIGEST_INVALID', { expected: digest, actual });
      }
      try {
        // the claimed file is complete and no one else can write to it: exactly the bytes hashed.
        // Until the session's folder is gone a request on another node finds nothing to claim
        // (400, busy); after it, 404. Either way it changes nothing.
        // (on the file system the session's folder keeps its state until dropAfterPublish)
        await this.blobs.publish(source, digest, { sourceDirInUse: !this.resumable });
        await this.linkSession(name, uuid, digest);
      } finally {
        await this.dropAfterPublish(uuid);
      }
      return offset;
    });
  }

  /**
   * POST ?digest= with the whole blob (spec end-4b): no session in storage, nothing another node
   * needs. The bytes are hashed on their way in and published at the digest only if they hash to it
   * (on an object store straight to the blob's key: BlobStore.ingest with a digest), then linked.
   * It counts as an open session of the repository and of the owner while it runs.
   */
  async putWhole(name: V2Name, owner: string, digest: string, body: Readable, contentLength?: number): Promise<number> {
    const uuid = randomUUID();
    // held as reserved (never started): a check of the sets does not look for its state
    await this.slots.reserve(uuid, `repository:${name}`, owner);
    try {
      const size = await this.ingestWhole(digest, body, contentLength);
      await this.link(name, digest);
      return size;
    } finally {
      this.slots.release(uuid);
    }
  }

  /** A whole blob through BlobStore.ingest, verified against digest; the errors as the v2 API's. */
  private async ingestWhole(digest: string, body: Readable, contentLength: number | undefined, beforePublish?: () => Promise<void>): Promise<number> {
    try {
      const { size } = await this.blobs.ingest(body, new HashTap(createHash('sha256'), this.maxSize > 0 ? this.maxSize : Infinity), {
        maxSize: 0,
        digest,
        ...(contentLength !== undefined ? { expectedSize: contentLength } : {}),
        ...(beforePublish ? { beforePublish } : {}),
      });
      return size;
    } catch (e) {
      if (e instanceof DigestMismatchError) throw new V2Error('DIGEST_INVALID', { expected: e.expected, actual: e.actual });
      if (e instanceof ShortBodyError) throw new V2Error('SIZE_INVALID');
      throw e;
    }
  }

  async cancel(name: V2Name, uuid: string): Promise<void> {
    await this.exclusive(name, uuid, () => this.drop(uuid));
  }

  /**
   * A blob is visible in a repository only once pushed or mounted there (spec §1.4). The link is a
   * marker: its name and time count (GC's grace period), its bytes are never read.
   */
  async link(name: V2Name, digest: string): Promise<void> {
    await this.driver.putContent(linkKey(name, digest), Buffer.from(digest), { marker: true });
  }

  /**
   * The link that completes a session, only while the session exists, without a lock (the
   * repository's storage lock here cost 8 parallel 1 MiB uploads ~40 % of their throughput: every
   * completion created and removed a lock object, one at a time). A repository delete
   * ({@link removeRepositorySessions}, then V1Repositories.deleteRepository's listing) removes the
   * repository's sessions first and only then lists and removes its records; so the session is
   * checked again after the link is written: still there, the link was written before the delete's
   * listing, which finds it and removes it with the rest; gone, the delete may have listed before the
   * link, so this link is taken back (when it was not there before) and the client gets 404. Either
   * way a session begun before the delete never leaves a link in the deleted name, or in a
   * repository created under it later. The published blob itself stays (unlinked) for the GC.
   */
  private async linkSession(name: V2Name, uuid: string, digest: string): Promise<void> {
    if (!(await keyExists(this.driver, stateKey(uuid)))) throw unknown();
    const had = await this.linked(name, digest);
    await this.link(name, digest);
    if (!(await keyExists(this.driver, stateKey(uuid)))) {
      if (!had) await removeIfPresent(this.driver, linkKey(name, digest));
      throw unknown();
    }
  }

  async linked(name: V2Name, digest: string): Promise<boolean> {
    return keyExists(this.driver, linkKey(name, digest));
  }

  async unlink(name: V2Name, digest: string): Promise<boolean> {
    return removeIfPresent(this.driver, linkKey(name, digest));
  }

  /**
   * Run fn as the only request working on the session: claim its data file (see the class
   * comment), read its state, hand both to fn. fn releases the claim, publishes the file or drops
   * the session.
   */
  private async exclusive<T>(name: V2Name, uuid: string, fn: (st: UploadState, claim: string) => Promise<T>): Promise<T> {
    if (!UUID.test(uuid)) throw unknown();
    if (this.busy.has(uuid)) throw busy();
    this.busy.add(uuid);
    try {
      const claim = this.locking ? lockKey(uuid) : claimKey(uuid);
      // a claim need not survive a crash (the session is then unusable either way): no fsync
      let claimed: boolean;
      if (this.locking) {
        const token = randomBytes(16);
        const at = Date.now();
        claimed = await this.driver.putContentIfAbsent!(claim, token, { durable: false });
        if (claimed) {
          this.tokens.set(uuid, token);
          this.claimedAt.set(uuid, at);
        }
      } else {
        claimed = await this.driver.move(keys.upload(uuid), claim, { durable: false }).then(
          () => true,
          (e: unknown) => {
            if (!isNotFound(e)) throw e;
            return false;
          },
        );
      }
      if (!claimed) {
        // nothing to claim: held by a request on another node while the session lives, else over
        const st = await this.readState(uuid);
        if (st?.name === name) throw busy();
        throw unknown();
      }
      let st: UploadState | undefined;
      try {
        st = (await this.knownState(uuid, name, claim)) ?? (await this.readState(uuid));
      } catch (e) {
        await this.release(uuid, claim).catch(() => undefined);
        throw e;
      }
      if (!st || st.name !== name) {
        // not a session of this repository (or not a session): leave its data where it was
        await this.release(uuid, claim).catch(() => undefined);
        throw unknown();
      }
      try {
        return await fn(st, claim);
      } catch (e) {
        // fn gives the claim back or drops the session on the failures it expects; after any
        // other (storage) failure the data may not match the state: the session goes
        // a missing object because the session was purged meanwhile (another node's purge, its
        // folder silent past upload_purge_age): the session is over, which is a 404, not a 500
        const missing = isNotFound(e) || (e as NodeJS.ErrnoException | undefined)?.code === 'ENOENT';
        const purged = missing && !(await keyExists(this.driver, stateKey(uuid)).catch(() => true));
        if (await keyExists(this.driver, claim).catch(() => true)) await this.drop(uuid).catch(() => undefined);
        if (purged) throw unknown();
        throw e;
      }
    } finally {
      this.busy.delete(uuid);
      this.tokens.delete(uuid);
      this.claimedAt.delete(uuid);
    }
  }

  /**
   * Give the claimed data file back to the session. If the session was removed meanwhile (the
   * purge took it while this request held it), it stays removed: BLOB_UPLOAD_UNKNOWN. With claim
   * objects: remove this request's claim (the callers have checked that it was still there).
   */
  private async release(uuid: string, claim: string): Promise<void> {
    if (this.locking) return this.removeObject(claim);
    try {
      await this.driver.move(claim, keys.upload(uuid), { durable: false });
    } catch (e) {
      if (!isNotFound(e)) throw e;
      await this.drop(uuid);
      throw unknown();
    }
  }

  /** Stream body onto the claimed data file; on any failure the session is dropped. */
  private async write(
    uuid: string,
    st: UploadState,
    claim: string,
    body: Readable,
    opts: { contentLength?: number; last: boolean },
  ): Promise<{ hash: Hash; offset: number; parted?: ResumableState | null }> {
    const { hash, st: at } = await this.hashAt(uuid, claim, st);
    this.hashes.delete(uuid); // until this write is complete, nobody may continue from it
    // what the session may still take: none once it holds max_layer_size (before 2026-12-07 a
    // session filled to exactly the cap had no cap left at all: 0 read as "unlimited")
    const tap = new HashTap(hash, this.maxSize > 0 ? this.maxSize - st.offset : Infinity);
    // with resumable writers (object stores) a PATCH adds parts to an upload kept open, and the
    // last request completes it; else the claimed file is appended to
    const resumable = this.resumable ? await this.driver.resumableWriter!(blobKey(uuid), at.parted ?? undefined) : undefined;
    const writer = resumable ?? (await this.driver.writer(claim, { append: true }));
    if (writer.size !== st.offset) {
      await writer.cancel().catch(() => undefined);
      await this.drop(uuid);
      throw new V2Error('BLOB_UPLOAD_INVALID', undefined, 'upload data does not match its state: start again');
    }
    let parted: ResumableState | null | undefined;
    try {
      await pipeline(body, tap, writer.stream);
      if (opts.contentLength !== undefined && tap.bytes !== opts.contentLength) throw new V2Error('SIZE_INVALID');
      if (resumable && !opts.last) {
        parted = await resumable.suspend();
      } else {
        // the last chunk is made durable with everything before it; earlier ones need not be. Its
        // name need not be: finish() publishes the file next with a durable move.
        await writer.commit({ durable: opts.last ? 'bytes' : false });
        if (resumable) parted = null;
      }
    } catch (e) {
      // A failed write leaves the session unusable (its data may hold part of the chunk): drop it,
      // the client starts the blob again. Nothing of it was ever visible. If the purge removed the
      // session while this request held it, the client hears that it is gone.
      const purged = !(e instanceof V2Error) && !(await keyExists(this.driver, stateKey(uuid)).catch(() => true));
      await writer.cancel().catch(() => undefined);
      // (a resumable writer's cancel discarded the suspended upload it continued)
      await this.drop(uuid, resumable ? null : undefined).catch(() => undefined);
      throw purged ? unknown() : e;
    }
    return { hash, offset: st.offset + tap.bytes, ...(parted !== undefined ? { parted } : {}) };
  }

  /**
   * The sha256 state after the first st.offset bytes of the session (the claimed file holds them,
   * or with resumable writers blobKey), and the state to continue from.
   */
  private async hashAt(uuid: string, claim: string, st: UploadState): Promise<{ hash: Hash; st: UploadState }> {
    const offset = st.offset;
    const mine = this.hashes.get(uuid);
    if (mine && mine.st.offset === offset) return { hash: mine.hash, st };
    // Another node wrote the bytes so far (or we restarted, or the entry was dropped): hash the
    // stored prefix once.
    const hash = createHash('sha256');
    if (offset === 0) return { hash, st };
    let source = claim;
    if (this.resumable) {
      source = blobKey(uuid);
      if (st.parted) {
        // the parts of a suspended upload cannot be read: publish them at blobKey (the next
        // writer continues that object), and say so in the state at once
        const w = await this.driver.resumableWriter!(source, st.parted);
        await w.commit({ durable: false });
        st = { ...st, parted: null };
        await this.driver.putContent(stateKey(uuid), Buffer.from(JSON.stringify(st)), { durable: false });
      }
    }
    const r = await this.driver.reader(source, 0, offset);
    for await (const c of r) hash.update(c as Buffer);
    return { hash, st };
  }

  /**
   * With claim objects: whether the purge may have removed the session since this request claimed
   * it. The purge removes a folder whose newest object is upload_purge_age old, and the claim is in
   * the folder: not before half that age has passed since the claim (half: for the clocks of the
   * store and of the purging node, which need not agree to the second). Unknown age: maybe.
   */
  private mayBePurged(uuid: string): boolean {
    const since = this.claimedAt.get(uuid);
    return this.purgeAgeMs === undefined || since === undefined || Date.now() - since >= this.purgeAgeMs / 2;
  }

  /** With claim objects: this request's claim is still in place (the purge has not removed the session). */
  private async stillClaimed(uuid: string): Promise<boolean> {
    const token = this.tokens.get(uuid);
    const found = await readOptional(this.driver, lockKey(uuid), RECORD_MAX);
    return token !== undefined && found !== undefined && found.equals(token);
  }

  /**
   * On the file system: the state this node stored last for a session it has just claimed, when the
   * claimed data still has the size that state gives (one lstat instead of reading the state: open,
   * fstat, read, close). The data only grows, and only under a claim: a request on another node that
   * wrote to the session since changed its size, and then the stored state is read. Undefined: read it.
   */
  private async knownState(uuid: string, name: V2Name, claim: string): Promise<UploadState | undefined> {
    if (this.resumable) return undefined;
    const mine = this.hashes.get(uuid)?.st;
    if (mine?.name !== name) return undefined;
    const size = await this.driver.stat(claim).then(
      (i) => i.size,
      () => -1,
    );
    return size === mine.offset ? mine : undefined;
  }

  private keepHash(uuid: string, hash: Hash, st: UploadState): void {
    this.hashes.delete(uuid);
    this.hashes.set(uuid, { hash, st, at: Date.now() });
    if (this.hashes.size > this.hashEntries) this.hashes.delete(this.hashes.keys().next().value!);
  }

  /**
   * The session's state; undefined when there is none, or none that can be used: a process killed
   * between creating a session's state and writing it leaves it empty (its first objects are written
   * in place, see start()), and such a session is over (404), not a server error.
   */
  private async readState(uuid: string): Promise<UploadState | undefined> {
    const raw = await readOptional(this.driver, stateKey(uuid), STATE_MAX);
    if (!raw || raw.length === 0) return undefined;
    let st: unknown;
    try {
      st = JSON.parse(raw.toString('utf8'));
    } catch {
      return undefined;
    }
    const { name, offset } = (st ?? {}) as Partial<UploadState>;
    return typeof name === 'string' && Number.isSafeInteger(offset) && offset! >= 0 ? (st as UploadState) : undefined;
  }

  /**
   * Remove the session (state, data, any claim) and everything kept about it in memory. With
   * resumable writers, also the suspended upload: `parted` when the caller knows it (null: none),
   * else the one the stored state names. With claim objects the state goes first: a request that
   * claims the session once this request's claim is gone finds no state (404) and goes away; with
   * `bare` (a session that held nothing but its state and this request's claim) the two are
   * removed without listing the folder.
   */
  private async drop(uuid: string, parted?: ResumableState | null, bare = false): Promise<void> {
    this.forget(uuid);
    if (this.resumable) {
      const p = parted !== undefined ? parted : (await this.readState(uuid).catch(() => undefined))?.parted;
      if (p) await this.driver.discardResumable?.(blobKey(uuid), p).catch(() => undefined);
    }
    if (this.locking) {
      await this.removeObject(stateKey(uuid));
      if (bare) return this.removeObject(lockKey(uuid));
    }
    await this.blobs.removeUpload(uuid);
  }

  /**
   * drop() once the claimed file has been published (moved to its digest's key): on the file
   * system the session's folder then holds its state alone, so removing the state removes the
   * folder (the driver prunes the empty directory) in 3-4 calls instead of a recursive removal's
   * ~15 (measured with strace on a 1 MiB POST + PUT). Other drivers: drop().
   */
  private async dropAfterPublish(uuid: string): Promise<void> {
    if (this.locking || this.resumable) return this.drop(uuid, null);
    this.forget(uuid);
    await this.removeObject(stateKey(uuid));
  }

  /** One object, no error when it is missing. */
  private async removeObject(key: string): Promise<void> {
    if (this.driver.removeObject) await this.driver.removeObject(key);
    else await removeIfPresent(this.driver, key);
  }

  private forget(uuid: string): void {
    this.hashes.delete(uuid);
    this.slots.release(uuid);
  }
}

export function linkKey(name: string, digest: string): string {
  return `v2/repositories/${name}/_layers/${digest.slice('sha256:'.length)}`;
}

/**
 * Remove every upload session of the repository named `names` (its v2 spellings): its deletion,
 * under the repository's lock. A session begun before the delete is gone with the repository's
 * other content: its next request is 404 BLOB_UPLOAD_UNKNOWN, and one in progress publishes
 * nothing into the name (V2Uploads.linkSession). Sessions are found by reading each session's
 * state (one read per open session of the storage; deletes are rare); a node's counts of open
 * sessions drop them when their set is next full or at the next purge pass, as for sessions that
 * ended on another node.
 */
export async function removeRepositorySessions(driver: StorageDriver, names: readonly string[]): Promise<number> {
  let dirs: string[];
  try {
    dirs = await driver.list(keys.uploadsRoot);
  } catch (e) {
    if (isNotFound(e)) return 0;
    throw e;
  }
  let removed = 0;
  for (const dir of dirs) {
    const uuid = dir.slice(dir.lastIndexOf('/') + 1);
    // blobs being ingested (no state) and sessions of other repositories stay
    const raw = await readOptional(driver, stateKey(uuid), STATE_MAX).catch(() => undefined);
    let st: Partial<UploadState> | undefined;
    try {
      st = raw && raw.length > 0 ? (JSON.parse(raw.toString('utf8')) as Partial<UploadState>) : undefined;
    } catch {
      st = undefined;
    }
    if (typeof st?.name !== 'string' || !names.includes(st.name)) continue;
    // with resumable writers the bytes so far are an upload the driver keeps open: discarded too
    if (st.parted) await driver.discardResumable?.(blobKey(uuid), st.parted).catch(() => undefined);
    try {
      await driver.delete(keys.uploadDir(uuid));
    } catch (e) {
      if (!isNotFound(e)) throw e;
    }
    removed++;
  }
  return removed;
}
