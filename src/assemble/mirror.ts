import type { BlobStore } from '../content/blob-store.js';
import type { StorageDriver } from '../storage/driver.js';
import type { V2Uploads } from '../content/v2-uploads.js';
import type { V2Manifests } from '../content/v2-manifests.js';
import type { V2ToV1 } from '../content/v2-to-v1.js';
import { PullThrough } from '../mirror/pull-through.js';
import type { V1MirrorDeps } from '../mirror/v1-mirror.js';
import type { Site } from './site.js';

export interface MirrorServices {
  readonly mirror: PullThrough;
  /** What the v1 mirror routes read v2-mirrored repositories through. */
  readonly v1: NonNullable<V1MirrorDeps['v2']>;
}

/** The pull-through mirror (issue 13) when `mirror` is configured: upstreams by name prefix, cached into this storage. */
export function assembleMirror(
  site: Site,
  content: { readonly driver: StorageDriver; readonly blobs: BlobStore; readonly manifests: V2Manifests; readonly uploads: V2Uploads; readonly toV1: V2ToV1 },
): MirrorServices | undefined {
  const { config, log } = site;
  if (!config.mirror) return undefined;
  const mirror = new PullThrough(config.mirror, { ...content, log, maxBlobSize: config.max_layer_size });
  if (!config.read_only) mirror.start();
  log.info('mirror', {
    upstreams: config.mirror.upstreams.map((u) => `${u.prefix || '*'} -> ${u.url}${u.username ? ' (credentials)' : ''}`),
    ttl: config.mirror.ttl,
  });
  return { mirror, v1: { mirror, manifests: content.manifests, toV1: content.toV1 } };
}
