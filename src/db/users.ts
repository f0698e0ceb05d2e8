import { compare, hash } from 'bcryptjs';
import type { Knex } from 'knex';
import { DbConflictError, DbSoleOwnerError } from './errors.js';
import { clampPage, forUpdate, isUniqueViolation, lockName, toBool, toDate, toDateOrNull, toNum, tsValue, type Page, type PageRequest } from './rows.js';

/** An index account (spec v1-protocol §3.3–3.5). The password hash never leaves this module. */
export interface User {
  readonly id: number;
  readonly username: string;
  readonly email: string;
  readonly active: boolean;
  readonly admin: boolean;
  readonly createdAt: Date;
}

export interface PasswordOptions {
  /** bcrypt cost factor (default 10). */
  readonly cost?: number;
}

/** Create (no `id`): username, email and password are required. */
export interface NewUserInput {
  readonly id?: undefined;
  readonly username: string;
  readonly email: string;
  readonly password: string;
  readonly active?: boolean;
  readonly admin?: boolean;
}

/** Update (`id` given): only the fields present change. */
export interface UserUpdateInput {
  readonly id: number;
  readonly username?: string;
  readonly email?: string;
  readonly password?: string;
  readonly active?: boolean;
  readonly admin?: boolean;
}

export const DEFAULT_BCRYPT_COST = 10;

interface UserRow {
  id: number;
  username: string;
  email: string;
  password_hash: string;
  active: unknown;
  admin: unknown;
  created_at: unknown;
}

const COLUMNS = ['id', 'username', 'email', 'password_hash', 'active', 'admin', 'created_at'] as const;

function toUser(r: UserRow): User {
  return {
    id: toNum(r.id),
    username: r.username,
    email: r.email,
    active: toBool(r.active),
    admin: toBool(r.admin),
    createdAt: toDate(r.created_at),
  };
}

/** E-mail addresses compare case-insensitively (one account per mailbox). */
export function normalizeEmail(email: string): string {
  return email.trim().toLowerCase();
}

export async function hashPassword(password: string, opts: PasswordOptions = {}): Promise<string> {
  return hash(password, opts.cost ?? DEFAULT_BCRYPT_COST);
}

export async function findUserById(db: Knex, id: number): Promise<User | undefined> {
  const row = (await db('users')
    .select([...COLUMNS])
    .where({ id })
    .first()) as UserRow | undefined;
  return row && toUser(row);
}

/** PostgreSQL refuses NUL in text; no stored name or address contains one, so such a lookup finds nothing. */
const HAS_NUL = /\0/;

export async function findUserByName(db: Knex, username: string): Promise<User | undefined> {
  if (HAS_NUL.test(username)) return undefined;
  const row = (await db('users')
    .select([...COLUMNS])
    .where({ username })
    .first()) as UserRow | undefined;
  return row && toUser(row);
}

export async function findUserByEmail(db: Knex, email: string): Promise<User | undefined> {
  if (HAS_NUL.test(email)) return undefined;
  const row = (await db('users')
    .select([...COLUMNS])
    .where({ email: normalizeEmail(email) })
    .first()) as UserRow | undefined;
  return row && toUser(row);
}

async function assertNameFree(trx: Knex.Transaction, username: string, exceptId?: number): Promise<void> {
  await lockName(trx, username);
  const q = trx('users').where({ username });
  if (exceptId !== undefined) void q.whereNot({ id: exceptId });
  if (await q.first('id')) throw new DbConflictError('username', username);
  if (await trx('organizations').where({ name: username }).first('id')) throw new DbConflictError('namespace', username);
}

async function assertEmailFree(trx: Knex.Transaction, email: string, exceptId?: number): Promise<void> {
  const q = trx('users').where({ email });
  if (exceptId !== undefined) void q.whereNot({ id: exceptId });
  if (await q.first('id')) throw new DbConflictError('email', email);
}

/** Translate a unique violation that slipped past the checks (a concurrent writer) into a conflict. */
function translateUnique(e: unknown, username: string | undefined, email: string | undefined): never {
  if (isUniqueViolation(e)) {
    const text = String((e as { message?: unknown; constraint?: unknown }).constraint ?? (e as Error).message);
    if (/email/.test(text)) throw new DbConflictError('email', email ?? '');
    throw new DbConflictError('username', username ?? '');
  }
  throw e;
}

