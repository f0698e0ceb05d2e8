import type { Locks } from '../content/mutex.js';
import { StorageLock } from '../content/storage-lock.js';
import { canRedirect, createDriver, type TempFileSweep } from '../storage/drivers/index.js';
import { CachingDriver } from '../storage/drivers/caching.js';
import type { StorageDriver } from '../storage/driver.js';
import { BlobStore } from '../content/blob-store.js';
import { DigestWorkers } from '../digest/worker-inner.js';
import { imageJsonMax, V1Images } from '../content/v1-images.js';
import { V1Repositories } from '../content/v1-repositories.js';
import { upgradeV1Layout } from '../content/v1-layout.js';
import { MetricsDriver } from '../metrics/driver.js';
import { GarbageCollector, GcBusyError } from '../content/gc.js';
import type { Site } from './site.js';

/** Storage and the content services every route shares. */
export interface StorageServices {
  /** The driver itself (timed per action), beneath the metadata cache: gc, purges, locks, redirects. */
  readonly storage: StorageDriver;
  /** What content reads and writes through: the metadata cache when configured, else `storage`. */
  readonly driver: StorageDriver;
  readonly blobs: BlobStore;
  readonly images: V1Images;
  readonly repos: V1Repositories;
  /** One lock per repository for what publishes into it and its deletion (registry routes and the index). */
  readonly repoLock: Locks;
  readonly digestWorkers: DigestWorkers;
  /** Start what runs once the server listens: the sweep of a filesystem storage's stale temporary files. */
  startBackground(): void;
  /** Stop the purge and gc timers and the startup sweep of stale temporary files. */
  stopTimers(): void;
}

/**
 * The storage service: driver (timed, cached), blob store, v1 images and repositories, locks held
 * in storage, the purge of abandoned uploads and the optional periodic garbage collection.
 */
