import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { tmpdir } from 'node:os';
import { request } from '../helpers/http.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { createDb } from '../../src/db/knex.js';
import { saveUser, type User } from '../../src/db/users.js';
import { addMember, listMembers, saveOrganization } from '../../src/db/organizations.js';
import { PG_URL, pgMissing } from '../helpers/pg.js';

const pgSkip = await pgMissing();
const HTML = { Accept: 'text/html' };

/**
 * Two owners of an organization removing each other (or demoting each other) at the same moment:
 * one of them stays owner. Each request read the owners, saw the other one, and removed: the
 * organization was left with no owner, which only an admin could then manage.
 */
for (const engine of ['sqlite', 'pg'] as const) {
  describe(`organization owners removing each other at once [${engine}]`, engine === 'pg' && pgSkip ? { skip: pgSkip } : {}, () => {
    let s: TestServer;
    let database: string | undefined;
    before(async () => {
      let overrides: Record<string, unknown> = {};
      if (engine === 'pg') {
        database = `lr_orgrace_${process.pid}_${Date.now().toString(36)}`;
        const admin = createDb(PG_URL, tmpdir(), { poolMax: 1 });
        try {
          await admin.raw(`create database ${database}`);
        } finally {
          await admin.destroy();
        }
        overrides = { sqlalchemy_index_database: PG_URL.replace(/\/[^/?]*(\?.*)?$/, `/${database}`) };
      }
      s = await startTestServer({ bcrypt_cost: 4, ...overrides });
    });
    after(async () => {
      await s?.stop();
      if (database) {
        const admin = createDb(PG_URL, tmpdir(), { poolMax: 1 });
        try {
          await admin.raw(`drop database if exists ${database}`);
        } finally {
          await admin.destroy();
        }
      }
    });

    async function session(user: string): Promise<{ cookie: string; csrf: string }> {
      const form = await request(s.url, '/login', { headers: HTML });
      const pre = String(form.headers['set-cookie']).split(';')[0]!;
      const r = await request(s.url, '/login', {
        method: 'POST',
        headers: { Cookie: pre, 'Content-Type': 'application/x-www-form-urlencoded' },
        body: `_csrf=${pre.slice('lr_csrf='.length)}&username=${user}&password=${user}pw1`,
      });
      assert.equal(r.status, 303, r.text);
      const cookie = String(r.headers['set-cookie']).split(';')[0]!;
      const page = await request(s.url, '/account', { headers: { Cookie: cookie } });
      return { cookie, csrf: /<meta name="csrf-token" content="([^"]+)"/.exec(page.text)![1]! };
    }

    it('one owner always stays, whichever request wins', async () => {
      const users: User[] = [];
      for (const name of ['owna', 'ownb'])
        users.push((await saveUser(s.db!, { username: name, email: `${name}@example.com`, password: `${name}pw1`, active: true }, { cost: 4 }))!);
      const [a, b] = await Promise.all([session('owna'), session('ownb')]);
      for (let round = 0; round < 20; round++) {
        const org = (await saveOrganization(s.db!, { name: `race${round}` }))!;
        await addMember(s.db!, org.id, users[0]!.id, 'owner');
        await addMember(s.db!, org.id, users[1]!.id, 'owner');
        const post = (who: { cookie: string; csrf: string }, path: string, body: string) =>
          request(s.url, `/orgs/${org.name}${path}`, {
            method: 'POST',
            headers: { Cookie: who.cookie, 'Content-Type': 'application/x-www-form-urlencoded' },
            body: `_csrf=${who.csrf}&${body}`,
          });
        const [ra, rb] =
          round % 2 === 0
            ? await Promise.all([post(a, '/members/remove', 'username=ownb'), post(b, '/members/remove', 'username=owna')])
            : await Promise.all([post(a, '/members', 'username=ownb&role=member'), post(b, '/members', 'username=owna&role=member')]);
        const owners = (await listMembers(s.db!, org.id)).filter((m) => m.role === 'owner');
        assert.equal(owners.length, 1, `round ${round}: ${ra.status} ${rb.status}, owners ${JSON.stringify(owners)}`);
        // one change is made; the other is refused (400: the last owner; 403: no longer an owner)
        assert.equal([ra.status, rb.status].filter((x) => x === 303).length, 1, `round ${round}: ${ra.status} ${rb.status}`);
      }
    });
  });
}
