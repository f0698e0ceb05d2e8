import type { Context, Next } from 'koa';
import { sendJson } from './respond.js';

/**
 * /v2/ while the v2 API is off: 404 without Docker-Distribution-API-Version (spec §5.1), with a v2
 * error body so that Docker 1.10+ falls back to v1 at once (clients.md: NAME_UNKNOWN for GET/HEAD,
 * UNSUPPORTED for writes).
 */
export async function v2Off(ctx: Context, next: Next): Promise<void> {
  if (ctx.path !== '/v2' && !ctx.path.startsWith('/v2/')) return next();
  const read = ctx.method === 'GET' || ctx.method === 'HEAD';
  const code = read ? 'NAME_UNKNOWN' : 'UNSUPPORTED';
  const message = read ? 'repository name not known to registry' : 'The operation is unsupported.';
  ctx.status = 404;
  ctx.type = 'application/json';
  ctx.body = JSON.stringify({ errors: [{ code, message, detail: null }] });
}

/** Anything no route answered: JSON 404 (405 would tell a client less than PY's 404). */
export function notFound(ctx: Context): void {
  sendJson(ctx, 404, { error: 'Not found' });
}
