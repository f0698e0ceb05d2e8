import { KeyedMutex, type Locks } from '../content/mutex.js';
import { hostname, release, type as osType, arch } from 'node:os';
import type { Context, Next } from 'koa';
import Router from '@koa/router';
import type { Config } from '../config/schema.js';
import type { RegistryAuth, RegistryAccess } from '../auth/registry-auth.js';
import { isRegistryError, RegistryError } from '../errors/index.js';
import { parseRepoName, parseTag, type RepoName } from '../content/names.js';
import type { V1Images } from '../content/v1-images.js';
import type { V1Repositories } from '../content/v1-repositories.js';
import { jsonBody, parsedBody, readRawBody } from '../http/body.js';
import { accelUri, notModified, sendBytes, sendJson, setCacheHeaders } from '../http/respond.js';
import { isImageId } from '../digest/digest.js';
import type { Logger } from '../log/logger.js';


export interface RegistryDeps {
  readonly config: Config;
  readonly images: V1Images;
  readonly repos: V1Repositories;
  readonly auth: RegistryAuth;
  readonly version: string;
  /** Tells the index of each verified v1 image (issue 11: its image list then carries checksums). */
  readonly index?: V1IndexHook;
  readonly log?: Logger;
  /**
   * Serialises what publishes into a repository (tag writes, image checksums) with its deletion.
   * main.ts shares one with the index's delete in a one-process site.
   */
  readonly repoLock?: Locks;
  /** Told of tag pushes, pulls and deletes and of repository deletes (webhooks, notifications; issue 15). */
  readonly events?: V1Events;
}

/**
 * What happened to a repository's tags through v1, after it succeeded. Implementations never
 * throw and never make the request wait for a receiver (src/main.ts).
 */
export interface V1Events {
  tagPushed(ctx: Context, repo: RepoName, tag: string, id: string, access: RegistryAccess): void;
  tagPulled(ctx: Context, repo: RepoName, tag: string, id: string, access: RegistryAccess): void;
  tagDeleted(ctx: Context, repo: RepoName, tag: string, access: RegistryAccess, manifest: { digest: string } | undefined): void;
  /** The bridge's manifest of a tag (read before a delete, for the event's digest). */
  describe(repo: RepoName, tag: string): Promise<{ digest: string } | undefined>;
  repositoryDeleted(ctx: Context, repo: RepoName, access: RegistryAccess): void;
}

/**
 * The index learning the payload checksum of an image a v1 push just completed: Docker 1.x clients
 * send `[]` in the final PUT …/images, so only the registry knows it. `authorization` is the push's
 * write token, which the index checks again (the registry may run in another process).
 */
export interface V1IndexHook {
  checksum(repo: RepoName, id: string, checksum: string, authorization: string): Promise<void>;
}

/** The value of X-Docker-Registry-Standalone (spec §2.3, Q5). */
export function standaloneHeader(c: Config): string {
  if (c.mirroring?.source) return 'mirror';
  return c.standalone ? 'True' : 'False';
}

function imageId(ctx: Context): string {
  const id = String(ctx.params.id ?? '');
  if (!isImageId(id)) throw new RegistryError('INVALID_IMAGE_ID');
  return id;
}

/**
 * Split /v1/repositories/<path> into the repository and the route suffix, greedily as the Python
 * registry's router did (spec §1.5). Returns undefined when no registry route matches.
 */
type RepoRoute =
  | { kind: 'tags'; repo: string }
  | { kind: 'tag'; repo: string; tag: string }
  | { kind: 'tagJson'; repo: string; tag: string }
  | { kind: 'json'; repo: string }
  | { kind: 'properties'; repo: string }
  | { kind: 'images'; repo: string }
  | { kind: 'auth'; repo: string }
  | { kind: 'layerAccess'; repo: string; id: string }
  | { kind: 'root'; repo: string; slash: boolean };

const REPO_ROUTES: [RegExp, (m: RegExpExecArray) => RepoRoute][] = [
  [/^(.+)\/tags\/([^/]+)\/json$/, (m) => ({ kind: 'tagJson', repo: m[1]!, tag: m[2]! })],
  [/^(.+)\/tags\/?$/, (m) => ({ kind: 'tags', repo: m[1]! })],
  [/^(.+)\/tags\/([^/]+)$/, (m) => ({ kind: 'tag', repo: m[1]!, tag: m[2]! })],
  [/^(.+)\/json$/, (m) => ({ kind: 'json', repo: m[1]! })],
  [/^(.+)\/properties$/, (m) => ({ kind: 'properties', repo: m[1]! })],
  [/^(.+)\/images$/, (m) => ({ kind: 'images', repo: m[1]! })],
  [/^(.+)\/auth$/, (m) => ({ kind: 'auth', repo: m[1]! })],
  [/^(.+)\/layer\/([^/]+)\/access$/, (m) => ({ kind: 'layerAccess', repo: m[1]!, id: m[2]! })],
  [/^(.+?)(\/?)$/, (m) => ({ kind: 'root', repo: m[1]!, slash: m[2] === '/' })],
];

