import { stat } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { connect } from 'node:net';
import type { Context, Next } from 'koa';
import type { Config } from '../config/schema.js';
import type { Logger } from '../log/logger.js';

type Check = () => Promise<void>;

interface Registered {
  readonly name: string;
  readonly check: Check;
  readonly threshold: number;
  failures: number;
  /** The error shown while the check counts as failed. */
  error: string | null;
  timer?: NodeJS.Timeout;
  running: boolean;
}

/**
 * Periodic health checks as distribution runs them (spec v2-bridge §5.1 `health`): each check runs
 * every `interval` seconds, first after one interval; a check with a threshold fails only after that
 * many failures in a row, one without fails at the first; one success clears it. While any check
 * fails, every request is answered 503 (healthGate), and /debug/health lists the failures.
 */
export class HealthChecks {
  private readonly checks: Registered[] = [];

  constructor(private readonly log: Logger) {}

  register(name: string, intervalSec: number, threshold: number, check: Check): void {
    const r: Registered = { name, check, threshold: Math.max(1, threshold), failures: 0, error: null, running: false };
    r.timer = setInterval(() => void this.run(r), Math.max(1, intervalSec * 1000));
    r.timer.unref();
    this.checks.push(r);
  }

  private async run(r: Registered): Promise<void> {
    if (r.running) return;
    r.running = true;
    try {
      await r.check();
      if (r.error !== null) this.log.info('health check passes again', { check: r.name });
      r.failures = 0;
      r.error = null;
    } catch (e) {
      r.failures++;
      if (r.failures >= r.threshold) {
        const msg = (e as Error).message || String(e);
        if (r.error === null) this.log.error('health check failed: answering 503', { check: r.name, err: msg });
        r.error = msg;
      }
    } finally {
      r.running = false;
    }
  }

  /** The failing checks: name → error. Empty when healthy. */
  status(): Record<string, string> {
    const out: Record<string, string> = {};
    for (const r of this.checks) if (r.error !== null) out[r.name] = r.error;
    return out;
  }

  get size(): number {
    return this.checks.length;
  }

  stop(): void {
    for (const r of this.checks) clearInterval(r.timer);
  }
}

/** The checks of config.health, registered on a new HealthChecks. */
export function configuredHealthChecks(config: Config, log: Logger): HealthChecks {
  const h = new HealthChecks(log);
  const c = config.health;
  if (!c) return h;
  if (c.storagedriver?.enabled) {
    const name = `storagedriver_${config.storage === 'memory' ? 'inmemory' : 'filesystem'}`;
    h.register(name, c.storagedriver.interval, c.storagedriver.threshold, async () => {
      // object stores are checked by their driver at start; their requests answer 503 while the store is away
      if (config.storage === 'memory' || config.storage === 's3' || config.storage === 'swift') return;
      // as distribution: a root that does not exist yet is fine (nothing stored); anything else
      // that keeps the driver from reading it is not
      try {
        const s = await stat(config.storage_path);
        if (!s.isDirectory()) throw new Error(`storage root ${config.storage_path} is not a directory`);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
        throw e;
      }
    });
  }
  for (const f of c.file) {
    h.register(f.file, f.interval, f.threshold, async () => {
      try {
        await stat(f.file);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
        throw e;
      }
      throw new Error('file exists');
    });
  }
  for (const t of c.http) {
    h.register(t.uri, t.interval, t.threshold, async () => {
      const headers = new Headers();
      for (const [k, values] of Object.entries(t.headers ?? {})) for (const v of values) headers.append(k, v);
      const r = await fetch(t.uri, { headers, signal: AbortSignal.timeout(t.timeout * 1000), redirect: 'manual' });
      await r.body?.cancel();
      if (r.status !== t.statuscode) throw new Error(`downstream service returned unexpected status: ${r.status}`);
    });
  }
  for (const t of c.tcp) {
    h.register(t.addr, t.interval, t.threshold, () => tcpCheck(t.addr, t.timeout));
  }
  return h;
}

