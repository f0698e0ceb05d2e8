import { BoundedCache } from '../util/bounded-cache.js';
import { ConfigUnavailableError, type ConfigReader } from '../content/config-reader.js';
import { V2Error } from '../errors/v2.js';
import { isRegistryError } from '../errors/index.js';
import { isNotFound, type StorageDriver } from '../storage/driver.js';
import { parseTag, type RepoName, type Tag } from '../content/names.js';
import type { Schema1Bridge } from '../content/schema1-bridge.js';
import type { V1Images } from '../content/v1-images.js';
import type { V1Repositories } from '../content/v1-repositories.js';
import type { V1ToV2 } from '../content/v1-to-v2.js';
import type { V2ToV1 } from '../content/v2-to-v1.js';
import { MT, type StoredManifest, type V2Manifests } from '../content/v2-manifests.js';
import type { V2Name } from '../content/v2-names.js';
import { mapPool } from '../util/pool.js';

/**
 * What the repository and tag pages show of stored content, read through the registry's own
 * services (the same ones /v1/ and /v2/ answer from), never by listing storage for other
 * repositories: a repository's tags as v1 and v2 clients see them, with the v1 image id, the
 * manifest digest, the compressed size and when and how each was pushed (spec v2-bridge §3.3,
 * §3.6, §3.7). Only built when the registry runs in this process (src/main.ts); an index alone
 * shows what its database knows (tags and v1 ids of its image lists).
 */
export interface ContentDeps {
  readonly driver: StorageDriver;
  readonly repos: V1Repositories;
  readonly images: V1Images;
  readonly manifests: V2Manifests;
  readonly fromV1: V1ToV2;
  readonly toV1: V2ToV1;
  readonly configs: ConfigReader;
  readonly schema1?: Schema1Bridge;
}

export interface Platform {
  readonly os: string;
  readonly architecture: string;
  readonly variant?: string;
  readonly digest: string;
  readonly size?: number;
}

export interface TagInfo {
  readonly tag: string;
  /** Which API's push is current (the last push wins, whichever API made it). */
  readonly via: 'v1' | 'v2';
  /** The v2 name the manifest lives under (for `library/x`, `x` or `library/x`). */
  readonly v2Name: string;
  /** The v1 image id v1 clients pull (pushed, or derived by the bridge); absent without a v1 view. */
  readonly v1Id?: string;
  /** The manifest v2 clients get by tag: as pushed, or derived from the v1 chain. */
  readonly digest?: string;
  readonly mediaType?: string;
  /** Sum of the compressed layer sizes (not for manifest lists). */
  readonly size?: number;
  readonly pushedAt?: Date;
  /** A manifest list / OCI index: its images. */
  readonly platforms?: readonly Platform[];
}

export interface Layer {
  readonly digest?: string;
  readonly size?: number;
  readonly createdBy: string;
  readonly created?: string;
  readonly empty: boolean;
  /** The v1 image id of this step (v1-pushed chains). */
  readonly v1Id?: string;
}

export interface ImageDetail extends TagInfo {
  readonly os?: string;
  readonly architecture?: string;
  readonly layers: readonly Layer[];
  /** Digests per manifest format this tag is served as. */
  readonly formats: readonly { readonly format: string; readonly digest: string }[];
  /** Why layers could not be shown, when they could not. */
  readonly note?: string;
}

interface Descriptor {
  mediaType?: string;
  digest?: string;
  size?: number;
  platform?: { os?: string; architecture?: string; variant?: string };
}

const KIND: Record<string, string> = {
  [MT.schema2]: 'Docker schema 2',
  [MT.list]: 'Docker manifest list',
  [MT.ociManifest]: 'OCI manifest',
  [MT.ociIndex]: 'OCI index',
  [MT.schema1]: 'Docker schema 1',
  [MT.schema1Signed]: 'Docker schema 1 (signed)',
};

export function manifestKind(mediaType: string | undefined): string {
  return mediaType ? (KIND[mediaType] ?? mediaType) : '';
}

/** The v2 names a repository of the index is stored under: `library/x` is also `x`. */
export function v2NamesOf(name: RepoName): V2Name[] {
  return (name.namespace === 'library' ? [name.full, name.repository] : [name.full]) as V2Name[];
}

