import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { Readable } from 'node:stream';
import { rootCertificates } from 'node:tls';

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
  /** Per request, ms (a blob upload gets this much per request, not per byte). */
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
    const e = (JSON.parse(r.body.toString('utf8')) as { errors?: { code?: string; message?: string; detail?: unknown }[] }).errors?.[0];
    if (e) return { ...(e.code ? { code: e.code } : {}), text: `${r.status} ${e.code ?? ''}${e.message ? `: ${e.message}` : ''}`.trim() };
  } catch {
    // not JSON
  }
  return { text: `${r.status} ${r.body.toString('utf8').slice(0, 200).trim()}`.trim() };
}

/**
 * A small client of the v2 distribution API for pushing: one keep-alive agent (TLS with a custom CA
 * or none checked), and the auth the target asks for: nothing, Basic with the given account, or the
 * Bearer token dance (the realm's token for the scopes each request needs, cached per scope set).
 */
export class TargetRegistry {
  readonly base: URL;
  private readonly agent: http.Agent;
  private challenge: Challenge | undefined;
  private readonly tokens = new Map<string, { token: string; until: number }>();

  constructor(private readonly opts: TargetOptions) {
    this.base = new URL(opts.url.replace(/\/+$/, '') + '/');
    const common = { keepAlive: true, maxSockets: Math.max(1, opts.maxSockets ?? 4) };
    this.agent =
      this.base.protocol === 'https:'
        ? new https.Agent({
            ...common,
            // the CA is added to Node's own roots, not put in their place
            ...(opts.caFile ? { ca: [...rootCertificates, readFileSync(opts.caFile)] } : {}),
            rejectUnauthorized: !opts.insecure,
          })
        : new http.Agent(common);
  }

  close(): void {
    this.agent.destroy();
  }

  private basic(): string | undefined {
    return this.opts.username !== undefined ? `Basic ${Buffer.from(`${this.opts.username}:${this.opts.password ?? ''}`).toString('base64')}` : undefined;
  }

  /** Raw HTTP exchange; the response body is read whole (bounded). */
  private send(method: string, url: URL, headers: Record<string, string>, body?: Readable | Buffer, length?: number): Promise<TargetResponse> {
    const mod = url.protocol === 'https:' ? https : http;
    return new Promise((resolve, reject) => {
      const req = mod.request(
        url,
        {
          method,
          agent: this.agent,
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
          const chunks: Buffer[] = [];
          let size = 0;
          res.on('data', (c: Buffer) => {
            size += c.length;
            if (size > MAX_RESPONSE) {
              req.destroy(new TargetError(`${method} ${url.pathname}: response larger than ${MAX_RESPONSE} bytes`));
              return;
            }
            chunks.push(c);
          });
          res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
          res.on('error', reject);
        },
      );
      req.setTimeout(this.opts.timeoutMs ?? 300_000, () => req.destroy(new TargetError(`${method} ${url.pathname}: timed out`)));
      req.on('error', reject);
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
    const u = new URL(c.realm);
    if (c.service) u.searchParams.set('service', c.service);
    for (const s of all) u.searchParams.append('scope', s);
    const basic = this.basic();
    const r = await this.send('GET', u, basic ? { Authorization: basic } : {});
    if (r.status !== 200) throw new TargetError(`token service ${u.origin}${u.pathname} answered ${describeError(r).text}`, r.status);
    const j = JSON.parse(r.body.toString('utf8')) as { token?: string; access_token?: string; expires_in?: number };
    const token = j.token ?? j.access_token;
    if (!token) throw new TargetError('token service answered without a token');
    // distribution's default lifetime is 60 s; renew a little early
    this.tokens.set(key, { token, until: Date.now() + Math.max(10, (j.expires_in ?? 60) - 10) * 1000 });
    return token;
  }

  private async authorization(scopes: readonly string[]): Promise<string | undefined> {
    if (!this.challenge || this.challenge.kind === 'none') return undefined;
    if (this.challenge.kind === 'basic') return this.basic();
    return `Bearer ${await this.bearer(scopes)}`;
  }

  /** One request, answered (any status); a 401 is met once with the auth its challenge asks for. */
  async request(method: string, pathOrUrl: string, r: TargetRequest = {}): Promise<TargetResponse> {
    const url = new URL(pathOrUrl, this.base);
    const scopes = r.scopes ?? [];
    for (let attempt = 0; ; attempt++) {
      const auth = await this.authorization(scopes);
      const res = await this.send(method, url, { ...(r.headers ?? {}), ...(auth ? { Authorization: auth } : {}) }, r.body?.(), r.length);
      if (res.status !== 401 || attempt > 0) return res;
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
