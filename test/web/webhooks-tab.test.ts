import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { request } from '../helpers/http.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { Receiver } from '../helpers/receiver.js';
import { saveUser } from '../../src/db/users.js';
import { saveRepository } from '../../src/db/repositories.js';

/** The "Webhooks" settings tab of the web UI (issue 15 in issue 14's slot), over HTTP. */
describe('web UI: the Webhooks settings tab', () => {
  let s: TestServer;
  const rx = new Receiver();

  before(async () => {
    await rx.up();
    s = await startTestServer({ webhook_poll_interval: 0.2, webhook_allowed_networks: ['127.0.0.1'] });
    const alice = await saveUser(s.db!, { username: 'alice', email: 'a@example.com', password: 'alicepw1', active: true }, { cost: 4 });
    await saveUser(s.db!, { username: 'bobby', email: 'b@example.com', password: 'bobbypw1', active: true }, { cost: 4 });
    await saveRepository(s.db!, { namespace: 'alice', name: 'app', ownerId: alice!.id });
  });
  after(async () => {
    await s?.stop();
    await rx.down();
  });

  async function session(user: string, password: string): Promise<{ cookie: string; csrf: string }> {
    const form = await request(s.url, '/login', { headers: { Accept: 'text/html' } });
    const pre = String(form.headers['set-cookie']).split(';')[0]!;
    const r = await request(s.url, '/login', {
      method: 'POST',
      headers: { Cookie: pre, 'Content-Type': 'application/x-www-form-urlencoded' },
      body: `_csrf=${pre.slice('lr_csrf='.length)}&username=${user}&password=${password}`,
    });
    assert.equal(r.status, 303);
    const cookie = String(r.headers['set-cookie']).split(';')[0]!;
    const page = await request(s.url, '/account', { headers: { Cookie: cookie } });
    const csrf = /<meta name="csrf-token" content="([^"]+)"/.exec(page.text)?.[1];
    assert.ok(csrf);
    return { cookie, csrf };
  }
  const post = (cookie: string, body: Record<string, string>) =>
    request(s.url, '/u/alice/app/settings/webhooks', {
      method: 'POST',
      headers: { Cookie: cookie, 'Content-Type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams(body).toString(),
    });

  it('the owner adds a hook, sends a test delivery and sees it in the history; others are refused', async () => {
    const alice = await session('alice', 'alicepw1');
    const general = await request(s.url, '/u/alice/app/settings', { headers: { Cookie: alice.cookie } });
    assert.match(general.text, /<a href="\/u\/alice\/app\/settings\/webhooks">Webhooks<\/a>/);
    assert.match((await request(s.url, '/u/alice/app/settings/webhooks', { headers: { Cookie: alice.cookie } })).text, /No webhooks\./);
    const add = await post(alice.cookie, { _csrf: alice.csrf, op: 'add', name: 'ci', url: `${rx.url}/ci`, secret: 'k', chained: 'on' });
    assert.equal(add.status, 303, add.text);
    let page = (await request(s.url, '/u/alice/app/settings/webhooks', { headers: { Cookie: alice.cookie } })).text;
    assert.match(page, new RegExp(`<code>${rx.url}/ci</code> · signed · chained after the previous hook`));
    assert.doesNotMatch(page, /value="k"/, 'the secret is never shown');
    const id = /name="id" value="(\d+)"/.exec(page)?.[1];
    assert.ok(id);
    assert.equal((await post(alice.cookie, { _csrf: alice.csrf, op: 'test', id })).status, 303);
    await rx.until((r) => r.length >= 1, 20_000, 'the test delivery');
    for (let i = 0; i < 50 && !/<td>delivered<\/td>/.test(page); i++) {
      await new Promise((r) => setTimeout(r, 100));
      page = (await request(s.url, '/u/alice/app/settings/webhooks', { headers: { Cookie: alice.cookie } })).text;
    }
    // no answer shown: the receiver (127.0.0.1) is allowed, not public (test/protocol/webhooks-hostile)
    assert.match(page, /<td>test<\/td><td>delivered<\/td><td>200 in \d+ ms<\/td>/);
    assert.doesNotMatch(page, /thanks/);
    // a bad URL: refused with the reason, nothing added
    const bad = await post(alice.cookie, { _csrf: alice.csrf, op: 'add', name: 'x', url: 'javascript:alert(1)' });
    assert.equal(bad.status, 400);
    assert.match(bad.text, /url: an absolute http\(s\) URL/);
    // without the form token, or by someone who does not own the repository: refused
    assert.equal((await post(alice.cookie, { op: 'remove', id })).status, 403);
    const bob = await session('bobby', 'bobbypw1');
    assert.equal((await post(bob.cookie, { _csrf: bob.csrf, op: 'remove', id })).status, 403);
    assert.equal((await request(s.url, '/u/alice/app/settings/webhooks', { headers: { Cookie: bob.cookie } })).status, 403);
    assert.equal((await post(alice.cookie, { _csrf: alice.csrf, op: 'remove', id })).status, 303);
    assert.match((await request(s.url, '/u/alice/app/settings/webhooks', { headers: { Cookie: alice.cookie } })).text, /No webhooks\./);
  });
});
