import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { findUserByName, saveUser } from '../../src/db/users.js';
import { mergeImages, saveRepository } from '../../src/db/repositories.js';
import { request } from '../helpers/http.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { makeImage } from '../helpers/v1-client.js';
import { Site } from '../helpers/accounts.js';

/**
 * The web UI over plain HTTP (no browser): an index without a registry in its process, the
 * headers every page carries, the static files, and what the UI refuses before reading a form.
 */
const HTML = { Accept: 'text/html' };

describe('web UI of an index without a registry in its process', () => {
  let index: TestServer;
  const top = makeImage();

  before(async () => {
    index = await startTestServer({}, { role: 'index' });
    await saveUser(index.db!, { username: 'alice', email: 'alice@example.com', password: 'alicepw1', active: true }, { cost: 4 });
    const site = new Site(index.url, index.url);
    // I5 + I7 as a 1.x client sends them: the index learns the tag and the v1 id
    await site.claim('alice/app', ['alice', 'alicepw1'], [top.id], 'v3');
    assert.equal((await site.finish('alice/app', ['alice', 'alicepw1'])).status, 204);
  });

  after(async () => {
    await index?.stop();
  });

  it('shows the tags and v1 ids of the index image list, and says digests and sizes are on the registry', async () => {
    const r = await request(index.url, '/u/alice/app/', { headers: HTML });
    assert.equal(r.status, 200);
    assert.match(
      r.text,
      /This index runs without a registry in its process: tags and v1 image ids come from its image lists; digests and sizes are on the registry\./,
    );
    assert.match(r.text, new RegExp(`<tr data-tag="v3"><td>v3</td><td class="digest" data-v1-id="${top.id}">${top.id.slice(0, 12)}</td></tr>`));
    assert.doesNotMatch(r.text, /data-digest=/);
    // no image page without stored content
    assert.equal((await request(index.url, '/u/alice/app/tags/v3/', { headers: HTML })).status, 404);
    // nor a tag delete: the owner's settings say so, and the post is refused
    const page = await request(index.url, '/login', { headers: HTML });
    const pre = String(page.headers['set-cookie']).split(';')[0]!;
    const login = await request(index.url, '/login', {
      method: 'POST',
      headers: { Cookie: pre, 'Content-Type': 'application/x-www-form-urlencoded' },
      body: `_csrf=${pre.slice(8)}&username=alice&password=alicepw1`,
    });
    const cookie = String(login.headers['set-cookie']).split(';')[0]!;
    const settings = await request(index.url, '/u/alice/app/settings', { headers: { Cookie: cookie } });
    assert.match(settings.text, /Tags are deleted on the registry: this index runs without one in its process\./);
    const csrf = /<meta name="csrf-token" content="([^"]+)"/.exec(settings.text)![1]!;
    const del = await request(index.url, '/u/alice/app/settings/tags/delete', {
      method: 'POST',
      headers: { Cookie: cookie, 'Content-Type': 'application/x-www-form-urlencoded' },
      body: `_csrf=${csrf}&tag=v3`,
    });
    assert.equal(del.status, 409);
    assert.equal((await request(index.url, '/u/alice/app/', { headers: HTML })).text.includes('data-tag="v3"'), true);
  });

  it('pages the tags of a long image list, 100 by name per page, and reads only that page', async () => {
    const { repository } = await saveRepository(index.db!, { namespace: 'alice', name: 'big', ownerId: (await findUserByName(index.db!, 'alice'))!.id });
    // 250 tagged entries among 20,000 untagged ones (a repository pushed to for years)
    const hex = (n: number): string => n.toString(16).padStart(64, '0');
    const entries: { id: string; Tag?: string }[] = [];
    for (let i = 0; i < 20_000; i++) entries.push({ id: hex(i + 1) });
    for (let i = 0; i < 250; i++) entries.push({ id: hex(100_000 + i), Tag: `t${String(i).padStart(3, '0')}` });
    await mergeImages(index.db!, repository.id, entries);
    const rows = (text: string): string[] => [...text.matchAll(/<tr data-tag="([^"]+)">/g)].map((m) => m[1]!);
    const first = await request(index.url, '/u/alice/big/', { headers: HTML });
    assert.equal(first.status, 200);
    assert.deepEqual(
      rows(first.text),
      Array.from({ length: 100 }, (_, i) => `t${String(i).padStart(3, '0')}`),
    );
    assert.match(first.text, /Page 1 of 3/);
    assert.match(first.text, /<a href="\/u\/alice\/big\/\?page=2" rel="next">/);
    const last = await request(index.url, '/u/alice/big/?page=3', { headers: HTML });
    assert.deepEqual(
      rows(last.text),
      Array.from({ length: 50 }, (_, i) => `t${200 + i}`),
    );
    assert.match(last.text, new RegExp(`data-v1-id="${hex(100_249)}"`));
    // past the last page: the last page
    const past = await request(index.url, '/u/alice/big/?page=99', { headers: HTML });
    assert.equal(past.status, 200);
    assert.deepEqual(rows(past.text), rows(last.text));
    assert.match(past.text, /Page 3 of 3/);
  });

  it('every page carries the strict policy, no caching and a form token; static files are immutable', async () => {
    const r = await request(index.url, '/search?q=app', { headers: HTML });
    assert.equal(r.status, 200);
    assert.equal(
      r.headers['content-security-policy'],
      "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    );
    assert.equal(r.headers['x-frame-options'], 'DENY');
    assert.equal(r.headers['cache-control'], 'no-store');
    assert.match(String(r.headers['set-cookie']), /^lr_csrf=[A-Za-z0-9_-]{32}; Path=\/; HttpOnly; SameSite=Lax$/);
    assert.doesNotMatch(r.text, /<script>|<style>| style=| on[a-z]+=/);
    const css = /href="(\/static\/app-[0-9a-f]{12}\.css)"/.exec(r.text)?.[1];
    const js = /src="(\/static\/app-[0-9a-f]{12}\.js)"/.exec(r.text)?.[1];
    assert.ok(css && js);
    for (const [path, type] of [
      [css, 'text/css; charset=utf-8'],
      [js, 'text/javascript; charset=utf-8'],
    ] as const) {
      const a = await request(index.url, path);
      assert.equal(a.status, 200);
      assert.equal(a.headers['content-type'], type);
      assert.equal(a.headers['cache-control'], 'public, max-age=31536000, immutable');
    }
    assert.equal((await request(index.url, '/static/app-000000000000.css')).status, 404);
  });

  it('refuses unsafe requests before reading them: no token, wrong content type, past 128 KiB', async () => {
    const noToken = await request(index.url, '/login', {
      method: 'POST',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
      body: 'username=alice&password=alicepw1',
    });
    assert.equal(noToken.status, 403);
    assert.match(noToken.text, /<h1>Form refused<\/h1>/);
    assert.ok(!(noToken.headers['set-cookie'] ?? []).some((c) => c.startsWith('lr_session=')));
    const nul = await request(index.url, '/login', {
      method: 'POST',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
      body: 'username=a%00b&password=x',
    });
    assert.equal(nul.status, 400);
    const json = await request(index.url, '/login', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{}' });
    assert.equal(json.status, 415);
    const big = await request(index.url, '/login', {
      method: 'POST',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
      body: 'a='.padEnd(140 * 1024, 'x'),
    });
    assert.equal(big.status, 413);
    // the login form with its pre-session token works, and throttles with the API
    const page = await request(index.url, '/login', { headers: HTML });
    const cookie = String(page.headers['set-cookie']).split(';')[0]!;
    const token = cookie.slice('lr_csrf='.length);
    const ok = await request(index.url, '/login', {
      method: 'POST',
      headers: { Cookie: cookie, 'Content-Type': 'application/x-www-form-urlencoded' },
      body: `_csrf=${token}&username=alice&password=alicepw1&next=%2F%2Fevil.example%2F`,
    });
    assert.equal(ok.status, 303);
    // never an open redirect: next must be a path of this site
    assert.equal(ok.headers.location, '/');
    assert.match(String(ok.headers['set-cookie']), /lr_session=[A-Za-z0-9_-]{43}; Path=\/; HttpOnly; SameSite=Lax; Max-Age=1209600/);
  });

  it('sends signed-out visitors of account pages to the login form, and answers unknown names 404', async () => {
    const r = await request(index.url, '/account', { headers: HTML });
    assert.equal(r.status, 303);
    assert.equal(r.headers.location, '/login?next=%2Faccount');
    assert.equal((await request(index.url, '/u/nobody/', { headers: HTML })).status, 404);
    const bare = await request(index.url, '/u/alice/app?x=1', { headers: HTML });
    assert.equal(bare.status, 303);
    assert.equal(bare.headers.location, '/u/alice/app/?x=1');
    assert.equal((await request(index.url, '/u/alice/app/tags/%00/', { headers: HTML })).status, 404);
    assert.equal((await request(index.url, '/_/..%2F..%2Fetc/', { headers: HTML })).status, 404);
    assert.equal((await request(index.url, '/search?q=%00&page=99999999999', { headers: HTML })).status, 200);
  });
});

