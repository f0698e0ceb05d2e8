import type { Context, Next } from 'koa';
import { gunzipSync, inflateSync } from 'node:zlib';
import { RegistryError, type V1Code } from '../errors/index.js';

/**
 * A body that grew past its limit without announcing its length (chunked): answer, then close the
 * connection as nginx's lingering close does: the client gets to read the 413 (closing at once
 * with unread input makes the kernel send a reset, which can destroy the answer in flight), what
 * it still sends is discarded, and after a grace period the socket goes whatever the client does.
 */
function closeAfterAnswer(ctx: Context): void {
  ctx.set('Connection', 'close');
  const socket = ctx.req.socket;
  ctx.req.resume();
  ctx.res.once('finish', () => {
    socket.end();
    setTimeout(() => socket.destroy(), 2000).unref();
  });
}

/** Read a small raw body (the image json must be stored byte for byte), failing past limit. */
export async function readRawBody(ctx: Context, limit: number): Promise<Buffer> {
  const declared = Number(ctx.get('Content-Length') || NaN);
  if (Number.isFinite(declared) && declared > limit) throw new RegistryError('BODY_TOO_LARGE');
  const chunks: Buffer[] = [];
  let total = 0;
  // destroyOnReturn false: leaving the loop early must not reset the connection (closeAfterAnswer)
  for await (const chunk of ctx.req.iterator({ destroyOnReturn: false }) as AsyncIterable<Buffer>) {
    total += chunk.length;
    if (total > limit) {
      closeAfterAnswer(ctx);
      throw new RegistryError('BODY_TOO_LARGE');
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks, total);
}

/**
 * Deepest nesting of arrays and objects a JSON request body may have. Our bodies nest two levels
 * (an image list of objects); the limit only stops bodies built to cost memory and time to parse
 * (4 MB of `[` is two million nested arrays; security issue 10, finding 9).
 */
export const MAX_JSON_DEPTH = 64;

/** Body limit of routes whose bodies are tiny (signup, account update, comments). */
export const SMALL_JSON_LIMIT = 64 * 1024;

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_ARRAY = 0x5b;
const OPEN_OBJECT = 0x7b;
const CLOSE_ARRAY = 0x5d;
const CLOSE_OBJECT = 0x7d;

/**
 * Does the JSON text nest deeper than max? One linear pass over the bytes, strings skipped (a
 * bracket inside a string does not count), before anything is parsed. Malformed text is left to
 * the parser: this only answers the question it is asked.
 */
export function jsonDepthExceeds(text: Buffer, max: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (inString) {
      if (c === BACKSLASH) i++;
      else if (c === QUOTE) inString = false;
    } else if (c === QUOTE) {
      inString = true;
    } else if (c === OPEN_ARRAY || c === OPEN_OBJECT) {
      if (++depth > max) return true;
    } else if (c === CLOSE_ARRAY || c === CLOSE_OBJECT) {
      depth--;
    }
  }
  return false;
}

/** koa-body's default: only these methods carry a body worth parsing. */
const BODY_METHODS = new Set(['POST', 'PUT', 'PATCH']);

/** The body bytes with any Content-Encoding (gzip, deflate) undone, still within limit. */
function decoded(ctx: Context, raw: Buffer, limit: number, onInvalid: V1Code): Buffer {
  const encoding = ctx.get('Content-Encoding').trim().toLowerCase();
  if (encoding === '' || encoding === 'identity') return raw;
  if (encoding !== 'gzip' && encoding !== 'deflate') throw new RegistryError(onInvalid);
  try {
    return (encoding === 'gzip' ? gunzipSync : inflateSync)(raw, { maxOutputLength: limit });
  } catch (e) {
    if (e instanceof RangeError) throw new RegistryError('BODY_TOO_LARGE');
    throw new RegistryError(onInvalid);
  }
}

/**
 * Read and parse one JSON request body, checking before parsing: at most `limit` bytes (413
 * BODY_TOO_LARGE, refused from Content-Length before a byte is read) and at most MAX_JSON_DEPTH
 * levels of nesting (the route's own 400). Any JSON value is accepted (tag bodies are bare
 * strings); an empty body is '' (as koa-body left it, which the routes rely on); a body that does
 * not parse is the route's own protocol error. The Content-Type is not looked at (the Python
 * registry never did).
 */
export async function readJsonBody(ctx: Context, limit: number, onInvalid: V1Code): Promise<unknown> {
  if (!BODY_METHODS.has(ctx.method)) return undefined;
  let raw = decoded(ctx, await readRawBody(ctx, limit), limit, onInvalid);
  if (raw.length >= 3 && raw[0] === 0xef && raw[1] === 0xbb && raw[2] === 0xbf) raw = raw.subarray(3);
  if (raw.length === 0) return '';
  if (jsonDepthExceeds(raw, MAX_JSON_DEPTH)) throw new RegistryError(onInvalid);
  try {
    return JSON.parse(raw.toString('utf8')) as unknown;
  } catch {
    throw new RegistryError(onInvalid);
  }
}

/**
 * The JSON body of one route as a middleware (see readJsonBody); the value is then parsedBody(ctx).
 * Routes that authenticate call readJsonBody after authentication instead, so an anonymous client
 * cannot make the server read and parse a body it will refuse anyway.
 */
export function jsonBody(limit: number, onInvalid: V1Code): (ctx: Context, next: Next) => Promise<void> {
  return async (ctx, next) => {
    (ctx.request as { body?: unknown }).body = await readJsonBody(ctx, limit, onInvalid);
    await next();
  };
}

/** The parsed JSON body, or undefined when the request had none. */
export function parsedBody(ctx: Context): unknown {
  const b = (ctx.request as { body?: unknown }).body;
  if (b !== null && typeof b === 'object' && !Array.isArray(b) && Object.keys(b).length === 0 && !ctx.request.length) {
    return undefined;
  }
  return b;
}
