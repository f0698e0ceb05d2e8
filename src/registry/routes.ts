import { KeyedMutex } from '../content/mutex.js';
import type { Context, Middleware, Next } from 'koa';
import Router from '@koa/router';
import type { RegistryDeps } from './deps.js';
import { v1Access } from './access.js';
import { decodePath, matchRepoRoute, repoName, type RepoRoute, type RepoRouteOf } from './paths.js';
import { pingHandlers } from './ping.js';
import { imageHandlers } from './images.js';
import { tagHandlers } from './tags.js';
import { repositoryHandlers } from './repositories.js';

export type { RegistryDeps, V1Events, V1IndexHook } from './deps.js';
export { decodePath, matchRepoRoute, repoName } from './paths.js';
export { standaloneHeader } from './ping.js';

type RepoHandler<K extends RepoRoute['kind']> = (ctx: Context, route: RepoRouteOf<K>) => Promise<void>;
/** Per /v1/repositories/ route, per method (HEAD served as GET), the handler; others go to the next router. */
type RepoTable = { [K in RepoRoute['kind']]: Partial<Record<'GET' | 'PUT' | 'DELETE', RepoHandler<K>>> };

/**
 * Routes whose repository name (and tag) is checked before the method, as the Python registry's
 * routes did: a malformed name there is a 400 whatever the method.
 */
const NAME_BEFORE_METHOD: ReadonlySet<RepoRoute['kind']> = new Set(['tags', 'tag', 'properties']);

/**
 * The v1 registry API (spec §2), one module per resource: ping.ts, images.ts (R3–R10), tags.ts
 * (R11–R16), repositories.ts (R17, json, properties); the tables below name each handler.
 * The index's routes on /v1/repositories/ (images, auth, layer access) are src/index/routes.ts.
 */
export function registryRouter(deps: RegistryDeps): Middleware {
  const repoLock = deps.repoLock ?? new KeyedMutex();
  const v1 = v1Access(deps);
  const ping = pingHandlers(deps);
  const images = imageHandlers(deps, v1, repoLock);
  const tags = tagHandlers(deps, v1, repoLock);
  const repositories = repositoryHandlers(deps, v1, repoLock);
  const router = new Router();

  router.get('/', ping.root);
  router.get('/_ping', ping.ping);
  router.get('/v1/_ping', ping.ping);
  router.get('/_status', ping.status);
  router.get('/v1/_status', ping.status);

  // /v1/images/<id>/<resource>, per method (HEAD served as GET)
  const IMAGE_ROUTES: Record<string, Partial<Record<'GET' | 'PUT', (ctx: Context) => Promise<void>>>> = {
    json: { GET: images.getJson, PUT: images.putJson }, // R3, R4
    layer: { GET: images.getLayer, PUT: images.putLayer }, // R5, R6
    checksum: { PUT: images.putChecksum }, // R7
    ancestry: { GET: images.getAncestry }, // R8
    files: { GET: images.getFiles }, // R9
    diff: { GET: images.getDiff }, // R10
  };

  // R11–R19 on /v1/repositories/<repo>/…, split greedily (names contain '/': paths.ts)
  const REPOSITORY_ROUTES: RepoTable = {
    tags: { GET: tags.list, DELETE: repositories.delete },
    tag: { GET: tags.get, PUT: tags.put, DELETE: tags.delete },
    tagJson: { GET: tags.json },
    json: { GET: repositories.json },
    properties: { GET: repositories.getProperties, PUT: repositories.putProperties },
    root: { DELETE: repositories.delete },
    // the index's (src/index/routes.ts)
    images: {},
    auth: {},
    layerAccess: {},
  };

  const repositoryRoutes = async (ctx: Context, next: Next): Promise<void> => {
    const route = matchRepoRoute(ctx.path.slice('/v1/repositories/'.length));
    if (!route) return next();
    if (NAME_BEFORE_METHOD.has(route.kind)) {
      repoName(route.repo);
      if (route.kind === 'tag') decodePath(route.tag);
    }
    const method = ctx.method === 'HEAD' ? 'GET' : ctx.method;
    const methods = REPOSITORY_ROUTES[route.kind] as Partial<Record<string, RepoHandler<RepoRoute['kind']>>>;
    const handler = Object.hasOwn(methods, method) ? methods[method] : undefined;
    if (!handler) return next();
    await handler(ctx, route);
  };

  /**
   * The image and repository routes, dispatched here rather than through @koa/router: it builds
   * and composes a middleware chain for every request it matches (~3 µs of a ~38 µs v1 tags GET,
   * bench 2026-12-05). Matching as @koa/router's did for `/v1/images/:id/json` and
   * `/v1/repositories/*rest`: case-insensitive, one optional trailing slash, the id percent-decoded
   * (left as it is when that fails), HEAD served by the GET handler; anything else goes on.
   */
  const routes = router.routes() as unknown as Middleware;
  return async (ctx: Context, next: Next): Promise<void> => {
    const path = ctx.path;
    if (path.length > REPOSITORIES.length && path.slice(0, REPOSITORIES.length).toLowerCase() === REPOSITORIES) {
      await repositoryRoutes(ctx, next);
      return;
    }
    const m = IMAGE_PATH.exec(path);
    if (m) {
      const methods = IMAGE_ROUTES[m[2]!.toLowerCase()]!;
      const method = ctx.method === 'HEAD' ? 'GET' : ctx.method;
      const handler = method === 'GET' || method === 'PUT' ? methods[method] : undefined;
      if (handler) {
        ctx.params = { id: safeDecode(m[1]!) };
        await handler(ctx);
        return;
      }
    }
    await routes(ctx, next);
  };
}

const REPOSITORIES = '/v1/repositories/';
const IMAGE_PATH = /^\/v1\/images\/([^/]+)\/(json|layer|checksum|ancestry|files|diff)\/?$/i;

function safeDecode(s: string): string {
  if (!s.includes('%')) return s;
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}