describe('web UI signup honours signup and signup_active', () => {
  /** A form post with the pre-session token of a fresh GET. */
  async function post(base: string, path: string, fields: Record<string, string>) {
    const page = await request(base, path, { headers: HTML });
    const cookie = String(page.headers['set-cookie']).split(';')[0]!;
    return request(base, path, {
      method: 'POST',
      headers: { Cookie: cookie, 'Content-Type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ _csrf: cookie.slice('lr_csrf='.length), ...fields }).toString(),
    });
  }

  it('signup_active: false creates an inactive account and no session; its login is refused until an admin activates it', async () => {
    const s = await startTestServer({ signup_active: false, bcrypt_cost: 4 }, { role: 'index' });
    try {
      const r = await post(s.url, '/signup', { username: 'dave', email: 'dave@example.com', password: 'davepw1' });
      assert.equal(r.status, 201);
      assert.match(r.text, /<h1>Account created<\/h1><p>An administrator must activate it before you can log in\.<\/p>/);
      assert.ok(!String(r.headers['set-cookie'] ?? '').includes('lr_session='));
      const login = await post(s.url, '/login', { username: 'dave', password: 'davepw1' });
      assert.equal(login.status, 403);
      assert.match(login.text, /This account is not active yet: an administrator must activate it\./);
    } finally {
      await s.stop();
    }
  });

  it('signup: false offers no form and refuses the post', async () => {
    const s = await startTestServer({ signup: false }, { role: 'index' });
    try {
      const page = await request(s.url, '/signup', { headers: HTML });
      assert.equal(page.status, 200);
      assert.match(page.text, /This index does not take new accounts\./);
      assert.doesNotMatch(page.text, /href="\/signup"/);
      const r = await post(s.url, '/signup', { username: 'erin', email: 'erin@example.com', password: 'erinpw1' });
      assert.equal(r.status, 403);
      assert.equal((await request(s.url, '/v1/users/', { headers: { Authorization: `Basic ${Buffer.from('erin:erinpw1').toString('base64')}` } })).status, 401);
    } finally {
      await s.stop();
    }
  });
});
