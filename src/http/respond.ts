import type { Context } from 'koa';
import { pipeline, Transform, type Readable } from 'node:stream';
import { pyJson } from './py-json.js';
import { fileRangeOf, sendFileRange, sendRecycled } from './send-file.js';
import { recyclerOf } from '../storage/recycle.js';
import { keys } from '../content/keys.js';

/** Spec §1.3: headers of every JSON answer. */
export function sendJson(ctx: Context, status: number, value: unknown): void {
  ctx.status = status;
  ctx.set('Content-Type', 'application/json');
  ctx.set('Cache-Control', 'no-cache');
  ctx.set('Pragma', 'no-cache');
  ctx.set('Expires', '-1');
  ctx.body = pyJson(value);
}

/**
 * Spec §1.3: "cacheable" GETs (image json, layer, ancestry, files): a year, epoch Last-Modified.
 * `public` as the Python registry sends it only for a request without credentials (an open
 * registry, or anonymous access): `public` lets a shared cache (a proxy, a CDN in front) keep an
 * answer to a request with Authorization, and a v1 image URL names no repository, so a private
 * image kept that way would go to whoever asks for the same URL. With credentials: `private`.
 */
export function setCacheHeaders(ctx: Context): void {
  ctx.set('Cache-Control', ctx.get('Authorization') ? 'private, max-age=31536000' : 'public, max-age=31536000');
  ctx.set('Expires', new Date(Date.now() + 365 * 24 * 3600 * 1000).toUTCString());
  ctx.set('Last-Modified', 'Thu, 01 Jan 1970 00:00:00 GMT');
  ctx.remove('Pragma');
}

/** Spec §1.3 / Q3: If-Modified-Since (any value) on a cacheable GET ⇒ 304 before the lookup. */
export function notModified(ctx: Context): boolean {
  if (!ctx.get('If-Modified-Since')) return false;
  setCacheHeaders(ctx);
  ctx.status = 304;
  ctx.body = null;
  return true;
}

export interface ByteRange {
  readonly start: number;
  readonly end: number; // inclusive
}

/**
 * Range on a layer or blob (spec §2.6, REC form): `bytes=a-b` / `bytes=a-`, and the RFC 7233 suffix
 * form `bytes=-n` (the last n bytes; all of it when n ≥ size); anything else (several ranges…) is
 * ignored (undefined ⇒ 200 full body). 'unsatisfiable' ⇒ 416. End is clamped to size-1.
 */
export function parseRange(header: string | undefined, size: number): ByteRange | 'unsatisfiable' | undefined {
  if (!header) return undefined;
  const suffix = /^\s*bytes\s*=\s*-\s*(\d+)\s*$/.exec(header);
  if (suffix) {
    const n = Number(suffix[1]);
    if (n === 0 || size === 0) return 'unsatisfiable';
    return { start: n >= size ? 0 : size - n, end: size - 1 };
  }
  const m = /^\s*bytes\s*=\s*(\d+)\s*-\s*(\d*)\s*$/.exec(header);
  if (!m) return undefined;
  const start = Number(m[1]);
  const end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
  if (!Number.isSafeInteger(start) || start >= size || end < start) return 'unsatisfiable';
  return { start, end };
}

/**
 * Headers of a body without the body (HEAD, or an empty blob): Koa turns a null body into 204, so
 * set an empty one, then the real length and type (Koa sends no body for HEAD).
 */
export function bodiless(ctx: Context, status: number, length: number, type: string): void {
  ctx.body = '';
  ctx.status = status;
  ctx.length = length;
  ctx.type = type;
}

/**
 * Serve stored bytes with Range support (RFC 7233 form, spec v1 §2.6 REC and v2 §1.4): 200 full,
 * 206 with Content-Range, 416 with `bytes *\/size`; HEAD gets the headers only; `open` is only
 * called when bytes are actually sent.
 */
