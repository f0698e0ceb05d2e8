import { createHash } from 'node:crypto';
import type { StorageDriver } from '../storage/driver.js';
import { isRegistryError } from '../errors/index.js';
import type { Logger } from '../log/logger.js';
import type { BlobStore } from './blob-store.js';
import { GZIPPED_EMPTY_TAR, GZIPPED_EMPTY_TAR_DIGEST, v1ViewFromConfig } from './bridge.js';
import { ConfigUnavailableError, type ConfigReader } from './config-reader.js';
import { keys } from './keys.js';
import { parseRepoName, parseTag, type RepoName } from './names.js';
import { canonicalOf } from './schema1.js';
import { isImageId } from '../digest/digest.js';
import { LINK_MAX, readOptional } from './small-objects.js';
import { MAX_ANCESTRY, type LayerLink, type V1Images } from './v1-images.js';
import type { V1Repositories } from './v1-repositories.js';
import { KeyedMutex, type Locks } from './mutex.js';
import { MT, v2TagKey } from './v2-manifests.js';
import type { V2Name } from './v2-names.js';

/** The v1 id the bridge derived for a v2-pushed tag ('' when the image has no v1 view). */
const derivedKey = (name: string, tag: string): string => `v2/repositories/${name}/_manifests/v1view/${tag}`;

const EMPTY_TAR_DIFF_ID = 'sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef';

interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  urls?: unknown;
}

/**
 * v2-pushed tags made visible to v1 clients (spec v2-bridge §3.6): the v1 view of the image is
 * derived once, when the tag is pushed, and written as ordinary v1 image records (json, ancestry,
 * a layer link to the same blob) plus the v1 tag. Ids are content-derived, so an existing id is
 * never rewritten (§3.7). Images without a v1 view (indexes, zstd or foreign layers, configs
 * without history, names with more than two components) are left to v2 clients.
 */
/** The v1 chain derived from a v2 image: root first, each with its payload checksum when known. */
export interface V1Chain {
  readonly images: readonly { readonly id: string; readonly checksum?: string }[];
}

export class V2ToV1 {
  constructor(
    private readonly driver: StorageDriver,
    private readonly blobs: BlobStore,
    private readonly repos: V1Repositories,
    private readonly images: V1Images,
    private readonly log: Logger,
    private readonly configs: ConfigReader,
    /**
     * The repository locks v1 tag writes take (StorageLock in a server: across nodes), keyed by
     * the repository's full name: the bridge moves a v1 tag under the same lock.
     */
    private readonly repoLock: Locks = new KeyedMutex(),
    /**
     * The storage without this node's metadata cache (CachingDriver): what publish reads the v2 tag
     * from under that lock (a tag cached here may name this node's push after another node's replaced it).
     */
    private readonly storage: StorageDriver = driver,
  ) {}

  /** A tag deleted through v2 goes in v1 too (spec §3.7). */
  async unpublish(name: V2Name, tags: readonly string[]): Promise<void> {
    const repo = parseRepoName(name);
    if (!repo) return;
    for (const tag of tags) {
      const t = parseTag(tag);
      if (!t) continue;
      await this.repos.deleteTag(repo, t).catch((e: unknown) => {
        if (!isRegistryError(e)) throw e;
      });
    }
  }

  /**
   * Which API's push of `tag` is current (spec §3.7): 'v2' when the v1 tag is still the one this
   * bridge derived (or the v2 push predates the record), 'v1' when a v1 push replaced it since,
   * 'gone' when it was deleted through v1.
   */
  async current(name: V2Name, tag: string): Promise<'v2' | 'v1' | 'gone'> {
    const repo = parseRepoName(name);
    const t = parseTag(tag);
    if (!repo || !t) return 'v2';
    const derived = await this.readDerived(name, tag);
    if (!derived) return 'v2';
    let id: string | undefined;
    try {
      id = await this.repos.getTag(repo, t);
    } catch (e) {
      if (!isRegistryError(e)) throw e;
    }
    if (id === undefined) return derived.cur !== '' ? 'gone' : 'v2';
    // `prev`: a publish was cut between recording the new id and moving the v1 tag (issue 17 crash
    // campaign): the v1 tag still names the previous derived image, no v1 push happened
    return id === derived.cur || (derived.prev !== '' && id === derived.prev) ? 'v2' : 'v1';
  }

