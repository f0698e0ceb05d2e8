import assert from 'node:assert/strict';
import { it } from 'node:test';
import { saveRepository } from '../../src/db/repositories.js';
import { claimDue, createHook, enqueuePush, finishAttempt, listDeliveries, pruneDeliveries, recordCallback } from '../../src/webhooks/store.js';
import { describeEachEngine, uniqueName } from './engines.js';

/**
 * The webhook outbox on SQLite and PostgreSQL (issue 15): nodes sharing the index database each
 * take a delivery exactly once (FOR UPDATE SKIP LOCKED on PostgreSQL, a conditional UPDATE on
 * SQLite), a node that died leaves its deliveries to others once its lease ends, chains wait for
 * the previous hook's success callback.
 */
describeEachEngine('webhook outbox', (ctx) => {
  const repo = async () => (await saveRepository(ctx.db, { namespace: uniqueName('ns'), name: 'app' })).repository;

  it('concurrent nodes claim every due delivery exactly once', async () => {
    const r = await repo();
    for (let i = 0; i < 4; i++) await createHook(ctx.db, r.id, { name: `h${i}`, url: `http://127.0.0.1:9/${i}` });
    const queued: string[] = [];
    for (let i = 0; i < 50; i++) queued.push(...(await enqueuePush(ctx.db, r.id, `t${i}`, (token) => `{"callback":"${token}"}`)));
    assert.equal(queued.length, 200);
    const taken = new Map<string, string>();
    const node = async (name: string): Promise<number> => {
      let n = 0;
      for (;;) {
        const got = await claimDue(ctx.db, name, 7, 60_000);
        if (got.length === 0) return n;
        for (const c of got) {
          assert.ok(!taken.has(c.id), `${c.id} taken by ${taken.get(c.id)} and ${name}`);
          taken.set(c.id, name);
          assert.match(c.payload, /^\{"callback":"[0-9a-f]{64}"\}$/);
        }
        n += got.length;
      }
    };
    const counts = await Promise.all(['a', 'b', 'c', 'd'].map(node));
    assert.equal(
      counts.reduce((x, y) => x + y, 0),
      200,
    );
    assert.deepEqual([...taken.keys()].sort(), [...queued].sort());
    // nothing is due any more while the leases run
    assert.deepEqual(await claimDue(ctx.db, 'e', 10, 60_000), []);
  });

  it("a dead node's delivery is taken again after its lease; the dead node's late result is refused", async () => {
    const r = await repo();
    await createHook(ctx.db, r.id, { name: 'h', url: 'http://127.0.0.1:9/' });
    const [id] = await enqueuePush(ctx.db, r.id, 'latest', () => '{}');
    const first = await claimDue(ctx.db, 'dies', 10, 50);
    assert.deepEqual(
      first.map((c) => c.id),
      [id],
    );
    assert.deepEqual(await claimDue(ctx.db, 'other', 10, 60_000), [], 'leased');
    await new Promise((res) => setTimeout(res, 80));
    const again = await claimDue(ctx.db, 'other', 10, 60_000);
    assert.deepEqual(
      again.map((c) => c.id),
      [id],
    );
    const attempt = { status: 200, durationMs: 5, error: null, excerpt: 'ok' };
    assert.equal(await finishAttempt(ctx.db, 'dies', id!, attempt, { delivered: true }), false);
    assert.equal(await finishAttempt(ctx.db, 'other', id!, attempt, { delivered: true }), true);
    const [d] = await listDeliveries(ctx.db, again[0]!.id ? (await ctx.db('webhook_deliveries').where({ id }).first('webhook_id')).webhook_id : 0);
    assert.equal(d!.state, 'delivered');
    assert.equal(d!.attempts, 1);
    assert.equal(d!.attemptsLog.length, 2, 'both attempts are in the history');
  });

  it('retries are due at their time; the last failure fails the delivery and skips the rest of the chain', async () => {
    const r = await repo();
    await createHook(ctx.db, r.id, { name: 'a', url: 'http://127.0.0.1:9/a' });
    await createHook(ctx.db, r.id, { name: 'b', url: 'http://127.0.0.1:9/b', chained: true });
    await createHook(ctx.db, r.id, { name: 'c', url: 'http://127.0.0.1:9/c', chained: true });
    const [a, b, c] = await enqueuePush(ctx.db, r.id, 'latest', () => '{}');
    const now = Date.now();
    const got = await claimDue(ctx.db, 'n', 10, 60_000, now);
    assert.deepEqual(
      got.map((x) => x.id),
      [a],
      'chained hooks wait',
    );
    const fail = { status: 503, durationMs: 1, error: 'HTTP 503', excerpt: null };
    await finishAttempt(ctx.db, 'n', a!, fail, { delivered: false, retryAt: now + 10_000 }, now);
    assert.deepEqual(await claimDue(ctx.db, 'n', 10, 60_000, now + 5_000), [], 'not before its time');
    assert.deepEqual(
      (await claimDue(ctx.db, 'n', 10, 60_000, now + 10_000)).map((x) => x.id),
      [a],
    );
    await finishAttempt(ctx.db, 'n', a!, fail, { delivered: false }, now + 10_000);
    const states = async () =>
      Object.fromEntries(
        ((await ctx.db('webhook_deliveries').whereIn('id', [a!, b!, c!]).select('id', 'state')) as { id: string; state: string }[]).map((x) => [x.id, x.state]),
      );
    assert.deepEqual(await states(), { [a!]: 'failed', [b!]: 'skipped', [c!]: 'skipped' });
  });

  it('a success callback releases the next hook of the chain only; a token of another repository is unknown', async () => {
    const r = await repo();
    const other = await repo();
    await createHook(ctx.db, r.id, { name: 'a', url: 'http://127.0.0.1:9/a' });
    await createHook(ctx.db, r.id, { name: 'b', url: 'http://127.0.0.1:9/b', chained: true });
    await createHook(ctx.db, r.id, { name: 'c', url: 'http://127.0.0.1:9/c', chained: true });
    const tokens: string[] = [];
    const [a, b, c] = await enqueuePush(ctx.db, r.id, 'latest', (t) => {
      tokens.push(t);
      return '{}';
    });
    assert.equal(await recordCallback(ctx.db, other.id, tokens[0]!, { state: 'success' }), undefined);
    assert.deepEqual(await recordCallback(ctx.db, r.id, tokens[0]!, { state: 'success', description: 'ok' }), { deliveryId: a });
    const st = async (id: string) => ((await ctx.db('webhook_deliveries').where({ id }).first('state')) as { state: string }).state;
    assert.deepEqual([await st(b!), await st(c!)], ['pending', 'waiting']);
    await recordCallback(ctx.db, r.id, tokens[1]!, { state: 'error' });
    assert.equal(await st(c!), 'skipped');
  });

  it('the history is bounded: old finished deliveries go, and at most N finished per hook stay; pending ones are kept', async () => {
    const r = await repo();
    const h = await createHook(ctx.db, r.id, { name: 'h', url: 'http://127.0.0.1:9/' });
    const ids: string[] = [];
    for (let i = 0; i < 6; i++) ids.push(...(await enqueuePush(ctx.db, r.id, `t${i}`, () => '{}', 1000 + i)));
    const ok = { status: 200, durationMs: 1, error: null, excerpt: null };
    for (const id of ids.slice(0, 5)) {
      await ctx.db('webhook_deliveries').where({ id }).update({ state: 'sending', claimed_by: 'n' });
      await finishAttempt(ctx.db, 'n', id, ok, { delivered: true }, 5000);
    }
    // ids[0] finished long ago
    await ctx.db('webhook_deliveries').where({ id: ids[0] }).update({ finished_at: 10 });
    assert.equal(await pruneDeliveries(ctx.db, 1000, 3, 5000), 1 + 1);
    const left = (await listDeliveries(ctx.db, h.id, 100)).map((d) => d.id).sort();
    assert.deepEqual(left, [ids[2], ids[3], ids[4], ids[5]].sort(), 'the oldest over the cap went; the pending one stays');
  });
});
