import { randomBytes } from 'node:crypto';
import { isNotFound, type StorageDriver } from '../storage/driver.js';
import { keys } from './keys.js';
import { LINK_MAX, listOptional as listOr, readOptional, RECORD_MAX, removeIfPresent } from './small-objects.js';
import { derivedV2Image } from './v1-to-v2.js';
import { ANCESTRY_MAX, imageJsonMax, type LayerLink } from './v1-images.js';
import { MAX_MANIFEST_BYTES, MT, REVISION_MAX, schema1DocMax } from './v2-manifests.js';
import { jsonDepthExceeds, MAX_JSON_DEPTH } from '../http/body.js';
import { gcDuration, gcFreed, gcObjects, gcRuns } from '../metrics/registry.js';
import { StorageLock, type LockHolder } from './storage-lock.js';
import { pool } from '../util/pool.js';

/**
 * Online garbage collection (docs/operations.md "Garbage collection"): runs while the registry
 * serves, on the storage itself (never through the metadata cache, whose answers may be old).
 *
 * What is kept (mark):
 * - v1: every image record in every scope (v1/images and each repository's _images) and the blob
 *   its layer link names. With deleteUntagged, only the images in the ancestry of some v1 tag
 *   (of the repository, or of any repository for the registry-wide scope) and images written
 *   within the grace period; the others' records are deleted.
 * - the bridge's derived v2 view of every v1 tag: its config blob and manifest (computed as
 *   v1-to-v2.ts computes them, without writing).
 * - v2: every manifest revision of every repository, its bytes, config, layers, index children and
 *   schema1 blobSums. With deleteUntagged, only the tagged ones, what they reach (index children),
 *   the referrers of kept subjects, the derived views above and revisions written within the grace
 *   period; the others are deleted (revision, referrer marker, schema1 document).
 * - v2 layer links (`_layers`): a link written within the grace period keeps its blob (an upload
 *   whose manifest has not come yet); an older link no kept manifest of its repository names is
 *   deleted (it would dangle once its blob goes).
 *
 * What is deleted (sweep): blobs not marked whose modification time is before the cutoff:
 * min(start − grace, oldest in-flight upload) − 1 s. A blob published from an upload keeps the
 * upload's time (rename), so no blob of an upload in flight when GC starts is a candidate.
 *
 * Concurrent pushes (the registry is not read-only): a push creates references in two ways:
 * writing new objects (fresh times: within the grace period, never candidates), or pointing at an
 * existing blob through something that holds it (a layer link, a mount, a v1 image linked from
 * another repository, a manifest naming linked blobs). Those sources are marked themselves, so
 * their blobs are never candidates, except when GC deletes the source (untagged records, old
 * links). Hence: GC deletes those records first, waits `settle` (longer than any request's read →
 * write step and than the metadata cache TTL of every node), marks a second time over everything
 * that exists, and deletes only candidates that neither mark reached. Each blob is deleted by
 * moving it aside first (move claims it: exactly one mover wins) and checking it is still the old
 * object (on drivers whose move keeps the time), so a blob republished a moment earlier is put back.
 */
export interface GcOptions {
  readonly dryRun?: boolean;
  readonly deleteUntagged?: boolean;
  /** Objects written less than this long ago are never deleted (ms). */
  readonly graceMs: number;
  /** Pause between deleting records and the second mark (ms). */
  readonly settleMs: number;
  readonly now?: () => number;
  readonly progress?: (p: GcProgress) => void;
  /** Be told of each deletion (dry run: of each planned one). */
  readonly onItem?: (kind: GcItemKind, name: string, bytes?: number) => void;
  /** Most bytes of deleted records kept until the settle (default SAVED_RECORDS_MAX; tests). */
  readonly savedRecordsMax?: number;
}

export type GcItemKind = 'blob' | 'v1_image' | 'v2_manifest' | 'link';

export interface GcProgress {
  readonly phase: 'mark' | 'scan' | 'records' | 'settle' | 'remark' | 'sweep';
  readonly done: number;
  readonly total: number;
}

export interface GcResult {
  readonly dryRun: boolean;
  readonly blobs: { total: number; marked: number; candidates: number; deleted: number; bytesFreed: number; keptByRecheck: number };
  readonly v1Images: { total: number; deleted: number };
  readonly v2Manifests: { total: number; deleted: number };
  readonly links: { total: number; deleted: number };
  readonly cutoff: number;
  readonly durationMs: number;
}

interface Revision {
  readonly digest: string;
  readonly mediaType: string;
  readonly subject?: string;
}

