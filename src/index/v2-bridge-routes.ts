import type { Context } from 'koa';
import Router from '@koa/router';
import type { V2TokenVerifier, VerifyResult } from '../auth/v2-jwt.js';
import type { V2Principal } from '../auth/v2-registry-auth.js';
import { missingAccess, type ResourceAccess } from '../auth/v2-scope.js';
import { IndexCatalog } from '../content/v2-catalog.js';
import { indexRepoName, type RepoName } from '../content/names.js';
import { parseV2Name } from '../content/v2-names.js';
import { readRawBody } from '../http/body.js';
import type { IndexService } from './service.js';
import type { Knex } from 'knex';

/** Paths a registry split from its index uses for the v2 catalog and for v2 push notices. */
export const INDEX_CATALOG_PATH = '/_index/v2/catalog';
export const INDEX_PUSHED_PATH = '/_index/v2/pushed';
export const INDEX_DELETED_PATH = '/_index/v2/deleted';

function deny(ctx: Context, status: number, message: string): void {
  ctx.status = status;
  ctx.type = 'application/json; charset=utf-8';
  ctx.body = JSON.stringify({ error: message });
}

/**
 * The index's side of a split deployment (issue 4): the catalog read from the index database for
 * the caller of the registry, and the registry's notices of a tagged v2 push and of tags deleted through v2. Both take the client's
 * v2 Bearer token as the registry received it, verified here with the index's own key and checked
 * for the access the registry required (registry:catalog:*, repository:<name>:push).
 */
export function v2BridgeRouter(
  db: Knex,
  index: IndexService,
  tokens: V2TokenVerifier,
  /** After a push was learnt: the index's webhooks (issue 15). */
  onPushed?: (repo: RepoName, tag: string, ids: readonly string[], account: string | null) => Promise<void>,
): Router {
  const router = new Router();
  const catalog = new IndexCatalog(db);

  /** The verified token of the request (401 when there is none or it is invalid). */
  async function verified(ctx: Context): Promise<VerifyResult | undefined> {
    const m = /^Bearer\s+(\S+)$/i.exec(ctx.get('Authorization'));
    if (!m) {
      deny(ctx, 401, 'a v2 Bearer token is required');
      return undefined;
    }
    const r = await tokens.verify(m[1]!, undefined);
    if (!r.ok) {
      deny(ctx, 401, r.reason);
      return undefined;
    }
    return r;
  }

  async function principal(ctx: Context, needs: ResourceAccess[], anonymousOk: boolean, known?: VerifyResult): Promise<V2Principal | undefined> {
    if (!known && anonymousOk && !/^Bearer\s/i.test(ctx.get('Authorization'))) return { account: null, admin: false };
    const r = known ?? (await verified(ctx));
    if (!r || !r.ok) return undefined;
    if (missingAccess(r.token.access, needs).length > 0) {
      deny(ctx, 403, 'the token does not grant this');
      return undefined;
    }
    return { account: r.token.account || null, admin: r.token.admin, ...(r.token.indexIssued ? { indexIssued: true } : {}) };
  }

  router.get(INDEX_CATALOG_PATH, async (ctx) => {
    const p = await principal(ctx, [{ type: 'registry', name: 'catalog', actions: ['*'] }], true);
    if (!p) return;
    const limit = Number(ctx.query.limit);
    const last = typeof ctx.query.last === 'string' && ctx.query.last !== '' ? ctx.query.last : undefined;
    if (!Number.isSafeInteger(limit) || limit < 0 || limit > 100_000) {
      deny(ctx, 400, 'limit must be a non-negative integer');
      return;
    }
    ctx.type = 'application/json; charset=utf-8';
    ctx.body = JSON.stringify({ repositories: await catalog.names(p, last, limit) });
  });

  router.post(INDEX_PUSHED_PATH, async (ctx) => {
    // the token first: nothing of the body is read for a caller without a valid one
    const token = await verified(ctx);
    if (!token) return;
    let body: { name?: unknown; tag?: unknown; topId?: unknown; images?: unknown };
    try {
      body = JSON.parse((await readRawBody(ctx, 1024 * 1024)).toString('utf8')) as typeof body;
    } catch {
      deny(ctx, 400, 'body must be JSON');
      return;
    }
    const name = typeof body.name === 'string' ? parseV2Name(body.name) : undefined;
    const repo = name ? indexRepoName(name) : undefined;
    const tag = typeof body.tag === 'string' ? body.tag : undefined;
    // the derived v1 chain, root first, with payload checksums; a lone topId from older registries
    const images: { id: string; checksum?: string }[] = [];
    let bad = false;
    if (Array.isArray(body.images)) {
      for (const e of body.images as unknown[]) {
        const o = e as { id?: unknown; checksum?: unknown } | null;
        const id = typeof o?.id === 'string' && /^[a-f0-9]{64}$/.test(o.id) ? o.id : undefined;
        const checksum = typeof o?.checksum === 'string' && /^[a-z0-9+.]+:[a-f0-9]{64}$/.test(o.checksum) ? o.checksum : undefined;
        if (!id || (o?.checksum !== undefined && !checksum)) bad = true;
        else images.push(checksum ? { id, checksum } : { id });
      }
    } else if (typeof body.topId === 'string' && /^[a-f0-9]{64}$/.test(body.topId)) {
      images.push({ id: body.topId });
    }
    if (!name || !repo || !tag || bad) {
      deny(ctx, 400, bad ? 'images: a list of {id, checksum}' : 'name and tag are required');
      return;
    }
    const p = await principal(ctx, [{ type: 'repository', name, actions: ['push'] }], false, token);
    if (!p) return;
    await index.learnV2Push(p.account, repo, tag, images, { admin: p.admin });
    await onPushed?.(
      repo,
      tag,
      images.map((i) => i.id),
      p.account,
    );
    ctx.status = 204;
  });
  router.post(INDEX_DELETED_PATH, async (ctx) => {
    const token = await verified(ctx);
    if (!token) return;
    let body: { name?: unknown; tags?: unknown };
    try {
      body = JSON.parse((await readRawBody(ctx, 64 * 1024)).toString('utf8')) as typeof body;
    } catch {
      deny(ctx, 400, 'body must be JSON');
      return;
    }
    const name = typeof body.name === 'string' ? parseV2Name(body.name) : undefined;
    const repo = name ? indexRepoName(name) : undefined;
    const tags = Array.isArray(body.tags) ? body.tags.filter((t): t is string => typeof t === 'string') : [];
    if (!name || !repo || tags.length === 0) {
      deny(ctx, 400, 'name and tags are required');
      return;
    }
    const p = await principal(ctx, [{ type: 'repository', name, actions: ['delete'] }], false, token);
    if (!p) return;
    await index.forgetV2Tags(repo, tags);
    ctx.status = 204;
  });
  return router;
}
