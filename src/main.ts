import { readFileSync } from 'node:fs';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import type { Config } from './config/schema.js';
import { listenAddress, redact } from './config/load.js';
import { createLogger, toLevel, type Logger } from './log/logger.js';
import { createDriver } from './storage/drivers/index.js';
import type { StorageDriver } from './storage/driver.js';
import { BlobStore } from './content/blob-store.js';
import { DigestWorkers } from './digest/worker-inner.js';
import { V1Images } from './content/v1-images.js';
import { V1Repositories } from './content/v1-repositories.js';
import { OPEN_ACCESS, type RegistryAuth } from './auth/registry-auth.js';
import { TokenAuth } from './auth/registry-token.js';
import { accessLog, createKoa, v1ErrorRenderer } from './http/app.js';
import { createHttpServer, InFlight } from './http/server.js';
import { notFound, v2Off } from './http/fallbacks.js';
import { registryRouter } from './registry/routes.js';
import { standaloneIndexRouter } from './registry/standalone-index.js';

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
  const log = opts.logger ?? createLogger(toLevel(config.loglevel));
  const role = opts.role ?? 'all';
  const version = packageVersion();
  const driver = opts.driver ?? (await createDriver(config));
  const blobs = new BlobStore(driver);
  const purged = await blobs.purgeStaleUploads(config.upload_purge_age * 1000);
  if (purged > 0) log.info('purged abandoned uploads', { count: purged });
  // Uploads abandoned while we run (a client that vanished without closing) go the same way.
  const purgeTimer = setInterval(
    () => {
      blobs.purgeStaleUploads(config.upload_purge_age * 1000).then(
        (n) => n > 0 && log.info('purged abandoned uploads', { count: n }),
        (e: unknown) => log.error('purging abandoned uploads failed', { err: e }),
      );
    },
    Math.min(config.upload_purge_age * 1000, 3600_000),
  );
  purgeTimer.unref();
  // gunzip + tarsum of uploads run in worker threads (the second core), sha256 + payload here.
  const digestWorkers = new DigestWorkers();
  const images = new V1Images(driver, blobs, {
    maxLayerSize: config.max_layer_size,
    verifyTarsum: config.verify_tarsum,
    innerDigests: (kind, extra) => digestWorkers.create(kind, extra),
  });
  const repos = new V1Repositories(driver, images);
  // Spec §4.1: standalone or disable_token_auth ⇒ no token checks; otherwise every request's token is
  // validated against the index.
  const auth: RegistryAuth =
    config.standalone || config.disable_token_auth
      ? OPEN_ACCESS
      : new TokenAuth({ indexEndpoint: config.index_endpoint, cacheTtl: config.token_cache_ttl, log });

  const app = createKoa();
  app.use(accessLog(log));
  app.use(v1ErrorRenderer(log));
  app.use(v2Off);
  if (role !== 'index') {
    const registry = registryRouter({ config, images, repos, auth, version });
    app.use(registry.routes());
    if (config.standalone) app.use(standaloneIndexRouter(config, repos).routes());
  }
  app.use(notFound);

  const inflight = new InFlight();
  const koaHandler = app.callback();
  const server = createHttpServer(
    (req, res) => {
      inflight.track(req, res);
      void koaHandler(req, res);
    },
    log,
    { idleTimeoutSec: config.idle_timeout },
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
  const shownHost = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  const url = `http://${shownHost === '0.0.0.0' ? '127.0.0.1' : shownHost}:${addr.port}`;
  log.info('legacy-registry listening', {
    role,
    address: `${shownHost}:${addr.port}`,
    version,
    storage: config.storage,
    storage_path: config.storage_path,
    standalone: config.standalone,
    flavor: config.flavor,
    config: config.file ?? 'built-in defaults',
  });
  log.debug('configuration', redact(config));

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      clearInterval(purgeTimer);
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      const drained = await inflight.drain(config.shutdown_timeout * 1000);
      if (!drained) log.warn('shutdown timeout: closing connections with requests still in flight', { inflight: inflight.size });
      server.closeAllConnections();
      await closed;
      await digestWorkers.close();
      await driver.close?.();
    })();
    return closing;
  };
  return { server, url, port: addr.port, config, driver, close };
}