export async function assembleStorage(site: Site, given: StorageDriver | undefined): Promise<StorageServices> {
  const { config, role, standalone, log } = site;
  // every storage call timed per driver and action (registry_storage_action_seconds), beneath the cache
  // A filesystem driver's sweep of stale temporary files walks the whole tree: it runs once the
  // server listens (startBackground), while it serves (their names are never served, and young
  // ones, in flight, stay), not before.
  let sweep: TempFileSweep | undefined;
  const storage = new MetricsDriver(given ?? (await createDriver(config, { deferSweep: (s) => (sweep = s) })));
  const sweeping = new AbortController();
  const startBackground = (): void => {
    const run = sweep;
    sweep = undefined;
    if (!run || sweeping.signal.aborted) return;
    const started = Date.now();
    run(sweeping.signal).then(
      (count) => {
        if (count > 0) log.info('removed stale temporary files', { count, ms: Date.now() - started });
      },
      (e: unknown) => log.warn('sweeping stale temporary files failed', { err: String(e) }),
    );
  };
  // Small metadata reads (tags, manifests, listings) served from memory for metadata_cache_ttl
  // seconds; positive answers only, own writes visible at once (src/storage/drivers/caching.ts).
  const driver = config.metadata_cache_ttl > 0 ? new CachingDriver(storage, { ttlMs: config.metadata_cache_ttl * 1000 }) : storage;
  const blobs = new BlobStore(driver);
  if (config.storage_redirect === true) {
    // only the s3 driver signs URLs; with the others the setting was named in a warning at load
    if (canRedirect(storage)) blobs.redirectWith((key) => storage.redirectURL(key));
  }
  let purgeTimer: NodeJS.Timeout | undefined;
  if (config.upload_purging && !config.read_only) {
    const purgeAll = async (): Promise<number> => {
      const n = await blobs.purgeStaleUploads(config.upload_purge_age * 1000);
      // an object store's incomplete multipart uploads / orphan segments of killed writers
      const writes = (await storage.purgeAbandonedWrites?.(config.upload_purge_age * 1000)) ?? 0;
      if (writes > 0) log.info('aborted abandoned object store writes', { count: writes });
      return n;
    };
    const purged = await purgeAll();
    if (purged > 0) log.info('purged abandoned uploads', { count: purged });
    // Uploads abandoned while we run (a client that vanished without closing) go the same way.
    purgeTimer = setInterval(
      () => {
        purgeAll().then(
          (n) => n > 0 && log.info('purged abandoned uploads', { count: n }),
          (e: unknown) => log.error('purging abandoned uploads failed', { err: e }),
        );
      },
      (config.upload_purge_interval ?? Math.min(config.upload_purge_age, 3600)) * 1000,
    );
    purgeTimer.unref();
  }
  // Optional periodic garbage collection (off by default: `legacy-registry gc` from cron does the
  // same). On the storage itself, never through the metadata cache (src/content/gc.ts).
  let gcTimer: NodeJS.Timeout | undefined;
  if (config.gc_interval > 0 && !config.read_only && role !== 'index') {
    const gc = new GarbageCollector(storage, config.max_config_size, config.max_json_size);
    let running = false;
    gcTimer = setInterval(() => {
      if (running) return;
      running = true;
      gc.run({ deleteUntagged: config.gc_delete_untagged, graceMs: config.gc_grace * 1000, settleMs: (config.metadata_cache_ttl + 5) * 1000 })
        .then(
          (r) =>
            log.info('garbage collection', {
              blobs: r.blobs.deleted,
              bytes: r.blobs.bytesFreed,
              v1_images: r.v1Images.deleted,
              v2_manifests: r.v2Manifests.deleted,
              links: r.links.deleted,
              ms: r.durationMs,
            }),
          (e: unknown) =>
            e instanceof GcBusyError
              ? log.info('garbage collection skipped: another run holds the lock', { reason: e.message })
              : log.error('garbage collection failed', { err: String(e) }),
        )
        .finally(() => {
          running = false;
        });
    }, config.gc_interval * 1000);
    gcTimer.unref();
  }
  // gunzip + tarsum of uploads run in worker threads (the second core), sha256 + payload here.
  const digestWorkers = new DigestWorkers();

  // With accounts (the index vouches for tokens) images belong to repositories: every v1 image
  // record lives in, and is looked up in, the token's repository (issue 10). Without accounts
  // everything is readable by everyone anyway: one registry-wide set.
  // Locks that hold across every registry node sharing the storage (a v1 image's writes, a tag
  // write against its repository's deletion): lock objects in the storage itself.
  const locks = new StorageLock(storage);
  if (!locks.shared) log.info('storage driver without exclusive create: locks hold within this process only (one node per storage)');
  const images = new V1Images(driver, blobs, {
    locks,
    // what a push decides under an image's lock (shared by every node) is read past the cache
    storage,
    scoped: !standalone && !config.disable_token_auth,
    maxLayerSize: config.max_layer_size,
    // a push's json is held to max_json_size, the v2→v1 bridge's (a config's) to max_config_size
    maxJsonSize: imageJsonMax(config.max_json_size, config.max_config_size),
    verifyTarsum: config.verify_tarsum,
    innerDigests: digestWorkers.factory,
    // complete images' records (GET json, ancestry, layer) from memory for metadata_cache_ttl, as
    // tags and manifests are: immutable until a delete, which this node's writes show at once
    ...(driver instanceof CachingDriver ? { records: { ttlMs: config.metadata_cache_ttl * 1000, stamp: () => driver.changeStamp, storage } } : {}),
  });
  const repos = new V1Repositories(driver, images, locks, storage);
  const repoLock: Locks = { run: (name, fn) => locks.run(`repository\n${name}`, fn) };
  if (role !== 'index' && !config.read_only) await upgradeV1Layout(driver, images, repos, log);
  return {
    storage,
    driver,
    blobs,
    images,
    repos,
    repoLock,
    digestWorkers,
    startBackground,
    stopTimers: () => {
      sweeping.abort();
      clearInterval(purgeTimer);
      clearInterval(gcTimer);
    },
  };
}
