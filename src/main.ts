import type { Server } from 'node:http';
import type { Knex } from 'knex';
import type { Config } from './config/schema.js';
import { redact } from './config/load.js';
import { tokenService } from './config/advertise.js';
import { closeDb } from './db/knex.js';
import { loggerFor, type Logger } from './log/logger.js';
import type { StorageDriver } from './storage/driver.js';
import type { V2TokenVerifier } from './auth/v2-jwt.js';
import type { V2Uploads } from './content/v2-uploads.js';
import type { Webhooks } from './webhooks/service.js';
import type { Notifier } from './notifications/notifier.js';
import type { PullThrough } from './mirror/pull-through.js';
import type { V1MirrorUsage } from './mirror/v1-mirror.js';
import { notFound } from './http/fallbacks.js';
import { resolveSite, type Role } from './assemble/site.js';
import { assembleStorage } from './assemble/storage.js';
import { assembleIndex, mountIndexRoutes, mountTokenService } from './assemble/index.js';
import { assembleEvents } from './assemble/events.js';
import { assembleAuth } from './assemble/auth.js';
import { assembleV2 } from './assemble/v2.js';
import { mountWebUi } from './assemble/web.js';
import { mountRegistry } from './assemble/registry.js';
import { assembleApp, listen, listenDebug } from './assemble/http.js';
import { trimWhenIdle } from './http/idle-memory.js';
import { sha256x2 } from './digest/sha256.js';
import { nativeGunzip, nativeGunzipReason } from './digest/gunzip-native.js';
import { mallocRetain, mallocTrim, mallocTrimStatus, mapTextInPages } from './util/malloc-trim.js';
import { directIoStatus, discardKeptBuffers } from './storage/direct-io.js';
import { sendfileStatus } from './http/sendfile.js';
import { packageVersion } from './version.js';

export type { Role } from './assemble/site.js';

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
  /** The v1 mirror (mirroring.source, the v1 bridge), when configured (tests read what its caches hold). */
  readonly v1Mirror: { usage(): V1MirrorUsage } | undefined;
  /** Stop accepting, let in-flight requests finish (up to shutdown_timeout), release resources. */
  close(): Promise<void>;
}

export interface StartOptions {
  readonly role?: Role;
  readonly logger?: Logger;
  /** Storage to use instead of the configured one (tests). */
  readonly driver?: StorageDriver;
}

/**
 * The composition root: which services run here (src/assemble/site.ts), then one assembler per
 * service (src/assemble/): storage, index, events (webhooks, notifications), auth, v2 (with the
 * mirror), web UI, v1 registry, HTTP and debug/metrics listeners. The order of the `mount…` calls
 * is the order of the middleware: token service, /v2/, index, web UI, v1 registry, 404.
 */
