import type { Context, Next } from 'koa';
import { koaBody } from 'koa-body';
import { RegistryError, type V1Code } from '../errors/index.js';

/** Read a small raw body (the image json must be stored byte for byte), failing past limit. */
export async function readRawBody(ctx: Context, limit: number): Promise<Buffer> {
  const declared = Number(ctx.get('Content-Length') || NaN);
  if (Number.isFinite(declared) && declared > limit) throw new RegistryError('BODY_TOO_LARGE');
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of ctx.req as AsyncIterable<Buffer>) {
    total += chunk.length;
    if (total > limit) {
      ctx.req.destroy();
      throw new RegistryError('BODY_TOO_LARGE');
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks, total);
}

/**
 * koa-body for one JSON route. Any JSON value is accepted (tag bodies are bare strings), a missing
 * Content-Type is read as JSON (the Python registry never looked at it), and a body that does not
 * parse becomes the route's own protocol error.
 */
export function jsonBody(limit: number, onInvalid: V1Code): (ctx: Context, next: Next) => Promise<void> {
  const parser = koaBody({ json: true, jsonStrict: false, jsonLimit: limit, text: false, urlencoded: false, multipart: false });
  return async (ctx, next) => {
    if (!ctx.get('Content-Type') || !ctx.is('json')) ctx.request.headers['content-type'] = 'application/json';
    try {
      await parser(ctx, async () => undefined);
    } catch (e) {
      const status = (e as { status?: number }).status;
      if (status === 413) throw new RegistryError('BODY_TOO_LARGE');
      if (status && status < 500) throw new RegistryError(onInvalid);
      throw e;
    }
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
