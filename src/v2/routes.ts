import type { Context, Next } from 'koa';
import { V2Error } from '../errors/v2.js';
import { V2_OPEN } from '../auth/v2-registry-auth.js';
import type { ResourceAccess } from '../auth/v2-scope.js';
import type { V2Deps } from './deps.js';
import { digestParam, reference, renderV2Error, repoRequest, scopeName, v2Name, type RepoRequest, type V2Route, type V2RouteOf } from './request.js';
import { catalogHandlers } from './catalog.js';
import { blobHandlers } from './blobs.js';
import { uploadHandlers } from './uploads.js';
import { manifestHandlers } from './manifests.js';
import { tagHandlers } from './tags.js';
import { referrerHandlers } from './referrers.js';

export type { V2Deps, V2IndexHook } from './deps.js';
export type { V2Route } from './request.js';
export { replayIndexNotices } from './index-notices.js';

const API_VERSION = 'registry/2.0';

/** Split a /v2/ path by the last route keyword (spec §1.1: names contain '/'). */
export function matchV2(path: string): V2Route | undefined {
  if (path === '/v2' || path === '/v2/') return { kind: 'base' };
  if (path === '/v2/_catalog') return { kind: 'catalog' };
  if (!path.startsWith('/v2/')) return undefined;
  const rest = path.slice(4);
  let m = /^(.+)\/blobs\/uploads\/?$/.exec(rest);
  if (m) return { kind: 'uploads', name: m[1]! };
  m = /^(.+)\/blobs\/uploads\/([^/]+)$/.exec(rest);
  if (m) return { kind: 'upload', name: m[1]!, uuid: m[2]! };
  m = /^(.+)\/blobs\/([^/]+)$/.exec(rest);
  if (m) return { kind: 'blob', name: m[1]!, digest: m[2]! };
  m = /^(.+)\/manifests\/([^/]+)$/.exec(rest);
  if (m) return { kind: 'manifest', name: m[1]!, reference: m[2]! };
  m = /^(.+)\/tags\/list$/.exec(rest);
  if (m) return { kind: 'tags', name: m[1]! };
  m = /^(.+)\/referrers\/([^/]+)$/.exec(rest);
  if (m) return { kind: 'referrers', name: m[1]!, digest: m[2]! };
  return { kind: 'other', name: rest };
}

/**
 * The access a request needs (spec §4.4, distribution app.go): GET/HEAD pull; POST/PUT/PATCH pull
 * and push; DELETE delete; a cross-repository mount also pull on `from`; the catalog
 * registry:catalog:*; `/v2/` only a valid token.
 */
export function requiredAccess(route: V2Route, method: string, query: Record<string, string | string[] | undefined>): ResourceAccess[] {
  if (route.kind === 'base') return [];
  if (route.kind === 'catalog') return [{ type: 'registry', name: 'catalog', actions: ['*'] }];
  // The path's name, tag and digest are checked here, before authentication (STYLE: validate
  // parameters, then authenticate): the name goes into the challenge's scope, and a control
  // character there made setting WWW-Authenticate throw (a 500; security issue 10, finding 11).
  const name = v2Name(route.name);
  // a GET/HEAD of a reference off both grammars is a 404 after authentication (OCI conformance:
  // "nonexistent manifest"); the reference never reaches a header
  if (route.kind === 'manifest' && method !== 'GET' && method !== 'HEAD') reference(route.reference, false);
  if (route.kind === 'blob' || route.kind === 'referrers') digestParam(route.digest);
  let actions: string[];
  if (method === 'GET' || method === 'HEAD') actions = ['pull'];
  else if (method === 'DELETE') actions = ['delete'];
  else actions = ['pull', 'push'];
  const needs: ResourceAccess[] = [{ type: 'repository', name, actions }];
  if (route.kind === 'uploads' && method === 'POST' && typeof query.mount === 'string' && typeof query.from === 'string') {
    // a `from` that is no repository name cannot be mounted from: the request is an ordinary upload
    const from = scopeName(query.from);
    if (from !== undefined && from !== name) needs.push({ type: 'repository', name: from, actions: ['pull'] });
  }
  return needs;
}

