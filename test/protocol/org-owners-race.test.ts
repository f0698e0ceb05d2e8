import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { request } from '../helpers/http.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { saveUser, type User } from '../../src/db/users.js';
import { addMember, listMembers, saveOrganization } from '../../src/db/organizations.js';
import { pgDatabase, pgMissing } from '../helpers/pg.js';
import { webSession } from '../helpers/web-session.js';

const pgSkip = await pgMissing();
/**
 * Two owners of an organization removing each other (or demoting each other) at the same moment:
 * one of them stays owner. Each request read the owners, saw the other one, and removed: the
 * organization was left with no owner, which only an admin could then manage.
 */
for (const engine of ['sqlite', 'pg'] as const) {
  describe(`organization owners removing each other at once [${engine}]`, engine === 'pg' && pgSkip ? { skip: pgSkip } : {}, () => {
    let s: TestServer;
    let pg: Awaited<ReturnType<typeof pgDatabase>> | undefined;
    before(async () => {
      if (engine === 'pg') pg = await pgDatabase('orgrace');
      s = await startTestServer({ bcrypt_cost: 4, ...(pg ? { sqlalchemy_index_database: pg.url } : {}) });
    });
    after(async () => {
      await s?.stop();
      await pg?.drop();
    });
    const session = (user: string) => webSession(s.url, user, `${user}pw1`);

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
