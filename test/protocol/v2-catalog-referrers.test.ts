import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { request, type Response } from '../helpers/http.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { makeImage, pushImage, putTag } from '../helpers/v1-client.js';
import { pushV2 } from '../helpers/v2-client.js';
import { findUserByName, removeUser, saveUser, setActive } from '../../src/db/users.js';
import { IndexCatalog } from '../../src/content/v2-catalog.js';
import { saveRepository } from '../../src/db/repositories.js';

const sha = (b: Buffer | string): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const S2 = 'application/vnd.docker.distribution.manifest.v2+json';
const OCI = 'application/vnd.oci.image.manifest.v1+json';
const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
const basic = (u: string, p: string): string => `Basic ${Buffer.from(`${u}:${p}`).toString('base64')}`;

function errorCode(r: Response): string {
  return r.json<{ errors: { code: string }[] }>().errors[0]!.code;
}

describe('v2 catalog on a standalone registry (storage: v1- and v2-pushed repositories)', () => {
  let s: TestServer;
  before(async () => {
    s = await startTestServer({ standalone: true, v2: true, catalog_max_entries: 3 });
    await pushV2(s.url, 'zeta/app', 'latest');
    await pushV2(s.url, 'alpha', 'v1');
    await pushV2(s.url, 'a/b/c', 'x');
    const img = makeImage(undefined, { 'v1.txt': 'pushed with v1\n' });
    await pushImage(s.url, img);
    assert.equal((await putTag(s.url, 'olds/tool', 'latest', img.id)).status, 200);
  });
  after(() => s.stop());

  it('lists every repository sorted, paginated with n/last and a Link to the next page', async () => {
    const p1 = await request(s.url, '/v2/_catalog?n=2');
    assert.equal(p1.status, 200, p1.text);
    assert.deepEqual(p1.json(), { repositories: ['a/b/c', 'library/alpha'] });
    assert.equal(p1.headers.link, '</v2/_catalog?last=library%2Falpha&n=2>; rel="next"');
    const p2 = await request(s.url, '/v2/_catalog?n=2&last=library%2Falpha');
    assert.deepEqual(p2.json(), { repositories: ['olds/tool', 'zeta/app'] });
    assert.equal(p2.headers.link, undefined);
    const p3 = await request(s.url, '/v2/_catalog?n=2&last=zeta/app');
    assert.deepEqual(p3.json(), { repositories: [] });
  });

  it('without n: at most catalog_max_entries, with a Link', async () => {
    const r = await request(s.url, '/v2/_catalog');
    assert.deepEqual(r.json(), { repositories: ['a/b/c', 'library/alpha', 'olds/tool'] });
    assert.equal(r.headers.link, '</v2/_catalog?last=olds%2Ftool&n=3>; rel="next"');
  });

  it('n above catalog_max_entries or not a number: 400 PAGINATION_NUMBER_INVALID', async () => {
    for (const q of ['n=4', 'n=-1', 'n=abc']) {
      const r = await request(s.url, `/v2/_catalog?${q}`);
      assert.equal(r.status, 400, q);
      assert.equal(errorCode(r), 'PAGINATION_NUMBER_INVALID');
    }
  });
});