  /**
   * Whether the v1 tag is this bridge's view of a v2 push (its id is the derived one, or the one
   * before it while a publish was in progress) rather than a v1 push. When the v2 tag it mirrors is
   * absent — a v2 push cut between recording the view and writing its tag, or a v2 delete cut before
   * the view was removed — the view must not be served back over v2 as a bridged manifest: a v2
   * client would get a manifest nobody pushed (issue 17 crash campaign).
   */
  async isDerivedView(name: V2Name, tag: string): Promise<boolean> {
    const repo = parseRepoName(name);
    const t = parseTag(tag);
    if (!repo || !t) return false;
    const derived = await this.readDerived(name, tag);
    if (!derived || derived.cur === '') return false;
    let id: string | undefined;
    try {
      id = await this.repos.getTag(repo, t);
    } catch (e) {
      if (!isRegistryError(e)) throw e;
    }
    return id !== undefined && (id === derived.cur || (derived.prev !== '' && id === derived.prev));
  }

  /** The derived-id record: the current id, and the previous one while a publish is in progress. */
  private async readDerived(name: string, tag: string): Promise<{ cur: string; prev: string } | undefined> {
    const raw = await readOptional(this.driver, derivedKey(name, tag), LINK_MAX);
    if (!raw) return undefined;
    const [cur = '', prev = ''] = raw.toString('utf8').split('\n');
    return { cur, prev };
  }

  /** Record `top` as the derived id before the v1 tag moves to it (keeping the previous one). */
  private async recordDerived(name: string, tag: string, top: string): Promise<void> {
    const before = await this.readDerived(name, tag);
    // `prev` is what the v1 tag names now when that is still a derived view: after a publish cut
    // before its v1 tag moved, `before.cur` was never tagged, and a second cut publish keeping it
    // would make the v1 tag look like a v1 push (the crash campaign, fs seed 45, kills 137–138)
    let prev = before?.cur ?? '';
    const repo = parseRepoName(name);
    const t = parseTag(tag);
    if (before && repo && t) {
      let now: string | undefined;
      try {
        now = await this.repos.getTag(repo, t);
      } catch (e) {
        if (!isRegistryError(e)) throw e;
      }
      if (now !== undefined && (now === before.cur || now === before.prev)) prev = now;
    }
    await this.driver.putContent(derivedKey(name, tag), Buffer.from(prev !== '' && prev !== top ? `${top}\n${prev}` : top));
  }

  /**
   * The v1 view of a tag pushed through v2 (spec §3.6, §3.7): derived and tagged in v1, or, for an
   * image without a v1 view, the v1 tag removed (the v2 push replaces it). The derived id is
   * recorded so a later v1 push of the tag can be told apart ({@link current}).
   *
   * `digest` is the manifest the caller's push put on the v2 tag. The v1 tag is moved only while
   * the v2 tag still names it, under the repository's lock: deriving takes a pass over every layer
   * (payload checksums), and a second push of the tag that finished meanwhile had set the v1 tag to
   * its own view, which a late first push overwrote — v2 clients then pulled one push and v1
   * clients the other, for good. Whichever push writes the v2 tag last now also sets the v1 tag
   * last. The v2 tag is read past the metadata cache: a node that had served its push's tag still
   * saw it there after another node's push replaced it, and moved the v1 tag back over that push's
   * view. Without `digest` (a mirror's view of a list's child) the tag is moved unconditionally.
   */
  async publish(name: V2Name, tag: string, mediaType: string, manifest: Buffer, digest?: string): Promise<V1Chain | undefined> {
    const chain = await this.derive(name, tag, mediaType, manifest);
    const top = chain?.images[chain.images.length - 1]?.id;
    const repo = parseRepoName(name);
    const t = parseTag(tag);
    if (!repo || !t) return chain;
    await this.repoLock.run(repo.full, async () => {
      // a later push holds the v2 tag: its own publish sets the v1 tag (the image records written
      // above are content-derived ids, harmless to keep)
      if (digest !== undefined && (await readOptional(this.storage, v2TagKey(name, tag), LINK_MAX))?.toString('utf8') !== digest) return;
      if (top === undefined) await this.unpublish(name, [tag]);
      else {
        await this.recordDerived(name, tag, top);
        await this.repos.putTag(repo, t, top, 'legacy-registry/v2-bridge');
        await this.repos.mergeIndexImages(repo, chain!.images);
      }
      await this.driver.putContent(derivedKey(name, tag), Buffer.from(top ?? ''));
    });
    return chain;
  }

