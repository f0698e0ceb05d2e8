import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { Readable } from 'node:stream';
import { rootCertificates } from 'node:tls';
import { jsonDepthExceeds } from '../http/body.js';
import { printable } from '../util/text.js';

/** How to reach the target registry (legacy-registry migrate --to …). */
export interface TargetOptions {
  readonly url: string;
  readonly username?: string;
  readonly password?: string;
  /** PEM file of the CA(s) that signed the target's certificate (added to Node's defaults). */
  readonly caFile?: string;
  /** Do not verify the target's TLS certificate. */
  readonly insecure?: boolean;
  /** Connections kept to the target (the migration's concurrency). */
  readonly maxSockets?: number;
  /**
   * Per request, ms: the most a connection may stay silent, and the most a whole exchange may take
   * (a request with a body gets this plus 100 s per MiB of it, the slowest upload accepted: 10 KiB/s).
   */
  readonly timeoutMs?: number;
}

export interface TargetResponse {
  readonly status: number;
  readonly headers: http.IncomingHttpHeaders;
  readonly body: Buffer;
}

export interface TargetRequest {
  readonly headers?: Record<string, string>;
  /** A fresh body for each attempt (an auth challenge repeats the request). */
  readonly body?: () => Readable | Buffer;
  readonly length?: number;
  /** Bearer scopes the request needs, e.g. `repository:ns/app:pull,push`. */
  readonly scopes?: readonly string[];
}

export class TargetError extends Error {
  constructor(
    message: string,
    readonly status?: number,
    readonly code?: string,
  ) {
    super(message);
    this.name = 'TargetError';
  }
}

/** Most a response body read here may be (errors, tokens, manifests): 8 MiB. */
const MAX_RESPONSE = 8 * 1024 * 1024;
/** Deepest JSON (error documents, tokens) parsed from a target's answer. */
const MAX_JSON_DEPTH = 64;
/** Slowest request body accepted: the deadline of a request with a body grows by 100 s per MiB. */
const MIN_BYTES_PER_SECOND = 10 * 1024;

type Challenge = { kind: 'none' } | { kind: 'basic' } | { kind: 'bearer'; realm: string; service?: string };

/** `Bearer realm="…",service="…",scope="…"` → its parameters (quoted-string values). */
export function parseChallenge(h: string | undefined): { scheme: string; params: Record<string, string> } | undefined {
  if (!h) return undefined;
  const m = /^\s*(\w+)\s*(.*)$/.exec(h);
  if (!m) return undefined;
  const params: Record<string, string> = {};
  for (const p of m[2]!.matchAll(/(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))/g)) params[p[1]!.toLowerCase()] = (p[2] ?? p[3] ?? '').replace(/\\(.)/g, '$1');
  return { scheme: m[1]!.toLowerCase(), params };
}

/** The error a registry answered (`{"errors":[{"code","message"}]}`), as one line. */
export function describeError(r: TargetResponse): { code?: string; text: string } {
  try {
    if (!jsonDepthExceeds(r.body, MAX_JSON_DEPTH)) {
      const errors = (JSON.parse(r.body.toString('utf8')) as { errors?: unknown } | null)?.errors;
      const e = Array.isArray(errors) ? (errors[0] as { code?: unknown; message?: unknown } | null) : undefined;
      if (e && typeof e === 'object') {
        const code = typeof e.code === 'string' ? printable(e.code, 64) : '';
        const message = typeof e.message === 'string' ? printable(e.message) : '';
        return { ...(code ? { code } : {}), text: `${r.status} ${code}${message ? `: ${message}` : ''}`.trim() };
      }
    }
  } catch {
    // not JSON
  }
  return { text: `${r.status} ${printable(r.body.subarray(0, 4096).toString('utf8'), 200)}`.trim() };
}

/**
 * A small client of the v2 distribution API for pushing: one keep-alive agent (TLS with a custom CA
 * or none checked), and the auth the target asks for: nothing, Basic with the given account, or the
 * Bearer token dance (the realm's token for the scopes each request needs, cached per scope set).
 */
export class TargetRegistry {
  readonly base: URL;
  /** One agent per scheme: the upload Location or the token realm may use the other one. */
  private readonly agents: { http: http.Agent; https: https.Agent };
  private challenge: Challenge | undefined;
  private readonly tokens = new Map<string, { token: string; until: number }>();

  constructor(private readonly opts: TargetOptions) {
    this.base = new URL(opts.url.replace(/\/+$/, '') + '/');
    const common = { keepAlive: true, maxSockets: Math.max(1, opts.maxSockets ?? 4) };
    this.agents = {
      http: new http.Agent(common),
      https: new https.Agent({
        ...common,
        // the CA is added to Node's own roots, not put in their place
        ...(opts.caFile ? { ca: [...rootCertificates, readFileSync(opts.caFile)] } : {}),
        rejectUnauthorized: !opts.insecure,
      }),
    };
  }

