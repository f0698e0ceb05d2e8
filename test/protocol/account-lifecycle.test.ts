import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { request } from '../helpers/http.js';
import { webSession } from '../helpers/web-session.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { pushV2Image, S2, sha, Site, v2Image, type Creds, type V2Image } from '../helpers/accounts.js';
import { findUserByName, removeUser, saveUser } from '../../src/db/users.js';
import { addMember, findOrganizationByName, removeOrganization, saveOrganization } from '../../src/db/organizations.js';

const HTML = { Accept: 'text/html' };

/**
 * Accounts and organizations over their lifetime (review of account and organization lifecycle):
 * what a name leaves behind when its account or organization is deleted, and who may take it.
 */
describe('account and organization lifecycle', () => {
  let s: TestServer;
  let site: Site;

  const session = (user: string, pw: string) => webSession(s.url, user, pw);

  const signup = (username: string, password: string) =>
    request(s.url, '/v1/users/', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ username, password, email: `${username}-${password}@example.net` }),
    });

  /** The web UI's signup form, as a browser posts it. */
  async function webSignup(username: string, password: string) {
    const form = await request(s.url, '/signup', { headers: HTML });
    const pre = String(form.headers['set-cookie']).split(';')[0]!;
    return request(s.url, '/signup', {
      method: 'POST',
      headers: { Cookie: pre, 'Content-Type': 'application/x-www-form-urlencoded', ...HTML },
      body: new URLSearchParams({ _csrf: pre.slice('lr_csrf='.length), username, email: `${username}-web@example.net`, password }).toString(),
    });
  }

  /** An organization created on the web UI's account page by `user`. */
  async function webOrg([user, pw]: readonly [string, string], name: string) {
    const sess = await session(user, pw);
    return request(s.url, '/account/organizations', {
      method: 'POST',
      headers: { Cookie: sess.cookie, 'Content-Type': 'application/x-www-form-urlencoded', ...HTML },
      body: new URLSearchParams({ _csrf: sess.csrf, name }).toString(),
    });
  }

  /** Blobs and a manifest pushed by digest only: storage holds them, the index has no record. */
  async function pushByDigest(name: string, c: Creds, img: V2Image): Promise<void> {
    const tok = await site.bearer(c, `repository:${name}:pull,push`);
    for (const b of [img.config, ...img.layers]) {
      const r = await site.v2(`/v2/${name}/blobs/uploads/?digest=${sha(b)}`, tok, {
        method: 'POST',
        body: b,
        headers: { 'Content-Type': 'application/octet-stream' },
      });
      assert.equal(r.status, 201, r.text);
    }
    const put = await site.v2(`/v2/${name}/manifests/${img.digest}`, tok, { method: 'PUT', body: img.manifest, headers: { 'Content-Type': S2 } });
    assert.equal(put.status, 201, put.text);
    assert.equal((await s.db!('repositories').where({ namespace: name.split('/')[0] })).length, 0, 'the index keeps no record of it');
  }

  /** What `c` reads of the image in `name` over v2: manifest and config statuses. */
  async function reads(name: string, c: Creds, img: V2Image): Promise<[number, number]> {
    const t = await site.bearer(c, `repository:${name}:pull`);
    const m = await site.v2(`/v2/${name}/manifests/${img.digest}`, t, { headers: { Accept: S2 } });
    const b = await site.v2(`/v2/${name}/blobs/${sha(img.config)}`, t);
    return [m.status, b.status];
  }

  before(async () => {
    s = await startTestServer({ v2: true, storage_delete: true, bcrypt_cost: 4, token_cache_ttl: 0, signup: true, signup_active: true });
    site = new Site(s.url, s.url);
    for (const u of ['alice', 'olga', 'mallory']) {
      await saveUser(s.db!, { username: u, email: `${u}@example.com`, password: `${u}pw1`, active: true }, { cost: 4 });
    }
  });
  after(async () => {
    await s?.stop();
  });

  it("a deleted account's name is not given to the next signup: its untagged content stays out of reach", async () => {
    const ALICE: Creds = ['alice', 'alicepw1'];
    const img = v2Image('alice-vault');
    await pushByDigest('alice/vault', ALICE, img);
    assert.deepEqual(await reads('alice/vault', ALICE, img), [200, 200], 'alice reads her own');
    assert.deepEqual(await reads('alice/vault', ['mallory', 'mallorypw1'], img), [401, 401], 'nobody else does');
    // the operator deletes the account (`legacy-registry user rm alice`)
    assert.ok(await removeUser(s.db!, (await findUserByName(s.db!, 'alice'))!.id));
    // before: 201, and the new "alice" read the old one's manifest and blobs (200, 200)
    const r = await signup('alice', 'mallorypw2');
    assert.equal(r.status, 400, r.text);
    assert.equal(r.text, '"Username or email already exists"');
    assert.equal(await findUserByName(s.db!, 'alice'), undefined);
    // and the web UI's signup form says the same
    const w = await webSignup('alice', 'mallorypw2');
    assert.equal(w.status, 400, w.text.slice(0, 200));
    assert.equal(await findUserByName(s.db!, 'alice'), undefined);
  });

  it("nor does an organization created with a deleted account's name inherit it", async () => {
    const OLGA: Creds = ['olga', 'olgapw1'];
    const img = v2Image('olga-vault');
    await pushByDigest('olga/vault', OLGA, img);
    assert.ok(await removeUser(s.db!, (await findUserByName(s.db!, 'olga'))!.id));
    const mallory = await session('mallory', 'mallorypw1');
    const r = await request(s.url, '/account/organizations', {
      method: 'POST',
      headers: { Cookie: mallory.cookie, 'Content-Type': 'application/x-www-form-urlencoded', ...HTML },
      body: new URLSearchParams({ _csrf: mallory.csrf, name: 'olga' }).toString(),
    });
    // before: 303 to /u/olga/, mallory its owner, reading olga/vault
    assert.equal(r.status, 409, r.text.slice(0, 200));
    assert.equal(await findOrganizationByName(s.db!, 'olga'), undefined);
    assert.deepEqual(await reads('olga/vault', ['mallory', 'mallorypw1'], img), [401, 401]);
  });

  it("a deleted organization's name is retired too", async () => {
    const team = (await saveOrganization(s.db!, { name: 'oldteam' }))!;
    const keeper = (await saveUser(s.db!, { username: 'keeper', email: 'keeper@example.com', password: 'keeperpw1', active: true }, { cost: 4 }))!;
    await addMember(s.db!, team.id, keeper.id, 'owner');
    const img = v2Image('oldteam-vault');
    await pushByDigest('oldteam/vault', ['keeper', 'keeperpw1'], img);
    assert.ok(await removeOrganization(s.db!, team.id));
    assert.equal((await signup('oldteam', 'mallorypw2')).status, 400);
    const sess = await session('mallory', 'mallorypw1');
    const r = await request(s.url, '/account/organizations', {
      method: 'POST',
      headers: { Cookie: sess.cookie, 'Content-Type': 'application/x-www-form-urlencoded', ...HTML },
      body: new URLSearchParams({ _csrf: sess.csrf, name: 'oldteam' }).toString(),
    });
    assert.equal(r.status, 409);
    assert.deepEqual(await reads('oldteam/vault', ['mallory', 'mallorypw1'], img), [401, 401]);
  });

  it("a deleted account's v1 token and web session, and a removed member's, stop at once", async () => {
    const dora = (await saveUser(s.db!, { username: 'dora', email: 'dora@example.com', password: 'dorapw1', active: true }, { cost: 4 }))!;
    const eve = (await saveUser(s.db!, { username: 'evem', email: 'evem@example.com', password: 'evempw1', active: true }, { cost: 4 }))!;
    const org = (await saveOrganization(s.db!, { name: 'crew' }))!;
    await addMember(s.db!, org.id, dora.id, 'owner');
    await addMember(s.db!, org.id, eve.id, 'member');
    const DORA: Creds = ['dora', 'dorapw1'];
    const EVE: Creds = ['evem', 'evempw1'];
    await pushV2Image(site, 'crew/priv', 'latest', await site.bearer(DORA, 'repository:crew/priv:pull,push'), v2Image('crew'));
    await site.setAccess('crew/priv', DORA, 'private');
    const eveToken = await site.readToken('crew/priv', EVE);
    const doraToken = await site.readToken('crew/priv', DORA);
    assert.ok(eveToken && doraToken);
    const eveWeb = await session('evem', 'evempw1');
    const doraWeb = await session('dora', 'dorapw1');
    const page = async (cookie: string) => (await request(s.url, '/u/crew/priv/', { headers: { ...HTML, Cookie: cookie } })).status;
    assert.equal(await page(eveWeb.cookie), 200);
    assert.equal((await site.regGet('/v1/repositories/crew/priv/tags', eveToken)).status, 200);
    // eve leaves the organization (an owner's form), dora's account is deleted
    const removed = await request(s.url, '/orgs/crew/members/remove', {
      method: 'POST',
      headers: { Cookie: doraWeb.cookie, 'Content-Type': 'application/x-www-form-urlencoded', ...HTML },
      body: new URLSearchParams({ _csrf: doraWeb.csrf, username: 'evem' }).toString(),
    });
    assert.equal(removed.status, 303);
    assert.equal(await page(eveWeb.cookie), 404);
    assert.equal((await site.regGet('/v1/repositories/crew/priv/tags', eveToken)).status, 401);
    assert.equal(await site.bearer(EVE, 'repository:crew/priv:pull').then((t) => site.v2('/v2/crew/priv/tags/list', t).then((r) => r.status)), 401);
    // dora is crew's only owner: deleted all the same, on purpose (the organization is left without one)
    assert.ok(await removeUser(s.db!, dora.id, { orphanOrganizations: true }));
    assert.equal((await site.regGet('/v1/repositories/crew/priv/tags', doraToken)).status, 401);
    const gone = await request(s.url, '/account', { headers: { ...HTML, Cookie: doraWeb.cookie } });
    assert.equal(gone.status, 303, 'signed out: the session went with the account');
    assert.match(String(gone.headers.location), /^\/login/);
  });

  it('a namespace an admin pushed into through v2 (never an account) is taken: no signup or organization gets its content', async () => {
    await saveUser(s.db!, { username: 'rooty', email: 'rooty@example.com', password: 'rootypw1', active: true, admin: true }, { cost: 4 });
    const ROOTY: Creds = ['rooty', 'rootypw1'];
    const MALLORY = ['mallory', 'mallorypw1'] as const;
    const img = v2Image('ghost-app');
    await pushV2Image(site, 'ghost/app', 'latest', await site.bearer(ROOTY, 'repository:ghost/app:pull,push'), img);
    await site.setAccess('ghost/app', ROOTY, 'private');
    assert.ok(await s.db!('repositories').where({ namespace: 'ghost', name: 'app' }).first('id'), 'the index learnt of the push');
    // v1 signup answers as for an existing account (what 1.x clients take as "log in instead")
    const existing = await signup('mallory', 'mallorypw1');
    const r = await signup('ghost', 'mallorypw2');
    assert.equal(r.status, existing.status, r.text);
    assert.equal(r.text, existing.text);
    assert.equal(r.text, '"Username or email already exists"');
    assert.equal((await webSignup('ghost', 'mallorypw2')).status, 400);
    assert.equal((await webOrg(MALLORY, 'ghost')).status, 409);
    assert.equal(await findUserByName(s.db!, 'ghost'), undefined);
    assert.equal(await findOrganizationByName(s.db!, 'ghost'), undefined);
    // so no new account reads it; its admin does
    assert.deepEqual(await reads('ghost/app', MALLORY, img), [401, 401]);
    assert.equal((await signup('ghostfan', 'ghostfanpw')).status, 201);
    assert.deepEqual(await reads('ghost/app', ['ghostfan', 'ghostfanpw'], img), [401, 401]);
    assert.deepEqual(await reads('ghost/app', ROOTY, img), [200, 200]);
  });

  it('a namespace an admin pushed into by digest only (no tag, no record in the index) is taken too', async () => {
    const ROOTY: Creds = ['rooty', 'rootypw1'];
    const img = v2Image('phantom-app');
    const token = await site.bearer(ROOTY, 'repository:phantom/app:pull,push');
    // blobs, then the manifest by its digest: no tag, so nothing for the index to learn
    await pushV2Image(site, 'phantom/app', img.digest, token, img);
    assert.equal(await s.db!('repositories').where({ namespace: 'phantom' }).first('id'), undefined, 'the index has no record of it');
    assert.deepEqual(await reads('phantom/app', ROOTY, img), [200, 200]);
    const r = await signup('phantom', 'phantompw1');
    assert.equal(r.status, 400, r.text);
    assert.equal(r.text, '"Username or email already exists"');
    assert.equal((await webSignup('phantom', 'phantompw1')).status, 400);
    assert.equal((await webOrg(['mallory', 'mallorypw1'], 'phantom')).status, 409);
    assert.equal(await findUserByName(s.db!, 'phantom'), undefined);
    assert.equal(await findOrganizationByName(s.db!, 'phantom'), undefined);
    // a push into the admin's own namespace, or an account's, holds nothing
    await site.bearer(ROOTY, 'repository:rooty/own:pull,push');
    await site.bearer(ROOTY, 'repository:mallory/other:pull,push');
    assert.equal(await s.db!('retired_namespaces').whereIn('name', ['rooty', 'mallory']).first('name'), undefined);
  });

  it('names never used stay free', async () => {
    assert.equal((await signup('newcomer', 'newcomerpw')).status, 201);
  });
});
