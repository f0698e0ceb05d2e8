import type { Context } from 'koa';
import type { Locks } from '../content/mutex.js';
import { RegistryError } from '../errors/index.js';
import { parseTag } from '../content/names.js';
import { jsonBody, parsedBody } from '../http/body.js';
import { sendJson } from '../http/respond.js';
import type { RegistryDeps } from './deps.js';
import type { V1Access } from './access.js';
import { decodePath, repoName, type RepoRouteOf } from './paths.js';

/** /v1/repositories/<repo>/tags, …/tags/<tag> and …/tags/<tag>/json (spec §2, R11–R16). */
export function tagHandlers(deps: RegistryDeps, v1: V1Access, repoLock: Locks) {
  const { config, repos } = deps;
  const { authorize, linkInto } = v1;
  const jsonLimit = config.max_json_size;

  /** GET …/tags: every tag and its image id. */
  async function list(ctx: Context, route: RepoRouteOf<'tags'>): Promise<void> {
    const repo = repoName(route.repo);
    await authorize(ctx, repo);
    sendJson(ctx, 200, await repos.listTags(repo));
  }

  /** GET …/tags/<tag>: the tag's image id (Docker ≥ 1.6 asks before pulling: the v1 pull event). */
  async function get(ctx: Context, route: RepoRouteOf<'tag'>): Promise<void> {
    const repo = repoName(route.repo);
    const tagRaw = decodePath(route.tag);
    const access = await authorize(ctx, repo);
    const tag = parseTag(tagRaw);
    if (!tag) throw new RegistryError('TAG_NOT_FOUND');
    const id = await repos.getTag(repo, tag);
    sendJson(ctx, 200, id);
    // Docker ≥ 1.6 looks the asked tag up here before pulling its chain: the v1 pull of a tag
    if (ctx.method === 'GET') deps.events?.tagPulled(ctx, repo, tag, id, access);
  }

  /** PUT …/tags/<tag>: a JSON string, the image id, which must be complete in the repository. */
  async function put(ctx: Context, route: RepoRouteOf<'tag'>): Promise<void> {
    const repo = repoName(route.repo);
    const tagRaw = decodePath(route.tag);
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
    await deps.events?.tagPushed(ctx, repo, tag, body, access);
    sendJson(ctx, 200, true);
  }

  /**
   * DELETE …/tags/<tag>, under the repository's lock, as PUT tag and the v2→v1 bridge move tags: a
   * PUT writes the tag's metadata, then the tag, a DELETE removes the tag, then its metadata; the
   * two interleaved left a tag without its metadata (GET tag json answered the defaults).
   */
  async function remove(ctx: Context, route: RepoRouteOf<'tag'>): Promise<void> {
    const repo = repoName(route.repo);
    const tagRaw = decodePath(route.tag);
    const access = await authorize(ctx, repo);
    const tag = parseTag(tagRaw);
    if (!tag) throw new RegistryError('TAG_NOT_FOUND', `Tag not found: ${tagRaw}`);
    const before = await repoLock.run(repo.full, async () => {
      const described = deps.events ? await deps.events.describe(repo, tag).catch(() => undefined) : undefined;
      await repos.deleteTag(repo, tag);
      return described;
    });
    deps.events?.tagDeleted(ctx, repo, tag, access, before);
    sendJson(ctx, 200, true);
  }

  /** GET …/tags/<tag>/json: the tag's recorded properties (architecture, os, client version). */
  async function json(ctx: Context, route: RepoRouteOf<'tagJson'>): Promise<void> {
    const repo = repoName(route.repo);
    await authorize(ctx, repo);
    const tag = parseTag(decodePath(route.tag));
    if (!tag) throw new RegistryError('TAG_NOT_FOUND');
    sendJson(ctx, 200, await repos.tagJson(repo, tag));
  }

  return { list, get, put, delete: remove, json };
}
