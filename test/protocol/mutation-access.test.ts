import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { decodeJwt } from 'jose';
import { request, type Response } from '../helpers/http.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { DOCKER_UA, makeImage, type TestImage } from '../helpers/v1-client.js';
import { accountToken, basic, Site, type Creds } from '../helpers/accounts.js';
import { findUserByName, saveUser } from '../../src/db/users.js';
import { addCollaborator, findRepository, removeCollaborator, saveRepository } from '../../src/db/repositories.js';
import { addMember, saveOrganization } from '../../src/db/organizations.js';
import { V1TokenSigner } from '../../src/auth/v1-token.js';

/**
 * Issue 17 (mutation testing, group "access"): the decisions of index/access.ts (rightsOn) and of the
 * registry's token mode (auth/registry-token.ts: parseTokenHeader, TokenAuth.authorize and the index's
 * answer), each reached through HTTP, each asserted exactly, so that a changed condition fails a test.
 * Fast on purpose (one server, few requests): Stryker runs this file once per mutant.
 */

const SECRET = 'mutation-access-secret';
type Actor = 'root' | 'alice' | 'carl' | 'wendy' | 'otto' | 'oscar' | 'mona' | 'anonymous';
const PW: Record<Exclude<Actor, 'anonymous'>, string> = {
  root: 'rootpw',
  alice: 'alicepw',
  carl: 'carlpw',
  wendy: 'wendypw',
  otto: 'ottopw',
  oscar: 'oscarpw',
  mona: 'monapw',
};
const creds = (a: Actor): Creds => (a === 'anonymous' ? undefined : [a, PW[a]]);

const REPOS = ['alice/pub', 'alice/priv', 'alice/none', 'team/pub', 'team/priv', 'team/none', 'library/base', 'library/hidden'] as const;
type Repo = (typeof REPOS)[number];

/**
 * The rights each actor has, written out by hand from the rules (admins everything; library/ is
 * admins' only; own namespace everything; organization owner everything, member read+write;
 * collaborators read or read+write; public read for everyone) and the fixtures below:
 * carl reads alice/priv and writes team/priv as a collaborator, wendy writes alice/priv and holds a
 * (useless) write collaboration on library/hidden. "r", "w", "d" = pull, push, delete.
 */
const EXPECTED: Record<Actor, Record<Repo, string>> = {
  root: {
    'alice/pub': 'rwd',
    'alice/priv': 'rwd',
    'alice/none': 'rwd',
    'team/pub': 'rwd',
    'team/priv': 'rwd',
    'team/none': 'rwd',
    'library/base': 'rwd',
    'library/hidden': 'rwd',
  },
  alice: {
    'alice/pub': 'rwd',
    'alice/priv': 'rwd',
    'alice/none': 'rwd',
    'team/pub': 'r',
    'team/priv': '',
    'team/none': '',
    'library/base': 'r',
    'library/hidden': '',
  },
  carl: {
    'alice/pub': 'r',
    'alice/priv': 'r',
    'alice/none': '',
    'team/pub': 'r',
    'team/priv': 'rw',
    'team/none': '',
    'library/base': 'r',
    'library/hidden': '',
  },
  wendy: {
    'alice/pub': 'r',
    'alice/priv': 'rw',
    'alice/none': '',
    'team/pub': 'r',
    'team/priv': '',
    'team/none': '',
    'library/base': 'r',
    'library/hidden': '',
  },
  otto: { 'alice/pub': 'r', 'alice/priv': '', 'alice/none': '', 'team/pub': 'r', 'team/priv': '', 'team/none': '', 'library/base': 'r', 'library/hidden': '' },
  oscar: {
    'alice/pub': 'r',
    'alice/priv': '',
    'alice/none': '',
    'team/pub': 'rwd',
    'team/priv': 'rwd',
    'team/none': 'rwd',
    'library/base': 'r',
    'library/hidden': '',
  },
  mona: {
    'alice/pub': 'r',
    'alice/priv': '',
    'alice/none': '',
    'team/pub': 'rw',
    'team/priv': 'rw',
    'team/none': 'rw',
    'library/base': 'r',
    'library/hidden': '',
  },
  anonymous: {
    'alice/pub': 'r',
    'alice/priv': '',
    'alice/none': '',
    'team/pub': 'r',
    'team/priv': '',
    'team/none': '',
    'library/base': 'r',
    'library/hidden': '',
  },
};

const letters = (actions: readonly string[]): string => ['pull', 'push', 'delete'].map((a, i) => (actions.includes(a) ? 'rwd'[i] : '')).join('');

