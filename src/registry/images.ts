import type { Context } from 'koa';
import type { Locks } from '../content/mutex.js';
import { RegistryError } from '../errors/index.js';
import { readRawBody } from '../http/body.js';
import { accelUri, notModified, sendBytes, sendJson, setCacheHeaders } from '../http/respond.js';
import type { RegistryDeps } from './deps.js';
import type { V1Access } from './access.js';
import type { RegistryAccess } from '../auth/registry-auth.js';
import { imageId } from './paths.js';

/**
 * /v1/images/<id>/… (spec §2, R3–R10). Each handler runs the checks in the order of the spec's
 * route table: auth, then the id, then completion, then the cache header.
 */
export function imageHandlers(deps: RegistryDeps, v1: V1Access, repoLock: Locks) {
  const { config, images } = deps;
  const { authorize, linkInto, readable } = v1;

  /**
   * Spec §1.3 / Q3: If-Modified-Since (any value) on a cacheable GET is 304 after the upload check and
   * before the image is looked up, as the Python registry's set_cache_headers answered it (an id the
   * registry does not hold included).
   */
  async function notModifiedImage(ctx: Context, access: RegistryAccess, id: string): Promise<boolean> {
    if (!ctx.get('If-Modified-Since')) return false;
    await images.assertComplete(access.scope, id);
    return notModified(ctx);
  }

  /** R3 GET …/json: the image's JSON with its size and payload checksum headers. */
  async function getJson(ctx: Context): Promise<void> {
    const access = await authorize(ctx);
    const id = imageId(ctx);
    if (await notModifiedImage(ctx, access, id)) return;
    const img = await readable(access, id);
    // Content-Type as sendJson sets it (spec §1.3: no charset); the body keeps it
    sendJson(ctx, 200, null);
    setCacheHeaders(ctx);
    if (img.link) ctx.set('X-Docker-Size', String(img.link.size));
    if (img.payload) ctx.set('X-Docker-Checksum-Payload', img.payload);
    ctx.body = img.json;
  }

  /** R4 PUT …/json: the first step of an image push. */
  async function putJson(ctx: Context): Promise<void> {
    const access = await authorize(ctx);
    const id = imageId(ctx);
    const body = await readRawBody(ctx, config.max_json_size);
    // An image the pusher already has in a repository it may write (or an official one) is linked,
    // and the client told it exists (it then skips the layer and checksum, spec §2.5).
    await images.putJson(access.scope, id, body, {
      ...(access.allowedIds ? { allowedIds: access.allowedIds } : {}),
      ...(access.linkSources ? { link: (other: string) => linkInto(access, other) } : {}),
    });
    sendJson(ctx, 200, true);
  }

  /** R5 GET …/layer: the layer's bytes (Range, storage redirect, nginx X-Accel-Redirect). */
  async function getLayer(ctx: Context): Promise<void> {
    const access = await authorize(ctx);
    const id = imageId(ctx);
    if (await notModifiedImage(ctx, access, id)) return;
    const { link } = await readable(access, id);
    if (!link) throw new RegistryError('IMAGE_NOT_FOUND');
    setCacheHeaders(ctx);
    // storage_redirect (spec §R5): the Python registry answered 302 to a signed storage URL
    const url = ctx.method === 'GET' ? await images.layerRedirect(link) : undefined;
    if (url) {
      ctx.status = 302;
      ctx.set('Location', url);
      ctx.body = '';
      return;
    }
    await sendBytes(ctx, link.size, (start, length) => images.openLayer(link, start, length, link.size), { accel: accelUri(config, link.digest, ctx) });
  }

  /** R6 PUT …/layer: the layer, streamed to storage while its digests are computed. */
  async function putLayer(ctx: Context): Promise<void> {
    const access = await authorize(ctx);
    const id = imageId(ctx);
    const ua = /(?:^|\s)docker\/(\d+)\.(\d+)/.exec(ctx.get('User-Agent'));
    if (ua && Number(ua[1]) === 0 && Number(ua[2]) < 10) throw new RegistryError('OLD_CLIENT');
    const declared = ctx.get('Content-Length');
    const chunked = /chunked/i.test(ctx.get('Transfer-Encoding'));
    const contentLength = !chunked && declared !== '' ? Number(declared) : undefined;
    if (config.max_layer_size > 0 && contentLength !== undefined && contentLength > config.max_layer_size) {
      throw new RegistryError('LAYER_TOO_LARGE');
    }
    await images.putLayer(access.scope, id, ctx.req, contentLength);
    sendJson(ctx, 200, true);
  }

  /** R7 PUT …/checksum: the client's checksums verified against the layer; the image is complete. */
  async function putChecksum(ctx: Context): Promise<void> {
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
  }

  /** R8 GET …/ancestry: the image's chain, itself first. */
  async function getAncestry(ctx: Context): Promise<void> {
    const access = await authorize(ctx);
    const id = imageId(ctx);
    if (await notModifiedImage(ctx, access, id)) return;
    const img = await readable(access, id);
    if (!img.ancestry) throw new RegistryError('IMAGE_NOT_FOUND');
    sendJson(ctx, 200, JSON.parse(img.ancestry.toString('utf8')) as string[]);
    setCacheHeaders(ctx);
  }

  /** R9 GET …/files: the layer's file listing. */
  async function getFiles(ctx: Context): Promise<void> {
    const access = await authorize(ctx);
    const id = imageId(ctx);
    if (await notModifiedImage(ctx, access, id)) return;
    await readable(access, id);
    // streamed while the layer is read (security issue 10, finding 9): a listing found damaged after
    // the answer has started can only be cut off
    const listing = await images.files(access.scope, id);
    listing.once('error', () => ctx.res.destroy());
    sendJson(ctx, 200, null);
    setCacheHeaders(ctx);
    ctx.body = listing;
  }

  /** R10 GET …/diff: needs the Python registry's Redis worker queue, which we do not run. */
  async function getDiff(ctx: Context): Promise<void> {
    await authorize(ctx);
    imageId(ctx);
    throw new RegistryError('DIFF_DISABLED');
  }

  return { getJson, putJson, getLayer, putLayer, putChecksum, getAncestry, getFiles, getDiff };
}
