import { createHash } from 'node:crypto';
import type { Knex } from 'knex';
import { visibility, type SearchVisibility } from './search.js';
import { clampPage, toBool, toDate, toNum, tsValue, type Page } from './rows.js';
import type { User } from './users.js';

/**
 * What the web UI (issue 14, src/web/) reads and keeps that no other module does: server-side
 * sessions, the full (Markdown) description of a repository, and the repository lists of the
 * explore and namespace pages. Every list takes the caller's visibility and applies the same
 * filter as /v1/search and the catalog (search.ts `visibility`), in the query.
 */

// ---------------------------------------------------------------------------------------------------
// Sessions

export interface WebSession {
  /** sha256 hex of the cookie value. */
  readonly id: string;
  readonly userId: number;
  readonly csrf: string;
  readonly cred: string;
  readonly createdAt: Date;
  readonly lastSeenAt: Date;
  readonly expiresAt: Date;
}

interface SessionRow {
  id: string;
  user_id: unknown;
  csrf: string;
  cred: string;
  created_at: unknown;
  last_seen_at: unknown;
  expires_at: unknown;
}

const toSession = (r: SessionRow): WebSession => ({
  id: r.id,
  userId: toNum(r.user_id),
  csrf: r.csrf,
  cred: r.cred,
  createdAt: toDate(r.created_at),
  lastSeenAt: toDate(r.last_seen_at),
  expiresAt: toDate(r.expires_at),
});

export async function saveSession(db: Knex, s: WebSession): Promise<void> {
  await db('web_sessions').insert({
    id: s.id,
    user_id: s.userId,
    csrf: s.csrf,
    cred: s.cred,
    created_at: tsValue(db, s.createdAt),
    last_seen_at: tsValue(db, s.lastSeenAt),
    expires_at: tsValue(db, s.expiresAt),
  });
}

/**
 * A session with its account in one query (each page view of a signed-in user runs it): the
 * account's active flag and the current fingerprint of its password hash, to compare with the
 * session's.
 */
export async function findSessionWithAccount(db: Knex, id: string): Promise<{ session: WebSession; user: User; cred: string } | undefined> {
  const row = (await db('web_sessions as s')
    .join('users as u', 'u.id', 's.user_id')
    .where('s.id', id)
    .first(
      's.id',
      's.user_id',
      's.csrf',
      's.cred',
      's.created_at',
      's.last_seen_at',
      's.expires_at',
      'u.username',
      'u.email',
      'u.active',
      'u.admin',
      'u.password_hash',
      { user_created_at: 'u.created_at' },
    )) as (SessionRow & { username: string; email: string; active: unknown; admin: unknown; password_hash: string; user_created_at: unknown }) | undefined;
  if (!row) return undefined;
  const user: User = {
    id: toNum(row.user_id),
    username: row.username,
    email: row.email,
    active: toBool(row.active),
    admin: toBool(row.admin),
    createdAt: toDate(row.user_created_at),
  };
  return { session: toSession(row), user, cred: fingerprint(row.password_hash) };
}

const fingerprint = (passwordHash: string): string => createHash('sha256').update(`web-session:${passwordHash}`).digest('hex').slice(0, 32);

export async function findSession(db: Knex, id: string): Promise<WebSession | undefined> {
  const row = (await db('web_sessions').where({ id }).first()) as SessionRow | undefined;
  return row && toSession(row);
}

/** Slide the expiry of a session in use. */
export async function touchSession(db: Knex, id: string, now: Date, expiresAt: Date): Promise<void> {
  await db('web_sessions')
    .where({ id })
    .update({ last_seen_at: tsValue(db, now), expires_at: tsValue(db, expiresAt) });
}

export async function removeSession(db: Knex, id: string): Promise<void> {
  await db('web_sessions').where({ id }).delete();
}

/** End every session of an account except `keep` (a password change). Returns how many ended. */
export async function removeUserSessions(db: Knex, userId: number, keep?: string): Promise<number> {
  const q = db('web_sessions').where({ user_id: userId });
  if (keep !== undefined) void q.whereNot({ id: keep });
  return q.delete();
}

/**
 * Keep an account's `keep` most recently used sessions, end the others (a sign-in beyond the cap
 * ends the account's least recently used session). Returns how many ended.
 */
export async function trimUserSessions(db: Knex, userId: number, keep: number): Promise<number> {
  const extra = (await db('web_sessions')
    .where({ user_id: userId })
    .orderBy([
      { column: 'last_seen_at', order: 'desc' },
      { column: 'created_at', order: 'desc' },
    ])
    .offset(keep)
    // (a sign-in ends one; more only where sessions piled up before the cap: the rest at the next
    // sign-ins, in batches under SQLite's bound-parameter limit, 999 on old builds)
    .limit(500)
    .select('id')) as { id: string }[];
  if (extra.length === 0) return 0;
  return db('web_sessions')
    .whereIn(
      'id',
      extra.map((r) => r.id),
    )
    .delete();
}

