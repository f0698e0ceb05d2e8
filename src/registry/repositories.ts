import type { Context } from 'koa';
import type { Locks } from '../content/mutex.js';
import { isRegistryError, RegistryError } from '../errors/index.js';
import { jsonBody, parsedBody } from '../http/body.js';
import { sendJson } from '../http/respond.js';
import type { RegistryDeps } from './deps.js';
import type { V1Access } from './access.js';
import { repoName, type RepoRouteOf } from './paths.js';

/** /v1/repositories/<repo>/ (DELETE, R17), …/json and …/properties (spec §2). */
export function repositoryHandlers(deps: RegistryDeps, v1: V1Access, repoLock: Locks) {
  const { config, repos } = deps;
  const { authorize } = v1;
  const jsonLimit = config.max_json_size;

  /**
   * R17 DELETE …/ or …/tags. With accounts the index vouched for the delete token, so the
   * repository existed: when an index in this process already removed its content (I6), the
   * registry's own call succeeds too.
   */
  async function remove(ctx: Context, route: RepoRouteOf<'root' | 'tags'>): Promise<void> {
    const repo = repoName(route.repo);
    const access = await authorize(ctx, repo);
    try {
      await repoLock.run(repo.full, () => repos.deleteRepository(repo));
    } catch (e) {
      if (!(access.scope && isRegistryError(e) && e.code === 'REPOSITORY_NOT_FOUND')) throw e;
    }
    deps.events?.repositoryDeleted(ctx, repo, access);
    sendJson(ctx, 200, true);
  }

  /** GET …/json: the repository's recorded properties. */
  async function json(ctx: Context, route: RepoRouteOf<'json'>): Promise<void> {
    const repo = repoName(route.repo);
    await authorize(ctx, repo);
    sendJson(ctx, 200, await repos.repoJson(repo));
  }

  /** GET …/properties: `{"access": "private"|"public"}`. */
  async function getProperties(ctx: Context, route: RepoRouteOf<'properties'>): Promise<void> {
    const repo = repoName(route.repo);
    await authorize(ctx, repo);
    sendJson(ctx, 200, { access: (await repos.isPrivate(repo)) ? 'private' : 'public' });
  }

  /** PUT …/properties: make the repository private or public. */
  async function putProperties(ctx: Context, route: RepoRouteOf<'properties'>): Promise<void> {
    const repo = repoName(route.repo);
    await authorize(ctx, repo);
    await jsonBody(jsonLimit, 'INVALID_DATA')(ctx, async () => undefined);
    const body = parsedBody(ctx) as { access?: unknown } | undefined;
    if (!body || typeof body !== 'object' || Array.isArray(body)) throw new RegistryError('INVALID_DATA');
    if (body.access !== 'private' && body.access !== 'public') throw new RegistryError('INVALID_DATA');
    await repos.setPrivate(repo, body.access === 'private');
    sendJson(ctx, 200, true);
  }

  return { delete: remove, json, getProperties, putProperties };
}
