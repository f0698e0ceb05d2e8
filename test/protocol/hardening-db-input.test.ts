import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { request } from '../helpers/http.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { saveUser } from '../../src/db/users.js';
import { findRepository, saveRepository } from '../../src/db/repositories.js';
import { createHook, enqueueTest } from '../../src/webhooks/store.js';
import { pgDatabase, pgMissing } from '../helpers/pg.js';
import { webSession } from '../helpers/web-session.js';

const pgSkip = await pgMissing();
const basic = (u: string, p: string): string => `Basic ${Buffer.from(`${u}:${p}`).toString('base64')}`;
const ALICE = { Authorization: basic('alice', 'alicepw'), 'Content-Type': 'application/json' };
const ID = 'b'.repeat(64);

/**
 * Text and numbers the index's columns cannot hold (a NUL, which PostgreSQL refuses in text; a
 * checksum or tag longer than its column; a hook id past the 32-bit serial) are 4xx on both
 * engines, before anything is written. On PostgreSQL each was a 500, and the v1 repository PUT
 * had created the repository before it failed (review of 2026-12-07).
 */
for (const engine of ['sqlite', 'pg'] as const) {
  describe(`hardening: input the index database cannot store [${engine}]`, engine === 'pg' && pgSkip ? { skip: pgSkip } : {}, () => {
    let s: TestServer;
    let pg: Awaited<ReturnType<typeof pgDatabase>> | undefined;
    let token = '';
    before(async () => {
      if (engine === 'pg') pg = await pgDatabase('dbinput');
      const overrides = pg ? { sqlalchemy_index_database: pg.url } : {};
      s = await startTestServer({ bcrypt_cost: 4, ...overrides });
      await saveUser(s.db!, { username: 'alice', email: 'alice@example.com', password: 'alicepw', active: true }, { cost: 4 });
      const { repository } = await saveRepository(s.db!, { namespace: 'alice', name: 'app', ownerId: (await s.db!('users').first('id')).id as number });
      const hook = await createHook(s.db!, repository.id, { name: 'h', url: 'https://hooks.example.com/', secret: null, chained: false });
      await enqueueTest(s.db!, hook, (t) => {
        token = t;
        return '{}';
      });
    });
    after(async () => {
      await s?.stop();
      await pg?.drop();
    });

    it('a comment holding NUL: 400 Invalid data, nothing stored', async () => {
      const r = await request(s.url, '/v1/comments/alice/app', { method: 'POST', headers: ALICE, body: JSON.stringify({ body: 'a\u0000b' }) });
      assert.equal(r.status, 400, r.text);
      assert.equal(r.text, '{"error": "Invalid data"}');
      assert.equal((await request(s.url, '/v1/comments/alice/app', { headers: ALICE })).json<{ total: number }>().total, 0);
    });

    it('an email holding NUL: signup 400 Invalid email address (no account), account update 400 the same', async () => {
      const r = await request(s.url, '/v1/users/', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ username: 'bobby', password: 'secret12', email: 'b\u0000@example.com' }),
      });
      assert.equal(r.status, 400, r.text);
      assert.equal(r.text, '"Invalid email address"');
      assert.equal(await s.db!('users').where({ username: 'bobby' }).first('id'), undefined);
      const u = await request(s.url, '/v1/users/alice/', { method: 'PUT', headers: ALICE, body: JSON.stringify({ email: 'a\u0000@example.com' }) });
      assert.equal(u.status, 400, u.text);
      assert.equal(u.text, '"Invalid email address"');
      assert.equal((await s.db!('users').where({ username: 'alice' }).first('email')).email, 'alice@example.com');
    });

    it('a v1 image list with a NUL or over-long checksum or tag: 400 Invalid data, no repository created', async () => {
      const bodies = [
        [{ id: ID, checksum: 'sha256:\u0000' }],
        [{ id: ID, checksum: `sha256:${'c'.repeat(300)}` }],
        [{ id: ID, Tag: 'la\u0000test' }],
        [{ id: ID, Tag: 't'.repeat(129) }],
      ];
      for (const [i, body] of bodies.entries()) {
        const r = await request(s.url, `/v1/repositories/alice/new${i}/`, { method: 'PUT', headers: ALICE, body: JSON.stringify(body) });
        assert.equal(r.status, 400, `${JSON.stringify(body).slice(0, 80)}: ${r.text}`);
        assert.equal(r.text, '{"error": "Invalid data"}');
        assert.equal(await findRepository(s.db!, 'alice', `new${i}`), undefined, `alice/new${i} was created`);
      }
      const ok = await request(s.url, '/v1/repositories/alice/fine/', {
        method: 'PUT',
        headers: ALICE,
        body: JSON.stringify([{ id: ID, checksum: `sha256:${'c'.repeat(64)}`, Tag: 't'.repeat(128) }]),
      });
      assert.equal(ok.status, 200, ok.text);
    });

    it('a webhook id past the 32-bit column: 404 Webhook not found on every route', async () => {
      for (const [method, path] of [
        ['DELETE', '/v1/webhooks/alice/app/2147483648'],
        ['POST', '/v1/webhooks/alice/app/99999999999999/test'],
        ['GET', '/v1/webhooks/alice/app/9007199254740991/deliveries'],
      ] as const) {
        const r = await request(s.url, path, { method, headers: ALICE });
        assert.equal(r.status, 404, `${method} ${path}: ${r.text}`);
        assert.equal(r.text, '{"error": "Webhook not found"}');
      }
    });

    it('an organization name holding NUL on the web UI: 404, as any unknown organization', async () => {
      const { cookie, csrf } = await webSession(s.url, 'alice', 'alicepw');
      for (const path of ['/orgs/x%00y/members', '/orgs/%00/members/remove']) {
        const r = await request(s.url, path, {
          method: 'POST',
          headers: { Cookie: cookie, 'Content-Type': 'application/x-www-form-urlencoded' },
          body: `_csrf=${csrf}&username=alice&role=member`,
        });
        assert.equal(r.status, 404, `${path}: ${r.text.slice(0, 300)}`);
      }
    });

    it("a receiver's callback holding NUL: 400 Invalid data, the delivery's callback unchanged", async () => {
      for (const field of ['description', 'context', 'target_url']) {
        const r = await request(s.url, `/u/alice/app/hook/${token}/`, {
          method: 'POST',
          headers: { 'Content-Type': 'application/json' },
          body: JSON.stringify({ state: 'failure', [field]: 'x\u0000y' }),
        });
        assert.equal(r.status, 400, `${field}: ${r.text}`);
      }
      const row = (await s.db!('webhook_deliveries').where({ callback_token: token }).first('callback_state')) as { callback_state: string | null };
      assert.equal(row.callback_state, null);
      const ok = await request(s.url, `/u/alice/app/hook/${token}/`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ state: 'success', description: 'fine' }),
      });
      assert.equal(ok.status, 200, ok.text);
    });
  });
}
