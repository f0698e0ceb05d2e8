import type { Locks } from './content/mutex.js';
import { StorageLock } from './content/storage-lock.js';
import { readFileSync } from 'node:fs';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import type { Config } from './config/schema.js';
import { ConfigError, listenAddress, redact } from './config/load.js';
import { requireAdvertisedNames, tokenService } from './config/advertise.js';
import type { Knex } from 'knex';
import { closeDb, createDb, migrateLatest } from './db/knex.js';
import { warmSearch } from './db/search.js';
import { tokenSecret } from './db/settings.js';
import { V1TokenSigner } from './auth/v1-token.js';
import { IndexService } from './index/service.js';
import { INDEX_CHECKSUM_PATH, indexRouter } from './index/routes.js';
import { loggerFor, type Logger } from './log/logger.js';
import { configuredHealthChecks, debugServer, healthGate, readOnlyGate } from './http/health.js';
import { canRedirect, createDriver } from './storage/drivers/index.js';
import { CachingDriver } from './storage/drivers/caching.js';
import type { StorageDriver } from './storage/driver.js';
import { BlobStore } from './content/blob-store.js';
import { DigestWorkers } from './digest/worker-inner.js';
import { V1Images } from './content/v1-images.js';
import { V1Repositories } from './content/v1-repositories.js';
import { upgradeV1Layout } from './content/v1-layout.js';
import { OPEN_ACCESS, type RegistryAuth } from './auth/registry-auth.js';
import { TokenAuth } from './auth/registry-token.js';
import { accessLog, createKoa, v1ErrorRenderer } from './http/app.js';
import { cors } from './http/cors.js';
import { createHttpServer, InFlight } from './http/server.js';
import { notFound, v2Off } from './http/fallbacks.js';
import { registryRouter, type V1IndexHook } from './registry/routes.js';
import { standaloneIndexRouter } from './registry/standalone-index.js';
import { replayIndexNotices, v2Routes, type V2Deps, type V2IndexHook } from './v2/routes.js';
import { IndexJournal } from './content/index-journal.js';
import { V2Uploads } from './content/v2-uploads.js';
import { V2Manifests } from './content/v2-manifests.js';
import { IndexCatalog, RemoteCatalog, StorageCatalog } from './content/v2-catalog.js';
import { INDEX_DELETED_PATH, INDEX_PUSHED_PATH, v2BridgeRouter } from './index/v2-bridge-routes.js';
import { indexRepoName, type RepoName } from './content/names.js';
import { isRegistryError } from './errors/index.js';
import { V1ToV2 } from './content/v1-to-v2.js';
import { V2ToV1 } from './content/v2-to-v1.js';
import { Schema1Bridge } from './content/schema1-bridge.js';
import { ConfigReader } from './content/config-reader.js';
import { certBundleKeys, loadSigningKey, localKeys, remoteJwksKeys, V2TokenIssuer, V2TokenVerifier, type KeyResolver } from './auth/v2-jwt.js';
import { HtpasswdV2Authorizer, TokenV2Authorizer, V2_OPEN, type V2Authorizer } from './auth/v2-registry-auth.js';
import { Htpasswd, HtpasswdRegistryAuth, type HtpasswdGate } from './auth/htpasswd.js';
import { readOptional } from './content/small-objects.js';
import { randomBytes } from 'node:crypto';
import { JWKS_PATH, tokenRouter } from './index/token-routes.js';
import { webRouter } from './web/routes.js';
import { RepoContent } from './web/content.js';
import { MetricsDriver } from './metrics/driver.js';
import { GarbageCollector } from './content/gc.js';
import { instrumentRequest } from './metrics/http.js';
import { addQueueDepthSource, exposition, startDefaultMetrics } from './metrics/registry.js';
import { deliveryCounts } from './webhooks/store.js';
import { Webhooks } from './webhooks/service.js';
import { webhookRouter } from './webhooks/routes.js';
import { webhooksTab } from './webhooks/web-tab.js';
import { defaultNode, Notifier } from './notifications/notifier.js';
import { v1Events } from './notifications/v1-events.js';
import { defaultAuthority } from './config/advertise.js';
import { hostname } from 'node:os';
import { PullThrough } from './mirror/pull-through.js';
import { indexReadRule, MirrorCatalog } from './mirror/catalog.js';
import { v1Mirror, type V1MirrorDeps } from './mirror/v1-mirror.js';

