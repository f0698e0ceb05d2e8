import assert from 'node:assert/strict';
import { it } from 'node:test';
import { DbConflictError, DbSoleOwnerError } from '../../src/db/errors.js';
import { addMember, listMembers, saveOrganization } from '../../src/db/organizations.js';
import {
  clearLoginFailures,
  findUserByEmail,
  findUserByName,
  listUsers,
  loginAllowed,
  recordLoginFailure,
  removeStaleLoginFailures,
  removeUser,
  saveUser,
  setActive,
  setPassword,
  verifyPassword,
  type User,
} from '../../src/db/users.js';
import { describeEachEngine, uniqueName } from './engines.js';

const FAST = { cost: 4 } as const;

function conflict(field: DbConflictError['field']): (e: unknown) => boolean {
  return (e: unknown) => {
    assert.ok(e instanceof DbConflictError, `expected DbConflictError, got ${String(e)}`);
    assert.equal(e.field, field);
    return true;
  };
}

describeEachEngine('users', (ctx) => {
  it('creates an inactive user, found by name and by e-mail in any case', async () => {
    const username = uniqueName();
    const user = await saveUser(ctx.db, { username, email: `${username}@Example.COM`, password: 'secret1' }, FAST);
    assert.ok(user);
    assert.equal(user.username, username);
    assert.equal(user.email, `${username}@example.com`);
    assert.equal(user.active, false);
    assert.equal(user.admin, false);
    assert.ok(user.createdAt instanceof Date && !Number.isNaN(user.createdAt.getTime()));
    assert.deepEqual(await findUserByName(ctx.db, username), user);
    assert.deepEqual(await findUserByEmail(ctx.db, `${username.toUpperCase()}@example.com`), user);
    assert.equal(await findUserByName(ctx.db, 'nobody_here'), undefined);
  });

  it('refuses a taken username and a taken e-mail', async () => {
    const a = uniqueName();
    await saveUser(ctx.db, { username: a, email: `${a}@x.org`, password: 'secret1' }, FAST);
    await assert.rejects(saveUser(ctx.db, { username: a, email: `other-${a}@x.org`, password: 'pw123' }, FAST), conflict('username'));
    const b = uniqueName();
    await assert.rejects(saveUser(ctx.db, { username: b, email: `${a.toUpperCase()}@X.org`, password: 'pw123' }, FAST), conflict('email'));
    assert.equal(await findUserByName(ctx.db, b), undefined);
  });

  it('refuses an e-mail change to another user’s address', async () => {
    const a = uniqueName();
    const b = uniqueName();
    await saveUser(ctx.db, { username: a, email: `${a}@x.org`, password: 'secret1' }, FAST);
    const ub = (await saveUser(ctx.db, { username: b, email: `${b}@x.org`, password: 'secret1' }, FAST)) as User;
    await assert.rejects(saveUser(ctx.db, { id: ub.id, email: `${a}@x.org` }), conflict('email'));
    const updated = await saveUser(ctx.db, { id: ub.id, email: `new-${b}@x.org`, admin: true });
    assert.equal(updated?.email, `new-${b}@x.org`);
    assert.equal(updated?.admin, true);
    assert.equal(await saveUser(ctx.db, { id: 987654, admin: true }), undefined);
  });

  it('verifies passwords with bcrypt and never stores them in clear', async () => {
    const username = uniqueName();
    const user = (await saveUser(ctx.db, { username, email: `${username}@x.org`, password: 'correct horse' }, FAST)) as User;
    const row = (await ctx.db('users').where({ id: user.id }).first('password_hash')) as { password_hash: string };
    assert.match(row.password_hash, /^\$2[aby]\$04\$/);
    assert.deepEqual(await verifyPassword(ctx.db, username, 'correct horse'), user);
    assert.equal(await verifyPassword(ctx.db, username, 'wrong horse'), undefined);
    assert.equal(await verifyPassword(ctx.db, 'no_such_user', 'correct horse'), undefined);
    assert.ok(await setPassword(ctx.db, user.id, 'battery staple', FAST));
    assert.equal(await verifyPassword(ctx.db, username, 'correct horse'), undefined);
    assert.ok(await verifyPassword(ctx.db, username, 'battery staple'));
    assert.equal(await setPassword(ctx.db, 987654, 'x', FAST), false);
    // Names straight from a Basic header may hold anything, NUL included.
    assert.equal(await verifyPassword(ctx.db, `${username}\0`, 'battery staple'), undefined);
    assert.equal(await findUserByName(ctx.db, '\0'), undefined);
    assert.equal(await findUserByEmail(ctx.db, 'a\0@x.org'), undefined);
  });

  it('uses cost 10 by default', async () => {
    const username = uniqueName();
    const user = (await saveUser(ctx.db, { username, email: `${username}@x.org`, password: 'secret1' })) as User;
    const row = (await ctx.db('users').where({ id: user.id }).first('password_hash')) as { password_hash: string };
    assert.match(row.password_hash, /^\$2[aby]\$10\$/);
  });

  it('activates, lists and removes users', async () => {
    const username = uniqueName('aaa');
    const user = (await saveUser(ctx.db, { username, email: `${username}@x.org`, password: 'secret1' }, FAST)) as User;
    assert.ok(await setActive(ctx.db, user.id, true));
    assert.equal((await findUserByName(ctx.db, username))?.active, true);
    const page = await listUsers(ctx.db, { page: 1, pageSize: 2 });
    assert.ok(page.total >= 1);
    assert.ok(page.items.length <= 2);
    const all = await listUsers(ctx.db, { pageSize: 1000 });
    assert.equal(all.items.length, all.total);
    assert.deepEqual(
      all.items.map((u) => u.username),
      [...all.items.map((u) => u.username)].sort(),
    );
    assert.ok(await removeUser(ctx.db, user.id));
    assert.equal(await removeUser(ctx.db, user.id), false);
    assert.equal(await findUserByName(ctx.db, username), undefined);
  });

  it("removeUser refuses the only owner of an organization unless told to leave it without one; a co-owner's removal goes through", async () => {
    const mk = async (prefix: string) => {
      const username = uniqueName(prefix);
      return (await saveUser(ctx.db, { username, email: `${username}@x.org`, password: 'secret1' }, FAST)) as User;
    };
    const [sole, co1, co2] = [await mk('sole'), await mk('coa'), await mk('cob')];
    const org = (await saveOrganization(ctx.db, { name: uniqueName('solo') }))!;
    const shared = (await saveOrganization(ctx.db, { name: uniqueName('shrd') }))!;
    await addMember(ctx.db, org.id, sole.id, 'owner');
    await addMember(ctx.db, org.id, co1.id, 'member');
    await addMember(ctx.db, shared.id, co1.id, 'owner');
    await addMember(ctx.db, shared.id, co2.id, 'owner');
    await assert.rejects(removeUser(ctx.db, sole.id), (e: unknown) => {
      assert.ok(e instanceof DbSoleOwnerError, String(e));
      assert.equal(e.username, sole.username);
      assert.deepEqual(e.organizations, [org.name]);
      return true;
    });
    // nothing changed: the account, its membership, the name not retired
    assert.equal((await findUserByName(ctx.db, sole.username))?.id, sole.id);
    assert.deepEqual(
      (await listMembers(ctx.db, org.id)).map((m) => [m.username, m.role]),
      [
        [co1.username, 'member'],
        [sole.username, 'owner'],
      ].sort(),
    );
    assert.equal(await ctx.db('retired_namespaces').where({ name: sole.username }).first(), undefined);
    // a member (not an owner) of org, an owner of shared among two: removed
    assert.ok(await removeUser(ctx.db, co2.id));
    assert.deepEqual(
      (await listMembers(ctx.db, shared.id)).map((m) => m.username),
      [co1.username],
    );
    // now co1 is shared's only owner too
    await assert.rejects(removeUser(ctx.db, co1.id), DbSoleOwnerError);
    // the explicit option: as before 2026-12-07, org is left without an owner
    assert.ok(await removeUser(ctx.db, sole.id, { orphanOrganizations: true }));
    assert.deepEqual(
      (await listMembers(ctx.db, org.id)).map((m) => [m.username, m.role]),
      [[co1.username, 'member']],
    );
  });

  it('refuses a username that an organization already has', async () => {
    const name = uniqueName('org');
    await saveOrganization(ctx.db, { name });
    await assert.rejects(saveUser(ctx.db, { username: name, email: `${name}@x.org`, password: 'secret1' }, FAST), conflict('namespace'));
  });
});

