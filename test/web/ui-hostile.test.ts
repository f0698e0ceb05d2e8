import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { request } from '../helpers/http.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { basic, Site } from '../helpers/accounts.js';
import { makeImage } from '../helpers/v1-client.js';
import { StorageLock } from '../../src/content/storage-lock.js';
import { createFilesystemDriver } from '../../src/storage/drivers/filesystem.js';
import { saveUser, type User } from '../../src/db/users.js';
import { addCollaborator, saveRepository } from '../../src/db/repositories.js';
import { addMember, removeMember, saveOrganization } from '../../src/db/organizations.js';

const HTML = { Accept: 'text/html' };

/**
 * The web UI as an attack surface (docs/web-ui.md): what a private repository shows to accounts that
 * may not read it (search, namespace pages, explore, /v1/search must agree with the repository page's
 * 404), and hostile text that reaches pages through webhooks (a hook's name, a receiver's answer, a
 * callback's description) rendered as text.
 */
describe('web UI: private repositories and hostile text', () => {
  let s: TestServer;
  const users: Record<string, User> = {};
  let teamId = 0;

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
    const csrf = /<meta name="csrf-token" content="([^"]+)"/.exec(page.text)?.[1];
    assert.ok(csrf);
    return { cookie, csrf };
  }

  before(async () => {
    s = await startTestServer({ bcrypt_cost: 4, webhook_poll_interval: 0.2, webhook_max_attempts: 1, webhook_allowed_networks: ['127.0.0.1'] });
    for (const u of ['alice', 'olga', 'carl', 'admin']) {
      users[u] = (await saveUser(
        s.db!,
        { username: u, email: `${u}@example.com`, password: `${u}pw1`, active: true, admin: u === 'admin' },
        { cost: 4 },
      )) as User;
    }
    const team = (await saveOrganization(s.db!, { name: 'team' }))!;
    teamId = team.id;
    await addMember(s.db!, team.id, users.olga!.id, 'owner');
    await addMember(s.db!, team.id, users.alice!.id, 'member');
    // alice pushed it while a member: the index records her as its creator (owner_id)
    await saveRepository(s.db!, { namespace: 'team', name: 'zebrasecret', description: 'the zebra plans', private: true, ownerId: users.alice!.id });
    // a private official repository an admin shared with carl (official repositories are the admins')
    const lib = await saveRepository(s.db!, {
      namespace: 'library',
      name: 'zebralib',
      description: 'zebra internal base',
      private: true,
      ownerId: users.admin!.id,
    });
    await addCollaborator(s.db!, lib.repository.id, users.carl!.id, 'read');
  });
  after(async () => {
    await s?.stop();
  });

  /** Every place listing repositories, as `who` sees it: does any name `zebra…`? */
  async function listings(who: string): Promise<Record<string, boolean>> {
    const { cookie } = await session(who);
    const page = async (path: string) => (await request(s.url, path, { headers: { ...HTML, Cookie: cookie } })).text;
    const v1 = await request(s.url, '/v1/search?q=zebra', { headers: { Authorization: basic(who, `${who}pw1`) } });
    return {
      search: /zebra(secret|lib)/.test(await page('/search?q=zebra')),
      all: /zebra(secret|lib)/.test(await page('/search')),
      explore: /zebra(secret|lib)/.test(await page('/')),
      team: /zebrasecret/.test(await page('/u/team/')),
      library: /zebralib/.test(await page('/u/library/')),
      v1search: /zebra(secret|lib)/.test(v1.text),
    };
  }
  const none = { search: false, all: false, explore: false, team: false, library: false, v1search: false };

  it('a member who left the organization no longer finds its private repository, even one they created', async () => {
    const member = await session('alice');
    assert.equal((await request(s.url, '/u/team/zebrasecret/', { headers: { ...HTML, Cookie: member.cookie } })).status, 200);
    assert.equal((await listings('alice')).search, true, 'a member finds it');
    await removeMember(s.db!, teamId, users.alice!.id);
    const gone = await session('alice');
    assert.equal((await request(s.url, '/u/team/zebrasecret/', { headers: { ...HTML, Cookie: gone.cookie } })).status, 404);
    assert.deepEqual(await listings('alice'), none);
    // the organization's owner still sees it
    assert.equal((await listings('olga')).team, true);
  });

  it('a collaborator of a private official repository (which only admins read) is not shown it either', async () => {
    const carl = await session('carl');
    assert.equal((await request(s.url, '/_/zebralib/', { headers: { ...HTML, Cookie: carl.cookie } })).status, 404);
    assert.deepEqual(await listings('carl'), none);
    assert.equal((await listings('admin')).library, true);
  });

  it('deleting a repository on its settings page waits for a tag write in flight (the lock DELETE /v1/repositories takes)', async () => {
    // A v1 tag PUT takes the repository's lock, asks the index whether its token still holds, then
    // writes the tag; DELETE /v1/repositories removes the content under the same lock, so a push
    // racing a delete lands before the removal or is refused (docs/security.md). Here the test holds
    // that lock as another node's tag PUT would between its check and its write.
    const site = new Site(s.url, s.url);
    await site.pushV1('alice/racy', ['alice', 'alicepw1'], [makeImage()], 'latest');
    const storage = createFilesystemDriver({ root: s.dataDir });
    const tagKey = 'v1/repositories/alice/racy/_tags/late';
    assert.ok((await storage.list('v1/repositories/alice/racy')).length > 0, 'pushed content where the test looks');
    const alice = await session('alice');
    let deleted = false;
    let deleting!: Promise<Awaited<ReturnType<typeof request>>>;
    await new StorageLock(storage).run('repository\nalice/racy', async () => {
      deleting = request(s.url, '/u/alice/racy/settings/delete', {
        method: 'POST',
        headers: { Cookie: alice.cookie, 'Content-Type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ _csrf: alice.csrf, confirm: 'alice/racy' }).toString(),
      }).finally(() => (deleted = true));
      await new Promise((res) => setTimeout(res, 500));
      // the tag PUT's write, checked before the delete marked the repository
      await storage.putContent(tagKey, Buffer.from('"x"'));
    });
    const r = await deleting;
    assert.equal(r.status, 303, r.text);
    assert.ok(deleted);
    const left = await storage.list('v1/repositories/alice/racy').catch(() => []);
    assert.deepEqual(left, [], 'content of the deleted repository written during its delete stays in storage');
  });

  it("a webhook's name, a receiver's answer and a callback's description are shown as text", async () => {
    await saveRepository(s.db!, { namespace: 'olga', name: 'hooked' });
    const evil = '<script>window.__x=1</script><img src=x onerror="window.__x=2">';
    const receiver: Server = createServer((req, res) => {
      req.resume();
      res.writeHead(200, { 'Content-Type': 'text/html' }).end(evil);
    });
    await new Promise<void>((res) => receiver.listen(0, '127.0.0.1', res));
    try {
      const olga = await session('olga');
      const api = (path: string, method = 'GET', body?: unknown) =>
        request(s.url, path, {
          method,
          headers: { Authorization: basic('olga', 'olgapw1'), 'Content-Type': 'application/json' },
          ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
        });
      const hook = await api('/v1/webhooks/olga/hooked', 'POST', {
        name: evil.slice(0, 100),
        url: `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/"><script>1</script>`,
      });
      assert.equal(hook.status, 201, hook.text);
      const id = hook.json<{ id: number }>().id;
      assert.equal((await api(`/v1/webhooks/olga/hooked/${id}/test`, 'POST')).status, 202);
      let delivered = false;
      for (let i = 0; i < 100 && !delivered; i++) {
        delivered = (await api(`/v1/webhooks/olga/hooked/${id}/deliveries`)).json<{ state: string }[]>()[0]?.state === 'delivered';
        if (!delivered) await new Promise((res) => setTimeout(res, 100));
      }
      assert.ok(delivered);
      const token = (await s.db!('webhook_deliveries').where({ webhook_id: id }).first('callback_token')) as { callback_token: string };
      const cb = await request(s.url, `/u/olga/hooked/hook/${token.callback_token}/`, {
        method: 'POST',
        body: JSON.stringify({ state: 'failure', description: evil }),
      });
      assert.equal(cb.status, 200, cb.text);
      const page = await request(s.url, '/u/olga/hooked/settings/webhooks', { headers: { ...HTML, Cookie: olga.cookie } });
      assert.equal(page.status, 200);
      // (the receiver's answer itself is not kept: 127.0.0.1 is allowed, not public; the name and the callback carry the same text)
      assert.doesNotMatch(page.text, /<script>window|<img src=x|<script>1/);
      assert.match(page.text, /&lt;script>window\.__x=1&lt;\/script>|&lt;script&gt;window\.__x=1&lt;\/script&gt;/);
    } finally {
      receiver.closeAllConnections();
      await new Promise((res) => receiver.close(res));
    }
  });
});