describe('v2 referrers API (spec §1.4 end-12)', () => {
  let s: TestServer;
  let subject: string;
  let sigDigest: string;
  let sbomDigest: string;
  before(async () => {
    s = await startTestServer({ standalone: true, v2: true, storage_delete: true });
    subject = (await pushV2(s.url, 'ref/app', 'latest')).digest;
    const empty = Buffer.from('{}');
    assert.equal((await request(s.url, `/v2/ref/app/blobs/uploads/?digest=${sha(empty)}`, { method: 'POST', body: empty })).status, 201);
    const artifact = (artifactType: string | undefined, configType: string, annotations: Record<string, string>): Buffer =>
      Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: OCI,
          ...(artifactType ? { artifactType } : {}),
          config: { mediaType: configType, size: 2, digest: sha(empty) },
          layers: [{ mediaType: 'application/vnd.oci.empty.v1+json', size: 2, digest: sha(empty) }],
          subject: { mediaType: S2, digest: subject, size: 100 },
          annotations,
        }),
      );
    const sig = artifact('application/vnd.example.signature', 'application/vnd.oci.empty.v1+json', { 'org.example.kind': 'sig' });
    const sbom = artifact(undefined, 'application/vnd.example.sbom', { 'org.example.kind': 'sbom' });
    for (const b of [sig, sbom]) {
      const r = await request(s.url, `/v2/ref/app/manifests/${sha(b)}`, { method: 'PUT', body: b, headers: { 'Content-Type': OCI } });
      assert.equal(r.status, 201, r.text);
      assert.equal(r.headers['oci-subject'], subject);
    }
    sigDigest = sha(sig);
    sbomDigest = sha(sbom);
  });
  after(() => s.stop());

  it('lists the manifests whose subject is the digest, with artifactType and annotations', async () => {
    const r = await request(s.url, `/v2/ref/app/referrers/${subject}`);
    assert.equal(r.status, 200, r.text);
    assert.equal(r.headers['content-type'], OCI_INDEX);
    const body = r.json<{
      schemaVersion: number;
      mediaType: string;
      manifests: { digest: string; artifactType?: string; annotations?: Record<string, string>; mediaType: string; size: number }[];
    }>();
    assert.equal(body.schemaVersion, 2);
    assert.equal(body.mediaType, OCI_INDEX);
    const byDigest = new Map(body.manifests.map((m) => [m.digest, m]));
    assert.equal(byDigest.size, 2);
    assert.deepEqual(byDigest.get(sigDigest)?.artifactType, 'application/vnd.example.signature');
    assert.deepEqual(byDigest.get(sigDigest)?.annotations, { 'org.example.kind': 'sig' });
    assert.equal(byDigest.get(sigDigest)?.mediaType, OCI);
    assert.equal(byDigest.get(sbomDigest)?.artifactType, 'application/vnd.example.sbom', 'config media type when no artifactType');
    assert.equal(r.headers['oci-filters-applied'], undefined);
  });

  it('?artifactType filters and says so in OCI-Filters-Applied', async () => {
    const r = await request(s.url, `/v2/ref/app/referrers/${subject}?artifactType=application/vnd.example.sbom`);
    assert.equal(r.status, 200);
    assert.equal(r.headers['oci-filters-applied'], 'artifactType');
    assert.deepEqual(
      r.json<{ manifests: { digest: string }[] }>().manifests.map((m) => m.digest),
      [sbomDigest],
    );
  });

  it('an unknown subject: an empty index, not 404; a malformed digest: 400 DIGEST_INVALID', async () => {
    const none = await request(s.url, `/v2/ref/app/referrers/${sha('nothing')}`);
    assert.equal(none.status, 200);
    assert.deepEqual(none.json<{ manifests: unknown[] }>().manifests, []);
    const bad = await request(s.url, '/v2/ref/app/referrers/sha256:xyz');
    assert.equal(bad.status, 400);
    assert.equal(errorCode(bad), 'DIGEST_INVALID');
  });

  it('referrers of a subject that was never pushed are listed too (spec §1.6 item 11)', async () => {
    const empty = Buffer.from('{}');
    const ghost = sha('a manifest nobody pushed');
    const body = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: OCI,
        artifactType: 'application/vnd.example.note',
        config: { mediaType: 'application/vnd.oci.empty.v1+json', size: 2, digest: sha(empty) },
        layers: [],
        subject: { mediaType: OCI, digest: ghost, size: 10 },
      }),
    );
    const put = await request(s.url, `/v2/ref/app/manifests/${sha(body)}`, { method: 'PUT', body, headers: { 'Content-Type': OCI } });
    assert.equal(put.status, 201, put.text);
    assert.equal(put.headers['oci-subject'], ghost);
    const r = await request(s.url, `/v2/ref/app/referrers/${ghost}`);
    assert.deepEqual(r.json<{ manifests: { digest: string; artifactType: string }[] }>().manifests, [
      { mediaType: OCI, digest: sha(body), size: body.length, artifactType: 'application/vnd.example.note' },
    ]);
  });

  it('a deleted referrer leaves the list', async () => {
    assert.equal((await request(s.url, `/v2/ref/app/manifests/${sigDigest}`, { method: 'DELETE' })).status, 202);
    const r = await request(s.url, `/v2/ref/app/referrers/${subject}`);
    assert.deepEqual(
      r.json<{ manifests: { digest: string }[] }>().manifests.map((m) => m.digest),
      [sbomDigest],
    );
  });
});

