import { createHash } from 'node:crypto';
import { isRegistryError } from '../errors/index.js';
import { V2Error } from '../errors/v2.js';
import type { StorageDriver } from '../storage/driver.js';
import type { BlobStore } from './blob-store.js';
import { configFromV1Chain, type V1ChainImage } from './bridge.js';
import { parseRepoName, parseTag } from './names.js';
import type { LayerLink, V1Images } from './v1-images.js';
import type { V1Repositories } from './v1-repositories.js';
import { MT, type StoredManifest, type V2Manifests } from './v2-manifests.js';
import type { V2Name } from './v2-names.js';
import type { V2Uploads } from './v2-uploads.js';
import type { Schema1Layer } from './schema1.js';

const LAYER_TYPE: Record<string, string> = {
  gzip: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
  none: 'application/vnd.docker.image.rootfs.diff.tar',
};

/**
 * The refusal of a v1 chain whose images hold more JSON than a config may have: its config (which
 * takes a history entry from every image's JSON, Go-escaped, and the top image's JSON whole) would
 * be larger still. Without it, 25 images of 4 MiB JSON (max_json_size) made a GET of the tag build
 * a 600 MB config: seconds of the event loop, GBs of memory, then 500 (V8's string limit).
 */
function chainTooLarge(bytes: number, limit: number): V2Error {
  return new V2Error(
    'MANIFEST_UNKNOWN',
    { bytes, limit },
    `the v1 images of this tag hold more than max_config_size (${limit} bytes) of JSON: their image config would be larger, no v2 form`,
  );
}

/**
 * The v2 image the bridge derives from a complete v1 chain (root first): its config, built from the
 * v1 JSON (spec §3.2), and its schema2 manifest over the stored layers. Deterministic, so one chain
 * always has one manifest digest; garbage collection (gc.ts) computes it too, to keep what a v2 pull
 * of a v1 tag reads. A chain whose JSON (in all) or config is larger than `maxConfigSize` has none
 * (MANIFEST_UNKNOWN): the config it builds is one the registry would not read from a v2 push.
 */
export function derivedV2Image(
  chainRootFirst: readonly { readonly id: string; readonly json: Buffer; readonly link: LayerLink }[],
  maxConfigSize: number,
): {
  config: Buffer;
  configDigest: string;
  manifest: Buffer;
  manifestDigest: string;
  layers: string[];
} {
  const chain: V1ChainImage[] = [];
  const layers: { mediaType: string; size: number; digest: string }[] = [];
  let jsonBytes = 0;
  for (const { json } of chainRootFirst) jsonBytes += json.length;
  if (jsonBytes > maxConfigSize) throw chainTooLarge(jsonBytes, maxConfigSize);
  for (const { id, json, link } of chainRootFirst) {
    const mediaType = LAYER_TYPE[link.compression];
    if (!link.diffId || !mediaType) {
      throw new V2Error('MANIFEST_UNKNOWN', { image: id, compression: link.compression }, 'this v1 layer has no v2 media type (bzip2/xz/zstd)');
    }
    chain.push({ json, diffId: link.diffId });
    layers.push({ mediaType, size: link.size, digest: link.digest });
  }
  const config = configFromV1Chain(chain);
  if (config.length > maxConfigSize) throw chainTooLarge(config.length, maxConfigSize);
  const configDigest = `sha256:${createHash('sha256').update(config).digest('hex')}`;
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MT.schema2,
      config: { mediaType: 'application/vnd.docker.container.image.v1+json', size: config.length, digest: configDigest },
      layers,
    }),
  );
  return {
    config,
    configDigest,
    manifest,
    manifestDigest: `sha256:${createHash('sha256').update(manifest).digest('hex')}`,
    layers: layers.map((l) => l.digest),
  };
}

/**
 * v1-pushed tags seen through /v2/ (spec v2-bridge §3.3): the chain's config is built from the v1
 * JSON (§3.2), the layers are the stored blobs as they are (no copy, no re-compression), and the
 * schema2 manifest is derived deterministically, so one image always has one manifest digest.
 */
export class V1ToV2 {
  constructor(
    _driver: StorageDriver,
    private readonly blobs: BlobStore,
    private readonly images: V1Images,
    private readonly repos: V1Repositories,
    private readonly manifests: V2Manifests,
    private readonly uploads: V2Uploads,
    /** max_config_size: the most JSON a chain's images may hold for a v2 (and schema1) form. */
    private readonly maxConfigSize: number,
  ) {}

  /** Tags of the v1 repository with the same name, or [] (a v2 name with more than two parts has none). */
  async tags(name: V2Name): Promise<string[]> {
    const repo = parseRepoName(name);
    if (!repo || !(await this.repos.exists(repo))) return [];
    return Object.keys(await this.repos.listTags(repo));
  }

  /**
   * Names that may be tags of the v1 repository with the same name (tags() without reading each):
   * a lister keeps those hasTag confirms.
   */
  async tagNames(name: V2Name): Promise<string[]> {
    const repo = parseRepoName(name);
    if (!repo) return [];
    try {
      return await this.repos.tagNames(repo); // it checks that the repository exists
    } catch (e) {
      if (!isRegistryError(e)) throw e;
      return [];
    }
  }