export async function startServer(config: Config, opts: StartOptions = {}): Promise<RunningServer> {
  const log = opts.logger ?? loggerFor(config);
  for (const w of config.warnings) log.warn(`configuration: ${w}`);
  const site = resolveSite(config, opts.role ?? 'all', { version: packageVersion(), log, ownDriver: opts.driver !== undefined });
  let boundPort = 0;
  let selfUrl = '';

  const store = await assembleStorage(site, opts.driver);
  const index = await assembleIndex(site);
  const events = assembleEvents(site, store.driver, index?.db, () => boundPort);
  const auth = await assembleAuth(site, store.driver, index?.issuer, () => selfUrl);

  const { app, health } = assembleApp(site);
  mountTokenService(app, site, index);
  const v2 = assembleV2(app, site, store, index, events, auth.v2);
  mountIndexRoutes(app, site, index, store, events);
  mountWebUi(app, site, index, store, events, v2.uploads);
  const registry = mountRegistry(app, site, store, index, events, v2, auth);
  app.use(notFound);

  const { server, inflight, addr } = await listen(site, app);
  // freed C heap kept for the next request bodies while busy, all of it given back once idle (issue 18)
  const retained = mallocRetain();
  // the young generation grown during start-up (or a busy spell) given back once idle (issue 18)
  // and so are the pages of the buffers kept for direct writes of big blobs (src/storage/direct-io.ts),
  // and the executable's pages this kernel mapped 2 MiB at a time (native/memory.c: still in the
  // page cache, mapped again as they are used)
  const stopTrim = trimWhenIdle({
    started: () => inflight.total,
    inFlight: () => inflight.size,
    trim: () => [discardKeptBuffers(), mallocTrim(), mapTextInPages() > 0].includes(true),
  });
  boundPort = addr.port;
  await events.start(addr.port);
  const shownHost = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  const url = `${config.tls_certificate ? 'https' : 'http'}://${shownHost === '0.0.0.0' || shownHost === '[::]' ? '127.0.0.1' : shownHost}:${addr.port}`;
  selfUrl = url;
  const debug = await listenDebug(site, health);
  const trimStatus = mallocTrimStatus();
  const directIo = directIoStatus();
  const sendfile = sendfileStatus();
  log.info('legacy-registry listening', {
    role: site.role,
    address: `${shownHost}:${addr.port}`,
    tls: config.tls_certificate ? true : undefined,
    version: site.version,
    storage: config.storage,
    storage_path: config.storage_path,
    standalone: site.standalone,
    v2: site.runV2 ? site.v2Auth : undefined,
    token_service: (site.runV2 && site.v2Auth === 'token') || site.runIndex ? tokenService(config, addr.port) : undefined,
    index: site.runIndex ? (config.sqlalchemy_index_database ?? 'sqlite (storage_path/index.db)').replace(/\/\/[^@/]*@/, '//***@') : undefined,
    flavor: config.flavor,
    config: config.file ?? 'built-in defaults',
    // a layer's pairs of sha256 in one pass (native/sha256x2.c), or node:crypto and why
    sha256: sha256x2.native ? 'paired (SHA extensions)' : `node:crypto (paired module ${sha256x2.reason})`,
    // a layer's gzip inflated with a PCLMULQDQ CRC-32 (native/gunzip.c), or node:zlib and why
    gunzip: nativeGunzip ? 'native (PCLMULQDQ CRC-32)' : `node:zlib (native module ${nativeGunzipReason})`,
    // the C heap given back once idle (native/memory.c), or why not
    idle_trim: trimStatus.available ? `malloc_trim${retained ? ', freed heap kept while busy' : ''}` : `off (${trimStatus.reason})`,
    // big blobs written past the page cache (native/directio.c), or why not
    direct_io: config.storage === 'file' || config.storage === 'local' ? (directIo.on ? 'O_DIRECT past 8 MiB' : `off (${directIo.reason})`) : undefined,
    // downloads of files sent by the kernel (native/sendfile.c; plain HTTP), or why not
    sendfile: config.tls_certificate ? 'off (TLS)' : sendfile.on ? (directIo.on ? 'off (LR_DIRECT_IO=1 reads instead)' : 'on') : `off (${sendfile.reason})`,
  });
  log.debug('configuration', redact(config));
  store.startBackground();

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      stopTrim();
      store.stopTimers();
      v2.stopTimers();
      registry.stopTimers();
      await events.stop();
      health.stop();
      if (debug) debug.close();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      const drained = await inflight.drain(config.shutdown_timeout * 1000);
      // blobs the mirror is still writing to its cache (their clients may be gone already)
      await v2.mirror?.mirror.close();
      if (!drained) log.warn('shutdown timeout: closing connections with requests still in flight', { inflight: inflight.size });
      server.closeAllConnections();
      await closed;
      await store.digestWorkers.close();
      if (index) await closeDb(index.db);
      await store.driver.close?.();
    })();
    return closing;
  };
  return {
    server,
    url,
    port: addr.port,
    config: site.effective,
    driver: store.driver,
    db: index?.db,
    v2Tokens: index?.v2Tokens,
    v2Uploads: v2.uploads,
    webhooks: events.webhooks,
    notifier: events.notifier,
    mirror: v2.mirror?.mirror,
    v1Mirror: registry.v1Mirror,
    close,
  };
}
