import type { Context } from 'koa';
import { V2Error } from '../errors/v2.js';
import { parseV2Name } from '../content/v2-names.js';
import { blobTarget } from '../notifications/events.js';
import type { V2Deps } from './deps.js';
import { blobCreated, declaredLength, digestParam, principalOf, type RepoRequest, type V2RouteOf } from './request.js';

/**
 * /v2/<name>/blobs/uploads/ (POST: start, mount, or a whole blob in one request) and
 * /v2/<name>/blobs/uploads/<uuid> (GET or HEAD status, PATCH a chunk, PUT finish, DELETE cancel).
 */
export function uploadHandlers(deps: V2Deps) {
  const { blobs, uploads } = deps;

  const sessionHeaders = (ctx: Context, base: string, uuid: string, offset: number): void => {
    ctx.set('Location', `${base}/blobs/uploads/${uuid}`);
    ctx.set('Docker-Upload-UUID', uuid);
    ctx.set('Range', offset > 0 ? `0-${offset - 1}` : '0-0');
  };

  const notifyBlobPush = async ({ name, notifier, notify }: RepoRequest, digest: string): Promise<void> => {
    if (!notifier) return;
    const info = await blobs.stat(digest);
    if (info) notify('push', (o) => blobTarget(o, name, digest, info.size));
  };

  /** POST …/blobs/uploads/: a cross-repository mount, a monolithic upload (?digest=), or a new session. */
  async function start(ctx: Context, req: RepoRequest<V2RouteOf<'uploads'>>): Promise<void> {
    const { name, base, notify } = req;
    const mount = typeof ctx.query.mount === 'string' ? ctx.query.mount : undefined;
    const from = typeof ctx.query.from === 'string' ? ctx.query.from : undefined;
    if (mount !== undefined) {
      const digest = digestParam(mount);
      const source = from !== undefined ? parseV2Name(from) : undefined;
      const stat = source && (await uploads.linked(source, digest)) ? await blobs.stat(digest) : undefined;
      if (source && stat) {
        await uploads.link(name, digest);
        blobCreated(ctx, base, digest);
        notify('mount', (o) => {
          // distribution's field order: fromRepository before url
          const { url, ...t } = blobTarget(o, name, digest, stat.size);
          return { ...t, fromRepository: source, url: url! };
        });
        return;
      }
      // not mountable: an ordinary session instead (spec end-11)
    }
    const digestQ = typeof ctx.query.digest === 'string' ? ctx.query.digest : undefined;
    // sessions are counted per repository and per account, per client address when anonymous
    const account = principalOf(ctx)?.account ?? null;
    const owner = account !== null ? `account:${account}` : `address:${ctx.ip}`;
    if (digestQ !== undefined) {
      // single POST with the whole blob (end-4b): no session in storage
      const digest = digestParam(digestQ);
      await uploads.putWhole(name, owner, digest, ctx.req, declaredLength(ctx));
      blobCreated(ctx, base, digest);
      await notifyBlobPush(req, digest);
      return;
    }
    const uuid = await uploads.start(name, owner);
    ctx.status = 202;
    sessionHeaders(ctx, base, uuid, 0);
    ctx.body = '';
    ctx.length = 0;
  }

  type SessionRequest = RepoRequest<V2RouteOf<'upload'>>;

  /** GET (or HEAD) …/uploads/<uuid>: how much of the session has arrived. */
  async function status(ctx: Context, { route, name, base }: SessionRequest): Promise<void> {
    const st = await uploads.state(name, route.uuid);
    ctx.status = 204;
    sessionHeaders(ctx, base, route.uuid, st.offset);
  }

  /** PATCH …/uploads/<uuid>: a chunk, at the offset Content-Range names when it does. */
  async function append(ctx: Context, { route, name, base }: SessionRequest): Promise<void> {
    const cr = ctx.get('Content-Range');
    const len = declaredLength(ctx);
    let start: number | undefined;
    if (cr) {
      const m = /^(?:bytes[ =])?(\d+)-(\d+)$/.exec(cr.trim());
      if (!m) throw new V2Error('RANGE_INVALID', { 'Content-Range': cr });
      start = Number(m[1]);
      const end = Number(m[2]);
      if (end < start || (len !== undefined && len !== end - start + 1)) throw new V2Error('RANGE_INVALID', { 'Content-Range': cr });
    }
    const offset = await uploads.append(name, route.uuid, ctx.req, {
      ...(start !== undefined ? { start } : {}),
      ...(len !== undefined ? { contentLength: len } : {}),
    });
    ctx.status = 202;
    sessionHeaders(ctx, base, route.uuid, offset);
    ctx.body = '';
    ctx.length = 0;
  }

  /** PUT …/uploads/<uuid>?digest=: the last chunk (if any), verified against the digest, linked. */
  async function finish(ctx: Context, req: SessionRequest): Promise<void> {
    const { route, name, base } = req;
    const digest = digestParam(typeof ctx.query.digest === 'string' ? ctx.query.digest : undefined);
    const len = declaredLength(ctx);
    const hasBody = len === undefined ? /chunked/i.test(ctx.get('Transfer-Encoding')) : len > 0;
    await uploads.finish(name, route.uuid, digest, hasBody ? ctx.req : undefined, hasBody ? len : undefined);
    blobCreated(ctx, base, digest);
    await notifyBlobPush(req, digest);
  }

  /** DELETE …/uploads/<uuid>: the session and its bytes are dropped. */
  async function cancel(ctx: Context, { route, name }: SessionRequest): Promise<void> {
    await uploads.cancel(name, route.uuid);
    ctx.status = 204;
    ctx.body = null;
  }

  return { start, status, append, finish, cancel };
}
