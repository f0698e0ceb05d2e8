import type { Context } from 'koa';
import { V2Error } from '../errors/v2.js';
import type { V2Name } from '../content/v2-names.js';
import type { V2Deps } from './deps.js';
import { AnswerCache, answerCacheOn, TAG_ANSWERS } from './answer-cache.js';
import type { RepoRequest, V2RouteOf } from './request.js';
import { mapPool } from '../util/pool.js';

/**
 * Tags checked against the bridge at once. Each check reads a file or two; a listing of a
 * repository of 100,000 tags had started them all together (before 2026-12-07: EMFILE for every
 * request of the process, a 500 after 19 s and RSS past 2 GiB).
 */
const TAG_CHECKS = 16;

/** /v2/<name>/tags/list: v2 and v1 tags of a repository, paginated with n and last. */
export function tagHandlers(deps: V2Deps) {
  const { manifests } = deps;
  const cacheOn = answerCacheOn(deps.answerCache);
  const tagAnswers = cacheOn ? new AnswerCache<string[]>(cacheOn, { ...TAG_ANSWERS, weigh: (tags) => tags.reduce((a, t) => a + 32 + t.length, 0) }) : undefined;

  /**
   * The tags of a repository after `last` in byte order, v2 and v1 (spec §3.7: a tag deleted through
   * v1 is gone), at most `limit`: the names are listed, then checked in order only until `limit` are
   * kept, so a page costs its own checks, not the whole repository's.
   */
  async function tagsAfter(name: V2Name, last: string | undefined, limit: number): Promise<string[]> {
    const fromV1 = deps.fromV1;
    const v1Tags = fromV1 ? await fromV1.tagNames(name) : [];
    if (!(await manifests.exists(name)) && v1Tags.length === 0) throw new V2Error('NAME_UNKNOWN', { name });
    const stored = new Set(await manifests.tags(name));
    const names = [...new Set([...stored, ...v1Tags])].filter((t) => last === undefined || t > last).sort();
    const toV1 = deps.toV1;
    // a v2 tag deleted through v1 is gone; a v1 tag that is only the bridge's view of an absent v2
    // tag (a cut push or delete) is not listed
    const keep = async (t: string): Promise<boolean> => {
      if (stored.has(t)) return toV1 ? (await toV1.current(name, t)) !== 'gone' : true;
      return (await fromV1!.hasTag(name, t)) && !(toV1 && (await toV1.isDerivedView(name, t)));
    };
    const out: string[] = [];
    let next = 0;
    while (next < names.length && out.length < limit) {
      const batch = names.slice(next, next + Math.min(Math.max(TAG_CHECKS, limit - out.length), 1024));
      next += batch.length;
      const kept = await mapPool(batch, TAG_CHECKS, keep);
      for (let j = 0; j < batch.length && out.length < limit; j++) if (kept[j]) out.push(batch[j]!);
    }
    return out;
  }

  /** GET/HEAD …/tags/list (a mirrored repository's list from the upstream, the cached one when it is down). */
  async function list(ctx: Context, { name, base, mt }: RepoRequest<V2RouteOf<'tags'>>): Promise<void> {
    const last = typeof ctx.query.last === 'string' ? ctx.query.last : undefined;
    const nRaw = ctx.query.n;
    let n: number | undefined;
    if (nRaw !== undefined) {
      n = Number(nRaw);
      if (typeof nRaw !== 'string' || !/^\d+$/.test(nRaw) || n > 10000) throw new V2Error('PAGINATION_NUMBER_INVALID', { n: nRaw });
    }
    let tags: string[] | undefined = mt ? await deps.mirror!.tags(mt) : undefined;
    if (mt && !tags) ctx.set('Warning', '110 legacy-registry "Response is Stale (upstream unavailable): cached tags"');
    if (tags) {
      if (last !== undefined) tags = tags.filter((t) => t > last);
      if (n !== undefined) tags = tags.slice(0, n === 0 ? 0 : n + 1);
    } else {
      // one more than the page: whether there is a next page (n=0: none, the repository checked)
      const limit = n === undefined ? Infinity : n === 0 ? 0 : n + 1;
      const key = n === undefined && last === undefined ? name : `${name}\n${last ?? ''}\n${n ?? ''}`;
      tags = await (tagAnswers ? tagAnswers.get(key, () => tagsAfter(name, last, limit)) : tagsAfter(name, last, limit));
    }
    if (n !== undefined && n > 0 && tags.length > n) {
      tags = tags.slice(0, n);
      ctx.set('Link', `<${base}/tags/list?n=${n}&last=${encodeURIComponent(tags[tags.length - 1]!)}>; rel="next"`);
    }
    ctx.status = 200;
    ctx.type = 'application/json; charset=utf-8';
    ctx.body = JSON.stringify({ name, tags });
  }

  return { list };
}