interface Mark {
  readonly live: Set<string>;
  v1Total: number;
  readonly v1Untagged: { root: string; repo: string | null; id: string }[];
  v2Total: number;
  readonly v2Untagged: { repo: string; hex: string; subject?: string }[];
  linksTotal: number;
  readonly staleLinks: { repo: string; hex: string }[];
  /** Manifest digests (hex) of the bridge's v2 view of v1 tags. */
  readonly derived: Set<string>;
  /** What the kept manifests of each v2 repository name (hex). */
  readonly perRepo: Map<string, Set<string>>;
}

/** A v1 image's records GC deleted, kept until the settle is over (see restoreRecords). */
interface RemovedImage {
  readonly root: string;
  readonly repo: string | null;
  readonly id: string;
  readonly files: ReadonlyMap<string, Buffer>;
}

/** A v2 revision GC deleted, kept until the settle is over (see restoreRecords). */
interface RemovedRevision {
  readonly repo: string;
  readonly hex: string;
  readonly rev: Buffer;
  readonly schema1?: Buffer;
  readonly subject?: string;
}

/**
 * Most bytes of deleted records (v1 image records, v2 revisions) a run keeps in memory until its
 * settle is over (see restoreRecords). Records past it are left for a later run: memory stays
 * bounded however many untagged images a store holds.
 */
export const SAVED_RECORDS_MAX = 64 * 1024 * 1024;

/** Where a blob is moved before its delete (deleteBlobUnlessWritten); what a stopped run left there goes back. */
const TRASH = '_gc/trash';
/** max_config_size's default (src/config/schema.ts), for a collector made without configuration. */
const DEFAULT_MAX_CONFIG_SIZE = 8 * 1024 * 1024;
/** max_json_size's default (src/config/schema.ts), likewise. */
const DEFAULT_MAX_JSON_SIZE = 4 * 1024 * 1024;

const HEX = /^[a-f0-9]{64}$/;
const SHA = /^sha256:[a-f0-9]{64}$/;
const leaf = (key: string): string => key.slice(key.lastIndexOf('/') + 1);

/** Items by a key of theirs, in their order. */
function groupBy<T>(items: readonly T[], key: (item: T) => string): Map<string, T[]> {
  const out = new Map<string, T[]>();
  for (const item of items) {
    const k = key(item);
    const list = out.get(k);
    if (list) list.push(item);
    else out.set(k, [item]);
  }
  return out;
}

async function mtime(driver: StorageDriver, key: string): Promise<number | undefined> {
  try {
    return (await driver.stat(key)).modTime.getTime();
  } catch (e) {
    if (isNotFound(e)) return undefined;
    throw e;
  }
}

/**
 * Newest modification time of an image's records: the objects directly below the prefix and the
 * prefix itself (a directory's time moves when a write starts in it). A prefix with no object to
 * see yet is a write beginning: infinitely new.
 */
async function newestBelow(driver: StorageDriver, prefix: string): Promise<number> {
  const children = await listOr(driver, prefix);
  if (children.length === 0) return Number.POSITIVE_INFINITY;
  let newest = (await mtime(driver, prefix)) ?? Number.POSITIVE_INFINITY;
  for (const k of children) newest = Math.max(newest, (await mtime(driver, k)) ?? Number.POSITIVE_INFINITY);
  return newest;
}

/** Storage calls GC keeps in flight at once (filesystem: libuv's pool; object stores: round trips). */
const PARALLEL = 8;

function parseJson<T>(b: Buffer | undefined): T | undefined {
  if (!b || jsonDepthExceeds(b, MAX_JSON_DEPTH)) return undefined; // nested past any the registry writes: as unreadable
  try {
    return JSON.parse(b.toString('utf8')) as T;
  } catch {
    return undefined;
  }
}

/** The storage lock every run holds: one garbage collection at a time per storage, across nodes. */
export const GC_LOCK = 'garbage-collection';

/**
 * Delete the blob `hex` unless it was written again since it was found (a push of the same
 * content): its time must be before `cutoff` and, when `found` is given, the one found then. Moving
 * it aside claims it; where a move keeps the object's time (filesystem, memory), the moved object is
 * compared, and put back when it is newer (content-addressed: putting back the same bytes is always
 * right). Elsewhere (object stores copy on move) the time is checked just before the delete.
 * Returns the bytes freed, or undefined when kept or gone. Used by GC's sweep and the mirror's expiry.
 */
export async function deleteBlobUnlessWritten(
  driver: StorageDriver,
  hex: string,
  cutoff: number,
  found?: { readonly size: number; readonly time: number },
): Promise<number | undefined> {
  const key = keys.blob(hex);
  if (driver.name !== 'filesystem' && driver.name !== 'memory') {
    const t = await mtime(driver, key);
    if (t === undefined || t >= cutoff) return undefined;
    const size = (await driver.stat(key).catch(() => undefined))?.size ?? found?.size ?? 0;
    return (await removeIfPresent(driver, key)) ? size : undefined;
  }
  const aside = `${TRASH}/${hex}-${randomBytes(6).toString('hex')}`;
  try {
    await driver.move(key, aside);
  } catch (e) {
    if (isNotFound(e)) return undefined; // gone already
    throw e;
  }
  const info = await driver.stat(aside);
  const t = info.modTime.getTime();
  if ((found !== undefined && t !== found.time) || t >= cutoff) {
    await driver.move(aside, key).catch((e: unknown) => {
      if (!isNotFound(e)) throw e; // a gc run put it back already
    });
    return undefined;
  }
  await removeIfPresent(driver, aside);
  return info.size;
}