  close(): void {
    this.agents.http.destroy();
    this.agents.https.destroy();
  }

  private basic(): string | undefined {
    return this.opts.username !== undefined ? `Basic ${Buffer.from(`${this.opts.username}:${this.opts.password ?? ''}`).toString('base64')}` : undefined;
  }

  /**
   * Raw HTTP exchange; the response body is read whole (bounded). Every failure (connection, a
   * malformed or oversized answer, silence, an answer too slow to finish) rejects with a TargetError
   * naming the request.
   */
  private send(method: string, url: URL, headers: Record<string, string>, body?: Readable | Buffer, length?: number): Promise<TargetResponse> {
    const where = `${method} ${printable(url.origin + url.pathname, 200)}`;
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      if (body !== undefined && !Buffer.isBuffer(body)) body.destroy();
      return Promise.reject(new TargetError(`${where}: not an http(s) URL (${printable(url.protocol, 20)})`));
    }
    const tls = url.protocol === 'https:';
    const timeout = this.opts.timeoutMs ?? 300_000;
    const deadlineMs = timeout + Math.ceil(((length ?? 0) / MIN_BYTES_PER_SECOND) * 1000);
    return new Promise((resolve, reject) => {
      let settled = false;
      // set once the request exists (below), read by failed() which may run before
      // eslint-disable-next-line prefer-const
      let deadline: NodeJS.Timeout | undefined;
      let answered = false;
      const failed = (e: Error): void => {
        if (settled) return;
        settled = true;
        clearTimeout(deadline);
        if (body !== undefined && !Buffer.isBuffer(body)) body.destroy();
        const code = (e as NodeJS.ErrnoException).code;
        reject(
          e instanceof TargetError
            ? e
            : new TargetError(`${where}: ${printable(e.message)}${code && !e.message.includes(code) ? ` (${code})` : ''}`, undefined, code),
        );
      };
      let req: http.ClientRequest;
      try {
        req = (tls ? https : http).request(
          url,
          {
            method,
            agent: tls ? this.agents.https : this.agents.http,
            headers: {
              ...headers,
              ...(length !== undefined
                ? { 'Content-Length': String(length) }
                : body === undefined && (method === 'PUT' || method === 'POST')
                  ? { 'Content-Length': '0' }
                  : {}),
            },
          },
          (res) => {
            answered = true;
            const chunks: Buffer[] = [];
            let size = 0;
            res.on('data', (c: Buffer) => {
              size += c.length;
              if (size > MAX_RESPONSE) {
                req.destroy(new TargetError(`${where}: answer larger than ${MAX_RESPONSE} bytes`));
                return;
              }
              chunks.push(c);
            });
            res.on('end', () => {
              if (settled) return;
              settled = true;
              clearTimeout(deadline);
              // answered before the body was all sent (an error, a 401, a target that stops
              // reading): the rest is not sent on, its source (a blob file) is closed, and the
              // connection, mid-body, is dropped (Node's agent would keep it, with no timeout once
              // answered, until the target closes it; the next request waits for it meanwhile)
              if (body !== undefined && !Buffer.isBuffer(body) && !req.writableFinished) {
                body.destroy();
                req.destroy();
              }
              resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) });
            });
            res.on('error', failed);
            res.on('close', () => failed(new TargetError(`${where}: the connection closed before the answer was complete`)));
          },
        );
      } catch (e) {
        // a header value Node refuses (e.g. a token with a line break)
        failed(e as Error);
        return;
      }
      // silence, and an exchange that never finishes (an answer trickled a byte at a time)
      req.setTimeout(timeout, () => req.destroy(new TargetError(`${where}: no data for ${timeout / 1000} s`)));
      deadline = setTimeout(() => req.destroy(new TargetError(`${where}: no complete answer within ${deadlineMs / 1000} s`)), deadlineMs);
      req.on('error', failed);
      req.on('close', () => {
        // closed without an answer and without an error (not seen, but never leave the caller waiting)
        if (!settled && !answered) failed(new TargetError(`${where}: the connection closed without an answer`));
      });
      if (body === undefined) req.end();
      else if (Buffer.isBuffer(body)) req.end(body);
      else {
        body.on('error', (e) => req.destroy(e));
        body.pipe(req);
      }
    });
  }

  private async bearer(scopes: readonly string[], challenged?: Record<string, string>): Promise<string> {
    const c = this.challenge as { kind: 'bearer'; realm: string; service?: string };
    const all = [...new Set([...scopes, ...(challenged?.scope ? challenged.scope.split(' ') : [])])].sort();
    const key = all.join(' ');
    const cached = this.tokens.get(key);
    if (cached && cached.until > Date.now()) return cached.token;
    let u: URL;
    try {
      u = new URL(c.realm);
    } catch {
      throw new TargetError(`the target's token realm is not a URL: ${printable(c.realm)}`);
    }
    if (u.protocol !== 'https:' && u.protocol !== 'http:') throw new TargetError(`the target's token realm is not an http(s) URL: ${printable(c.realm)}`);
    if (c.service) u.searchParams.set('service', c.service);
    for (const s of all) u.searchParams.append('scope', s);
    const basic = this.basic();
    // as docker does, the account goes to the realm the target names (a token service is often
    // another host), but never in the clear when the target itself is reached over TLS
    if (basic && u.protocol === 'http:' && this.base.protocol === 'https:')
      throw new TargetError(
        `the target ${this.base.origin} sends for tokens to ${printable(u.origin)}, plain http: the credentials are not sent there in the clear`,
      );
    const r = await this.send('GET', u, basic ? { Authorization: basic } : {});
    const from = `token service ${printable(u.origin + u.pathname, 200)}`;
    if (r.status !== 200) throw new TargetError(`${from} answered ${describeError(r).text}`, r.status);
    if (jsonDepthExceeds(r.body, MAX_JSON_DEPTH)) throw new TargetError(`${from} answered JSON nested deeper than ${MAX_JSON_DEPTH}`);
    let j: { token?: unknown; access_token?: unknown; expires_in?: unknown } | null;
    try {
      j = JSON.parse(r.body.toString('utf8')) as typeof j;
    } catch {
      throw new TargetError(`${from} answered 200 without JSON: ${printable(r.body.subarray(0, 4096).toString('utf8'), 100)}`);
    }
    const token = j && typeof j === 'object' ? (typeof j.token === 'string' ? j.token : j.access_token) : undefined;
    // a token goes into a header: visible ASCII only, and a size a server takes
    if (typeof token !== 'string' || !/^[\x21-\x7e]{1,16384}$/.test(token)) throw new TargetError(`${from} answered without a usable token`);
    const ttl = typeof j!.expires_in === 'number' && Number.isFinite(j!.expires_in) ? j!.expires_in : 60;
    // distribution's default lifetime is 60 s; renew a little early
    this.tokens.set(key, { token, until: Date.now() + Math.max(10, ttl - 10) * 1000 });
    return token;
  }

  private async authorization(scopes: readonly string[]): Promise<string | undefined> {
    if (!this.challenge || this.challenge.kind === 'none') return undefined;
    if (this.challenge.kind === 'basic') return this.basic();
    return `Bearer ${await this.bearer(scopes)}`;
  }

  /**
   * One request, answered (any status); a 401 is met once with the auth its challenge asks for.
   * Credentials and tokens go to the target's own origin only (scheme, host and port of --to): a
   * URL the target hands out elsewhere (an upload Location) is sent to without them, and its 401
   * is answered as is (docker's client too authorizes only the hosts it pinged).
   */
  async request(method: string, pathOrUrl: string, r: TargetRequest = {}): Promise<TargetResponse> {
    let url: URL;
    try {
      url = new URL(pathOrUrl, this.base);
    } catch {
      throw new TargetError(`${method} ${printable(pathOrUrl)}: not a URL`);
    }
    const own = url.origin === this.base.origin;
    const scopes = r.scopes ?? [];
    for (let attempt = 0; ; attempt++) {
      const auth = own ? await this.authorization(scopes) : undefined;
      const res = await this.send(method, url, { ...(r.headers ?? {}), ...(auth ? { Authorization: auth } : {}) }, r.body?.(), r.length);
      if (res.status !== 401 || attempt > 0 || !own) return res;
      const ch = parseChallenge(res.headers['www-authenticate'] as string | undefined);
      if (!ch) return res;
      if (ch.scheme === 'basic') {
        if (this.opts.username === undefined) return res;
        if (this.challenge?.kind === 'basic') return res; // our credentials were refused
        this.challenge = { kind: 'basic' };
      } else if (ch.scheme === 'bearer' && ch.params.realm) {
        this.challenge = { kind: 'bearer', realm: ch.params.realm, ...(ch.params.service ? { service: ch.params.service } : {}) };
        this.tokens.clear();
        await this.bearer(scopes, ch.params);
      } else return res;
    }
  }

  /** GET /v2/: reachable, and what auth it wants (learnt from its challenge). */
  async ping(): Promise<void> {
    const r = await this.request('GET', 'v2/');
    if (r.status !== 200) throw new TargetError(`${this.base.href}v2/ answered ${describeError(r).text}`, r.status);
  }
}