  /**
   * Run fn under the lock publish() moves the repository's v1 tags under: a v2 delete's two steps
   * (the v1 view, then the v2 tag), which a publish must not fall between (it would set the v1 tag
   * of a v2 tag about to go).
   */
  exclusive<T>(name: V2Name, fn: () => Promise<T>): Promise<T> {
    const repo = parseRepoName(name);
    return repo ? this.repoLock.run(repo.full, fn) : fn();
  }

  /** sha256(json + "\n" + layer bytes as stored): the v1 payload checksum (spec v1 §6.1). */
  private async payloadOf(json: Buffer, digest: string): Promise<string> {
    const h = createHash('sha256');
    h.update(json);
    h.update('\n');
    if (digest === GZIPPED_EMPTY_TAR_DIGEST) h.update(GZIPPED_EMPTY_TAR);
    else for await (const c of await this.blobs.open(digest)) h.update(c as Buffer);
    return `sha256:${h.digest('hex')}`;
  }

  /**
   * The v1 view of a schema1 push (issue 11: Docker 1.6–1.9 push signed schema1 through v2): the
   * manifest carries each layer's v1 JSON (`history[].v1Compatibility`, ids and parents included)
   * and its blob, so the v1 records are written from it as they are — json bytes as given, ancestry
   * from the parents, the layer linked to the stored blob, the payload checksum of both. Read from
   * the signed payload (what the signature covers). No view when the chain is not well formed.
   */
  private async deriveSchema1(repo: RepoName, mediaType: string, manifest: Buffer): Promise<V1Chain | undefined> {
    let doc: { fsLayers?: { blobSum?: unknown }[]; history?: { v1Compatibility?: unknown }[] };
    try {
      const payload = mediaType === MT.schema1Signed || /"signatures"\s*:/.test(manifest.toString('utf8')) ? canonicalOf(manifest) : manifest.toString('utf8');
      doc = JSON.parse(payload) as typeof doc;
    } catch {
      return undefined;
    }
    const layers = doc.fsLayers ?? [];
    const history = doc.history ?? [];
    if (!Array.isArray(layers) || !Array.isArray(history) || layers.length === 0 || layers.length !== history.length) return undefined;
    // each image's ancestry lists all below it (O(n²) bytes): no view of a chain longer than v1 allows
    if (history.length > MAX_ANCESTRY) return undefined;
    // top first in the manifest; every image's parent is the next one's id, the last has none
    const chain: { id: string; json: Buffer; digest: string }[] = [];
    const seen = new Set<string>();
    for (let i = 0; i < history.length; i++) {
      const compat = history[i]?.v1Compatibility;
      const digest = layers[i]?.blobSum;
      if (typeof compat !== 'string' || typeof digest !== 'string') return undefined;
      let v: { id?: unknown; parent?: unknown };
      try {
        v = JSON.parse(compat) as typeof v;
      } catch {
        return undefined;
      }
      if (typeof v.id !== 'string' || !isImageId(v.id) || seen.has(v.id)) return undefined;
      const next = history[i + 1]?.v1Compatibility;
      const nextId = typeof next === 'string' ? (JSON.parse(next) as { id?: unknown }).id : undefined;
      const parent = v.parent === undefined || v.parent === null ? '' : v.parent;
      if (parent !== (nextId ?? '')) return undefined;
      seen.add(v.id);
      chain.push({ id: v.id, json: Buffer.from(compat, 'utf8'), digest });
    }
    const scope = this.images.scopeOf(repo);
    const images: { id: string; checksum?: string }[] = [];
    const ids = chain.map((c) => c.id);
    for (let i = chain.length - 1; i >= 0; i--) {
      const c = chain[i]!;
      const info = await this.blobs.stat(c.digest);
      if (!info) return undefined;
      const head = await this.blobs.open(c.digest, 0, Math.min(2, info.size));
      const magic: Buffer[] = [];
      for await (const b of head) magic.push(b as Buffer);
      const gzip = Buffer.concat(magic).equals(Buffer.from([0x1f, 0x8b]));
      const payload = await this.payloadOf(c.json, c.digest);
      const link: LayerLink = { digest: c.digest, size: info.size, payload, compression: gzip ? 'gzip' : 'none' };
      // the ids are the pusher's: one already complete here with other content stays, and this
      // image gets no v1 view (the v2 push stands)
      if ((await this.images.putDerived(scope, c.id, c.json, ids.slice(i), link, { keepOthers: true })) === 'taken') {
        this.log.warn('no v1 view for a schema1 image: a v1 image of other content has its id', { repository: repo.full, id: c.id });
        return undefined;
      }
      images.push({ id: c.id, checksum: payload });
    }
    // (root first: the last is chain[0], the tagged image; publish() moves the tag)
    return { images };
  }