function parseJson<T>(b: Buffer): T | undefined {
  try {
    return JSON.parse(b.toString('utf8')) as T;
  } catch {
    return undefined;
  }
}

const sumSizes = (ds: readonly Descriptor[] | undefined): number | undefined =>
  Array.isArray(ds) ? ds.reduce((a, d) => a + (typeof d.size === 'number' ? d.size : 0), 0) : undefined;

function cmdOf(json: { container_config?: { Cmd?: unknown } | null; Cmd?: unknown }): string {
  const cmd = json.container_config?.Cmd;
  if (Array.isArray(cmd)) return cmd.filter((c): c is string => typeof c === 'string').join(' ');
  return typeof cmd === 'string' ? cmd : '';
}

/**
 * Derived digests are the same until the v1 tag moves: kept a minute, keyed by the image id, and
 * only while this node has written nothing since (the metadata cache's change stamp): an id is a
 * name a client chooses, so a repository deleted and pushed again (or an untagged image collected
 * and pushed again) can hold other bytes under the same tag and id.
 */
const DERIVED_TTL_MS = 60_000;

/** Tags of a page read at once (each a few file reads). */
const TAG_READS = 16;

/** One page of a repository's tags. */
export interface TagPage {
  readonly tags: readonly TagInfo[];
  /** This page (the last one when the one asked for is past the end) and how many there are. */
  readonly page: number;
  readonly pages: number;
  /** The tag the pull box names: `latest`, else the first tag of the repository. */
  readonly pull?: TagInfo;
}

export class RepoContent {
  private readonly derived = new BoundedCache<{ readonly m: StoredManifest | null; readonly stamp: number | undefined }>({
    maxEntries: 10_000,
    maxBytes: 16 * 1024 * 1024,
    weight: (e, k) => 128 + k.length + (e.m ? e.m.bytes.length : 0),
  });

  constructor(private readonly deps: ContentDeps) {}

  /** The change stamp of a caching driver (moved by every write of this node), else undefined. */
  private stamp(): number | undefined {
    return (this.deps.driver as { readonly changeStamp?: number }).changeStamp;
  }

  /** The schema2 manifest v2 clients get for a v1-pushed tag (the bridge's, cached briefly). */
  private async derivedManifest(name: RepoName, tag: string, id: string): Promise<StoredManifest | undefined> {
    const key = `${name.full}\0${tag}\0${id}`;
    // no caching driver (metadata_cache_ttl: 0): nothing kept, as for the other metadata
    const stamp = this.stamp();
    const hit = stamp === undefined ? undefined : this.derived.get(key);
    if (hit !== undefined && hit.stamp === stamp) return hit.m ?? undefined;
    let m: StoredManifest | undefined;
    try {
      m = await this.deps.fromV1.manifestForTag(name.full as V2Name, tag);
    } catch (e) {
      // a layer with no v2 media type (bzip2, xz): no v2 view, the v1 one stands
      if (!isRegistryError(e) && !(e instanceof V2Error)) throw e;
      m = undefined;
    }
    if (stamp !== undefined) this.derived.set(key, { m: m ?? null, stamp }, DERIVED_TTL_MS);
    return m;
  }

  /** Whether the v1 repository exists (tag reads without it are "not found", not errors). */
  private v1Exists(name: RepoName): Promise<boolean> {
    return this.deps.repos.exists(name);
  }

  /** The v1 image id of a tag (what listTags lists: a tag file naming an id), or undefined. */
  private async v1Id(name: RepoName, tag: string, v1Exists: boolean): Promise<string | undefined> {
    const t = parseTag(tag);
    if (!v1Exists || !t) return undefined;
    try {
      return await this.deps.repos.getTag(name, t as Tag);
    } catch (e) {
      if (isRegistryError(e)) return undefined;
      throw e;
    }
  }

  private async modTime(key: string): Promise<Date | undefined> {
    try {
      return (await this.deps.driver.stat(key)).modTime;
    } catch (e) {
      if (isNotFound(e)) return undefined;
      throw e;
    }
  }

  private async v1PushedAt(name: RepoName, tag: string): Promise<Date | undefined> {
    const t = parseTag(tag);
    if (!t) return undefined;
    const meta = await this.deps.repos.tagJson(name, t as Tag);
    return typeof meta.last_update === 'number' ? new Date(meta.last_update * 1000) : undefined;
  }

