import type { IncomingMessage } from 'node:http';
import { StorageUnavailableError } from '../driver.js';

/**
 * Swift authentication: auth v1 (TempAuth, RGW, Rackspace's legacy endpoint) and Keystone v2
 * (POST …/v2.0/tokens) and v3 (POST …/v3/auth/tokens), with the semantics of ncw/swift, the client
 * under distribution's storage.swift (auth.go, auth_v3.go): the same request bodies, the same
 * project scope defaults and the same catalog lookup of the object-store endpoint.
 */

/** Which URL of a catalog entry to use (distribution's endpointtype; swiftclient's publicURL…). */
export type SwiftEndpointType = 'public' | 'internal' | 'admin';

export interface SwiftAuthOptions {
  /** …/auth/1.0 (v1), …/v2.0 (Keystone v2) or …/v3 (Keystone v3). */
  readonly authUrl: string;
  readonly user: string;
  /** Password (or key for v1; a Rackspace API key for v2). */
  readonly key: string;
  /** 1, 2 or 3; unset: from the URL (see swiftAuthVersion). */
  readonly authVersion?: 1 | 2 | 3;
  /** Project (tenant) name; with v1 the user becomes tenant:user. */
  readonly tenant?: string;
  readonly tenantId?: string;
  /** v3: the user's domain (name or id), and the project's when tenantdomain… are unset. */
  readonly domain?: string;
  readonly domainId?: string;
  readonly tenantDomain?: string;
  readonly tenantDomainId?: string;
  /** v3: a trust scope instead of a project scope. */
  readonly trustId?: string;
  /** Region of the object-store endpoint (any when unset: the first listed). */
  readonly region?: string;
  /** Catalog interface (default public). */
  readonly endpointType?: SwiftEndpointType;
}

/** A storage URL and its token, with when it expires (ms since the epoch) if the server said. */
export interface SwiftSession {
  readonly url: URL;
  readonly token: string;
  readonly obtained: number;
  readonly expires?: number;
}

export interface AuthRes {
  readonly status: number;
  readonly headers: IncomingMessage['headers'];
  readonly body: IncomingMessage;
}
export type AuthSend = (method: string, url: URL, headers: Record<string, string>, body?: Buffer) => Promise<AuthRes>;

/** A Keystone answer (a catalog of a large cloud is some 100 KiB) is read up to this size. */
const MAX_AUTH_BODY = 8 * 1024 * 1024;

/**
 * The auth version of an auth URL: the explicit one; else …/auth/1.0 or …/auth/v1.0 is v1; else as
 * ncw/swift guesses (the URL contains v3, v2 or v1); else 2, the Python registry's swift driver
 * default (its swift_auth_version).
 */
export function swiftAuthVersion(authUrl: string, explicit?: number | null): 1 | 2 | 3 {
  if (explicit === 1 || explicit === 2 || explicit === 3) return explicit;
  if (/\/(auth\/)?v?1\.0\/?$/.test(new URL(authUrl).pathname)) return 1;
  if (authUrl.includes('v3')) return 3;
  if (authUrl.includes('v2')) return 2;
  if (authUrl.includes('v1')) return 1;
  return 2;
}

/** public, internal, admin, or swiftclient's publicURL, internalURL, adminURL (any case); else undefined. */
export function swiftEndpointType(v: string): SwiftEndpointType | undefined {
  const m = /^(public|internal|admin)(url)?$/i.exec(v.trim());
  return m ? (m[1]!.toLowerCase() as SwiftEndpointType) : undefined;
}

async function readBody(r: AuthRes, what: string): Promise<string> {
  const parts: Buffer[] = [];
  let n = 0;
  for await (const c of r.body) {
    n += (c as Buffer).length;
    if (n > MAX_AUTH_BODY) {
      r.body.destroy();
      throw new StorageUnavailableError(`swift: ${what} answered more than ${MAX_AUTH_BODY} bytes`, '');
    }
    parts.push(c as Buffer);
  }
  return Buffer.concat(parts).toString('utf8');
}

