import { eventDeliveries } from '../metrics/registry.js';
import type { Knex } from 'knex';
import { randomBytes, randomUUID } from 'node:crypto';
import { dbEngine } from '../db/knex.js';
import { toBool, toNum } from '../db/rows.js';

/**
 * The webhooks' tables (migrations/20261220150000_webhooks.ts): hooks per repository, and the
 * outbox of deliveries every index node reads. A delivery is taken by one node at a time: on
 * PostgreSQL with `FOR UPDATE SKIP LOCKED`, on SQLite (one writer) by a conditional UPDATE whose
 * row count says who won. A taken delivery carries a lease: a node that dies while sending leaves
 * it to be taken again once the lease ends.
 */

export interface Webhook {
  readonly id: number;
  readonly repoId: number;
  readonly name: string;
  readonly url: string;
  /** Never shown back: whether one is set. */
  readonly hasSecret: boolean;
  readonly chained: boolean;
  readonly createdAt: number;
}

export type DeliveryState = 'waiting' | 'pending' | 'sending' | 'delivered' | 'failed' | 'skipped';
export type DeliveryEvent = 'push' | 'test';

export interface Attempt {
  readonly at: number;
  readonly status: number | null;
  readonly durationMs: number;
  readonly error: string | null;
  readonly responseExcerpt: string | null;
}

export interface Delivery {
  readonly id: string;
  readonly webhookId: number;
  readonly event: DeliveryEvent;
  readonly tag: string | null;
  readonly state: DeliveryState;
  readonly attempts: number;
  readonly nextAt: number;
  readonly lastStatus: number | null;
  readonly lastError: string | null;
  readonly callback: {
    readonly state: string;
    readonly description: string | null;
    readonly context: string | null;
    readonly targetUrl: string | null;
    readonly at: number;
  } | null;
  readonly createdAt: number;
  readonly finishedAt: number | null;
}

/** A claimed delivery with what sending it needs. */
export interface Claimed {
  readonly id: string;
  readonly event: DeliveryEvent;
  readonly payload: string;
  readonly attempts: number;
  readonly url: string;
  readonly secret: string | null;
  readonly createdAt: number;
}

interface HookRow {
  id: unknown;
  repo_id: unknown;
  name: string;
  url: string;
  secret: string | null;
  chained: unknown;
  created_at: unknown;
}

const toHook = (r: HookRow): Webhook => ({
  id: toNum(r.id),
  repoId: toNum(r.repo_id),
  name: r.name,
  url: r.url,
  hasSecret: r.secret !== null && r.secret !== '',
  chained: toBool(r.chained),
  createdAt: toNum(r.created_at),
});

export async function listHooks(db: Knex, repoId: number): Promise<Webhook[]> {
  return ((await db('webhooks').where({ repo_id: repoId }).orderBy('id')) as HookRow[]).map(toHook);
}

/** Hook ids are a 32-bit serial column: a larger number names no hook (PostgreSQL refused the query: a 500). */
const MAX_HOOK_ID = 2 ** 31 - 1;

/** The repository's hook with this id; undefined for one it does not have, or an id no hook can have. */
export async function findHook(db: Knex, repoId: number, id: number): Promise<Webhook | undefined> {
  if (!Number.isSafeInteger(id) || id < 1 || id > MAX_HOOK_ID) return undefined;
  const r = (await db('webhooks').where({ repo_id: repoId, id }).first()) as HookRow | undefined;
  return r ? toHook(r) : undefined;
}

export async function countHooks(db: Knex, repoId: number): Promise<number> {
  const r = (await db('webhooks').where({ repo_id: repoId }).count({ n: '*' }).first()) as { n: unknown } | undefined;
  return toNum(r?.n);
}

export interface NewHook {
  readonly name: string;
  readonly url: string;
  readonly secret?: string | null;
  readonly chained?: boolean;
}

export async function createHook(db: Knex, repoId: number, h: NewHook, now = Date.now()): Promise<Webhook> {
  const [row] = (await db('webhooks')
    .insert({ repo_id: repoId, name: h.name, url: h.url, secret: h.secret ?? null, chained: h.chained ?? false, created_at: now })
    .returning('*')) as HookRow[];
  return toHook(row!);
}

