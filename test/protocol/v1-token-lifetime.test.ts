import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { request } from '../helpers/http.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { makeImage, type TestImage } from '../helpers/v1-client.js';
import { basic, Site, type Creds } from '../helpers/accounts.js';
import { findUserByName, saveUser, setActive } from '../../src/db/users.js';
import { addCollaborator, findRepository, removeCollaborator } from '../../src/db/repositories.js';

const OWNER: Creds = ['owner', 'ownerpw'];
const CARL: Creds = ['carl', 'carlpw'];
const OTTO: Creds = ['otto', 'ottopw'];

/**
 * v1 tokens are signed, scoped and expiring (issue 10): an expired token is refused on its own
 * merits (not because its signature was broken), and a token stops working as soon as the rights
 * behind it go (with token_cache_ttl 0; within token_cache_ttl otherwise).
 */
describe('v1 tokens: expiry and revocation over HTTP', () => {
  let s: TestServer;
  let site: Site;
  let img: TestImage;
  before(async () => {
    s = await startTestServer({ v2: true, bcrypt_cost: 4, token_cache_ttl: 0 });
    site = new Site(s.url, s.url);
    for (const [u, p] of [OWNER!, CARL!, OTTO!]) await saveUser(s.db!, { username: u, email: `${u}@example.com`, password: p, active: true }, { cost: 4 });
    img = makeImage();
    await site.pushV1('owner/app', OWNER, [img]);
    await site.setAccess('owner/app', OWNER, 'private');
  });
  after(async () => {
    await s?.stop();
  });

  it('an expired token (token_ttl 3 s), untouched, is refused with 401 everywhere; a fresh one works', async () => {
    // a second server on the same data with short-lived tokens (the push above needed longer ones)
    const short = await startTestServer({ v2: true, bcrypt_cost: 4, token_ttl: 3, token_cache_ttl: 0 }, { dataDir: s.dataDir });
    try {
      const site2 = new Site(short.url, short.url);
      const t = (await site2.readToken('owner/app', OWNER))!;
      assert.equal((await site2.regGet(`/v1/images/${img.id}/layer`, t)).status, 200);
      await sleep(4100);
      for (const path of [`/v1/images/${img.id}/layer`, `/v1/images/${img.id}/json`, '/v1/repositories/owner/app/tags']) {
        const r = await site2.regGet(path, t);
        assert.equal(r.status, 401, path);
        assert.equal(r.text, '{"error": "Requires authorization"}');
      }
      assert.equal((await site2.regGet(`/v1/images/${img.id}/layer`, await site2.readToken('owner/app', OWNER))).status, 200);
    } finally {
      await short.close();
    }
  });

  it("a collaborator's token dies with the collaboration; a deactivated account's with the account", async () => {
    const repo = (await findRepository(s.db!, 'owner', 'app'))!;
    const carl = (await findUserByName(s.db!, 'carl'))!;
    await addCollaborator(s.db!, repo.id, carl.id, 'read');
    const t = (await site.readToken('owner/app', CARL))!;
    assert.equal((await site.regGet(`/v1/images/${img.id}/layer`, t)).status, 200);
    await removeCollaborator(s.db!, repo.id, carl.id);
    assert.equal((await site.regGet(`/v1/images/${img.id}/layer`, t)).status, 401);
    const own = (await site.readToken('owner/app', OWNER))!;
    await setActive(s.db!, (await findUserByName(s.db!, 'owner'))!.id, false);
    assert.equal((await site.regGet(`/v1/images/${img.id}/layer`, own)).status, 401);
    await setActive(s.db!, (await findUserByName(s.db!, 'owner'))!.id, true);
  });

  it('stars and comments: readers star and comment, others find nothing, anonymous callers are asked to log in', async () => {
    await site.setAccess('owner/app', OWNER, 'public');
    const c = await request(s.url, '/v1/comments/owner/app', {
      method: 'POST',
      headers: { Authorization: basic(...OTTO!) },
      body: JSON.stringify({ body: 'nice' }),
    });
    assert.equal(c.status, 201, c.text);
    const created = c.json<{ body: string; username: string }>();
    assert.equal(created.body, 'nice');
    assert.equal(created.username, 'otto');
    assert.equal((await request(s.url, '/v1/comments/owner/app', { method: 'POST', body: JSON.stringify({ body: 'anon' }) })).status, 401);
    assert.equal((await request(s.url, '/v1/stars/owner/app', { method: 'PUT', headers: { Authorization: basic(...OTTO!) } })).status, 200);
    assert.equal((await request(s.url, '/v1/stars/owner/app', { method: 'DELETE', headers: { Authorization: basic(...OTTO!) } })).status, 200);
    await site.setAccess('owner/app', OWNER, 'private');
    for (const [method, path] of [
      ['POST', '/v1/comments/owner/app'],
      ['GET', '/v1/comments/owner/app'],
      ['PUT', '/v1/stars/owner/app'],
      ['DELETE', '/v1/stars/owner/app'],
    ] as const) {
      const r = await request(s.url, path, {
        method,
        headers: { Authorization: basic(...OTTO!) },
        ...(method === 'POST' ? { body: JSON.stringify({ body: 'x' }) } : {}),
      });
      assert.equal(r.status, 404, `${method} ${path}`);
    }
    const list = await request(s.url, '/v1/comments/owner/app', { headers: { Authorization: basic(...OWNER!) } });
    assert.equal(list.status, 200);
    assert.deepEqual(
      list.json<{ items: { body: string }[] }>().items.map((i) => i.body),
      ['nice'],
    );
  });
});