function tcpCheck(addr: string, timeoutSec: number): Promise<void> {
  const i = addr.lastIndexOf(':');
  const host = addr.slice(0, i).replace(/^\[|\]$/g, '') || '127.0.0.1';
  const port = Number(addr.slice(i + 1));
  return new Promise((resolve, reject) => {
    const s = connect({ host, port, timeout: timeoutSec * 1000 });
    s.once('connect', () => {
      s.destroy();
      resolve();
    });
    s.once('timeout', () => {
      s.destroy();
      reject(new Error(`connection to ${addr} timed out`));
    });
    s.once('error', (e) => reject(new Error(`connection to ${addr} failed: ${e.message}`)));
  });
}

const V2_UNAVAILABLE = JSON.stringify({
  errors: [{ code: 'UNAVAILABLE', message: 'service unavailable', detail: 'health check failed: please see /debug/health' }],
});

/** While a check fails, every request gets 503: the v2 error body on /v2/, the v1 one elsewhere. */
export function healthGate(h: HealthChecks) {
  return async (ctx: Context, next: Next): Promise<void> => {
    if (h.size > 0 && Object.keys(h.status()).length > 0) {
      ctx.status = 503;
      ctx.type = 'application/json';
      ctx.body = ctx.path === '/v2' || ctx.path.startsWith('/v2/') ? V2_UNAVAILABLE : JSON.stringify({ error: 'service unavailable: health check failed' });
      return;
    }
    await next();
  };
}

/**
 * distribution's debug listener (http.debug.addr): GET /debug/health answers 200 `{}` when healthy,
 * 503 with the failing checks otherwise; with `metrics`, the Prometheus text at its path.
 */
export function debugServer(
  h: HealthChecks,
  metrics?: { readonly path: string; readonly render: () => Promise<{ contentType: string; body: string }> },
): Server {
  return createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (metrics && path === metrics.path) {
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.writeHead(405, { 'Content-Type': 'text/plain', 'X-Content-Type-Options': 'nosniff', Allow: 'GET, HEAD' }).end();
        return;
      }
      metrics.render().then(
        ({ contentType, body }) => {
          res.writeHead(200, { 'Content-Type': contentType, 'Content-Length': Buffer.byteLength(body), 'X-Content-Type-Options': 'nosniff' });
          res.end(req.method === 'HEAD' ? undefined : body);
        },
        (e: unknown) => {
          res.writeHead(500, { 'Content-Type': 'text/plain', 'X-Content-Type-Options': 'nosniff' }).end(`metrics failed: ${(e as Error).message}\n`);
        },
      );
      return;
    }
    if (path !== '/debug/health') {
      res.writeHead(404, { 'Content-Type': 'text/plain', 'X-Content-Type-Options': 'nosniff' }).end('404 page not found\n');
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { 'Content-Type': 'text/plain', 'X-Content-Type-Options': 'nosniff', Allow: 'GET, HEAD' }).end();
      return;
    }
    const failing = h.status();
    const body = JSON.stringify(failing);
    res.writeHead(Object.keys(failing).length > 0 ? 503 : 200, {
      'Content-Type': 'application/json; charset=utf-8',
      'Content-Length': Buffer.byteLength(body),
      'X-Content-Type-Options': 'nosniff',
    });
    res.end(req.method === 'HEAD' ? undefined : body);
  });
}

const WRITES = new Set(['PUT', 'POST', 'PATCH', 'DELETE']);

/**
 * read_only (distribution's storage.maintenance.readonly): writes to the registry's storage answer
 * 405 and change nothing: every v2 write (but the token service) and the v1 image, tag and
 * repository writes. Account operations at the index go on.
 */
export function readOnlyGate() {
  return async (ctx: Context, next: Next): Promise<void> => {
    if (WRITES.has(ctx.method)) {
      const p = ctx.path;
      if (p.startsWith('/v2/') && p !== '/v2/token') {
        ctx.status = 405;
        ctx.type = 'application/json';
        ctx.body = JSON.stringify({ errors: [{ code: 'UNSUPPORTED', message: 'The operation is unsupported.', detail: 'the registry is in read-only mode' }] });
        return;
      }
      if (p.startsWith('/v1/images/') || p.startsWith('/v1/repositories/')) {
        ctx.status = 405;
        ctx.type = 'application/json';
        ctx.body = JSON.stringify({ error: 'The registry is in read-only mode' });
        return;
      }
    }
    await next();
  };
}