/** Another run (this process, another process or another node) holds the storage's GC lock. */
export class GcBusyError extends Error {
  constructor(readonly holder: LockHolder) {
    const who = holder.here
      ? 'in this process'
      : [
          holder.host !== undefined ? `host ${holder.host}` : undefined,
          holder.pid !== undefined ? `pid ${holder.pid}` : undefined,
          holder.since !== undefined ? `since ${new Date(holder.since).toISOString()}` : undefined,
        ]
          .filter(Boolean)
          .join(', ') || 'holder unknown';
    super(`another garbage collection is running on this storage (${who})`);
    this.name = 'GcBusyError';
  }
}

export class GarbageCollector {
  private readonly lock: StorageLock;

  constructor(
    private readonly driver: StorageDriver,
    /**
     * max_config_size: the bridge derives no v2 form of a v1 chain holding more JSON (V1ToV2), so
     * there is nothing of it to keep, and building its config would cost what a GET was spared.
     */
    private readonly maxConfigSize: number = DEFAULT_MAX_CONFIG_SIZE,
    /** max_json_size: a pushed image json is held to it, so its record is read back within it. */
    private readonly maxJsonSize: number = DEFAULT_MAX_JSON_SIZE,
  ) {
    // renewed every third of the lease while the run goes on; a killed run's lock is broken after it
    // (at once by the next run on the same machine)
    this.lock = new StorageLock(driver, { leaseMs: 60_000 });
  }

  /**
   * Bound of a v1 image record read (its json the largest): a push's json is held to max_json_size
   * (4 MiB by default), the v2→v1 bridge's to max_config_size; as V1ImageOptions.maxJsonSize.
   */
  private get imageRecordMax(): number {
    return imageJsonMax(this.maxJsonSize, this.maxConfigSize);
  }

  /** False when the driver cannot create exclusively: runs then exclude each other within one process only. */
  get exclusiveAcrossProcesses(): boolean {
    return this.lock.shared;
  }

  /**
   * One collection, under the storage's GC lock ({@link GC_LOCK}): throws {@link GcBusyError} at once,
   * changing nothing, when another run holds it (a dry run included: its plan would be wrong).
   */
  async run(opts: GcOptions): Promise<GcResult> {
    const r = await this.lock.tryRun(GC_LOCK, () => this.runLocked(opts));
    if (!r.ran) throw new GcBusyError(r.holder);
    return r.value;
  }

  private async runLocked(opts: GcOptions): Promise<GcResult> {
    const started = Date.now();
    try {
      const r = await this.collect(opts);
      if (!r.dryRun) {
        gcRuns.inc({ result: 'success' });
        gcFreed.inc(r.blobs.bytesFreed);
        gcObjects.inc({ kind: 'blob' }, r.blobs.deleted);
        gcObjects.inc({ kind: 'v1_image' }, r.v1Images.deleted);
        gcObjects.inc({ kind: 'v2_manifest' }, r.v2Manifests.deleted);
        gcObjects.inc({ kind: 'link' }, r.links.deleted);
        gcDuration.set((Date.now() - started) / 1000);
      }
      return r;
    } catch (e) {
      gcRuns.inc({ result: 'failed' });
      throw e;
    }
  }

