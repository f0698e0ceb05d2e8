import { randomBytes } from 'node:crypto';
import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { Readable } from 'node:stream';
import { expiring, swiftAuthVersion, swiftEndpointType, swiftLogin, type SwiftAuthOptions, type SwiftSession } from './swift-auth.js';
import {
  ContentTooLargeError,
  InvalidOffsetError,
  SizeMismatchError,
  sizeToCheck,
  PathNotFoundError,
  StorageError,
  StorageUnavailableError,
  isValidSegment,
  validateKey,
  type FileInfo,
  type GetOptions,
  type PutOptions,
  type ReaderOptions,
  type StorageDriver,
  type Writer,
  type WriterOptions,
} from '../driver.js';
import { PartBufferWriter } from '../part-writer.js';

const MiB = 1024 * 1024;
export const DEFAULT_SEGMENT_SIZE = 10 * MiB;
/** Swift's largest single object (and so the largest server-side copy). */
const MAX_OBJECT = 5 * 1024 * MiB;
/** Static Large Object segments per manifest (Swift's and RGW's default max_manifest_segments is 1000). */
const MAX_SEGMENTS = 1000;
/**
 * The driver's own objects: move tickets, large-object segments and the markers of segments to
 * remove. '~' is never valid in a key segment: none of it can be addressed, and list() drops it.
 */
const INTERNAL = '~lr';
/** A move ticket older than this was left by a killed process. */
const STALE_TICKET_MS = 5 * 60 * 1000;
/** After a failed renewal of a token that is still valid, the next attempt waits this long. */
const RENEWAL_RETRY_MS = 5000;
/** Object metadata naming the segment set of a Static Large Object written by this driver. */
const SEGMENTS_META = 'x-object-meta-lr-segments';

export interface SwiftDriverOptions extends SwiftAuthOptions {
  readonly container: string;
  /** Key prefix inside the container (distribution's prefix, Python's storage_path); no slashes at the ends. */
  readonly prefix?: string;
  /** Size of large-object segments: a writer holds at most two in memory (default 10 MiB). */
  readonly segmentSize?: number;
  readonly insecureSkipVerify?: boolean;
}

export type SwiftStorageDriver = StorageDriver & {
  check(): Promise<void>;
  putContentIfAbsent(key: string, data: Buffer): Promise<boolean>;
  purgeAbandonedWrites(olderThanMs: number): Promise<number>;
  close(): Promise<void>;
  /** How many times this driver has logged in (at start, before expiry, after a 401). */
  readonly logins: number;
};

interface Res {
  readonly status: number;
  readonly headers: IncomingMessage['headers'];
  readonly body: IncomingMessage;
}

