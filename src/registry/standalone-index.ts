import { randomInt } from 'node:crypto';
import type { Context, Next } from 'koa';
import Router from '@koa/router';
import type { Config } from '../config/schema.js';
import { advertisedAuthority } from '../config/advertise.js';
import { boundPort } from '../auth/v2-registry-auth.js';
import { RegistryError } from '../errors/index.js';
import type { RepoName } from '../content/names.js';
import type { IndexImageEntry, V1Repositories } from '../content/v1-repositories.js';
import { jsonBody, parsedBody } from '../http/body.js';
import { clientImageEntries } from '../content/image-entries.js';
import { sendJson } from '../http/respond.js';
import { matchRepoRoute, repoName } from './routes.js';
import { basicChallenge, htpasswdUser, type HtpasswdGate } from '../auth/htpasswd.js';

const ALNUM = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789';

/**
 * X-Docker-Endpoints (spec §3.12, §3.14): the configured registry endpoints; else the Host the
 * client used only when it names this machine on our port, else the listen address
 * (config/advertise.ts). Clients push to every endpoint listed, so a name the client chose would
 * be echoed back as where its layers go.
 */
export function endpointsHeader(ctx: Context, config: Config): string {
  if (config.registry_endpoints?.length) return config.registry_endpoints.join(', ');
  return advertisedAuthority(config, ctx.get('Host'), boundPort(ctx, config));
}

/**
 * Token headers of the stand-in index. The signature is random and never checked (a standalone
 * registry checks no tokens); X-Docker-Token carries it without the `Token ` prefix (spec Q9).
 */
function setTokenHeaders(ctx: Context, config: Config, repo: RepoName, access: 'read' | 'write' | 'delete', gate?: HtpasswdGate): void {
  let token: string;
  if (gate) {
    // htpasswd mode: signed, so the registry routes can check it
    token = gate.signer.issue(repo.full, access, 0);
  } else {
    let sig = '';
    for (let i = 0; i < 16; i++) sig += ALNUM[randomInt(ALNUM.length)];
    token = `signature=${sig},repository="${repo.full}",access=${access}`;
  }
  ctx.set('X-Docker-Token', token);
  ctx.set('WWW-Authenticate', `Token ${token}`);
  ctx.set('X-Docker-Endpoints', endpointsHeader(ctx, config));
}

/** The entries of a PUT images as the stand-in index keeps them (id and checksum), refused as the index refuses them. */
function imageEntries(body: unknown): IndexImageEntry[] {
  return clientImageEntries(body).map(({ id, checksum }) => (checksum !== undefined ? { id, checksum } : { id }));
}

/** One search hit, in the index's form (spec §3.11); names keep their namespace (spec §2.19). */
export interface SearchResult {
  readonly name: string;
  readonly description: string;
  readonly star_count: number;
  readonly is_official: boolean;
  readonly is_trusted: boolean;
  readonly is_automated: boolean;
}

/** `n` and `page` as the index reads them (spec §3.11: clamp, never an error): 1…100 (25), ≥ 1 (1). */
export function searchPaging(n: unknown, page: unknown): { pageSize: number; page: number } {
  const size = Number(typeof n === 'string' ? n : 25);
  const p = Number(typeof page === 'string' ? page : 1);
  return {
    pageSize: Number.isFinite(size) ? Math.min(100, Math.max(1, Math.trunc(size))) : 25,
    page: Number.isFinite(p) ? Math.max(1, Math.trunc(p)) : 1,
  };
}

/**
 * The rank of a repository for a query, as the index's first tiers (src/db/search.ts): 0 the name or
 * `ns/name` equals it, 1 one of them starts with it, 2 `ns/name` contains it; undefined: no match.
 */
function searchTier(repo: RepoName, q: string): number | undefined {
  if (q === '') return 0;
  const full = repo.full.toLowerCase();
  const name = repo.repository.toLowerCase();
  if (name === q || full === q) return 0;
  if (name.startsWith(q) || full.startsWith(q)) return 1;
  return full.includes(q) ? 2 : undefined;
}

/**
 * The stand-in index of a standalone registry (spec §3.12, R21): enough of the index for a Docker 1.x
 * client to log in, push and pull against the registry alone. No credentials are checked, except
 * in htpasswd mode (`gate`): then logins, repository calls and search need Basic credentials from
 * the htpasswd file (a registry without an index has no other gate), accounts cannot be created,
 * and the tokens handed out are signed for the registry routes to check.
 */