describe('mutation group access: rightsOn through the token service, TokenAuth through the v1 registry', () => {
  let s: TestServer;
  let site: Site;
  let signer: V1TokenSigner;
  let img: TestImage;
  let aliceId = 0;

  before(async () => {
    s = await startTestServer({ v2: true, bcrypt_cost: 4, token_cache_ttl: 0, token_secret: SECRET });
    site = new Site(s.url, s.url);
    signer = new V1TokenSigner(Buffer.from(SECRET, 'utf8'), 3600);
    const db = s.db!;
    for (const [u, p] of Object.entries(PW))
      await saveUser(db, { username: u, email: `${u}@example.com`, password: p, active: true, admin: u === 'root' }, { cost: 4 });
    const id = async (u: string) => (await findUserByName(db, u))!.id;
    aliceId = await id('alice');
    const org = (await saveOrganization(db, { name: 'team' }))!;
    await addMember(db, org.id, await id('oscar'), 'owner');
    await addMember(db, org.id, await id('mona'), 'member');
    const repo = async (ns: string, name: string, priv: boolean, owner: string) =>
      (await saveRepository(db, { namespace: ns, name, private: priv, ownerId: await id(owner) })).repository;
    await repo('alice', 'pub', false, 'alice');
    const alicePriv = await repo('alice', 'priv', true, 'alice');
    await repo('team', 'pub', false, 'oscar');
    const teamPriv = await repo('team', 'priv', true, 'oscar');
    await repo('library', 'base', false, 'root');
    const hidden = await repo('library', 'hidden', true, 'root');
    await addCollaborator(db, alicePriv.id, await id('carl'), 'read');
    await addCollaborator(db, alicePriv.id, await id('wendy'), 'write');
    await addCollaborator(db, teamPriv.id, await id('carl'), 'write');
    await addCollaborator(db, hidden.id, await id('wendy'), 'write');
    img = makeImage();
    await site.pushV1('alice/priv', creds('alice'), [img]);
    await site.setAccess('alice/priv', creds('alice'), 'private');
  });
  after(async () => {
    await s?.stop();
  });

  it('the token service grants each actor exactly its rights on each repository (rightsOn)', async () => {
    const service = await site.v2Service();
    const seen: Record<string, Record<string, string>> = {};
    for (const actor of Object.keys(EXPECTED) as Actor[]) {
      const q = new URLSearchParams({ service });
      for (const r of REPOS) q.append('scope', `repository:${r}:pull,push,delete`);
      const c = creds(actor);
      const res = await request(s.url, `/v2/token?${q}`, { headers: c ? { Authorization: basic(c[0], c[1]) } : {} });
      assert.equal(res.status, 200, `${actor}: ${res.text}`);
      const access = (decodeJwt(res.json<{ token: string }>().token).access ?? []) as { type: string; name: string; actions: string[] }[];
      seen[actor] = Object.fromEntries(REPOS.map((r) => [r, letters(access.find((a) => a.type === 'repository' && a.name === r)?.actions ?? [])]));
    }
    assert.deepEqual(seen, EXPECTED);
  });

  it('v1 index: a write is refused (403) to a reader, a delete to a writer; the owner may both', async () => {
    const claim = (c: Creds) => site.claimRaw('alice/priv', c, [img.id]);
    assert.equal((await claim(creds('carl'))).status, 403);
    assert.equal((await claim(creds('wendy'))).status, 200);
    const del = (c: Creds) => request(s.url, '/v1/repositories/team/priv/', { method: 'DELETE', headers: { Authorization: basic(c![0], c![1]) } });
    assert.equal((await del(creds('mona'))).status, 403);
    assert.equal((await del(creds('carl'))).status, 403);
  });

  const reg = (method: string, path: string, authorization: string | undefined, body?: string): Promise<Response> =>
    request(s.url, path, {
      method,
      headers: { 'User-Agent': DOCKER_UA, 'Content-Type': 'application/json', ...(authorization !== undefined ? { Authorization: authorization } : {}) },
      ...(body !== undefined ? { body } : {}),
    });

  it('registry: a read token may GET only, a write token PUT and GET, a delete token DELETE only', async () => {
    const read = `Token ${(await site.readToken('alice/priv', creds('alice')))!}`;
    const json = `/v1/images/${img.id}/json`;
    const tags = '/v1/repositories/alice/priv/tags';
    assert.equal((await reg('GET', json, read)).status, 200);
    assert.equal((await reg('GET', tags, read)).status, 200);
    assert.equal((await reg('HEAD', json, read)).status, 401, 'HEAD is not in a read token (spec §4.2)');
    assert.equal((await reg('PUT', `${tags}/other`, read, JSON.stringify(img.id))).status, 401);
    assert.equal((await reg('DELETE', `${tags}/latest`, read)).status, 401);

    const write = `Token ${await site.claim('alice/priv', creds('alice'), [img.id])}`;
    assert.equal((await reg('GET', json, write)).status, 200, 'a push probes json with its write token');
    const put = await reg('PUT', `${tags}/second`, write, JSON.stringify(img.id));
    assert.equal(put.status, 200, put.text);
    assert.equal((await reg('DELETE', `${tags}/second`, write)).status, 401);

    const del = `Token ${await accountToken(s.db!, signer, 'alice/priv', 'delete', aliceId)}`;
    assert.equal((await reg('GET', json, del)).status, 401);
    assert.equal((await reg('PUT', `${tags}/third`, del, JSON.stringify(img.id))).status, 401);
    const d = await reg('DELETE', `${tags}/second`, del);
    assert.equal(d.status, 200, d.text);
    assert.equal((await reg('GET', `${tags}/second`, read)).status, 404);
  });

  it('registry: the token names the repository; its header must be a Token one, whole, with a repository and an access', async () => {
    const token = await accountToken(s.db!, signer, 'alice/priv', 'read', aliceId);
    const tags = '/v1/repositories/alice/priv/tags';
    assert.equal((await reg('GET', tags, `Token ${token}`)).status, 200);
    assert.equal((await reg('GET', tags, `token ${token}`)).status, 200, 'the prefix is case-insensitive');
    assert.equal((await reg('GET', tags, `Token Token ${token}`)).status, 200, 'a doubled prefix is tolerated (Q9)');
    assert.equal((await reg('GET', '/v1/repositories/alice/pub/tags', `Token ${token}`)).status, 401, 'another repository');
    assert.equal(
      (await reg('GET', tags, `Token ${await accountToken(s.db!, signer, 'alice/pub', 'read', aliceId)}`)).status,
      401,
      'a token of another repository',
    );
    assert.equal((await reg('GET', tags, `Tokenized ${token}`)).status, 401, 'the value must start with the word Token');
    assert.equal((await reg('GET', tags, `Bearer ${token}`)).status, 401);
    assert.equal((await reg('GET', tags, token)).status, 401, 'no prefix');
    assert.equal((await reg('GET', tags, undefined)).status, 401);
    const noRepo = token.replace(/,repository="[^"]*"/, '');
    assert.equal((await reg('GET', tags, `Token ${noRepo}`)).status, 401);
    for (const repo of ['Alice/Priv', 'a b/c', '../x']) {
      const bad = await reg('GET', `/v1/images/${img.id}/json`, `Token signature=1.2.x.y,repository="${repo}",access=read`);
      assert.equal(bad.status, 401, `a token naming ${repo}: ${bad.status} ${bad.text}`);
      assert.equal(bad.text, '{"error": "Requires authorization"}');
    }
    const noAccess = token.replace(/,access=\w+/, '');
    assert.equal((await reg('GET', tags, `Token ${noAccess}`)).status, 401);
    // the first of a repeated key counts, on the registry as on the index
    assert.equal((await reg('GET', tags, `Token ${token},repository="alice/pub"`)).status, 200);
    const r = await reg('GET', tags, `Token ${token.replace('repository="alice/priv"', 'repository="alice/pub"')}`);
    assert.equal(r.status, 401);
    assert.equal(r.headers['www-authenticate'], 'Token');
    assert.equal(r.text, '{"error": "Requires authorization"}');
  });

  it('registry: an image route with a token is bounded by the ids the index lists (R4)', async () => {
    const write = `Token ${await site.claim('alice/priv', creds('alice'), [img.id])}`;
    const other = makeImage();
    const r = await reg('PUT', `/v1/images/${other.id}/json`, write, other.json.toString());
    assert.equal(r.status, 400, r.text);
  });
});

