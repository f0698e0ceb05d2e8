import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { request } from '../helpers/http.js';
import { gzipSync } from 'node:zlib';
import { S2, sha, v2Image, type V2Image } from '../helpers/accounts.js';
import { makeImage, pushImage, putTag, tarOf } from '../helpers/v1-client.js';
import { schema1Payload } from '../../src/content/schema1.js';

/**
 * Hold the first call of the server's driver method whose key matches until `release` is called;
 * `reached` resolves when it is held.
 */
function hold(s: TestServer, method: 'putContent' | 'delete', match: (key: string) => boolean): { reached: Promise<void>; release: () => void } {
  const driver = s.driver as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>;
  const orig = driver[method]!.bind(driver);
  let fired = false;
  let reach!: () => void;
  let release!: () => void;
  const reached = new Promise<void>((r) => (reach = r));
  const gate = new Promise<void>((r) => (release = r));
  driver[method] = async (...a: unknown[]) => {
    if (!fired && match(String(a[0]))) {
      fired = true;
      reach();
      await gate;
      driver[method] = orig;
    }
    return orig(...a);
  };
  return { reached, release };
}

async function pushBlobs(url: string, name: string, img: V2Image): Promise<void> {
  for (const b of [img.config, ...img.layers]) {
    const r = await request(url, `/v2/${name}/blobs/uploads/?digest=${sha(b)}`, { method: 'POST', body: b });
    assert.equal(r.status, 201, r.text);
  }
}

describe('integrity races (standalone, filesystem)', () => {
  let s: TestServer;
  before(async () => {
    s = await startTestServer({ standalone: true, v2: true, storage_delete: true, metadata_cache_ttl: 0 });
  });
  after(() => s?.stop());

  it('two v2 pushes of one tag at once: v1 and v2 clients get the same image', async () => {
    const name = 'owner/v2race';
    const a = v2Image('a', 1);
    const b = v2Image('b', 1);
    await pushBlobs(s.url, name, a);
    await pushBlobs(s.url, name, b);
    // A's bridge step is held as it writes its first v1 record (deriving reads every layer: a big
    // image takes long here); B's push runs whole meanwhile
    const held = hold(s, 'putContent', (k) => k.startsWith('v1/images/') && k.endsWith('/ancestry'));
    const putA = request(s.url, `/v2/${name}/manifests/latest`, { method: 'PUT', body: a.manifest, headers: { 'Content-Type': S2 } });
    await held.reached;
    const putB = await request(s.url, `/v2/${name}/manifests/latest`, { method: 'PUT', body: b.manifest, headers: { 'Content-Type': S2 } });
    held.release();
    const ra = await putA;
    assert.equal(ra.status, 201, ra.text);
    assert.equal(putB.status, 201, putB.text);
    const v2 = await request(s.url, `/v2/${name}/manifests/latest`, { headers: { Accept: S2 } });
    assert.equal(v2.status, 200);
    const v2img = v2.body.equals(a.manifest) ? a : v2.body.equals(b.manifest) ? b : undefined;
    assert.ok(v2img, 'v2 serves one of the pushes');
    const id = (await request(s.url, `/v1/repositories/${name}/tags/latest`)).json<string>();
    const anc = (await request(s.url, `/v1/images/${id}/ancestry`)).json<string[]>();
    const layer = await request(s.url, `/v1/images/${anc[anc.length - 1]}/layer`);
    assert.deepEqual(layer.body, v2img.layers[0], `v2 serves ${v2img === a ? 'A' : 'B'}, v1 serves the other push's layer`);
  });

  it('a v2 push and a delete of its tag at once: the tag is gone on both APIs or there on both', async () => {
    const name = 'owner/v2del';
    const a = v2Image('a', 1);
    await pushBlobs(s.url, name, a);
    // the delete is held between its two steps (the v1 tag removed, the v2 tag not yet) while the
    // push's bridge step completes
    const held = hold(s, 'delete', (k) => k === `v2/repositories/${name}/_manifests/tags/latest`);
    const putA = await request(s.url, `/v2/${name}/manifests/latest`, { method: 'PUT', body: a.manifest, headers: { 'Content-Type': S2 } });
    assert.equal(putA.status, 201, putA.text);
    const b = v2Image('b', 1);
    await pushBlobs(s.url, name, b);
    const del = request(s.url, `/v2/${name}/manifests/latest`, { method: 'DELETE' });
    await held.reached;
    const putB = request(s.url, `/v2/${name}/manifests/latest`, { method: 'PUT', body: b.manifest, headers: { 'Content-Type': S2 } });
    // B's push gets as far as it can while the delete is held (with the fix: waiting for the lock)
    await new Promise((r) => setTimeout(r, 300));
    held.release();
    assert.equal((await del).status, 202);
    assert.equal((await putB).status, 201);
    const v2 = await request(s.url, `/v2/${name}/manifests/latest`, { headers: { Accept: S2 } });
    const v1 = await request(s.url, `/v1/repositories/${name}/tags/latest`);
    if (v2.status === 404) assert.equal(v1.status, 404, `v2: tag deleted; v1: ${v1.text}`);
    else {
      assert.deepEqual(v2.body, b.manifest);
      const layer = await request(s.url, `/v1/images/${v1.json<string>()}/layer`);
      assert.deepEqual(layer.body, b.layers[0], 'v1 serves B');
    }
  });
});

describe('v1 image ids pushed through schema1 (standalone: one registry-wide set of images)', () => {
  let s: TestServer;
  before(async () => {
    s = await startTestServer({ standalone: true, v2: true, metadata_cache_ttl: 0 });
  });
  after(() => s?.stop());

  it("a schema1 push naming another repository's complete v1 image id with other content does not rewrite that image", async () => {
    const img = makeImage();
    const rs = await pushImage(s.url, img);
    assert.deepEqual(
      rs.slice(1).map((r) => r.status),
      [200, 200, 200],
    );
    assert.equal((await putTag(s.url, 'victim/app', 'latest', img.id)).status, 200);
    // another pusher's schema1 image claims the same v1 id for other json and another layer
    const layer = gzipSync(tarOf({ 'evil.txt': 'not the victim\n' }));
    const r = await request(s.url, `/v2/other/app/blobs/uploads/?digest=${sha(layer)}`, { method: 'POST', body: layer });
    assert.equal(r.status, 201, r.text);
    const json = JSON.stringify({ id: img.id, created: '2015-06-01T00:00:00Z', architecture: 'amd64', os: 'linux', comment: 'other' });
    const payload = schema1Payload('other/app', 'latest', 'amd64', [{ blobSum: sha(layer), v1Compatibility: json }]);
    const put = await request(s.url, '/v2/other/app/manifests/latest', {
      method: 'PUT',
      body: payload,
      headers: { 'Content-Type': 'application/vnd.docker.distribution.manifest.v1+json' },
    });
    assert.equal(put.status, 201, put.text);
    // the victim's image is what its pusher pushed
    assert.deepEqual((await request(s.url, `/v1/images/${img.id}/json`)).body, img.json);
    assert.deepEqual((await request(s.url, `/v1/images/${img.id}/layer`)).body, img.layer);
    // the schema1 push stands for v2 clients; v1 clients get no view of it
    assert.equal(
      (await request(s.url, '/v2/other/app/manifests/latest', { headers: { Accept: 'application/vnd.docker.distribution.manifest.v1+json' } })).status,
      200,
    );
    assert.equal((await request(s.url, '/v1/repositories/other/app/tags/latest')).status, 404);
  });
});