/** Keystone's error message ({"error": {"message": …}}), or the start of the body. */
function reason(text: string): string {
  try {
    const j = JSON.parse(text) as { error?: { message?: unknown; title?: unknown } };
    const m = j.error?.message ?? j.error?.title;
    if (typeof m === 'string') return m.slice(0, 200);
  } catch {
    // not JSON
  }
  return text.replace(/\s+/g, ' ').trim().slice(0, 200);
}

/** ms since the epoch of an ISO time, or undefined. */
function when(v: unknown): number | undefined {
  if (typeof v !== 'string') return undefined;
  const t = Date.parse(v);
  return Number.isFinite(t) ? t : undefined;
}

function storageUrl(raw: string, what: string): URL {
  try {
    const u = new URL(raw.replace(/\/+$/, ''));
    if (u.protocol === 'http:' || u.protocol === 'https:') return u;
  } catch {
    // below
  }
  throw new StorageUnavailableError(`swift: ${what} gave an unusable storage URL ${JSON.stringify(raw)}`, '');
}

/**
 * Logs in. `state` carries, between calls of one driver, which of Keystone v2's two credential
 * forms (password or Rackspace API key) was accepted.
 */
export async function swiftLogin(o: SwiftAuthOptions, send: AuthSend, state: { v2ApiKey?: boolean } = {}): Promise<SwiftSession> {
  const version = swiftAuthVersion(o.authUrl, o.authVersion);
  if (version === 1) return v1(o, send);
  if (version === 2) return v2(o, send, state);
  return v3(o, send);
}

async function v1(o: SwiftAuthOptions, send: AuthSend): Promise<SwiftSession> {
  // Keystone-style user names (tenant:user) are how auth v1 names an account's user too
  const user = o.tenant && !o.user.includes(':') ? `${o.tenant}:${o.user}` : o.user;
  const obtained = Date.now();
  const r = await send('GET', new URL(o.authUrl), { 'X-Auth-User': user, 'X-Auth-Key': o.key });
  const text = await readBody(r, `auth at ${o.authUrl}`).catch(() => '');
  if (r.status === 401 || r.status === 403)
    throw new StorageUnavailableError(`swift: authentication refused for ${user} at ${o.authUrl} (auth v1: ${r.status})`, '');
  const storage = r.headers['x-storage-url'];
  const token = r.headers['x-auth-token'] ?? r.headers['x-storage-token'];
  if (r.status >= 300 || typeof storage !== 'string' || typeof token !== 'string') {
    throw new StorageUnavailableError(`swift: auth at ${o.authUrl} answered ${r.status} without a storage URL and token ${reason(text)}`.trim(), '');
  }
  const ttl = Number(r.headers['x-auth-token-expires']);
  return { url: storageUrl(storage, `auth at ${o.authUrl}`), token, obtained, ...(Number.isFinite(ttl) && ttl > 0 ? { expires: obtained + ttl * 1000 } : {}) };
}

/** URL + '/' + path, without doubling a slash. */
function under(base: string, path: string): URL {
  return new URL(`${base.replace(/\/+$/, '')}/${path}`);
}

function describeScope(o: SwiftAuthOptions): string {
  if (o.trustId) return ` (trust ${o.trustId})`;
  if (o.tenantId) return ` (project id ${o.tenantId})`;
  if (o.tenant) return ` (project ${o.tenant})`;
  return '';
}

interface V2Catalog {
  access?: {
    token?: { id?: unknown; expires?: unknown };
    serviceCatalog?: Array<{ type?: unknown; endpoints?: Array<Record<string, unknown>> }>;
  };
}

