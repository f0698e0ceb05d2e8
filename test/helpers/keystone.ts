import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A small Keystone stand-in on loopback: POST /v2.0/tokens and POST /v3/auth/tokens, checking the
 * credentials and scope the way Keystone does, answering a token and a catalog whose object-store
 * endpoint (region RegionTwo, interfaces public and internal) is the real Swift API of a Ceph RGW.
 * The token it hands out is a real one, obtained from RGW's /auth/1.0 with the Swift subuser, so
 * the driver talks to RGW exactly as it would behind a real Keystone.
 */
export interface KeystoneStandIn {
  /** http://127.0.0.1:PORT (append /v2.0 or /v3). */
  readonly url: string;
  /** Successful logins, per API: what the driver asked for. */
  readonly logins: Array<{ api: 'v2' | 'v3'; body: unknown }>;
  /** Failed logins (401). */
  refused: number;
  /** Token lifetime stated in the answers (seconds; default 3600). */
  ttlSeconds: number;
  /** When set, the next login answers this token instead of a real one (RGW will answer 401 to it). */
  nextBogusToken: string | undefined;
  /** While true, every login answers 503 (Keystone away). */
  unavailable: boolean;
  /** When set, the catalog's working endpoint is this origin (a proxy in front of RGW) with RGW's path. */
  storageOrigin: string | undefined;
  close(): Promise<void>;
}

export interface KeystoneIdentity {
  readonly user: string;
  readonly userId: string;
  readonly password: string;
  /** Rackspace's v2 variant: RAX-KSKEY:apiKeyCredentials with this key. */
  readonly apiKey: string;
  readonly userDomain: string;
  readonly userDomainId: string;
  readonly project: string;
  readonly projectId: string;
  readonly projectDomain: string;
  readonly projectDomainId: string;
  readonly trustId: string;
}

export const IDENTITY: KeystoneIdentity = {
  user: 'registry-svc',
  userId: 'u-4b1c',
  password: 'pa55-w0rd',
  apiKey: '0f1e2d3c4b5a69788796a5b4c3d2e1f0',
  userDomain: 'Services',
  userDomainId: 'd-services',
  project: 'registry',
  projectId: 'p-7f3e',
  projectDomain: 'Tenants',
  projectDomainId: 'd-tenants',
  trustId: 't-91aa',
};

/** What the catalog lists besides the real endpoint: dead addresses, so a wrong pick fails. */
const DEAD = 'http://127.0.0.1:9/swift/v1';
export const REGION = 'RegionTwo';

type Json = Record<string, unknown>;
const obj = (v: unknown): Json | undefined => (v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Json) : undefined);

async function body(req: IncomingMessage): Promise<unknown> {
  const parts: Buffer[] = [];
  for await (const c of req) parts.push(c as Buffer);
  return JSON.parse(Buffer.concat(parts).toString('utf8'));
}

function send(res: ServerResponse, status: number, json: unknown, headers: Record<string, string> = {}): void {
  const b = Buffer.from(JSON.stringify(json));
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': String(b.length), ...headers });
  res.end(b);
}

const unauthorized = (res: ServerResponse, message = 'The request you have made requires authentication.'): void =>
  send(res, 401, { error: { code: 401, title: 'Unauthorized', message } });

/** A domain reference {name} or {id} that names `name`/`id`. */
const domainIs = (d: unknown, name: string, id: string): boolean => {
  const o = obj(d);
  return !!o && (o.name === name || o.id === id) && !(o.name !== undefined && o.id !== undefined);
};