describe('mutation group access: what a write token brings besides the method check', () => {
  let s: TestServer;
  let site: Site;
  let img: TestImage;
  before(async () => {
    // validations cached for a minute: a publishing write must still ask the index again
    s = await startTestServer({ v2: true, bcrypt_cost: 4, token_cache_ttl: 60 });
    site = new Site(s.url, s.url);
    for (const u of ['alice', 'wendy']) await saveUser(s.db!, { username: u, email: `${u}@example.com`, password: `${u}pw`, active: true }, { cost: 4 });
    img = makeImage();
    await site.pushV1('alice/app', ['alice', 'alicepw'], [img]);
  });
  after(async () => {
    await s?.stop();
  });

  it('a write token links an image its holder already has in another repository (409 exists) instead of taking it again', async () => {
    const token = await site.claim('alice/other', ['alice', 'alicepw'], [img.id]);
    const r = await request(s.url, `/v1/images/${img.id}/json`, {
      method: 'PUT',
      headers: { Authorization: `Token ${token}`, 'Content-Type': 'application/json', 'User-Agent': DOCKER_UA },
      body: img.json,
    });
    assert.equal(r.status, 409, r.text);
    assert.equal(r.text, '{"error": "Image already exists"}');
    const got = await request(s.url, `/v1/images/${img.id}/json`, { headers: { Authorization: `Token ${token}` } });
    assert.equal(got.status, 200, got.text);
    assert.ok(got.body.equals(img.json));
  });

  it('a tag write asks the index again (confirm), past a cached validation: revoked rights refuse it', async () => {
    const repo = (await findRepository(s.db!, 'alice', 'app'))!;
    const wendy = (await findUserByName(s.db!, 'wendy'))!;
    await addCollaborator(s.db!, repo.id, wendy.id, 'write');
    const token = `Token ${await site.claim('alice/app', ['wendy', 'wendypw'], [img.id])}`;
    const put = (tag: string) =>
      request(s.url, `/v1/repositories/alice/app/tags/${tag}`, {
        method: 'PUT',
        headers: { Authorization: token, 'Content-Type': 'application/json', 'User-Agent': DOCKER_UA },
        body: JSON.stringify(img.id),
      });
    assert.equal((await put('before')).status, 200, 'granted: the validation is now cached');
    await removeCollaborator(s.db!, repo.id, wendy.id);
    const r = await put('after');
    assert.equal(r.status, 401, r.text);
    assert.equal(
      (
        await request(s.url, '/v1/repositories/alice/app/tags/after', {
          headers: { Authorization: `Token ${(await site.readToken('alice/app', ['alice', 'alicepw']))!}` },
        })
      ).status,
      404,
    );
  });
});