async function v2(o: SwiftAuthOptions, send: AuthSend, state: { v2ApiKey?: boolean }): Promise<SwiftSession> {
  const url = under(o.authUrl, 'tokens');
  const what = `Keystone v2 at ${url.href}`;
  const tenant = { ...(o.tenant ? { tenantName: o.tenant } : {}), ...(o.tenantId ? { tenantId: o.tenantId } : {}) };
  const body = (apiKey: boolean): Buffer =>
    Buffer.from(
      JSON.stringify({
        auth: apiKey
          ? { 'RAX-KSKEY:apiKeyCredentials': { username: o.user, apiKey: o.key }, ...tenant }
          : { passwordCredentials: { username: o.user, password: o.key }, ...tenant },
      }),
    );
  // as ncw/swift: a key of 32 characters or more is tried as a Rackspace API key first; on 400/401
  // the other form is tried once
  const first = state.v2ApiKey ?? o.key.length >= 32;
  let r: AuthRes | undefined;
  let text = '';
  let obtained = 0;
  for (const apiKey of state.v2ApiKey === undefined ? [first, !first] : [first]) {
    obtained = Date.now();
    r = await send('POST', url, { 'Content-Type': 'application/json', Accept: 'application/json' }, body(apiKey));
    text = await readBody(r, what);
    if (r.status < 300) {
      state.v2ApiKey = apiKey;
      break;
    }
    if (r.status !== 400 && r.status !== 401) break;
  }
  if (r!.status === 401 || r!.status === 403) {
    throw new StorageUnavailableError(
      `swift: ${what} refused the credentials of user ${JSON.stringify(o.user)}${describeScope(o)}: ${r!.status} ${reason(text)}`.trim(),
      '',
    );
  }
  if (r!.status >= 300) throw new StorageUnavailableError(`swift: ${what} answered ${r!.status}: ${reason(text)}`, '');
  let j: V2Catalog;
  try {
    j = JSON.parse(text) as V2Catalog;
  } catch {
    throw new StorageUnavailableError(`swift: ${what} answered ${r!.status} without JSON`, '');
  }
  const token = j.access?.token?.id;
  if (typeof token !== 'string' || token === '') throw new StorageUnavailableError(`swift: ${what} answered without a token (access.token.id)`, '');
  const kind = o.endpointType ?? 'public';
  const field = `${kind}URL`;
  const seen: string[] = [];
  for (const service of j.access?.serviceCatalog ?? []) {
    if (service.type !== 'object-store') continue;
    for (const e of service.endpoints ?? []) {
      const region = typeof e.region === 'string' ? e.region : '';
      const u = e[field] ?? e[`${kind}Url`];
      seen.push(`${region || '(no region)'} ${['public', 'internal', 'admin'].filter((k) => typeof e[`${k}URL`] === 'string').join('/')}`);
      if ((!o.region || o.region === region) && typeof u === 'string' && u !== '') {
        const expires = when(j.access?.token?.expires);
        return { url: storageUrl(u, what), token, obtained, ...(expires ? { expires } : {}) };
      }
    }
  }
  throw new StorageUnavailableError(
    `swift: ${what}: the catalog has no object-store endpoint with a ${field}${o.region ? ` in region ${o.region}` : ''}${describeScope(o)}` +
      (seen.length > 0
        ? `; object-store endpoints: ${seen.join(', ')}`
        : o.tenant || o.tenantId
          ? ''
          : ' (no tenant or tenantid: an unscoped token has no catalog)'),
    '',
  );
}

interface V3Token {
  token?: {
    expires_at?: unknown;
    catalog?: Array<{ type?: unknown; endpoints?: Array<{ interface?: unknown; region?: unknown; region_id?: unknown; url?: unknown }> }>;
  };
}

