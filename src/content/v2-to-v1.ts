import { createHash } from 'node:crypto';
import type { StorageDriver } from '../storage/driver.js';
import { isRegistryError } from '../errors/index.js';
import type { Logger } from '../log/logger.js';
import type { BlobStore } from './blob-store.js';
import { GZIPPED_EMPTY_TAR, GZIPPED_EMPTY_TAR_DIGEST, v1ViewFromConfig } from './bridge.js';
import { ConfigUnavailableError, type ConfigReader } from './config-reader.js';
import { keys } from './keys.js';
import { parseRepoName, parseTag } from './names.js';
import { keyExists, readOptional } from './small-objects.js';
import type { LayerLink } from './v1-images.js';
import type { V1Repositories } from './v1-repositories.js';
import { MT } from './v2-manifests.js';
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
    private readonly log: Logger,
    private readonly configs: ConfigReader,
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
    const derived = await readOptional(this.driver, derivedKey(name, tag));
    if (!derived) return 'v2';
    let id: string | undefined;
    try {
      id = await this.repos.getTag(repo, t);
    } catch (e) {
      if (!isRegistryError(e)) throw e;
    }
    if (id === undefined) return derived.length > 0 ? 'gone' : 'v2';
    return id === derived.toString('utf8') ? 'v2' : 'v1';
  }

  /**
   * The v1 view of a tag pushed through v2 (spec §3.6, §3.7): derived and tagged in v1, or, for an
   * image without a v1 view, the v1 tag removed (the v2 push replaces it). The derived id is
   * recorded so a later v1 push of the tag can be told apart ({@link current}).
   */
  async publish(name: V2Name, tag: string, mediaType: string, manifest: Buffer): Promise<V1Chain | undefined> {
    const chain = await this.derive(name, tag, mediaType, manifest);
    const top = chain?.images[chain.images.length - 1]?.id;
    const repo = parseRepoName(name);
    const t = parseTag(tag);
    if (!repo || !t) return chain;
    if (top === undefined) await this.unpublish(name, [tag]);
    await this.driver.putContent(derivedKey(name, tag), Buffer.from(top ?? ''));
    return chain;
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

  private async derive(name: V2Name, tag: string, mediaType: string, manifest: Buffer): Promise<V1Chain | undefined> {
    const repo = parseRepoName(name);
    const t = parseTag(tag);
    if (!repo || !t || (mediaType !== MT.schema2 && mediaType !== MT.ociManifest)) return undefined;
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
      view = v1ViewFromConfig(config, m.layers.map((l) => l.digest));
    } catch (e) {
      this.log.debug('no v1 view for a v2 image', { name, tag, reason: (e as Error).message });
      return undefined;
    }
    const diffIds = ((JSON.parse(config.toString('utf8')) as { rootfs: { diff_ids: string[] } }).rootfs.diff_ids ?? []);
    if (view.some((v) => v.empty) && !(await this.blobs.stat(GZIPPED_EMPTY_TAR_DIGEST))) {
      await this.driver.putContent(keys.blob(GZIPPED_EMPTY_TAR_DIGEST.slice(7)), GZIPPED_EMPTY_TAR);
    }
    let j = 0;
    const ancestry: string[] = [];
    const images: { id: string; checksum?: string }[] = [];
    for (const img of view) {
      ancestry.unshift(img.id);
      const layer = img.empty ? undefined : m.layers[j];
      const diffId = img.empty ? EMPTY_TAR_DIFF_ID : diffIds[j];
      if (!img.empty) j++;
      if (await keyExists(this.driver, keys.imageJson(img.id))) {
        // content-derived: already right; its checksum is the one recorded with it
        const link = await readOptional(this.driver, keys.layerLink(img.id));
        const payload = link ? (JSON.parse(link.toString('utf8')) as LayerLink).payload : '';
        images.push(payload ? { id: img.id, checksum: payload } : { id: img.id });
        continue;
      }
      const digest = layer?.digest ?? GZIPPED_EMPTY_TAR_DIGEST;
      // the payload checksum a v1 push of this json and layer would have carried: one sha256 pass
      // over the stored bytes, once per image (ids are content-derived)
      const payload = await this.payloadOf(img.json, digest);
      const link: LayerLink = {
        digest,
        size: layer?.size ?? GZIPPED_EMPTY_TAR.length,
        payload,
        compression: !layer || /gzip$/.test(layer.mediaType) ? 'gzip' : 'none',
        ...(diffId ? { diffId } : {}),
      };
      // records before the json: the json is what makes the image exist for v1
      await this.driver.putContent(keys.ancestry(img.id), Buffer.from(JSON.stringify([...ancestry])));
      await this.driver.putContent(keys.layerLink(img.id), Buffer.from(JSON.stringify(link)));
      await this.driver.putContent(keys.clientChecksum(img.id), Buffer.from(JSON.stringify({ payload })));
      await this.driver.putContent(keys.imageJson(img.id), img.json);
      images.push({ id: img.id, checksum: payload });
    }
    const top = view[view.length - 1]!.id;
    await this.repos.putTag(repo, t, top, 'legacy-registry/v2-bridge');
    await this.repos.mergeIndexImages(repo, images);
    return { images };
  }
}
