import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { PassThrough } from 'node:stream';
import { decodeJwt } from 'jose';
import { DOCKER_UA, makeImage, pushImage } from '../helpers/v1-client.js';
import { request } from '../helpers/http.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { basic, pushV2Image, sha, Site, v2Image, type Creds } from '../helpers/accounts.js';
import { findUserByName, saveUser } from '../../src/db/users.js';
import { addCollaborator, findRepository } from '../../src/db/repositories.js';

const ALICE: Creds = ['alice', 'alicepw'];
const BOB: Creds = ['bob', 'bobpw'];
const ROOT: Creds = ['root', 'rootpw'];

const code = (r: { json<T>(): T }): string | undefined => r.json<{ errors?: { code: string }[] }>().errors?.[0]?.code;

/**
 * docs/security.md: "A deleted repository is gone for everyone at once … its stored content is
 * removed". Work begun on a repository before it was deleted must not finish after the delete and
 * leave content under its name (for whoever gets the name next).
 */
describe('repository deletion against work in flight', () => {
  let s: TestServer;
  let site: Site;

  before(async () => {
    s = await startTestServer({ v2: true, storage_delete: true, bcrypt_cost: 4, token_cache_ttl: 0 });
    site = new Site(s.url, s.url);
    for (const [u, p, admin] of [
      [...ALICE!, false],
      [...BOB!, false],
      [...ROOT!, true],
    ] as const) {
      await saveUser(s.db!, { username: u, email: `${u}@example.com`, password: p, active: true, admin }, { cost: 4 });
    }
  });
  after(async () => {
    await s?.stop();
  });

  /** I6 with Basic credentials: the index marks the repository deleted and its content goes. */
  const deleteRepo = async (repo: string, c: Creds): Promise<void> => {
    const r = await request(s.url, `/v1/repositories/${repo}/`, { method: 'DELETE', headers: { Authorization: basic(c![0], c![1]) } });
    assert.ok(r.status === 202 || r.status === 200, `delete ${repo}: ${r.status} ${r.text}`);
  };

  /** POST a session and PATCH `bytes` into it; its Location. */
  const openSession = async (name: string, token: string, bytes: Buffer): Promise<string> => {
    const post = await site.v2(`/v2/${name}/blobs/uploads/`, token, { method: 'POST' });
    assert.equal(post.status, 202, post.text);
    const location = String(post.headers.location);
    const patch = await site.v2(location, token, { method: 'PATCH', body: bytes, headers: { 'Content-Type': 'application/octet-stream' } });
    assert.equal(patch.status, 202, patch.text);
    return location;
  };

  it('an upload session begun before the delete cannot be completed after it (with the old token or a new one)', async () => {
    const name = 'alice/sess';
    const push = await site.bearer(ALICE, `repository:${name}:pull,push`);
    await pushV2Image(site, name, 'latest', push, v2Image('alice-sess'));
    const old = randomBytes(4096);
    const oldDigest = sha(old);
    const loc1 = await openSession(name, push, old);
    const loc2 = await openSession(name, push, old);
    await deleteRepo(name, ALICE);

    // the old token (valid for v2_token_ttl by design) finishes nothing of the deleted repository
    const put = await site.v2(`${loc1}?digest=${oldDigest}`, push, { method: 'PUT' });
    assert.equal(put.status, 404, `PUT of a session of the deleted repository: ${put.status} ${put.text}`);
    assert.equal(code(put), 'BLOB_UPLOAD_UNKNOWN');
    const patch = await site.v2(loc2, push, { method: 'PATCH', body: Buffer.from('more'), headers: { 'Content-Type': 'application/octet-stream' } });
    assert.equal(patch.status, 404, `PATCH of a session of the deleted repository: ${patch.status} ${patch.text}`);
    const status = await site.v2(loc2, push);
    assert.equal(status.status, 404, `GET of a session of the deleted repository: ${status.status}`);
    // right after the delete: not in search, the catalog or the web UI
    const search = await request(s.url, '/v1/search?q=sess', { headers: { Authorization: basic(ALICE![0], ALICE![1]) } });
    assert.ok(!search.text.includes(name), search.text);
    const catalog = await site.v2('/v2/_catalog?n=1000', await site.bearer(ROOT, 'registry:catalog:*'));
    assert.ok(!catalog.json<{ repositories: string[] }>().repositories.includes(name), catalog.text);
    assert.equal((await request(s.url, `/u/${name}/`)).status, 404);

    // the name is pushed again (re-created): the old session stays gone, its bytes never linked there
    const fresh = await site.bearer(ALICE, `repository:${name}:pull,push`);
    await pushV2Image(site, name, 'latest', fresh, v2Image('alice-sess-2'));
    const put2 = await site.v2(`${loc2}?digest=${oldDigest}`, fresh, { method: 'PUT' });
    assert.equal(put2.status, 404, `PUT of an old session in the re-created repository: ${put2.status} ${put2.text}`);
    const head = await site.v2(`/v2/${name}/blobs/${oldDigest}`, fresh, { method: 'HEAD' });
    assert.equal(head.status, 404, "the old session's blob is not in the re-created repository");
  });

  it('a session PUT whose body is still arriving when the repository is deleted links nothing', async () => {
    const name = 'alice/inflight';
    const push = await site.bearer(ALICE, `repository:${name}:pull,push`);
    await pushV2Image(site, name, 'latest', push, v2Image('alice-inflight'));
    const head = randomBytes(1024);
    const tail = randomBytes(1 << 20);
    const digest = sha(Buffer.concat([head, tail]));
    const loc = await openSession(name, push, head);
    const body = new PassThrough();
    const put = request(s.url, `${loc}?digest=${digest}`, {
      method: 'PUT',
      headers: { Authorization: `Bearer ${push}`, 'Content-Type': 'application/octet-stream' },
      body,
    });
    body.write(tail.subarray(0, 4096));
    await new Promise((r) => setTimeout(r, 200));
    await deleteRepo(name, ALICE);
    body.end(tail.subarray(4096));
    const r = await put;
    assert.equal(r.status, 404, `PUT finished after the delete: ${r.status} ${r.text}`);
    const fresh = await site.bearer(ALICE, `repository:${name}:pull,push`);
    const blob = await site.v2(`/v2/${name}/blobs/${digest}`, fresh, { method: 'HEAD' });
    assert.equal(blob.status, 404, 'nothing linked into the deleted name');
  });

  it("a collaborator's push token outliving the delete of a private repository re-creates it private, not public", async () => {
    const name = 'alice/priv';
    await pushV2Image(site, name, 'latest', await site.bearer(ALICE, `repository:${name}:pull,push`), v2Image('alice-priv'));
    await site.setAccess(name, ALICE, 'private');
    const repo = await findRepository(s.db!, 'alice', 'priv');
    await addCollaborator(s.db!, repo!.id, (await findUserByName(s.db!, 'bob'))!.id, 'write');
    const stale = await site.bearer(BOB, `repository:${name}:pull,push`);
    await deleteRepo(name, ALICE);
    // bob's rights went with the repository: a new token grants nothing
    const fresh = await site.bearer(BOB, `repository:${name}:pull,push`);
    assert.deepEqual((decodeJwt(fresh) as { access: unknown[] }).access, []);
    // the old one is good for v2_token_ttl (docs/security.md "Tokens"): the push lands …
    await pushV2Image(site, name, 'latest', stale, v2Image('bob-into-deleted'));
    // … into a repository the index records as private, in alice's namespace, not for everyone
    const again = await findRepository(s.db!, 'alice', 'priv');
    assert.equal(again?.private, true, 'the re-created repository is private');
    const anon = await site.v2(`/v2/${name}/manifests/latest`, await site.bearer(undefined, `repository:${name}:pull`), {
      headers: { Accept: 'application/vnd.docker.distribution.manifest.v2+json' },
    });
    assert.equal(anon.status, 401, `anonymous pull of the re-created repository: ${anon.status}`);
    const search = await request(s.url, '/v1/search?q=priv');
    assert.ok(!search.text.includes('alice/priv'), search.text);
    // the namespace's owner pushing a new repository of her own still makes it public, as before
    await pushV2Image(site, 'alice/open', 'latest', await site.bearer(ALICE, 'repository:alice/open:pull,push'), v2Image('alice-open'));
    assert.equal((await findRepository(s.db!, 'alice', 'open'))?.private, false);
  });

  it('the images of a v1 push stopped before its tag go with the repository, and stay gone when it is pushed again', async () => {
    const name = 'alice/v1untagged';
    const a = makeImage();
    const token = await site.claim(name, ALICE, [a.id]);
    assert.deepEqual(
      (await pushImage(s.url, a, token)).slice(1).map((r) => r.status),
      [200, 200, 200],
    );
    // no tag PUT: the client stopped (or was stopped) before it
    await deleteRepo(name, ALICE);
    const again = await site.claim(name, ALICE, [makeImage().id]);
    for (const part of ['json', 'layer', 'ancestry']) {
      const r = await request(s.url, `/v1/images/${a.id}/${part}`, { headers: { Authorization: `Token ${again}`, 'User-Agent': DOCKER_UA } });
      assert.equal(r.status, 404, `${part} of an image of the deleted repository: ${r.status} ${r.text.slice(0, 60)}`);
    }
  });
});