/**
 * Create a user (no `id`) or update one (`id`). Throws DbConflictError `username` / `email` when taken, or
 * `namespace` when an organization already has the name (users and organizations share one name space).
 * Returns undefined when updating an unknown id.
 */
export async function saveUser(db: Knex, input: NewUserInput | UserUpdateInput, opts: PasswordOptions = {}): Promise<User | undefined> {
  const email = input.email === undefined ? undefined : normalizeEmail(input.email);
  // Hash outside the transaction: bcrypt is deliberately slow and must not hold a write lock.
  const passwordHash = input.password === undefined ? undefined : await hashPassword(input.password, opts);
  try {
    return await db.transaction(async (trx) => {
      if (input.id === undefined) {
        await assertNameFree(trx, input.username);
        await assertEmailFree(trx, email as string);
        const [row] = (await trx('users')
          .insert({
            username: input.username,
            email,
            password_hash: passwordHash,
            active: input.active ?? false,
            admin: input.admin ?? false,
            created_at: tsValue(trx, new Date()),
          })
          .returning([...COLUMNS])) as UserRow[];
        return toUser(row as UserRow);
      }
      const current = await forUpdate(trx, trx('users').where({ id: input.id }).first('id'));
      if (!current) return undefined;
      const patch: Record<string, unknown> = {};
      if (input.username !== undefined) {
        await assertNameFree(trx, input.username, input.id);
        patch.username = input.username;
      }
      if (email !== undefined) {
        await assertEmailFree(trx, email, input.id);
        patch.email = email;
      }
      if (passwordHash !== undefined) patch.password_hash = passwordHash;
      if (input.active !== undefined) patch.active = input.active;
      if (input.admin !== undefined) patch.admin = input.admin;
      if (Object.keys(patch).length > 0) await trx('users').where({ id: input.id }).update(patch);
      const row = (await trx('users')
        .select([...COLUMNS])
        .where({ id: input.id })
        .first()) as UserRow;
      return toUser(row);
    });
  } catch (e) {
    translateUnique(e, input.username, email);
  }
}

/** Replace the password. Returns false for an unknown user. */
export async function setPassword(db: Knex, userId: number, password: string, opts: PasswordOptions = {}): Promise<boolean> {
  const passwordHash = await hashPassword(password, opts);
  return (await db('users').where({ id: userId }).update({ password_hash: passwordHash })) > 0;
}

/**
 * Activate or deactivate an account. Returns false for an unknown user. Deactivating ends the
 * account's web UI sessions (their rows go): a later activation does not bring them back.
 */
export async function setActive(db: Knex, userId: number, active: boolean): Promise<boolean> {
  return db.transaction(async (trx) => {
    // deactivating also moves the credential epoch on: the account's v1 tokens and refresh tokens
    // (credentialOf) end for good, as its sessions do
    const found =
      (await trx('users')
        .where({ id: userId })
        .update(active ? { active } : { active, credential_epoch: trx.raw('credential_epoch + 1') })) > 0;
    if (found && !active) await trx('web_sessions').where({ user_id: userId }).delete();
    return found;
  });
}

/**
 * What an account's token fingerprints are made from (v1 tokens, v2 refresh tokens; never shown):
 * its password hash, and its credential epoch once it was ever deactivated. A password change or a
 * deactivation changes it, and with it every fingerprint: tokens issued before no longer match.
 * Before 2026-12-07 only the password hash went in, and an account deactivated and activated again
 * got its old tokens back. '' for an unknown account.
 */
export async function credentialOf(db: Knex, userId: number): Promise<string> {
  const row = (await db('users').where({ id: userId }).first('password_hash', 'credential_epoch')) as
    { password_hash?: string; credential_epoch?: unknown } | undefined;
  if (!row) return '';
  const epoch = toNum(row.credential_epoch ?? 0);
  return epoch === 0 ? (row.password_hash ?? '') : `${row.password_hash ?? ''}\n${epoch}`;
}

