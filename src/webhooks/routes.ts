import type { Context } from 'koa';
import Router from '@koa/router';
import type { IndexService } from '../index/service.js';
import { RegistryError } from '../errors/index.js';
import { readJsonBody, SMALL_JSON_LIMIT } from '../http/body.js';
import { sendJson } from '../http/respond.js';
import { clientAddress } from '../http/app.js';
import { repoName } from '../registry/routes.js';
import { findRepository, type Repository } from '../db/repositories.js';
import { isUniqueViolation } from '../db/rows.js';
import type { User } from '../db/users.js';
import { countHooks, createHook, deleteHook, findHook, listDeliveries, listHooks, recordCallback, type CallbackBody, type NewHook } from './store.js';
import type { Webhooks } from './service.js';
import { DestinationPolicy } from './outgoing.js';
import { CONTROL_CHARS } from '../util/text.js';

/** Hooks per repository (each push queues one delivery per hook). */
export const MAX_HOOKS_PER_REPOSITORY = 20;

/**
 * A hook's fields from a JSON body or a form; throws INVALID_DATA with the reason. A URL naming an
 * address the policy refuses (loopback, private, link-local, … unless allowed) is refused here;
 * names are judged at each delivery, on the addresses they resolve to.
 */
export function validHook(body: { name?: unknown; url?: unknown; secret?: unknown; chained?: unknown }, destinations: DestinationPolicy): NewHook {
  const bad = (why: string): never => {
    throw new RegistryError('INVALID_DATA', `Invalid data: ${why}`);
  };
  const name = typeof body.name === 'string' ? body.name.trim() : bad('name is required');
  if (name === '' || name.length > 100 || CONTROL_CHARS.test(name)) bad('name: 1 to 100 printable characters');
  const raw = typeof body.url === 'string' ? body.url.trim() : bad('url is required');
  let url: URL | undefined;
  try {
    url = new URL(raw);
  } catch {
    bad('url: an absolute http(s) URL');
  }
  if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:') || raw.length > 2048 || CONTROL_CHARS.test(raw))
    bad('url: an absolute http(s) URL of at most 2048 characters');
  if (url!.username || url!.password) bad('url: no credentials in the URL (set a secret instead)');
  const literal = DestinationPolicy.literal(url!);
  if (literal !== undefined && !destinations.permits(literal))
    bad(`url: ${url!.hostname} is not a public address (an operator may allow networks with webhook_allowed_networks)`);
  let secret: string | null = null;
  if (body.secret !== undefined && body.secret !== null && body.secret !== '') {
    if (typeof body.secret !== 'string' || body.secret.length > 200 || CONTROL_CHARS.test(body.secret)) bad('secret: at most 200 printable characters');
    secret = body.secret as string;
  }
  const chained = body.chained === true || body.chained === 'on' || body.chained === 'true';
  return { name, url: url!.toString(), secret, chained };
}

/** The hook as the owner reads it (the secret never comes back). */
const shown = (h: Awaited<ReturnType<typeof listHooks>>[number]) => ({
  id: h.id,
  name: h.name,
  url: h.url,
  secret: h.hasSecret,
  chained: h.chained,
  created_at: new Date(h.createdAt).toISOString(),
});

/**
 * The webhook API of the index (JSON, Basic auth as the rest of /v1/):
 * - `GET|POST /v1/webhooks/<ns>/<repo>`: the hooks, a new hook `{name, url, secret?, chained?}`
 *   (`Content-Type: application/json`, else 415);
 * - `DELETE /v1/webhooks/<ns>/<repo>/<id>`, `POST …/<id>/test`, `GET …/<id>/deliveries`;
 * - `POST /u/<ns>/<repo>/hook/<token>/`: a receiver's callback `{state, description?, context?, target_url?}`.
 * Hooks are the owner's (whoever may delete the repository: its user, organization owners,
 * admins); a repository the caller may not read answers as a missing one.
 */