  private platformsOf(m: StoredManifest): Platform[] {
    const doc = parseJson<{ manifests?: Descriptor[] }>(m.bytes);
    return (doc?.manifests ?? [])
      .filter((d) => typeof d.digest === 'string')
      .map((d) => ({
        os: d.platform?.os ?? 'unknown',
        architecture: d.platform?.architecture ?? 'unknown',
        ...(d.platform?.variant ? { variant: d.platform.variant } : {}),
        digest: d.digest!,
        ...(typeof d.size === 'number' ? { size: d.size } : {}),
      }));
  }

  private v2Info(tag: string, v2Name: string, m: StoredManifest, v1Id: string | undefined, pushedAt: Date | undefined): TagInfo {
    const isList = m.mediaType === MT.list || m.mediaType === MT.ociIndex;
    const doc = isList ? undefined : parseJson<{ layers?: Descriptor[] }>(m.bytes);
    return {
      tag,
      via: 'v2',
      v2Name,
      digest: m.digest,
      mediaType: m.mediaType,
      ...(v1Id ? { v1Id } : {}),
      ...(pushedAt ? { pushedAt } : {}),
      ...(isList ? { platforms: this.platformsOf(m) } : {}),
      ...(!isList && doc ? { size: sumSizes(doc.layers) } : {}),
    };
  }

  /**
   * The names that may be tags of the repository, v1- and v2-pushed, sorted: directory listings
   * only, nothing read per name. A name may turn out not to be a tag (a v2 tag deleted through v1,
   * an empty v1 tag file): tagInfo says so.
   */
  async tagNames(name: RepoName): Promise<string[]> {
    const names = new Set<string>();
    for (const v2Name of v2NamesOf(name)) for (const tag of await this.deps.manifests.tags(v2Name)) names.add(tag);
    try {
      // (it checks that the v1 repository exists: REPOSITORY_NOT_FOUND when not)
      for (const tag of await this.deps.repos.tagNames(name)) names.add(tag);
    } catch (e) {
      if (!isRegistryError(e)) throw e;
    }
    return [...names].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  }

  /** One tag as v1 and v2 clients see it, or undefined when it is not a tag of the repository. */
  async tagInfo(name: RepoName, tag: string): Promise<TagInfo | undefined> {
    return this.tagInfoOf(name, tag, await this.v1Exists(name));
  }

  private async tagInfoOf(name: RepoName, tag: string, v1Exists: boolean): Promise<TagInfo | undefined> {
    const v1Id = await this.v1Id(name, tag, v1Exists);
    for (const v2Name of v2NamesOf(name)) {
      const side = await this.deps.toV1.current(v2Name, tag);
      // spec §3.7: deleted through v1 is deleted; a later v1 push wins (below)
      if (side !== 'v2') continue;
      const m = await this.deps.manifests.get(v2Name, { tag });
      if (!m) continue;
      const at = await this.modTime(`v2/repositories/${v2Name}/_manifests/tags/${tag}`);
      return this.v2Info(tag, v2Name, m, v1Id, at);
    }
    if (v1Id === undefined) return undefined;
    const m = await this.derivedManifest(name, tag, v1Id);
    const doc = m ? parseJson<{ layers?: Descriptor[] }>(m.bytes) : undefined;
    const at = await this.v1PushedAt(name, tag);
    return {
      tag,
      via: 'v1',
      v2Name: name.full,
      v1Id,
      ...(m ? { digest: m.digest, mediaType: m.mediaType } : {}),
      ...(doc ? { size: sumSizes(doc.layers) } : {}),
      ...(at ? { pushedAt: at } : {}),
    };
  }

