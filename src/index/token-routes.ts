import { createHash } from 'node:crypto';
import type { Context } from 'koa';
import Router from '@koa/router';
import type { Config } from '../config/schema.js';
import { RegistryError } from '../errors/index.js';
import { V2Error } from '../errors/v2.js';
import { jwksOf, type V2TokenIssuer } from '../auth/v2-jwt.js';
import { serviceFor, TOKEN_PATH } from '../auth/v2-registry-auth.js';
import { mergeAccess, parseScopes, type ResourceAccess } from '../auth/v2-scope.js';
import { parseV2Name } from '../content/v2-names.js';
import { findRepository } from '../db/repositories.js';
import { credentialOf, findUserByName, retireNamespace, type User } from '../db/users.js';
import { findOrganizationByName } from '../db/organizations.js';
import { readRawBody } from '../http/body.js';
import { clientAddress } from '../http/app.js';
import { rightsOn } from './access.js';
import type { IndexService } from './service.js';

/** Where the index publishes its token verification key (for `serve --only registry`). */
export const JWKS_PATH = '/.well-known/jwks.json';
/** A fingerprint of an account's credential (its password hash and epoch, never shown) for its refresh tokens. */
async function credentialStamp(index: IndexService, uid: number): Promise<string> {
  return createHash('sha256')
    .update(`refresh:${await credentialOf(index.db, uid)}`)
    .digest('base64url')
    .slice(0, 22);
}

/** The signing certificate (PEM), for a registry's token_rootcertbundle (e.g. distribution's). */
export const CERT_PATH = '/.well-known/token-cert.pem';

/**
 * A v2 repository name as the index knows it (as v1 does): one component ⇒ `library/<name>`;
 * otherwise the namespace is the first component and the rest the repository.
 */
export function indexNameOf(v2name: string): { namespace: string; repository: string } | undefined {
  if (!parseV2Name(v2name)) return undefined;
  const i = v2name.indexOf('/');
  return i < 0 ? { namespace: 'library', repository: v2name } : { namespace: v2name.slice(0, i), repository: v2name.slice(i + 1) };
}

const ALL_ACTIONS = ['pull', 'push', 'delete'] as const;

/**
 * A push granted into a namespace no account or organization has (an admin's, as `library/`): the
 * name is held from then on (IndexService.namespaceHeld), as a deleted account's is. A v2 push by
 * digest only (no tag) leaves the index no record of the repository, so a signup or a new
 * organization with the name would otherwise own what was pushed there (before 2026-12-07 it did:
 * test/protocol/account-lifecycle.test.ts). Only where the index has no record of the repository:
 * one with a record holds its namespace already.
 */
async function holdUnownedNamespace(index: IndexService, user: User, namespace: string): Promise<void> {
  if (namespace === user.username) return;
  if (await findUserByName(index.db, namespace)) return;
  if (await findOrganizationByName(index.db, namespace)) return;
  await retireNamespace(index.db, namespace);
}

/**
 * What the caller gets of what it asked (spec §4.2): the intersection with its rights, never an
 * error for actions it may not have. Rights are the v1 rules (index/access.ts): read → pull,
 * write → push, delete → delete; `*` asked ⇒ `*` when it has all three, else what it has.
 * registry:catalog:* goes to authenticated accounts (the catalog filters per account).
 */
export async function grantedAccess(index: IndexService, user: User | undefined, requested: readonly ResourceAccess[]): Promise<ResourceAccess[]> {
  const out: ResourceAccess[] = [];
  // One judgement per repository of the index, however many spellings name it (`x`, `library/x`)
  const judged = new Map<string, Promise<Record<(typeof ALL_ACTIONS)[number], boolean>>>();
  const judge = (namespace: string, repository: string) => {
    const key = `${namespace}/${repository}`;
    let has = judged.get(key);
    if (!has) {
      has = (async () => {
        const repo = await findRepository(index.db, namespace, repository);
        const rights = await rightsOn(index.db, user, namespace, repo);
        // The index decides from its records: a repository it has no record of (never pushed, or
        // deleted) is readable only by whoever could create it (the namespace's owner, its
        // organization, admins), never by everyone (issue 10: a deleted private repository's leftovers).
        if (rights.write && !repo && user) await holdUnownedNamespace(index, user, namespace);
        return { pull: rights.read, push: rights.write, delete: rights.delete };
      })();
      judged.set(key, has);
    }
    return has;
  };
  for (const r of requested) {
    if (r.type === 'registry') {
      if (r.name === 'catalog' && user && r.actions.includes('*')) out.push({ type: 'registry', name: 'catalog', actions: ['*'] });
      continue;
    }
    if (r.type !== 'repository') continue;
    const n = indexNameOf(r.name);
    if (!n) continue;
    const has = await judge(n.namespace, n.repository);
    const actions: string[] = [];
    if (r.actions.includes('*')) {
      if (ALL_ACTIONS.every((a) => has[a])) actions.push('*');
      else actions.push(...ALL_ACTIONS.filter((a) => has[a]));
    }
    for (const a of r.actions)
      if ((a === 'pull' || a === 'push' || a === 'delete') && has[a] && !actions.includes(a) && !actions.includes('*')) actions.push(a);
    if (actions.length > 0) out.push({ type: 'repository', name: r.name, actions });
  }
  return mergeAccess(out);
}