export interface RemoveUserOptions {
  /**
   * Delete the account even when it is the only owner of organizations: they are left with no
   * owner, managed by admins only (what every deletion did before 2026-12-07). Without it such a
   * deletion throws DbSoleOwnerError and nothing changes.
   */
  readonly orphanOrganizations?: boolean;
}

/**
 * The organizations (names, sorted) whose only owner is this account: deleting it would leave them
 * with none. On PostgreSQL the rows of the organizations it owns are locked first (as
 * `changeMemberKeepingOwner` locks the one it changes), so an owner demoted or removed at the same
 * moment is seen.
 */
export async function soleOwnedOrganizations(db: Knex, userId: number): Promise<string[]> {
  const owned = db('organization_members').where({ user_id: userId, role: 'owner' }).select('org_id');
  await forUpdate(db, db('organizations').whereIn('id', owned).select('id'));
  const rows = (await db('organizations as o')
    .join('organization_members as m', 'm.org_id', 'o.id')
    .where({ 'm.user_id': userId, 'm.role': 'owner' })
    .whereNotExists(function () {
      void this.select(db.raw('1')).from('organization_members as m2').whereRaw('m2.org_id = o.id').where('m2.role', 'owner').whereNot('m2.user_id', userId);
    })
    .orderBy('o.name')
    .select('o.name')) as { name: string }[];
  return rows.map((r) => r.name);
}

/**
 * Delete an account. Memberships, collaborations, stars and comments go with it; repositories it owned
 * keep existing with no owner (their namespace still says whose they were). Its name is retired in
 * the same transaction: content stored under the namespace that the index has no record of (a
 * manifest pushed by digest only, blobs never tagged) would otherwise go to whoever signs up with
 * the name next (see `retireNamespace`). An account that is the only owner of organizations is not
 * deleted (DbSoleOwnerError naming them) unless `opts.orphanOrganizations`: before 2026-12-07 they
 * were left without an owner. Transfer ownership or delete the organizations first.
 */
export async function removeUser(db: Knex, userId: number, opts: RemoveUserOptions = {}): Promise<boolean> {
  return db.transaction(async (trx) => {
    const row = (await trx('users').where({ id: userId }).first('username')) as { username: string } | undefined;
    if (!row) return false;
    await lockName(trx, row.username);
    if (!opts.orphanOrganizations) {
      const sole = await soleOwnedOrganizations(trx, userId);
      if (sole.length > 0) throw new DbSoleOwnerError(row.username, sole);
    }
    const n = await trx('users').where({ id: userId }).delete();
    await retireNamespace(trx, row.username);
    return n > 0;
  });
}

/**
 * Record that a namespace's account or organization was deleted: signup and organization creation
 * then treat the name as taken (`IndexService.namespaceHeld`). An operator may still give the name
 * out again on purpose with the CLI.
 */
export async function retireNamespace(db: Knex, name: string): Promise<void> {
  await db('retired_namespaces')
    .insert({ name, retired_at: tsValue(db, new Date()) })
    .onConflict('name')
    .ignore();
}

/** Whether a deleted account or organization had this name. */
export async function isRetiredNamespace(db: Knex, name: string): Promise<boolean> {
  if (HAS_NUL.test(name)) return false;
  return (await db('retired_namespaces').where({ name }).first('name')) !== undefined;
}

/** Users by name, one page. */
export async function listUsers(db: Knex, req: PageRequest = {}): Promise<Page<User>> {
  const { page, pageSize } = clampPage(req, 50, 1000);
  const [count] = (await db('users').count({ n: '*' })) as { n: unknown }[];
  const rows = (await db('users')
    .select([...COLUMNS])
    .orderBy('username')
    .limit(pageSize)
    .offset((page - 1) * pageSize)) as UserRow[];
  return { total: toNum(count?.n), items: rows.map(toUser) };
}

/** A real cost-10 hash of a random string: unknown users cost as much time as wrong passwords. */
const DUMMY_HASH = '$2b$10$yP0oLmuWyCUFFAMMLve27uuj/6yhcXCwB0dLffFf69Z9T0MC8/Pcy';

/**
 * Check a username/password pair. Returns the user when the password matches (whether or not the account
 * is active: the caller answers 403 "Account is not Active" for those, spec §3.4), else undefined.
 * Does not consult login throttling: call `loginAllowed` first and record the outcome.
 */
