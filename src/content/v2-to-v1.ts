import type { StorageDriver } from '../storage/driver.js';
import { isRegistryError } from '../errors/index.js';
import type { Logger } from '../log/logger.js';
import type { BlobStore } from './blob-store.js';
import { GZIPPED_EMPTY_TAR, GZIPPED_EMPTY_TAR_DIGEST, v1ViewFromConfig } from './bridge.js';
import { keys } from './keys.js';
import { parseRepoName, parseTag } from './names.js';
import { keyExists } from './small-objects.js';
import type { LayerLink } from './v1-images.js';
import type { V1Repositories } from './v1-repositories.js';
import { MT } from './v2-manifests.js';
import type { V2Name } from './v2-names.js';

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
export class V2ToV1 {
  constructor(
    private readonly driver: StorageDriver,
    private readonly blobs: BlobStore,
    private readonly repos: V1Repositories,
    private readonly log: Logger,
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

  async publish(name: V2Name, tag: string, mediaType: string, manifest: Buffer): Promise<string | undefined> {
    const repo = parseRepoName(name);
    const t = parseTag(tag);
    if (!repo || !t || (mediaType !== MT.schema2 && mediaType !== MT.ociManifest)) return undefined;
    const m = JSON.parse(manifest.toString('utf8')) as { config: Descriptor; layers: Descriptor[] };
    if (m.layers.some((l) => !/(tar|tar\.gzip|tar\+gzip)$/.test(l.mediaType) || l.urls !== undefined)) return undefined;
    const configStream = await this.blobs.open(m.config.digest);
    const chunks: Buffer[] = [];
    for await (const c of configStream) chunks.push(c as Buffer);
    const config = Buffer.concat(chunks);
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
    for (const img of view) {
      ancestry.unshift(img.id);
      const layer = img.empty ? undefined : m.layers[j];
      const diffId = img.empty ? EMPTY_TAR_DIFF_ID : diffIds[j];
      if (!img.empty) j++;
      if (await keyExists(this.driver, keys.imageJson(img.id))) continue; // content-derived: already right
      const link: LayerLink = {
        digest: layer?.digest ?? GZIPPED_EMPTY_TAR_DIGEST,
        size: layer?.size ?? GZIPPED_EMPTY_TAR.length,
        payload: '',
        compression: !layer || /gzip$/.test(layer.mediaType) ? 'gzip' : 'none',
        ...(diffId ? { diffId } : {}),
      };
      // records before the json: the json is what makes the image exist for v1
      await this.driver.putContent(keys.ancestry(img.id), Buffer.from(JSON.stringify([...ancestry])));
      await this.driver.putContent(keys.layerLink(img.id), Buffer.from(JSON.stringify(link)));
      await this.driver.putContent(keys.imageJson(img.id), img.json);
    }
    const top = view[view.length - 1]!.id;
    await this.repos.putTag(repo, t, top, 'legacy-registry/v2-bridge');
    await this.repos.mergeIndexImages(repo, view.map((v) => ({ id: v.id })));
    return top;
  }
}