/**
 * Most resource scopes one token request may name (security issue 10, finding 9). Clients ask for
 * one to a few (docker push: the target, plus one pull scope per repository it may mount from).
 * 32 leaves room for that, bounds the rights evaluation to 32 repository lookups, and keeps the
 * token (~80 bytes of JWT per access entry) well under the 8 KiB header limits of common proxies.
 */
export const MAX_SCOPES = 32;

/** The resource scope strings of a request (values space-separated, several values), at most MAX_SCOPES. */
function scopeList(values: readonly string[]): string[] {
  const out: string[] = [];
  for (const v of values) {
    for (const part of v.split(' ')) {
      if (part === '') continue;
      if (out.length === MAX_SCOPES) throw new BadTokenRequest('invalid_request', `too many scopes: at most ${MAX_SCOPES} per token request`);
      out.push(part);
    }
  }
  return out;
}

/** Index failures on the token endpoint, in the v2 error form clients parse there. */
function asV2(e: unknown): unknown {
  if (!(e instanceof RegistryError)) return e;
  const headers: Record<string, string> = { ...e.headers };
  delete headers['WWW-Authenticate'];
  switch (e.code) {
    case 'TOO_MANY_LOGINS':
      return new V2Error('TOOMANYREQUESTS', undefined, e.message, headers);
    case 'ACCOUNT_INACTIVE':
      return new V2Error('DENIED', undefined, e.message, headers);
    case 'LOGIN_REQUIRED':
      return new V2Error('UNAUTHORIZED', undefined, e.message, headers);
    default:
      return e;
  }
}

function renderV2(ctx: Context, e: V2Error): void {
  ctx.status = e.status;
  for (const [k, v] of Object.entries(e.headers)) ctx.set(k, v);
  ctx.type = 'application/json; charset=utf-8';
  ctx.body = JSON.stringify({ errors: [{ code: e.code, message: e.message, detail: e.detail ?? null }] });
}

/** A malformed token request: 400 in the OAuth2 form (RFC 6749 §5.2). */
class BadTokenRequest extends Error {
  constructor(
    readonly error: 'invalid_request' | 'unsupported_grant_type',
    message: string,
  ) {
    super(message);
  }
}

const basicHeader = (u: string, p: string): string => `Basic ${Buffer.from(`${u}:${p}`, 'utf8').toString('base64')}`;

/**
 * The v2 token service of the index (spec §4.2), at /v2/token: GET with Basic credentials (or
 * none: anonymous) and service, scope (repeatable), account, client_id, offline_token; POST with
 * the OAuth2 form (grant_type=password or refresh_token). Also the public key as a JWKS.
 */
