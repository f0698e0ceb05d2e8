import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { decodeJwt } from 'jose';
import { request } from '../helpers/http.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { makeImage, payloadChecksum, pushImage, putTag, tarOf, type TestImage } from '../helpers/v1-client.js';
import { derivedBaseId, pushV2Image, sha, Site, v2Image, type Creds } from '../helpers/accounts.js';
import { findUserByName, saveUser } from '../../src/db/users.js';
import { addCollaborator, findRepository } from '../../src/db/repositories.js';

const OWNER: Creds = ['owner', 'ownerpw'];
const MALLORY: Creds = ['mallory', 'mallorypw'];
const CAROL: Creds = ['carol', 'carolpw'];
const ROOT: Creds = ['root', 'rootpw'];
const NOT_FOUND = '{"error": "Image not found"}';

/** Another image under an existing id: same id, other json and layer (an account's own build). */
function sameIdOtherContent(img: TestImage, label: string): TestImage {
  const obj = JSON.parse(img.json.toString('utf8')) as Record<string, unknown>;
  obj.author = label;
  const json = Buffer.from(JSON.stringify(obj));
  const layer = gzipSync(tarOf({ [`${label}.txt`]: `${label}'s own content\n` }));
  return { id: img.id, ...(img.parent ? { parent: img.parent } : {}), json, layer, payload: payloadChecksum(json, layer) };
}

/**
 * Issue 10: each finding of the adversarial review, reproduced as it was reported against a fresh
 * server (index + registry in one process, v2 on, token auth). These requests used to succeed.
 */