export function standaloneIndexRouter(config: Config, repos: V1Repositories, gate?: HtpasswdGate): Router {
  const router = new Router();
  const limit = config.max_json_size;

  if (gate) {
    const login = async (ctx: Context): Promise<void> => {
      const auth = ctx.get('Authorization') || undefined;
      if (!(await htpasswdUser(gate, auth))) {
        throw new RegistryError('LOGIN_REQUIRED', auth ? 'Wrong login/password' : undefined, basicChallenge(gate.realm));
      }
    };
    router.get(['/v1/users', '/v1/users/'], async (ctx) => {
      await login(ctx);
      sendJson(ctx, 200, 'OK');
    });
    // 401 makes 1.x clients go on to GET /v1/users/ with Basic (spec §3.4)
    router.post(['/v1/users', '/v1/users/'], () => {
      throw new RegistryError('SIGNUP_DISABLED');
    });
    router.put('/v1/users/:username/', async (ctx) => {
      await login(ctx);
      throw new RegistryError('ACCESS_DENIED', 'Accounts are managed in the htpasswd file');
    });
    router.get('/v1/search', async (ctx, next) => {
      await login(ctx);
      return next();
    });
    router.all('/v1/repositories/*rest', async (ctx, next) => {
      await login(ctx);
      return next();
    });
  } else {
    router.get(['/v1/users', '/v1/users/'], (ctx) => sendJson(ctx, 200, 'OK'));
    router.post(['/v1/users', '/v1/users/'], jsonBody(limit, 'DECODE_JSON'), (ctx) => {
      if (parsedBody(ctx) === undefined) throw new RegistryError('DECODE_JSON');
      sendJson(ctx, 201, 'User Created');
    });
    router.put('/v1/users/:username/', (ctx) => sendJson(ctx, 204, ''));
  }

  // R20 / Q7: search answers in standalone mode, over the repositories in storage, with the index's
  // response shape, ranking and paging (spec §3.11) so clients page through it the same way.
  router.get('/v1/search', async (ctx) => {
    const query = typeof ctx.query.q === 'string' ? ctx.query.q : '';
    const q = query.trim().toLowerCase();
    const { pageSize, page } = searchPaging(ctx.query.n, ctx.query.page);
    const hits: { repo: RepoName; tier: number }[] = [];
    for await (const repo of repos.allRepositories()) {
      const tier = searchTier(repo, q);
      if (tier !== undefined) hits.push({ repo, tier });
    }
    const cmp = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);
    hits.sort((a, b) => a.tier - b.tier || cmp(a.repo.repository, b.repo.repository) || cmp(a.repo.namespace, b.repo.namespace));
    const results: SearchResult[] = hits.slice((page - 1) * pageSize, page * pageSize).map(({ repo }) => ({
      name: repo.full,
      description: '',
      star_count: 0,
      is_official: repo.namespace === 'library',
      is_trusted: false,
      is_automated: false,
    }));
    sendJson(ctx, 200, {
      num_pages: Math.ceil(hits.length / pageSize),
      num_results: hits.length,
      page,
      page_size: pageSize,
      query,
      results,
    });
  });

  const handler = async (ctx: Context, next: Next): Promise<void> => {
    const route = matchRepoRoute(ctx.path.slice('/v1/repositories/'.length));
    if (!route) return next();
    if (route.kind === 'root' && ctx.method === 'PUT') {
      const repo = repoName(route.repo);
      await jsonBody(limit, 'DECODE_JSON')(ctx, async () => undefined);
      await repos.mergeIndexImages(repo, imageEntries(parsedBody(ctx)));
      setTokenHeaders(ctx, config, repo, 'write', gate);
      sendJson(ctx, 200, '');
      return;
    }
    if (route.kind === 'images') {
      const repo = repoName(route.repo);
      if (ctx.method === 'PUT') {
        await jsonBody(limit, 'DECODE_JSON')(ctx, async () => undefined);
        await repos.mergeIndexImages(repo, imageEntries(parsedBody(ctx)));
        setTokenHeaders(ctx, config, repo, 'write', gate);
        ctx.status = 204;
        ctx.body = null;
        return;
      }
      if (ctx.method === 'GET' || ctx.method === 'HEAD') {
        const list = await repos.indexImages(repo);
        if (!list) throw new RegistryError('IMAGES_NOT_FOUND');
        setTokenHeaders(ctx, config, repo, 'read', gate);
        sendJson(ctx, 200, list);
        return;
      }
      if (ctx.method === 'DELETE') {
        setTokenHeaders(ctx, config, repo, 'delete', gate);
        ctx.status = 204;
        ctx.body = null;
        return;
      }
    }
    if (route.kind === 'auth' && ctx.method === 'PUT') {
      repoName(route.repo);
      sendJson(ctx, 200, 'OK');
      return;
    }
    return next();
  };
  router.all('/v1/repositories/*rest', handler);
  return router;
}