describe('the index learns of v2 pushes; the catalog filters by account (one process, token auth)', () => {
  let s: TestServer;
  const token = async (user: string, pw: string, scope: string): Promise<string> => {
    const q = new URLSearchParams({ service: new URL(s.url).host, scope });
    const r = await request(s.url, `/v2/token?${q}`, { headers: { Authorization: basic(user, pw) } });
    assert.equal(r.status, 200, r.text);
    return r.json<{ token: string }>().token;
  };
  before(async () => {
    s = await startTestServer({ v2: true, bcrypt_cost: 4 });
    const db = s.db!;
    await saveUser(db, { username: 'alice', email: 'a@example.com', password: 'alicepw', active: true }, { cost: 4 });
    await saveUser(db, { username: 'bobby', email: 'b@example.com', password: 'bobbypw', active: true }, { cost: 4 });
    const t = await token('alice', 'alicepw', 'repository:alice/web:pull,push');
    await pushV2(s.url, 'alice/web', 'v1', { Authorization: `Bearer ${t}` });
    const t2 = await token('alice', 'alicepw', 'repository:alice/secret:pull,push');
    await pushV2(s.url, 'alice/secret', 'v1', { Authorization: `Bearer ${t2}` });
    const alice = (await db('users').where({ username: 'alice' }).first()) as { id: number };
    await saveRepository(db, { namespace: 'alice', name: 'secret', private: true, ownerId: alice.id });
  });
  after(() => s.stop());

  it('a v2-pushed repository is found by /v1/search and owned by the pusher', async () => {
    const r = await request(s.url, '/v1/search?q=web');
    assert.equal(r.status, 200);
    assert.ok(
      r.json<{ results: { name: string }[] }>().results.some((x) => x.name === 'alice/web'),
      r.text,
    );
    const row = (await s.db!('repositories as r')
      .join('users as u', 'u.id', 'r.owner_id')
      .where({ 'r.namespace': 'alice', 'r.name': 'web' })
      .select('u.username')
      .first()) as { username: string };
    assert.equal(row.username, 'alice');
  });

  it('v1 GET /v1/repositories/<repo>/images lists the v1 id of the pushed tag', async () => {
    const r = await request(s.url, '/v1/repositories/alice/web/images', { headers: { Authorization: basic('alice', 'alicepw') } });
    assert.equal(r.status, 200, r.text);
    const ids = r.json<{ id: string }[]>().map((e) => e.id);
    assert.equal(ids.length, 1);
    assert.match(ids[0]!, /^[a-f0-9]{64}$/);
  });

  it('the catalog shows the private repository to its owner only', async () => {
    const mine = await request(s.url, '/v2/_catalog', { headers: { Authorization: `Bearer ${await token('alice', 'alicepw', 'registry:catalog:*')}` } });
    assert.equal(mine.status, 200, mine.text);
    assert.deepEqual(mine.json(), { repositories: ['alice/secret', 'alice/web'] });
    const theirs = await request(s.url, '/v2/_catalog', { headers: { Authorization: `Bearer ${await token('bobby', 'bobbypw', 'registry:catalog:*')}` } });
    assert.deepEqual(theirs.json(), { repositories: ['alice/web'] });
    const anon = await request(s.url, '/v2/_catalog');
    assert.equal(anon.status, 401);
  });

  it('a catalog token of an account deactivated since lists only what anonymous callers may read', async () => {
    const t = await token('alice', 'alicepw', 'registry:catalog:*');
    await s.db!('users').where({ username: 'alice' }).update({ active: false });
    try {
      const r = await request(s.url, '/v2/_catalog', { headers: { Authorization: `Bearer ${t}` } });
      assert.equal(r.status, 200, r.text);
      assert.deepEqual(r.json(), { repositories: ['alice/web'] });
    } finally {
      await s.db!('users').where({ username: 'alice' }).update({ active: true });
    }
  });

  it("an admin's catalog token lists everything only while the account is still an active admin (deleted, demoted, deactivated since: its own view)", async () => {
    const all = { repositories: ['alice/secret', 'alice/web'] };
    const publicOnly = { repositories: ['alice/web'] };
    const list = async (t: string) => {
      const r = await request(s.url, '/v2/_catalog', { headers: { Authorization: `Bearer ${t}` } });
      assert.equal(r.status, 200, r.text);
      return r.json();
    };
    const admin = async (username: string) => {
      await saveUser(s.db!, { username, email: `${username}@example.com`, password: `${username}pw`, active: true, admin: true }, { cost: 4 });
      const t = await token(username, `${username}pw`, 'registry:catalog:*');
      assert.equal(decodePayload(t).admin, true);
      assert.deepEqual(await list(t), all, 'an admin lists the private repository of another account');
      return { t, id: (await findUserByName(s.db!, username))!.id };
    };
    // before: all three listed alice/secret until the token expired (v2_token_ttl)
    const gone = await admin('rootgone');
    assert.ok(await removeUser(s.db!, gone.id));
    assert.deepEqual(await list(gone.t), publicOnly, 'deleted');
    const off = await admin('rootoff');
    await setActive(s.db!, off.id, false);
    assert.deepEqual(await list(off.t), publicOnly, 'deactivated');
    const demoted = await admin('rootdemoted');
    await saveUser(s.db!, { id: demoted.id, admin: false });
    assert.deepEqual(await list(demoted.t), publicOnly, 'demoted');
    // a demoted account keeps its own view: a private repository of its own is listed
    await saveRepository(s.db!, { namespace: 'rootdemoted', name: 'own', private: true, ownerId: demoted.id });
    assert.deepEqual(await list(demoted.t), { repositories: ['alice/web', 'rootdemoted/own'] });
    // an external token service's admin claim (token_rootcertbundle: not indexIssued) stays its word,
    // its account need not be one of ours
    const catalog = new IndexCatalog(s.db!);
    assert.deepEqual(await catalog.names({ account: 'rootgone', admin: true }, undefined, 10), ['alice/secret', 'alice/web', 'rootdemoted/own']);
    assert.deepEqual(await catalog.names({ account: 'rootgone', admin: true, indexIssued: true }, undefined, 10), ['alice/web']);
  });

  it('v2 names the v1 grammar cannot hold (three components, dots in the namespace) reach the catalog and search too', async () => {
    const t = await token('alice', 'alicepw', 'repository:alice/tools/builder:pull,push');
    await pushV2(s.url, 'alice/tools/builder', 'v1', { Authorization: `Bearer ${t}` });
    const cat = await request(s.url, '/v2/_catalog', { headers: { Authorization: `Bearer ${await token('bobby', 'bobbypw', 'registry:catalog:*')}` } });
    assert.ok(cat.json<{ repositories: string[] }>().repositories.includes('alice/tools/builder'), cat.text);
    const found = await request(s.url, '/v1/search?q=builder');
    assert.deepEqual(
      found.json<{ results: { name: string }[] }>().results.map((x) => x.name),
      ['alice/tools/builder'],
    );
    // bobby may not push below alice's namespace, however deep
    const denied = await request(s.url, `/v2/token?${new URLSearchParams({ service: new URL(s.url).host, scope: 'repository:alice/tools/other:push' })}`, {
      headers: { Authorization: basic('bobby', 'bobbypw') },
    });
    assert.deepEqual(decodePayload(denied.json<{ token: string }>().token).access, []);
  });
});