/** https options of the tls_* keys: the files are read once, at start. */
function tlsOptions(c: Config): import('node:https').ServerOptions {
  const read = (f: string): Buffer => {
    try {
      return readFileSync(f);
    } catch (e) {
      throw new ConfigError(`cannot read ${f}: ${(e as Error).message}`);
    }
  };
  return {
    cert: read(c.tls_certificate!),
    key: read(c.tls_key!),
    ...(c.tls_client_cas ? { ca: c.tls_client_cas.map(read), requestCert: true, rejectUnauthorized: true } : {}),
    ...(c.tls_minimum_version ? { minVersion: c.tls_minimum_version } : {}),
  };
}

export function packageVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(fileURLToPath(new URL('../../package.json', import.meta.url)), 'utf8')) as {
      version?: string;
    };
    return pkg.version ?? '0.0.0';
  } catch {
    return '0.0.0';
  }
}

export type Role = 'all' | 'registry' | 'index';

export interface RunningServer {
  readonly server: Server;
  readonly url: string;
  readonly port: number;
  readonly config: Config;
  readonly driver: StorageDriver;
  /** The index database, when this process runs the index. */
  readonly db: Knex | undefined;
  /**
   * Verifies v2 Bearer JWTs this index issued (`verifyAccessToken(authorization, needs)`), when
   * this process runs the index.
   */
  readonly v2Tokens: V2TokenVerifier | undefined;
  /** The v2 upload sessions, when this process serves /v2/ (tests read what it keeps in memory). */
  readonly v2Uploads: V2Uploads | undefined;
  /** The webhook sender of this index node (issue 15), when it runs the index with webhooks on. */
  readonly webhooks: Webhooks | undefined;
  /** distribution's notifications of this registry node (issue 15). */
  readonly notifier: Notifier | undefined;
  /** The pull-through mirror, when configured (tests count upstream requests, run sweeps). */
  readonly mirror: PullThrough | undefined;
  /** Stop accepting, let in-flight requests finish (up to shutdown_timeout), release resources. */
  close(): Promise<void>;
}

export interface StartOptions {
  readonly role?: Role;
  readonly logger?: Logger;
  /** Storage to use instead of the configured one (tests). */
  readonly driver?: StorageDriver;
}

