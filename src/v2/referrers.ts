import type { Context } from 'koa';
import { V2Error } from '../errors/v2.js';
import { MT } from '../content/v2-manifests.js';
import type { V2Deps } from './deps.js';
import { digestParam, type RepoRequest, type V2RouteOf } from './request.js';

/** /v2/<name>/referrers/<digest> (OCI distribution 1.1): the manifests whose subject is the digest. */
export function referrerHandlers(deps: V2Deps) {
  const { manifests } = deps;

  /** GET/HEAD: an OCI index of the referrers, filtered by ?artifactType= when given. */
  async function list(ctx: Context, { route, name }: RepoRequest<V2RouteOf<'referrers'>>): Promise<void> {
    const digest = digestParam(route.digest);
    const artifactType = typeof ctx.query.artifactType === 'string' ? ctx.query.artifactType : undefined;
    // a repository that does not exist (never pushed, or deleted) is NAME_UNKNOWN, as tags/list
    if (!(await manifests.exists(name)) && (deps.fromV1 ? await deps.fromV1.tags(name) : []).length === 0) throw new V2Error('NAME_UNKNOWN', { name });
    const manifestsOf = await manifests.referrers(name, digest, artifactType);
    if (artifactType !== undefined) ctx.set('OCI-Filters-Applied', 'artifactType');
    ctx.status = 200;
    ctx.type = MT.ociIndex;
    ctx.body = JSON.stringify({ schemaVersion: 2, mediaType: MT.ociIndex, manifests: manifestsOf });
  }

  return { list };
}
