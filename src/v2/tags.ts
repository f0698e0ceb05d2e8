import type { Context } from 'koa';
import { V2Error } from '../errors/v2.js';
import type { V2Name } from '../content/v2-names.js';
import type { V2Deps } from './deps.js';
import { AnswerCache, answerCacheOn, TAG_ANSWERS } from './answer-cache.js';
import type { RepoRequest, V2RouteOf } from './request.js';

/** /v2/<name>/tags/list: v2 and v1 tags of a repository, paginated with n and last. */
export function tagHandlers(deps: V2Deps) {
  const { manifests } = deps;
  const cacheOn = answerCacheOn(deps.answerCache);
  const tagAnswers = cacheOn ? new AnswerCache<string[]>(cacheOn, { ...TAG_ANSWERS, weigh: (tags) => tags.reduce((a, t) => a + 32 + t.length, 0) }) : undefined;

  /** Every tag of a repository, v2 and v1 (spec §3.7: a tag deleted through v1 is gone). */
  async function allTags(name: V2Name): Promise<string[]> {
    const v1Tags = deps.fromV1 ? await deps.fromV1.tags(name) : [];
    if (!(await manifests.exists(name)) && v1Tags.length === 0) throw new V2Error('NAME_UNKNOWN', { name });
    let v2Tags = await manifests.tags(name);
    if (deps.toV1) {
      const toV1 = deps.toV1;
      const sides = await Promise.all(v2Tags.map((t) => toV1.current(name, t)));
      v2Tags = v2Tags.filter((_, i) => sides[i] !== 'gone');
    }
    // a v1 tag that is only the bridge's view of an absent v2 tag (a cut push or delete) is not listed
    const stored = new Set(v2Tags);
    const toV1 = deps.toV1;
    const views = toV1 ? await Promise.all(v1Tags.map((t) => (stored.has(t) ? false : toV1.isDerivedView(name, t)))) : [];
    return [...new Set([...v2Tags, ...v1Tags.filter((_, i) => !views[i])])].sort();
  }

  /** GET/HEAD …/tags/list (a mirrored repository's list from the upstream, the cached one when it is down). */
  async function list(ctx: Context, { name, base, mt }: RepoRequest<V2RouteOf<'tags'>>): Promise<void> {
    let tags: string[] | undefined = mt ? await deps.mirror!.tags(mt) : undefined;
    if (mt && !tags) ctx.set('Warning', '110 legacy-registry "Response is Stale (upstream unavailable): cached tags"');
    tags ??= await (tagAnswers ? tagAnswers.get(name, () => allTags(name)) : allTags(name));
    const last = typeof ctx.query.last === 'string' ? ctx.query.last : undefined;
    if (last !== undefined) tags = tags.filter((t) => t > last);
    const nRaw = ctx.query.n;
    if (nRaw !== undefined) {
      const n = Number(nRaw);
      if (typeof nRaw !== 'string' || !/^\d+$/.test(nRaw) || n > 10000) throw new V2Error('PAGINATION_NUMBER_INVALID', { n: nRaw });
      if (tags.length > n && n > 0) {
        tags = tags.slice(0, n);
        ctx.set('Link', `<${base}/tags/list?n=${n}&last=${encodeURIComponent(tags[tags.length - 1]!)}>; rel="next"`);
      } else if (n === 0) {
        tags = [];
      }
    }
    ctx.status = 200;
    ctx.type = 'application/json; charset=utf-8';
    ctx.body = JSON.stringify({ name, tags });
  }

  return { list };
}
