import { lookup } from 'node:dns/promises';
import http, { type IncomingMessage } from 'node:http';
import https from 'node:https';
import { isIP, type LookupFunction } from 'node:net';
import { finished, type Readable } from 'node:stream';
import type { Logger } from '../log/logger.js';
import { ChunkedAnswerError, plainGet } from '../storage/drivers/s3-get.js';
import { guardedLookup } from '../util/guarded-lookup.js';
import { addressClass } from '../util/network.js';

/**
 * The client of one upstream registry (issue 13): GET/HEAD on its /v2/ API with the configured
 * credentials — none, Basic, or the Bearer token dance (401 challenge → realm → a token with the
 * repository's pull scope, kept until it expires) — a timeout on the answer, redirects followed
 * (blobs are often redirected to object storage, without our credentials), and a circuit breaker
 * that stops asking an upstream that keeps failing.
 */

/** The upstream could not be asked, or failed (network, timeout, 5xx, breaker open). */
export class UpstreamUnavailable extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UpstreamUnavailable';
  }
}

export interface UpstreamOptions {
  readonly url: string;
  readonly username?: string | null;
  readonly password?: string | null;
  /** Milliseconds to wait for the answer's headers. */
  readonly timeoutMs: number;
  /** Consecutive failures that open the breaker (0: never). */
  readonly breakerFailures: number;
  readonly breakerMs: number;
}

/** Token answers kept per scope; bounded (every repository pulled has its own scope). */
const MAX_TOKENS = 1000;
/** Largest token answer read (security issue 10: every client-controlled read is capped; an upstream is no safer). */
const MAX_TOKEN_BODY = 64 * 1024;
const MAX_REDIRECTS = 5;
/** A Bearer token as it may go into a header: visible ASCII, no spaces (RFC 6750's b64token, leniently). */
const TOKEN = /^[\x21-\x7e]{1,8192}$/;
/**
 * Pieces a blob body is delivered in by the bare GET (getBlob): few large chunks for the hash, the
 * cache's file writes and the clients' sockets.
 */
const BLOB_PIECE = 1024 * 1024;
const REDIRECT = [301, 302, 303, 307, 308];

/** A blob GET's answer: status, announced length, and the body (to read or destroy). */
export interface BlobAnswer {
  readonly status: number;
  readonly length: number | undefined;
  readonly body: Readable;
}

/** The classes of the addresses a URL's host resolves to (an address literal is its own). */
async function classesOf(url: URL): Promise<Set<string>> {
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  const addresses = isIP(host) ? [host] : (await lookup(host, { all: true })).map((a) => a.address);
  return new Set(addresses.map((a) => addressClass(a) ?? 'public'));
}

/**
 * Where a URL the upstream handed out (a redirect's target, a token realm) may take the mirror:
 * the addresses it may connect to, and the error for one it may not (the host, and the address
 * refused when there is one). Every connection for such a URL is made with `lookup` (the guarded
 * lookup: the address checked is the address connected to).
 */
interface Reach {
  readonly permits: (address: string) => boolean;
  readonly refusal: (host: string, address?: string) => Error;
  readonly lookup: LookupFunction;
}

/** Bytes of an answer's unused body read so that its connection can be reused; past them it is dropped. */
const DISCARD_CAP = 64 * 1024;

/**
 * Throw away the body of an answer not used (an error, a redirect, a refusal): read to its end so
 * the keep-alive connection is reused, but at most DISCARD_CAP bytes and for `timeoutMs`, then the
 * connection is dropped. resume() alone read an endless (or trickled) body for as long as the
 * upstream sent it, holding one of the pool's sockets and the bandwidth with nobody waiting for it.
 */
