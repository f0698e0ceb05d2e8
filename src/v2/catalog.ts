import type { Context } from 'koa';
import { V2Error } from '../errors/v2.js';
import type { V2Deps } from './deps.js';
import { principalOf } from './request.js';

/** /v2/ (the API version check) and /v2/_catalog (the repositories the caller may see). */
export function catalogHandlers(deps: V2Deps) {
  /** GET/HEAD /v2/: 200 `{}` once the authorizer let the request in. */
  function apiBase(ctx: Context): void {
    ctx.status = 200;
    ctx.type = 'application/json; charset=utf-8';
    ctx.body = '{}';
  }

  /** GET/HEAD /v2/_catalog?n=&last=: names from the index database, storage or the remote index. */
  async function list(ctx: Context): Promise<void> {
    if (!deps.catalog) throw new V2Error('UNSUPPORTED', undefined, 'the catalog is not available on this node');
    const max = deps.config.catalog_max_entries;
    const nRaw = ctx.query.n;
    let n = max;
    if (nRaw !== undefined) {
      // distribution: n above catalog.maxentries (or not a number) is PAGINATION_NUMBER_INVALID
      if (typeof nRaw !== 'string' || !/^\d+$/.test(nRaw) || Number(nRaw) > max) throw new V2Error('PAGINATION_NUMBER_INVALID', { n: nRaw });
      n = Number(nRaw);
    }
    const last = typeof ctx.query.last === 'string' && ctx.query.last !== '' ? ctx.query.last : undefined;
    const principal = principalOf(ctx) ?? { account: null, admin: false };
    let repositories: string[] = [];
    try {
      if (n > 0) repositories = await deps.catalog.names(principal, last, n + 1, ctx.get('Authorization') || undefined);
    } catch (e) {
      // a split registry whose index is down or refuses: a v2 error, not a crash
      deps.log?.warn('catalog not available', { error: String(e) });
      throw new V2Error('UNAVAILABLE', undefined, 'the catalog is not available right now');
    }
    if (repositories.length > n) {
      repositories = repositories.slice(0, n);
      ctx.set('Link', `</v2/_catalog?last=${encodeURIComponent(repositories[n - 1]!)}&n=${n}>; rel="next"`);
    }
    ctx.status = 200;
    ctx.type = 'application/json; charset=utf-8';
    ctx.body = JSON.stringify({ repositories });
  }

  return { apiBase, list };
}