function decodePayload(jwt: string): { access: unknown[]; admin?: boolean } {
  return JSON.parse(Buffer.from(jwt.split('.')[1]!, 'base64url').toString('utf8')) as { access: unknown[]; admin?: boolean };
}

describe('index and registry as two processes: v2 pushes notify the index, the catalog comes from it', () => {
  let idx: TestServer;
  let reg: TestServer;
  const token = async (user: string, pw: string, scope: string): Promise<string> => {
    const q = new URLSearchParams({ service: 'split-registry', scope });
    const r = await request(idx.url, `/v2/token?${q}`, { headers: { Authorization: basic(user, pw) } });
    assert.equal(r.status, 200, r.text);
    return r.json<{ token: string }>().token;
  };
  before(async () => {
    // one configured service name (the token audience) for both processes
    idx = await startTestServer({ bcrypt_cost: 4, token_service: 'split-registry' }, { role: 'index' });
    reg = await startTestServer(
      { v2: true, standalone: false, index_endpoint: idx.url, storage_delete: true, token_service: 'split-registry' },
      { role: 'registry' },
    );
    await saveUser(idx.db!, { username: 'split2', email: 's2@example.com', password: 'split2pw', active: true }, { cost: 4 });
    await saveUser(idx.db!, { username: 'other2', email: 'o2@example.com', password: 'other2pw', active: true }, { cost: 4 });
  });
  after(async () => {
    await reg.stop();
    await idx.stop();
  });

  it('a v2 push through the registry creates the repository in the index, owned by the pusher', async () => {
    const t = await token('split2', 'split2pw', 'repository:split2/tool:pull,push');
    await pushV2(reg.url, 'split2/tool', 'v1', { Authorization: `Bearer ${t}` });
    const found = await request(idx.url, '/v1/search?q=tool');
    assert.ok(
      found.json<{ results: { name: string }[] }>().results.some((x) => x.name === 'split2/tool'),
      found.text,
    );
    const row = (await idx.db!('repositories as r')
      .join('users as u', 'u.id', 'r.owner_id')
      .where({ 'r.namespace': 'split2', 'r.name': 'tool' })
      .select('u.username')
      .first()) as { username: string };
    assert.equal(row.username, 'split2');
  });

  it('the catalog on the registry is the index database, filtered for the caller', async () => {
    const alice = (await idx.db!('users').where({ username: 'split2' }).first()) as { id: number };
    await saveRepository(idx.db!, { namespace: 'split2', name: 'hidden', private: true, ownerId: alice.id });
    const mine = await request(reg.url, '/v2/_catalog?n=1', {
      headers: { Authorization: `Bearer ${await token('split2', 'split2pw', 'registry:catalog:*')}` },
    });
    assert.equal(mine.status, 200, mine.text);
    assert.deepEqual(mine.json(), { repositories: ['split2/hidden'] });
    assert.equal(mine.headers.link, '</v2/_catalog?last=split2%2Fhidden&n=1>; rel="next"');
    const theirs = await request(reg.url, '/v2/_catalog', { headers: { Authorization: `Bearer ${await token('other2', 'other2pw', 'registry:catalog:*')}` } });
    assert.deepEqual(theirs.json(), { repositories: ['split2/tool'] });
  });

  it("the index checks an admin's catalog token against its database for the registry too: deleted or demoted since, its own view", async () => {
    const list = async (t: string) => {
      const r = await request(reg.url, '/v2/_catalog', { headers: { Authorization: `Bearer ${t}` } });
      assert.equal(r.status, 200, r.text);
      return r.json<{ repositories: string[] }>().repositories;
    };
    for (const [username, change] of [
      ['splitgone', (id: number) => removeUser(idx.db!, id)],
      ['splitdemoted', (id: number) => saveUser(idx.db!, { id, admin: false })],
    ] as const) {
      const u = (await saveUser(idx.db!, { username, email: `${username}@example.com`, password: `${username}pw`, active: true, admin: true }, { cost: 4 }))!;
      const t = await token(username, `${username}pw`, 'registry:catalog:*');
      assert.ok((await list(t)).includes('split2/hidden'), 'an admin lists the private repository of another account');
      await change(u.id);
      // before: still listed until the token expired
      assert.ok(!(await list(t)).includes('split2/hidden'), username);
      assert.ok((await list(t)).includes('split2/tool'), username);
    }
  });

  it('a tag deleted through the registry leaves the index image list (the repository stays)', async () => {
    const t = await token('split2', 'split2pw', 'repository:split2/gone:pull,push,delete');
    await pushV2(reg.url, 'split2/gone', 'v1', { Authorization: `Bearer ${t}` });
    const tagsOf = async (): Promise<(string | null)[]> =>
      (
        (await idx.db!('repository_images as i')
          .join('repositories as r', 'r.id', 'i.repo_id')
          .where({ 'r.namespace': 'split2', 'r.name': 'gone' })
          .select('i.tag')) as { tag: string | null }[]
      ).map((x) => x.tag);
    assert.deepEqual(await tagsOf(), ['v1']);
    const del = await request(reg.url, '/v2/split2/gone/manifests/v1', { method: 'DELETE', headers: { Authorization: `Bearer ${t}` } });
    assert.equal(del.status, 202, del.text);
    assert.deepEqual(await tagsOf(), [null]);
  });

  it('the index refuses notices without a valid token (nothing changes)', async () => {
    const r = await request(idx.url, '/_index/v2/pushed', {
      method: 'POST',
      body: JSON.stringify({ name: 'split2/forged', tag: 'x' }),
      headers: { 'Content-Type': 'application/json' },
    });
    assert.equal(r.status, 401);
    const t = await token('other2', 'other2pw', 'repository:split2/forged:pull');
    const r2 = await request(idx.url, '/_index/v2/pushed', {
      method: 'POST',
      body: JSON.stringify({ name: 'split2/forged', tag: 'x' }),
      headers: { Authorization: `Bearer ${t}` },
    });
    assert.equal(r2.status, 403);
    assert.equal(await idx.db!('repositories').where({ namespace: 'split2', name: 'forged' }).first(), undefined);
  });
});