describeEachEngine('login throttling', (ctx) => {
  const t0 = new Date('2026-11-23T12:00:00Z');
  const at = (ms: number): { now: Date } => ({ now: new Date(t0.getTime() + ms) });
  const MIN = 60_000;

  it('allows four failures, locks at the fifth, and the lock expires', async () => {
    const name = uniqueName();
    for (let i = 0; i < 4; i++) {
      assert.deepEqual(await recordLoginFailure(ctx.db, name, at(i * 1000)), { allowed: true });
      assert.deepEqual(await loginAllowed(ctx.db, name, at(i * 1000)), { allowed: true });
    }
    const fifth = await recordLoginFailure(ctx.db, name, at(4000));
    assert.deepEqual(fifth, { allowed: false, retryAfterMs: MIN });
    assert.deepEqual(await loginAllowed(ctx.db, name, at(4000 + 30_000)), { allowed: false, retryAfterMs: 30_000 });
    assert.deepEqual(await loginAllowed(ctx.db, name, at(4000 + MIN + 1)), { allowed: true });
  });

  it('doubles the lock on each further failure, capped at 15 minutes, never permanent', async () => {
    const name = uniqueName();
    let now = 0;
    for (let i = 0; i < 5; i++) await recordLoginFailure(ctx.db, name, at((now += 1000)));
    const locks: number[] = [];
    for (let i = 0; i < 8; i++) {
      const d = await loginAllowed(ctx.db, name, at(now));
      assert.equal(d.allowed, false);
      now += (d as { retryAfterMs: number }).retryAfterMs + 1; // wait the lock out, then fail again
      assert.deepEqual(await loginAllowed(ctx.db, name, at(now)), { allowed: true });
      const next = await recordLoginFailure(ctx.db, name, at(now));
      assert.equal(next.allowed, false);
      locks.push((next as { retryAfterMs: number }).retryAfterMs);
    }
    assert.deepEqual(
      locks.map((l) => l / MIN),
      [2, 4, 8, 15, 15, 15, 15, 15],
    );
  });

  it('counts only failures within 15 minutes', async () => {
    const name = uniqueName();
    for (let i = 0; i < 4; i++) await recordLoginFailure(ctx.db, name, at(i * 1000));
    // The window has passed: the count starts over.
    assert.deepEqual(await recordLoginFailure(ctx.db, name, at(16 * MIN)), { allowed: true });
    for (let i = 1; i < 4; i++) assert.equal((await recordLoginFailure(ctx.db, name, at(16 * MIN + i))).allowed, true);
    assert.equal((await recordLoginFailure(ctx.db, name, at(16 * MIN + 5))).allowed, false);
  });

  it('a success clears the failures; names are case-insensitive and may be unknown or huge', async () => {
    const name = uniqueName();
    for (let i = 0; i < 5; i++) await recordLoginFailure(ctx.db, name.toUpperCase(), at(i));
    assert.equal((await loginAllowed(ctx.db, name, at(10))).allowed, false);
    await clearLoginFailures(ctx.db, name);
    assert.deepEqual(await loginAllowed(ctx.db, name, at(10)), { allowed: true });
    assert.deepEqual(await recordLoginFailure(ctx.db, 'nul\0name\ud800', at(0)), { allowed: true });
    assert.deepEqual(await loginAllowed(ctx.db, 'nul\0name\ud800', at(0)), { allowed: true });
    const huge = 'x'.repeat(5000);
    assert.deepEqual(await recordLoginFailure(ctx.db, huge, at(0)), { allowed: true });
  });

  it('housekeeping drops only records that can no longer matter', async () => {
    const old = uniqueName();
    const recent = uniqueName();
    await recordLoginFailure(ctx.db, old, at(0));
    await recordLoginFailure(ctx.db, recent, at(20 * MIN));
    const removed = await removeStaleLoginFailures(ctx.db, at(20 * MIN));
    assert.ok(removed >= 1);
    const left = (await ctx.db('login_failures').whereIn('username', [old, recent]).select('username')) as {
      username: string;
    }[];
    assert.deepEqual(
      left.map((r) => r.username),
      [recent],
    );
  });
});
