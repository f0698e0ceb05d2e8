import { readFileSync } from 'node:fs';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type Koa from 'koa';
import type { Config } from '../config/schema.js';
import { ConfigError, listenAddress } from '../config/load.js';
import { configuredHealthChecks, debugServer, healthGate, readOnlyGate } from '../http/health.js';
import { accessLog, createKoa, v1ErrorRenderer } from '../http/app.js';
import { cors, listedOrigin } from '../http/cors.js';
import { crossSiteGuard } from '../http/cross-site.js';
import { createHttpServer, InFlight } from '../http/server.js';
import { instrumentRequest } from '../metrics/http.js';
import { exposition, startDefaultMetrics } from '../metrics/registry.js';
import type { Site } from './site.js';

type HealthChecks = ReturnType<typeof configuredHealthChecks>;

/** https options of the tls_* keys: the files are read once, at start. */
export function tlsOptions(c: Config): import('node:https').ServerOptions {
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

/**
 * The Koa application with what every route shares, in order: access log, configured headers,
 * CORS, the v1 error renderer, the cross-site guard, the health gate, the read-only gate. Services mount after.
 */
export function assembleApp(site: Site): { readonly app: Koa; readonly health: HealthChecks } {
  const { config, log } = site;
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
  // before any route reads a body or a credential: a page of another site gets nothing done
  app.use(crossSiteGuard({ publicUrls: [config.webhook_base_url], ...(config.cors ? { listed: listedOrigin(config.cors) } : {}), log }));
  if (health.size > 0) app.use(healthGate(health));
  if (config.read_only) app.use(readOnlyGate());
  return { app, health };
}

/** The listening server: requests tracked (graceful shutdown) and timed (metrics). */
export async function listen(site: Site, app: Koa): Promise<{ readonly server: Server; readonly inflight: InFlight; readonly addr: AddressInfo }> {
  const { config, log } = site;
  const inflight = new InFlight();
  const koaHandler = app.callback();
  const server = createHttpServer(
    (req, res) => {
      inflight.track(req, res);
      instrumentRequest(req, res);
      void koaHandler(req, res);
    },
    log,
    {
      idleTimeoutSec: config.idle_timeout,
      headersTimeoutSec: config.headers_timeout,
      maxConnections: config.max_connections,
      ...(config.tls_certificate && config.tls_key ? { tls: tlsOptions(config) } : {}),
    },
  );
  const { host, port } = listenAddress(config);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return { server, inflight, addr: server.address() as AddressInfo };
}

/** The debug listener (`debug_addr`): /debug/health and, with `metrics`, the Prometheus exposition. */
export async function listenDebug(site: Site, health: HealthChecks): Promise<Server | undefined> {
  const { config, log } = site;
  if (!config.debug_addr) return undefined;
  const d = listenAddress({ ...config, http_addr: config.debug_addr });
  if (config.metrics) startDefaultMetrics();
  const debug = debugServer(health, config.metrics ? { path: config.metrics_path, render: exposition } : undefined);
  await new Promise<void>((resolve, reject) => {
    debug.once('error', reject);
    debug.listen(d.port, d.host, () => resolve());
  });
  log.info('debug server listening', { listen: config.debug_addr, paths: config.metrics ? ['/debug/health', config.metrics_path] : ['/debug/health'] });
  return debug;
}
