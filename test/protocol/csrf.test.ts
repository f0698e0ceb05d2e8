import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import bcrypt from 'bcryptjs';
import { request, type Response } from '../helpers/http.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { basic } from '../helpers/accounts.js';
import { findUserByName, saveUser } from '../../src/db/users.js';
import { findRepository, listComments, saveRepository } from '../../src/db/repositories.js';
import { listHooks } from '../../src/webhooks/store.js';

const ALICE = basic('alice', 'alicepw1');

/**
 * Cross-site request forgery (docs/security.md, "Requests from other sites"). A browser sends the web
 * UI's session cookie and Basic credentials it cached after a `WWW-Authenticate: Basic` prompt on its
 * own, also when a page of another site submits a form to us (`enctype=text/plain` makes a JSON body,
 * with no CORS preflight). Such a request says where it comes from (Origin, Sec-Fetch-Site); API
 * clients send neither. Each kind of route gets the request a browser would send — credentials,
 * Origin and Sec-Fetch-Site — and must change nothing; the same request without those two headers
 * (docker, podman, skopeo, curl) works as before.
 */

/** What a browser adds to a form POST from a page of another site, from one of another port (same-site), from an old browser, from a sandboxed frame. */
const BROWSERS: Record<string, Record<string, string>> = {
  'cross-site': { Origin: 'http://evil.example', 'Sec-Fetch-Site': 'cross-site' },
  'same-site (another port of the host)': { Origin: 'http://127.0.0.1:1', 'Sec-Fetch-Site': 'same-site' },
  'Origin only (a browser without Fetch Metadata)': { Origin: 'http://evil.example' },
  'Origin null (sandboxed frame, redirect)': { Origin: 'null' },
  'Sec-Fetch-Site only': { 'Sec-Fetch-Site': 'cross-site' },
};

/**
 * A JSON body as an HTML form with enctype=text/plain sends it: one field, `name=value`, whose name
 * opens the JSON and whose value closes it (`{"name":…,"pad":"` + `=` + `"}`).
 */
const formJson = (o: Record<string, unknown>): string => `${JSON.stringify(o).slice(0, -1)},"pad":"=` + '"}';