export function discard(body: Readable, timeoutMs: number): void {
  let n = 0;
  const timer = setTimeout(() => body.destroy(), timeoutMs);
  const done = (): void => clearTimeout(timer);
  body.once('end', done);
  body.once('close', done);
  body.on('error', () => undefined);
  body.on('data', (c: Buffer) => {
    n += c.length;
    if (n > DISCARD_CAP) body.destroy();
  });
  body.resume();
}

function lengthOf(v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  return Number.isSafeInteger(n) && n >= 0 ? n : undefined;
}

interface Challenge {
  readonly scheme: 'basic' | 'bearer';
  readonly realm?: string;
  readonly service?: string;
}

/** Parse a WWW-Authenticate header: scheme and its quoted parameters. */
export function parseChallenge(h: string | undefined): Challenge | undefined {
  if (!h) return undefined;
  const m = /^\s*(\w+)\s*(.*)$/s.exec(h);
  if (!m) return undefined;
  const scheme = m[1]!.toLowerCase();
  if (scheme !== 'basic' && scheme !== 'bearer') return undefined;
  const params: Record<string, string> = {};
  for (const p of m[2]!.matchAll(/(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))/g)) params[p[1]!.toLowerCase()] = p[2] ?? p[3] ?? '';
  return { scheme, ...(params.realm ? { realm: params.realm } : {}), ...(params.service ? { service: params.service } : {}) };
}

/**
 * Blob bodies read at once over plainGet, which opens sockets of its own outside the agents' pools:
 * as many as an agent allows (maxSockets). Past that, a download waits for one to end, at most the
 * upstream timeout, then fails as an unavailable upstream (503); without the bound, clients asking
 * for many uncached blobs at once opened as many upstream connections as they liked.
 */
export const BLOB_SOCKETS = 32;

export class Upstream {
  readonly base: URL;
  /** plainGet downloads in flight, and the callers waiting for one of them to end. */
  private blobSockets = 0;
  private readonly blobQueue: (() => void)[] = [];
  private readonly agentHttp = new http.Agent({ keepAlive: true, maxSockets: 32 });
  private readonly agentHttps = new https.Agent({ keepAlive: true, maxSockets: 32 });
  /**
   * The pools of connections to URLs the upstream handed out (its blob storage, its token service),
   * apart from the upstream's own: every socket in them was opened through the guarded lookup (or
   * to an address literal checked before), and none made to the upstream without the guard is ever
   * handed to such a request (an agent's pool is keyed by host and port, not by the lookup used).
   */
  private readonly handedHttp = new http.Agent({ keepAlive: true, maxSockets: 32 });
  private readonly handedHttps = new https.Agent({ keepAlive: true, maxSockets: 32 });
  /** How the upstream asked us to authenticate, learnt from its first 401 (saves a round trip after). */
  private challenge: Challenge | undefined;
  private readonly tokens = new Map<string, { token: string; expires: number }>();
  private failures = 0;
  private openUntil = 0;
  /** Requests sent upstream (a figure for tests and the log). */
  requests = 0;

  constructor(
    private readonly opts: UpstreamOptions,
    private readonly log?: Logger,
  ) {
    this.base = new URL(opts.url);
    if (this.base.protocol !== 'http:' && this.base.protocol !== 'https:') throw new Error(`upstream ${opts.url}: http or https only`);
  }

  /** Whether the breaker currently keeps us from asking. */
  get open(): boolean {
    return this.openUntil > Date.now();
  }

  close(): void {
    this.agentHttp.destroy();
    this.agentHttps.destroy();
    this.handedHttp.destroy();
    this.handedHttps.destroy();
  }