  private async collect(opts: GcOptions): Promise<GcResult> {
    const now = opts.now ?? Date.now;
    const t0 = now();
    const progress = opts.progress ?? (() => undefined);
    const deleteUntagged = opts.deleteUntagged ?? false;
    // uploads in flight now: a blob published from one keeps its time, so nothing from then on is a candidate
    let oldestUpload = Number.POSITIVE_INFINITY;
    for (const dir of await listOr(this.driver, keys.uploadsRoot)) {
      for (const k of await listOr(this.driver, dir)) oldestUpload = Math.min(oldestUpload, (await mtime(this.driver, k)) ?? Number.POSITIVE_INFINITY);
    }
    const cutoff = Math.min(t0 - opts.graceMs, oldestUpload) - 1000;
    const young = (t: number | undefined): boolean => t === undefined || t >= cutoff;

    // what a run stopped part-way left moved aside goes back first (a blob pushed again may be among it)
    if (!opts.dryRun) await this.recoverTrash();

    const first = await this.mark({ deleteUntagged, young, phase: 'mark', progress });

    // the candidates: blobs neither marked nor written since the cutoff
    const candidates: { hex: string; size: number; time: number }[] = [];
    let blobTotal = 0;
    const prefixes = await listOr(this.driver, 'blobs/sha256');
    let scanned = 0;
    await pool(prefixes, PARALLEL, async (p) => {
      progress({ phase: 'scan', done: scanned++, total: prefixes.length });
      for (const dir of await listOr(this.driver, p)) {
        const hex = leaf(dir);
        if (!HEX.test(hex)) continue;
        blobTotal++;
        if (first.live.has(hex)) continue;
        let info;
        try {
          info = await this.driver.stat(keys.blob(hex));
        } catch (e) {
          if (isNotFound(e)) continue;
          throw e;
        }
        if (info.modTime.getTime() < cutoff) candidates.push({ hex, size: info.size, time: info.modTime.getTime() });
      }
    });
    progress({ phase: 'scan', done: prefixes.length, total: prefixes.length });

    const result = {
      dryRun: opts.dryRun ?? false,
      blobs: { total: blobTotal, marked: first.live.size, candidates: candidates.length, deleted: 0, bytesFreed: 0, keptByRecheck: 0 },
      v1Images: { total: first.v1Total, deleted: 0 },
      v2Manifests: { total: first.v2Total, deleted: 0 },
      links: { total: first.linksTotal, deleted: 0 },
      cutoff,
      durationMs: 0,
    };
    const item = opts.onItem ?? (() => undefined);

    if (opts.dryRun) {
      // what a run would delete now (records first: their blobs are then candidates on the next run)
      for (const u of first.v1Untagged) item('v1_image', `${u.repo ?? '(registry-wide)'} ${u.id}`);
      for (const u of first.v2Untagged) item('v2_manifest', `${u.repo}@sha256:${u.hex}`);
      for (const l of first.staleLinks) item('link', `${l.repo} sha256:${l.hex}`);
      for (const c of candidates) {
        item('blob', `sha256:${c.hex}`, c.size);
        result.blobs.bytesFreed += c.size;
      }
      result.blobs.deleted = candidates.length;
      result.v1Images.deleted = first.v1Untagged.length;
      result.v2Manifests.deleted = first.v2Untagged.length;
      result.links.deleted = first.staleLinks.length;
      result.durationMs = now() - t0;
      return result;
    }

    // records that keep blobs alive go first, each checked again just before (a tag may have come)
    const records = first.v1Untagged.length + first.v2Untagged.length + first.staleLinks.length;
    let done = 0;
    const removedImages: RemovedImage[] = [];
    const removedRevisions: RemovedRevision[] = [];
    let savedBytes = 0;
    const budget = opts.savedRecordsMax ?? SAVED_RECORDS_MAX;
    for (const [root, list] of groupBy(first.v1Untagged, (u) => u.root)) {
      // what the tags reach now (a tag may have come since the mark), read once per scope just before
      const reached = await this.v1Reached(root, list[0]!.repo);
      for (const u of list) {
        progress({ phase: 'records', done: done++, total: records });
        if (reached.has(u.id) || (await newestBelow(this.driver, `${root}/${u.id}`)) >= cutoff) continue;
        // kept in memory until the settle is over: a tag put on the image meanwhile brings it back
        const saved = await this.savedRecords(`${root}/${u.id}`);
        const size = [...saved.values()].reduce((a, b) => a + b.length, 0);
        if (savedBytes + size > budget) continue; // left for a later run
        savedBytes += size;
        if (await removeIfPresent(this.driver, `${root}/${u.id}`)) {
          removedImages.push({ root, repo: u.repo, id: u.id, files: saved });
          result.v1Images.deleted++;
          item('v1_image', `${u.repo ?? '(registry-wide)'} ${u.id}`);
        }
      }
    }
    for (const [repo, list] of groupBy(first.v2Untagged, (u) => u.repo)) {
      // the repository's kept set again, just before (a tag, an index or a referrer may have come)
      const now2 = await this.v2Repo(repo, { deleteUntagged: true, young, derived: first.derived });
      const still = new Set(now2.untagged.map((u) => u.hex));
      const base = `v2/repositories/${repo}/_manifests`;
      for (const u of list) {
        progress({ phase: 'records', done: done++, total: records });
        if (!still.has(u.hex)) continue;
        const revKey = `${base}/revisions/${u.hex}`;
        // written again since the re-check (a push of the same manifest): kept
        if (young(await mtime(this.driver, revKey))) continue;
        // kept in memory until the settle is over: a tag or an index naming it meanwhile brings it back
        const rev = await readOptional(this.driver, revKey, REVISION_MAX);
        const schema1 = await readOptional(this.driver, `${base}/schema1/${u.hex}`, schema1DocMax(this.maxConfigSize));
        const size = (rev?.length ?? 0) + (schema1?.length ?? 0);
        if (savedBytes + size > budget) continue; // left for a later run
        savedBytes += size;
        if (await removeIfPresent(this.driver, revKey)) {
          result.v2Manifests.deleted++;
          item('v2_manifest', `${repo}@sha256:${u.hex}`);
          if (rev) removedRevisions.push({ repo, hex: u.hex, rev, ...(schema1 ? { schema1 } : {}), ...(u.subject ? { subject: u.subject } : {}) });
        }
        if (u.subject && SHA.test(u.subject)) await removeIfPresent(this.driver, `${base}/referrers/${u.subject.slice(7)}/${u.hex}`);
        await removeIfPresent(this.driver, `${base}/schema1/${u.hex}`);
      }
    }
    const linksByRepo = new Map<string, typeof first.staleLinks>();
    for (const l of first.staleLinks) linksByRepo.set(l.repo, [...(linksByRepo.get(l.repo) ?? []), l]);
    const removedLinks: { repo: string; hex: string }[] = [];
    for (const [repo, list] of linksByRepo) {
      // only links still stale now (a manifest naming one may have come since the mark)
      const still = new Set((await this.v2Repo(repo, { deleteUntagged, young, derived: first.derived })).staleLinks.map((l) => l.hex));
      for (const l of list) {
        progress({ phase: 'records', done: done++, total: records });
        if (!still.has(l.hex)) continue;
        if (await removeIfPresent(this.driver, `v2/repositories/${repo}/_layers/${l.hex}`)) {
          removedLinks.push(l);
          result.links.deleted++;
          item('link', `${repo} sha256:${l.hex}`);
        }
      }
    }

    const removedRecords = removedImages.length + removedRevisions.length;
    if (candidates.length > 0 || removedRecords > 0) {
      // requests that read a record before it went finish their writes; caches of other nodes expire
      if (records > 0 || opts.settleMs > 0) {
        progress({ phase: 'settle', done: 0, total: 1 });
        await new Promise((r) => setTimeout(r, opts.settleMs));
        progress({ phase: 'settle', done: 1, total: 1 });
      }
      // a tag (v1, v2) or an index put between a record's re-check and its delete names it now: it
      // comes back (the request that wrote the reference was acknowledged), before the second mark
      const restored = await this.restoreRecords(removedImages, removedRevisions, t0);
      result.v1Images.deleted -= restored.images;
      result.v2Manifests.deleted -= restored.revisions;
    }
    if (candidates.length > 0) {
      // the second mark keeps everything that exists now: all records, all links
      const second = await this.mark({ deleteUntagged: false, young: () => true, phase: 'remark', progress });
      // a manifest that named a link in the moment between its re-check and its delete: the link comes back
      for (const l of removedLinks) {
        if (second.perRepo.get(l.repo)?.has(l.hex)) {
          await this.driver.putContent(`v2/repositories/${l.repo}/_layers/${l.hex}`, Buffer.from(`sha256:${l.hex}`));
          result.links.deleted--;
        }
      }
      for (const [i, c] of candidates.entries()) {
        progress({ phase: 'sweep', done: i, total: candidates.length });
        if (second.live.has(c.hex)) {
          result.blobs.keptByRecheck++;
          continue;
        }
        const freed = await deleteBlobUnlessWritten(this.driver, c.hex, cutoff, c);
        if (freed === undefined) {
          result.blobs.keptByRecheck++;
          continue;
        }
        result.blobs.deleted++;
        result.blobs.bytesFreed += freed;
        item('blob', `sha256:${c.hex}`, freed);
      }
      progress({ phase: 'sweep', done: candidates.length, total: candidates.length });
    }
    result.durationMs = now() - t0;
    return result;
  }