/** The driver's keys from storage config (Python swift_* keys; distribution's storage.swift maps onto them). */
export function swiftOptions(config: {
  storage_path: string;
  swift_authurl?: string | null;
  swift_container?: string | null;
  swift_user?: string | null;
  swift_password?: string | null;
  swift_auth_version?: number | null;
  swift_tenant_name?: string | null;
  swift_tenant_id?: string | null;
  swift_domain_name?: string | null;
  swift_domain_id?: string | null;
  swift_tenant_domain_name?: string | null;
  swift_tenant_domain_id?: string | null;
  swift_trust_id?: string | null;
  swift_region_name?: string | null;
  swift_endpoint_type?: string | null;
  swift_segment_size?: number;
  swift_insecure_skip_verify?: boolean;
}): SwiftDriverOptions {
  const missing = (['swift_authurl', 'swift_container', 'swift_user', 'swift_password'] as const).filter((k) => !config[k]);
  if (missing.length > 0) throw new Error(`storage swift: ${missing.join(', ')} required`);
  const authUrl = config.swift_authurl!;
  let url: URL;
  try {
    url = new URL(authUrl);
  } catch {
    throw new Error(`storage swift: swift_authurl ${JSON.stringify(authUrl)} is not a URL`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error(`storage swift: swift_authurl ${authUrl} is not an http(s) URL`);
  const v = config.swift_auth_version;
  if (v !== undefined && v !== null && v !== 1 && v !== 2 && v !== 3) throw new Error(`storage swift: swift_auth_version must be 1, 2 or 3, got ${String(v)}`);
  let endpointType: SwiftDriverOptions['endpointType'];
  if (config.swift_endpoint_type) {
    endpointType = swiftEndpointType(config.swift_endpoint_type);
    if (!endpointType)
      throw new Error(`storage swift: swift_endpoint_type must be public, internal or admin, got ${JSON.stringify(config.swift_endpoint_type)}`);
  }
  const prefix = config.storage_path
    .replace(/^(\.\/)+/, '')
    .replace(/^\/+|\/+$/g, '')
    .replace(/^\.$/, '');
  const opt = <K extends string>(k: K, value: string | null | undefined): { [P in K]?: string } => (value ? ({ [k]: value } as { [P in K]: string }) : {});
  return {
    authUrl,
    user: config.swift_user!,
    key: config.swift_password!,
    authVersion: swiftAuthVersion(authUrl, v),
    ...opt('tenant', config.swift_tenant_name),
    ...opt('tenantId', config.swift_tenant_id),
    ...opt('domain', config.swift_domain_name),
    ...opt('domainId', config.swift_domain_id),
    ...opt('tenantDomain', config.swift_tenant_domain_name),
    ...opt('tenantDomainId', config.swift_tenant_domain_id),
    ...opt('trustId', config.swift_trust_id),
    ...opt('region', config.swift_region_name),
    ...(endpointType ? { endpointType } : {}),
    container: config.swift_container!,
    prefix,
    ...(config.swift_segment_size ? { segmentSize: config.swift_segment_size } : {}),
    ...(config.swift_insecure_skip_verify ? { insecureSkipVerify: true } : {}),
  };
}

/**
 * Storage on OpenStack Swift (Rackspace Cloud Files is Swift; Ceph RGW serves the API too), with a
 * small client on node:http (auth v1, Keystone v2 and v3: swift-auth.ts). Objects up to one segment are single PUTs (atomic); larger
 * writers upload segments and publish a Static Large Object manifest at the key, so a layer of any
 * size streams with two segments in memory and appears complete at once.
 *
 * Swift has no conditional create that every server honours (RGW ignores If-None-Match on PUT), so a
 * move claims its source with tickets: each mover writes its own ticket object and proceeds only
 * when a listing shows its ticket alone; contenders withdraw, back off, and retry until one has
 * moved the source (the others then find it gone: PathNotFoundError). Swift listings are strongly
 * consistent on RGW, which this relies on.
 *
 * Segments of large objects that were replaced or deleted are removed by the upload purge job after
 * upload_purge_age (readers streaming the old object keep working until then), as are the segments
 * of writers that never committed.
 */
export function createSwiftDriver(options: SwiftDriverOptions): SwiftStorageDriver {
  return new SwiftDriver(options);
}

class SwiftDriver implements StorageDriver {
  readonly name = 'swift';
  private readonly root: string;
  readonly segmentSize: number;
  /** Keystone's storage URL may differ in scheme from the auth URL: one agent for each. */
  private readonly httpAgent = new HttpAgent({ keepAlive: true, maxSockets: 64 });
  private readonly httpsAgent: HttpsAgent;
  private auth: SwiftSession | undefined;
  private authing: Promise<SwiftSession> | undefined;
  /** Which of Keystone v2's credential forms was accepted (swift-auth.ts). */
  private readonly v2State: { v2ApiKey?: boolean } = {};
  /** How many times this driver has logged in. */
  logins = 0;
  /** When a renewal of a still valid token last failed (ms since the epoch). */
  private renewalFailed = 0;

  constructor(private readonly o: SwiftDriverOptions) {
    const p = (o.prefix ?? '').replace(/^\/+|\/+$/g, '');
    this.root = p === '' ? '' : `${p}/`;
    this.segmentSize = o.segmentSize ?? DEFAULT_SEGMENT_SIZE;
    if (!Number.isSafeInteger(this.segmentSize) || this.segmentSize < 1 || this.segmentSize > MAX_OBJECT) {
      throw new Error(`swift: segment size must be between 1 byte and 5 GiB, got ${this.segmentSize}`);
    }
    this.httpsAgent = new HttpsAgent({ keepAlive: true, maxSockets: 64, rejectUnauthorized: !o.insecureSkipVerify });
  }

  // ---- HTTP

  /**
   * The current session: logs in when there is none, when it is within a minute of expiry (see
   * expiring()), or when `rejected` (a token the store answered 401 to) is still the current one.
   * Concurrent callers share one login. A renewal that fails while the old token has not expired
   * yet keeps the old token (Keystone briefly away must not stop the registry).
   */
  private async session(rejected?: string): Promise<SwiftSession> {
    const s = this.auth;
    const usable = s !== undefined && s.token !== rejected;
    if (usable && !expiring(s)) return s;
    // a renewal failed a moment ago and the token still works: no login per request meanwhile
    if (usable && Date.now() - this.renewalFailed < RENEWAL_RETRY_MS && s.expires !== undefined && Date.now() < s.expires) return s;
    this.authing ??= (async () => {
      try {
        this.logins++;
        this.auth = await swiftLogin(this.o, (m, u, h, b) => this.raw(m, u, h, b), this.v2State);
        this.renewalFailed = 0;
        return this.auth;
      } catch (e) {
        if (usable && s.expires !== undefined && Date.now() < s.expires) {
          this.renewalFailed = Date.now();
          return s;
        }
        throw e;
      } finally {
        this.authing = undefined;
      }
    })();
    return this.authing;
  }

  private raw(method: string, url: URL, headers: Record<string, string>, body?: Buffer): Promise<Res> {
    return new Promise((resolve, reject) => {
      const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
      const agent = url.protocol === 'https:' ? this.httpsAgent : this.httpAgent;
      const req = send(
        url,
        {
          method,
          headers: {
            ...headers,
            ...(body ? { 'Content-Length': String(body.length) } : method === 'PUT' || method === 'POST' ? { 'Content-Length': '0' } : {}),
          },
          agent,
        },
        (res) => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: res }),
      );
      req.setTimeout(120_000, () => req.destroy(new Error(`swift: ${method} ${url.pathname} timed out`)));
      req.on('error', (e) => reject(new StorageUnavailableError(`swift: ${method} ${url.host}: ${e.message}`, '', { cause: e })));
      req.end(body);
    });
  }

  /** A request on the container (path: object name or '' for the container), logging in again once on 401. */
  private async req(
    method: string,
    object: string,
    opts: { query?: Record<string, string>; headers?: Record<string, string>; body?: Buffer } = {},
  ): Promise<Res> {
    let rejected: string | undefined;
    for (let attempt = 0; ; attempt++) {
      const auth = await this.session(rejected);
      const path = object === '' ? '' : `/${object.split('/').map(encodeURIComponent).join('/')}`;
      const url = new URL(`${auth.url.href}/${encodeURIComponent(this.o.container)}${path}`);
      for (const [k, v] of Object.entries(opts.query ?? {})) url.searchParams.set(k, v);
      const r = await this.raw(method, url, { 'X-Auth-Token': auth.token, ...(opts.headers ?? {}) }, opts.body);
      if (r.status === 401 && attempt === 0) {
        r.body.resume();
        rejected = auth.token;
        continue;
      }
      return r;
    }
  }

  /** Reads a small answer's body. */
  private async text(r: Res): Promise<string> {
    const parts: Buffer[] = [];
    for await (const c of r.body) parts.push(c as Buffer);
    return Buffer.concat(parts).toString('utf8');
  }

  /** Throws for an unexpected status: 404 → PathNotFoundError, 401/403/5xx or a missing container → StorageUnavailableError. */
  private async expect(r: Res, ok: number[], key: string, what: string): Promise<void> {
    if (ok.includes(r.status)) return;
    const body = (await this.text(r).catch(() => '')).slice(0, 200);
    if (r.status === 404) throw new PathNotFoundError(key);
    if (r.status === 401 || r.status === 403 || r.status >= 500) throw new StorageUnavailableError(`swift: ${what} ${key}: ${r.status} ${body}`, key);
    throw new StorageError(`swift: ${what} ${key}: ${r.status} ${body}`, key);
  }

  private k(key: string): string {
    return this.root + key;
  }

  /** The object name of a key. */
  fullKey(key: string): string {
    return this.root + key;
  }

  /** Checks the container at start (a clear error rather than on the first push). */
  async check(): Promise<void> {
    try {
      const r = await this.req('HEAD', '');
      r.body.resume();
      if (r.status === 404) throw new Error(`the container ${JSON.stringify(this.o.container)} does not exist`);
      if (r.status >= 300) throw new Error(`HEAD of the container answered ${r.status}`);
    } catch (e) {
      const why = (e as Error).message.replace(/^swift: /, '');
      throw new Error(
        `swift: cannot use container ${JSON.stringify(this.o.container)} at ${this.o.authUrl} (auth v${swiftAuthVersion(this.o.authUrl, this.o.authVersion)}): ${why}`,
        { cause: e },
      );
    }
  }

  // ---- StorageDriver

  async getContent(key: string, options?: GetOptions): Promise<Buffer> {
    validateKey(key);
    const max = options?.maxSize ?? Infinity;
    const r = await this.req('GET', this.k(key));
    await this.expect(r, [200], key, 'GET');
    const tooLarge = (): never => {
      r.body.destroy();
      throw new ContentTooLargeError(key, max);
    };
    if (Number(r.headers['content-length'] ?? 0) > max) tooLarge();
    const parts: Buffer[] = [];
    let n = 0;
    for await (const c of r.body) {
      n += (c as Buffer).length;
      if (n > max) tooLarge();
      parts.push(c as Buffer);
    }
    return Buffer.concat(parts);
  }

  async putContent(key: string, data: Buffer, _options?: PutOptions): Promise<void> {
    validateKey(key);
    // a large object replaced by a small one leaves its segments to the purge
    const old = await this.headIfAny(key);
    await this.putObject(this.k(key), Buffer.from(data), key);
    if (old?.segments) await this.markGarbage(old.segments);
  }

  async putObject(full: string, body: Buffer, label: string, headers: Record<string, string> = {}): Promise<string | undefined> {
    const r = await this.req('PUT', full, { body, headers: { 'Content-Type': 'application/octet-stream', ...headers } });
    await this.expect(r, [201, 202], label, 'PUT');
    r.body.resume();
    const etag = r.headers.etag;
    return typeof etag === 'string' ? etag.replace(/"/g, '') : undefined;
  }

  async reader(key: string, offset = 0, length?: number, options?: ReaderOptions): Promise<Readable> {
    validateKey(key);
    if (!Number.isSafeInteger(offset) || offset < 0) throw new InvalidOffsetError(key, offset);
    if (length !== undefined && (!Number.isSafeInteger(length) || length < 0)) throw new InvalidOffsetError(key, offset);
    const known = sizeToCheck(offset, length, options);
    if (length === 0) {
      const { size } = await this.head(key);
      if (known !== undefined && size !== known) throw new SizeMismatchError(key, known, size);
      if (offset > size) throw new InvalidOffsetError(key, offset);
      return Readable.from([]);
    }
    const range = offset === 0 && length === undefined ? undefined : `bytes=${offset}-${length === undefined ? '' : offset + length - 1}`;
    const r = await this.req('GET', this.k(key), range ? { headers: { Range: range } } : {});
    if (r.status === 416) {
      r.body.resume();
      const { size } = await this.head(key);
      if (known !== undefined && size !== known) throw new SizeMismatchError(key, known, size);
      if (offset === size) return Readable.from([]);
      throw new InvalidOffsetError(key, offset);
    }
    await this.expect(r, [200, 206], key, 'GET');
    if (known !== undefined) {
      // the whole object's size as the answer tells it: a 206's Content-Range total, a 200's length
      const told = r.status === 206 ? /\/(\d+)\s*$/.exec(String(r.headers['content-range'] ?? ''))?.[1] : r.headers['content-length'];
      if (told !== undefined && Number(told) !== known) {
        r.body.destroy();
        throw new SizeMismatchError(key, known, Number(told));
      }
    }
    return r.body;
  }

  async head(key: string): Promise<{ size: number; modTime: Date; segments: string | undefined }> {
    const r = await this.req('HEAD', this.k(key));
    r.body.resume();
    await this.expect(r, [200, 204], key, 'HEAD');
    const seg = r.headers[SEGMENTS_META];
    return {
      size: Number(r.headers['content-length'] ?? 0),
      modTime: r.headers['last-modified'] ? new Date(String(r.headers['last-modified'])) : new Date(),
      segments: typeof seg === 'string' && /^[0-9a-f]{16,32}$/.test(seg) ? seg : undefined,
    };
  }

  async headIfAny(key: string): Promise<{ size: number; modTime: Date; segments: string | undefined } | undefined> {
    try {
      return await this.head(key);
    } catch (e) {
      if (e instanceof PathNotFoundError) return undefined;
      throw e;
    }
  }

  async writer(key: string, options: WriterOptions = {}): Promise<Writer> {
    validateKey(key);
    const before = await this.headIfAny(key);
    const w = new SwiftWriter(this, key, options.append === true ? (before?.size ?? 0) : 0, before?.segments);
    if (options.append === true && before && before.size > 0) {
      if (before.size < this.segmentSize) w.prime(await this.getContent(key));
      else await w.copyFirst(before.size);
    }
    return w;
  }

  async stat(key: string): Promise<FileInfo> {
    validateKey(key);
    const h = await this.headIfAny(key);
    if (h) return { size: h.size, modTime: h.modTime };
    const items = await this.listRaw(`${this.k(key)}/`, false, 1);
    const first = items[0];
    if (!first || first.name === undefined) throw new PathNotFoundError(key);
    return { size: 0, modTime: first.last_modified ? new Date(`${first.last_modified.replace(/Z?$/, 'Z')}`) : new Date() };
  }

  /** Container listing below prefix (JSON), all pages (or up to limit entries). */
  async listRaw(
    prefix: string,
    delimited: boolean,
    limit = Infinity,
  ): Promise<Array<{ name?: string; subdir?: string; bytes?: number; last_modified?: string }>> {
    const out: Array<{ name?: string; subdir?: string; bytes?: number; last_modified?: string }> = [];
    let marker = '';
    for (;;) {
      const query: Record<string, string> = { format: 'json', prefix, limit: String(Math.min(limit - out.length, 10_000)) };
      if (delimited) query.delimiter = '/';
      if (marker) query.marker = marker;
      const r = await this.req('GET', '', { query });
      if (r.status === 204) {
        r.body.resume();
        break;
      }
      if (r.status === 404) {
        r.body.resume();
        throw new StorageUnavailableError(`swift: the container ${this.o.container} does not exist`, prefix);
      }
      await this.expect(r, [200], prefix, 'list');
      const page = JSON.parse(await this.text(r)) as Array<{ name?: string; subdir?: string; bytes?: number; last_modified?: string }>;
      if (page.length === 0) break;
      out.push(...page);
      if (out.length >= limit) break;
      const last = page[page.length - 1]!;
      marker = last.name ?? last.subdir ?? '';
    }
    return out;
  }

  async list(prefix: string): Promise<string[]> {
    validateKey(prefix, true);
    const head = prefix === '' ? this.root : `${this.k(prefix)}/`;
    const out = new Set<string>();
    for (const e of await this.listRaw(head, true)) {
      const full = e.name ?? e.subdir!.replace(/\/$/, '');
      const name = full.slice(head.length);
      if (isValidSegment(name)) out.add(full.slice(this.root.length));
    }
    if (out.size === 0 && prefix !== '') throw new PathNotFoundError(prefix);
    return [...out].sort();
  }

  async move(src: string, dst: string, _options?: PutOptions): Promise<void> {
    validateKey(src);
    validateKey(dst);
    const ticket = await this.claim(src);
    try {
      const h = await this.headIfAny(src);
      if (h) {
        if (src === dst) return;
        const old = await this.headIfAny(dst);
        await this.copy(src, dst);
        // plain DELETE of a manifest leaves its segments: dst refers to them now
        await this.remove(this.k(src), src);
        if (old?.segments && old.segments !== h.segments) await this.markGarbage(old.segments);
        return;
      }
      const below = (await this.listRaw(`${this.k(src)}/`, false)).filter((e) => e.name !== undefined);
      if (below.length === 0) throw new PathNotFoundError(src);
      for (const e of below) {
        const rel = e.name!.slice(this.k(src).length);
        await this.copy(e.name!.slice(this.root.length), dst + rel);
        await this.remove(e.name!, src);
      }
    } finally {
      await this.remove(ticket, src).catch(() => undefined);
    }
  }

  /**
   * Creates the object only if the key holds none: true when this call created it. Of concurrent
   * calls for one missing key exactly one returns true. Under the key's ticket (as a move), since
   * RGW ignores If-None-Match on Swift PUTs.
   */
  async putContentIfAbsent(key: string, data: Buffer): Promise<boolean> {
    validateKey(key);
    const ticket = await this.ticket(key, async () => (await this.headIfAny(key)) !== undefined);
    if (!ticket) return false;
    try {
      if (await this.headIfAny(key)) return false;
      await this.putObject(this.k(key), Buffer.from(data), key);
      return true;
    } finally {
      await this.remove(ticket, key).catch(() => undefined);
    }
  }

  /**
   * Claims key for a move: write a ticket, proceed when it is the only one listed; else withdraw,
   * back off and retry, until the key is gone (PathNotFoundError).
   */
  private async claim(key: string): Promise<string> {
    const ticket = await this.ticket(key, async () => !(await this.headIfAny(key)));
    if (!ticket) throw new PathNotFoundError(key);
    return ticket;
  }

  /**
   * The key's ticket: written, and kept when a listing shows it alone; else withdrawn, and retried
   * after a random back-off until it is alone (its name is returned) or `settled()` says another
   * caller has done the work (undefined).
   */
  private async ticket(key: string, settled: () => Promise<boolean>): Promise<string | undefined> {
    const dir = `${this.root}${INTERNAL}/tickets/${key}/`;
    for (let attempt = 0; attempt < 200; attempt++) {
      const ticket = `${dir}${Date.now().toString(36)}-${randomBytes(6).toString('hex')}`;
      await this.putObject(ticket, Buffer.from(String(process.pid)), key);
      const tickets = await this.listRaw(dir, false);
      const others = tickets.filter((t) => t.name !== ticket);
      const live = others.filter((t) => !t.last_modified || Date.now() - new Date(`${t.last_modified.replace(/Z?$/, 'Z')}`).getTime() < STALE_TICKET_MS);
      for (const stale of others.filter((t) => !live.includes(t))) await this.remove(stale.name!, key).catch(() => undefined);
      if (live.length === 0) return ticket;
      await this.remove(ticket, key);
      if (await settled()) return undefined;
      await new Promise((r) => setTimeout(r, 5 + Math.random() * Math.min(200, 10 * (attempt + 1))));
      if (await settled()) return undefined;
    }
    throw new StorageError(`swift: could not claim ${key} (too many concurrent callers)`, key);
  }

  /** Server-side copy; a large object is copied as its manifest (the segments are shared). */
  private async copy(src: string, dst: string): Promise<void> {
    const r = await this.req('PUT', this.k(dst), {
      query: { 'multipart-manifest': 'get' },
      headers: { 'X-Copy-From': `/${encodeURIComponent(this.o.container)}/${this.k(src).split('/').map(encodeURIComponent).join('/')}` },
      body: Buffer.alloc(0),
    });
    r.body.resume();
    await this.expect(r, [201, 202], src, 'COPY');
  }

  async remove(full: string, label: string): Promise<boolean> {
    const r = await this.req('DELETE', full);
    r.body.resume();
    if (r.status === 404) return false;
    await this.expect(r, [200, 204], label, 'DELETE');
    return true;
  }

  async delete(key: string): Promise<void> {
    validateKey(key);
    const below = (await this.listRaw(`${this.k(key)}/`, false)).filter((e) => e.name !== undefined).map((e) => e.name!);
    const self = await this.headIfAny(key);
    if (!self && below.length === 0) throw new PathNotFoundError(key);
    const garbage = new Set<string>();
    if (self) {
      if (self.segments) garbage.add(self.segments);
      await this.remove(this.k(key), key);
    }
    for (const full of below) {
      const h = await this.headIfAny(full.slice(this.root.length)).catch(() => undefined);
      if (h?.segments) garbage.add(h.segments);
      await this.remove(full, key);
    }
    for (const id of garbage) await this.markGarbage(id);
  }

  // ---- segments

  segmentName(id: string, n: number): string {
    return `${this.root}${INTERNAL}/segments/${id}/${String(n).padStart(8, '0')}`;
  }

  /** A marker saying the segments of id may be removed once older than the purge age. */
  async markGarbage(id: string): Promise<void> {
    await this.putObject(`${this.root}${INTERNAL}/pending/${id}`, Buffer.from('garbage'), id);
  }

  async clearMarker(id: string): Promise<void> {
    await this.remove(`${this.root}${INTERNAL}/pending/${id}`, id).catch(() => undefined);
  }

  manifestPath(full: string): string {
    return `/${this.o.container}/${full}`;
  }

  async putManifest(key: string, id: string, segments: Array<{ path: string; etag: string | null; size_bytes: number }>): Promise<void> {
    const r = await this.req('PUT', this.k(key), {
      query: { 'multipart-manifest': 'put' },
      headers: { 'Content-Type': 'application/octet-stream', 'X-Object-Meta-Lr-Segments': id },
      body: Buffer.from(JSON.stringify(segments)),
    });
    r.body.resume();
    await this.expect(r, [201, 202], key, 'PUT manifest');
  }

  async copyToSegment(key: string, target: string): Promise<void> {
    const r = await this.req('PUT', target, {
      headers: { 'X-Copy-From': `/${encodeURIComponent(this.o.container)}/${this.k(key).split('/').map(encodeURIComponent).join('/')}` },
      body: Buffer.alloc(0),
    });
    r.body.resume();
    await this.expect(r, [201, 202], key, 'COPY');
  }

  /**
   * Removes the segments of writers that never committed and of large objects replaced or deleted,
   * once their marker is older than olderThanMs. Returns how many segment sets were removed.
   */
  async purgeAbandonedWrites(olderThanMs: number): Promise<number> {
    let n = 0;
    const markers = await this.listRaw(`${this.root}${INTERNAL}/pending/`, false);
    for (const m of markers) {
      if (!m.name || !m.last_modified) continue;
      if (Date.now() - new Date(`${m.last_modified.replace(/Z?$/, 'Z')}`).getTime() < olderThanMs) continue;
      const id = m.name.slice(m.name.lastIndexOf('/') + 1);
      for (const s of await this.listRaw(`${this.root}${INTERNAL}/segments/${id}/`, false)) if (s.name) await this.remove(s.name, id).catch(() => undefined);
      await this.remove(m.name, id).catch(() => undefined);
      n++;
    }
    return n;
  }

  async close(): Promise<void> {
    this.httpAgent.destroy();
    this.httpsAgent.destroy();
  }
}

/**
 * Bytes collect up to one segment. A writer whose bytes fit one segment ends as one PUT; a larger
 * one uploads segments (one in flight while the next fills) and publishes a Static Large Object
 * manifest at commit. Appending starts from the key's bytes: read back when under a segment,
 * else copied server-side into the first segment (so an appended key stays under 5 GiB).
 */
class SwiftWriter extends PartBufferWriter {
  private readonly id = randomBytes(12).toString('hex');
  private segments: Array<{ path: string; etag: string | null; size_bytes: number }> = [];
  private marked = false;
  private copied = false;

  constructor(
    private readonly d: SwiftDriver,
    key: string,
    startSize: number,
    /** The segment set of the object at the key now (replaced at commit). */
    private readonly oldSegments: string | undefined,
  ) {
    super(key, startSize, d.segmentSize);
  }

  /** The key's current bytes (at least one segment) become segment 0, copied server-side. */
  async copyFirst(size: number): Promise<void> {
    if (size > MAX_OBJECT) throw new StorageError(`swift: cannot append to an object above 5 GiB: ${this.key}`, this.key);
    await this.mark();
    const name = this.d.segmentName(this.id, 0);
    await this.d.copyToSegment(this.key, name);
    this.segments.push({ path: this.d.manifestPath(name), etag: null, size_bytes: size });
    this.copied = true;
  }

  private async mark(): Promise<void> {
    if (this.marked) return;
    this.marked = true;
    await this.d.markGarbage(this.id); // until commit, these segments are garbage if we die
  }

  protected override async beforePart(): Promise<void> {
    await this.mark();
    if (this.segments.length >= MAX_SEGMENTS) throw new StorageError(`swift: more than ${MAX_SEGMENTS} segments: raise the segment size`, this.key);
  }

  protected override async uploadPart(body: Buffer[], size: number): Promise<void> {
    const name = this.d.segmentName(this.id, this.segments.length + 1);
    const slot = { path: this.d.manifestPath(name), etag: null as string | null, size_bytes: size };
    this.segments.push(slot);
    slot.etag = (await this.d.putObject(name, Buffer.concat(body, size), this.key)) ?? null;
  }

  protected override async finish(): Promise<void> {
    if (this.copied && this.appended === 0) {
      // appended nothing to a key that holds its bytes: the key stays as it is; the unused copy
      // stays marked as garbage for the purge
    } else if (this.segments.length === 0) {
      await this.d.putObject(this.d.fullKey(this.key), this.takeAll(), this.key);
      if (this.oldSegments) await this.d.markGarbage(this.oldSegments);
    } else {
      if (this.buffered > 0) await this.flushPart(true);
      await this.d.putManifest(this.key, this.id, this.segments);
      await this.d.clearMarker(this.id);
      if (this.oldSegments && this.oldSegments !== this.id) await this.d.markGarbage(this.oldSegments);
    }
  }

  protected override async discard(): Promise<void> {
    // this writer's segments stay marked: the purge removes them
    const h = await this.d.headIfAny(this.key);
    if (h) {
      await this.d.remove(this.d.fullKey(this.key), this.key);
      if (h.segments) await this.d.markGarbage(h.segments);
    }
  }
}
