import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createKoa } from '../../src/http/app.js';
import { IndexService } from '../../src/index/service.js';
import { V1TokenSigner } from '../../src/auth/v1-token.js';
import { createLogger } from '../../src/log/logger.js';
import { saveUser } from '../../src/db/users.js';
import { saveRepository } from '../../src/db/repositories.js';
import { webRouter, type SettingsTab } from '../../src/web/routes.js';
import { request } from '../helpers/http.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

/**
 * The settings-tab slot the webhooks module plugs into (docs/web-ui.md): a tab given to webRouter
 * shows on the settings page of those who administer the repository, and its form posts reach it
 * only after the CSRF and rights checks. Without a tab (src/main.ts with webhooks: false) nothing shows.
 */
describe('web UI settings tabs', () => {
  let server: TestServer;
  let app: Server;
  let url: string;
  const posted: string[] = [];
  const tab: SettingsTab = {
    id: 'webhooks',
    title: 'Webhooks',
    render: async ({ repo, csrf, action }) => `hooks of ${repo.fullName} → ${action} (${csrf.length})`,
    post: async ({ form }) => {
      posted.push(form.get('url') ?? '');
    },
  };

  before(async () => {
    // webhooks off: the server then passes no tab (with them on it passes its Webhooks tab: test/web/webhooks-tab.test.ts)
    server = await startTestServer({ webhooks: false });
    const db = server.db!;
    const alice = await saveUser(db, { username: 'alice', email: 'a@example.com', password: 'alicepw1', active: true }, { cost: 4 });
    await saveUser(db, { username: 'bobby', email: 'b@example.com', password: 'bobbypw1', active: true }, { cost: 4 });
    await saveRepository(db, { namespace: 'alice', name: 'app', ownerId: alice!.id });
    const index = new IndexService(db, new V1TokenSigner(Buffer.alloc(32, 1), 3600), { signup: true, signupActive: true, bcryptCost: 4 });
    const koa = createKoa();
    koa.use(webRouter({ config: server.config, index, log: createLogger('silent'), settingsTabs: [tab] }).routes());
    app = koa.listen(0, '127.0.0.1');
    await new Promise((r) => app.once('listening', r));
    url = `http://127.0.0.1:${(app.address() as AddressInfo).port}`;
  });

  after(async () => {
    await new Promise((r) => app?.close(r));
    await server?.stop();
  });

  /** Log in through the form: the session cookie and its form token. */
  async function session(base: string, user: string, password: string): Promise<{ cookie: string; csrf: string }> {
    const form = await request(base, '/login', { headers: { Accept: 'text/html' } });
    const pre = String(form.headers['set-cookie']).split(';')[0]!;
    const r = await request(base, '/login', {
      method: 'POST',
      headers: { Cookie: pre, 'Content-Type': 'application/x-www-form-urlencoded' },
      body: `_csrf=${pre.slice('lr_csrf='.length)}&username=${user}&password=${password}`,
    });
    assert.equal(r.status, 303);
    const cookie = String(r.headers['set-cookie']).split(';')[0]!;
    const page = await request(base, '/account', { headers: { Cookie: cookie } });
    const csrf = /<meta name="csrf-token" content="([^"]+)"/.exec(page.text)?.[1];
    assert.ok(csrf);
    return { cookie, csrf };
  }

  it('shows the tab to the owner, runs its form after the CSRF check, refuses everyone else', async () => {
    const alice = await session(url, 'alice', 'alicepw1');
    const general = await request(url, '/u/alice/app/settings', { headers: { Cookie: alice.cookie } });
    assert.equal(general.status, 200);
    assert.match(general.text, /<a href="\/u\/alice\/app\/settings\/webhooks">Webhooks<\/a>/);
    const page = await request(url, '/u/alice/app/settings/webhooks', { headers: { Cookie: alice.cookie } });
    assert.equal(page.status, 200);
    assert.match(page.text, /<section class="card">hooks of alice\/app → \/u\/alice\/app\/settings\/webhooks \(32\)<\/section>/);
    const post = (cookie: string, body: string) =>
      request(url, '/u/alice/app/settings/webhooks', {
        method: 'POST',
        headers: { Cookie: cookie, 'Content-Type': 'application/x-www-form-urlencoded' },
        body,
      });
    assert.equal((await post(alice.cookie, 'url=http%3A%2F%2Fnope')).status, 403);
    assert.deepEqual(posted, []);
    const ok = await post(alice.cookie, `_csrf=${alice.csrf}&url=http%3A%2F%2F127.0.0.1%2Fhook`);
    assert.equal(ok.status, 303);
    assert.equal(ok.headers.location, '/u/alice/app/settings/webhooks?m=saved');
    assert.deepEqual(posted, ['http://127.0.0.1/hook']);
    const bob = await session(url, 'bobby', 'bobbypw1');
    assert.equal((await request(url, '/u/alice/app/settings/webhooks', { headers: { Cookie: bob.cookie } })).status, 403);
    assert.equal((await post(bob.cookie, `_csrf=${bob.csrf}&url=x`)).status, 403);
    const anon = await request(url, '/u/alice/app/settings/webhooks');
    assert.equal(anon.status, 303);
    assert.equal(anon.headers.location, '/login?next=%2Fu%2Falice%2Fapp%2Fsettings%2Fwebhooks');
    assert.equal((await post('', 'url=x')).status, 403);
    assert.deepEqual(posted, ['http://127.0.0.1/hook']);
  });

  it('without a tab (the server with webhooks: false) there is none', async () => {
    const alice = await session(server.url, 'alice', 'alicepw1');
    const general = await request(server.url, '/u/alice/app/settings', { headers: { Cookie: alice.cookie } });
    assert.equal(general.status, 200);
    assert.doesNotMatch(general.text, /settings\/webhooks/);
    assert.equal((await request(server.url, '/u/alice/app/settings/webhooks', { headers: { Cookie: alice.cookie } })).status, 404);
  });
});