  /**
   * Blobs a run moved aside (deleteBlobUnlessWritten) and did not finish with: it was stopped between the move
   * and the delete, or between the move and the move back of a blob pushed again meanwhile. Each
   * goes back to its key when nothing is there (the bytes were published at that digest, so
   * putting them back is always right; garbage is collected again), else it is removed.
   */
  private async recoverTrash(): Promise<void> {
    for (const k of await listOr(this.driver, TRASH)) {
      const hex = leaf(k).split('-')[0]!;
      if (HEX.test(hex) && (await mtime(this.driver, keys.blob(hex))) === undefined) {
        try {
          await this.driver.move(k, keys.blob(hex));
          continue;
        } catch (e) {
          if (!isNotFound(e)) throw e;
        }
      }
      await removeIfPresent(this.driver, k);
    }
  }

  /** The small records of a v1 image below prefix (not the `_files` listing: a cache). */
  private async savedRecords(prefix: string): Promise<Map<string, Buffer>> {
    const out = new Map<string, Buffer>();
    for (const k of await listOr(this.driver, prefix)) {
      if (leaf(k) === '_files') continue;
      const b = await readOptional(this.driver, k, this.imageRecordMax);
      if (b) out.set(leaf(k), b);
    }
    return out;
  }

  /**
   * After the settle: bring back the v1 images a tag's ancestry reaches now and the v2 revisions a
   * tag or a present index names now, or whose manifest bytes were written since the run started
   * (pushed again by digest), among those this run deleted. Something written there since (a new
   * push) is left as it is.
   */
  private async restoreRecords(
    images: readonly RemovedImage[],
    revisions: readonly RemovedRevision[],
    t0: number,
  ): Promise<{ images: number; revisions: number }> {
    let restoredImages = 0;
    for (const [root, list] of groupBy(images, (u) => u.root)) {
      // a deleted image's ancestry from what was kept of it (a tag put on it meanwhile reaches its parents too)
      const gone = new Map(list.map((u) => [u.id, u]));
      const reached = await this.v1Reached(root, list[0]!.repo, (id) => gone.get(id)?.files.get('ancestry'));
      for (const u of list) {
        if (!reached.has(u.id)) continue;
        const prefix = `${root}/${u.id}`;
        if ((await listOr(this.driver, prefix)).length > 0) continue; // written anew meanwhile
        // the json last: until it is there the image is not seen
        for (const [name, bytes] of [...u.files].sort(([a], [b]) => (a === 'json' ? 1 : b === 'json' ? -1 : 0))) {
          await this.driver.putContent(`${prefix}/${name}`, bytes);
        }
        restoredImages++;
      }
    }
    let restoredRevisions = 0;
    for (const [repo, list] of groupBy(revisions, (r) => r.repo)) {
      const base = `v2/repositories/${repo}/_manifests`;
      const named = await this.v2Tags(repo);
      for (const k of await listOr(this.driver, `${base}/revisions`)) {
        const rev = parseJson<Revision>(await readOptional(this.driver, k, REVISION_MAX));
        if (!rev || rev.mediaType === MT.schema1 || rev.mediaType === MT.schema1Signed) continue;
        const d = parseJson<{ manifests?: unknown }>(await readOptional(this.driver, keys.blob(leaf(k)), MAX_MANIFEST_BYTES));
        if (Array.isArray(d?.manifests))
          for (const c of d.manifests as { digest?: unknown }[]) if (typeof c?.digest === 'string' && SHA.test(c.digest)) named.add(c.digest.slice(7));
      }
      for (const r of list) {
        const pushedAgain = ((await mtime(this.driver, keys.blob(r.hex))) ?? 0) >= t0;
        if (!named.has(r.hex) && !pushedAgain) continue;
        const revKey = `${base}/revisions/${r.hex}`;
        if ((await mtime(this.driver, revKey)) !== undefined) continue; // pushed again after the delete
        if (r.schema1) await this.driver.putContent(`${base}/schema1/${r.hex}`, r.schema1);
        if (r.subject && SHA.test(r.subject)) await this.driver.putContent(`${base}/referrers/${r.subject.slice(7)}/${r.hex}`, Buffer.from(`sha256:${r.hex}`));
        await this.driver.putContent(revKey, r.rev);
        restoredRevisions++;
      }
    }
    return { images: restoredImages, revisions: restoredRevisions };
  }

