import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Knex } from 'knex';
import { closeDb, createDb, migrateLatest } from '../../../src/db/knex.js';
import { clearLoginFailures, loginAllowed, recordLoginFailure, removeStaleLoginFailures, type LockScope } from '../../../src/db/users.js';

const MIN = 60_000;
const t0 = new Date('2026-12-03T10:00:00Z').getTime();
const at = (ms: number): Date => new Date(t0 + ms);

/** Login throttling per (account, address) with a ceiling per account (security issue 10, finding 10). */
describe('login throttling per account and client address (SQLite)', () => {
  let dir: string;
  let db: Knex;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'lr-throttle-'));
    db = createDb(null, dir);
    await migrateLatest(db);
  });
  after(async () => {
    await closeDb(db);
    await rm(dir, { recursive: true, force: true });
  });

  it('five failures lock that address out; another address is still allowed', async () => {
    const locks: LockScope[] = [];
    for (let i = 0; i < 4; i++) assert.deepEqual(await recordLoginFailure(db, 'alice', { address: '10.0.0.1', now: at(i) }), { allowed: true });
    assert.deepEqual(await recordLoginFailure(db, 'alice', { address: '10.0.0.1', now: at(4), onLockout: (s) => locks.push(s) }), {
      allowed: false,
      retryAfterMs: MIN,
    });
    assert.deepEqual(locks, ['address']);
    assert.deepEqual(await loginAllowed(db, 'alice', { address: '10.0.0.1', now: at(10) }), { allowed: false, retryAfterMs: MIN - 6 });
    assert.deepEqual(await loginAllowed(db, 'alice', { address: '10.0.0.2', now: at(10) }), { allowed: true });
    assert.deepEqual(
      await loginAllowed(db, 'ALICE', { address: '::ffff:10.0.0.1', now: at(10) }),
      { allowed: false, retryAfterMs: MIN - 6 },
      'same name, same address however written',
    );
  });

  it("a success clears only that address's failures, not the account's count", async () => {
    for (let i = 0; i < 3; i++) await recordLoginFailure(db, 'bob', { address: '10.0.0.3', now: at(i) });
    for (let i = 0; i < 3; i++) await recordLoginFailure(db, 'bob', { address: '10.0.0.4', now: at(i) });
    await clearLoginFailures(db, 'bob', { address: '10.0.0.3' });
    const rows = (await db('login_address_failures').where({ username: 'bob' }).orderBy('address').select('address', 'failures')) as {
      address: string;
      failures: number;
    }[];
    assert.deepEqual(
      rows.map((r) => [r.address, Number(r.failures)]),
      [['10.0.0.4', 3]],
    );
    const account = (await db('login_failures').where({ username: 'bob' }).first('failures')) as { failures: number };
    assert.equal(Number(account.failures), 6);
  });

  it('a hundred failures across addresses lock the account for every address', async () => {
    const locks: [LockScope, number][] = [];
    let n = 0;
    for (let a = 0; a < 20; a++) {
      for (let i = 0; i < 5; i++) await recordLoginFailure(db, 'carol', { address: `10.1.0.${a}`, now: at(n++), onLockout: (s, ms) => locks.push([s, ms]) });
    }
    assert.equal(locks.filter(([s]) => s === 'address').length, 20);
    assert.deepEqual(
      locks.filter(([s]) => s === 'account'),
      [['account', MIN]],
    );
    const d = await loginAllowed(db, 'carol', { address: '10.9.9.9', now: at(n) });
    assert.equal(d.allowed, false);
    assert.deepEqual(await loginAllowed(db, 'carol', { address: '10.9.9.9', now: at(n + MIN) }), { allowed: true }, 'the account lock expires');
  });

  it('housekeeping drops stale records of both counters', async () => {
    await recordLoginFailure(db, 'dave', { address: '10.2.0.1', now: at(0) });
    assert.ok((await removeStaleLoginFailures(db, { now: at(60 * MIN) })) >= 2);
    assert.equal(await db('login_address_failures').where({ username: 'dave' }).first(), undefined);
    assert.equal(await db('login_failures').where({ username: 'dave' }).first(), undefined);
  });
});