/** A stand-in index answering the registry's validation call with whatever the test chose. */
class FakeIndex {
  status = 200;
  body = '[]';
  calls = 0;
  private server: Server | undefined;
  url = '';
  async up(): Promise<void> {
    this.server = createServer((req, res) => {
      this.calls++;
      req.resume();
      res.writeHead(this.status, { 'Content-Type': 'application/json' });
      res.end(this.body);
    });
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }
  async down(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise<void>((resolve) => this.server?.close(() => resolve()));
  }
}

describe('mutation group access: a split registry believes only a well-formed 200 from its index', () => {
  let idx: FakeIndex;
  let r: TestServer;
  const id = 'a'.repeat(64);
  const tags = '/v1/repositories/alice/app/tags';
  const token = 'Token signature=1.2.x.y,repository="alice/app",access=read';
  before(async () => {
    idx = new FakeIndex();
    await idx.up();
    r = await startTestServer({ standalone: false, index_endpoint: idx.url, token_cache_ttl: 0 }, { role: 'registry' });
  });
  after(async () => {
    await r?.stop();
    await idx?.down();
  });

  const get = (path: string) => request(r.url, path, { headers: { Authorization: token } });

  it('200 with a list of {id} is valid (then 404: no such tags); anything else is 401, never 500', async () => {
    idx.status = 200;
    idx.body = JSON.stringify([{ id }]);
    const valid = await get(tags);
    assert.equal(valid.status, 404, 'valid: past the authorization, the registry has no such repository');
    assert.equal(valid.text, '{"error": "Repository not found"}');
    for (const [status, body] of [
      [401, '[]'],
      [403, '[]'],
      [200, '{"id": "x"}'],
      [200, 'not json'],
      [200, '[{"id": 1}]'],
      [200, '[null]'],
      [200, '["abc"]'],
    ] as const) {
      idx.status = status;
      idx.body = body;
      const res = await get(tags);
      assert.equal(res.status, 401, `${status} ${body}: ${res.status} ${res.text}`);
      assert.equal(res.headers['www-authenticate'], 'Token');
    }
  });

  it('the token is sent to the index for the repository it names, and a write token is bounded by the listed ids', async () => {
    idx.status = 200;
    idx.body = JSON.stringify([{ id }]);
    const before = idx.calls;
    const write = 'Token signature=1.2.x.y,repository="alice/app",access=write';
    const other = 'b'.repeat(64);
    const refused = await request(r.url, `/v1/images/${other}/json`, {
      method: 'PUT',
      headers: { Authorization: write, 'Content-Type': 'application/json' },
      body: JSON.stringify({ id: other }),
    });
    assert.equal(refused.status, 400, refused.text);
    const ok = await request(r.url, `/v1/images/${id}/json`, {
      method: 'PUT',
      headers: { Authorization: write, 'Content-Type': 'application/json' },
      body: JSON.stringify({ id }),
    });
    assert.equal(ok.status, 200, ok.text);
    assert.ok(idx.calls > before);
  });
});
