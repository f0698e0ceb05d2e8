import type { Context, Next } from 'koa';
import Router from '@koa/router';
import type { Config } from '../config/schema.js';
import { RegistryError } from '../errors/index.js';
import type { RepoName } from '../content/names.js';
import { addComment, findRepository, listComments, saveRepository, starRepository, unstarRepository } from '../db/repositories.js';
import { searchRepositories } from '../db/search.js';
import { findUserByName, setPassword, saveUser } from '../db/users.js';
import type { V1Access } from '../auth/v1-token.js';
import { jsonBody, parsedBody, readJsonBody, SMALL_JSON_LIMIT } from '../http/body.js';
import { sendJson } from '../http/respond.js';
import { clientAddress } from '../http/app.js';
import { decodePath, matchRepoRoute, repoName } from '../registry/routes.js';
import { indexRepoName, parseRepoName, parseTag } from '../content/names.js';
import { endpointsHeader } from '../registry/standalone-index.js';
import { isValidEmail, type IndexService } from './service.js';
import { CONTROL_CHARS } from '../util/text.js';
import { isImageId } from '../digest/digest.js';
import { clientImageEntries } from '../content/image-entries.js';

/** Where a registry in another process reports v1 checksums. */
export const INDEX_CHECKSUM_PATH = '/_index/v1/checksums';
/** Where a registry in another process reports a v1 tag push (the index fires its webhooks). */
export const INDEX_V1_PUSHED_PATH = '/_index/v1/pushed';
/** Longest v1 chain a push notice may name (Docker 1.x refused images deeper than 127 layers). */
export const MAX_NOTICE_CHAIN = 1000;

/** The id of a journalled notice (a uuid; the registry's journal key). */
const NOTICE_ID = /^[0-9a-f][0-9a-f-]{7,63}$/;

const BASIC_CHALLENGE = { 'WWW-Authenticate': 'Basic realm="auth required",Token' };

/**
 * The index API (spec §3): users, repositories and their image lists, tokens, layer access, search,
 * plus stars and comments (JSON routes of our own, for the web UI).
 */
export interface IndexRouterOptions {
  /** Answer /_ping and /v1/_ping (an index in its own process). */
  readonly ping: boolean;
  /**
   * Remove what storage holds of a repository (v1 tags and images, v2 manifests and tags), when the
   * registry runs in this process: a deleted repository is gone from both APIs at once.
   */
  readonly removeContent?: (name: RepoName) => Promise<void>;
  /**
   * A v1 tag push a registry in another process reports (`POST /_index/v1/pushed`), once the index
   * has checked the push's write token: the index's webhooks (issue 15). `pusher` is the token's account;
   * `noticeId`: the notice's id in the registry's journal (replayed until answered), fired at most once.
   */
  readonly onV1Push?: (name: RepoName, tag: string, chain: readonly string[], pusher: string | null, noticeId?: string) => Promise<unknown>;
}