  /** Whether the v1 repository with the same name has this tag (what tags() lists). */
  async hasTag(name: V2Name, tag: string): Promise<boolean> {
    const repo = parseRepoName(name);
    const t = parseTag(tag);
    if (!repo || !t) return false;
    try {
      await this.repos.getTag(repo, t);
      return true;
    } catch (e) {
      if (!isRegistryError(e)) throw e;
      return false;
    }
  }

  /** Spec §3.4: the schema1 layers of a v1-pushed tag, top first, v1 JSON verbatim; undefined when none. */
  async schema1Layers(name: V2Name, tag: string): Promise<{ layers: Schema1Layer[]; architecture: string } | undefined> {
    const repo = parseRepoName(name);
    const t = parseTag(tag);
    if (!repo || !t) return undefined;
    const scope = this.images.scopeOf(repo);
    let ancestry: string[];
    try {
      ancestry = await this.images.getAncestry(scope, await this.repos.getTag(repo, t));
    } catch (e) {
      if (isRegistryError(e)) return undefined;
      throw e;
    }
    const layers: Schema1Layer[] = [];
    let architecture = 'amd64';
    let jsonBytes = 0;
    for (const [i, imageId] of ancestry.entries()) {
      const json = await this.images.readJson(scope, imageId);
      const link = await this.images.layerLink(scope, imageId);
      // every image of the chain complete, as a v1 pull needs it
      if (!json || !link || (await this.images.inProgress(scope, imageId))) return undefined;
      // the document holds every image's JSON (escaped again): bounded as the v2 form is
      jsonBytes += json.length;
      if (jsonBytes > this.maxConfigSize) return undefined;
      if (i === 0) {
        const a = (JSON.parse(json.toString('utf8')) as { architecture?: unknown }).architecture;
        if (typeof a === 'string' && a !== '') architecture = a;
      }
      layers.push({ blobSum: link.digest, v1Compatibility: json.toString('utf8') });
    }
    return { layers, architecture };
  }

  /**
   * The v1 tags whose derived manifest has this digest (a delete by digest through v2, spec §3.7). A
   * tag without a v2 form (a bzip2/xz layer, too much JSON: MANIFEST_UNKNOWN) has no digest to match:
   * it is passed over, not the answer to every delete by digest in the repository.
   */
  async tagsWithDigest(name: V2Name, digest: string): Promise<string[]> {
    const out: string[] = [];
    for (const tag of await this.tags(name)) {
      let m: StoredManifest | undefined;
      try {
        m = await this.manifestForTag(name, tag);
      } catch (e) {
        if (!(e instanceof V2Error)) throw e;
        continue;
      }
      if (m?.digest === digest) out.push(tag);
    }
    return out;
  }

  async manifestForTag(name: V2Name, tag: string): Promise<StoredManifest | undefined> {
    const repo = parseRepoName(name);
    const t = parseTag(tag);
    if (!repo || !t) return undefined;
    let id: string;
    try {
      id = await this.repos.getTag(repo, t);
    } catch (e) {
      if (isRegistryError(e)) return undefined;
      throw e;
    }
    const scope = this.images.scopeOf(repo);
    let ancestry: string[];
    try {
      ancestry = await this.images.getAncestry(scope, id);
    } catch (e) {
      if (isRegistryError(e)) return undefined; // incomplete image: not served, as on v1
      throw e;
    }
    const records: { id: string; json: Buffer; link: LayerLink }[] = [];
    let jsonBytes = 0;
    for (const imageId of [...ancestry].reverse()) {
      const json = await this.images.readJson(scope, imageId);
      const link = await this.images.layerLink(scope, imageId);
      // every image of the chain complete, as a v1 pull needs it
      if (!json || !link || (await this.images.inProgress(scope, imageId))) return undefined;
      // no more read than derivedV2Image takes
      jsonBytes += json.length;
      if (jsonBytes > this.maxConfigSize) throw chainTooLarge(jsonBytes, this.maxConfigSize);
      records.push({ id: imageId, json, link });
    }
    const derived = derivedV2Image(records, this.maxConfigSize);
    const { config, configDigest, manifest, layers } = derived;
    const stored = await this.storedAlready(name, derived);
    if (stored) return stored;
    // always the bytes just hashed: an object already at the digest is not trusted (security issue 10)
    await this.blobs.putSmall(configDigest, config);
    for (const d of [configDigest, ...layers]) await this.uploads.link(name, d);
    const rev = await this.manifests.put(name, {}, manifest, MT.schema2);
    return { ...rev, bytes: manifest };
  }

  /**
   * The derived manifest as the repository already holds it, when it holds all of it: the manifest
   * and the config byte for byte (read and compared with the bytes just derived, never trusted by
   * digest or size) and the links of the config and every layer. A pull then writes nothing: no
   * fsync per GET, and the node's metadata cache and answer cache (which any write of the node
   * makes stale) keep serving the tag from memory. Anything missing or different: undefined, and
   * the caller writes all of it again.
   */
  private async storedAlready(name: V2Name, d: ReturnType<typeof derivedV2Image>): Promise<StoredManifest | undefined> {
    const found = await this.manifests.get(name, { digest: d.manifestDigest });
    if (!found || found.mediaType !== MT.schema2 || !found.bytes.equals(d.manifest)) return undefined;
    if (!(await this.blobs.holds(d.configDigest, d.config))) return undefined;
    for (const digest of [d.configDigest, ...d.layers]) if (!(await this.uploads.linked(name, digest))) return undefined;
    return found;
  }
}
