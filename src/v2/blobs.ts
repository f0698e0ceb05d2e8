import type { Context } from 'koa';
import { V2Error } from '../errors/v2.js';
import { accelUri, bodiless, sendBytes, sendStream } from '../http/respond.js';
import { blobTarget } from '../notifications/events.js';
import type { V2Deps } from './deps.js';
import { digestParam, type RepoRequest, type V2RouteOf } from './request.js';
import { AnswerCache, answerCacheOn, SMALL_BLOB_ANSWERS, SMALL_BLOB_MAX } from './answer-cache.js';

type BlobRequest = RepoRequest<V2RouteOf<'blob'>>;

/** /v2/<name>/blobs/<digest> (spec v2-bridge §1): GET and HEAD serve a blob, DELETE unlinks it. */
export function blobHandlers(deps: V2Deps) {
  const { blobs, uploads } = deps;
  const cacheOn = answerCacheOn(deps.answerCache);
  /** Small blobs' bytes by digest (the repository's link is checked on every request, before). */
  const smallBlobs = cacheOn
    ? new AnswerCache<Buffer | undefined>(cacheOn, { ...SMALL_BLOB_ANSWERS, weigh: (b) => 64 + (b?.length ?? 0) }, (b) => b !== undefined)
    : undefined;

  /** GET/HEAD: a blob linked into the repository; a mirrored one from the upstream when not cached. */
  async function get(ctx: Context, { route, name, mt, notify }: BlobRequest): Promise<void> {
    const method = ctx.method;
    const digest = digestParam(route.digest);
    let info = (await uploads.linked(name, digest)) ? await blobs.stat(digest) : undefined;
    if (!info && mt) {
      // not cached: from the upstream, streamed to the client while it is cached
      const blobHeaders = (): void => {
        ctx.set('Docker-Content-Digest', digest);
        ctx.set('Etag', `"${digest}"`);
      };
      if (method === 'HEAD') {
        const size = await deps.mirror!.blobSize(mt, digest);
        blobHeaders();
        bodiless(ctx, 200, size, 'application/octet-stream');
        return;
      }
      const fetched = await deps.mirror!.blob(mt, digest);
      if (fetched) {
        blobHeaders();
        ctx.status = 200;
        ctx.type = 'application/octet-stream';
        // a blob that fails verification must not look complete: the connection is cut
        fetched.stream.once('error', () => ctx.res.destroy());
        if (fetched.size !== undefined) await sendStream(ctx, fetched.stream, fetched.size);
        else ctx.body = fetched.stream;
        return;
      }
      info = await blobs.stat(digest);
    }
    if (!info) throw new V2Error('BLOB_UNKNOWN', { digest });
    ctx.set('Docker-Content-Digest', digest);
    ctx.set('Etag', `"${digest}"`);
    ctx.set('Cache-Control', 'max-age=31536000');
    // storage_redirect: as distribution with S3, a GET goes to a pre-signed URL (307 keeps the method)
    const url = method === 'GET' ? await blobs.redirectURL(digest) : undefined;
    if (url) {
      ctx.status = 307;
      ctx.set('Location', url);
      ctx.body = '';
      return;
    }
    const accel = accelUri(deps.config, digest, ctx);
    // a small blob whole (an image's config): from memory, no open/fstat/read/close per request
    const small =
      smallBlobs && method === 'GET' && info.size > 0 && info.size <= SMALL_BLOB_MAX && accel === undefined && !ctx.get('Range')
        ? await smallBlobs.get(digest, () => blobs.readSmall(digest, info.size))
        : undefined;
    if (small?.length === info.size) {
      ctx.set('Accept-Ranges', 'bytes');
      ctx.status = 200;
      ctx.type = 'application/octet-stream';
      ctx.body = small;
    } else await sendBytes(ctx, info.size, (start, length) => blobs.open(digest, start, length, info.size), { accel });
    // distribution: GET and HEAD of a blob both serve it through the listener (a pull)
    notify('pull', (o) => blobTarget(o, name, digest, info.size));
  }

  /** DELETE: the repository's link to the blob (storage_delete); the bytes go with garbage collection. */
  async function remove(ctx: Context, { route, name, notify }: BlobRequest): Promise<void> {
    const digest = digestParam(route.digest);
    if (!deps.config.storage_delete) throw new V2Error('UNSUPPORTED', undefined, 'deletes are disabled (storage_delete)');
    if (!(await uploads.unlink(name, digest))) throw new V2Error('BLOB_UNKNOWN', { digest });
    notify('delete', () => ({ digest, repository: name }));
    ctx.status = 202;
    ctx.body = '';
    ctx.length = 0;
  }

  return { get, delete: remove };
}