describe('issue 10 findings: private images stay private, a digest names one content', () => {
  let s: TestServer;
  let site: Site;
  let base: TestImage;
  let app: TestImage;
  const secretV2 = v2Image('owner-v2-secret');

  before(async () => {
    s = await startTestServer({ v2: true, storage_delete: true, bcrypt_cost: 4, token_cache_ttl: 0 });
    site = new Site(s.url, s.url);
    const db = s.db!;
    for (const [u, p, admin] of [
      [...OWNER!, false],
      [...MALLORY!, false],
      [...CAROL!, false],
      [...ROOT!, true],
    ] as const) {
      await saveUser(db, { username: u, email: `${u}@example.com`, password: p, active: true, admin }, { cost: 4 });
    }
    base = makeImage();
    app = makeImage(base.id);
    await site.pushV1('owner/secret', OWNER, [base, app]);
    await site.setAccess('owner/secret', OWNER, 'private');
    await pushV2Image(site, 'owner/v2secret', 'latest', await site.bearer(OWNER, 'repository:owner/v2secret:pull,push'), secretV2);
    await site.setAccess('owner/v2secret', OWNER, 'private');
  });
  after(async () => {
    await s?.stop();
  });

  const imageRoutes = (id: string): string[] => ['json', 'layer', 'ancestry', 'files'].map((r) => `/v1/images/${id}/${r}`);

  it('finding 1: an id listed in a claim opens nothing, with write, read or anonymous tokens', async () => {
    const write = await site.claim('mallory/x', MALLORY, [app.id, base.id]);
    const read = await site.readToken('mallory/x', MALLORY);
    const anon = await site.readToken('mallory/x', undefined);
    assert.ok(read && anon, 'mallory/x is public: anyone gets a read token');
    for (const token of [write, read, anon]) {
      for (const id of [app.id, base.id]) {
        for (const path of imageRoutes(id)) {
          const r = await site.regGet(path, token);
          assert.equal(r.status, 404, `${path}: ${r.status} ${r.text.slice(0, 80)}`);
          assert.equal(r.text, NOT_FOUND, path);
        }
      }
    }
    // the owner still reads it
    const own = await site.readToken('owner/secret', OWNER);
    assert.deepEqual((await site.regGet(`/v1/images/${app.id}/layer`, own)).body, app.layer);
  });

  it('finding 2: tagging a foreign image (v1-pushed or v2-derived) is "Image not found", and the bridge serves nothing of it', async () => {
    const write = await site.claim('mallory/y', MALLORY, [app.id]);
    const tag = await putTag(s.url, 'mallory/y', 'leak', app.id, write);
    assert.equal(tag.status, 404);
    assert.equal(tag.text, NOT_FOUND);
    // the v1 id the bridge derived for owner's private v2 image
    const ownerTags = await site.regGet('/v1/repositories/owner/v2secret/tags', await site.readToken('owner/v2secret', OWNER));
    assert.equal(ownerTags.status, 200);
    const derivedTop = ownerTags.json<Record<string, string>>().latest!;
    const tag2 = await putTag(s.url, 'mallory/y', 'leak2', derivedTop, write);
    assert.equal(tag2.status, 404);
    const bearer = await site.bearer(MALLORY, 'repository:mallory/y:pull');
    for (const t of ['leak', 'leak2']) {
      const m = await site.v2(`/v2/mallory/y/manifests/${t}`, bearer, { headers: { Accept: 'application/vnd.docker.distribution.manifest.v2+json' } });
      assert.equal(m.status, 404, m.text);
      assert.equal(m.json<{ errors: { code: string }[] }>().errors[0]!.code, 'MANIFEST_UNKNOWN');
    }
    for (const blob of [sha(app.layer), sha(base.layer), sha(secretV2.config), ...secretV2.layers.map((l) => sha(l))]) {
      const r = await site.v2(`/v2/mallory/y/blobs/${blob}`, bearer);
      assert.equal(r.status, 404, blob);
      assert.equal(r.json<{ errors: { code: string }[] }>().errors[0]!.code, 'BLOB_UNKNOWN');
    }
  });

  it("finding 3: squatting a derived v1 id does not change what the owner's v2 image serves to v1 clients", async () => {
    const img = v2Image('owner-app3');
    const squatId = derivedBaseId(img.layers[0]!);
    // mallory pushes a v1 image under that id first, with her own layer, in her own repository
    const squat: TestImage = (() => {
      const json = Buffer.from(JSON.stringify({ id: squatId, created: '2015-01-01T00:00:00Z', container_config: { Cmd: null } }));
      const layer = gzipSync(tarOf({ 'evil.txt': 'mallory was here\n' }));
      return { id: squatId, json, layer, payload: payloadChecksum(json, layer) };
    })();
    await site.pushV1('mallory/squat', MALLORY, [squat]);
    await pushV2Image(site, 'owner/app3', 'latest', await site.bearer(OWNER, 'repository:owner/app3:pull,push'), img);
    const read = await site.readToken('owner/app3', OWNER);
    const tags = (await site.regGet('/v1/repositories/owner/app3/tags', read)).json<Record<string, string>>();
    const ancestry = (await site.regGet(`/v1/images/${tags.latest}/ancestry`, read)).json<string[]>();
    assert.equal(ancestry[ancestry.length - 1], squatId, 'the base has the derived id');
    const layer = await site.regGet(`/v1/images/${squatId}/layer`, read);
    assert.equal(layer.status, 200);
    assert.deepEqual(layer.body, img.layers[0], "the owner's layer, not mallory's");
    // mallory's own pull of her id is her own image
    const hers = await site.regGet(`/v1/images/${squatId}/layer`, await site.readToken('mallory/squat', MALLORY));
    assert.deepEqual(hers.body, squat.layer);
  });

  it('finding 3, inside one repository: a write collaborator squats the id first; the v2 push replaces the records', async () => {
    const img = v2Image('owner-app4');
    const squatId = derivedBaseId(img.layers[0]!);
    const json = Buffer.from(JSON.stringify({ id: squatId, created: '2015-01-01T00:00:00Z' }));
    const layer = gzipSync(tarOf({ 'evil.txt': 'squatter\n' }));
    await site.pushV1('owner/app4', OWNER, [{ id: squatId, json, layer, payload: payloadChecksum(json, layer) }], 'squatted');
    await pushV2Image(site, 'owner/app4', 'latest', await site.bearer(OWNER, 'repository:owner/app4:pull,push'), img);
    const read = await site.readToken('owner/app4', OWNER);
    const r = await site.regGet(`/v1/images/${squatId}/layer`, read);
    assert.deepEqual(r.body, img.layers[0]);
    const j = await site.regGet(`/v1/images/${squatId}/json`, read);
    assert.notDeepEqual(j.body, json);
    assert.equal(r.headers['x-docker-checksum-payload'], undefined);
    assert.equal(j.headers['x-docker-checksum-payload'], payloadChecksum(j.body, img.layers[0]!));
  });

  it('finding 4: another account cannot write the parts of an image someone else declared and started', async () => {
    const img = makeImage();
    const ownerToken = await site.claim('owner/half', OWNER, [img.id]);
    const j = await request(s.url, `/v1/images/${img.id}/json`, { method: 'PUT', headers: { Authorization: `Token ${ownerToken}` }, body: img.json });
    assert.equal(j.status, 200);
    const malloryToken = await site.claim('mallory/z', MALLORY, [img.id]);
    const evil = gzipSync(tarOf({ 'evil.txt': 'evil\n' }));
    const l = await request(s.url, `/v1/images/${img.id}/layer`, { method: 'PUT', headers: { Authorization: `Token ${malloryToken}` }, body: evil });
    assert.equal(l.status, 404);
    assert.equal(l.text, NOT_FOUND);
    const c = await request(s.url, `/v1/images/${img.id}/checksum`, {
      method: 'PUT',
      headers: { Authorization: `Token ${malloryToken}`, 'X-Docker-Checksum-Payload': payloadChecksum(img.json, evil) },
      body: '',
    });
    assert.equal(c.status, 404);
    // the owner completes the push and everyone pulls the owner's layer
    const rs = await pushImage(s.url, img, ownerToken);
    assert.deepEqual(
      rs.slice(1).map((r) => r.status),
      [200, 200, 200],
    );
    assert.equal((await putTag(s.url, 'owner/half', 'latest', img.id, ownerToken)).status, 200);
    const pulled = await site.regGet(`/v1/images/${img.id}/layer`, await site.readToken('owner/half', undefined));
    assert.deepEqual(pulled.body, img.layer);
  });

  it('finding 6: a deleted private repository is gone from v2 too; nobody but its namespace owner gets a token for the name', async () => {
    const img = v2Image('secret2');
    await pushV2Image(site, 'owner/secret2', 'latest', await site.bearer(OWNER, 'repository:owner/secret2:pull,push'), img);
    await site.setAccess('owner/secret2', OWNER, 'private');
    for (const status of [202, 200]) {
      const r = await request(s.url, '/v1/repositories/owner/secret2/', {
        method: 'DELETE',
        headers: { Authorization: `Basic ${Buffer.from('owner:ownerpw').toString('base64')}` },
      });
      assert.equal(r.status, status, r.text);
    }
    for (const who of [undefined, MALLORY]) {
      const t = await site.bearer(who, 'repository:owner/secret2:pull');
      assert.deepEqual(decodeJwt(t).access, [], 'no pull on a name the index has no record of');
      for (const path of ['/v2/owner/secret2/manifests/latest', `/v2/owner/secret2/blobs/${sha(img.layers[0]!)}`, '/v2/owner/secret2/tags/list']) {
        assert.equal((await site.v2(path, t)).status, 401, path);
      }
    }
    // its namespace owner may (re)create it, and finds nothing left of it
    const mine = await site.bearer(OWNER, 'repository:owner/secret2:pull');
    assert.deepEqual(decodeJwt(mine).access, [{ type: 'repository', name: 'owner/secret2', actions: ['pull'] }]);
    assert.equal((await site.v2('/v2/owner/secret2/manifests/latest', mine)).status, 404);
    assert.equal((await site.v2(`/v2/owner/secret2/blobs/${sha(img.layers[0]!)}`, mine)).status, 404);
  });

  it('finding 8: a namespace an admin pushed into cannot be taken over by signing up as it', async () => {
    const img = makeImage();
    await site.pushV1('ghostns/app', ROOT, [img]);
    await site.setAccess('ghostns/app', ROOT, 'private');
    const signup = await request(s.url, '/v1/users/', {
      method: 'POST',
      body: JSON.stringify({ username: 'ghostns', password: 'ghostpw', email: 'ghost@example.com' }),
    });
    assert.equal(signup.status, 400);
    assert.equal(signup.text, '"Username or email already exists"');
    const login = await request(s.url, '/v1/users/', { headers: { Authorization: `Basic ${Buffer.from('ghostns:ghostpw').toString('base64')}` } });
    assert.equal(login.status, 401);
    assert.equal(await site.readToken('ghostns/app', ['ghostns', 'ghostpw']), undefined);
  });

  it('two accounts push the same two-image chain independently; a third reuses only what it may write', async () => {
    const b = makeImage();
    const a = makeImage(b.id);
    await site.pushV1('owner/same', OWNER, [b, a]);
    await site.setAccess('owner/same', OWNER, 'private');
    // mallory has the same ids with her own content: the probe says "push it", her images are her own
    const mb = sameIdOtherContent(b, 'mallory');
    const ma = sameIdOtherContent(a, 'mallory');
    const token = await site.claim('mallory/same', MALLORY, [mb.id, ma.id]);
    for (const img of [mb, ma]) {
      const rs = await pushImage(s.url, img, token);
      assert.deepEqual(
        rs.map((r) => r.status),
        [404, 200, 200, 200],
        rs.map((r) => r.text).join(' '),
      );
    }
    assert.equal((await putTag(s.url, 'mallory/same', 'latest', ma.id, token)).status, 200);
    const mr = await site.readToken('mallory/same', MALLORY);
    const or = await site.readToken('owner/same', OWNER);
    for (const [mine, theirs] of [
      [mb, b],
      [ma, a],
    ] as const) {
      assert.deepEqual((await site.regGet(`/v1/images/${mine.id}/layer`, mr)).body, mine.layer);
      assert.deepEqual((await site.regGet(`/v1/images/${mine.id}/json`, mr)).body, mine.json);
      assert.deepEqual((await site.regGet(`/v1/images/${theirs.id}/layer`, or)).body, theirs.layer);
    }
    // owner/same turns public: carol may read it, yet her probe does not link from it (an id is a name
    // anyone can push under: linking from other people's repositories would let them pick her bytes);
    // she uploads the same images herself, then reuses them from her own repository
    await site.setAccess('owner/same', OWNER, 'public');
    const ct = await site.claim('carol/same', CAROL, [b.id, a.id]);
    for (const img of [b, a]) {
      const rs = await pushImage(s.url, img, ct);
      assert.deepEqual(
        rs.map((r) => r.status),
        [404, 200, 200, 200],
        rs.map((r) => r.text).join(' '),
      );
    }
    assert.equal((await putTag(s.url, 'carol/same', 'latest', a.id, ct)).status, 200);
    const ct2 = await site.claim('carol/same2', CAROL, [b.id, a.id]);
    for (const img of [b, a]) {
      const probe = await site.regGet(`/v1/images/${img.id}/json`, ct2);
      assert.equal(probe.status, 200, probe.text);
      assert.deepEqual(probe.body, img.json, 'linked from her own carol/same');
    }
    assert.equal((await putTag(s.url, 'carol/same2', 'latest', a.id, ct2)).status, 200);
    const cr = await site.readToken('carol/same2', CAROL);
    assert.deepEqual((await site.regGet(`/v1/images/${a.id}/ancestry`, cr)).json(), [a.id, b.id]);
    assert.deepEqual((await site.regGet(`/v1/images/${b.id}/layer`, cr)).body, b.layer);
    // owner turning private later does not change what carol's repositories hold
    await site.setAccess('owner/same', OWNER, 'private');
    assert.deepEqual((await site.regGet(`/v1/images/${a.id}/layer`, cr)).body, a.layer);
    // and mallory's repository keeps her own content under the same ids
    assert.deepEqual((await site.regGet(`/v1/images/${ma.id}/layer`, mr)).body, ma.layer);
  });

  it("squatting a well-known id in a public repository: another account's push is not linked to it", async () => {
    const base2 = makeImage();
    // mallory learnt the id (say, of a popular public base image) and pushes her content under it first
    const squat = sameIdOtherContent(base2, 'mallory');
    await site.pushV1('mallory/popular', MALLORY, [squat]);
    // the owner pushes an image built on that base: the probe says "push it", the owner's bytes are kept
    const top = makeImage(base2.id);
    const t = await site.claim('owner/built', OWNER, [base2.id, top.id]);
    for (const img of [base2, top]) {
      const rs = await pushImage(s.url, img, t);
      assert.deepEqual(
        rs.map((r) => r.status),
        [404, 200, 200, 200],
        rs.map((r) => r.text).join(' '),
      );
    }
    assert.equal((await putTag(s.url, 'owner/built', 'latest', top.id, t)).status, 200);
    const r = await site.readToken('owner/built', undefined);
    assert.deepEqual((await site.regGet(`/v1/images/${base2.id}/layer`, r)).body, base2.layer);
  });

  it('PUT json of an image in an official repository: linked, 409 "Image already exists" (the client skips the layer)', async () => {
    const img = makeImage();
    await site.pushV1('library/pub', ROOT, [img]);
    const ct = await site.claim('carol/pub', CAROL, [img.id]);
    const j = await request(s.url, `/v1/images/${img.id}/json`, { method: 'PUT', headers: { Authorization: `Token ${ct}` }, body: img.json });
    assert.equal(j.status, 409);
    assert.equal(j.text, '{"error": "Image already exists"}');
    assert.equal((await putTag(s.url, 'carol/pub', 'latest', img.id, ct)).status, 200);
    assert.deepEqual((await site.regGet(`/v1/images/${img.id}/layer`, await site.readToken('carol/pub', CAROL))).body, img.layer);
    // a child whose parent is in an official repository: the parent is linked (R4 parent check)
    const child = makeImage(img.id);
    const ct2 = await site.claim('carol/child', CAROL, [img.id, child.id]);
    const rs = await pushImage(s.url, child, ct2);
    assert.deepEqual(
      rs.map((r) => r.status),
      [404, 200, 200, 200],
      rs.map((r) => r.text).join(' '),
    );
    assert.equal((await putTag(s.url, 'carol/child', 'latest', child.id, ct2)).status, 200);
    const r2 = await site.readToken('carol/child', CAROL);
    assert.deepEqual((await site.regGet(`/v1/images/${child.id}/ancestry`, r2)).json(), [child.id, img.id]);
    assert.deepEqual((await site.regGet(`/v1/images/${img.id}/layer`, r2)).body, img.layer);
    // a parent nobody lets mallory reuse is "missing", whoever holds it
    const orphan = makeImage(base.id);
    const mt = await site.claim('mallory/child', MALLORY, [orphan.id]);
    const pj = await request(s.url, `/v1/images/${orphan.id}/json`, { method: 'PUT', headers: { Authorization: `Token ${mt}` }, body: orphan.json });
    assert.equal(pj.status, 400);
    assert.equal(pj.text, '{"error": "Image depends on a non existing parent"}');
  });

  it("a link never mixes chains: a repository holding its own image under a parent's id gets nothing linked onto it", async () => {
    const b = makeImage();
    const a = makeImage(b.id);
    // mallory's repository holds her own image under b's id (pushed before anyone else had b)
    const mb = sameIdOtherContent(b, 'mallory');
    await site.pushV1('mallory/mix', MALLORY, [mb], 'base');
    await site.pushV1('library/mixsrc', ROOT, [b, a]);
    // her probe for a (an official image: a link source) must not put the official a on top of her b
    const t = await site.claim('mallory/mix', MALLORY, [mb.id, a.id]);
    const probe = await site.regGet(`/v1/images/${a.id}/json`, t);
    assert.equal(probe.status, 404, probe.text);
    const tag = await putTag(s.url, 'mallory/mix', 'mixed', a.id, t);
    assert.equal(tag.status, 404);
    assert.deepEqual((await site.regGet(`/v1/images/${b.id}/layer`, await site.readToken('mallory/mix', MALLORY))).body, mb.layer);
  });

  it('library/ is written by admins only: a write collaborator of an official repository cannot push to it', async () => {
    const img = makeImage();
    await site.pushV1('library/base', ROOT, [img]);
    const repo = (await findRepository(s.db!, 'library', 'base'))!;
    await addCollaborator(s.db!, repo.id, (await findUserByName(s.db!, 'carol'))!.id, 'write');
    const r = await site.claimRaw('library/base', CAROL, [img.id]);
    assert.equal(r.status, 403, r.text);
    const bearer = await site.bearer(CAROL, 'repository:library/base:pull,push');
    assert.deepEqual(decodeJwt(bearer).access, [{ type: 'repository', name: 'library/base', actions: ['pull'] }]);
  });

  it("R4 membership: an id not declared for the token's repository is refused (NOT_IN_REPOSITORY)", async () => {
    const img = makeImage();
    const t = await site.claim('mallory/decl', MALLORY, [makeImage().id]);
    const r = await request(s.url, `/v1/images/${img.id}/json`, { method: 'PUT', headers: { Authorization: `Token ${t}` }, body: img.json });
    assert.equal(r.status, 400);
    assert.equal(r.text, '{"error": "This image does not belong to the repository"}');
  });

  it('a token stops working at once when its holder loses the right (cache off) or the repository turns private', async () => {
    const img = makeImage();
    await site.pushV1('owner/flip', OWNER, [img]);
    const anon = await site.readToken('owner/flip', undefined);
    assert.equal((await site.regGet(`/v1/images/${img.id}/layer`, anon)).status, 200);
    await site.setAccess('owner/flip', OWNER, 'private');
    const r = await site.regGet(`/v1/images/${img.id}/layer`, anon);
    assert.equal(r.status, 401);
    assert.equal(r.text, '{"error": "Requires authorization"}');
    assert.equal((await site.regGet('/v1/repositories/owner/flip/tags', anon)).status, 401);
  });

  it('the stand-in for image ids: a v1 id is a name, so the image json of an id another repository holds is 404 with a read token', async () => {
    const hex = createHash('sha256').update('nothing').digest('hex');
    const t = await site.readToken('owner/secret', OWNER);
    assert.equal((await site.regGet(`/v1/images/${hex}/json`, t)).status, 404);
  });
});
