import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { request } from '../helpers/http.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { cleanup } from '../helpers/counting-proxy.js';
import { pushV2 } from '../helpers/v2-client.js';
import { Site, type Creds } from '../helpers/accounts.js';
import { findUserByName, saveUser } from '../../src/db/users.js';
import { addMember, saveOrganization } from '../../src/db/organizations.js';

const S2 = 'application/vnd.docker.distribution.manifest.v2+json';
const ACCEPT = { Accept: S2 };
const HTML = { Accept: 'text/html' };

/**
 * A mirrored name (mirror.upstreams[].prefix) has no record in the index: the index's rule lets
 * only whoever owns its namespace read it (an account or organization of that name; admins). The
 * operator's upstream credentials may fetch private images there. Nobody may make that namespace
 * theirs by signing up or creating an organization after the fact (as for a namespace that holds
 * repositories): it would open every cached image, and everything the mirror's credentials fetch.
 */
describe('mirrored namespaces cannot be taken by signup or a new organization', { timeout: 120_000 }, () => {
  let upstream: TestServer;
  let mirror: TestServer;
  let site: Site;
  const MALLORY: Creds = ['mallory', 'mallorypw'];

  before(async () => {
    upstream = await startTestServer({ standalone: true, v2: true });
    await pushV2(upstream.url, 'corp/secret', 'v1');
    mirror = await startTestServer({
      v2: true,
      bcrypt_cost: 4,
      token_cache_ttl: 0,
      mirror: {
        upstreams: [
          { prefix: 'hub/', url: upstream.url },
          { prefix: 'cache/', url: upstream.url },
          { prefix: 'ghcr/team/', url: upstream.url },
        ],
        ttl: 3600,
      },
    });
    site = new Site(mirror.url, mirror.url);
    await saveUser(mirror.db!, { username: 'mallory', email: 'mallory@example.com', password: 'mallorypw', active: true }, { cost: 4 });
  });
  after(() =>
    cleanup(
      () => mirror?.stop(),
      () => upstream?.stop(),
    ),
  );

  const pull = async (c: Creds, name: string): Promise<number> => {
    const token = await site.bearer(c, `repository:${name}:pull`);
    return (await site.v2(`/v2/${name}/manifests/v1`, token, { headers: ACCEPT })).status;
  };

  /** A form post by a signed-in account (login first, then the page's form token). */
  async function asMallory(path: string, fields: Record<string, string>) {
    const page = await request(mirror.url, '/login', { headers: HTML });
    const pre = String(page.headers['set-cookie']).split(';')[0]!;
    const login = await request(mirror.url, '/login', {
      method: 'POST',
      headers: { Cookie: pre, 'Content-Type': 'application/x-www-form-urlencoded' },
      body: `_csrf=${pre.slice('lr_csrf='.length)}&username=mallory&password=mallorypw`,
    });
    const cookie = String(login.headers['set-cookie']).split(';')[0]!;
    const account = await request(mirror.url, '/account', { headers: { Cookie: cookie, ...HTML } });
    const csrf = /<meta name="csrf-token" content="([^"]+)"/.exec(account.text)![1]!;
    return request(mirror.url, path, {
      method: 'POST',
      headers: { Cookie: cookie, 'Content-Type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ _csrf: csrf, ...fields }).toString(),
    });
  }

  it('an organization named after a mirror prefix is refused, and its owner would read nothing more', async () => {
    assert.equal(await pull(MALLORY, 'hub/corp/secret'), 401, 'no record: not readable by an account of another namespace');
    const r = await asMallory('/account/organizations', { name: 'hub' });
    // (before the fix: the organization was made, and its owner pulled the upstream's image)
    assert.equal(await pull(MALLORY, 'hub/corp/secret'), 401, `after the attempt (org answer ${r.status})`);
    assert.equal(r.status, 409, `org "hub": ${r.status} ${r.text.slice(0, 200)}`);
    assert.match(r.text, /That name is taken/);
    // a deeper prefix reserves its first component (the index's namespace of every name under it)
    assert.equal((await asMallory('/account/organizations', { name: 'ghcr' })).status, 409);
    assert.equal(await pull(MALLORY, 'ghcr/team/corp/secret'), 401);
  });

  it('an organization is refused the names signup refuses (admin, root, v1, v2, users, …)', async () => {
    for (const name of ['admin', 'root', 'v2', 'users', 'library']) {
      const r = await asMallory('/account/organizations', { name });
      assert.equal(r.status, 409, `org "${name}": ${r.status}`);
    }
    // an ordinary name still works
    assert.equal((await asMallory('/account/organizations', { name: 'mallorys_team' })).status < 400, true);
  });

  it('signing up as a mirror prefix is refused (v1 /v1/users/ and the web form)', async () => {
    const v1 = await request(mirror.url, '/v1/users/', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ username: 'cache', email: 'cache@example.com', password: 'cachepw1' }),
    });
    // (before the fix: 201, and the new account pulled every name under cache/)
    assert.equal(await pull(['cache', 'cachepw1'], 'cache/corp/secret').catch(() => 401), 401, `signup answered ${v1.status}`);
    assert.notEqual(v1.status, 201, `signup "cache": ${v1.status} ${v1.text}`);
    const page = await request(mirror.url, '/signup', { headers: HTML });
    const pre = String(page.headers['set-cookie']).split(';')[0]!;
    const web = await request(mirror.url, '/signup', {
      method: 'POST',
      headers: { Cookie: pre, 'Content-Type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ _csrf: pre.slice('lr_csrf='.length), username: 'cache', email: 'cache2@example.com', password: 'cachepw1' }).toString(),
    });
    assert.equal(web.status, 400, `web signup "cache": ${web.status}`);
    assert.equal(await pull(['cache', 'cachepw1'], 'cache/corp/secret').catch(() => 401), 401);
  });

  it("the operator's own organization of that name still reads it (made with the CLI or the database)", async () => {
    await saveUser(mirror.db!, { username: 'opsuser', email: 'ops@example.com', password: 'opspw123', active: true }, { cost: 4 });
    const org = await saveOrganization(mirror.db!, { name: 'hub' });
    await addMember(mirror.db!, org!.id, (await findUserByName(mirror.db!, 'opsuser'))!.id, 'member');
    assert.equal(await pull(['opsuser', 'opspw123'], 'hub/corp/secret'), 200);
    assert.equal(await pull(MALLORY, 'hub/corp/secret'), 401);
  });
});