describe('cross-site requests: refused on every state-changing route, API clients unchanged', () => {
  let s: TestServer;
  let v2: TestServer;
  let work: string;
  let aliceId = 0;

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'lr-csrf-'));
    s = await startTestServer({
      bcrypt_cost: 4,
      trusted_proxies: ['127.0.0.1'],
      webhook_base_url: 'https://hub.example.com/',
      cors: { origins: ['https://ui.example'], supports_credentials: true },
    });
    aliceId = (await saveUser(s.db!, { username: 'alice', email: 'alice@example.com', password: 'alicepw1', active: true }, { cost: 4 }))!.id;
    await saveUser(s.db!, { username: 'bob', email: 'bob@example.com', password: 'bobpw123', active: true }, { cost: 4 });
    for (const name of ['app', 'doomed']) await saveRepository(s.db!, { namespace: 'alice', name, description: '', private: false, ownerId: aliceId });
    // a registry whose /v2/ challenges with Basic (htpasswd), CORS open to every origin
    await writeFile(join(work, 'htpasswd'), `alice:${bcrypt.hashSync('alicepw1', 4)}\n`);
    v2 = await startTestServer({ standalone: true, v2: true, v2_auth: 'htpasswd', htpasswd_path: join(work, 'htpasswd'), cors: { origins: '*' } });
  });
  after(async () => {
    await s?.stop();
    await v2?.stop();
    await rm(work, { recursive: true, force: true });
  });

  const repo = async (name: string) => (await findRepository(s.db!, 'alice', name))!;
  const hooks = async () => (await listHooks(s.db!, (await repo('app')).id)).map((h) => h.name);
  const refused = (r: Response, what: string): void => {
    assert.equal(r.status, 403, `${what}: ${r.status} ${r.text}`);
    assert.match(r.text, /Cross-site request refused/, what);
  };

  it('the webhook API: a form of another site adds, tests and removes nothing', async () => {
    const body = formJson({ name: 'evil', url: 'https://evil.example/steal' });
    assert.deepEqual(JSON.parse(body), { name: 'evil', url: 'https://evil.example/steal', pad: '=' }, 'the form body is JSON');
    for (const [kind, headers] of Object.entries(BROWSERS)) {
      const r = await request(s.url, '/v1/webhooks/alice/app', {
        method: 'POST',
        headers: { Authorization: ALICE, 'Content-Type': 'text/plain', ...headers },
        body,
      });
      refused(r, kind);
    }
    assert.deepEqual(await hooks(), []);
    // a client: JSON said to be JSON
    const made = await request(s.url, '/v1/webhooks/alice/app', {
      method: 'POST',
      headers: { Authorization: ALICE, 'Content-Type': 'application/json' },
      body: JSON.stringify({ name: 'ci', url: 'https://ci.example.com/hook' }),
    });
    assert.equal(made.status, 201, made.text);
    const id = made.json<{ id: number }>().id;
    for (const [kind, headers] of Object.entries(BROWSERS)) {
      refused(await request(s.url, `/v1/webhooks/alice/app/${id}/test`, { method: 'POST', headers: { Authorization: ALICE, ...headers } }), `test ${kind}`);
      refused(await request(s.url, `/v1/webhooks/alice/app/${id}`, { method: 'DELETE', headers: { Authorization: ALICE, ...headers } }), `delete ${kind}`);
    }
    assert.deepEqual(await hooks(), ['ci']);
    assert.equal((await request(s.url, `/v1/webhooks/alice/app/${id}/test`, { method: 'POST', headers: { Authorization: ALICE } })).status, 202);
    assert.equal((await request(s.url, `/v1/webhooks/alice/app/${id}`, { method: 'DELETE', headers: { Authorization: ALICE } })).status, 200);
    assert.deepEqual(await hooks(), []);
  });

  it('the webhook API takes application/json only: a form body from a browser that sends no Origin adds nothing', async () => {
    for (const type of ['text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', undefined]) {
      const r = await request(s.url, '/v1/webhooks/alice/app', {
        method: 'POST',
        headers: { Authorization: ALICE, ...(type ? { 'Content-Type': type } : {}) },
        body: formJson({ name: 'old-browser', url: 'https://evil.example/steal' }),
      });
      assert.equal(r.status, 415, `${type}: ${r.text}`);
      assert.deepEqual(r.json(), { error: 'Content-Type must be application/json' });
    }
    // signing in still comes first (the access matrix's order): anonymous is 401 whatever the type
    assert.equal((await request(s.url, '/v1/webhooks/alice/app', { method: 'POST', headers: { 'Content-Type': 'text/plain' }, body: '{}' })).status, 401);
    assert.deepEqual(await hooks(), []);
    const ok = await request(s.url, '/v1/webhooks/alice/app', {
      method: 'POST',
      headers: { Authorization: ALICE, 'Content-Type': 'application/json; charset=utf-8' },
      body: JSON.stringify({ name: 'charset', url: 'https://ci.example.com/hook' }),
    });
    assert.equal(ok.status, 201, ok.text);
  });

  it('v1 index routes (account, repositories, stars, comments, signup): refused from a browser, as before for docker 1.x and curl', async () => {
    const cases: { what: string; method: string; path: string; headers: Record<string, string>; body?: string; ok: number }[] = [
      // docker 1.x: JSON bodies said to be JSON
      {
        what: 'account update',
        method: 'PUT',
        path: '/v1/users/alice/',
        headers: { 'Content-Type': 'application/json' },
        body: '{"email":"a2@example.com"}',
        ok: 204,
      },
      {
        what: 'repository claim',
        method: 'PUT',
        path: '/v1/repositories/alice/fresh/',
        headers: { 'Content-Type': 'application/json', 'X-Docker-Token': 'true' },
        body: '[]',
        ok: 200,
      },
      { what: 'star', method: 'PUT', path: '/v1/stars/alice/app', headers: {}, ok: 200 },
      { what: 'unstar', method: 'DELETE', path: '/v1/stars/alice/app', headers: {}, ok: 200 },
      // curl -d: a JSON body sent as application/x-www-form-urlencoded
      {
        what: 'comment',
        method: 'POST',
        path: '/v1/comments/alice/app',
        headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
        body: '{"body":"hi"}',
        ok: 201,
      },
      { what: 'repository delete', method: 'DELETE', path: '/v1/repositories/alice/doomed/', headers: {}, ok: 202 },
    ];
    for (const c of cases) {
      for (const [kind, headers] of Object.entries(BROWSERS)) {
        const r = await request(s.url, c.path, {
          method: c.method,
          headers: { Authorization: ALICE, ...c.headers, ...headers },
          ...(c.body ? { body: c.body } : {}),
        });
        refused(r, `${c.what}, ${kind}`);
      }
    }
    assert.equal((await findUserByName(s.db!, 'alice'))?.email, 'alice@example.com');
    assert.equal(await findRepository(s.db!, 'alice', 'fresh'), undefined);
    assert.ok(await findRepository(s.db!, 'alice', 'doomed'));
    assert.equal((await listComments(s.db!, (await repo('app')).id)).total, 0);
    // signup needs no credentials, but is a change too
    refused(
      await request(s.url, '/v1/users/', {
        method: 'POST',
        headers: { 'Content-Type': 'text/plain', ...BROWSERS['cross-site'] },
        body: '{"username":"mallory","password":"mallorypw","email":"m@example.com"}',
      }),
      'signup',
    );
    assert.equal(await findUserByName(s.db!, 'mallory'), undefined);
    for (const c of cases) {
      const r = await request(s.url, c.path, { method: c.method, headers: { Authorization: ALICE, ...c.headers }, ...(c.body ? { body: c.body } : {}) });
      assert.equal(r.status, c.ok, `${c.what} by a client: ${r.text}`);
    }
    assert.equal((await findUserByName(s.db!, 'alice'))?.email, 'a2@example.com');
    assert.ok(await findRepository(s.db!, 'alice', 'fresh'));
  });

  it('the token service (POST /v2/token) and v2 routes behind a Basic challenge', async () => {
    const form = 'grant_type=password&client_id=docker&username=alice&password=alicepw1&scope=repository:alice/app:pull';
    const tokenReq = (headers: Record<string, string>) =>
      request(s.url, '/v2/token', { method: 'POST', headers: { 'Content-Type': 'application/x-www-form-urlencoded', ...headers }, body: form });
    refused(await tokenReq(BROWSERS['cross-site']!), 'token');
    assert.equal((await tokenReq({})).status, 200);

    const upload = (headers: Record<string, string>) =>
      request(v2.url, '/v2/alice/app/blobs/uploads/', { method: 'POST', headers: { Authorization: ALICE, ...headers } });
    for (const [kind, headers] of Object.entries(BROWSERS)) {
      const r = await upload(headers);
      assert.equal(r.status, 403, kind);
      // a v2 error body, for v2 clients and tools
      assert.equal(r.json<{ errors: { code: string }[] }>().errors[0]!.code, 'DENIED', kind);
    }
    // cors origins '*' opens reads to every page, not writes with the visitor's credentials
    assert.equal((await upload({ Origin: 'https://ui.example' })).status, 403);
    assert.equal((await upload({})).status, 202);
    // reads stay open to pages of any site (CORS decides what they may see)
    assert.equal((await request(v2.url, '/v2/', { headers: { Authorization: ALICE, ...BROWSERS['cross-site'] } })).status, 200);
  });

  it('the web UI: its own forms post as before; another site cannot use the session, even knowing the token', async () => {
    const form = await request(s.url, '/login', { headers: { Accept: 'text/html' } });
    const pre = String(form.headers['set-cookie']).split(';')[0]!;
    const login = (headers: Record<string, string>) =>
      request(s.url, '/login', {
        method: 'POST',
        headers: { Cookie: pre, 'Content-Type': 'application/x-www-form-urlencoded', ...headers },
        body: `_csrf=${pre.slice('lr_csrf='.length)}&username=bob&password=bobpw123`,
      });
    // login CSRF: signing the visitor in to another account
    refused(await login(BROWSERS['same-site (another port of the host)']!), 'login');
    const signedIn = await login({ Origin: s.url, 'Sec-Fetch-Site': 'same-origin' });
    assert.equal(signedIn.status, 303, signedIn.text);
    const cookie = String(signedIn.headers['set-cookie']).split(';')[0]!;
    const page = await request(s.url, '/u/alice/app/', { headers: { Cookie: cookie, Accept: 'text/html' } });
    const csrf = /<meta name="csrf-token" content="([^"]+)"/.exec(page.text)?.[1];
    assert.ok(csrf);
    const star = (headers: Record<string, string>) =>
      request(s.url, '/u/alice/app/star', {
        method: 'POST',
        headers: { Cookie: cookie, 'Content-Type': 'application/x-www-form-urlencoded', ...headers },
        body: `star=1&_csrf=${csrf}`,
      });
    for (const [kind, headers] of Object.entries(BROWSERS)) refused(await star(headers), `star ${kind}`);
    // the page's own form: Origin of this server, or the browser's word that it is same-origin
    assert.equal((await star({ Origin: s.url })).status, 303);
    assert.equal((await star({ Origin: s.url, 'Sec-Fetch-Site': 'same-origin' })).status, 303);
    assert.equal((await star({ 'Sec-Fetch-Site': 'same-origin', Origin: 'null' })).status, 303);
  });

  it("this server's origin behind a trusted proxy, webhook_base_url's, and origins cors lists are its own; nothing else", async () => {
    const post = (headers: Record<string, string>) =>
      request(s.url, '/v1/comments/alice/app', { method: 'POST', headers: { Authorization: ALICE, ...headers }, body: '{"body":"from a page"}' });
    const before = (await listComments(s.db!, (await repo('app')).id)).total;
    const proxied = { 'X-Forwarded-Host': 'registry.example.com', 'X-Forwarded-Proto': 'https' };
    // the proxy's public origin, with and without its default port
    assert.equal((await post({ ...proxied, Origin: 'https://registry.example.com' })).status, 201);
    assert.equal((await post({ ...proxied, 'X-Forwarded-Host': 'registry.example.com:443', Origin: 'https://registry.example.com' })).status, 201);
    refused(await post({ ...proxied, Origin: 'http://registry.example.com' }), 'another scheme');
    refused(await post({ ...proxied, Origin: 'https://registry.example.com.evil.example' }), 'a longer name');
    refused(await post({ ...proxied, Origin: 'https://registry.example.com', 'Sec-Fetch-Site': 'cross-site' }), 'the browser says cross-site');
    // the configured public URL of the index
    assert.equal((await post({ Origin: 'https://hub.example.com' })).status, 201);
    // a page cors lists (a registry UI on another host), even cross-site
    assert.equal((await post({ Origin: 'https://ui.example', 'Sec-Fetch-Site': 'cross-site' })).status, 201);
    refused(await post({ Origin: 'https://ui.example.evil.example', 'Sec-Fetch-Site': 'cross-site' }), 'not the listed origin');
    // a peer that is no trusted proxy does not choose the origin with X-Forwarded-Host
    refused(
      await request(v2.url, '/v2/alice/app/blobs/uploads/', {
        method: 'POST',
        headers: { Authorization: ALICE, 'X-Forwarded-Host': 'evil.example', Origin: 'http://evil.example' },
      }),
      'X-Forwarded-Host from anyone',
    );
    assert.equal((await listComments(s.db!, (await repo('app')).id)).total, before + 4);
  });
});
