import type Koa from 'koa';
import { CachingDriver } from '../storage/drivers/caching.js';
import { replayIndexNotices, v2Routes, type V2Deps, type V2IndexHook } from '../v2/routes.js';
import { IndexJournal, NoticeRefused, refusedForGood } from '../content/index-journal.js';
import { answerPrefix } from '../util/fetch-body.js';
import { V2Uploads } from '../content/v2-uploads.js';
import { V2Manifests } from '../content/v2-manifests.js';
import { IndexCatalog, RemoteCatalog, StorageCatalog } from '../content/v2-catalog.js';
import { INDEX_DELETED_PATH, INDEX_PUSHED_PATH } from '../index/v2-bridge-routes.js';
import { indexRepoName } from '../content/names.js';
import { V1ToV2 } from '../content/v1-to-v2.js';
import { V2ToV1 } from '../content/v2-to-v1.js';
import { Schema1Bridge } from '../content/schema1-bridge.js';
import { ConfigReader } from '../content/config-reader.js';
import type { V2Authorizer } from '../auth/v2-registry-auth.js';
import { v2Off } from '../http/fallbacks.js';
import type { StorageServices } from './storage.js';
import type { IndexServices } from './index.js';
import type { EventServices } from './events.js';
import { assembleMirror, type MirrorServices } from './mirror.js';
import { indexReadRule, MirrorCatalog } from '../mirror/catalog.js';
import type { Site } from './site.js';

/** What the v2 service shares with the others once mounted. */
export interface V2Services {
  /** The upload sessions (tests read what they keep in memory). */
  readonly uploads: V2Uploads | undefined;
  /** The v1 → v2 bridge, for the events of v1 pushes. */
  readonly fromV1: V1ToV2 | undefined;
  readonly mirror: MirrorServices | undefined;
  /** Stop replaying index notices. */
  stopTimers(): void;
}

/** The content services of the v1 ⇄ v2 bridge (spec v2-bridge §3), over the shared storage. */
export function bridgeContent(site: Site, store: StorageServices, uploads: V2Uploads) {
  const { config, log } = site;
  const { storage, driver, blobs, images, repos, repoLock } = store;
  const manifests = new V2Manifests(driver, blobs, uploads);
  const fromV1 = new V1ToV2(driver, blobs, images, repos, manifests, uploads, config.max_config_size);
  const configs = new ConfigReader(blobs, uploads, config.max_config_size);
  const toV1 = new V2ToV1(driver, blobs, repos, images, log, configs, repoLock, storage);
  const schema1 = new Schema1Bridge(driver, configs, fromV1);
  return { manifests, fromV1, configs, toV1, schema1 };
}

/**
 * The index learning of v2 pushes and deletes: directly when the index runs in this process (and
 * its webhooks queued), over HTTP to a split index, nothing on a standalone registry.
 */
function indexHookFor(site: Site, index: IndexServices | undefined, events: EventServices, remoteIndex: string | null): V2IndexHook | undefined {
  const { log } = site;
  const learn = index?.index;
  if (learn) {
    return {
      pushed: async (p, name, tag, images) => {
        const repo = indexRepoName(name);
        if (!repo) return;
        await learn.learnV2Push(p.account, repo, tag, images, { admin: p.admin });
        // Hub webhooks of the tag: queued (never sent inline); a failure here is logged, the push stands
        await events.webhooks
          ?.pushed(
            repo,
            tag,
            images.map((i) => i.id),
            p.account,
          )
          .catch((e: unknown) => log.warn('webhooks not queued for a v2 push', { repository: repo.full, tag, err: String(e) }));
      },
      deleted: async (_p, name, tags) => {
        const repo = indexRepoName(name);
        if (repo) await learn.forgetV2Tags(repo, tags);
      },
    };
  }
  if (!remoteIndex) return undefined;
  const post = async (path: string, body: unknown, authorization: string | undefined): Promise<void> => {
    // a push waits for this answer: an index that stops answering fails it after 15 s (the notice
    // stays journalled and is replayed), as a v1 push notice does
    const r = await fetch(`${remoteIndex}${path}`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', ...(authorization ? { Authorization: authorization } : {}) },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(NOTICE_TIMEOUT_MS),
    });
    if (r.ok) {
      await r.body?.cancel();
      return;
    }
    const why = `the index answered ${r.status}: ${await answerPrefix(r)}`;
    // refused for good (its credentials expired, or no longer grant the push): replaying it would
    // change nothing, and the journal drops it (replayIndexNotices)
    throw refusedForGood(r.status) ? new NoticeRefused(why) : new Error(why);
  };
  return {
    pushed: (_p, name, tag, images, authorization) => post(INDEX_PUSHED_PATH, { name, tag, images }, authorization),
    deleted: (_p, name, tags, authorization) => post(INDEX_DELETED_PATH, { name, tags }, authorization),
  };
}

