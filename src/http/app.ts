import { randomBytes } from 'node:crypto';
import { BlockList, isIP } from 'node:net';
import { parseNetwork } from '../util/network.js';
import Koa, { type Context, type Next } from 'koa';
import { isRegistryError, isStorageFull, isStorageUnavailable, STRING_BODY_CODES, V1_CODES } from '../errors/index.js';
import { V2_CODES } from '../errors/v2.js';
import type { Logger } from '../log/logger.js';
import { sendJson } from './respond.js';

export interface AppState {
  requestId: string;
  /** With trusted_proxies: whether this request came from one of them (unset without the list). */
  fromTrustedProxy?: boolean;
}

/** Node's refusal of a header name or value (control characters, a missing value). */
const INVALID_HEADER_CODES = new Set(['ERR_INVALID_CHAR', 'ERR_HTTP_INVALID_HEADER_VALUE', 'ERR_INVALID_HTTP_TOKEN']);

function isInvalidHeaderError(e: unknown): boolean {
  return e instanceof TypeError && INVALID_HEADER_CODES.has(String((e as NodeJS.ErrnoException).code));
}

/** Errors of a request stream whose client closed the connection before the body was complete. */
const ABORT_CODES = new Set(['ECONNRESET', 'ERR_STREAM_PREMATURE_CLOSE', 'ECONNABORTED', 'EPIPE']);

function isClientAbort(ctx: Context, e: unknown): boolean {
  const code = String((e as NodeJS.ErrnoException | undefined)?.code ?? '');
  if (!ABORT_CODES.has(code)) return false;
  // only when the connection is really gone (not, say, an upstream the server itself called)
  return ctx.req.destroyed || ctx.res.destroyed || !ctx.req.complete;
}

/** Renders errors for the v1 surfaces: `{"error": "…"}` with the status of the code table. */
export function v1ErrorRenderer(log: Logger) {
  return async (ctx: Context, next: Next): Promise<void> => {
    try {
      await next();
    } catch (e) {
      if (isRegistryError(e)) {
        for (const [k, v] of Object.entries(e.headers)) ctx.set(k, v);
        sendJson(ctx, e.status, STRING_BODY_CODES.has(e.code) ? e.message : { error: e.message });
        if (e.status >= 500) log.error('request failed', { id: ctx.state.requestId, code: e.code });
        return;
      }
      if (isInvalidHeaderError(e) && !ctx.headerSent) {
        // A value from the request (a name, an id) on its way into a response header: the request is
        // at fault, so a 400, whatever route let it through (security issue 10, finding 11).
        log.warn('request value refused as a header value', {
          id: ctx.state.requestId,
          method: ctx.method,
          path: ctx.path,
          code: (e as NodeJS.ErrnoException).code,
        });
        sendJson(ctx, 400, { error: 'Bad request' });
        return;
      }
      const status = (e as { status?: number; expose?: boolean }).status;
      if (status && status >= 400 && status < 500) {
        sendJson(ctx, status, { error: (e as Error).message });
        return;
      }
      if (isStorageFull(e)) {
        // a disk is full: a clear answer (the push failed, nothing of it is visible), and the operator
        // is told; writes succeed again by themselves once space returns (issue 17)
        log.error('storage full: a write was refused', { id: ctx.state.requestId, method: ctx.method, path: ctx.path, err: String((e as Error).message ?? e) });
        if (ctx.headerSent || !ctx.writable) {
          ctx.req.destroy();
          return;
        }
        if (ctx.path.startsWith('/v2/')) {
          const [status, message] = V2_CODES.INSUFFICIENT_STORAGE;
          ctx.status = status;
          ctx.type = 'application/json; charset=utf-8';
          ctx.body = JSON.stringify({ errors: [{ code: 'INSUFFICIENT_STORAGE', message, detail: null }] });
        } else {
          const [status, message] = V1_CODES.INSUFFICIENT_STORAGE;
          sendJson(ctx, status, { error: message });
        }
        return;
      }
      if (isStorageUnavailable(e)) {
        // the object store cannot be reached or lost its bucket: this request cannot be served, the
        // process stays up and serves again when the store is back (issue 12)
        log.error('storage unavailable', { id: ctx.state.requestId, method: ctx.method, path: ctx.path, err: String((e as Error).message ?? e) });
        if (ctx.headerSent || !ctx.writable) {
          ctx.req.destroy();
          return;
        }
        if (ctx.path.startsWith('/v2/')) {
          const [status, message] = V2_CODES.UNAVAILABLE;
          ctx.status = status;
          ctx.type = 'application/json; charset=utf-8';
          ctx.body = JSON.stringify({ errors: [{ code: 'UNAVAILABLE', message, detail: null }] });
        } else {
          const [status, message] = V1_CODES.UNAVAILABLE;
          sendJson(ctx, status, { error: message });
        }
        return;
      }
      if (isClientAbort(ctx, e)) {
        // the client went away mid-request (a cancelled push): nobody to answer, nothing broken here
        log.info('client aborted the request', { id: ctx.state.requestId, method: ctx.method, path: ctx.path, code: (e as NodeJS.ErrnoException).code });
        if (!ctx.res.destroyed) ctx.res.destroy();
        return;
      }
      // Unknown failure: 500 with the request id, the message stays in the log (with the stack).
      log.error('unhandled error', { id: ctx.state.requestId, method: ctx.method, path: ctx.path, err: e });
      if (ctx.headerSent || !ctx.writable) {
        ctx.req.destroy();
        return;
      }
      sendJson(ctx, 500, { error: `Internal server error (request ${String(ctx.state.requestId)})` });
    }
  };
}