  /**
   * One of the BLOB_SOCKETS slots for a plainGet download; the function gives it back (once), to
   * the next waiter if there is one. A caller that waits longer than the upstream timeout gets
   * UpstreamUnavailable (not counted against the upstream: the wait is ours).
   */
  private blobSocket(): Promise<() => void> {
    let given = false;
    const release = (): void => {
      if (given) return;
      given = true;
      const next = this.blobQueue.shift();
      if (next) next();
      else this.blobSockets--;
    };
    if (this.blobSockets < BLOB_SOCKETS) {
      this.blobSockets++;
      return Promise.resolve(release);
    }
    return new Promise((resolve, reject) => {
      const go = (): void => {
        clearTimeout(timer);
        resolve(release);
      };
      const timer = setTimeout(() => {
        const i = this.blobQueue.indexOf(go);
        if (i >= 0) this.blobQueue.splice(i, 1);
        reject(new UpstreamUnavailable(`upstream ${this.base.origin}: ${BLOB_SOCKETS} blob downloads in flight, none ended within ${this.opts.timeoutMs} ms`));
      }, this.opts.timeoutMs);
      this.blobQueue.push(go);
    });
  }

  /**
   * Throws unless a URL the upstream named (a redirect's target, a token realm) may be asked.
   * Another host is reached only over http(s) and only at public addresses, or at addresses of a
   * class the upstream itself is in (an upstream on a private network may keep its blobs or its
   * token service on that network; loopback only for an upstream on loopback): the answers are not
   * trusted, and without this an upstream on the internet sent the mirror to this machine's own
   * ports, its network or the cloud's metadata service (169.254.169.254), and the bytes read there
   * went to the client (all but the last piece, before the digest check).
   *
   * A name is judged here by what it resolves to now, and again when connecting: the connection
   * resolves it through the guarded lookup of the Reach returned, which refuses any address the
   * rule refuses, so the address checked is the one connected to. Checked here only, the connection
   * resolved the name a second time, and a name answering a public address first and 127.0.0.1 (or
   * 10.x, 169.254.169.254) next got the mirror there (DNS rebinding). undefined: the upstream itself.
   */
  private async mayReach(next: URL, what: 'redirect' | 'token realm'): Promise<Reach | undefined> {
    if (next.protocol !== 'http:' && next.protocol !== 'https:') throw new Error(`${what} to a ${next.protocol} URL refused`);
    if (next.origin === this.base.origin) return undefined;
    // (an upstream whose own name does not resolve now is on no network of its own for this check)
    const [target, own] = await Promise.all([classesOf(next), classesOf(this.base).catch(() => new Set<string>())]);
    const refused = [...target].find((c) => c !== 'public' && !own.has(c));
    if (refused !== undefined) throw new Error(`${what} at ${next.host} refused: a ${refused} address, and the upstream is not on one`);
    const permits = (address: string): boolean => {
      const c = addressClass(address);
      return c === 'public' || (c !== undefined && own.has(c));
    };
    const refusal = (host: string, address?: string): Error =>
      new Error(
        `${what} at ${host} refused: ${address === undefined ? 'an address' : `${address}, a ${addressClass(address) ?? 'non-IP'} address`} the upstream is not on`,
      );
    return { permits, refusal, lookup: guardedLookup(permits, (host, address) => refusal(host, address)) };
  }

  private failed(why: string): UpstreamUnavailable {
    this.failures++;
    if (this.opts.breakerFailures > 0 && this.failures >= this.opts.breakerFailures) {
      if (!this.open)
        this.log?.warn('mirror: upstream circuit open', { upstream: this.base.origin, failures: this.failures, seconds: this.opts.breakerMs / 1000 });
      this.openUntil = Date.now() + this.opts.breakerMs;
    }
    return new UpstreamUnavailable(`upstream ${this.base.origin}: ${why}`);
  }

