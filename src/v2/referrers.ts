import type { Context } from 'koa';
import { V2Error } from '../errors/v2.js';
import { MT } from '../content/v2-manifests.js';
import type { V2Deps } from './deps.js';
import { digestParam, type RepoRequest, type V2RouteOf } from './request.js';

/**
 * One page of referrers (OCI distribution 1.1: "A Link header MUST be included in the response when
 * the descriptor list cannot be returned in a single manifest"): at most the manifest limit in bytes
 * (a single larger descriptor goes alone), at most REFERRERS_PAGE_ENTRIES descriptors (fewer with
 * ?n=), and at most that many manifests or REFERRERS_PAGE_READ bytes of them read, one at a time.
 * Each descriptor carries its manifest's annotations, so an index of every referrer at once grew
 * with whatever pushers stored (60 referrers of 3.8 MiB: a 229 MiB answer, RSS 109 → 1267 MiB).
 */
export const REFERRERS_PAGE_BYTES = 4 * 1024 * 1024;
export const REFERRERS_PAGE_ENTRIES = 1000;
export const REFERRERS_PAGE_READ = 16 * 1024 * 1024;

/** /v2/<name>/referrers/<digest> (OCI distribution 1.1): the manifests whose subject is the digest. */
export function referrerHandlers(deps: V2Deps) {
  const { manifests } = deps;

  /**
   * GET/HEAD: an OCI index of the referrers, filtered by ?artifactType= when given, in digest order
   * from after ?last=, paginated with `Link: <…?last=<digest>>; rel="next"` (as tags/list).
   */
  async function list(ctx: Context, { route, name, base }: RepoRequest<V2RouteOf<'referrers'>>): Promise<void> {
    const digest = digestParam(route.digest);
    const artifactType = typeof ctx.query.artifactType === 'string' ? ctx.query.artifactType : undefined;
    const last = typeof ctx.query.last === 'string' ? ctx.query.last : undefined;
    const nRaw = ctx.query.n;
    if (nRaw !== undefined && (typeof nRaw !== 'string' || !/^\d{1,5}$/.test(nRaw) || Number(nRaw) > REFERRERS_PAGE_ENTRIES)) {
      throw new V2Error('PAGINATION_NUMBER_INVALID', { n: nRaw });
    }
    const n = nRaw === undefined ? REFERRERS_PAGE_ENTRIES : Number(nRaw);
    // a repository that does not exist (never pushed, or deleted) is NAME_UNKNOWN, as tags/list
    // (the v1 tags' names only, as tags/list: reading what each names cost one read per v1 tag of the
    // repository on every anonymous request)
    if (!(await manifests.exists(name)) && (deps.fromV1 ? await deps.fromV1.tagNames(name) : []).length === 0) throw new V2Error('NAME_UNKNOWN', { name });

    const head = `{"schemaVersion":2,"mediaType":${JSON.stringify(MT.ociIndex)},"manifests":[`;
    const tail = ']}';
    const parts: string[] = [];
    let bytes = Buffer.byteLength(head) + tail.length;
    let read = 0;
    /** The last digest this page is done with (listed, filtered out or gone): the next page's `last`. */
    let done: string | undefined;
    let more = false;
    const digests = n === 0 ? [] : await manifests.referrerDigests(name, digest, last);
    for (let i = 0; i < digests.length; i++) {
      if (parts.length >= n || i >= REFERRERS_PAGE_ENTRIES || read >= REFERRERS_PAGE_READ) {
        more = true;
        break;
      }
      const one = await manifests.referrer(name, digests[i]!, artifactType);
      read += one.read;
      if (one.descriptor) {
        const json = JSON.stringify(one.descriptor);
        const size = Buffer.byteLength(json) + (parts.length > 0 ? 1 : 0);
        if (parts.length > 0 && bytes + size > REFERRERS_PAGE_BYTES) {
          more = true; // it starts the next page
          break;
        }
        parts.push(json);
        bytes += size;
      }
      done = digests[i];
    }
    if (more && done !== undefined) {
      const q = new URLSearchParams();
      if (artifactType !== undefined) q.set('artifactType', artifactType);
      q.set('last', done);
      if (nRaw !== undefined) q.set('n', String(n));
      ctx.set('Link', `<${base}/referrers/${digest}?${q.toString()}>; rel="next"`);
    }
    if (artifactType !== undefined) ctx.set('OCI-Filters-Applied', 'artifactType');
    ctx.status = 200;
    ctx.type = MT.ociIndex;
    ctx.body = head + parts.join(',') + tail;
  }

  return { list };
}