export function tokenRouter(config: Config, index: IndexService, issuer: V2TokenIssuer): Router {
  const router = new Router();

  const respond = async (
    ctx: Context,
    user: User | undefined,
    service: string,
    scopes: readonly string[],
    refresh: string | undefined,
    oauth: boolean,
  ): Promise<void> => {
    const access = await grantedAccess(index, user, parseScopes(scopes));
    const t = await issuer.issueAccess({ sub: user?.username ?? '', aud: service, access, admin: user?.admin === true });
    const body: Record<string, unknown> = {
      token: t.token,
      access_token: t.token,
      expires_in: t.expiresIn,
      issued_at: t.issuedAt.toISOString().replace(/\.\d+Z$/, 'Z'),
    };
    if (refresh) body.refresh_token = refresh;
    if (oauth) body.scope = scopes.join(' ');
    ctx.status = 200;
    ctx.set('Cache-Control', 'no-store');
    ctx.type = 'application/json; charset=utf-8';
    ctx.body = JSON.stringify(body);
  };

  // The audiences this index issues tokens for (spec §4.3): its own service (from configuration,
  // never the request's Host) and token_audiences. Another service is refused, as distribution's
  // token servers do, rather than answered with a token its registry would reject anyway.
  const serviceOf = (ctx: Context, asked: string | null | undefined): string => {
    const own = serviceFor(ctx, config);
    if (!asked || asked === own) return own;
    if (config.token_audiences.includes(asked)) return asked;
    throw new BadTokenRequest('invalid_request', `this token service issues no tokens for service ${JSON.stringify(asked)}`);
  };

  const guard = (fn: (ctx: Context) => Promise<void>) => async (ctx: Context) => {
    try {
      await fn(ctx);
    } catch (e) {
      if (e instanceof BadTokenRequest) {
        ctx.status = 400;
        ctx.type = 'application/json; charset=utf-8';
        ctx.body = JSON.stringify({ error: e.error, error_description: e.message });
        return;
      }
      const v = asV2(e);
      if (v instanceof V2Error) {
        renderV2(ctx, v);
        return;
      }
      throw v;
    }
  };

  router.get(
    TOKEN_PATH,
    guard(async (ctx) => {
      // the scopes are checked before the credentials (a bounded request before any work)
      const raw = ctx.query.scope;
      const scopes = scopeList(Array.isArray(raw) ? raw : typeof raw === 'string' ? [raw] : []);
      const auth = ctx.get('Authorization') || undefined;
      const user = await index.authenticate(auth, { address: clientAddress(ctx) });
      const account = typeof ctx.query.account === 'string' ? ctx.query.account : undefined;
      if (user && account && account !== user.username) throw new V2Error('UNAUTHORIZED', undefined, 'account does not match the credentials');
      const service = serviceOf(ctx, typeof ctx.query.service === 'string' ? ctx.query.service : undefined);
      const offline = ctx.query.offline_token === 'true';
      const refresh =
        offline && user ? await issuer.issueRefresh({ sub: user.username, uid: user.id, cred: await credentialStamp(index, user.id) }) : undefined;
      await respond(ctx, user, service, scopes, refresh, false);
    }),
  );

  router.post(
    TOKEN_PATH,
    guard(async (ctx) => {
      if (!/^application\/x-www-form-urlencoded/i.test(ctx.get('Content-Type'))) {
        throw new BadTokenRequest('invalid_request', 'expected an application/x-www-form-urlencoded body');
      }
      let form: URLSearchParams;
      try {
        form = new URLSearchParams((await readRawBody(ctx, 64 * 1024)).toString('utf8'));
      } catch (e) {
        if (e instanceof RegistryError && e.status === 413) throw new BadTokenRequest('invalid_request', 'form too large');
        throw e;
      }
      const grant = form.get('grant_type');
      const service = serviceOf(ctx, form.get('service'));
      if (!form.get('client_id')) throw new BadTokenRequest('invalid_request', 'client_id is required');
      const scopes = scopeList([form.get('scope') ?? '']);
      let user: User | undefined;
      let refresh: string | undefined;
      if (grant === 'password') {
        const username = form.get('username') ?? '';
        const password = form.get('password') ?? '';
        user = await index.authenticate(basicHeader(username, password), { address: clientAddress(ctx) });
        if (!user) throw new V2Error('UNAUTHORIZED', undefined, 'username and password required');
        if (form.get('access_type') === 'offline')
          refresh = await issuer.issueRefresh({ sub: user.username, uid: user.id, cred: await credentialStamp(index, user.id) });
      } else if (grant === 'refresh_token') {
        const token = form.get('refresh_token') ?? '';
        const claims = await issuer.verifyRefresh(token);
        const found = claims ? await index.findUser(claims.uid) : undefined;
        // Bound to the account: a deleted, renamed or deactivated account's token stops working, and
        // so does every token issued before a password change.
        if (!claims || !found || found.username !== claims.sub || claims.cred !== (await credentialStamp(index, found.id))) {
          throw new V2Error('UNAUTHORIZED', undefined, 'invalid refresh token');
        }
        if (!found.active) throw new V2Error('DENIED', undefined, 'Account is not Active');
        user = found;
        refresh = token;
      } else {
        throw new BadTokenRequest('unsupported_grant_type', 'grant_type must be password or refresh_token');
      }
      await respond(ctx, user, service, scopes, refresh, true);
    }),
  );

  router.get(JWKS_PATH, (ctx) => {
    ctx.status = 200;
    ctx.set('Cache-Control', 'max-age=300');
    ctx.type = 'application/json; charset=utf-8';
    ctx.body = JSON.stringify(jwksOf(issuer.key));
  });

  router.get(CERT_PATH, (ctx) => {
    if (!issuer.key.certificate) return;
    ctx.status = 200;
    ctx.type = 'application/x-pem-file';
    ctx.body = issuer.key.certificate;
  });

  return router;
}