  /**
   * One page of the repository's tags (page numbers from 1; past the end, the last page): the
   * names are listed, and only the page's own are read, TAG_READS at a time. A repository of
   * 25,000 tags had every one read for each view of its page (before 2026-12-07: 25 s, anonymous).
   * A page holds fewer than pageSize when some of its names are not tags. `pull` is the tag the
   * pull box names: `latest`, else the first tag.
   */
  async tagPage(name: RepoName, page: number, pageSize: number): Promise<TagPage> {
    const names = await this.tagNames(name);
    const pages = Math.max(1, Math.ceil(names.length / pageSize));
    const p = Math.min(Math.max(1, Math.trunc(page) || 1), pages);
    const slice = names.slice((p - 1) * pageSize, p * pageSize);
    const v1Exists = await this.v1Exists(name);
    const found = await mapPool(slice, TAG_READS, (t) => this.tagInfoOf(name, t, v1Exists));
    const tags = found.filter((t): t is TagInfo => t !== undefined);
    let pull = tags.find((t) => t.tag === 'latest');
    if (!pull && names.includes('latest')) pull = await this.tagInfoOf(name, 'latest', v1Exists);
    if (!pull && p === 1) pull = tags[0];
    // the first tag, looked for among the first page's names only (bounded)
    for (let i = 0; !pull && p > 1 && i < Math.min(pageSize, names.length); i++) pull = await this.tagInfoOf(name, names[i]!, v1Exists);
    return { tags, page: p, pages, ...(pull ? { pull } : {}) };
  }

  /** One tag's image: layers (with the command that made each), platform, digests per format. */
  async image(name: RepoName, tag: string): Promise<ImageDetail | undefined> {
    const info = await this.tagInfo(name, tag);
    if (!info) return undefined;
    const formats: { format: string; digest: string }[] = [];
    if (info.digest) formats.push({ format: `${manifestKind(info.mediaType)}${info.via === 'v1' ? ' (derived from the v1 push)' : ''}`, digest: info.digest });
    if (info.via === 'v1') return this.v1Image(name, info, formats);
    const m = await this.deps.manifests.get(info.v2Name as V2Name, { tag });
    if (!m) return undefined;
    if (info.platforms) return { ...info, layers: [], formats };
    if (m.mediaType === MT.schema1 || m.mediaType === MT.schema1Signed) return this.schema1Image(info, m, formats);
    const doc = parseJson<{ config?: Descriptor; layers?: Descriptor[] }>(m.bytes);
    const layers = doc?.layers ?? [];
    let config: Buffer | undefined;
    let note: string | undefined;
    try {
      if (doc?.config?.digest) config = await this.deps.configs.readConfig(info.v2Name as V2Name, doc.config.digest);
    } catch (e) {
      if (!(e instanceof ConfigUnavailableError)) throw e;
      note = e.message;
    }
    const cfg = config
      ? parseJson<{ os?: unknown; architecture?: unknown; history?: { created_by?: unknown; created?: unknown; empty_layer?: unknown }[] }>(config)
      : undefined;
    const out: Layer[] = [];
    let j = 0;
    const history = Array.isArray(cfg?.history) ? cfg.history : [];
    for (const h of history) {
      const empty = h.empty_layer === true;
      const d = empty ? undefined : layers[j++];
      out.push({
        createdBy: typeof h.created_by === 'string' ? h.created_by : '',
        ...(typeof h.created === 'string' ? { created: h.created } : {}),
        empty,
        ...(d?.digest ? { digest: d.digest } : {}),
        ...(typeof d?.size === 'number' ? { size: d.size } : {}),
      });
    }
    // layers the history does not describe (no config, or a config without history)
    for (; j < layers.length; j++)
      out.push({
        createdBy: '',
        empty: false,
        ...(layers[j]!.digest ? { digest: layers[j]!.digest } : {}),
        ...(typeof layers[j]!.size === 'number' ? { size: layers[j]!.size } : {}),
      });
    const schema1 = await this.schema1Digest(info.v2Name, tag, m, false);
    if (schema1) formats.push({ format: 'Docker schema 1 (signed, for Docker 1.6–1.9)', digest: schema1 });
    return {
      ...info,
      ...(typeof cfg?.os === 'string' ? { os: cfg.os } : {}),
      ...(typeof cfg?.architecture === 'string' ? { architecture: cfg.architecture } : {}),
      layers: out,
      formats,
      ...(note ? { note } : {}),
    };
  }

  private async schema1Digest(v2Name: string, tag: string, found: StoredManifest, v1Origin: boolean): Promise<string | undefined> {
    if (!this.deps.schema1 || found.mediaType !== MT.schema2) return undefined;
    try {
      return (await this.deps.schema1.forTag(v2Name as V2Name, tag, found, v1Origin))?.digest;
    } catch (e) {
      if (e instanceof V2Error) return undefined;
      throw e;
    }
  }