/** The composition root: build storage, services and routes from the config, then listen. */
export async function startServer(config: Config, opts: StartOptions = {}): Promise<RunningServer> {
  const log = opts.logger ?? loggerFor(config);
  for (const w of config.warnings) log.warn(`configuration: ${w}`);
  const role = opts.role ?? 'all';
  const version = packageVersion();
  // every storage call timed per driver and action (registry_storage_action_seconds), beneath the cache
  const storage = new MetricsDriver(opts.driver ?? (await createDriver(config)));
  // Small metadata reads (tags, manifests, listings) served from memory for metadata_cache_ttl
  // seconds; positive answers only, own writes visible at once (src/storage/drivers/caching.ts).
  const driver = config.metadata_cache_ttl > 0 ? new CachingDriver(storage, { ttlMs: config.metadata_cache_ttl * 1000 }) : storage;
  const blobs = new BlobStore(driver);
  if (config.storage_redirect === true) {
    // only the s3 driver signs URLs; with the others the setting was named in a warning at load
    if (canRedirect(storage)) blobs.redirectWith((key) => storage.redirectURL(key));
  }
  let purgeTimer: NodeJS.Timeout | undefined;
  let replayTimer: NodeJS.Timeout | undefined;
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
    const gc = new GarbageCollector(storage);
    let running = false;
    gcTimer = setInterval(() => {
      if (running) return;
      running = true;
      gc.run({ deleteUntagged: config.gc_delete_untagged, graceMs: config.gc_grace * 1000, settleMs: (config.metadata_cache_ttl + 5) * 1000 })
        .then(
          (r) => log.info('garbage collection', { blobs: r.blobs.deleted, bytes: r.blobs.bytesFreed, v1_images: r.v1Images.deleted, v2_manifests: r.v2Manifests.deleted, links: r.links.deleted, ms: r.durationMs }),
          (e: unknown) => log.error('garbage collection failed', { err: String(e) }),
        )
        .finally(() => {
          running = false;
        });
    }, config.gc_interval * 1000);
    gcTimer.unref();
  }
  // gunzip + tarsum of uploads run in worker threads (the second core), sha256 + payload here.
  const digestWorkers = new DigestWorkers();

  // Which services run here (spec §4.1): unset `standalone` means token checks against this
  // process's index for `serve`, and a standalone registry for `serve --only registry` unless an
  // index_endpoint is configured.
  const standalone = config.standalone ?? (role === 'registry' ? config.index_endpoint === null : false);
  if (role === 'registry' && !standalone && !config.disable_token_auth && config.index_endpoint === null) {
    throw new ConfigError('invalid configuration:\n  index_endpoint: required when a registry runs alone with standalone: false');
  }
  // spec v2-bridge §4: unset v2_auth ⇒ Bearer tokens of the index when there is one, nothing on a
  // standalone registry (or when another layer does the auth: disable_token_auth).
  const v2Auth = config.v2_auth ?? (standalone || config.disable_token_auth ? 'none' : 'token');
  if (v2Auth === 'htpasswd' && !config.htpasswd_path) {
    throw new ConfigError('invalid configuration:\n  htpasswd_path: required with v2_auth: htpasswd');
  }
  if (v2Auth === 'htpasswd' && !standalone && role !== 'index') {
    // The index's accounts decide who may do what (v1 tokens, v2 Bearer tokens, repository owners);
    // a second account list beside them would create repositories nobody in the index owns.
    throw new ConfigError(
      'invalid configuration:\n  v2_auth: htpasswd is for a registry without an index (standalone: true); with an index, v2 clients log in with index accounts (v2_auth: token)',
    );
  }
  if (config.nginx_x_accel_redirect !== null && (opts.driver !== undefined || (config.storage !== 'file' && config.storage !== 'local'))) {
    throw new ConfigError('invalid configuration:\n  nginx_x_accel_redirect: needs the filesystem storage (nginx serves its files)');
  }
  const effective: Config = Object.freeze({ ...config, standalone });
  // With accounts (the index vouches for tokens) images belong to repositories: every v1 image
  // record lives in, and is looked up in, the token's repository (issue 10). Without accounts
  // everything is readable by everyone anyway: one registry-wide set.
  // Locks that hold across every registry node sharing the storage (a v1 image's writes, a tag
  // write against its repository's deletion): lock objects in the storage itself.
  const locks = new StorageLock(storage);
  if (!locks.shared) log.info('storage driver without exclusive create: locks hold within this process only (one node per storage)');
  const images = new V1Images(driver, blobs, {
    locks,
    scoped: !standalone && !config.disable_token_auth,
    maxLayerSize: config.max_layer_size,
    verifyTarsum: config.verify_tarsum,
    innerDigests: (kind, extra) => digestWorkers.create(kind, extra),
  });
  const repos = new V1Repositories(driver, images);
  // one lock per repository for what publishes into it and its deletion (registry routes and the index)
  const repoLock: Locks = { run: (name, fn) => locks.run(`repository\n${name}`, fn) };
  if (role !== 'index' && !config.read_only) await upgradeV1Layout(driver, images, repos, log);
  const runIndex = role === 'index' || (role === 'all' && !standalone);
  requireAdvertisedNames(config, { v2Tokens: config.v2 && role !== 'index' && v2Auth === 'token', index: runIndex || standalone });
  let db: Knex | undefined;
  let index: IndexService | undefined;
  let webhooks: Webhooks | undefined;
  let boundPort = 0;
  // distribution's notifications: events of this registry node, queued in storage per endpoint
  const liveEndpoints = (config.notifications?.endpoints ?? []).filter((e) => !e.disabled);
  const notifier =
    role !== 'index' && liveEndpoints.length > 0
      ? new Notifier(
          driver,
          {
            endpoints: liveEndpoints,
            includeReferences: config.notifications?.events?.includereferences ?? false,
            node: config.notifications?.node ?? defaultNode(),
            sourceAddr: `${hostname()}:${listenAddress(config).port}`,
          },
          log,
        )
      : undefined;
  const metricSources: (() => void)[] = [];
  if (notifier) {
    metricSources.push(addQueueDepthSource(async () => Object.fromEntries(notifier.stats().map((q) => [q.endpoint, q.depth]))));
  }
  let fromV1ForEvents: V1ToV2 | undefined;
  let issuer: V2TokenIssuer | undefined;
  let v2Tokens: V2TokenVerifier | undefined;
  if (runIndex) {
    if ((config.storage === 's3' || config.storage === 'swift') && !config.sqlalchemy_index_database) {
      throw new ConfigError(
        `invalid configuration:\n  sqlalchemy_index_database: required with storage ${config.storage} when this process runs the index (its database cannot live in the bucket): postgresql://… or sqlite:////path/index.db`,
      );
    }
    db = createDb(config.sqlalchemy_index_database, config.storage_path);
    const applied = await migrateLatest(db);
    if (applied.length > 0) log.info('index database migrated', { applied });
    // the in-memory search of a SQLite index loads in the background (seconds at 100k repositories)
    const started = Date.now();
    const warming = db;
    warmSearch(warming).then(
      (done) => done && log.info('search index loaded', { ms: Date.now() - started }),
      (e: unknown) => log.warn('search index not loaded yet (the first search will)', { err: String(e) }),
    );
    const secret = await tokenSecret(db, config.token_secret);
    index = new IndexService(db, new V1TokenSigner(secret, config.token_ttl), {
      signup: config.signup,
      signupActive: config.signup_active,
      bcryptCost: config.bcrypt_cost,
      log,
    });
    if (config.webhooks) {
      webhooks = new Webhooks(
        db,
        {
          timeout: config.webhook_timeout,
          maxAttempts: config.webhook_max_attempts,
          retryBase: config.webhook_retry_base,
          retryMax: config.webhook_retry_max,
          pollInterval: config.webhook_poll_interval,
          concurrency: config.webhook_concurrency,
          baseUrl: config.webhook_base_url,
          userAgent: `legacy-registry/${version} (webhooks)`,
        },
        // callback_url and repo_url: this index under a name that reaches this machine
        () => `${config.tls_certificate ? 'https' : 'http'}://${defaultAuthority(config, boundPort)}`,
        log,
      );
      const outbox = db;
      metricSources.push(
        addQueueDepthSource(async () => {
          const counts = await deliveryCounts(outbox);
          return { webhooks: (counts.pending ?? 0) + (counts.sending ?? 0) + (counts.waiting ?? 0) };
        }),
      );
    }
    const key = await loadSigningKey(db, config.token_signing_key);
    issuer = new V2TokenIssuer(key, { issuer: config.token_issuer, ttl: config.v2_token_ttl });
    v2Tokens = new V2TokenVerifier(localKeys(key), config.token_issuer);
  }
  let v2Authorizer: V2Authorizer = V2_OPEN;
  let htpasswd: Htpasswd | undefined;
  let gate: HtpasswdGate | undefined;
  if (v2Auth === 'htpasswd' && role !== 'index') {
    htpasswd = new Htpasswd(config.htpasswd_path!);
    if (standalone) {
      // No index to gate the v1 routes: the same file does (spec v2-bridge §4.6). The stand-in
      // index's tokens are signed with a secret kept in storage, shared by every node.
      const key = 'v1/_keys/standalone-token-secret';
      // two nodes starting at once: with exclusive create the first one's secret is everyone's
      if (!(await readOptional(driver, key))) {
        if (driver.putContentIfAbsent) await driver.putContentIfAbsent(key, randomBytes(32));
        else await driver.putContent(key, randomBytes(32));
      }
      gate = { file: htpasswd, signer: new V1TokenSigner((await readOptional(driver, key))!, config.token_ttl), realm: config.htpasswd_realm };
    }
  }
  if (config.v2 && role !== 'index') {
    if (v2Auth === 'htpasswd') {
      v2Authorizer = new HtpasswdV2Authorizer(htpasswd!, config.htpasswd_realm);
    } else if (v2Auth === 'token') {
      // Whose signatures the registry trusts (§4.4): the bundle's certificates when configured
      // (an external token service), else this process's index key, else the index's JWKS.
      let keys: KeyResolver;
      if (config.token_rootcertbundle) keys = certBundleKeys(config.token_rootcertbundle);
      else if (issuer) keys = localKeys(issuer.key);
      else if (config.index_endpoint) keys = remoteJwksKeys(`${config.index_endpoint}${JWKS_PATH}`, log);
      else throw new ConfigError('invalid configuration:\n  v2_auth: token needs an index (index_endpoint) or token_rootcertbundle');
      v2Authorizer = new TokenV2Authorizer({
        verifier: new V2TokenVerifier(keys, config.token_issuer),
        config,
        indexBase: role === 'registry' ? config.index_endpoint : null,
      });
    }
  }
  let selfUrl = '';
  // Spec §4.1: standalone or disable_token_auth ⇒ no token checks; otherwise every request's token is
  // validated against the index (over HTTP, as the protocol prescribes, with a short cache).
  const auth: RegistryAuth = gate
    ? new HtpasswdRegistryAuth(gate)
    : standalone || config.disable_token_auth
      ? OPEN_ACCESS
      : new TokenAuth({ indexEndpoint: () => config.index_endpoint ?? selfUrl, cacheTtl: config.token_cache_ttl, log });

  const health = configuredHealthChecks(config, log);
  const app = createKoa(config.trusted_proxies);
  app.use(accessLog(log, config.access_log));
  if (config.http_headers) {
    // distribution's http.headers: added to every response (errors included), several values as several lines
    const extra = Object.entries(config.http_headers).filter(([, values]) => values.length > 0);
    app.use(async (ctx, next) => {
      for (const [name, values] of extra) ctx.set(name, values.length === 1 ? values[0]! : values);
      await next();
    });
  }
  if (config.cors) app.use(cors(config.cors));
  app.use(v1ErrorRenderer(log));
  if (health.size > 0) app.use(healthGate(health));
  if (config.read_only) app.use(readOnlyGate());
  // The token service answers before /v2/ (its realm path is under /v2/ and needs no token).
  if (index && issuer) app.use(tokenRouter(effective, index, issuer).routes());
  let v2Uploads: V2Uploads | undefined;
  let mirror: PullThrough | undefined;
  let mirrorV2: V1MirrorDeps['v2'];
  if (config.v2 && role !== 'index') {
    const uploads = new V2Uploads(driver, blobs, config.max_layer_size, {
      perRepository: config.max_uploads_per_repository,
      perOwner: config.max_uploads_per_account,
    });
    v2Uploads = uploads;
    const manifests = new V2Manifests(driver, blobs, uploads);
    const fromV1 = new V1ToV2(driver, blobs, images, repos, manifests, uploads);
    fromV1ForEvents = fromV1;
    const configs = new ConfigReader(blobs, uploads, config.max_config_size);
    const toV1 = new V2ToV1(driver, blobs, repos, images, log, configs);
    const schema1 = new Schema1Bridge(driver, configs, fromV1);
    // the catalog: the index database when this process runs the index; on a standalone registry,
    // storage; a registry split from its index (Bearer tokens) asks the index over HTTP
    const remoteIndex = !db && !standalone && v2Auth === 'token' ? config.index_endpoint : null;
    const catalog = db ? new IndexCatalog(db) : standalone ? new StorageCatalog(driver, repos) : remoteIndex ? new RemoteCatalog(remoteIndex) : undefined;
    const learn = index;
    let indexHook: V2IndexHook | undefined;
    if (learn) {
      indexHook = {
        pushed: async (p, name, tag, images) => {
          const repo = indexRepoName(name);
          if (!repo) return;
          await learn.learnV2Push(p.account, repo, tag, images);
          // Hub webhooks of the tag: queued (never sent inline); a failure here is logged, the push stands
          await webhooks?.pushed(repo, tag, images.map((i) => i.id), p.account).catch((e: unknown) => log.warn('webhooks not queued for a v2 push', { repository: repo.full, tag, err: String(e) }));
        },
        deleted: async (_p, name, tags) => {
          const repo = indexRepoName(name);
          if (repo) await learn.forgetV2Tags(repo, tags);
        },
      };
    } else if (remoteIndex) {
      indexHook = {
        pushed: async (_p, name, tag, images, authorization) => {
          const r = await fetch(`${remoteIndex}${INDEX_PUSHED_PATH}`, {
            method: 'POST',
            headers: { 'Content-Type': 'application/json', ...(authorization ? { Authorization: authorization } : {}) },
            body: JSON.stringify({ name, tag, images }),
          });
          if (!r.ok) throw new Error(`the index answered ${r.status}: ${await r.text()}`);
        },
        deleted: async (_p, name, tags, authorization) => {
          const r = await fetch(`${remoteIndex}${INDEX_DELETED_PATH}`, {
            method: 'POST',
            headers: { 'Content-Type': 'application/json', ...(authorization ? { Authorization: authorization } : {}) },
            body: JSON.stringify({ name, tags }),
          });
          if (!r.ok) throw new Error(`the index answered ${r.status}: ${await r.text()}`);
        },
      };
    }
    // the pull-through mirror (issue 13): upstreams by name prefix, cached into this storage
    if (config.mirror) {
      mirror = new PullThrough(config.mirror, { driver, blobs, manifests, uploads, toV1, log });
      if (!config.read_only) mirror.start();
      mirrorV2 = { mirror, manifests, toV1 };
      log.info('mirror', { upstreams: config.mirror.upstreams.map((u) => `${u.prefix || '*'} -> ${u.url}${u.username ? ' (credentials)' : ''}`), ttl: config.mirror.ttl });
    }
    const v2deps: V2Deps = {
      ...(mirror ? { mirror } : {}),
      config: effective,
      blobs,
      uploads,
      manifests,
      fromV1,
      toV1,
      schema1,
      auth: v2Authorizer,
      log,
      // a mirror behind the index: cached repositories join the index's list (issue 13), readable ones only
      ...(catalog ? { catalog: mirror && db ? new MirrorCatalog(catalog, mirror, driver, indexReadRule(db)) : catalog } : {}),
      ...(indexHook ? { index: indexHook, journal: new IndexJournal(driver) } : {}),
      // answers derived from cached metadata, valid until this node writes or the TTL passes
      ...(driver instanceof CachingDriver ? { answerCache: { ttlMs: config.metadata_cache_ttl * 1000, stamp: () => driver.changeStamp } } : {}),
      ...(notifier ? { notifier } : {}),
    };
    app.use(v2Routes(v2deps));
    if (v2deps.journal && !config.read_only) {
      // index notices a crash or an unreachable index left pending: now, then every minute
      const replay = (): void => {
        replayIndexNotices(v2deps).then(
          (r) => r.sent + r.dropped > 0 && log.info('pending index notices replayed', r),
          (e: unknown) => log.warn('replaying index notices failed', { err: String(e) }),
        );
      };
      setTimeout(replay, 5500).unref();
      replayTimer = setInterval(replay, 60_000);
      replayTimer.unref();
    }
  } else {
    app.use(v2Off);
  }
  // The index goes first: on a path both serve (DELETE repository, properties) it answers requests
  // with Basic credentials and leaves those with a Token to the registry.
  if (index) {
    const removeContent =
      role === 'all'
        ? async (name: RepoName): Promise<void> => {
            await repoLock.run(name.full, () => repos.deleteRepository(name)).catch((e: unknown) => {
              if (!(isRegistryError(e) && e.code === 'REPOSITORY_NOT_FOUND')) throw e;
            });
          }
        : undefined;
    app.use(indexRouter(effective, index, { ping: role === 'index', ...(removeContent ? { removeContent } : {}) }).routes());
  }
  if (index && db && v2Tokens) {
    const hooks = webhooks;
    const onPushed = hooks
      ? async (repo: RepoName, tag: string, ids: readonly string[], account: string | null): Promise<void> => {
          await hooks.pushed(repo, tag, ids, account).catch((e: unknown) => log.warn('webhooks not queued for a v2 push', { repository: repo.full, tag, err: String(e) }));
        }
      : undefined;
    app.use(v2BridgeRouter(db, index, v2Tokens, onPushed).routes());
  }
  // webhooks (issue 15): the owner's JSON API and Hub's callback_url, before the web UI's /u/ pages
  if (index && webhooks) app.use(webhookRouter(index, webhooks).routes());
  // --- web UI (issue 14, src/web/): pages for browsers on the index's accounts and access rules.
  // With the registry in this process the pages read stored content through the registry's own
  // services (tags, digests, sizes, layers); an index alone shows what its database knows.
  // Webhooks plug a settings tab in through `settingsTabs` (docs/web-ui.md).
  if (index && config.web_ui) {
    let content: RepoContent | undefined;
    if (role === 'all') {
      const uploads = v2Uploads ?? new V2Uploads(driver, blobs, config.max_layer_size);
      const manifests = new V2Manifests(driver, blobs, uploads);
      const configs = new ConfigReader(blobs, uploads, config.max_config_size);
      const fromV1 = new V1ToV2(driver, blobs, images, repos, manifests, uploads);
      content = new RepoContent({ driver, repos, images, manifests, fromV1, configs, toV1: new V2ToV1(driver, blobs, repos, images, log, configs), schema1: new Schema1Bridge(driver, configs, fromV1) });
    }
    const removeWebContent =
      role === 'all'
        ? async (name: RepoName): Promise<void> => {
            await repos.deleteRepository(name).catch((e: unknown) => {
              if (!(isRegistryError(e) && e.code === 'REPOSITORY_NOT_FOUND')) throw e;
            });
          }
        : undefined;
    app.use(
      webRouter({
        config: effective,
        index,
        log,
        ...(content ? { content } : {}),
        ...(removeWebContent ? { removeContent: removeWebContent } : {}),
        ...(webhooks ? { settingsTabs: [webhooksTab(index, webhooks)] } : {}),
      }).routes(),
    );
  }
  if (role !== 'index') {
    // the index learns each verified v1 checksum: directly in one process, else over HTTP
    const learnV1 = index;
    const v1Hook: V1IndexHook | undefined = !images.scoped
      ? undefined
      : learnV1
        ? { checksum: async (repo, id, checksum, authorization) => void (await learnV1.learnChecksum(authorization, repo, id, checksum)) }
        : config.index_endpoint
          ? {
              checksum: async (repo, id, checksum, authorization) => {
                const r = await fetch(`${config.index_endpoint}${INDEX_CHECKSUM_PATH}`, {
                  method: 'POST',
                  headers: { 'Content-Type': 'application/json', Authorization: authorization },
                  body: JSON.stringify({ name: repo.full, id, checksum }),
                  signal: AbortSignal.timeout(15000),
                });
                if (r.status !== 204) throw new Error(`the index answered ${r.status}: ${await r.text()}`);
              },
            }
          : undefined;
    // v1 mirroring (issue 13): Python's mirroring.source, and v1 reads of v2-mirrored repositories
    if (config.mirroring?.source || mirrorV2) app.use(v1Mirror({ config: effective, images, repos, log, ...(mirrorV2 ? { v2: mirrorV2 } : {}) }));
    const inProcessIndex = index;
    const hooks = webhooks;
    const events =
      notifier || hooks
        ? v1Events({
            images,
            log,
            ...(notifier ? { notifier } : {}),
            ...(fromV1ForEvents ? { fromV1: fromV1ForEvents } : {}),
            ...(inProcessIndex
              ? {
                  actor: async (authorization: string, repo: RepoName) => {
                    const valid = await inProcessIndex.tokenFor(authorization, repo);
                    if (!valid || valid.claims.userId <= 0) return null;
                    return (await inProcessIndex.findUser(valid.claims.userId))?.username ?? null;
                  },
                }
              : {}),
            ...(hooks ? { webhooks: (repo: RepoName, tag: string, chain: readonly string[], pusher: string | null) => hooks.pushed(repo, tag, chain, pusher) } : {}),
          })
        : undefined;
    const registry = registryRouter({ config: effective, images, repos, auth, version, log, repoLock, ...(v1Hook ? { index: v1Hook } : {}), ...(events ? { events } : {}) });
    app.use(registry.routes());
    if (standalone) app.use(standaloneIndexRouter(effective, repos, gate).routes());
  }
  app.use(notFound);

  const inflight = new InFlight();
  const koaHandler = app.callback();
  const server = createHttpServer(
    (req, res) => {
      inflight.track(req, res);
      instrumentRequest(req, res);
      void koaHandler(req, res);
    },
    log,
    { idleTimeoutSec: config.idle_timeout, ...(config.tls_certificate && config.tls_key ? { tls: tlsOptions(config) } : {}) },
  );
  const { host, port } = listenAddress(config);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const addr = server.address() as AddressInfo;
  boundPort = addr.port;
  webhooks?.start();
  if (notifier) {
    notifier.sourceAddr = `${hostname()}:${addr.port}`;
    await notifier.start();
  }
  const shownHost = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  const url = `${config.tls_certificate ? 'https' : 'http'}://${shownHost === '0.0.0.0' || shownHost === '[::]' ? '127.0.0.1' : shownHost}:${addr.port}`;
  selfUrl = url;
  let debug: Server | undefined;
  if (config.debug_addr) {
    const d = listenAddress({ ...config, http_addr: config.debug_addr });
    if (config.metrics) startDefaultMetrics();
    debug = debugServer(health, config.metrics ? { path: config.metrics_path, render: exposition } : undefined);
    await new Promise<void>((resolve, reject) => {
      debug!.once('error', reject);
      debug!.listen(d.port, d.host, () => resolve());
    });
    log.info('debug server listening', { listen: config.debug_addr, paths: config.metrics ? ['/debug/health', config.metrics_path] : ['/debug/health'] });
  }
  log.info('legacy-registry listening', {
    role,
    address: `${shownHost}:${addr.port}`,
    tls: config.tls_certificate ? true : undefined,
    version,
    storage: config.storage,
    storage_path: config.storage_path,
    standalone,
    v2: config.v2 && role !== 'index' ? v2Auth : undefined,
    token_service: (config.v2 && role !== 'index' && v2Auth === 'token') || runIndex ? tokenService(config, addr.port) : undefined,
    index: runIndex ? (config.sqlalchemy_index_database ?? 'sqlite (storage_path/index.db)').replace(/\/\/[^@/]*@/, '//***@') : undefined,
    flavor: config.flavor,
    config: config.file ?? 'built-in defaults',
  });
  log.debug('configuration', redact(config));

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      clearInterval(purgeTimer);
      clearInterval(gcTimer);
      for (const remove of metricSources) remove();
      clearInterval(replayTimer);
      await webhooks?.stop();
      await notifier?.stop();
      health.stop();
      if (debug) debug.close();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      const drained = await inflight.drain(config.shutdown_timeout * 1000);
      // blobs the mirror is still writing to its cache (their clients may be gone already)
      await mirror?.close();
      if (!drained) log.warn('shutdown timeout: closing connections with requests still in flight', { inflight: inflight.size });
      server.closeAllConnections();
      await closed;
      await digestWorkers.close();
      if (db) await closeDb(db);
      await driver.close?.();
    })();
    return closing;
  };
  return { server, url, port: addr.port, config: effective, driver, db, v2Tokens, v2Uploads, webhooks, notifier, mirror, close };
}