export async function verifyPassword(db: Knex, username: string, password: string): Promise<User | undefined> {
  const row = HAS_NUL.test(username)
    ? undefined
    : ((await db('users')
        .select([...COLUMNS])
        .where({ username })
        .first()) as UserRow | undefined);
  const ok = await compare(password, row?.password_hash ?? DUMMY_HASH);
  return ok && row ? toUser(row) : undefined;
}

// ---------------------------------------------------------------------------------------------------
// Login throttling
//
// Failures are counted twice (security issue 10, finding 10): per (account, client address), where a
// few failures lock that address out of that account, and per account across all addresses, where
// only a much higher count locks the account for everyone. An attacker guessing from one address
// locks out its own address and nobody else; the owner, from another address, still logs in. Many
// addresses together can still reach the account ceiling: that bound stays, so guessing from a
// botnet is slowed too. Every lock expires (doubling up to maxLockMs); none is permanent.

export interface LoginThrottlePolicy {
  /** Failures from one client address within `windowMs` that lock that address out (default 5). */
  readonly maxFailures: number;
  /** Failures across all addresses within `windowMs` that lock the account for everyone (default 100). */
  readonly maxAccountFailures: number;
  /** Window in which failures count together (default 15 min). */
  readonly windowMs: number;
  /** First lockout; doubles with every further failure (default 1 min). */
  readonly baseLockMs: number;
  /** Longest lockout (default 15 min). Locks always expire: never permanent. */
  readonly maxLockMs: number;
}

export const DEFAULT_LOGIN_THROTTLE: LoginThrottlePolicy = Object.freeze({
  maxFailures: 5,
  maxAccountFailures: 100,
  windowMs: 15 * 60_000,
  baseLockMs: 60_000,
  maxLockMs: 15 * 60_000,
});

export type LockScope = 'address' | 'account';

export interface ThrottleOptions {
  readonly now?: Date;
  readonly policy?: Partial<LoginThrottlePolicy>;
  /**
   * The client's address (the socket's remote address). Absent: one bucket shared by every caller
   * that gives none, so no caller should leave it out.
   */
  readonly address?: string;
  /** Called (after the change is committed) for each lock this failure starts or extends. */
  readonly onLockout?: (scope: LockScope, retryAfterMs: number) => void;
}

export type LoginDecision = { readonly allowed: true } | { readonly allowed: false; readonly retryAfterMs: number };

interface FailureRow {
  failures: unknown;
  window_start: unknown;
  locked_until: unknown;
}

/** Failures are keyed by the name as typed (bounded, lower-cased), whether or not such a user exists. */
function throttleKey(username: string): string {
  return username.replace(/\0/g, '\uFFFD').toLowerCase().slice(0, 255);
}

/** The address as stored: IPv4-mapped IPv6 written as IPv4, bounded; '' when unknown. */
function addressKey(address: string | undefined): string {
  return (address ?? '')
    .replace(/^::ffff:(?=\d+\.\d+\.\d+\.\d+$)/i, '')
    .replace(/\0/g, '')
    .slice(0, 64);
}

function policyOf(opts: ThrottleOptions): LoginThrottlePolicy {
  return { ...DEFAULT_LOGIN_THROTTLE, ...opts.policy };
}

/** The two counters of one attempt: the account's, and the account's from this address. */
function counters(
  username: string,
  opts: ThrottleOptions,
): { table: string; where: Record<string, string>; threshold: (p: LoginThrottlePolicy) => number; scope: LockScope }[] {
  const name = throttleKey(username);
  return [
    { table: 'login_address_failures', where: { username: name, address: addressKey(opts.address) }, threshold: (p) => p.maxFailures, scope: 'address' },
    { table: 'login_failures', where: { username: name }, threshold: (p) => p.maxAccountFailures, scope: 'account' },
  ];
}

/**
 * A record is stale once the window and any lockout are both more than `windowMs` in the past; a stale
 * record counts as no record, so throttling always ends.
 */
function isStale(row: FailureRow, now: number, p: LoginThrottlePolicy): boolean {
  const windowStart = toDate(row.window_start).getTime();
  const lockedUntil = toDateOrNull(row.locked_until)?.getTime() ?? windowStart;
  return now - Math.max(windowStart, lockedUntil) > p.windowMs;
}