  /**
   * Image ids the v1 tags reach in a scope: its repository's tags, or every repository's for
   * v1/images. `ancestryOf` answers for an image whose ancestry record is not stored (any more).
   */
  private async v1Reached(root: string, repo: string | null, ancestryOf?: (id: string) => Buffer | undefined): Promise<Set<string>> {
    const reached = new Set<string>();
    for (const r of repo !== null ? [repo] : await this.v1RepoNames()) {
      for (const tagKey of await listOr(this.driver, `v1/repositories/${r}/_tags`)) {
        const id = (await readOptional(this.driver, tagKey, LINK_MAX))?.toString('utf8');
        if (!id) continue;
        reached.add(id);
        const ancestry = parseJson<unknown>((await readOptional(this.driver, `${root}/${id}/ancestry`, ANCESTRY_MAX)) ?? ancestryOf?.(id));
        if (Array.isArray(ancestry)) for (const a of ancestry) if (typeof a === 'string') reached.add(a);
      }
    }
    return reached;
  }

  private async v1RepoNames(): Promise<string[]> {
    const out: string[] = [];
    for (const ns of await listOr(this.driver, keys.repositoriesRoot)) {
      if (leaf(ns).startsWith('_')) continue;
      for (const r of await listOr(this.driver, ns)) out.push(r.slice(keys.repositoriesRoot.length + 1));
    }
    return out;
  }