  private async derive(name: V2Name, tag: string, mediaType: string, manifest: Buffer): Promise<V1Chain | undefined> {
    const repo = parseRepoName(name);
    if (!repo || !parseTag(tag)) return undefined;
    if (mediaType === MT.schema1 || mediaType === MT.schema1Signed) return this.deriveSchema1(repo, mediaType, manifest);
    if (mediaType !== MT.schema2 && mediaType !== MT.ociManifest) return undefined;
    const m = JSON.parse(manifest.toString('utf8')) as { config: Descriptor; layers: Descriptor[] };
    if (m.layers.some((l) => !/(tar|tar\.gzip|tar\+gzip)$/.test(l.mediaType) || l.urls !== undefined)) return undefined;
    let config: Buffer;
    try {
      // only a config this repository holds, and not larger than max_config_size (issue 10)
      config = await this.configs.readConfig(name, m.config.digest);
    } catch (e) {
      if (!(e instanceof ConfigUnavailableError)) throw e;
      this.log.warn('no v1 view for a v2 image', { name, tag, reason: e.message });
      return undefined;
    }
    let view;
    try {
      view = v1ViewFromConfig(
        config,
        m.layers.map((l) => l.digest),
      );
    } catch (e) {
      this.log.debug('no v1 view for a v2 image', { name, tag, reason: (e as Error).message });
      return undefined;
    }
    const diffIds = (JSON.parse(config.toString('utf8')) as { rootfs: { diff_ids: string[] } }).rootfs.diff_ids ?? [];
    if (view.some((v) => v.empty)) {
      // written every time (32 bytes), never only when missing: a fresh object is one garbage
      // collection does not take while the records naming it are being written (gc.ts)
      await this.driver.putContent(keys.blob(GZIPPED_EMPTY_TAR_DIGEST.slice(7)), GZIPPED_EMPTY_TAR);
    }
    let j = 0;
    const ancestry: string[] = [];
    const images: { id: string; checksum?: string }[] = [];
    const scope = this.images.scopeOf(repo);
    for (const img of view) {
      ancestry.unshift(img.id);
      const layer = img.empty ? undefined : m.layers[j];
      const diffId = img.empty ? EMPTY_TAR_DIFF_ID : diffIds[j];
      if (!img.empty) j++;
      const digest = layer?.digest ?? GZIPPED_EMPTY_TAR_DIGEST;
      // Ids are content-derived, so records already here are normally this very image; but an id is
      // only a name (anyone with push access could have pushed other content under it through v1):
      // the records are compared, and replaced unless they are exactly this image.
      const existing = await this.images.layerLink(scope, img.id);
      const known = existing && existing.digest === digest ? existing.payload : undefined;
      // the payload checksum a v1 push of this json and layer would have carried: one sha256 pass
      // over the stored bytes, skipped when the same image is already recorded
      const payload = known && (await this.images.readJson(scope, img.id))?.equals(img.json) ? known : await this.payloadOf(img.json, digest);
      const link: LayerLink = {
        digest,
        size: layer?.size ?? GZIPPED_EMPTY_TAR.length,
        payload,
        compression: !layer || /gzip$/.test(layer.mediaType) ? 'gzip' : 'none',
        ...(diffId ? { diffId } : {}),
      };
      await this.images.putDerived(scope, img.id, img.json, [...ancestry], link);
      images.push({ id: img.id, checksum: payload });
    }
    // publish() moves the tag to the last image
    return { images };
  }
}