export async function deleteHook(db: Knex, repoId: number, id: number): Promise<boolean> {
  // attempts and deliveries go with it (ON DELETE CASCADE; SQLite runs with foreign_keys = ON)
  return (await db('webhooks').where({ repo_id: repoId, id }).delete()) > 0;
}

/**
 * Deliveries of one hook that may be queued and not finished (waiting, pending, sending). Hook URLs
 * are their owners' choice: a receiver that never answers must not grow the outbox shared by every
 * repository without end. A push past the cap records the delivery as `skipped` with the reason
 * (and a chained hook after it is skipped too); a test delivery past it, or past
 * MAX_OPEN_TESTS_PER_HOOK unfinished tests, is refused.
 */
export const MAX_OPEN_PER_HOOK = 100;
/** Unfinished test deliveries of one hook: more are refused (a "Send test" button held down). */
export const MAX_OPEN_TESTS_PER_HOOK = 5;
const OPEN_STATES = ['waiting', 'pending', 'sending'];

async function openCounts(db: Knex, hookIds: readonly number[]): Promise<Map<number, number>> {
  if (hookIds.length === 0) return new Map();
  const rows = (await db('webhook_deliveries')
    .whereIn('webhook_id', hookIds)
    .whereIn('state', OPEN_STATES)
    .select('webhook_id')
    .count({ n: '*' })
    .groupBy('webhook_id')) as {
    webhook_id: unknown;
    n: unknown;
  }[];
  return new Map(rows.map((r) => [toNum(r.webhook_id), toNum(r.n)]));
}

/** A fresh callback token: 32 random bytes, hex (the path of callback_url). */
export const callbackToken = (): string => randomBytes(32).toString('hex');

/**
 * Queue one push delivery per hook of the repository, in hook order. A chained hook's delivery
 * waits for the previous hook's `success` callback (Hub's chains); the others are due at once.
 * `payload(token)` builds the body with the delivery's callback token. Returns the delivery ids.
 */
/**
 * Queue one delivery per hook of a pushed tag. `noticeId`: the id of a split registry's v1 push
 * notice, recorded in the same transaction; a notice already recorded (a replay after a lost
 * answer) queues nothing (two replays at once: the primary key refuses the second, which fails).
 */
export async function enqueuePush(
  db: Knex,
  repoId: number,
  tag: string,
  payload: (callbackToken: string) => string,
  now = Date.now(),
  noticeId?: string,
): Promise<string[]> {
  return db.transaction(async (trx) => {
    if (noticeId !== undefined) {
      // scoped to the repository: a writer of another one cannot spend this repository's ids
      const key = `${repoId}/${noticeId}`;
      if (await trx('v1_push_notices').where({ id: key }).first()) return [];
      await trx('v1_push_notices').insert({ id: key, created_at: now });
    }
    const hooks = ((await trx('webhooks').where({ repo_id: repoId }).orderBy('id')) as HookRow[]).map(toHook);
    const open = await openCounts(
      trx,
      hooks.map((h) => h.id),
    );
    const ids: string[] = [];
    let previous: string | undefined;
    let previousSkipped = false;
    for (const h of hooks) {
      const id = randomUUID();
      const token = callbackToken();
      const waits = h.chained && previous !== undefined;
      // past the cap (or chained after a skipped one): recorded, never sent
      const full = (open.get(h.id) ?? 0) >= MAX_OPEN_PER_HOOK;
      const skipped: boolean = full || (waits && previousSkipped);
      await trx('webhook_deliveries').insert({
        id,
        webhook_id: h.id,
        event: 'push',
        tag,
        payload: payload(token),
        state: skipped ? 'skipped' : waits ? 'waiting' : 'pending',
        after_id: waits && !skipped ? previous : null,
        attempts: 0,
        next_at: now,
        callback_token: token,
        created_at: now,
        ...(skipped
          ? {
              finished_at: now,
              last_error: full
                ? `not sent: ${MAX_OPEN_PER_HOOK} deliveries of this hook were still unfinished`
                : 'not sent: the previous hook of the chain was skipped',
            }
          : {}),
      });
      ids.push(id);
      previous = id;
      previousSkipped = skipped;
    }
    return ids;
  });
}