type Handler<R> = (ctx: Context, req: R) => Promise<void> | void;
type RepoKind = Exclude<V2Route['kind'], 'base' | 'catalog'>;
/** Per route, per method, the handler; a method not listed answers UNSUPPORTED (405 in distribution's table). */
type RouteTable = { [K in 'base' | 'catalog']: Partial<Record<string, Handler<unknown>>> } & {
  [K in RepoKind]: Partial<Record<string, Handler<RepoRequest<V2RouteOf<K>>>>>;
};

/** The method's handler of a route (own keys only: no method name reaches Object.prototype). */
function handlerFor<R>(methods: Partial<Record<string, Handler<R>>>, method: string): Handler<R> {
  const h = Object.hasOwn(methods, method) ? methods[method] : undefined;
  if (!h) throw new V2Error('UNSUPPORTED');
  return h;
}

/**
 * The v2 / OCI distribution API (spec v2-bridge §1), one module per resource: catalog.ts (`/v2/`,
 * `_catalog`), blobs.ts, uploads.ts, manifests.ts, tags.ts, referrers.ts; the table below names
 * each handler. Only enabled with `v2: true`. Every request is authorised first by `deps.auth`
 * (Bearer tokens of the index, htpasswd, or nothing on a standalone registry; src/main.ts chooses),
 * then a repository route has its name checked and mirrored names are read-only (request.ts).
 */
export function v2Routes(deps: V2Deps) {
  const catalog = catalogHandlers(deps);
  const blobs = blobHandlers(deps);
  const uploads = uploadHandlers(deps);
  const manifests = manifestHandlers(deps);
  const tags = tagHandlers(deps);
  const referrers = referrerHandlers(deps);
  const unknownName = (_ctx: Context, { route }: RepoRequest<V2RouteOf<'other'>>): never => {
    throw new V2Error('NAME_UNKNOWN', { name: route.name });
  };

  const ROUTES: RouteTable = {
    base: { GET: catalog.apiBase, HEAD: catalog.apiBase },
    catalog: { GET: catalog.list, HEAD: catalog.list },
    blob: { GET: blobs.get, HEAD: blobs.get, DELETE: blobs.delete },
    uploads: { POST: uploads.start },
    // HEAD answers the status as GET does (distribution's blobUploadDispatcher)
    upload: { GET: uploads.status, HEAD: uploads.status, PATCH: uploads.append, PUT: uploads.finish, DELETE: uploads.cancel },
    manifest: { GET: manifests.get, HEAD: manifests.get, PUT: manifests.put, DELETE: manifests.delete },
    tags: { GET: tags.list, HEAD: tags.list },
    referrers: { GET: referrers.list, HEAD: referrers.list },
    other: { GET: unknownName, HEAD: unknownName },
  };

  async function handle(ctx: Context, route: V2Route): Promise<void> {
    if (route.kind === 'base' || route.kind === 'catalog') {
      await handlerFor(ROUTES[route.kind], ctx.method)(ctx, undefined);
      return;
    }
    const req = repoRequest(ctx, route, deps);
    await handlerFor(ROUTES[route.kind] as Partial<Record<string, Handler<RepoRequest>>>, ctx.method)(ctx, req);
  }

  return async (ctx: Context, next: Next): Promise<void> => {
    // containerd's mirror requests carry ?ns=<upstream host>: the name is read under that upstream's prefix
    const ns = deps.mirror && typeof ctx.query.ns === 'string' ? deps.mirror.nsPrefix(ctx.query.ns) : undefined;
    if (ns && ctx.path.startsWith('/v2/') && ctx.path !== '/v2/_catalog' && ctx.path.length > 4) ctx.path = `/v2/${ns}${ctx.path.slice(4)}`;
    const route = matchV2(ctx.path);
    if (!route) return next();
    ctx.set('Docker-Distribution-API-Version', API_VERSION);
    try {
      // Authenticate and authorise first (STYLE: at the edge), then the handlers see a principal.
      ctx.state.v2Principal = await (deps.auth ?? V2_OPEN).authorize(ctx, requiredAccess(route, ctx.method, ctx.query));
      await handle(ctx, route);
    } catch (e) {
      if (e instanceof V2Error) {
        renderV2Error(ctx, e);
        return;
      }
      throw e;
    }
  };
}
