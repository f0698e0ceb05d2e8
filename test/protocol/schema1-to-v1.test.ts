import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { request } from '../helpers/http.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { makeImage, payloadChecksum, tarOf } from '../helpers/v1-client.js';
import { sha, Site, type Creds } from '../helpers/accounts.js';
import { saveUser } from '../../src/db/users.js';
import { schema1Payload, signSchema1 } from '../../src/content/schema1.js';

const OWNER: Creds = ['owner', 'ownerpw'];
const S1 = 'application/vnd.docker.distribution.manifest.v1+prettyjws';

/**
 * Issue 11 item 2: what a Docker 1.6–1.9 client pushes through v2 (signed schema1) is pulled by a
 * Docker 1.x client over v1: the full 1.x pull sequence, json bytes exactly the v1Compatibility, the
 * layers the pushed blobs; a later push of the tag through either API wins.
 */
describe('a signed schema1 push through v2 is visible to v1 clients', () => {
  let s: TestServer;
  let site: Site;
  const key = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
  const rootId = 'a'.repeat(63) + '1';
  const topId = 'b'.repeat(63) + '2';
  const rootJson = JSON.stringify({
    id: rootId,
    created: '2015-06-01T00:00:00Z',
    container_config: { Cmd: ['/bin/sh -c #(nop) ADD file'] },
    architecture: 'amd64',
    os: 'linux',
  });
  const topJson = JSON.stringify({
    id: topId,
    parent: rootId,
    created: '2015-06-02T00:00:00Z',
    container_config: { Cmd: ['/bin/sh -c echo hi'] },
    config: { Env: ['A=1'] },
    architecture: 'amd64',
    os: 'linux',
  });
  const rootLayer = gzipSync(tarOf({ 'etc/root': 'root\n' }));
  const topLayer = gzipSync(tarOf({ 'etc/top': 'top\n' }));

  before(async () => {
    s = await startTestServer({ bcrypt_cost: 4, storage_delete: true });
    site = new Site(s.url, s.url);
    await saveUser(s.db!, { username: 'owner', email: 'o@example.com', password: 'ownerpw', active: true }, { cost: 4 });
    const token = await site.bearer(OWNER, 'repository:owner/old:pull,push');
    for (const b of [rootLayer, topLayer]) {
      const r = await site.v2(`/v2/owner/old/blobs/uploads/?digest=${sha(b)}`, token, { method: 'POST', body: b });
      assert.equal(r.status, 201, r.text);
    }
    const payload = schema1Payload('owner/old', '1.6', 'amd64', [
      { blobSum: sha(topLayer), v1Compatibility: topJson },
      { blobSum: sha(rootLayer), v1Compatibility: rootJson },
    ]);
    const put = await site.v2('/v2/owner/old/manifests/1.6', token, { method: 'PUT', body: signSchema1(payload, key), headers: { 'Content-Type': S1 } });
    assert.equal(put.status, 201, put.text);
  });
  after(async () => {
    await s?.stop();
  });

  it('the Docker 1.x pull sequence: I8 with checksums, tags, ancestry, json bytes as given, layers', async () => {
    const list = await site.images('owner/old', OWNER);
    assert.equal(list.status, 200);
    const checksums = { [rootId]: payloadChecksum(Buffer.from(rootJson), rootLayer), [topId]: payloadChecksum(Buffer.from(topJson), topLayer) };
    assert.deepEqual(list.json(), [
      { id: rootId, checksum: checksums[rootId] },
      { id: topId, checksum: checksums[topId] },
    ]);
    const token = String(list.headers['x-docker-token']);
    assert.deepEqual((await site.regGet('/v1/repositories/owner/old/tags', token)).json(), { '1.6': topId });
    assert.deepEqual((await site.regGet('/v1/repositories/owner/old/tags/1.6', token)).json(), topId);
    assert.deepEqual((await site.regGet(`/v1/images/${topId}/ancestry`, token)).json(), [topId, rootId]);
    for (const [id, json, layer] of [
      [rootId, rootJson, rootLayer],
      [topId, topJson, topLayer],
    ] as const) {
      const j = await site.regGet(`/v1/images/${id}/json`, token);
      assert.equal(j.status, 200);
      assert.equal(j.text, json);
      assert.equal(j.headers['x-docker-size'], String(layer.length));
      assert.equal(j.headers['x-docker-checksum-payload'], checksums[id]);
      const l = await site.regGet(`/v1/images/${id}/layer`, token);
      assert.deepEqual(l.body, layer);
    }
  });

  it('a later v1 push of the tag wins on both APIs; a later schema1 push wins back', async () => {
    const img = makeImage();
    await site.pushV1('owner/old', OWNER, [img], '1.6');
    const token = (await site.readToken('owner/old', OWNER))!;
    assert.deepEqual((await site.regGet('/v1/repositories/owner/old/tags/1.6', token)).json(), img.id);
    const bearer = await site.bearer(OWNER, 'repository:owner/old:pull,push');
    const m = await site.v2('/v2/owner/old/manifests/1.6', bearer, { headers: { Accept: 'application/vnd.docker.distribution.manifest.v2+json' } });
    assert.equal(m.status, 200);
    assert.equal(m.headers['content-type'], 'application/vnd.docker.distribution.manifest.v2+json', 'the v1 push, bridged');
    const payload = schema1Payload('owner/old', '1.6', 'amd64', [{ blobSum: sha(rootLayer), v1Compatibility: rootJson }]);
    const put = await site.v2('/v2/owner/old/manifests/1.6', bearer, { method: 'PUT', body: signSchema1(payload, key), headers: { 'Content-Type': S1 } });
    assert.equal(put.status, 201, put.text);
    assert.deepEqual((await site.regGet('/v1/repositories/owner/old/tags/1.6', token)).json(), rootId);
  });

  it('a schema1 whose parents do not chain gets no v1 view (the v2 push still stands)', async () => {
    const bearer = await site.bearer(OWNER, 'repository:owner/old:pull,push');
    const broken = JSON.stringify({ id: topId.replace('2', '3'), parent: 'f'.repeat(64) });
    const payload = schema1Payload('owner/old', 'broken', 'amd64', [{ blobSum: sha(topLayer), v1Compatibility: broken }]);
    const put = await site.v2('/v2/owner/old/manifests/broken', bearer, { method: 'PUT', body: signSchema1(payload, key), headers: { 'Content-Type': S1 } });
    assert.equal(put.status, 201, put.text);
    const token = (await site.readToken('owner/old', OWNER))!;
    assert.equal((await site.regGet('/v1/repositories/owner/old/tags/broken', token)).status, 404);
    const r = await request(s.url, '/v2/owner/old/manifests/broken', { headers: { Authorization: `Bearer ${bearer}`, Accept: S1 } });
    assert.equal(r.status, 200);
  });
});