export function indexRouter(config: Config, index: IndexService, opts: IndexRouterOptions): Router {
  const router = new Router();
  const limit = config.max_json_size;

  if (opts.ping) {
    // I1: a 1.x client uses tokens only when the index says it is not standalone (spec §3.2).
    const ping = (ctx: Context): void => {
      ctx.set('X-Docker-Registry-Standalone', 'False');
      sendJson(ctx, 200, {});
    };
    router.get('/_ping', ping);
    router.get('/v1/_ping', ping);
  }

  const giveToken = async (ctx: Context, name: RepoName, access: V1Access, userId: Parameters<IndexService['token']>[2]): Promise<void> => {
    ctx.set('X-Docker-Endpoints', endpointsHeader(ctx, config));
    if (ctx.get('X-Docker-Token').toLowerCase() === 'true' || access !== 'read') {
      const token = await index.token(name, access, userId);
      ctx.set('X-Docker-Token', token);
      ctx.set('WWW-Authenticate', `Token ${token}`);
    }
  };

  /** Basic credentials of the request, throttled per account and client address (db/users.ts). */
  const authenticate = (ctx: Context) => index.authenticate(ctx.get('Authorization') || undefined, { address: clientAddress(ctx) });

  const requireUser = async (ctx: Context) => {
    const user = await authenticate(ctx);
    if (!user) throw new RegistryError('LOGIN_REQUIRED', undefined, BASIC_CHALLENGE);
    return user;
  };

  // I2: no credentials to check first; the body of a signup is tiny (security issue 10, finding 9)
  router.post(['/v1/users', '/v1/users/'], jsonBody(SMALL_JSON_LIMIT, 'DECODE_JSON'), async (ctx) => {
    await index.signup(parsedBody(ctx));
    sendJson(ctx, 201, 'User Created');
  });

  // I3
  router.get(['/v1/users', '/v1/users/'], async (ctx) => {
    await requireUser(ctx);
    sendJson(ctx, 200, 'OK');
  });

  // I4: credentials and the right to change the account first, then the (tiny) body
  router.put('/v1/users/:username/', async (ctx) => {
    const user = await requireUser(ctx);
    const target = String(ctx.params.username);
    if (target !== user.username && !user.admin) throw new RegistryError('ACCESS_DENIED');
    const body = await readJsonBody(ctx, SMALL_JSON_LIMIT, 'DECODE_JSON');
    if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new RegistryError('USER_INVALID', 'Invalid JSON body');
    const { email, password } = body as Record<string, unknown>;
    const targetUser = target === user.username ? user : await findUserByName(index.db, target);
    if (!targetUser) throw new RegistryError('USER_NOT_FOUND');
    if (password !== undefined) {
      if (typeof password !== 'string' || password.length < 5) throw new RegistryError('USER_INVALID', 'Invalid password: at least 5 characters');
      await setPassword(index.db, targetUser.id, password);
    }
    if (email !== undefined) {
      // as at signup (a NUL had answered as a taken address)
      if (typeof email !== 'string' || !isValidEmail(email)) throw new RegistryError('USER_INVALID', 'Invalid email address');
      try {
        await saveUser(index.db, { id: targetUser.id, email });
      } catch {
        throw new RegistryError('USER_EXISTS');
      }
    }
    ctx.status = 204;
    ctx.body = null;
  });

  // I12
  router.get('/v1/search', async (ctx) => {
    const user = await authenticate(ctx);
    const q = typeof ctx.query.q === 'string' ? ctx.query.q : '';
    const n = Number(typeof ctx.query.n === 'string' ? ctx.query.n : 25);
    const p = Number(typeof ctx.query.page === 'string' ? ctx.query.page : 1);
    const pageSize = Number.isFinite(n) ? Math.min(100, Math.max(1, Math.trunc(n))) : 25;
    const page = Number.isFinite(p) ? Math.max(1, Math.trunc(p)) : 1;
    // No name or description holds a control character, so such a query matches nothing (it used
    // to reach the search as an empty one and list everything; security issue 10, finding 12).
    const res = CONTROL_CHARS.test(q)
      ? { total: 0, results: [] }
      : await searchRepositories(index.db, {
          query: q,
          page,
          pageSize,
          visibleTo: user ? { userId: user.id, admin: user.admin } : {},
        });
    sendJson(ctx, 200, {
      num_pages: Math.ceil(res.total / pageSize),
      num_results: res.total,
      page,
      page_size: pageSize,
      query: q,
      results: res.results.map((r) => ({
        name: r.namespace === 'library' ? r.name : `${r.namespace}/${r.name}`,
        description: r.description,
        star_count: r.star_count,
        is_official: r.namespace === 'library',
        is_trusted: false,
        is_automated: false,
      })),
    });
  });

  const repositories = async (ctx: Context, next: Next): Promise<void> => {
    const route = matchRepoRoute(ctx.path.slice('/v1/repositories/'.length));
    if (!route) return next();
    const auth = ctx.get('Authorization');
    const isToken = /^\s*token\b/i.test(auth);
    switch (route.kind) {
      case 'root': {
        if (ctx.method === 'PUT') {
          // I5
          const name = repoName(route.repo);
          const user = await requireUser(ctx);
          await jsonBody(limit, 'INVALID_DATA')(ctx, async () => undefined);
          await index.claim(user, name, clientImageEntries(parsedBody(ctx)));
          await giveToken(ctx, name, 'write', user);
          sendJson(ctx, 200, '');
          return;
        }
        if (ctx.method === 'DELETE' && !isToken) {
          // I6 (a DELETE with a Token is the registry's R17)
          const name = repoName(route.repo);
          const user = await requireUser(ctx);
          const what = await index.deleteRepository(user, name);
          if (opts.removeContent) await opts.removeContent(name);
          await giveToken(ctx, name, 'delete', user);
          sendJson(ctx, what === 'marked' ? 202 : 200, '');
          return;
        }
        break;
      }
      case 'images': {
        const name = repoName(route.repo);
        if (ctx.method === 'PUT') {
          // I7
          const user = await requireUser(ctx);
          await jsonBody(limit, 'INVALID_DATA')(ctx, async () => undefined);
          await index.finishPush(user, name, clientImageEntries(parsedBody(ctx)));
          ctx.status = 204;
          ctx.body = null;
          return;
        }
        if (ctx.method === 'GET' || ctx.method === 'HEAD') {
          // I8: a client pulling (anonymous or Basic), or a registry validating a token
          if (isToken) {
            const valid = await index.tokenFor(auth, name);
            if (!valid) throw new RegistryError('REQUIRES_AUTHORIZATION', undefined, { 'WWW-Authenticate': 'Token' });
            sendJson(
              ctx,
              200,
              (await index.images(valid.repo)).map((i) => ({ id: i.id, ...(i.checksum ? { checksum: i.checksum } : {}) })),
            );
            return;
          }
          const user = await authenticate(ctx);
          const repo = await index.repository(name);
          const rights = await index.rights(user, name, repo);
          if (!repo || !rights.read) {
            // one answer for "absent" and "not yours" (issue 10): anonymous callers are asked to log
            // in either way, accounts are told it is not there
            if (!user) throw new RegistryError('LOGIN_REQUIRED', undefined, BASIC_CHALLENGE);
            throw new RegistryError('REPOSITORY_NOT_FOUND');
          }
          await giveToken(ctx, name, 'read', user);
          sendJson(
            ctx,
            200,
            (await index.images(repo)).map((i) => ({ id: i.id, ...(i.checksum ? { checksum: i.checksum } : {}) })),
          );
          return;
        }
        if (ctx.method === 'DELETE') {
          // I9: a delete token, without deleting anything (spec §5.6)
          const user = await requireUser(ctx);
          const repo = await index.repository(name);
          const rights = await index.rights(user, name, repo);
          // a repository the caller may not read is "not found", as one that does not exist
          if (!repo || !rights.read) throw new RegistryError('REPOSITORY_NOT_FOUND');
          if (!rights.delete) throw new RegistryError('ACCESS_DENIED');
          await giveToken(ctx, name, 'delete', user);
          ctx.status = 204;
          ctx.body = null;
          return;
        }
        break;
      }
      case 'auth': {
        if (ctx.method !== 'PUT') break;
        // I10: confirm a delete token
        const name = repoName(route.repo);
        const valid = await index.tokenFor(auth, name);
        if (!valid) throw new RegistryError('ACCESS_DENIED');
        if (valid.claims.access !== 'delete') throw new RegistryError('ACCESS_DENIED');
        sendJson(ctx, 200, 'OK');
        return;
      }
      case 'properties': {
        // The private flag lives in the index (it decides who sees what). Basic credentials: the
        // index answers; a Token: the registry's R18/R19.
        if (isToken) break;
        // any name the index keeps: v1 names and longer v2 names (owner/team/app)
        const name = indexRepoName(decodePath(route.repo).replace(/\/+$/, ''));
        if (!name) throw new RegistryError('INVALID_REPOSITORY_NAME');
        const user = await authenticate(ctx);
        const repo = await index.repository(name);
        const rights = await index.rights(user, name, repo);
        if (!repo || !rights.read) {
          if (!user) throw new RegistryError('LOGIN_REQUIRED', undefined, BASIC_CHALLENGE);
          throw new RegistryError('REPOSITORY_NOT_FOUND');
        }
        if (ctx.method === 'GET' || ctx.method === 'HEAD') {
          sendJson(ctx, 200, { access: repo.private ? 'private' : 'public', description: repo.description });
          return;
        }
        if (ctx.method === 'PUT') {
          if (!user) throw new RegistryError('LOGIN_REQUIRED', undefined, BASIC_CHALLENGE);
          if (!rights.delete) throw new RegistryError('ACCESS_DENIED');
          await jsonBody(limit, 'INVALID_DATA')(ctx, async () => undefined);
          const body = parsedBody(ctx) as { access?: unknown; description?: unknown } | undefined;
          if (!body || typeof body !== 'object' || Array.isArray(body)) throw new RegistryError('INVALID_DATA');
          const { access, description } = body;
          if (access !== undefined && access !== 'private' && access !== 'public') throw new RegistryError('INVALID_DATA');
          if (description !== undefined && (typeof description !== 'string' || description.length > 1000)) throw new RegistryError('INVALID_DATA');
          if (access === undefined && description === undefined) throw new RegistryError('INVALID_DATA');
          await saveRepository(index.db, {
            namespace: name.namespace,
            name: name.repository,
            ...(access !== undefined ? { private: access === 'private' } : {}),
            ...(typeof description === 'string' ? { description } : {}),
          });
          sendJson(ctx, 200, true);
          return;
        }
        break;
      }
      case 'layerAccess': {
        if (ctx.method !== 'GET') break;
        // I11
        const name = repoName(route.repo);
        const claims = index.signer.verify(auth || undefined);
        const valid = claims !== undefined && claims.repository === name.full && isImageId(route.id) ? await index.tokenFor(auth, name) : undefined;
        const repositories = valid ? await index.linkSources(valid.claims, route.id) : [];
        sendJson(ctx, 200, { access: repositories.length > 0, repositories });
        return;
      }
      default:
        break;
    }
    return next();
  };
  router.all('/v1/repositories/*rest', repositories);

  // A split registry tells the index the checksum of each v1 image it verified (issue 11), with the
  // push's write token; the index checks the token for the repository named.
  router.post(INDEX_CHECKSUM_PATH, async (ctx) => {
    const auth = ctx.get('Authorization') || undefined;
    if (!auth || !/^\s*token\b/i.test(auth)) throw new RegistryError('REQUIRES_AUTHORIZATION', undefined, { 'WWW-Authenticate': 'Token' });
    await jsonBody(64 * 1024, 'INVALID_DATA')(ctx, async () => undefined);
    const body = parsedBody(ctx) as { name?: unknown; id?: unknown; checksum?: unknown } | undefined;
    const name = typeof body?.name === 'string' ? parseRepoName(body.name) : undefined;
    const id = body?.id;
    const checksum = body?.checksum;
    if (!name || typeof id !== 'string' || !isImageId(id) || typeof checksum !== 'string' || !/^sha256:[a-f0-9]{64}$/.test(checksum)) {
      throw new RegistryError('INVALID_DATA');
    }
    if (!(await index.learnChecksum(auth, name, id, checksum))) throw new RegistryError('ACCESS_DENIED');
    ctx.status = 204;
    ctx.body = null;
  });

  // A split registry tells the index of each v1 tag push (issue 15) with the push's write token, so
  // the index fires the repository's webhooks as it does in one process. Only the holder of a write
  // token for that very repository (the registry forwards the client's) gets past the check: the
  // repository must exist and the token's account must still be able to write it. The answer names
  // the pusher (the registry's distribution events carry it as actor.name).
  router.post(INDEX_V1_PUSHED_PATH, async (ctx) => {
    const auth = ctx.get('Authorization') || undefined;
    if (!auth || !/^\s*token\b/i.test(auth)) throw new RegistryError('REQUIRES_AUTHORIZATION', undefined, { 'WWW-Authenticate': 'Token' });
    // nothing of the body is read for a token this index did not sign
    if (!index.signer.verify(auth)) throw new RegistryError('REQUIRES_AUTHORIZATION', undefined, { 'WWW-Authenticate': 'Token' });
    await jsonBody(128 * 1024, 'INVALID_DATA')(ctx, async () => undefined);
    const body = parsedBody(ctx) as { name?: unknown; tag?: unknown; images?: unknown; notice?: unknown } | undefined;
    const name = typeof body?.name === 'string' ? parseRepoName(body.name) : undefined;
    const tag = typeof body?.tag === 'string' ? parseTag(body.tag) : undefined;
    const chain = body?.images;
    if (
      !name ||
      !tag ||
      !Array.isArray(chain) ||
      chain.length === 0 ||
      chain.length > MAX_NOTICE_CHAIN ||
      !chain.every((id): id is string => typeof id === 'string' && isImageId(id)) ||
      (body?.notice !== undefined && (typeof body.notice !== 'string' || !NOTICE_ID.test(body.notice)))
    ) {
      throw new RegistryError('INVALID_DATA');
    }
    const valid = await index.tokenFor(auth, name);
    if (!valid || valid.claims.access !== 'write') throw new RegistryError('ACCESS_DENIED');
    const pusher = (await index.findUser(valid.claims.userId))?.username ?? null;
    await opts.onV1Push?.(name, tag, chain, pusher, typeof body?.notice === 'string' ? body.notice : undefined);
    sendJson(ctx, 200, { pusher });
  });

  // Stars and comments (our own JSON routes).
  const visibleRepo = async (ctx: Context) => {
    const name = repoName(String(ctx.params.ns) + '/' + String(ctx.params.repo));
    const user = await authenticate(ctx);
    const repo = await findRepository(index.db, name.namespace, name.repository);
    if (!repo || !(await index.rights(user, name, repo)).read) throw new RegistryError('REPOSITORY_NOT_FOUND');
    return { user, repo };
  };
  router.put('/v1/stars/:ns/:repo', async (ctx) => {
    const { user, repo } = await visibleRepo(ctx);
    if (!user) throw new RegistryError('LOGIN_REQUIRED', undefined, BASIC_CHALLENGE);
    await starRepository(index.db, repo.id, user.id);
    sendJson(ctx, 200, { starred: true });
  });
  router.delete('/v1/stars/:ns/:repo', async (ctx) => {
    const { user, repo } = await visibleRepo(ctx);
    if (!user) throw new RegistryError('LOGIN_REQUIRED', undefined, BASIC_CHALLENGE);
    await unstarRepository(index.db, repo.id, user.id);
    sendJson(ctx, 200, { starred: false });
  });
  router.get('/v1/comments/:ns/:repo', async (ctx) => {
    const { repo } = await visibleRepo(ctx);
    const page = await listComments(index.db, repo.id, { page: Number(ctx.query.page ?? 1) || 1, pageSize: Number(ctx.query.n ?? 25) || 25 });
    sendJson(ctx, 200, page);
  });
  router.post('/v1/comments/:ns/:repo', async (ctx) => {
    const { user, repo } = await visibleRepo(ctx);
    if (!user) throw new RegistryError('LOGIN_REQUIRED', undefined, BASIC_CHALLENGE);
    // the body is read only for a signed-in reader of the repository (security issue 10, finding 9)
    const body = (await readJsonBody(ctx, SMALL_JSON_LIMIT, 'INVALID_DATA')) as { body?: unknown } | undefined;
    // no NUL, as in the web UI's form (PostgreSQL refuses it: it was a 500 there)
    if (!body || typeof body.body !== 'string' || body.body.trim() === '' || body.body.length > 10000 || body.body.includes('\0'))
      throw new RegistryError('INVALID_DATA');
    const c = await addComment(index.db, repo.id, user.id, body.body);
    sendJson(ctx, 201, c);
  });

  return router;
}
