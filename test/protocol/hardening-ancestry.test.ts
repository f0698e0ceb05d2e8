import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { gzipSync } from 'node:zlib';
import { request } from '../helpers/http.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { makeChain, makeImage, pushImage, tarOf, type TestImage } from '../helpers/v1-client.js';
import { keys } from '../../src/content/keys.js';
import { S2, sha } from '../helpers/accounts.js';
import { MAX_ANCESTRY } from '../../src/content/v1-images.js';

const SCHEMA1 = 'application/vnd.docker.distribution.manifest.v1+prettyjws';

/** A one-layer schema2 image whose config has `entries` history entries, all but the last empty layers. */
function longHistory(entries: number): { blobs: Buffer[]; manifest: Buffer } {
  const tar = tarOf({ 'f.txt': `${entries}\n` });
  const layer = gzipSync(tar);
  const history = [...Array.from({ length: entries - 1 }, (_, i) => ({ created_by: `ENV X=${i}`, empty_layer: true })), { created_by: 'ADD f.txt' }];
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [sha(tar)] }, history }));
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: S2,
      config: { mediaType: 'application/vnd.docker.container.image.v1+json', size: config.length, digest: sha(config) },
      layers: [{ mediaType: 'application/vnd.docker.image.rootfs.diff.tar.gzip', size: layer.length, digest: sha(layer) }],
    }),
  );
  return { blobs: [config, layer], manifest };
}

/**
 * A v1 image's ancestry record is its parent's plus its id, and nothing limited a chain's length: a
 * pusher making a chain of N images stored O(N²) bytes (10,000 images: ~6.5 GB of ancestry records),
 * and the v2 bridge did the same for a config's history (an 8 MiB config holds ~400,000 empty_layer
 * entries, one v1 image each). A chain now holds at most MAX_ANCESTRY images, as the v1 mirror already
 * required of its upstream.
 */
describe('hardening: a v1 chain holds at most MAX_ANCESTRY images', () => {
  let s: TestServer;
  before(async () => {
    s = await startTestServer({ standalone: true, v2: true });
  });
  after(() => s?.stop());

  it(`the image past ${MAX_ANCESTRY} is refused at PUT json (400), nothing written for it; the chain below stands`, async () => {
    // the chain below the top: two images pushed, then one stored with the ancestry the registry
    // records for the image MAX_ANCESTRY - 1 deep (only a parent's json and ancestry are read at a
    // PUT json; pushing the whole chain over HTTP took ~10 s, as each PUT json writes all of it again)
    const [root, mid] = makeChain(2) as [TestImage, TestImage];
    for (const img of [root, mid])
      assert.deepEqual(
        (await pushImage(s.url, img)).map((r) => r.status),
        [404, 200, 200, 200],
      );
    const below = makeImage(mid.id);
    const between = Array.from({ length: MAX_ANCESTRY - 4 }, () => makeImage().id);
    await s.driver.putContent(keys.imageJson(null, below.id), below.json);
    await s.driver.putContent(keys.ancestry(null, below.id), Buffer.from(JSON.stringify([below.id, mid.id, ...between, root.id])));
    const top = makeImage(below.id);
    const rs = await pushImage(s.url, top);
    assert.deepEqual(
      rs.map((r) => r.status),
      [404, 200, 200, 200],
      rs.map((r) => r.text).join(' | '),
    );
    const anc = await request(s.url, `/v1/images/${top.id}/ancestry`);
    assert.equal(anc.status, 200);
    assert.equal(anc.json<string[]>().length, MAX_ANCESTRY);

    const past = makeImage(top.id);
    const put = await request(s.url, `/v1/images/${past.id}/json`, { method: 'PUT', headers: { 'Content-Type': 'application/json' }, body: past.json });
    assert.equal(put.status, 400, put.text);
    assert.equal(put.text, `{"error": "Image ancestry too long: ${MAX_ANCESTRY + 1} images, a chain may hold at most ${MAX_ANCESTRY}"}`);
    for (const what of ['json', 'ancestry']) {
      const r = await request(s.url, `/v1/images/${past.id}/${what}`);
      assert.equal(r.status, 404, `${what}: ${r.text}`);
    }
    // not even an in-progress mark: the layer has no image to go to
    const layer = await request(s.url, `/v1/images/${past.id}/layer`, { method: 'PUT', body: past.layer });
    assert.equal(layer.status, 404, layer.text);
  });

  it(`a v2 image of more than ${MAX_ANCESTRY} history entries is pushed for v2 clients, without a v1 or schema1 view`, async () => {
    for (const [name, entries, viewed] of [
      ['long/history', MAX_ANCESTRY + 1, false],
      ['most/history', 100, true],
    ] as const) {
      const img = longHistory(entries);
      for (const b of img.blobs) assert.equal((await request(s.url, `/v2/${name}/blobs/uploads/?digest=${sha(b)}`, { method: 'POST', body: b })).status, 201);
      const put = await request(s.url, `/v2/${name}/manifests/t`, { method: 'PUT', body: img.manifest, headers: { 'Content-Type': S2 } });
      assert.equal(put.status, 201, put.text);
      const tags = await request(s.url, `/v1/repositories/${name}/tags`);
      const s1 = await request(s.url, `/v2/${name}/manifests/t`, { headers: { Accept: SCHEMA1 } });
      if (viewed) {
        assert.equal(tags.status, 200, tags.text);
        assert.equal(s1.status, 200, s1.text);
        const top = tags.json<{ t: string }>().t;
        assert.equal((await request(s.url, `/v1/images/${top}/ancestry`)).json<string[]>().length, entries);
      } else {
        assert.equal(tags.status, 404, tags.text);
        assert.equal(s1.status, 404, s1.text);
        assert.match(s1.text, /MANIFEST_UNKNOWN/);
      }
    }
  });
});