  /**
   * method on `url`: the upstream itself over its agents; any other URL (one the upstream handed
   * out) only with the Reach mayReach gave for it, over the other agents and through its guarded
   * lookup. A pooled socket is reused only when the address it is connected to is permitted now.
   */
  private send(method: string, url: URL, headers: Record<string, string>, reach?: Reach): Promise<IncomingMessage> {
    const tls = url.protocol === 'https:';
    const mod = tls ? https : http;
    const upstream = url.origin === this.base.origin;
    if (!upstream && !reach) return Promise.reject(new Error(`${url.origin} is not the upstream, and was not checked`));
    const agent = upstream ? (tls ? this.agentHttps : this.agentHttp) : tls ? this.handedHttps : this.handedHttp;
    this.requests++;
    return new Promise((resolve, reject) => {
      const options = { method, headers: { 'User-Agent': 'legacy-registry-mirror', ...headers }, agent, ...(upstream ? {} : { lookup: reach!.lookup }) };
      const req = mod.request(url, options, (res) => {
        clearTimeout(timer);
        // a body that stalls is caught by its reader (the blob fill's stall timer)
        resolve(res);
      });
      if (!upstream)
        req.once('socket', (s) => {
          // a socket from the pool is connected already (no lookup): its address is checked here,
          // before the request is written to it; a new one has no address yet (its lookup checks)
          const a = s.remoteAddress;
          if (a !== undefined && !reach!.permits(a)) req.destroy(reach!.refusal(url.host, a));
        });
      const timer = setTimeout(() => req.destroy(new Error(`no answer within ${this.opts.timeoutMs} ms`)), this.opts.timeoutMs);
      req.once('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
      req.end();
    });
  }

  /**
   * Read a small body (token answers, error bodies, manifests), capped in size and in time: the
   * whole body within `timeoutMs` of its headers (the request's timer covers only the headers; an
   * upstream that stalls or trickles a body would otherwise hold the request, and every client
   * sharing it, forever).
   */
  static async readCapped(res: IncomingMessage, cap: number, timeoutMs: number): Promise<Buffer> {
    const chunks: Buffer[] = [];
    let n = 0;
    let late = false;
    const timer = setTimeout(() => {
      late = true;
      res.destroy(new Error(`upstream answer body not read within ${timeoutMs} ms`));
    }, timeoutMs);
    try {
      for await (const c of res as AsyncIterable<Buffer>) {
        n += c.length;
        if (n > cap) {
          res.destroy();
          throw new Error(`upstream answer larger than ${cap} bytes`);
        }
        chunks.push(c);
      }
    } catch (e) {
      if (late) throw new Error(`upstream answer body not read within ${timeoutMs} ms`, { cause: e });
      throw e;
    } finally {
      clearTimeout(timer);
    }
    return Buffer.concat(chunks);
  }

  /** discard() within this upstream's timeout. */
  discard(body: Readable): void {
    discard(body, this.opts.timeoutMs);
  }

  /** readCapped within this upstream's timeout. */
  readBody(res: IncomingMessage, cap: number): Promise<Buffer> {
    return Upstream.readCapped(res, cap, this.opts.timeoutMs);
  }

  private basic(): string | undefined {
    return this.opts.username ? `Basic ${Buffer.from(`${this.opts.username}:${this.opts.password ?? ''}`).toString('base64')}` : undefined;
  }

  private async token(c: Challenge, repo: string): Promise<string> {
    const scope = `repository:${repo}:pull`;
    const now = Date.now();
    const kept = this.tokens.get(scope);
    if (kept && kept.expires > now) return kept.token;
    if (!c.realm) throw new UpstreamUnavailable(`upstream ${this.base.origin}: Bearer challenge without a realm`);
    const u = new URL(c.realm);
    const reach = await this.mayReach(u, 'token realm');
    if (c.service) u.searchParams.set('service', c.service);
    u.searchParams.set('scope', scope);
    // the password goes to the realm as docker sends it, but never in clear text when the upstream
    // itself is https: the token is asked for anonymously then (a public image needs no password)
    const basic = u.protocol === 'http:' && this.base.protocol === 'https:' ? undefined : this.basic();
    const res = await this.send('GET', u, basic ? { Authorization: basic } : {}, reach);
    const body = await this.readBody(res, MAX_TOKEN_BODY);
    if (res.statusCode !== 200) throw new UpstreamRefused(res.statusCode ?? 0, `the upstream's token service answered ${res.statusCode}`);
    const doc = JSON.parse(body.toString('utf8')) as { token?: unknown; access_token?: unknown; expires_in?: unknown };
    const token = doc.token || doc.access_token;
    // only a token that can go into a header as it is: one with control characters (or an object)
    // made every request of the scope fail until it expired, which its answer says is never
    if (typeof token !== 'string' || !TOKEN.test(token)) throw new UpstreamUnavailable(`upstream ${this.base.origin}: token answer without a usable token`);
    // spec v2-bridge §4.2: expires_in defaults to 60; renew 10 s early
    const ttl = Math.max(1, (typeof doc.expires_in === 'number' ? doc.expires_in : 60) - 10) * 1000;
    if (this.tokens.size >= MAX_TOKENS) this.tokens.delete(this.tokens.keys().next().value!);
    this.tokens.set(scope, { token, expires: now + ttl });
    return token;
  }

  private async authHeader(repo: string): Promise<Record<string, string>> {
    const c = this.challenge;
    if (!c) return {};
    if (c.scheme === 'basic') {
      const b = this.basic();
      return b ? { Authorization: b } : {};
    }
    return { Authorization: `Bearer ${await this.token(c, repo)}` };
  }

  /**
   * method on `path` (under the upstream's root) for repository `repo` (the scope of a token).
   * Resolves with any answer below 500 (the caller reads 200/404/…); 5xx, network errors, timeouts
   * and an open breaker reject with UpstreamUnavailable. 401/403 after authenticating resolve (the
   * caller says the upstream refused).
   */
  async request(method: 'GET' | 'HEAD', path: string, repo: string, headers: Record<string, string> = {}): Promise<IncomingMessage> {
    if (this.open) throw new UpstreamUnavailable(`upstream ${this.base.origin}: circuit open after ${this.failures} failures`);
    try {
      let url = new URL(path, this.base);
      let auth: Record<string, string>;
      try {
        auth = await this.authHeader(repo);
      } catch (e) {
        if (this.challenge?.scheme !== 'bearer') throw e;
        // the token service remembered from an earlier challenge fails (moved, or refusing): ask
        // the upstream again, whose 401 names the one to use now (a failing one is not kept forever)
        this.challenge = undefined;
        auth = {};
      }
      let res = await this.send(method, url, { ...headers, ...auth });
      if (res.statusCode === 401) {
        const c = parseChallenge(res.headers['www-authenticate']);
        this.discard(res);
        // a new challenge (first request, or a token refused): learn it and retry once
        if (c && (c.scheme === 'bearer' || this.basic())) {
          this.challenge = c;
          if (c.scheme === 'bearer') this.tokens.delete(`repository:${repo}:pull`);
          res = await this.send(method, url, { ...headers, ...(await this.authHeader(repo)) });
        }
      }
      for (let i = 0; i < MAX_REDIRECTS && res.statusCode !== undefined && [301, 302, 303, 307, 308].includes(res.statusCode) && res.headers.location; i++) {
        const next = new URL(res.headers.location, url);
        this.discard(res);
        const reach = await this.mayReach(next, 'redirect');
        // credentials go only to the upstream itself, never to the storage it redirects to
        const same = next.origin === this.base.origin;
        url = next;
        res = await this.send(method, url, same ? { ...headers, ...(await this.authHeader(repo)) } : headers, reach);
      }
      const status = res.statusCode ?? 0;
      if (status >= 500 || status === 429) {
        this.discard(res);
        throw this.failed(`answered ${status}`);
      }
      this.failures = 0;
      return res;
    } catch (e) {
      if (e instanceof UpstreamUnavailable || e instanceof UpstreamRefused) throw e;
      throw this.failed((e as Error).message);
    }
  }

  /**
   * GET of a blob (the big bodies). Over http:, a bare HTTP/1.1 GET whose socket reads into one
   * reused 1 MiB buffer (the S3 driver's plainGet): node:http's client allocates a buffer and runs
   * the stream machinery for every 64 KiB, which made receiving the body the largest cost of a
   * cold pull (profile: ~0.7 s CPU per 512 MiB, and far more when the machine is loaded). The body
   * comes in 1 MiB pieces. An upstream that has not told us how it authenticates yet (401), answers
   * chunked, or is https goes through request() (node:http) instead. Same results as request().
   */
  async getBlob(path: string, repo: string): Promise<BlobAnswer> {
    const viaRequest = async (): Promise<BlobAnswer> => {
      const res = await this.request('GET', path, repo);
      return { status: res.statusCode ?? 0, length: lengthOf(res.headers['content-length']), body: res };
    };
    if (this.base.protocol !== 'http:') return viaRequest();
    if (this.open) throw new UpstreamUnavailable(`upstream ${this.base.origin}: circuit open after ${this.failures} failures`);
    let url = new URL(path, this.base);
    /** How `url` may be reached when it is not the upstream's (a redirect's target). */
    let reach: Reach | undefined;
    let auth: Record<string, string>;
    try {
      auth = await this.authHeader(repo);
    } catch (e) {
      if (e instanceof UpstreamUnavailable || e instanceof UpstreamRefused) throw e;
      throw this.failed((e as Error).message);
    }
    /** node:http for a redirect's target (https storage, or one answering chunked). */
    const viaSend = async (target: URL, headers: Record<string, string>): Promise<BlobAnswer> => {
      let res;
      try {
        res = await this.send('GET', target, headers, reach);
      } catch (e) {
        throw this.failed((e as Error).message);
      }
      const status = res.statusCode ?? 0;
      if (status >= 500 || status === 429) {
        this.discard(res);
        throw this.failed(`answered ${status}`);
      }
      this.failures = 0;
      return { status, length: lengthOf(res.headers['content-length']), body: res };
    };
    for (let hop = 0; ; hop++) {
      if (url.protocol !== 'http:') return viaSend(url, auth);
      let a;
      const release = await this.blobSocket();
      try {
        this.requests++;
        // (a URL the upstream handed out: resolved through the guarded lookup)
        a = await plainGet(
          url,
          { 'User-Agent': 'legacy-registry-mirror', ...auth },
          { piece: BLOB_PIECE, timeoutMs: this.opts.timeoutMs, ...(reach ? { lookup: reach.lookup } : {}) },
        );
      } catch (e) {
        release();
        if (e instanceof ChunkedAnswerError) return hop === 0 ? viaRequest() : viaSend(url, auth);
        throw this.failed((e as Error).message);
      }
      // the slot is the socket's: given back when the body ends, fails or is destroyed
      finished(a.body, () => release());
      const location = a.headers.get('location');
      if (a.status === 401 && hop === 0) {
        // the challenge (first contact, or a token refused): request() does the dance
        a.body.destroy();
        return viaRequest();
      }
      if (REDIRECT.includes(a.status) && location && hop < MAX_REDIRECTS) {
        a.body.destroy();
        let next;
        try {
          next = new URL(location, url);
          reach = await this.mayReach(next, 'redirect');
        } catch (e) {
          throw this.failed((e as Error).message);
        }
        // credentials go only to the upstream itself, never to the storage it redirects to
        auth = next.origin === this.base.origin ? await this.authHeader(repo) : {};
        url = next;
        continue;
      }
      if (a.status >= 500 || a.status === 429) {
        a.body.destroy();
        throw this.failed(`answered ${a.status}`);
      }
      this.failures = 0;
      return { status: a.status, length: lengthOf(a.headers.get('content-length')), body: a.body };
    }
  }
}

/** The upstream answered, but refused what we asked (its token service said no). */
export class UpstreamRefused extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = 'UpstreamRefused';
  }
}