  /** Digests (hex) the tags of a v2 repository name, read now. */
  private async v2Tags(repo: string): Promise<Set<string>> {
    const out = new Set<string>();
    for (const k of await listOr(this.driver, `v2/repositories/${repo}/_manifests/tags`)) {
      const d = (await readOptional(this.driver, k, LINK_MAX))?.toString('utf8');
      if (d && SHA.test(d)) out.add(d.slice(7));
    }
    return out;
  }

  /** Every v2 repository name below v2/repositories (names nest: a/b and a/b/c are both repositories). */
  private async v2RepoNames(): Promise<string[]> {
    const out: string[] = [];
    const walk = async (prefix: string): Promise<void> => {
      const children = await listOr(this.driver, prefix);
      if (children.some((c) => leaf(c).startsWith('_'))) out.push(prefix.slice('v2/repositories/'.length));
      for (const c of children) if (!leaf(c).startsWith('_')) await walk(c);
    };
    for (const c of await listOr(this.driver, 'v2/repositories')) if (!leaf(c).startsWith('_')) await walk(c);
    return out;
  }

  private async mark(o: {
    deleteUntagged: boolean;
    young: (t: number | undefined) => boolean;
    phase: 'mark' | 'remark';
    progress: (p: GcProgress) => void;
  }): Promise<Mark> {
    const m: Mark = {
      live: new Set(),
      v1Total: 0,
      v1Untagged: [],
      v2Total: 0,
      v2Untagged: [],
      linksTotal: 0,
      staleLinks: [],
      derived: new Set(),
      perRepo: new Map(),
    };
    const markDigest = (d: unknown): void => {
      if (typeof d === 'string' && SHA.test(d)) m.live.add(d.slice(7));
    };
    const v1Repos = await this.v1RepoNames();
    const v2Repos = await this.v2RepoNames();
    const total = v1Repos.length + v2Repos.length + 1;
    let done = 0;

    // ---- v1: tags, their ancestry, every image record's layer
    const derived = m.derived;
    const globalReached = new Set<string>();
    const markScope = async (root: string, repo: string | null, reached: ReadonlySet<string> | undefined): Promise<void> => {
      for (const dir of await listOr(this.driver, root)) {
        const id = leaf(dir);
        m.v1Total++;
        if (o.deleteUntagged && reached && !reached.has(id) && !o.young(await newestBelow(this.driver, dir))) {
          m.v1Untagged.push({ root, repo, id });
          continue;
        }
        markDigest(parseJson<LayerLink>(await readOptional(this.driver, `${dir}/layer`, RECORD_MAX))?.digest);
      }
    };
    await pool(v1Repos, PARALLEL, async (repo) => {
      o.progress({ phase: o.phase, done: done++, total });
      const scoped = `v1/repositories/${repo}/_images`;
      const reached = new Set<string>();
      for (const tagKey of await listOr(this.driver, `v1/repositories/${repo}/_tags`)) {
        const id = (await readOptional(this.driver, tagKey, LINK_MAX))?.toString('utf8');
        if (!id || !HEX.test(id)) continue;
        // the id resolves in the repository's scope, else in the registry-wide one: keep both
        for (const [root, set] of [
          [scoped, reached],
          ['v1/images', globalReached],
        ] as const) {
          const ancestry = parseJson<unknown>(await readOptional(this.driver, `${root}/${id}/ancestry`, ANCESTRY_MAX));
          if (!Array.isArray(ancestry)) continue;
          for (const a of ancestry) if (typeof a === 'string') set.add(a);
          await this.markDerived(root, ancestry, derived, markDigest);
        }
      }
      await markScope(scoped, repo, reached);
    });
    // the registry-wide scope once every repository's tags were read
    o.progress({ phase: o.phase, done: done++, total });
    await markScope('v1/images', null, globalReached);

    // ---- v2: revisions reached from tags (or all), what they name; layer links
    await pool(v2Repos, PARALLEL, async (repo) => {
      o.progress({ phase: o.phase, done: done++, total });
      const r = await this.v2Repo(repo, { deleteUntagged: o.deleteUntagged, young: o.young, derived });
      for (const hex of r.live) m.live.add(hex);
      m.perRepo.set(repo, r.named);
      m.v2Total += r.revisions;
      m.linksTotal += r.links;
      m.v2Untagged.push(...r.untagged);
      m.staleLinks.push(...r.staleLinks);
    });
    o.progress({ phase: o.phase, done: total, total });
    return m;
  }