  private schema1Image(info: TagInfo, m: StoredManifest, formats: { format: string; digest: string }[]): ImageDetail {
    const doc = parseJson<{ architecture?: unknown; fsLayers?: { blobSum?: unknown }[]; history?: { v1Compatibility?: unknown }[] }>(m.bytes);
    const layers: Layer[] = [];
    const fs = doc?.fsLayers ?? [];
    const hist = doc?.history ?? [];
    // top first in schema1: shown root first
    for (let i = hist.length - 1; i >= 0; i--) {
      const compat =
        typeof hist[i]?.v1Compatibility === 'string'
          ? parseJson<{ id?: unknown; created?: unknown; container_config?: { Cmd?: unknown } }>(Buffer.from(hist[i]!.v1Compatibility as string))
          : undefined;
      const blob = fs[i]?.blobSum;
      layers.push({
        createdBy: compat ? cmdOf(compat) : '',
        empty: false,
        ...(typeof blob === 'string' ? { digest: blob } : {}),
        ...(typeof compat?.created === 'string' ? { created: compat.created } : {}),
        ...(typeof compat?.id === 'string' ? { v1Id: compat.id } : {}),
      });
    }
    return { ...info, ...(typeof doc?.architecture === 'string' ? { architecture: doc.architecture } : {}), layers, formats };
  }

  private async v1Image(name: RepoName, info: TagInfo, formats: { format: string; digest: string }[]): Promise<ImageDetail> {
    const scope = this.deps.images.scopeOf(name);
    let ancestry: string[];
    try {
      ancestry = await this.deps.images.getAncestry(scope, info.v1Id!);
    } catch (e) {
      if (!isRegistryError(e)) throw e;
      return { ...info, layers: [], formats, note: 'this image is still being uploaded' };
    }
    const layers: Layer[] = [];
    let os: string | undefined;
    let architecture: string | undefined;
    for (const id of [...ancestry].reverse()) {
      const raw = await this.deps.images.readJson(scope, id);
      const json = raw ? parseJson<{ created?: unknown; os?: unknown; architecture?: unknown; container_config?: { Cmd?: unknown } }>(raw) : undefined;
      const link = await this.deps.images.layerLink(scope, id);
      if (json && id === info.v1Id) {
        if (typeof json.os === 'string') os = json.os;
        if (typeof json.architecture === 'string') architecture = json.architecture;
      }
      layers.push({
        v1Id: id,
        createdBy: json ? cmdOf(json) : '',
        empty: false,
        ...(typeof json?.created === 'string' ? { created: json.created } : {}),
        ...(link ? { digest: link.digest, size: link.size } : {}),
      });
    }
    if (info.digest) {
      const m = await this.derivedManifest(name, info.tag, info.v1Id!);
      const schema1 = m ? await this.schema1Digest(name.full, info.tag, m, true) : undefined;
      if (schema1) formats.push({ format: 'Docker schema 1 (signed, for Docker 1.6–1.9)', digest: schema1 });
    }
    return { ...info, ...(os ? { os } : {}), ...(architecture ? { architecture } : {}), layers, formats };
  }

  /**
   * Delete a tag as the APIs do (spec v2-bridge §3.7: gone from both): the v2 tag link under every
   * v2 name of the repository, and the v1 tag. Returns whether anything was deleted.
   */
  async deleteTag(name: RepoName, tag: string): Promise<boolean> {
    const t = parseTag(tag);
    if (!t) return false;
    // under the repository's lock, as PUT tag, the v1 DELETE and the bridge move tags (shared by every
    // node): a PUT tag interleaved with an unlocked delete could leave the tag without its metadata
    const removed = await this.deps.toV1.exclusive(name.full as V2Name, async () => {
      let removed = false;
      for (const v2Name of v2NamesOf(name)) if (await this.deps.manifests.delete(v2Name, { tag })) removed = true;
      try {
        await this.deps.repos.deleteTag(name, t as Tag);
        removed = true;
      } catch (e) {
        if (!isRegistryError(e)) throw e;
      }
      return removed;
    });
    this.derived.deleteWhere((k) => k.startsWith(`${name.full}\0${tag}\0`));
    return removed;
  }
}