export async function startKeystone(swift: { authUrl: string; user: string; key: string }, who: KeystoneIdentity = IDENTITY): Promise<KeystoneStandIn> {
  const rgwLogin = async (): Promise<{ storage: string; token: string }> => {
    const r = await fetch(swift.authUrl, { headers: { 'X-Auth-User': swift.user, 'X-Auth-Key': swift.key } });
    if (r.status >= 300) throw new Error(`RGW /auth/1.0 answered ${r.status}`);
    return { storage: r.headers.get('x-storage-url')!, token: r.headers.get('x-auth-token')! };
  };
  const state = {
    logins: [] as Array<{ api: 'v2' | 'v3'; body: unknown }>,
    refused: 0,
    ttlSeconds: 3600,
    nextBogusToken: undefined as string | undefined,
    storageOrigin: undefined as string | undefined,
    unavailable: false,
  };
  const token = async (): Promise<{ storage: string; token: string; expires: string }> => {
    const real = await rgwLogin();
    const bogus = state.nextBogusToken;
    state.nextBogusToken = undefined;
    const storage = state.storageOrigin ? `${state.storageOrigin}${new URL(real.storage).pathname}` : real.storage;
    return { storage, token: bogus ?? real.token, expires: new Date(Date.now() + state.ttlSeconds * 1000).toISOString() };
  };

  /**
   * POST /v2.0/tokens: passwordCredentials (or Rackspace's RAX-KSKEY:apiKeyCredentials), tenantName
   * or tenantId (no tenant: an unscoped token, no catalog).
   */
  const v2 = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const b = obj(await body(req));
    const auth = obj(b?.auth);
    const creds = obj(auth?.passwordCredentials);
    const rax = obj(auth?.['RAX-KSKEY:apiKeyCredentials']);
    const ok = creds ? creds.username === who.user && creds.password === who.password : !!rax && rax.username === who.user && rax.apiKey === who.apiKey;
    if (!ok) {
      state.refused++;
      return unauthorized(res);
    }
    const scoped = auth!.tenantName !== undefined || auth!.tenantId !== undefined;
    if (scoped && auth!.tenantName !== undefined && auth!.tenantName !== who.project) return (state.refused++, unauthorized(res));
    if (scoped && auth!.tenantId !== undefined && auth!.tenantId !== who.projectId) return (state.refused++, unauthorized(res));
    const t = await token();
    state.logins.push({ api: 'v2', body: b });
    const endpoint = (region: string, url: string): Json => ({ region, publicURL: url, internalURL: url, adminURL: DEAD, tenantId: who.projectId });
    send(res, 200, {
      access: {
        token: {
          id: t.token,
          expires: t.expires,
          issued_at: new Date().toISOString(),
          ...(scoped ? { tenant: { id: who.projectId, name: who.project } } : {}),
        },
        serviceCatalog: scoped
          ? [
              { type: 'identity', name: 'keystone', endpoints: [{ region: REGION, publicURL: 'http://127.0.0.1:9/v2.0' }] },
              { type: 'object-store', name: 'swift', endpoints: [endpoint('RegionOne', DEAD), endpoint(REGION, t.storage)] },
            ]
          : [],
        user: { id: who.userId, name: who.user, roles: [{ name: 'member' }] },
      },
    });
  };

  /**
   * POST /v3/auth/tokens: the password method with the user by name (and its domain) or id; a
   * project scope by id, or by name with its domain; or a trust scope (OS-TRUST:trust).
   */
  const v3 = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const b = obj(await body(req));
    const auth = obj(b?.auth);
    const identity = obj(auth?.identity);
    const user = obj(obj(identity?.password)?.user);
    const methods = identity?.methods;
    const userOk =
      Array.isArray(methods) &&
      methods.includes('password') &&
      !!user &&
      user.password === who.password &&
      (user.id === who.userId || (user.name === who.user && domainIs(user.domain, who.userDomain, who.userDomainId)));
    if (!userOk) {
      state.refused++;
      return unauthorized(res);
    }
    const scope = obj(auth!.scope);
    const project = obj(scope?.project);
    const trust = obj(scope?.['OS-TRUST:trust']);
    let scoped = false;
    if (trust) {
      if (trust.id !== who.trustId) return (state.refused++, unauthorized(res, 'Could not find trust'));
      scoped = true;
    } else if (project) {
      const ok =
        project.id !== undefined
          ? project.id === who.projectId
          : project.name === who.project && domainIs(project.domain, who.projectDomain, who.projectDomainId);
      if (!ok) return (state.refused++, unauthorized(res, `Could not find project: ${String(project.name ?? project.id)}.`));
      scoped = true;
    }
    const t = await token();
    state.logins.push({ api: 'v3', body: b });
    const endpoints = (region: string, url: string): Json[] =>
      ['public', 'internal', 'admin'].map((i) => ({
        id: randomBytes(4).toString('hex'),
        interface: i,
        region,
        region_id: region,
        url: i === 'admin' ? DEAD : url,
      }));
    send(
      res,
      201,
      {
        token: {
          methods: ['password'],
          expires_at: t.expires,
          issued_at: new Date().toISOString(),
          user: { id: who.userId, name: who.user, domain: { id: who.userDomainId, name: who.userDomain } },
          ...(scoped
            ? {
                project: { id: who.projectId, name: who.project, domain: { id: who.projectDomainId, name: who.projectDomain } },
                catalog: [
                  { type: 'identity', name: 'keystone', endpoints: [{ interface: 'public', region: REGION, url: 'http://127.0.0.1:9/v3' }] },
                  { type: 'object-store', name: 'swift', endpoints: [...endpoints('RegionOne', DEAD), ...endpoints(REGION, t.storage)] },
                ],
              }
            : {}),
        },
      },
      { 'X-Subject-Token': t.token },
    );
  };

  const server = createServer((req, res) => {
    const path = (req.url ?? '').split('?')[0];
    const handler = req.method === 'POST' && path === '/v2.0/tokens' ? v2 : req.method === 'POST' && path === '/v3/auth/tokens' ? v3 : undefined;
    if (handler && state.unavailable) return send(res, 503, { error: { code: 503, title: 'Service Unavailable', message: 'Keystone is away' } });
    if (!handler) return send(res, 404, { error: { code: 404, title: 'Not Found', message: `${req.method} ${path}` } });
    handler(req, res).catch((e: unknown) => send(res, 400, { error: { code: 400, title: 'Bad Request', message: String(e) } }));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    logins: state.logins,
    get refused() {
      return state.refused;
    },
    set refused(v: number) {
      state.refused = v;
    },
    get ttlSeconds() {
      return state.ttlSeconds;
    },
    set ttlSeconds(v: number) {
      state.ttlSeconds = v;
    },
    get nextBogusToken() {
      return state.nextBogusToken;
    },
    set nextBogusToken(v: string | undefined) {
      state.nextBogusToken = v;
    },
    get unavailable() {
      return state.unavailable;
    },
    set unavailable(v: boolean) {
      state.unavailable = v;
    },
    get storageOrigin() {
      return state.storageOrigin;
    },
    set storageOrigin(v: string | undefined) {
      state.storageOrigin = v;
    },
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}