/**
 * A "test" delivery to one hook (never part of a chain). Returns undefined, queueing nothing, while
 * the hook has MAX_OPEN_TESTS_PER_HOOK unfinished tests or MAX_OPEN_PER_HOOK unfinished deliveries.
 */
export async function enqueueTest(db: Knex, hook: Webhook, payload: (callbackToken: string) => string, now = Date.now()): Promise<string | undefined> {
  const busy = (await db('webhook_deliveries')
    .where({ webhook_id: hook.id })
    .whereIn('state', OPEN_STATES)
    .select(db.raw("sum(case when event = 'test' then 1 else 0 end) as tests"))
    .count({ n: '*' })
    .first()) as { tests: unknown; n: unknown } | undefined;
  if (toNum(busy?.tests) >= MAX_OPEN_TESTS_PER_HOOK || toNum(busy?.n) >= MAX_OPEN_PER_HOOK) return undefined;
  const id = randomUUID();
  const token = callbackToken();
  await db('webhook_deliveries').insert({
    id,
    webhook_id: hook.id,
    event: 'test',
    tag: null,
    payload: payload(token),
    state: 'pending',
    attempts: 0,
    next_at: now,
    callback_token: token,
    created_at: now,
  });
  return id;
}

const DUE = (now: number) => (q: Knex.QueryBuilder) =>
  q.where((w) => w.where('state', 'pending').andWhere('next_at', '<=', now)).orWhere((w) => w.where('state', 'sending').andWhere('claimed_until', '<', now));

/**
 * Take up to `limit` due deliveries for `node` (pending ones whose time has come, and sending ones
 * whose lease ended: their node died). Each is taken by exactly one node.
 */
export async function claimDue(db: Knex, node: string, limit: number, leaseMs: number, now = Date.now()): Promise<Claimed[]> {
  const until = now + leaseMs;
  let ids: string[];
  if (dbEngine(db) === 'pg') {
    const rows = (await db.raw(
      `UPDATE webhook_deliveries SET state = 'sending', claimed_by = ?, claimed_until = ?
       WHERE id IN (SELECT id FROM webhook_deliveries
                    WHERE (state = 'pending' AND next_at <= ?) OR (state = 'sending' AND claimed_until < ?)
                    ORDER BY next_at LIMIT ? FOR UPDATE SKIP LOCKED)
       RETURNING id`,
      [node, until, now, now, limit],
    )) as { rows: { id: string }[] };
    ids = rows.rows.map((r) => r.id);
  } else {
    const candidates = (await db('webhook_deliveries').select('id').where(DUE(now)).orderBy('next_at').limit(limit)) as { id: string }[];
    ids = [];
    for (const c of candidates) {
      const n = await db('webhook_deliveries').where({ id: c.id }).andWhere(DUE(now)).update({ state: 'sending', claimed_by: node, claimed_until: until });
      if (n === 1) ids.push(c.id);
    }
  }
  if (ids.length === 0) return [];
  const rows = (await db('webhook_deliveries as d')
    .join('webhooks as h', 'h.id', 'd.webhook_id')
    .whereIn('d.id', ids)
    .select('d.id', 'd.event', 'd.payload', 'd.attempts', 'd.created_at', 'h.url', 'h.secret')) as {
    id: string;
    event: DeliveryEvent;
    payload: string;
    attempts: unknown;
    created_at: unknown;
    url: string;
    secret: string | null;
  }[];
  return rows.map((r) => ({
    id: r.id,
    event: r.event,
    payload: r.payload,
    attempts: toNum(r.attempts),
    url: r.url,
    secret: r.secret,
    createdAt: toNum(r.created_at),
  }));
}

export interface AttemptResult {
  readonly status: number | null;
  readonly durationMs: number;
  readonly error: string | null;
  readonly excerpt: string | null;
}