export async function countUserSessions(db: Knex, userId: number): Promise<number> {
  const [row] = (await db('web_sessions').where({ user_id: userId }).count({ n: '*' })) as { n: unknown }[];
  return toNum(row?.n);
}

/** Housekeeping: drop expired sessions. */
export async function removeExpiredSessions(db: Knex, now: Date): Promise<number> {
  return db('web_sessions').where('expires_at', '<', tsValue(db, now)).delete();
}

/**
 * A fingerprint of an account's password hash (never the hash itself): a session remembers the one
 * it started with, and a password changed by any path (this UI, PUT /v1/users/, the CLI) ends it.
 */
export async function credentialFingerprint(db: Knex, userId: number): Promise<string | undefined> {
  const row = (await db('users').where({ id: userId }).first('password_hash')) as { password_hash?: string } | undefined;
  if (!row?.password_hash) return undefined;
  return fingerprint(row.password_hash);
}

// ---------------------------------------------------------------------------------------------------
// Full descriptions (Markdown)

export async function findFullDescription(db: Knex, repoId: number): Promise<string> {
  const row = (await db('repository_full_descriptions').where({ repo_id: repoId }).first('body')) as { body: string } | undefined;
  return row?.body ?? '';
}

export async function saveFullDescription(db: Knex, repoId: number, body: string): Promise<void> {
  const now = tsValue(db, new Date());
  if (body === '') {
    await db('repository_full_descriptions').where({ repo_id: repoId }).delete();
    return;
  }
  await db('repository_full_descriptions').insert({ repo_id: repoId, body, updated_at: now }).onConflict('repo_id').merge({ body, updated_at: now });
}

// ---------------------------------------------------------------------------------------------------
// Repository lists

export interface RepoSummary {
  readonly namespace: string;
  readonly name: string;
  readonly description: string;
  readonly starCount: number;
  readonly private: boolean;
  readonly updatedAt: Date;
}

interface SummaryRow {
  namespace: string;
  name: string;
  description: string | null;
  star_count: unknown;
  private: unknown;
  updated_at: unknown;
}

const toSummary = (r: SummaryRow): RepoSummary => ({
  namespace: r.namespace,
  name: r.name,
  description: r.description ?? '',
  starCount: toNum(r.star_count),
  private: toBool(r.private),
  updatedAt: toDate(r.updated_at),
});

export type RepoOrder = 'updated' | 'stars' | 'name';

export interface RepoListOptions {
  readonly visibleTo: SearchVisibility;
  /** Only this namespace. */
  readonly namespace?: string;
  readonly order: RepoOrder;
  readonly page?: number;
  readonly pageSize?: number;
  /** Count every match (a page with a total); off for the explore page's short lists. */
  readonly count?: boolean;
}

/** Repositories the caller may read, one page (deleted ones never). */
export async function listVisibleRepositories(db: Knex, opts: RepoListOptions): Promise<Page<RepoSummary>> {
  const { page, pageSize } = clampPage({ page: opts.page, pageSize: opts.pageSize }, 25, 100);
  const v = visibility(opts.visibleTo);
  const base = (): Knex.QueryBuilder => {
    const q = db('repositories as r').whereRaw(v.sql, v.bindings);
    if (opts.namespace !== undefined) void q.where('r.namespace', opts.namespace);
    return q;
  };
  const q = base().select('r.namespace', 'r.name', 'r.description', 'r.star_count', 'r.private', 'r.updated_at');
  if (opts.order === 'updated') void q.orderBy([{ column: 'r.updated_at', order: 'desc' }, 'r.namespace', 'r.name']);
  else if (opts.order === 'stars') void q.orderBy([{ column: 'r.star_count', order: 'desc' }, 'r.name', 'r.namespace']);
  else void q.orderBy(['r.namespace', 'r.name']);
  const [rows, count] = await Promise.all([
    q.limit(pageSize).offset((page - 1) * pageSize) as Promise<SummaryRow[]>,
    opts.count === false ? Promise.resolve(undefined) : (base().count({ n: '*' }) as Promise<{ n: unknown }[]>),
  ]);
  const items = rows.map(toSummary);
  return { total: count ? toNum(count[0]?.n) : items.length, items };
}

/** Does a namespace exist as an account, an organization, or through repositories it holds? */
export async function namespaceKind(db: Knex, namespace: string): Promise<'user' | 'organization' | 'other' | undefined> {
  if (/\0/.test(namespace)) return undefined;
  if (await db('users').where({ username: namespace }).first('id')) return 'user';
  if (await db('organizations').where({ name: namespace }).first('id')) return 'organization';
  if (await db('repositories').where({ namespace }).whereNull('deleted_at').first('id')) return 'other';
  return undefined;
}

/** How many comments a repository has. */
export async function countComments(db: Knex, repoId: number): Promise<number> {
  const [row] = (await db('comments').where({ repo_id: repoId }).count({ n: '*' })) as { n: unknown }[];
  return toNum(row?.n);
}