export async function sendBytes(
  ctx: Context,
  size: number,
  open: (start: number, length: number) => Promise<Readable>,
  opts: { readonly accel?: string | undefined } = {},
): Promise<void> {
  ctx.set('Accept-Ranges', 'bytes');
  const type = 'application/octet-stream';
  if (opts.accel !== undefined && ctx.method === 'GET' && size > 0) {
    // nginx_x_accel_redirect: nginx in front serves the file (with the client's Range) from an
    // internal location; the answer here carries only the headers. Access was checked before.
    ctx.status = 200;
    ctx.type = type;
    ctx.set('X-Accel-Redirect', opts.accel);
    ctx.body = '';
    return;
  }
  const range = parseRange(ctx.get('Range') || undefined, size);
  if (range === 'unsatisfiable') {
    ctx.set('Content-Range', `bytes */${size}`);
    bodiless(ctx, 416, 0, type);
    return;
  }
  const start = range?.start ?? 0;
  const length = range ? range.end - range.start + 1 : size;
  if (range) ctx.set('Content-Range', `bytes ${range.start}-${range.end}/${size}`);
  const status = range ? 206 : 200;
  if (ctx.method === 'HEAD' || length === 0) {
    bodiless(ctx, status, length, type);
    return;
  }
  ctx.status = status;
  const body = await open(start, length);
  ctx.type = type;
  const file = fileRangeOf(body);
  if (file && file.length !== length) {
    // the stored file is shorter than the size recorded for it (a v1 layer's link, a blob cut on the
    // disk since its stat): nothing is sent yet, so the request fails instead of a short body
    body.destroy();
    throw new Error(`stored file holds ${file.length} of the ${length} bytes promised from ${start}`);
  }
  if (file) {
    await sendFileRange(ctx, file, body);
    return;
  }
  await sendStream(ctx, body, length);
}

/**
 * A body of known length: through the socket piece by piece, giving each piece back to its
 * reader's pool once the socket took it, when the reader offers that (storage/recycle.ts);
 * else as Koa sends any stream, through a check of its length: a stream that ends short or runs
 * long fails, and Koa's pipeline then cuts the connection (a short body ended normally left the
 * connection open, and the next response's bytes were read as the rest of this one).
 */
export async function sendStream(ctx: Context, body: Readable, length: number): Promise<void> {
  const pieces = recyclerOf(body);
  if (pieces) {
    await sendRecycled(ctx, body, length, pieces);
    return;
  }
  let seen = 0;
  const exact = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      seen += chunk.length;
      cb(seen > length ? new Error(`stored body longer than ${length} bytes`) : null, chunk);
    },
    flush(cb) {
      cb(seen === length ? null : new Error(`stored body ended after ${seen} of ${length} bytes`));
    },
  });
  ctx.body = pipeline(body, exact, () => undefined);
  ctx.length = length;
}

/**
 * The X-Accel-Redirect target of a blob with nginx_x_accel_redirect set: the prefix (an nginx
 * `internal` location aliasing the filesystem driver's root) and the blob's storage key. Only for
 * requests where nginx says it will serve the file (`X-Sendfile-Type: X-Accel-Redirect`, the
 * request header Rack::Sendfile made the convention) and, with trusted_proxies set, that came
 * through one of them: a client talking to a node directly gets the bytes.
 */
export function accelUri(config: { readonly nginx_x_accel_redirect: string | null }, digest: string, ctx: Context): string | undefined {
  const prefix = config.nginx_x_accel_redirect;
  if (prefix === null || !/^sha256:[0-9a-f]{64}$/.test(digest)) return undefined;
  if ((ctx.state as { fromTrustedProxy?: boolean }).fromTrustedProxy === false) return undefined;
  if (ctx.get('X-Sendfile-Type').toLowerCase() !== 'x-accel-redirect') return undefined;
  return `${prefix.replace(/\/+$/, '')}/${keys.blob(digest.slice('sha256:'.length))}`;
}