/**
 * Record one attempt of a delivery this node holds, and what follows: delivered, again at
 * `retryAt`, or failed (retryAt undefined). Returns false when the lease was lost meanwhile
 * (another node took the delivery over); the attempt is recorded anyway.
 */
export async function finishAttempt(
  db: Knex,
  node: string,
  id: string,
  r: AttemptResult,
  outcome: { delivered: true } | { delivered: false; retryAt?: number },
  now = Date.now(),
): Promise<boolean> {
  return db.transaction(async (trx) => {
    await trx('webhook_attempts').insert({
      delivery_id: id,
      at: now - r.durationMs,
      status: r.status,
      duration_ms: Math.round(r.durationMs),
      error: r.error,
      response_excerpt: r.excerpt,
      node: node.slice(0, 64),
    });
    const next = outcome.delivered
      ? { state: 'delivered', finished_at: now }
      : outcome.retryAt !== undefined
        ? { state: 'pending', next_at: outcome.retryAt }
        : { state: 'failed', finished_at: now };
    const n = await trx('webhook_deliveries')
      .where({ id, claimed_by: node, state: 'sending' })
      .update({ ...next, attempts: trx.raw('attempts + 1'), last_status: r.status, last_error: r.error, claimed_by: null, claimed_until: null });
    // a chain does not wait for a hook that was never reached
    if (n === 1 && next.state === 'failed') await skipAfter(trx, id, now);
    if (n === 1) eventDeliveries.inc({ queue: 'webhooks', result: next.state === 'delivered' ? 'success' : next.state === 'pending' ? 'retry' : 'failed' });
    return n === 1;
  });
}

/** Every delivery waiting (transitively) on `id` is skipped: the chain stops there. */
async function skipAfter(trx: Knex, id: string, now: number): Promise<void> {
  let frontier = [id];
  while (frontier.length > 0) {
    const rows = (await trx('webhook_deliveries').whereIn('after_id', frontier).andWhere('state', 'waiting').select('id')) as { id: string }[];
    frontier = rows.map((r) => r.id);
    if (frontier.length > 0) await trx('webhook_deliveries').whereIn('id', frontier).update({ state: 'skipped', finished_at: now });
  }
}

export interface CallbackBody {
  readonly state: 'success' | 'failure' | 'error';
  readonly description?: string;
  readonly context?: string;
  readonly targetUrl?: string;
}

/**
 * A receiver's callback for the delivery holding this token: recorded (the last one wins); a
 * `success` releases the next hook of the chain, anything else stops the chain. Returns the
 * delivery's id, or undefined for a token unknown in this repository.
 */
export async function recordCallback(
  db: Knex,
  repoId: number,
  token: string,
  body: CallbackBody,
  now = Date.now(),
): Promise<{ deliveryId: string } | undefined> {
  return db.transaction(async (trx) => {
    // the token of another repository's delivery answers as an unknown one
    const row = (await trx('webhook_deliveries as d')
      .join('webhooks as h', 'h.id', 'd.webhook_id')
      .where({ 'd.callback_token': token, 'h.repo_id': repoId })
      .first('d.id as id')) as { id: string } | undefined;
    if (!row) return undefined;
    await trx('webhook_deliveries')
      .where({ id: row.id })
      .update({
        callback_state: body.state,
        callback_description: body.description ?? null,
        callback_context: body.context ?? null,
        callback_target_url: body.targetUrl ?? null,
        callback_at: now,
      });
    if (body.state === 'success') {
      await trx('webhook_deliveries').where({ after_id: row.id, state: 'waiting' }).update({ state: 'pending', next_at: now });
    } else {
      await skipAfter(trx, row.id, now);
    }
    return { deliveryId: row.id };
  });
}

interface DeliveryRow {
  id: string;
  webhook_id: unknown;
  event: DeliveryEvent;
  tag: string | null;
  state: DeliveryState;
  attempts: unknown;
  next_at: unknown;
  last_status: unknown;
  last_error: string | null;
  callback_state: string | null;
  callback_description: string | null;
  callback_context: string | null;
  callback_target_url: string | null;
  callback_at: unknown;
  created_at: unknown;
  finished_at: unknown;
}