/** The v3 request body (ncw/swift auth_v3.go): password method, user domain, then trust or project scope. */
export function keystoneV3Body(o: SwiftAuthOptions): Record<string, unknown> {
  const domain = o.domain ? { name: o.domain } : o.domainId ? { id: o.domainId } : undefined;
  let scope: Record<string, unknown> | undefined;
  if (o.trustId) scope = { 'OS-TRUST:trust': { id: o.trustId } };
  else if (o.tenantId) scope = { project: { id: o.tenantId } };
  else if (o.tenant) {
    const pd = o.tenantDomain ? { name: o.tenantDomain } : o.tenantDomainId ? { id: o.tenantDomainId } : (domain ?? { name: 'Default' });
    scope = { project: { name: o.tenant, domain: pd } };
  }
  return {
    auth: {
      identity: { methods: ['password'], password: { user: { name: o.user, password: o.key, ...(domain ? { domain } : {}) } } },
      ...(scope ? { scope } : {}),
    },
  };
}

async function v3(o: SwiftAuthOptions, send: AuthSend): Promise<SwiftSession> {
  // …/v3 → …/v3/auth/tokens; distribution's docs show …/v3/auth as the URL: accept that too
  const base = o.authUrl.replace(/\/+$/, '');
  const url = /\/auth\/tokens$/.test(base) ? new URL(base) : /\/auth$/.test(base) ? under(base, 'tokens') : under(base, 'auth/tokens');
  const what = `Keystone v3 at ${url.href}`;
  const obtained = Date.now();
  const r = await send('POST', url, { 'Content-Type': 'application/json', Accept: 'application/json' }, Buffer.from(JSON.stringify(keystoneV3Body(o))));
  const text = await readBody(r, what);
  if (r.status === 401 || r.status === 403) {
    const dom = o.domain ? ` in domain ${o.domain}` : o.domainId ? ` in domain id ${o.domainId}` : '';
    throw new StorageUnavailableError(
      `swift: ${what} refused the credentials of user ${JSON.stringify(o.user)}${dom}${describeScope(o)}: ${r.status} ${reason(text)}`.trim(),
      '',
    );
  }
  if (r.status >= 300) throw new StorageUnavailableError(`swift: ${what} answered ${r.status}: ${reason(text)}`, '');
  const token = r.headers['x-subject-token'];
  if (typeof token !== 'string' || token === '') throw new StorageUnavailableError(`swift: ${what} answered ${r.status} without an X-Subject-Token`, '');
  let j: V3Token;
  try {
    j = JSON.parse(text) as V3Token;
  } catch {
    throw new StorageUnavailableError(`swift: ${what} answered ${r.status} without JSON`, '');
  }
  const kind = o.endpointType ?? 'public';
  const seen: string[] = [];
  for (const service of j.token?.catalog ?? []) {
    if (service.type !== 'object-store') continue;
    for (const e of service.endpoints ?? []) {
      const region = typeof e.region === 'string' ? e.region : typeof e.region_id === 'string' ? e.region_id : '';
      seen.push(`${region || '(no region)'}/${String(e.interface)}`);
      if (e.interface !== kind || typeof e.url !== 'string' || e.url === '') continue;
      if (o.region && o.region !== e.region && o.region !== e.region_id) continue;
      const expires = when(j.token?.expires_at);
      return { url: storageUrl(e.url, what), token, obtained, ...(expires ? { expires } : {}) };
    }
  }
  throw new StorageUnavailableError(
    `swift: ${what}: the catalog has no object-store endpoint with interface ${kind}${o.region ? ` in region ${o.region}` : ''}${describeScope(o)}` +
      (seen.length > 0
        ? `; object-store endpoints: ${seen.join(', ')}`
        : !o.tenant && !o.tenantId && !o.trustId
          ? ' (no tenant, tenantid or trustid: an unscoped token has no catalog)'
          : ''),
    '',
  );
}

/** True when the session should be renewed: within a minute of expiry (half its life, for short ones). */
export function expiring(s: SwiftSession, now = Date.now()): boolean {
  if (s.expires === undefined) return false;
  const margin = Math.min(60_000, Math.max(0, (s.expires - s.obtained) / 2));
  return now >= s.expires - margin;
}
