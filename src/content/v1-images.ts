import { randomBytes } from 'node:crypto';
import { Writable, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { isNotFound, type StorageDriver } from '../storage/driver.js';
import { keyExists, parseRecord, readOptional, RECORD_MAX, removeIfPresent } from './small-objects.js';
import { RegistryError } from '../errors/index.js';
import { LayerHasher, type InnerFactory, type LayerDigests } from '../digest/layer-hasher.js';
import { LayerFileError, type LayerFileJob, type LayerFiles } from '../digest/layer-files.js';
import type { TarSumSet } from '../digest/tarsum.js';
import { BlobStore, ShortBodyError, SizeLimitError, type BlobInfo, type StagedBlob } from './blob-store.js';
import { keys, type ImageScope } from './keys.js';
import type { RepoName } from './names.js';
import { KeyedMutex, type Locks } from './mutex.js';
import { FILES_CACHE_MAX, filesListing, type LayerLink } from './v1-files.js';
import { isImageId } from '../digest/digest.js';
import { AnswerCache } from '../util/answer-cache.js';
import { jsonDepthExceeds, MAX_JSON_DEPTH } from '../http/body.js';

/** What PUT layer learnt about the bytes, stored beside the image (v1/images/<id>/layer). */
export type { LayerLink } from './v1-files.js';

export interface ImageJson {
  readonly json: Buffer;
  /** Layer size, when the image has a layer. */
  readonly size?: number;
  /** Verified payload checksum, when the image is complete. */
  readonly payload?: string;
}

/**
 * Most images an ancestry may list: the image and its parents. Every image's ancestry record is its
 * parent's plus its id, so a chain of N images stores O(N²) bytes (10,000 images: ~6.5 GB) and a pull
 * of its top asks for N layers: the chain stops here (400 at PUT json, skipped by the importer, no v1
 * view of a longer v2 history, refused from a mirror's upstream). Docker's limit on layers is 127; v1
 * chains of a few hundred existed.
 */
export const MAX_ANCESTRY = 1000;

/** Bound of an ancestry record read back: MAX_ANCESTRY ids of 64 hex digits, quoted, comma-separated (67 bytes each). */
export const ANCESTRY_MAX = MAX_ANCESTRY * 70;

/**
 * Bound of an image json read back: a push's json is held to max_json_size, the v2→v1 bridge's (a
 * config's) to max_config_size; the larger, and some room.
 */
export const imageJsonMax = (maxJsonSize: number, maxConfigSize: number): number => Math.max(maxJsonSize, maxConfigSize) + RECORD_MAX;

/** imageJsonMax of the defaults (4 and 8 MiB), when the options name none (V1ImageOptions.maxJsonSize). */
export const IMAGE_JSON_MAX = imageJsonMax(4 * 1024 * 1024, 8 * 1024 * 1024);

/** The refusal of an image whose ancestry would list more than MAX_ANCESTRY images. */
export const ancestryTooLong = (length: number): RegistryError =>
  new RegistryError('ANCESTRY_TOO_LONG', `Image ancestry too long: ${length} images, a chain may hold at most ${MAX_ANCESTRY}`);

/** An image the importer wrote but has not made visible yet (V1Images.stageImport). */
export interface StagedImage {
  readonly scope: ImageScope;
  readonly id: string;
  readonly json: Buffer;
  readonly link: LayerLink;
  /** The checksum record (payload, and the tarsum that verified): written with the link at publishImported. */
  readonly checksum: Buffer;
  /** The records written without a flush: to make durable before publishImported. */
  readonly keys: readonly string[];
  /**
   * This import's in-progress mark (`import <random>`): a client's push of the same id into the same
   * repository replaces it with its own (PUT json), and every later step of the import checks it is
   * still this one, so neither overwrites nor completes the other's image.
   */
  readonly mark: Buffer;
  /** The layer's bytes, when they wait in an upload key to be published with the json. */
  readonly blob?: StagedBlob;
}

/**
 * The records of a complete image (json stored, no push in progress), read together: what the GET
 * routes serve (R3 json, R5 layer, R8 ancestry). Shared between requests: never modify it.
 */
export interface CompleteImage {
  readonly json: Buffer;
  /** The ancestry record as stored (JSON list), when there is one. */
  readonly ancestry: Buffer | undefined;
  readonly link: LayerLink | undefined;
  /** The verified payload checksum, when the client sent one with PUT checksum. */
  readonly payload: string | undefined;
}

/** Why an import step gave up an image: a client's push of the same id replaced what it staged. */
export const IMPORT_OVERTAKEN = 'a client pushed this image into the repository while it was imported: left to that push';

/** Bounds of the complete-image cache: image json is ~1–4 KiB (max_json_size at most). */
const RECORD_ANSWERS = { maxEntries: 20_000, maxBytes: 16 * 1024 * 1024 } as const;

export interface PutJsonChecks {
  /** Token mode: ids the index listed for the token's repository (spec §2.5). */
  readonly allowedIds?: ReadonlySet<string>;
  /**
   * Token mode: bring an image the scope does not hold into it from a repository the pusher may
   * read (true when it is there afterwards). Used for the image itself (then it exists: 409, and
   * the client skips its layer) and for its parent.
   */
  readonly link?: (id: string) => Promise<boolean>;
}

export interface V1ImageOptions {
  /**
   * Images belong to repositories (a registry that checks tokens with an index): every record is
   * kept and looked up in the repository's own scope. False: one registry-wide scope (standalone).
   */
  readonly scoped: boolean;
  readonly maxLayerSize: number;
  /**
   * The most bytes an image json is read back with (a larger one is an error, not read whole): at
   * least max_json_size (a push's) and max_config_size (the v2→v1 bridge's). Default IMAGE_JSON_MAX.
   */
  readonly maxJsonSize?: number;
  readonly verifyTarsum: boolean;
  /** Where gunzip and tarsum run (a worker thread, when main.ts provides one). */
  readonly innerDigests?: InnerFactory;
  /**
   * The per-image locks: across every node sharing the storage (src/content/storage-lock.ts) in a
   * server; in-process when not given.
   */
  readonly locks?: Locks;
  /**
   * The storage beneath this node's metadata cache (CachingDriver) when the driver is that cache:
   * what every decision taken under an image's lock reads the image's records from. The lock is
   * shared by every node on the storage, but a record cached here (an in-progress mark, an absent
   * json) may be older than another node's write made under it: a PUT json of an id another node
   * completed meanwhile restarted that image instead of answering 409. Default: the driver.
   */
  readonly storage?: StorageDriver;
  /**
   * Keep complete images' records in memory ({@link V1Images.complete}), as the metadata cache
   * does (metadata_cache_ttl): each for `ttlMs`, and only while `stamp` (the metadata cache's
   * change stamp, moved by every write of this node) is unchanged. Filled from `storage`, the driver
   * beneath that cache, so another node's change (a delete, the records gc removes) shows here
   * within `ttlMs` of it, not within twice that. Absent: every request reads the storage.
   */
  readonly records?: { readonly ttlMs: number; readonly stamp: () => number; readonly storage: StorageDriver };
}

/**
 * The v1 image records of the registry: json, ancestry, layer link and the in-progress mark, as small
 * objects in the driver, and the layer bytes in the blob store. The in-progress mark is written first
 * and removed last, so a half-pushed image is never served (spec §2.1 "done" check).
 *
 * Records live in a scope ({@link ImageScope}): with accounts, the repository the request's token
 * names. The v1 protocol's image ids are global names chosen by clients, so an id is resolved within
 * the repository: two accounts can push the same id with their own content, a client that lists or
 * tags someone else's id reaches nothing, and an image enters another repository only through
 * {@link link}, which the caller allows only when the pusher may read a repository that holds it
 * (quay's find_create_or_link_image). Layer bytes stay stored once per digest.
 */
export class V1Images {
  private readonly locks: Locks;
  private readonly records: AnswerCache<CompleteImage | undefined> | undefined;
  /**
   * What the image's records are read from under its lock (every `locks.run` callback): the storage
   * past the metadata cache ({@link V1ImageOptions.storage}). Reads outside a lock (the GET routes,
   * the checks a request makes before it takes the lock) go through the cache.
   */
  private readonly held: StorageDriver;
  constructor(
    private readonly driver: StorageDriver,
    readonly blobs: BlobStore,
    private readonly opts: V1ImageOptions,
  ) {
    this.locks = opts.locks ?? new KeyedMutex();
    this.held = opts.storage ?? driver;
    const r = opts.records;
    this.records =
      r && r.ttlMs > 0
        ? new AnswerCache<CompleteImage | undefined>(
            { ttlMs: r.ttlMs, stamp: r.stamp },
            { ...RECORD_ANSWERS, weigh: (c) => 512 + (c?.json.length ?? 0) + (c?.ancestry?.length ?? 0) },
            (c) => c !== undefined, // an image absent or in progress is asked again next time
          )
        : undefined;
  }

  /** The scope holding a repository's images. */
  scopeOf(repo: RepoName): ImageScope {
    return this.opts.scoped ? repo : null;
  }

  get scoped(): boolean {
    return this.opts.scoped;
  }

  private read(key: string, maxSize: number): Promise<Buffer | undefined> {
    return readOptional(this.driver, key, maxSize);
  }

  private get jsonMax(): number {
    return this.opts.maxJsonSize ?? IMAGE_JSON_MAX;
  }

  private readImageJson(scope: ImageScope, id: string, driver = this.driver): Promise<Buffer | undefined> {
    return readOptional(driver, keys.imageJson(scope, id), this.jsonMax);
  }

  private readAncestry(scope: ImageScope, id: string, driver = this.driver): Promise<Buffer | undefined> {
    return readOptional(driver, keys.ancestry(scope, id), ANCESTRY_MAX);
  }

  private exists(key: string): Promise<boolean> {
    return keyExists(this.driver, key);
  }

  private async remove(key: string): Promise<void> {
    await removeIfPresent(this.driver, key);
  }

  async hasJson(scope: ImageScope, id: string): Promise<boolean> {
    return this.exists(keys.imageJson(scope, id));
  }

  async inProgress(scope: ImageScope, id: string): Promise<boolean> {
    return this.exists(keys.inProgress(scope, id));
  }

  layerLink(scope: ImageScope, id: string): Promise<LayerLink | undefined> {
    return this.readLayerLink(scope, id);
  }

  private async readLayerLink(scope: ImageScope, id: string, driver = this.driver): Promise<LayerLink | undefined> {
    const key = keys.layerLink(scope, id);
    const raw = await readOptional(driver, key, RECORD_MAX);
    return raw ? parseRecord<LayerLink>(raw, key) : undefined;
  }

  /** Throws 400 "being uploaded" for an incomplete image (spec §2.1 "done"). */
  async assertComplete(scope: ImageScope, id: string): Promise<void> {
    if (await this.inProgress(scope, id)) throw new RegistryError('IMAGE_UPLOADING');
  }

  /** The json bytes, or undefined (any state). */
  readJson(scope: ImageScope, id: string): Promise<Buffer | undefined> {
    return this.readImageJson(scope, id);
  }

  /** A pullable image: json stored and no upload in progress. */
  async isComplete(scope: ImageScope, id: string): Promise<boolean> {
    return (await this.hasJson(scope, id)) && !(await this.inProgress(scope, id));
  }

  /**
   * The records of a complete image, or undefined when it is absent or a push of it is in progress
   * (the caller then tells which: {@link assertComplete}, 404). The GET routes' one read: with
   * `records` configured it comes from memory, as immutable as the image itself until a delete.
   */
  complete(scope: ImageScope, id: string): Promise<CompleteImage | undefined> {
    const storage = this.opts.records?.storage;
    if (!this.records || !storage) return this.readComplete(this.driver, scope, id);
    return this.records.get(keys.image(scope, id), () => this.readComplete(storage, scope, id));
  }

  private async readComplete(driver: StorageDriver, scope: ImageScope, id: string): Promise<CompleteImage | undefined> {
    const marked = (): Promise<boolean> => keyExists(driver, keys.inProgress(scope, id));
    if (await marked()) return undefined;
    const [json, ancestry, link, client] = await Promise.all([
      this.readImageJson(scope, id, driver),
      this.readAncestry(scope, id, driver),
      readOptional(driver, keys.layerLink(scope, id), RECORD_MAX),
      readOptional(driver, keys.clientChecksum(scope, id), RECORD_MAX),
    ]);
    if (!json) return undefined;
    // A push of this id that started while the records were read wrote its mark first: what was
    // read may be half of it. No mark now, none before: the records are one complete image.
    if (await marked()) return undefined;
    const parsed = link ? parseRecord<LayerLink>(link, keys.layerLink(scope, id)) : undefined;
    return { json, ancestry, link: parsed, payload: parsed && client ? parsed.payload : undefined };
  }

  /** R3: the json bytes as uploaded, with the layer size and payload checksum when known. */
  async getJson(scope: ImageScope, id: string): Promise<ImageJson> {
    await this.assertComplete(scope, id);
    const json = await this.readImageJson(scope, id);
    if (!json) throw new RegistryError('IMAGE_NOT_FOUND');
    const link = await this.layerLink(scope, id);
    if (!link) return { json };
    const client = await this.read(keys.clientChecksum(scope, id), RECORD_MAX);
    return { json, size: link.size, ...(client ? { payload: link.payload } : {}) };
  }

  /** R4, checks in the order of spec §2.5. */
  async putJson(scope: ImageScope, id: string, body: Buffer, checks: PutJsonChecks = {}): Promise<void> {
    const obj = imageObject(body);
    if (!('id' in obj)) throw new RegistryError('MISSING_ID');
    if (obj.id !== id) throw new RegistryError('ID_MISMATCH');
    if (checks.allowedIds && !checks.allowedIds.has(id)) throw new RegistryError('NOT_IN_REPOSITORY');
    if (checks.link && !(await this.hasJson(scope, id)) && (await checks.link(id))) throw new RegistryError('IMAGE_EXISTS');
    const parent = obj.parent;
    if (parent !== undefined && parent !== null && parent !== '') {
      if (typeof parent !== 'string' || !isImageId(parent) || parent === id) {
        throw new RegistryError('PARENT_MISSING');
      }
      // The parent must be in this scope: pushed here, or brought here from a repository the
      // pusher may read. Anything else is "missing", whoever else holds that id.
      if (!(await this.hasJson(scope, parent)) && !(checks.link && (await checks.link(parent)))) {
        throw new RegistryError('PARENT_MISSING');
      }
    }
    await this.locks.run(this.lockKey(scope, id), async () => {
      const existing = await this.readImageJson(scope, id, this.held);
      const marked = await keyExists(this.held, keys.inProgress(scope, id));
      if (existing && !marked) throw new RegistryError('IMAGE_EXISTS');
      // Same bytes again (a retry, or a second client pushing the same image at once): keep the layer
      // already uploaded for them, its payload checksum is still right.
      if (existing && existing.equals(body)) return;
      let ancestry: string[] = [id];
      if (typeof parent === 'string' && parent !== '') {
        const raw = await this.readAncestry(scope, parent, this.held);
        const parentAncestry = raw ? parseRecord<string[]>(raw, keys.ancestry(scope, parent)) : [parent];
        ancestry = [id, ...parentAncestry];
      }
      // before anything is written: the parent's chain is complete at most (its own PUT was held to it)
      if (ancestry.length > MAX_ANCESTRY) throw ancestryTooLong(ancestry.length);
      // The mark goes first: whatever happens after it, the image is not served until PUT checksum.
      await this.driver.putContent(keys.inProgress(scope, id), Buffer.from('true'));
      await this.remove(keys.layerLink(scope, id));
      await this.remove(keys.clientChecksum(scope, id));
      await this.remove(keys.files(scope, id));
      await this.driver.putContent(keys.imageJson(scope, id), body);
      await this.driver.putContent(keys.ancestry(scope, id), Buffer.from(JSON.stringify(ancestry)));
    });
  }

  private lockKey(scope: ImageScope, id: string): string {
    return `image\n${scope?.full ?? ''}\n${id}`;
  }

  /**
   * R6: stream the layer into the blob store, hashing on the way (spec §2.7). `tarsums: false` (the
   * importer, when its tree recorded no tarsum to compare) skips the tarsums: the link then has
   * the digest, payload and diff_id but no tarsum, and a PUT checksum verifies the payload only.
   */
  async putLayer(
    scope: ImageScope,
    id: string,
    body: Readable,
    contentLength?: number,
    opts: { readonly tarsums?: boolean; readonly tarsumV1?: boolean } = {},
  ): Promise<LayerLink> {
    const json = await this.readImageJson(scope, id);
    if (!json) throw new RegistryError('IMAGE_NOT_FOUND');
    if (!(await this.inProgress(scope, id)) && (await this.exists(keys.layerLink(scope, id)))) {
      throw new RegistryError('IMAGE_EXISTS');
    }
    // v0 tarsums only by default (what the CLI sends): v1/dev are computed at PUT checksum if ever
    // asked for; the importer asks for them when its tree recorded one.
    const hasher = new LayerHasher(json, this.opts.innerDigests, { tarsums: opts.tarsums ?? true, tarsumV1: opts.tarsumV1 ?? false });
    let blob;
    try {
      blob = await this.blobs.ingest(body, hasher, {
        maxSize: this.opts.maxLayerSize,
        ...(contentLength !== undefined ? { expectedSize: contentLength } : {}),
      });
    } catch (e) {
      if (e instanceof SizeLimitError) throw new RegistryError('LAYER_TOO_LARGE');
      if (e instanceof ShortBodyError) throw new RegistryError('UPLOAD_INCOMPLETE');
      throw e;
    }
    const d = hasher.result();
    const link: LayerLink = {
      digest: blob.digest,
      size: blob.size,
      payload: d.payload,
      compression: d.compression,
      ...(d.diffId ? { diffId: d.diffId } : {}),
      ...(d.tarsum ? { tarsum: d.tarsum } : {}),
    };
    await this.locks.run(this.lockKey(scope, id), async () => {
      // The json may have been replaced while the bytes streamed in: then this payload is stale.
      const now = await this.readImageJson(scope, id, this.held);
      if (!now || !now.equals(json)) throw new RegistryError('IMAGE_UPLOADING', 'Image json changed during the upload, retry');
      if (!(await keyExists(this.held, keys.inProgress(scope, id)))) throw new RegistryError('IMAGE_EXISTS');
      await this.driver.putContent(keys.layerLink(scope, id), Buffer.from(JSON.stringify(link)));
    });
    return link;
  }

  /** R7: verify the client's checksums against the ones computed while streaming (spec §2.8). */
  async putChecksum(scope: ImageScope, id: string, payloadHeader: string | undefined, tarsumHeader: string | undefined): Promise<LayerLink> {
    if (payloadHeader === undefined) throw new RegistryError('PAYLOAD_NOT_SET');
    const payload = payloadHeader.trim();
    if (payload === '') throw new RegistryError('CHECKSUM_MISSING');
    return this.locks.run(this.lockKey(scope, id), async () => {
      if (!(await keyExists(this.held, keys.imageJson(scope, id)))) throw new RegistryError('IMAGE_NOT_FOUND');
      const link = await this.readLayerLink(scope, id, this.held);
      if (!(await keyExists(this.held, keys.inProgress(scope, id)))) {
        // A second client finishing the same image (concurrent pushes): say "already exists", which
        // the 1.x client treats as success, when its checksum is the one already verified.
        if (link && link.payload === payload) throw new RegistryError('IMAGE_EXISTS');
        throw new RegistryError('CHECKSUM_CANNOT_SET');
      }
      if (!link) throw new RegistryError('LAYER_MISSING');
      if (link.payload !== payload) throw new RegistryError('CHECKSUM_MISMATCH');
      const tarsum = tarsumHeader?.trim();
      if (this.opts.verifyTarsum && tarsum && link.tarsum) {
        let ok = tarsumMatches(tarsum, link.tarsum);
        if (ok === undefined) ok = tarsumMatches(tarsum, await this.completeTarsum(scope, id, link));
        if (!ok) throw new RegistryError('CHECKSUM_MISMATCH');
      }
      await this.driver.putContent(keys.clientChecksum(scope, id), Buffer.from(JSON.stringify({ payload, ...(tarsum ? { tarsum } : {}) })));
      await this.remove(keys.inProgress(scope, id));
      return link;
    });
  }

  /**
   * The tarsums PUT layer left out (v1/dev, under both owner rules), computed from the stored layer
   * (one more read of it: only for a client that sends a v1 or dev tarsum, which the Docker CLI's
   * v1 push never does) and kept in the link. Called under the image's lock.
   */
  private async completeTarsum(scope: ImageScope, id: string, link: LayerLink): Promise<NonNullable<LayerLink['tarsum']>> {
    const json = await this.readImageJson(scope, id, this.held);
    if (!json) throw new RegistryError('IMAGE_NOT_FOUND');
    const hasher = new LayerHasher(json, this.opts.innerDigests);
    await pipeline(await this.blobs.open(link.digest), hasher, new Writable({ write: (_c, _e, cb) => cb() }));
    const d = hasher.result();
    if (d.digest !== link.digest || !d.tarsum) throw new Error(`layer of ${id}: stored bytes no longer give ${link.digest}`);
    const full: LayerLink = { ...link, tarsum: d.tarsum };
    await this.driver.putContent(keys.layerLink(scope, id), Buffer.from(JSON.stringify(full)));
    return d.tarsum;
  }

  /**
   * The importer's write of a whole image, made durable in batches with other images (issue 16:
   * a flush per record cost ~10 fsyncs per image). Three steps, the caller flushing between them
   * (StorageDriver.syncKeys, once for many images):
   * 1. stageImport: the in-progress mark, the ancestry and the layer's bytes (staged, or into the
   *    blob store), none of them flushed; the layer is hashed and verified. No json yet: the id
   *    resolves to nothing, and the mark says "not done" to whoever finds the records.
   * 2. once the mark is durable, publishImported moves staged bytes to their digest and, under the
   *    image's lock, writes the layer's link, the checksum record and the json (not flushed either);
   * 3. still under that lock, once those are durable, it removes the mark: only then is the image
   *    served.
   * The image's lock (a StorageLock: a live server on the same storage takes the same) is taken
   * twice per image, and publishImported checks that the mark is still this import's.
   * A crash anywhere leaves either no json, or the json with the mark durably before it, so the
   * image is never served half written; the next import finds it incomplete and writes it again.
   * `ancestry` is the chain [id, parent, …] the tree recorded; the json's parent must be its second
   * entry. The layer is checked by `verify` (the recorded checksums) before anything refers to it:
   * a mismatch removes what was staged and returns the reason.
   */
  async stageImport(
    scope: ImageScope,
    id: string,
    json: Buffer,
    ancestry: readonly string[],
    body: Readable | (() => Readable),
    size: number,
    opts: {
      readonly tarsums: boolean;
      readonly tarsumV1: boolean;
      readonly verify: (link: LayerLink) => { bad?: string; tarsum?: string };
      /**
       * The layer as a file on the local disk, and the worker that copies and hashes such files:
       * used instead of `body` (which is then never read) when the storage has local files and
       * the layer's records are made durable later (syncKeys).
       */
      readonly file?: { readonly src: LayerFileJob['src']; readonly workers: LayerFiles };
    },
  ): Promise<{ staged: StagedImage } | { bad: string }> {
    const obj = imageObject(json);
    if (obj.id !== id) throw new RegistryError(!('id' in obj) ? 'MISSING_ID' : 'ID_MISMATCH');
    const parent = obj.parent === null || obj.parent === '' ? undefined : obj.parent;
    if (ancestry[0] !== id || parent !== ancestry[1]) throw new RegistryError('PARENT_MISSING', 'the json names another parent than the ancestry');
    if (ancestry.length > MAX_ANCESTRY) throw ancestryTooLong(ancestry.length);
    const lazy = { durable: !this.driver.syncKeys };
    const staged = [keys.inProgress(scope, id), keys.ancestry(scope, id)];
    const mark = Buffer.from(`import ${randomBytes(12).toString('hex')}`);
    await this.locks.run(this.lockKey(scope, id), async () => {
      if ((await keyExists(this.held, keys.imageJson(scope, id))) && !(await keyExists(this.held, keys.inProgress(scope, id)))) {
        throw new RegistryError('IMAGE_EXISTS');
      }
      await this.driver.putContent(keys.inProgress(scope, id), mark, lazy);
      await this.remove(keys.layerLink(scope, id));
      await this.remove(keys.clientChecksum(scope, id));
      await this.remove(keys.files(scope, id));
      await this.driver.putContent(keys.ancestry(scope, id), Buffer.from(JSON.stringify(ancestry)), lazy);
    });
    const innerOpts = { tarsums: opts.tarsums, tarsumV1: opts.tarsumV1 };
    const hasher = new LayerHasher(json, this.opts.innerDigests, innerOpts);
    let link: LayerLink;
    let staging: StagedBlob | undefined;
    try {
      let blob: BlobInfo;
      let d: LayerDigests | undefined;
      try {
        // with syncKeys the layer's bytes are flushed with the batch, and published after that
        const ingest = { maxSize: this.opts.maxLayerSize, expectedSize: size };
        const file = opts.file;
        if (lazy.durable) blob = await this.blobs.ingest(streamOf(body), hasher, ingest);
        else {
          // copied and hashed by the worker, from the bytes it writes (when the storage has local files)
          const local = file
            ? await this.blobs.ingestStagedLocal((dst) =>
                file.workers.copy({ src: file.src, dst, extra: json, innerOpts, maxSize: this.opts.maxLayerSize, expectedSize: size }),
              )
            : undefined;
          d = local?.written;
          blob = staging = local?.staged ?? (await this.blobs.ingestStaged(streamOf(body), hasher, ingest));
        }
      } catch (e) {
        if (e instanceof SizeLimitError) throw new RegistryError('LAYER_TOO_LARGE');
        if (e instanceof ShortBodyError) throw new RegistryError('UPLOAD_INCOMPLETE');
        if (e instanceof LayerFileError && e.failure.kind === 'too-large') throw new RegistryError('LAYER_TOO_LARGE');
        if (e instanceof LayerFileError && e.failure.kind === 'short') throw new RegistryError('UPLOAD_INCOMPLETE');
        throw e;
      }
      d ??= hasher.result();
      link = {
        digest: blob.digest,
        size: blob.size,
        payload: d.payload,
        compression: d.compression,
        ...(d.diffId ? { diffId: d.diffId } : {}),
        ...(d.tarsum ? { tarsum: d.tarsum } : {}),
      };
    } catch (e) {
      await this.discardIncomplete(scope, id, mark);
      throw e;
    }
    const verdict = opts.verify(link);
    if (verdict.bad) {
      try {
        await this.discardIncomplete(scope, id, mark);
      } finally {
        if (staging) await this.blobs.discardStaged(staging);
      }
      return { bad: verdict.bad };
    }
    // the link and the checksum record are written with the json (publishImported), under one lock
    const checksum = Buffer.from(JSON.stringify({ payload: link.payload, ...(verdict.tarsum ? { tarsum: verdict.tarsum } : {}) }));
    return {
      staged: { scope, id, json, link, checksum, mark, keys: staging ? [...staged, staging.uploadKey] : staged, ...(staging ? { blob: staging } : {}) },
    };
  }

  /** Whether the image's in-progress mark is `mark` (an import's own: stageImport). Under the image's lock. */
  private async marked(scope: ImageScope, id: string, mark: Buffer): Promise<boolean> {
    const now = await readOptional(this.held, keys.inProgress(scope, id), RECORD_MAX);
    return now !== undefined && now.equals(mark);
  }

  /**
   * Steps 2 and 3 of an import (stageImport), once the staged keys (the mark first) are durable,
   * under one hold of the image's lock: the layer's link, the checksum record and the json are
   * written (not flushed), `flush` makes them durable (the caller's batch: one flush for many
   * images, so the lock is held until it is done), and the mark goes: from then on the image is
   * served. The layer's staged bytes are moved to their digest first, whatever follows (content
   * addressed, durable before the move). False, with no record written, when a client's push of the
   * same id took the image over since it was staged (its mark, or its layer); `flush` is then not
   * called, nor when this throws before it.
   */
  async publishImported(s: StagedImage, flush: (keys: readonly string[]) => Promise<void>): Promise<boolean> {
    const lazy = { durable: !this.driver.syncKeys };
    const published = s.blob ? [await this.blobs.publishStaged(s.blob)] : [];
    const linkKey = keys.layerLink(s.scope, s.id);
    const checksumKey = keys.clientChecksum(s.scope, s.id);
    const jsonKey = keys.imageJson(s.scope, s.id);
    return this.locks.run(this.lockKey(s.scope, s.id), async () => {
      // stageImport removed the link under this mark: a link now is a push's PUT layer
      if (!(await this.marked(s.scope, s.id, s.mark))) return false;
      if ((await readOptional(this.held, linkKey, RECORD_MAX)) !== undefined) return false;
      const link = Buffer.from(JSON.stringify(s.link));
      await this.driver.putContent(linkKey, link, lazy);
      await this.driver.putContent(checksumKey, s.checksum, lazy);
      await this.driver.putContent(jsonKey, s.json, lazy);
      await flush([...published, linkKey, checksumKey, jsonKey]);
      // a push waits for this lock; the records can only have changed if it was broken meanwhile
      // (a pause past the lease): then the mark stays, and the image is left to the push
      const [ours, nowLink, json] = await Promise.all([
        this.marked(s.scope, s.id, s.mark),
        readOptional(this.held, linkKey, RECORD_MAX),
        this.readImageJson(s.scope, s.id, this.held),
      ]);
      if (!ours || !nowLink?.equals(link) || !json?.equals(s.json)) return false;
      await this.remove(keys.inProgress(s.scope, s.id));
      return true;
    });
  }

  /**
   * Remove an image that is still being pushed (its mark is there): the importer's way to drop an
   * image whose recorded checksums did not match (issue 16: never imported half). A complete image
   * is left alone (false). The json goes first, so the id resolves to nothing from the first step.
   */
  async discardIncomplete(scope: ImageScope, id: string, mark?: Buffer): Promise<boolean> {
    return this.locks.run(this.lockKey(scope, id), async () => {
      if (!(await keyExists(this.held, keys.inProgress(scope, id)))) return false;
      // an import removes only what it staged itself, never a client's push in progress
      if (mark && !(await this.marked(scope, id, mark))) return false;
      await this.remove(keys.imageJson(scope, id));
      await this.remove(keys.layerLink(scope, id));
      await this.remove(keys.clientChecksum(scope, id));
      await this.remove(keys.files(scope, id));
      await this.remove(keys.ancestry(scope, id));
      await this.remove(keys.inProgress(scope, id));
      return true;
    });
  }

  /** R8. */
  async getAncestry(scope: ImageScope, id: string): Promise<string[]> {
    await this.assertComplete(scope, id);
    const raw = await this.readAncestry(scope, id);
    if (!raw) throw new RegistryError('IMAGE_NOT_FOUND');
    return parseRecord<string[]>(raw, keys.ancestry(scope, id));
  }

  /** R5: the stored layer of a complete image. */
  async getLayer(scope: ImageScope, id: string): Promise<LayerLink> {
    await this.assertComplete(scope, id);
    const link = await this.layerLink(scope, id);
    if (!link) throw new RegistryError('IMAGE_NOT_FOUND');
    return link;
  }

  /** R9: the member list of the layer as JSON text, streamed; kept beside the image when small (v1-files.ts). */
  async files(scope: ImageScope, id: string): Promise<Readable> {
    return filesListing({
      cached: async () => {
        const info = await this.driver.stat(keys.files(scope, id)).catch((e: unknown) => (isNotFound(e) ? undefined : Promise.reject(e)));
        return info && info.size <= FILES_CACHE_MAX ? this.read(keys.files(scope, id), FILES_CACHE_MAX) : undefined;
      },
      layer: () => this.getLayer(scope, id),
      open: (link) => this.openLayer(link, 0),
      keep: (json) => this.driver.putContent(keys.files(scope, id), json),
    });
  }

  /** A pre-signed URL of the layer's bytes when the storage redirects (storage_redirect), else undefined. */
  layerRedirect(link: LayerLink): Promise<string | undefined> {
    return this.blobs.redirectURL(link.digest);
  }

  /** `size`: the layer's size as the caller knows it (see BlobStore.open). */
  openLayer(link: LayerLink, offset: number, length?: number, size?: number): Promise<Readable> {
    return this.blobs.open(link.digest, offset, length, size);
  }

  /**
   * Bring image `id` and its ancestors from repository `from` into repository `to`, record for record
   * (the layer bytes are shared by digest). The caller has established that the pusher may read
   * `from` and write `to`. Nothing is linked (false) when any image of the chain is incomplete in
   * `from`, or when `to` already holds a different image (other json or layer) under one of the ids:
   * the pusher then uploads its own, as for an id nobody has.
   */
  async link(from: ImageScope, to: RepoName, id: string): Promise<boolean> {
    if (!this.opts.scoped || from?.full === to.full) return false;
    const rawAncestry = await this.readAncestry(from, id);
    if (!rawAncestry || !(await this.isComplete(from, id))) return false;
    let chain: unknown;
    try {
      chain = parseRecord<unknown>(rawAncestry, keys.ancestry(from, id));
    } catch {
      return false;
    }
    if (!Array.isArray(chain) || chain[0] !== id || !chain.every((c) => typeof c === 'string' && isImageId(c))) return false;
    const copies: { id: string; json: Buffer; ancestry: Buffer; layer: Buffer; checksum: Buffer | undefined }[] = [];
    for (const cid of chain as string[]) {
      const [json, ancestry, layer, checksum, marked] = await Promise.all([
        this.readImageJson(from, cid),
        this.readAncestry(from, cid),
        this.read(keys.layerLink(from, cid), RECORD_MAX),
        this.read(keys.clientChecksum(from, cid), RECORD_MAX),
        this.inProgress(from, cid),
      ]);
      if (!json || !ancestry || !layer || marked) return false;
      const mine = await this.readImageJson(to, cid);
      if (mine) {
        const mineLayer = await this.read(keys.layerLink(to, cid), RECORD_MAX);
        if (!mine.equals(json) || !mineLayer || !sameBlob(mineLayer, layer) || (await this.inProgress(to, cid))) return false;
        continue; // already there, same image
      }
      copies.push({ id: cid, json, ancestry, layer, checksum });
    }
    // root first, and within an image the json last: an image exists in `to` only once complete,
    // and never before its parent
    for (const c of copies.reverse()) {
      await this.locks.run(this.lockKey(to, c.id), async () => {
        if (await keyExists(this.held, keys.imageJson(to, c.id))) return; // a concurrent link or push got there first
        await this.driver.putContent(keys.ancestry(to, c.id), c.ancestry);
        await this.driver.putContent(keys.layerLink(to, c.id), c.layer);
        if (c.checksum) await this.driver.putContent(keys.clientChecksum(to, c.id), c.checksum);
        await this.driver.putContent(keys.imageJson(to, c.id), c.json);
      });
    }
    return (await this.isComplete(to, id)) && (await this.sameImage(from, to, id));
  }

  private async sameImage(a: ImageScope, b: ImageScope, id: string): Promise<boolean> {
    const [ja, jb, la, lb] = await Promise.all([
      this.readImageJson(a, id),
      this.readImageJson(b, id),
      this.read(keys.layerLink(a, id), RECORD_MAX),
      this.read(keys.layerLink(b, id), RECORD_MAX),
    ]);
    return !!ja && !!jb && ja.equals(jb) && !!la && !!lb && sameBlob(la, lb);
  }

  /**
   * Write the records of an image the v2→v1 bridge derived (complete, no push in progress). Records
   * already there are kept only when they are exactly this image (same json, same blob); anything
   * else under the id is replaced: a derived view never trusts records it did not make.
   */
  /**
   * Cache an image a v1 mirror fetched from its upstream (src/mirror/v1-mirror.ts): the layer is
   * streamed into the blob store, hashed as a push is, and the records are written complete only
   * when its payload checksum is the one the upstream announced (X-Docker-Checksum-Payload). A
   * mismatch throws and leaves no record (the bytes stay only at their own sha256, unlinked).
   */
  async putMirrored(
    scope: ImageScope,
    id: string,
    json: Buffer,
    ancestry: readonly string[],
    body: Readable,
    expectedPayload: string | undefined,
  ): Promise<LayerLink> {
    const hasher = new LayerHasher(json, this.opts.innerDigests, { tarsumV1: false });
    let blob;
    try {
      blob = await this.blobs.ingest(body, hasher, { maxSize: this.opts.maxLayerSize });
    } catch (e) {
      if (e instanceof SizeLimitError) throw new RegistryError('LAYER_TOO_LARGE');
      throw e;
    }
    const d = hasher.result();
    if (expectedPayload !== undefined && d.payload !== expectedPayload) {
      throw new Error(`mirrored layer of ${id}: payload checksum ${d.payload}, the upstream announced ${expectedPayload}`);
    }
    const link: LayerLink = {
      digest: blob.digest,
      size: blob.size,
      payload: d.payload,
      compression: d.compression,
      ...(d.diffId ? { diffId: d.diffId } : {}),
      ...(d.tarsum ? { tarsum: d.tarsum } : {}),
    };
    await this.putDerived(scope, id, json, ancestry, link);
    return link;
  }

  /**
   * `keepOthers`: for ids the pusher chose (a schema1 push's v1Compatibility), a complete image of
   * another json or layer under the id is left as it is ('taken', nothing written): a v1 push of a
   * complete id is refused (IMAGE_EXISTS), and a schema1 push through v2 must not do what it may
   * not, rewriting what every tag naming the id serves (registry-wide without accounts).
   */
  async putDerived(
    scope: ImageScope,
    id: string,
    json: Buffer,
    ancestry: readonly string[],
    link: LayerLink,
    opts: { readonly keepOthers?: boolean } = {},
  ): Promise<'kept' | 'written' | 'taken'> {
    // the bridges and the mirror stop longer chains before they get here (v1ViewFromConfig, deriveSchema1, whyInconsistent)
    if (ancestry.length > MAX_ANCESTRY) throw ancestryTooLong(ancestry.length);
    return this.locks.run(this.lockKey(scope, id), async () => {
      const [mine, mineLayer, marked] = await Promise.all([
        this.readImageJson(scope, id, this.held),
        this.readLayerLink(scope, id, this.held),
        keyExists(this.held, keys.inProgress(scope, id)),
      ]);
      if (mine && mine.equals(json) && mineLayer && mineLayer.digest === link.digest && mineLayer.payload === link.payload && !marked) return 'kept';
      if (opts.keepOthers && mine && !marked) return 'taken';
      // the json goes last: until then the id resolves to nothing half-written
      await this.remove(keys.imageJson(scope, id));
      await this.remove(keys.files(scope, id));
      await this.driver.putContent(keys.ancestry(scope, id), Buffer.from(JSON.stringify(ancestry)));
      await this.driver.putContent(keys.layerLink(scope, id), Buffer.from(JSON.stringify(link)));
      await this.driver.putContent(keys.clientChecksum(scope, id), Buffer.from(JSON.stringify({ payload: link.payload })));
      await this.remove(keys.inProgress(scope, id));
      await this.driver.putContent(keys.imageJson(scope, id), json);
      return 'written';
    });
  }
}

function sameBlob(a: Buffer, b: Buffer): boolean {
  try {
    const x = parseRecord<LayerLink>(a, 'a layer link');
    const y = parseRecord<LayerLink>(b, 'a layer link');
    return x.digest === y.digest && x.size === y.size;
  } catch {
    return false;
  }
}

/**
 * A client tarsum matches when it equals the computed value of its own label (v0 either sort), under
 * either header rule of spec §6.2: Docker 1.x's, or that of clients built with Go ≥ 1.10 (uname and
 * gname hashed empty). Undefined when the label's value was not computed (v1/dev of a layer pushed
 * with v0 tarsums only): the caller computes them (V1Images.completeTarsum) and asks again.
 */
export function tarsumMatches(header: string, t: NonNullable<LayerLink['tarsum']>): boolean | undefined {
  const sets: TarSumSet[] = t.go110 ? [t, t.go110] : [t];
  if (header.startsWith('tarsum+sha256:')) return sets.some((s) => header === s.v0 || header === s.v0Plain);
  const label = header.startsWith('tarsum.v1+sha256:') ? 'v1' : header.startsWith('tarsum.dev+sha256:') ? 'dev' : undefined;
  if (label) {
    if (sets.some((s) => s[label] === undefined)) return undefined;
    return sets.some((s) => header === s[label]);
  }
  // Other algorithms (sha512, …) are not computed: nothing to compare against.
  return true;
}

/** An image json body as an object; INVALID_JSON when it is not JSON or not an object (spec §2.5). */
function imageObject(body: Buffer): Record<string, unknown> {
  // depth before parsing, as for every JSON body: 4 MiB of nested arrays cost JSON.parse ~2 s of the
  // event loop and ~150 MiB each (four at once held /v1/_ping for 4 s and took RSS from 90 to 530 MiB)
  if (jsonDepthExceeds(body, MAX_JSON_DEPTH)) throw new RegistryError('INVALID_JSON');
  let data: unknown;
  try {
    data = JSON.parse(body.toString('utf8'));
  } catch {
    throw new RegistryError('INVALID_JSON');
  }
  if (data === null || typeof data !== 'object' || Array.isArray(data)) throw new RegistryError('INVALID_JSON');
  return data as Record<string, unknown>;
}

/** A body given as a stream, or as the function that opens it (not called when it is not read). */
const streamOf = (body: Readable | (() => Readable)): Readable => (typeof body === 'function' ? body() : body);