const toDelivery = (r: DeliveryRow): Delivery => ({
  id: r.id,
  webhookId: toNum(r.webhook_id),
  event: r.event,
  tag: r.tag,
  state: r.state,
  attempts: toNum(r.attempts),
  nextAt: toNum(r.next_at),
  lastStatus: r.last_status === null || r.last_status === undefined ? null : toNum(r.last_status),
  lastError: r.last_error,
  callback:
    r.callback_state === null
      ? null
      : {
          state: r.callback_state,
          description: r.callback_description,
          context: r.callback_context,
          targetUrl: r.callback_target_url,
          at: toNum(r.callback_at),
        },
  createdAt: toNum(r.created_at),
  finishedAt: r.finished_at === null || r.finished_at === undefined ? null : toNum(r.finished_at),
});

/** The newest deliveries of a hook (at most `limit`), each with its attempts, oldest attempt first. */
export async function listDeliveries(db: Knex, hookId: number, limit = 50): Promise<(Delivery & { attemptsLog: Attempt[] })[]> {
  const rows = ((await db('webhook_deliveries').where({ webhook_id: hookId }).orderBy('created_at', 'desc').orderBy('id').limit(limit)) as DeliveryRow[]).map(
    toDelivery,
  );
  if (rows.length === 0) return [];
  const attempts = (await db('webhook_attempts')
    .whereIn(
      'delivery_id',
      rows.map((r) => r.id),
    )
    .orderBy('id')) as { delivery_id: string; at: unknown; status: unknown; duration_ms: unknown; error: string | null; response_excerpt: string | null }[];
  const by = new Map<string, Attempt[]>();
  for (const a of attempts) {
    const list = by.get(a.delivery_id) ?? [];
    list.push({
      at: toNum(a.at),
      status: a.status === null ? null : toNum(a.status),
      durationMs: toNum(a.duration_ms),
      error: a.error,
      responseExcerpt: a.response_excerpt,
    });
    by.set(a.delivery_id, list);
  }
  return rows.map((r) => ({ ...r, attemptsLog: by.get(r.id) ?? [] }));
}

/** How many deliveries are in each state (queue depth for operators and metrics). */
export async function deliveryCounts(db: Knex): Promise<Record<string, number>> {
  const rows = (await db('webhook_deliveries').select('state').count({ n: '*' }).groupBy('state')) as { state: string; n: unknown }[];
  return Object.fromEntries(rows.map((r) => [r.state, toNum(r.n)]));
}

/**
 * Forget finished deliveries (delivered, failed, skipped) older than `maxAgeMs`, and keep at most
 * `keepPerHook` finished ones per hook: the history stays bounded however many pushes there are.
 * Returns how many were removed.
 */
export async function pruneDeliveries(db: Knex, maxAgeMs: number, keepPerHook: number, now = Date.now()): Promise<number> {
  const FINISHED = ['delivered', 'failed', 'skipped'];
  let removed = await db('webhook_deliveries')
    .whereIn('state', FINISHED)
    .andWhere('finished_at', '<', now - maxAgeMs)
    .delete();
  // ids of v1 push notices: a registry gives up replaying one long before (PENDING_MAX_AGE_MS)
  await db('v1_push_notices')
    .where('created_at', '<', now - maxAgeMs)
    .delete();
  const crowded = (await db('webhook_deliveries')
    .whereIn('state', FINISHED)
    .select('webhook_id')
    .count({ n: '*' })
    .groupBy('webhook_id')
    .havingRaw('count(*) > ?', [keepPerHook])) as {
    webhook_id: unknown;
  }[];
  for (const h of crowded) {
    const keep = db('webhook_deliveries')
      .where({ webhook_id: toNum(h.webhook_id) })
      .whereIn('state', FINISHED)
      .orderBy('created_at', 'desc')
      .limit(keepPerHook)
      .select('id');
    removed += await db('webhook_deliveries')
      .where({ webhook_id: toNum(h.webhook_id) })
      .whereIn('state', FINISHED)
      .whereNotIn('id', keep)
      .delete();
  }
  return removed;
}
