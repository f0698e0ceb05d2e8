import type { Knex } from 'knex';
import { randomBytes } from 'node:crypto';
import type { Config } from '../config/schema.js';
import { closeDb, createDb, migrateLatest } from '../db/knex.js';
import { createDriver } from '../storage/drivers/index.js';
import type { StorageDriver } from '../storage/driver.js';
import { BlobStore } from '../content/blob-store.js';
import { DigestWorkers } from '../digest/worker-inner.js';
import { imageJsonMax, V1Images } from '../content/v1-images.js';
import { StorageLock } from '../content/storage-lock.js';
import type { Locks } from '../content/mutex.js';
import { V1Repositories } from '../content/v1-repositories.js';
import { V2Uploads } from '../content/v2-uploads.js';
import { V2Manifests } from '../content/v2-manifests.js';
import { V1ToV2 } from '../content/v1-to-v2.js';
import { V2ToV1 } from '../content/v2-to-v1.js';
import { ConfigReader } from '../content/config-reader.js';
import { IndexService } from '../index/service.js';
import { V1TokenSigner } from '../auth/v1-token.js';
import { createLogger, type Logger } from '../log/logger.js';

/**
 * The content services of the server, built from its configuration the way src/main.ts builds
 * them, for the import and migrate commands. Both write (and read) through these, never through
 * raw keys, so what they do is what a push through the API would do, and a live server sharing
 * the storage and index database sees it as such.
 */
export interface Content {
  readonly config: Config;
  readonly driver: StorageDriver;
  readonly blobs: BlobStore;
  readonly images: V1Images;
  readonly repos: V1Repositories;
  readonly uploads: V2Uploads;
  readonly manifests: V2Manifests;
  readonly fromV1: V1ToV2;
  readonly toV1: V2ToV1;
  /**
   * A repository's lock, the one a server on the same storage takes for a tag write or a repository
   * delete (src/assemble/storage.ts): a StorageLock, held across processes where the driver can
   * create exclusively.
   */
  readonly repoLock: Locks;
  /** The index database, when the configuration runs an index (not standalone). */
  readonly db: Knex | undefined;
  readonly index: IndexService | undefined;
  close(): Promise<void>;
}

export interface OpenOptions {
  /**
   * Digest worker threads (default: as a server has them). The importer uses none: with the
   * tarsums skipped, what is left of the uncompressed side (gunzip on libuv's thread pool, the
   * diff_id, the tar check) costs less than handing every byte to a worker, and each worker is a
   * V8 isolate of ~40 MiB (measured: peak RSS 235 → 150 MiB for 4 layers at once).
   */
  readonly digestWorkers?: number;
  /**
   * A local storage's small file-system calls made as blocking calls (FilesystemDriverOptions.blocking):
   * for a command that is alone on its event loop (import).
   */
  readonly blockingFs?: boolean;
}

export async function openContent(config: Config, log: Logger = createLogger('silent'), opts: OpenOptions = {}): Promise<Content> {
  const driver = await createDriver(config, { blocking: opts.blockingFs === true });
  const blobs = new BlobStore(driver);
  const digestWorkers = new DigestWorkers(opts.digestWorkers);
  // the same decision as main.ts for `serve` (role all): an index unless standalone
  const standalone = config.standalone ?? false;
  // the locks a server sharing the storage takes (a v1 image's writes, a repository's tags): an
  // import beside a live server goes through them as a push does
  const locks = new StorageLock(driver);
  const images = new V1Images(driver, blobs, {
    locks,
    // no metadata cache here: the reads under an image's lock are the storage's already
    storage: driver,
    scoped: !standalone && !config.disable_token_auth,
    maxLayerSize: config.max_layer_size,
    // a push's json is held to max_json_size, the v2→v1 bridge's (a config's) to max_config_size
    maxJsonSize: imageJsonMax(config.max_json_size, config.max_config_size),
    verifyTarsum: config.verify_tarsum,
    innerDigests: digestWorkers.factory,
  });
  const repos = new V1Repositories(driver, images, locks);
  const uploads = new V2Uploads(driver, blobs, config.max_layer_size);
  const manifests = new V2Manifests(driver, blobs, uploads);
  const fromV1 = new V1ToV2(driver, blobs, images, repos, manifests, uploads, config.max_config_size);
  const configs = new ConfigReader(blobs, uploads, config.max_config_size);
  // a v1 tag is moved under its repository's lock, the one a live server's tag writes take
  const toV1 = new V2ToV1(driver, blobs, repos, images, log, configs, { run: (name, fn) => locks.run(`repository\n${name}`, fn) });
  let db: Knex | undefined;
  let index: IndexService | undefined;
  if (!standalone) {
    db = createDb(config.sqlalchemy_index_database, config.storage_path);
    await migrateLatest(db);
    // only the record-keeping methods are used (learnV2Push): no token is ever issued with this key
    index = new IndexService(db, new V1TokenSigner(randomBytes(32), config.token_ttl), {
      signup: false,
      signupActive: false,
      bcryptCost: config.bcrypt_cost,
      log,
    });
  }
  return {
    config,
    driver,
    blobs,
    images,
    repos,
    uploads,
    manifests,
    fromV1,
    toV1,
    repoLock: { run: (name, fn) => locks.run(`repository\n${name}`, fn) },
    db,
    index,
    async close() {
      await digestWorkers.close();
      if (db) await closeDb(db);
      await driver.close?.();
    },
  };
}