/** The stricter of two decisions (the longer wait). */
function stricter(a: LoginDecision, b: LoginDecision): LoginDecision {
  if (a.allowed) return b;
  if (b.allowed) return a;
  return a.retryAfterMs >= b.retryAfterMs ? a : b;
}

/** May this name try a password now, from this address? */
export async function loginAllowed(db: Knex, username: string, opts: ThrottleOptions = {}): Promise<LoginDecision> {
  const now = (opts.now ?? new Date()).getTime();
  let decision: LoginDecision = { allowed: true };
  for (const c of counters(username, opts)) {
    const row = (await db(c.table).where(c.where).first('locked_until')) as Pick<FailureRow, 'locked_until'> | undefined;
    const lockedUntil = row ? toDateOrNull(row.locked_until)?.getTime() : undefined;
    if (lockedUntil !== undefined && lockedUntil > now) decision = stricter(decision, { allowed: false, retryAfterMs: lockedUntil - now });
  }
  return decision;
}

/**
 * Count a failed login, for the address and for the account. From a counter's threshold on (maxFailures
 * for the address, maxAccountFailures for the account) within the window, each failure locks that
 * scope for baseLockMs · 2^(failures − threshold), capped at maxLockMs. Returns the resulting decision
 * for this name and address.
 */
export async function recordLoginFailure(db: Knex, username: string, opts: ThrottleOptions = {}): Promise<LoginDecision> {
  const p = policyOf(opts);
  const nowDate = opts.now ?? new Date();
  const now = nowDate.getTime();
  const locks: { scope: LockScope; ms: number }[] = [];
  const decision = await db.transaction(async (trx) => {
    let result: LoginDecision = { allowed: true };
    for (const c of counters(username, opts)) {
      await trx(c.table)
        .insert({ ...c.where, failures: 0, window_start: tsValue(trx, nowDate), locked_until: null })
        .onConflict(Object.keys(c.where))
        .ignore();
      const row = (await forUpdate(trx, trx(c.table).where(c.where).first())) as FailureRow;
      const fresh = isStale(row, now, p);
      const failures = fresh ? 1 : toNum(row.failures) + 1;
      const windowStart = fresh ? nowDate : toDate(row.window_start);
      let lockedUntil: Date | null = fresh ? null : toDateOrNull(row.locked_until);
      const threshold = c.threshold(p);
      if (failures >= threshold) {
        const lock = Math.min(p.maxLockMs, p.baseLockMs * 2 ** Math.min(30, failures - threshold));
        lockedUntil = new Date(now + lock);
        locks.push({ scope: c.scope, ms: lock });
      }
      await trx(c.table)
        .where(c.where)
        .update({ failures, window_start: tsValue(trx, windowStart), locked_until: lockedUntil && tsValue(trx, lockedUntil) });
      if (lockedUntil && lockedUntil.getTime() > now) result = stricter(result, { allowed: false, retryAfterMs: lockedUntil.getTime() - now });
    }
    return result;
  });
  for (const l of locks) opts.onLockout?.(l.scope, l.ms);
  return decision;
}

/**
 * Forget this address's failures after a successful login. The account's count across addresses
 * stays until its window passes: one success of the owner does not reset what others have tried.
 */
export async function clearLoginFailures(db: Knex, username: string, opts: Pick<ThrottleOptions, 'address'> = {}): Promise<void> {
  await db('login_address_failures').where(counters(username, opts)[0]!.where).delete();
}

/** Housekeeping: drop records that can no longer affect a decision. Returns how many went. */
export async function removeStaleLoginFailures(db: Knex, opts: ThrottleOptions = {}): Promise<number> {
  const p = policyOf(opts);
  const cutoff = new Date((opts.now ?? new Date()).getTime() - p.windowMs);
  const c = tsValue(db, cutoff);
  let removed = 0;
  for (const table of ['login_failures', 'login_address_failures']) {
    removed += await db(table)
      .where('window_start', '<', c)
      .andWhere((q) => void q.whereNull('locked_until').orWhere('locked_until', '<', c))
      .delete();
  }
  return removed;
}
