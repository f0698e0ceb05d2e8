import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { request } from '../helpers/http.js';
import { basic, pushV2Image, S2, v2Image } from '../helpers/accounts.js';
import { assertAccessible, browserSkip, launch, login, person } from './browser.js';
import { ALICE, BOB, ROOT, seed, type Seeded } from './seed.js';

/**
 * Issue 14: the web UI in Debian's Chromium against the real server (index and registry in one
 * process, SQLite, filesystem storage) with content pushed over v1 and over v2 by the test clients.
 * Each scenario drives the pages as a person would and asserts what they show, exactly.
 */
const skip = browserSkip();

describe('web UI in a browser', { skip }, () => {
  let server: TestServer;
  let browser: Browser;
  let seeded: Seeded;
  let u: string;
  const contexts: BrowserContext[] = [];

  before(async () => {
    server = await startTestServer({ signup: true });
    u = server.url;
    seeded = await seed(server);
    browser = await launch();
  });

  after(async () => {
    for (const c of contexts) await c.close().catch(() => undefined);
    await browser?.close();
    await server?.stop();
  });

  async function newPage(opts: { dark?: boolean; mobile?: boolean } = {}): Promise<Page> {
    const c = await person(browser, opts);
    contexts.push(c);
    return c.newPage();
  }

  const rowNames = (page: Page, sel = 'ul.repos .repo-name'): Promise<string[]> => page.locator(sel).allTextContents();

  it('anonymous: explore lists official, recent and starred repositories; search pages the same ranking as /v1/search', async () => {
    const page = await newPage();
    const res = await page.goto(`${u}/`);
    assert.equal(res?.status(), 200);
    assert.match(res?.headers()['content-security-policy'] ?? '', /^default-src 'none'; script-src 'self'; style-src 'self'/);
    assert.deepEqual(await rowNames(page, '[aria-labelledby=official-title] .repo-name'), ['busybox']);
    assert.deepEqual((await rowNames(page, '[aria-labelledby=recent-title] .repo-name')).sort(), ['alice/newapp', 'alice/oldapp', 'busybox']);
    await page.fill('#q-hero', 'app');
    await Promise.all([page.waitForURL(/\/search\?q=app/), page.press('#q-hero', 'Enter')]);
    assert.equal(await page.textContent('#result-count'), '2 repositories');
    const api = (await request(u, '/v1/search?q=app')).json<{ results: { name: string }[] }>();
    assert.deepEqual(
      await rowNames(page),
      api.results.map((r) => r.name),
    );
    // API clients still get the registry's answer at /
    const root = await request(u, '/');
    assert.equal(root.text, JSON.stringify('"docker-registry server"'));
    await assertAccessible(page, 'search');
    await page.goto(`${u}/`);
    await assertAccessible(page, 'explore');
  });

  it('the repository pushed over v1 shows its tag, v1 id, derived digest and size as the APIs give them', async () => {
    const page = await newPage();
    await page.goto(`${u}/u/alice/oldapp/`);
    const row = page.locator('#tags tr[data-tag="latest"]');
    const top = seeded.v1Chain[seeded.v1Chain.length - 1]!;
    assert.equal(await row.locator('[data-v1-id]').getAttribute('data-v1-id'), top.id);
    // the digest a v2 client gets for this tag (the bridge's schema2), read over HTTP
    const bearer = await seeded.site.bearer(undefined, 'repository:alice/oldapp:pull');
    const m = await seeded.site.v2('/v2/alice/oldapp/manifests/latest', bearer, { headers: { Accept: S2 } });
    assert.equal(m.status, 200);
    assert.equal(await row.locator('[data-digest]').getAttribute('data-digest'), m.headers['docker-content-digest']);
    const layers = seeded.v1Chain.reduce((a, i) => a + i.layer.length, 0);
    assert.equal(await row.locator('[data-bytes]').getAttribute('data-bytes'), String(layers));
    assert.equal(await row.locator('.badge').textContent(), 'v1');
    assert.equal(await page.textContent('#pull-docker'), `docker pull ${new URL(u).host}/alice/oldapp:latest`);
    await assertAccessible(page, 'repository (v1)');
    // the image page: one layer per v1 image, root first, with its blob and size
    await page.click('#tags a:text-is("latest")');
    await page.waitForURL(/\/tags\/latest\/$/);
    assert.equal(await page.textContent('#v1-id'), top.id);
    assert.equal(await page.textContent('#platform'), 'linux/amd64');
    const sizes = await page.locator('#layers td.num [data-bytes]').evaluateAll((els) => els.map((e) => e.getAttribute('data-bytes')));
    assert.deepEqual(
      sizes,
      seeded.v1Chain.map((i) => String(i.layer.length)),
    );
    await assertAccessible(page, 'tag (v1)');
  });

  it('the repository pushed over v2 shows its tag, manifest digest, derived v1 id, layer sizes and commands', async () => {
    const page = await newPage({ dark: true });
    await page.goto(`${u}/u/alice/newapp/`);
    const row = page.locator('#tags tr[data-tag="1.0"]');
    assert.equal(await row.locator('[data-digest]').getAttribute('data-digest'), seeded.v2.digest);
    assert.equal(await row.locator('[data-bytes]').getAttribute('data-bytes'), String(seeded.v2.layers.reduce((a, l) => a + l.length, 0)));
    assert.equal(await row.locator('.badge').textContent(), 'v2');
    // the v1 id is the one v1 clients get for the tag
    const token = (await request(u, '/v1/repositories/alice/newapp/images', { headers: { 'X-Docker-Token': 'true' } })).headers['x-docker-token'];
    const tagId = await request(u, '/v1/repositories/alice/newapp/tags/1.0', { headers: { Authorization: `Token ${String(token)}` } });
    assert.equal(tagId.status, 200);
    assert.equal(await row.locator('[data-v1-id]').getAttribute('data-v1-id'), tagId.json<string>());
    await assertAccessible(page, 'repository (v2, dark)');
    await page.goto(`${u}/u/alice/newapp/tags/1.0/`);
    assert.deepEqual(await page.locator('#layers td.cmd').allTextContents(), ['step 0', 'step 1']);
    assert.deepEqual(
      await page.locator('#layers td.num [data-bytes]').evaluateAll((els) => els.map((e) => e.getAttribute('data-bytes'))),
      seeded.v2.layers.map((l) => String(l.length)),
    );
    assert.equal(await page.locator('#formats [data-digest]').first().getAttribute('data-digest'), seeded.v2.digest);
    await assertAccessible(page, 'tag (v2, dark)');
  });

  it('sign up, log out, log in; wrong passwords are throttled together with /v1/users/', async () => {
    const page = await newPage({ mobile: true });
    await page.goto(`${u}/signup`);
    await assertAccessible(page, 'signup (narrow)');
    await page.fill('#username', 'carol');
    await page.fill('#email', 'carol@example.com');
    await page.fill('#password', 'carolpw1');
    await Promise.all([page.waitForURL(/\/u\/carol\/\?m=welcome$/), page.click('main button[type=submit]')]);
    assert.equal(await page.textContent('.flash'), 'Welcome! Your account is ready.');
    const cookies = await page.context().cookies();
    const session = cookies.find((c) => c.name === 'lr_session');
    assert.ok(session, 'a session cookie');
    assert.equal(session.httpOnly, true);
    assert.equal(session.sameSite, 'Lax');
    // the account works for Docker clients too
    assert.equal((await request(u, '/v1/users/', { headers: { Authorization: basic('carol', 'carolpw1') } })).status, 200);
    await page.goto(`${u}/account`);
    await assertAccessible(page, 'account');
    await Promise.all([page.waitForURL(`${u}/`), page.click('header form[action="/logout"] button')]);
    assert.equal(await page.locator('header a[href^="/login"]').count(), 1);
    await page.goto(`${u}/login`);
    await assertAccessible(page, 'login');
    // the fifth failure locks this address out of the account: the sixth attempt is refused unread
    for (let i = 0; i < 6; i++) {
      await page.fill('#username', 'carol');
      await page.fill('#password', 'wrong-password');
      const [r] = await Promise.all([
        page.waitForResponse((x) => x.url() === `${u}/login` && x.request().method() === 'POST'),
        page.click('main button[type=submit]'),
      ]);
      assert.equal(r.status(), i < 5 ? 401 : 429, `attempt ${i + 1}`);
    }
    assert.match((await page.textContent('.flash')) ?? '', /^Too many failed logins for this account\. Try again in \d+ seconds\.$/);
    // the same lock answers the v1 login from the same address, right password or not
    const v1 = await request(u, '/v1/users/', { headers: { Authorization: basic('carol', 'carolpw1') } });
    assert.equal(v1.status, 429);
  });

  it('star without a reload and comment; an XSS attempt in a comment and in a description shows as text', async () => {
    const alice = await newPage();
    await login(alice, u, ...ALICE);
    await alice.goto(`${u}/u/alice/oldapp/settings`);
    await assertAccessible(alice, 'settings');
    const evil = '<script>window.__xss = 1</script><img src=x onerror="window.__xss = 2"> [click](javascript:window.__xss=3) [ok](https://example.com/)';
    await alice.fill('#description', 'old app');
    await alice.fill('#full_description', `# Title\n\n${evil}`);
    await Promise.all([alice.waitForURL(/settings\?m=saved$/), alice.click('form[action$="/settings/description"] button')]);
    const bob = await newPage();
    await login(bob, u, ...BOB);
    await bob.goto(`${u}/u/alice/oldapp/`);
    const full = bob.locator('#full-description');
    assert.equal(await full.locator('script, img').count(), 0);
    assert.match((await full.textContent()) ?? '', /<script>window\.__xss = 1<\/script><img src=x onerror="window\.__xss = 2">/);
    assert.deepEqual(await full.locator('a').evaluateAll((as) => as.map((a) => a.getAttribute('href'))), ['https://example.com/']);
    // star: the count changes in place (no navigation)
    const navigations: string[] = [];
    bob.on('framenavigated', (f) => navigations.push(f.url()));
    await bob.click('form.js-star button');
    await bob.waitForFunction(() => document.querySelector('#star-count')?.textContent === '1');
    assert.equal(await bob.textContent('form.js-star button'), 'Unstar');
    assert.deepEqual(navigations, []);
    assert.equal((await request(u, '/v1/search?q=alice/oldapp')).json<{ results: { star_count: number }[] }>().results[0]?.star_count, 1);
    await bob.fill('#comment-body', `Nice **image** ${evil}`);
    await Promise.all([bob.waitForURL(/\?m=commented#comment-\d+$/), bob.click('form[action$="/comments"] button')]);
    const comment = bob.locator('ol.comments li').last();
    assert.equal(await comment.locator('strong').textContent(), 'image');
    assert.equal(await comment.locator('script, img').count(), 0);
    assert.match((await comment.textContent()) ?? '', /<script>window\.__xss = 1<\/script>/);
    assert.equal(await bob.evaluate('window.__xss'), undefined);
    assert.equal(await alice.evaluate('window.__xss'), undefined);
    await assertAccessible(bob, 'repository with comments');
  });

  it('private: another account and anonymous no longer see it anywhere; a collaborator does', async () => {
    const alice = await newPage();
    await login(alice, u, ...ALICE);
    const bob = await newPage();
    await login(bob, u, ...BOB);
    const anon = await newPage();
    await alice.goto(`${u}/u/alice/oldapp/settings`);
    await alice.check('input[name=access][value=private]');
    await Promise.all([alice.waitForURL(/settings\?m=saved$/), alice.click('form[action$="/settings/visibility"] button')]);

    const visible = async (page: Page): Promise<Record<string, unknown>> => {
      await page.goto(`${u}/`);
      const explore = (await rowNames(page)).includes('alice/oldapp');
      await page.goto(`${u}/search?q=app`);
      const search = [await page.textContent('#result-count'), (await rowNames(page)).includes('alice/oldapp')];
      await page.goto(`${u}/u/alice/`);
      const ns = [await page.textContent('#repo-count'), (await rowNames(page)).includes('alice/oldapp')];
      const repo = (await page.goto(`${u}/u/alice/oldapp/`))?.status();
      const tag = (await page.goto(`${u}/u/alice/oldapp/tags/latest/`))?.status();
      return { explore, search, ns, repo, tag };
    };
    const hidden = { explore: false, search: ['1 repository', false], ns: ['1 repository', false], repo: 404, tag: 404 };
    const shown = { explore: true, search: ['2 repositories', true], ns: ['2 repositories', true], repo: 200, tag: 200 };
    assert.deepEqual(await visible(bob), hidden, 'another account');
    assert.deepEqual(await visible(anon), hidden, 'anonymous');
    assert.deepEqual(await visible(alice), shown, 'the owner');
    // a private repository answers exactly as a missing one
    await anon.goto(`${u}/u/alice/oldapp/`);
    const privateBody = await anon.textContent('main');
    await anon.goto(`${u}/u/alice/nothing-here/`);
    assert.equal(await anon.textContent('main'), privateBody);

    await alice.goto(`${u}/u/alice/oldapp/settings`);
    await alice.fill('#collab-name', BOB[0]);
    await alice.selectOption('#collab-access', 'read');
    await Promise.all([alice.waitForURL(/settings\?m=collab-added$/), alice.click('form[action$="/settings/collaborators"] button')]);
    assert.deepEqual(await alice.locator('#collaborators tbody td:first-child').allTextContents(), [BOB[0]]);
    assert.deepEqual(await visible(bob), shown, 'a read collaborator');
    assert.deepEqual(await visible(anon), hidden, 'anonymous, still');
    // reading is not administering
    assert.equal((await bob.goto(`${u}/u/alice/oldapp/settings`))?.status(), 403);
    await alice.goto(`${u}/u/alice/oldapp/settings`);
    await alice.check('input[name=access][value=public]');
    await Promise.all([alice.waitForURL(/settings\?m=saved$/), alice.click('form[action$="/settings/visibility"] button')]);
  });

  it('tag delete: gone from the page, from /v2/ tags and from v1', async () => {
    const alice = await newPage();
    await login(alice, u, ...ALICE);
    const token = await seeded.site.bearer(ALICE, 'repository:alice/newapp:pull,push');
    await pushV2Image(seeded.site, 'alice/newapp', 'old', token, v2Image('old', 1));
    await alice.goto(`${u}/u/alice/newapp/`);
    assert.deepEqual(await alice.locator('#tags tbody tr').evaluateAll((rs) => rs.map((r) => r.getAttribute('data-tag'))), ['1.0', 'old']);
    await alice.goto(`${u}/u/alice/newapp/settings`);
    alice.once('dialog', (d) => void d.accept());
    await Promise.all([alice.waitForURL(/settings\?m=tag-deleted$/), alice.click('#settings-tags tr[data-tag="old"] button')]);
    await alice.goto(`${u}/u/alice/newapp/`);
    assert.deepEqual(await alice.locator('#tags tbody tr').evaluateAll((rs) => rs.map((r) => r.getAttribute('data-tag'))), ['1.0']);
    const list = await seeded.site.v2('/v2/alice/newapp/tags/list', token);
    assert.deepEqual(list.json<{ tags: string[] }>().tags, ['1.0']);
    const t1 = (await request(u, '/v1/repositories/alice/newapp/images', { headers: { 'X-Docker-Token': 'true', Authorization: basic(...ALICE) } })).headers[
      'x-docker-token'
    ];
    assert.equal((await request(u, '/v1/repositories/alice/newapp/tags/old', { headers: { Authorization: `Token ${String(t1)}` } })).status, 404);
  });

  it('forms without their CSRF token, with a wrong one or from another origin are refused', async () => {
    const bob = await newPage();
    await login(bob, u, ...BOB);
    await bob.goto(`${u}/u/alice/newapp/`);
    // the page's own form, its token removed: the browser posts it, the server refuses
    await bob.evaluate(() => {
      document.querySelector('form[action$="/comments"] input[name=_csrf]')?.remove();
    });
    await bob.fill('#comment-body', 'no token');
    const [r] = await Promise.all([bob.waitForResponse((x) => x.request().method() === 'POST'), bob.click('form[action$="/comments"] button')]);
    assert.equal(r.status(), 403);
    assert.equal(await bob.textContent('main h1'), 'Form refused');
    // fetch from the page: no token, a wrong token, the right token from a foreign Origin header
    const post = (headers: Record<string, string>, body: string) =>
      bob.evaluate(
        async ([h, b]) =>
          (await fetch(location.pathname + 'star', { method: 'POST', headers: { 'Content-Type': 'application/x-www-form-urlencoded', ...h }, body: b })).status,
        [headers, body] as const,
      );
    const token = (await bob.getAttribute('meta[name=csrf-token]', 'content'))!;
    assert.equal(await post({}, 'star=1'), 403);
    assert.equal(await post({}, `star=1&_csrf=${'x'.repeat(token.length)}`), 403);
    // over plain HTTP with the session cookie and a foreign Origin (what another site's form sends)
    const cookie = (await bob.context().cookies()).map((c) => `${c.name}=${c.value}`).join('; ');
    const foreign = await request(u, '/u/alice/newapp/star', {
      method: 'POST',
      headers: { Cookie: cookie, Origin: 'http://evil.example', 'Content-Type': 'application/x-www-form-urlencoded' },
      body: `star=1&_csrf=${token}`,
    });
    assert.equal(foreign.status, 403);
    const same = await request(u, '/u/alice/newapp/star', {
      method: 'POST',
      headers: { Cookie: cookie, 'Content-Type': 'application/x-www-form-urlencoded' },
      body: `star=1&_csrf=${token}`,
    });
    assert.equal(same.status, 303);
    // an anonymous login form without the pre-session cookie's token
    const anon = await request(u, '/login', {
      method: 'POST',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
      body: 'username=alice&password=alicepw1',
    });
    assert.equal(anon.status, 403);
    const comments = await request(u, '/v1/comments/alice/newapp', { headers: { Authorization: basic(...BOB) } });
    assert.deepEqual(comments.json<{ items: unknown[] }>().items, []);
  });

  it('a password change ends the other sessions and the refresh tokens', async () => {
    const here = await newPage();
    await login(here, u, ...BOB);
    const there = await newPage();
    await login(there, u, ...BOB);
    const service = await seeded.site.v2Service();
    const form = (body: Record<string, string>) =>
      request(u, '/v2/token', { method: 'POST', headers: { 'Content-Type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(body).toString() });
    const issued = await form({ grant_type: 'password', username: BOB[0], password: BOB[1], access_type: 'offline', client_id: 'test', service });
    const refresh = issued.json<{ refresh_token: string }>().refresh_token;
    assert.equal((await form({ grant_type: 'refresh_token', refresh_token: refresh, client_id: 'test', service })).status, 200);
    await here.goto(`${u}/account`);
    await here.fill('#current', BOB[1]);
    await here.fill('#new-password', 'bobbypw2');
    await here.fill('#confirm-password', 'bobbypw2');
    await Promise.all([here.waitForURL(/account\?m=password-changed$/), here.click('form[action="/account/password"] button')]);
    assert.equal(await here.textContent('header .user a[href="/u/bobby/"]'), 'bobby');
    await there.goto(`${u}/account`);
    assert.match(there.url(), /\/login\?next=%2Faccount$/);
    assert.equal((await form({ grant_type: 'refresh_token', refresh_token: refresh, client_id: 'test', service })).status, 401);
    assert.equal((await request(u, '/v1/users/', { headers: { Authorization: basic(BOB[0], 'bobbypw2') } })).status, 200);
  });

  it('admin: deactivating an account ends its sessions; axe on the admin page', async () => {
    const root = await newPage();
    await login(root, u, ...ROOT);
    const carol = await newPage();
    await root.goto(`${u}/admin/users`);
    await assertAccessible(root, 'admin');
    assert.deepEqual(await root.locator('#users tbody tr').evaluateAll((rs) => rs.map((r) => r.getAttribute('data-user'))), [
      'alice',
      'bobby',
      'carol',
      'root',
    ]);
    await login(carol, u, 'alice', ALICE[1]);
    await Promise.all([root.waitForURL(/m=user-saved$/), root.click('#users tr[data-user="alice"] button')]);
    assert.equal(await root.textContent('#users tr[data-user="alice"] td:nth-child(3)'), 'inactive');
    await carol.goto(`${u}/account`);
    assert.match(carol.url(), /\/login/);
    assert.equal((await request(u, '/v1/users/', { headers: { Authorization: basic(...ALICE) } })).status, 403);
    await Promise.all([root.waitForURL(/m=user-saved$/), root.click('#users tr[data-user="alice"] button')]);
    // signed out, the admin page sends to the login form
    await carol.goto(`${u}/admin/users`);
    assert.match(carol.url(), /\/login\?next=%2Fadmin%2Fusers$/);
  });

  it('organizations: an account creates one, its owner adds a member; members see the member list, others do not', async () => {
    const alice = await newPage();
    await login(alice, u, ...ALICE);
    await alice.goto(`${u}/account`);
    await alice.fill('#org-name', 'acme');
    await Promise.all([alice.waitForURL(/\/u\/acme\/\?m=org-created$/), alice.click('form[action="/account/organizations"] button')]);
    assert.deepEqual(await alice.locator('[aria-labelledby=members-title] tbody td:first-child').allTextContents(), ['alice']);
    await alice.fill('#member-name', BOB[0]);
    await Promise.all([alice.waitForURL(/m=member-saved$/), alice.click('form[action="/orgs/acme/members"] button')]);
    assert.deepEqual(await alice.locator('[aria-labelledby=members-title] tbody td:nth-child(2)').allTextContents(), ['owner', 'member']);
    await assertAccessible(alice, 'organization');
    // the member may now push to acme/… (the same rules as the API)
    const token = await seeded.site.bearer([BOB[0], 'bobbypw2'], 'repository:acme/tool:pull,push');
    await pushV2Image(seeded.site, 'acme/tool', 'v1', token, v2Image('tool', 1));
    const anon = await newPage();
    await anon.goto(`${u}/u/acme/`);
    assert.equal(await anon.locator('[aria-labelledby=members-title]').count(), 0);
    assert.deepEqual(await rowNames(anon), ['acme/tool']);
    // the last owner stays
    const removeSelf = await alice.evaluate(async () => {
      const body = new URLSearchParams({ _csrf: document.querySelector<HTMLMetaElement>('meta[name=csrf-token]')!.content, username: 'alice' });
      return (await fetch('/orgs/acme/members/remove', { method: 'POST', body })).status;
    });
    assert.equal(removeSelf, 400);
  });

  it('repository delete (typed confirmation): gone from the pages, from search and from /v2/', async () => {
    const alice = await newPage();
    await login(alice, u, ...ALICE);
    await alice.goto(`${u}/u/alice/newapp/settings`);
    await alice.fill('#confirm-name', 'alice/wrong');
    const [bad] = await Promise.all([alice.waitForResponse((x) => x.request().method() === 'POST'), alice.click('form[action$="/settings/delete"] button')]);
    assert.equal(bad.status(), 400);
    await alice.goto(`${u}/u/alice/newapp/settings`);
    await alice.fill('#confirm-name', 'alice/newapp');
    await Promise.all([alice.waitForURL(/\/u\/alice\/\?m=repo-deleted$/), alice.click('form[action$="/settings/delete"] button')]);
    assert.equal(await alice.textContent('.flash'), 'Repository deleted.');
    assert.equal((await alice.goto(`${u}/u/alice/newapp/`))?.status(), 404);
    assert.deepEqual((await request(u, '/v1/search?q=newapp')).json<{ results: unknown[] }>().results, []);
    const token = await seeded.site.bearer(ALICE, 'repository:alice/newapp:pull');
    assert.equal((await seeded.site.v2('/v2/alice/newapp/tags/list', token)).status, 404);
  });
});