export function matchRepoRoute(rest: string): RepoRoute | undefined {
  for (const [re, make] of REPO_ROUTES) {
    const m = re.exec(rest);
    if (m) return make(m);
  }
  return undefined;
}

export function decodePath(raw: string): string {
  try {
    return decodeURIComponent(raw);
  } catch {
    throw new RegistryError('INVALID_REPOSITORY_NAME');
  }
}

export function repoName(raw: string): RepoName {
  const name = parseRepoName(decodePath(raw));
  if (!name) throw new RegistryError('INVALID_REPOSITORY_NAME');
  return name;
}

/**
 * The v1 registry API (spec §2): ping, images and repository tags. Each handler runs the checks in
 * the order of the spec's route table: auth, then the id, then completion, then the cache header.
 */
export function registryRouter(deps: RegistryDeps): Router {
  const { config, images, repos, auth } = deps;
  const repoLock = deps.repoLock ?? new KeyedMutex();
  const router = new Router();
  const jsonLimit = config.max_json_size;

  const authorize = (ctx: Context, repo?: RepoName): Promise<RegistryAccess> =>
    auth.authorize({
      method: ctx.method,
      authorization: ctx.get('Authorization') || undefined,
      ...(repo ? { repo } : {}),
      headers: ctx.headers,
      path: ctx.path,
    });

  /**
   * Bring image `id` into the token's repository from a repository its holder may read that truly
   * holds it (write tokens only: a push reusing an image it can already pull). The index names the
   * candidates (repositories the holder may read whose image list has the id); storage decides,
   * since image lists are written by clients.
   */
  const linkInto = async (access: RegistryAccess, id: string): Promise<boolean> => {
    if (!access.scope || !access.linkSources) return false;
    for (const source of await access.linkSources(id)) {
      if (await images.link(source, access.scope, id)) return true;
    }
    return false;
  };

  /**
   * The done check and existence of an image for the GET routes, within the request's scope. A
   * write token's probe (`GET …/json` before a push) also links an image from a repository the
   * pusher may write, or an official one (see IndexService.linkSources).
   */
  const readable = async (access: RegistryAccess, id: string): Promise<void> => {
    if (await images.hasJson(access.scope, id)) {
      await images.assertComplete(access.scope, id);
      return;
    }
    if (!(await linkInto(access, id))) throw new RegistryError('IMAGE_NOT_FOUND');
  };

  router.get('/', (ctx) => sendJson(ctx, 200, config.issue));

  const ping = (ctx: Context): void => {
    ctx.set('X-Docker-Registry-Standalone', standaloneHeader(config));
    if (config.debug) {
      ctx.set('X-Docker-Registry-Config', config.flavor);
      sendJson(ctx, 200, {
        host: [osType(), hostname(), release(), arch()],
        launch: process.argv,
        versions: { 'legacy-registry': deps.version, node: process.version },
      });
      return;
    }
    sendJson(ctx, 200, {});
  };
  router.get('/_ping', ping);
  router.get('/v1/_ping', ping);
  router.get('/_status', (ctx) => sendJson(ctx, 200, { failures: {}, host: hostname(), services: ['storage'] }));
  router.get('/v1/_status', (ctx) => sendJson(ctx, 200, { failures: {}, host: hostname(), services: ['storage'] }));

  // R3
  router.get('/v1/images/:id/json', async (ctx) => {
    const access = await authorize(ctx);
    const id = imageId(ctx);
    await readable(access, id);
    if (notModified(ctx)) return;
    const img = await images.getJson(access.scope, id);
    sendJson(ctx, 200, null);
    setCacheHeaders(ctx);
    if (img.size !== undefined) ctx.set('X-Docker-Size', String(img.size));
    if (img.payload) ctx.set('X-Docker-Checksum-Payload', img.payload);
    ctx.body = img.json;
    ctx.type = 'application/json';
  });

  // R4
  router.put('/v1/images/:id/json', async (ctx) => {
    const access = await authorize(ctx);
    const id = imageId(ctx);
    const body = await readRawBody(ctx, jsonLimit);
    // An image the pusher already has in a repository it may write (or an official one) is linked,
    // and the client told it exists (it then skips the layer and checksum, spec §2.5).
    await images.putJson(access.scope, id, body, {
      ...(access.allowedIds ? { allowedIds: access.allowedIds } : {}),
      ...(access.linkSources ? { link: (other: string) => linkInto(access, other) } : {}),
    });
    sendJson(ctx, 200, true);
  });

  // R5
  router.get('/v1/images/:id/layer', async (ctx) => {
    const access = await authorize(ctx);
    const id = imageId(ctx);
    await readable(access, id);
    if (notModified(ctx)) return;
    const link = await images.getLayer(access.scope, id);
    setCacheHeaders(ctx);
    // storage_redirect (spec §R5): the Python registry answered 302 to a signed storage URL
    const url = ctx.method === 'GET' ? await images.layerRedirect(link) : undefined;
    if (url) {
      ctx.status = 302;
      ctx.set('Location', url);
      ctx.body = '';
      return;
    }
    await sendBytes(ctx, link.size, (start, length) => images.openLayer(link, start, length), { accel: accelUri(config, link.digest, ctx) });

  });

  // R6
  router.put('/v1/images/:id/layer', async (ctx) => {
    const access = await authorize(ctx);
    const id = imageId(ctx);
    const ua = /(?:^|\s)docker\/(\d+)\.(\d+)/.exec(ctx.get('User-Agent'));
    if (ua && (Number(ua[1]) === 0 && Number(ua[2]) < 10)) throw new RegistryError('OLD_CLIENT');
    const declared = ctx.get('Content-Length');
    const chunked = /chunked/i.test(ctx.get('Transfer-Encoding'));
    const contentLength = !chunked && declared !== '' ? Number(declared) : undefined;
    if (config.max_layer_size > 0 && contentLength !== undefined && contentLength > config.max_layer_size) {
      throw new RegistryError('LAYER_TOO_LARGE');
    }
    await images.putLayer(access.scope, id, ctx.req, contentLength);
    sendJson(ctx, 200, true);
  });

  // R7
  router.put('/v1/images/:id/checksum', async (ctx) => {
    const access = await authorize(ctx);
    const id = imageId(ctx);
    const payload = ctx.headers['x-docker-checksum-payload'];
    const tarsum = ctx.headers['x-docker-checksum'];
    const link = await repoLock.run(access.scope?.full ?? '', async () => {
      await access.confirm?.();
      return images.putChecksum(access.scope, id, Array.isArray(payload) ? payload[0] : payload, Array.isArray(tarsum) ? tarsum[0] : tarsum);
    });
    if (access.scope && deps.index) {
      // the push stands whether or not the index answers (its list only lacks the checksum then)
      await deps.index.checksum(access.scope, id, link.payload, ctx.get('Authorization')).catch((e: unknown) => {
        deps.log?.warn('index not told the checksum of a v1 image', { repository: access.scope?.full, id, error: String(e) });
      });
    }
    sendJson(ctx, 200, true);
  });

  // R8
  router.get('/v1/images/:id/ancestry', async (ctx) => {
    const access = await authorize(ctx);
    const id = imageId(ctx);
    await readable(access, id);
    if (notModified(ctx)) return;
    const ancestry = await images.getAncestry(access.scope, id);
    sendJson(ctx, 200, ancestry);
    setCacheHeaders(ctx);
  });

  // R9
  router.get('/v1/images/:id/files', async (ctx) => {
    const access = await authorize(ctx);
    const id = imageId(ctx);
    await readable(access, id);
    if (notModified(ctx)) return;
    // streamed while the layer is read (security issue 10, finding 9): a listing found damaged after
    // the answer has started can only be cut off
    const listing = await images.files(access.scope, id);
    listing.once('error', () => ctx.res.destroy());
    sendJson(ctx, 200, null);
    setCacheHeaders(ctx);
    ctx.body = listing;
  });

  // R10: the diff needs the Python registry's Redis worker queue, which we do not run.
  router.get('/v1/images/:id/diff', async (ctx) => {
    await authorize(ctx);
    imageId(ctx);
    throw new RegistryError('DIFF_DISABLED');
  });

  /**
   * R17. With accounts the index vouched for the delete token, so the repository existed: when an
   * index in this process already removed its content (I6), the registry's own call succeeds too.
   */
  const deleteRepository = async (ctx: Context, repo: RepoName): Promise<void> => {
    const access = await authorize(ctx, repo);
    try {
      await repoLock.run(repo.full, () => repos.deleteRepository(repo));
    } catch (e) {
      if (!(access.scope && isRegistryError(e) && e.code === 'REPOSITORY_NOT_FOUND')) throw e;
    }
    deps.events?.repositoryDeleted(ctx, repo, access);
    sendJson(ctx, 200, true);
  };

  // R11–R19 on /v1/repositories/<repo>/…
  const repositories = async (ctx: Context, next: Next): Promise<void> => {
    const rest = ctx.path.slice('/v1/repositories/'.length);
    const route = matchRepoRoute(rest);
    if (!route) return next();
    const method = ctx.method === 'HEAD' ? 'GET' : ctx.method;
    switch (route.kind) {
      case 'tags': {
        const repo = repoName(route.repo);
        if (method === 'GET') {
          await authorize(ctx, repo);
          sendJson(ctx, 200, await repos.listTags(repo));
          return;
        }
        if (method === 'DELETE') {
          await deleteRepository(ctx, repo);
          return;
        }
        break;
      }
      case 'tag': {
        const repo = repoName(route.repo);
        const tagRaw = decodePath(route.tag);
        if (method === 'GET') {
          const access = await authorize(ctx, repo);
          const tag = parseTag(tagRaw);
          if (!tag) throw new RegistryError('TAG_NOT_FOUND');
          const id = await repos.getTag(repo, tag);
          sendJson(ctx, 200, id);
          // Docker ≥ 1.6 looks the asked tag up here before pulling its chain: the v1 pull of a tag
          if (ctx.method === 'GET') deps.events?.tagPulled(ctx, repo, tag, id, access);
          return;
        }
        if (method === 'PUT') {
          const access = await authorize(ctx, repo);
          const tag = parseTag(tagRaw);
          if (!tag) throw new RegistryError('INVALID_TAG');
          await jsonBody(jsonLimit, 'INVALID_DATA')(ctx, async () => undefined);
          const body = parsedBody(ctx);
          if (typeof body !== 'string') throw new RegistryError('INVALID_DATA');
          await repoLock.run(repo.full, async () => {
            await access.confirm?.();
            await repos.putTag(repo, tag, body, ctx.get('User-Agent') || undefined, (id) => linkInto(access, id));
          });
          deps.events?.tagPushed(ctx, repo, tag, body, access);
          sendJson(ctx, 200, true);
          return;
        }
        if (method === 'DELETE') {
          const access = await authorize(ctx, repo);
          const tag = parseTag(tagRaw);
          if (!tag) throw new RegistryError('TAG_NOT_FOUND', `Tag not found: ${tagRaw}`);
          const before = deps.events ? await deps.events.describe(repo, tag).catch(() => undefined) : undefined;
          await repos.deleteTag(repo, tag);
          deps.events?.tagDeleted(ctx, repo, tag, access, before);
          sendJson(ctx, 200, true);
          return;
        }
        break;
      }
      case 'tagJson': {
        if (method !== 'GET') break;
        const repo = repoName(route.repo);
        await authorize(ctx, repo);
        const tag = parseTag(decodePath(route.tag));
        if (!tag) throw new RegistryError('TAG_NOT_FOUND');
        sendJson(ctx, 200, await repos.tagJson(repo, tag));
        return;
      }
      case 'json': {
        if (method !== 'GET') break;
        const repo = repoName(route.repo);
        await authorize(ctx, repo);
        sendJson(ctx, 200, await repos.repoJson(repo));
        return;
      }
      case 'properties': {
        const repo = repoName(route.repo);
        if (method === 'GET') {
          await authorize(ctx, repo);
          sendJson(ctx, 200, { access: (await repos.isPrivate(repo)) ? 'private' : 'public' });
          return;
        }
        if (method === 'PUT') {
          await authorize(ctx, repo);
          await jsonBody(jsonLimit, 'INVALID_DATA')(ctx, async () => undefined);
          const body = parsedBody(ctx) as { access?: unknown } | undefined;
          if (!body || typeof body !== 'object' || Array.isArray(body)) throw new RegistryError('INVALID_DATA');
          if (body.access !== 'private' && body.access !== 'public') throw new RegistryError('INVALID_DATA');
          await repos.setPrivate(repo, body.access === 'private');
          sendJson(ctx, 200, true);
          return;
        }
        break;
      }
      case 'root': {
        if (method !== 'DELETE') break;
        const repo = repoName(route.repo);
        await deleteRepository(ctx, repo);
        return;
      }
      default:
        break;
    }
    return next();
  };
  router.all('/v1/repositories/*rest', repositories);

  return router;
}