/**
 * The client's address for per-client decisions (login throttling): the socket's remote address.
 * X-Forwarded-For is read only when it comes from a configured trusted proxy (trusted_proxies,
 * forwardedGate): anyone else could write any address there. IPv4-mapped IPv6 (`::ffff:1.2.3.4`) is given as IPv4.
 */
export function clientAddress(ctx: Context): string {
  // with trusted_proxies, koa's ctx.ip is the address the trusted proxy saw (forwardedGate)
  const a = (ctx.app.proxy ? ctx.ip : ctx.req.socket.remoteAddress) ?? '';
  return /^::ffff:\d+\.\d+\.\d+\.\d+$/i.test(a) ? a.slice(7) : a;
}

/**
 * The request target as the access log writes it: a webhook callback's path names its credential
 * (Hub's callback_url, `/u/<ns>/<repo>/hook/<64 hex>/`: whoever has it may post the delivery's state,
 * which releases or stops a chain), so that part is left out (tokens-review).
 */
export function loggedTarget(url: string): string {
  return url.replace(/(\/hook\/)[0-9a-fA-F]{64}(?=\/|\?|$)/g, '$1<redacted>');
}

/** Request ids: this process's random prefix and a counter (unique, and cheap to make). */
const ID_PREFIX = randomBytes(4).toString('hex');
let idCounter = 0;

/** Request id, X-Docker-Registry-Version (spec Q6) and one access-log line per request. */
export function accessLog(log: Logger, enabled = true) {
  return async (ctx: Context, next: Next): Promise<void> => {
    const id = ctx.get('X-Request-Id') || `${ID_PREFIX}${(++idCounter).toString(16).padStart(8, '0')}`;
    ctx.state.requestId = id;
    ctx.set('X-Request-Id', id);
    ctx.set('X-Docker-Registry-Version', '0.9.1');
    // no answer is to be sniffed into something else (security issue 10, finding 18)
    ctx.set('X-Content-Type-Options', 'nosniff');
    // no request lines at this log level: nothing to time or to watch for
    if (!enabled || log.enabled?.('info') === false) {
      await next();
      return;
    }
    const started = process.hrtime.bigint();
    let finished = false;
    const done = (aborted: boolean): void => {
      if (finished) return;
      finished = true;
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      const fields = {
        id,
        method: ctx.method,
        path: loggedTarget(ctx.originalUrl),
        status: aborted ? 'aborted' : ctx.status,
        ms: Math.round(ms * 10) / 10,
        ua: ctx.get('User-Agent') || undefined,
      };
      // a client going away (a cancelled pull or push) is ordinary: info, as the request line is
      if (aborted) log.info('request aborted by the client', fields);
      else log.info('request', fields);
    };
    ctx.res.once('finish', () => done(false));
    ctx.res.once('close', () => done(!ctx.res.writableFinished));
    await next();
  };
}

/** The trusted_proxies list as a matcher (node's BlockList: addresses and CIDR ranges, v4 and v6). */
export function proxyList(specs: readonly string[]): BlockList {
  const list = new BlockList();
  for (const spec of specs) {
    // checked when the configuration was read (isProxySpec)
    const net = parseNetwork(spec);
    if (net) list.addSubnet(net.address, net.prefix, net.family);
  }
  return list;
}

const FORWARDED = ['x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host'] as const;

/**
 * First middleware when trusted_proxies is set: requests from any other peer lose their
 * X-Forwarded-* headers, so koa (app.proxy) reads them only from the proxies. The proxy appends
 * the client's address to X-Forwarded-For; only that last entry is believed (app.maxIpsCount = 1).
 */
export function forwardedGate(trusted: BlockList) {
  return async (ctx: Context, next: Next): Promise<void> => {
    const peer = ctx.req.socket.remoteAddress ?? '';
    const v4 = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(peer)?.[1];
    const ok = peer !== '' && (v4 ? trusted.check(v4, 'ipv4') : trusted.check(peer, isIP(peer) === 6 ? 'ipv6' : 'ipv4'));
    if (!ok) for (const h of FORWARDED) delete ctx.req.headers[h];
    (ctx.state as AppState).fromTrustedProxy = ok;
    await next();
  };
}

export function createKoa(trustedProxies: readonly string[] = []): Koa<AppState> {
  const app = new Koa<AppState>();
  app.proxy = trustedProxies.length > 0;
  app.maxIpsCount = 1;
  if (app.proxy) app.use(forwardedGate(proxyList(trustedProxies)));
  app.silent = true; // errors are logged once, by the renderer
  return app;
}