/** How long a registry split from its index waits for the index's answer to a v2 notice. */
const NOTICE_TIMEOUT_MS = 15_000;

/**
 * The v2 / OCI service (`v2: true` on a registry node): bridge content, catalog, index hook with
 * its write-ahead journal (replayed at start and every minute), the mirror, mounted on `app`.
 * Elsewhere /v2/ answers 404 (v2Off).
 */
export function assembleV2(
  app: Koa,
  site: Site,
  store: StorageServices,
  index: IndexServices | undefined,
  events: EventServices,
  auth: V2Authorizer,
): V2Services {
  const { config, effective, standalone, v2Auth, log } = site;
  if (!site.runV2) {
    app.use(v2Off);
    return { uploads: undefined, fromV1: undefined, mirror: undefined, stopTimers: () => undefined };
  }
  const { driver, blobs } = store;
  const uploads = new V2Uploads(driver, blobs, config.max_layer_size, {
    perRepository: config.max_uploads_per_repository,
    perOwner: config.max_uploads_per_account,
    purgeAgeMs: config.upload_purge_age * 1000,
  });
  const { manifests, fromV1, toV1, schema1 } = bridgeContent(site, store, uploads);
  // the catalog: the index database when this process runs the index; on a standalone registry,
  // storage; a registry split from its index (Bearer tokens) asks the index over HTTP
  const remoteIndex = !index && !standalone && v2Auth === 'token' ? config.index_endpoint : null;
  const catalog = index
    ? new IndexCatalog(index.db)
    : standalone
      ? new StorageCatalog(driver, store.repos)
      : remoteIndex
        ? new RemoteCatalog(remoteIndex)
        : undefined;
  const indexHook = indexHookFor(site, index, events, remoteIndex);
  const mirror = assembleMirror(site, { driver, blobs, manifests, uploads, toV1 });
  const deps: V2Deps = {
    ...(mirror ? { mirror: mirror.mirror } : {}),
    config: effective,
    blobs,
    uploads,
    manifests,
    fromV1,
    toV1,
    schema1,
    auth,
    log,
    // a mirror behind the index: cached repositories join the index's list (issue 13), readable ones only
    ...(catalog ? { catalog: mirror && index ? new MirrorCatalog(catalog, mirror.mirror, driver, indexReadRule(index.db)) : catalog } : {}),
    ...(indexHook ? { index: indexHook, journal: new IndexJournal(driver) } : {}),
    // answers derived from cached metadata, valid until this node writes or the TTL passes
    ...(driver instanceof CachingDriver ? { answerCache: { ttlMs: config.metadata_cache_ttl * 1000, stamp: () => driver.changeStamp } } : {}),
    ...(events.notifier ? { notifier: events.notifier } : {}),
  };
  app.use(v2Routes(deps));
  let replayTimer: NodeJS.Timeout | undefined;
  if (deps.journal && !config.read_only) {
    // index notices a crash or an unreachable index left pending: now, then every minute
    const replay = (): void => {
      replayIndexNotices(deps).then(
        (r) => r.sent + r.dropped > 0 && log.info('pending index notices replayed', r),
        (e: unknown) => log.warn('replaying index notices failed', { err: String(e) }),
      );
    };
    setTimeout(replay, 5500).unref();
    replayTimer = setInterval(replay, 60_000);
    replayTimer.unref();
  }
  return { uploads, fromV1, mirror, stopTimers: () => clearInterval(replayTimer) };
}