  /** One v2 repository: the revisions kept and what they name, the untagged ones, stale links. */
  private async v2Repo(
    repo: string,
    o: { deleteUntagged: boolean; young: (t: number | undefined) => boolean; derived: ReadonlySet<string> },
  ): Promise<{
    live: Set<string>;
    named: Set<string>;
    revisions: number;
    links: number;
    untagged: { repo: string; hex: string; subject?: string }[];
    staleLinks: { repo: string; hex: string }[];
  }> {
    const live = new Set<string>();
    const untagged: { repo: string; hex: string; subject?: string }[] = [];
    const staleLinks: { repo: string; hex: string }[] = [];
    const base = `v2/repositories/${repo}/_manifests`;
    const revisions = new Map<string, Revision>();
    for (const k of await listOr(this.driver, `${base}/revisions`)) {
      const hex = leaf(k);
      const rev = parseJson<Revision>(await readOptional(this.driver, k, REVISION_MAX));
      if (HEX.test(hex) && rev) revisions.set(hex, rev);
    }
    const keep = new Set<string>();
    const docs = new Map<string, Record<string, unknown> | undefined>();
    const doc = async (hex: string, rev: Revision): Promise<Record<string, unknown> | undefined> => {
      if (!docs.has(hex)) {
        const schema1 = rev.mediaType === MT.schema1 || rev.mediaType === MT.schema1Signed;
        const raw = schema1
          ? await readOptional(this.driver, `${base}/schema1/${hex}`, schema1DocMax(this.maxConfigSize))
          : await readOptional(this.driver, keys.blob(hex), MAX_MANIFEST_BYTES);
        docs.set(hex, parseJson<Record<string, unknown>>(raw));
      }
      return docs.get(hex);
    };
    if (!o.deleteUntagged) for (const hex of revisions.keys()) keep.add(hex);
    else {
      for (const hex of await this.v2Tags(repo)) keep.add(hex);
      for (const [hex] of revisions) {
        if (o.derived.has(hex) || o.young(await mtime(this.driver, `${base}/revisions/${hex}`))) keep.add(hex);
      }
      // index children and referrers of kept subjects, to a fixpoint
      for (let changed = true; changed;) {
        changed = false;
        for (const [hex, rev] of revisions) {
          if (keep.has(hex)) {
            const d = await doc(hex, rev);
            const children = Array.isArray(d?.manifests) ? (d.manifests as { digest?: unknown }[]) : [];
            for (const c of children) {
              if (typeof c?.digest === 'string' && SHA.test(c.digest) && !keep.has(c.digest.slice(7))) {
                keep.add(c.digest.slice(7));
                changed = true;
              }
            }
          } else if (rev.subject && SHA.test(rev.subject) && keep.has(rev.subject.slice(7))) {
            keep.add(hex);
            changed = true;
          }
        }
      }
      for (const [hex, rev] of revisions) if (!keep.has(hex)) untagged.push({ repo, hex, ...(rev.subject ? { subject: rev.subject } : {}) });
    }
    const name = (d: unknown): void => {
      if (typeof d === 'string' && SHA.test(d)) live.add(d.slice(7));
    };
    for (const hex of keep) {
      const rev = revisions.get(hex);
      name(`sha256:${hex}`);
      if (!rev) continue; // a tag to a revision that is gone: nothing more to reach
      const d = await doc(hex, rev);
      if (!d) continue;
      const cfg = d.config as { digest?: unknown } | undefined;
      name(cfg?.digest);
      if (Array.isArray(d.layers)) for (const l of d.layers as { digest?: unknown }[]) name(l?.digest);
      if (Array.isArray(d.manifests)) for (const c of d.manifests as { digest?: unknown }[]) name(c?.digest);
      if (Array.isArray(d.fsLayers)) for (const l of d.fsLayers as { blobSum?: unknown }[]) name(l?.blobSum);
    }
    const named = new Set(live);
    let links = 0;
    for (const k of await listOr(this.driver, `v2/repositories/${repo}/_layers`)) {
      const hex = leaf(k);
      if (!HEX.test(hex)) continue;
      links++;
      if (live.has(hex)) continue;
      if (o.young(await mtime(this.driver, k))) live.add(hex);
      else staleLinks.push({ repo, hex });
    }
    return { live, named, revisions: revisions.size, links, untagged, staleLinks };
  }

  /** Mark the config and manifest of the bridge's v2 view of a v1 chain (top first), when it has one. */
  private async markDerived(root: string, ancestry: readonly unknown[], derived: Set<string>, markDigest: (d: unknown) => void): Promise<void> {
    const records: { id: string; json: Buffer; link: LayerLink }[] = [];
    for (const id of [...ancestry].reverse()) {
      if (typeof id !== 'string' || !HEX.test(id)) return;
      const json = await readOptional(this.driver, `${root}/${id}/json`, this.imageRecordMax);
      const link = parseJson<LayerLink>(await readOptional(this.driver, `${root}/${id}/layer`, RECORD_MAX));
      if (!json || !link) return;
      records.push({ id, json, link });
    }
    try {
      const d = derivedV2Image(records, this.maxConfigSize);
      markDigest(d.configDigest);
      markDigest(d.manifestDigest);
      derived.add(d.manifestDigest.slice(7));
    } catch {
      // no v2 view (a layer without a v2 media type): nothing derived to keep
    }
  }
}