export function webhookRouter(index: IndexService, hooks: Webhooks): Router {
  const router = new Router();
  const BASIC = { 'WWW-Authenticate': 'Basic realm="auth required"' };

  const owned = async (ctx: Context): Promise<{ user: User; repo: Repository }> => {
    const name = repoName(`${String(ctx.params.ns)}/${String(ctx.params.repo)}`);
    const user = await index.authenticate(ctx.get('Authorization') || undefined, { address: clientAddress(ctx) });
    if (!user) throw new RegistryError('LOGIN_REQUIRED', undefined, BASIC);
    const repo = await findRepository(index.db, name.namespace, name.repository);
    const rights = await index.rights(user, name, repo);
    if (!repo || !rights.read) throw new RegistryError('REPOSITORY_NOT_FOUND');
    if (!rights.delete) throw new RegistryError('ACCESS_DENIED', 'Only the owner of the repository manages its webhooks');
    return { user, repo };
  };
  const hookOf = async (ctx: Context, repo: Repository) => {
    const h = await findHook(index.db, repo.id, Number(ctx.params.id));
    if (!h) throw new RegistryError('NOT_FOUND', 'Webhook not found');
    return h;
  };

  router.get('/v1/webhooks/:ns/:repo', async (ctx) => {
    const { repo } = await owned(ctx);
    sendJson(ctx, 200, (await listHooks(index.db, repo.id)).map(shown));
  });
  router.post('/v1/webhooks/:ns/:repo', async (ctx) => {
    const { repo } = await owned(ctx);
    // JSON only, and said so: an HTML form of another site can post text/plain that reads as JSON
    // (enctype=text/plain, no CORS preflight) with the browser's cached Basic credentials, never
    // application/json (src/http/cross-site.ts refuses such requests first, from their headers)
    if (ctx.get('Content-Type').split(';')[0]!.trim().toLowerCase() !== 'application/json')
      throw new RegistryError('UNSUPPORTED_MEDIA_TYPE', 'Content-Type must be application/json');
    const body = (await readJsonBody(ctx, SMALL_JSON_LIMIT, 'INVALID_DATA')) as Record<string, unknown> | undefined;
    if (!body || typeof body !== 'object' || Array.isArray(body)) throw new RegistryError('INVALID_DATA');
    const h = validHook(body, hooks.destinations);
    if ((await countHooks(index.db, repo.id)) >= MAX_HOOKS_PER_REPOSITORY)
      throw new RegistryError('INVALID_DATA', `At most ${MAX_HOOKS_PER_REPOSITORY} webhooks per repository`);
    try {
      sendJson(ctx, 201, shown(await createHook(index.db, repo.id, h)));
    } catch (e) {
      if (isUniqueViolation(e)) throw new RegistryError('INVALID_DATA', `A webhook named ${h.name} exists`);
      throw e;
    }
  });
  router.delete('/v1/webhooks/:ns/:repo/:id', async (ctx) => {
    const { repo } = await owned(ctx);
    const h = await hookOf(ctx, repo);
    await deleteHook(index.db, repo.id, h.id);
    sendJson(ctx, 200, true);
  });
  router.post('/v1/webhooks/:ns/:repo/:id/test', async (ctx) => {
    const { user, repo } = await owned(ctx);
    const h = await hookOf(ctx, repo);
    const delivery = await hooks.test(h, repo, user.username);
    if (delivery === undefined) throw new RegistryError('TOO_MANY_DELIVERIES');
    sendJson(ctx, 202, { delivery });
  });
  router.get('/v1/webhooks/:ns/:repo/:id/deliveries', async (ctx) => {
    const { repo } = await owned(ctx);
    const h = await hookOf(ctx, repo);
    const n = Math.min(200, Math.max(1, Number(ctx.query.n ?? 50) || 50));
    const list = await listDeliveries(index.db, h.id, n);
    sendJson(
      ctx,
      200,
      list.map((d) => ({
        id: d.id,
        event: d.event,
        tag: d.tag,
        state: d.state,
        attempts: d.attempts,
        next_attempt_at: d.state === 'pending' ? new Date(d.nextAt).toISOString() : null,
        created_at: new Date(d.createdAt).toISOString(),
        finished_at: d.finishedAt === null ? null : new Date(d.finishedAt).toISOString(),
        callback: d.callback && {
          state: d.callback.state,
          description: d.callback.description,
          context: d.callback.context,
          target_url: d.callback.targetUrl,
          at: new Date(d.callback.at).toISOString(),
        },
        history: d.attemptsLog.map((a) => ({
          at: new Date(a.at).toISOString(),
          status: a.status,
          duration_ms: a.durationMs,
          error: a.error,
          response: a.responseExcerpt,
        })),
      })),
    );
  });

  // Hub's callback_url: the random token is the credential (it names one delivery of this repository)
  const callback = async (ctx: Context): Promise<void> => {
    const token = String(ctx.params.token);
    if (!/^[a-f0-9]{64}$/.test(token)) throw new RegistryError('NOT_FOUND', 'Unknown callback');
    const name = repoName(`${String(ctx.params.ns)}/${String(ctx.params.repo)}`);
    const repo = await findRepository(index.db, name.namespace, name.repository);
    if (!repo) throw new RegistryError('NOT_FOUND', 'Unknown callback');
    const body = (await readJsonBody(ctx, 16 * 1024, 'INVALID_DATA')) as Record<string, unknown> | undefined;
    const state = body?.state;
    if (state !== 'success' && state !== 'failure' && state !== 'error')
      throw new RegistryError('INVALID_DATA', 'Invalid data: state is success, failure or error');
    const text = (k: string, max: number): string | undefined => {
      const v = body?.[k];
      if (v === undefined || v === null) return undefined;
      // no NUL: PostgreSQL refuses it (the callback was a 500 there)
      if (typeof v !== 'string' || v.length > max || v.includes('\0'))
        throw new RegistryError('INVALID_DATA', `Invalid data: ${k} is text of at most ${max} characters`);
      return v;
    };
    const cb: CallbackBody = {
      state,
      ...(text('description', 1000) !== undefined ? { description: text('description', 1000)! } : {}),
      ...(text('context', 1000) !== undefined ? { context: text('context', 1000)! } : {}),
      ...(text('target_url', 2048) !== undefined ? { targetUrl: text('target_url', 2048)! } : {}),
    };
    if (!(await recordCallback(index.db, repo.id, token, cb))) throw new RegistryError('NOT_FOUND', 'Unknown callback');
    // a success may have released the next hook of a chain
    if (state === 'success') hooks.kick();
    sendJson(ctx, 200, { state });
  };
  router.post('/u/:ns/:repo/hook/:token', callback);
  router.post('/u/:ns/:repo/hook/:token/', callback);
  return router;
}
