import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { request } from '../helpers/http.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { VECTORS } from '../helpers/paths.js';
import { fileStates } from '../helpers/files.js';
import { pushV1 } from '../helpers/gc-push.js';
import { makeChain, payloadChecksum, pushImage, putTag, type TestImage } from '../helpers/v1-client.js';
import { configFromV1Chain } from '../../src/content/bridge.js';

interface BridgeVector {
  v1_json_chain_root_first: string[];
  layer_blobs_base64_root_first: string[];
  expected_diff_ids: string[];
  expected_config: string;
  expected_config_digest: string;
}
const vec = JSON.parse(readFileSync(join(VECTORS, 'bridge', 'v1-to-config.json'), 'utf8')) as BridgeVector;
const sha = (b: Buffer | string): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const S2 = 'application/vnd.docker.distribution.manifest.v2+json';

describe('bridge: v1 chain → image config (vectors/bridge/v1-to-config.json)', () => {
  it('builds the config Docker 20.10 computed, byte for byte (the image ID matches)', () => {
    const chain = vec.v1_json_chain_root_first.map((j, i) => ({ json: Buffer.from(j), diffId: vec.expected_diff_ids[i]! }));
    const config = configFromV1Chain(chain);
    assert.equal(config.toString(), vec.expected_config);
    assert.equal(sha(config), vec.expected_config_digest);
  });
});

describe('bridge: a v1-pushed tag pulled through /v2/ as schema2', () => {
  let s: TestServer;
  let images: TestImage[];
  before(async () => {
    s = await startTestServer({ standalone: true, v2: true });
    images = vec.v1_json_chain_root_first.map((j, i) => {
      const json = Buffer.from(j);
      const layer = Buffer.from(vec.layer_blobs_base64_root_first[i]!, 'base64');
      return { id: (JSON.parse(j) as { id: string }).id, json, layer, payload: payloadChecksum(json, layer) };
    });
    for (const img of images) {
      const rs = await pushImage(s.url, img);
      assert.deepEqual(
        rs.map((r) => r.status),
        [404, 200, 200, 200],
        rs.map((r) => r.text).join(' '),
      );
    }
    assert.equal((await putTag(s.url, 'legacy/chain', 'latest', images[2]!.id)).status, 200);
  });
  after(() => s.stop());

  it('serves a schema2 manifest whose config digest is the Docker image ID and whose layers are the v1 blobs', async () => {
    const r = await request(s.url, '/v2/legacy/chain/manifests/latest', { headers: { Accept: S2 } });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.headers['content-type'], S2);
    const m = r.json<{ config: { digest: string; size: number }; layers: { mediaType: string; digest: string; size: number }[] }>();
    assert.equal(m.config.digest, vec.expected_config_digest);
    assert.deepEqual(
      m.layers.map((l) => [l.mediaType, l.digest, l.size]),
      images.map((img, i) => [
        i === 0 ? 'application/vnd.docker.image.rootfs.diff.tar.gzip' : 'application/vnd.docker.image.rootfs.diff.tar',
        sha(img.layer),
        img.layer.length,
      ]),
    );
    const config = await request(s.url, `/v2/legacy/chain/blobs/${m.config.digest}`);
    assert.equal(config.text, vec.expected_config);
    for (const img of images)
      assert.deepEqual((await request(s.url, `/v2/legacy/chain/blobs/${sha(img.layer)}`)).body, img.layer, 'the same bytes, not a copy');
    // the same image always yields the same manifest digest, also by digest
    const again = await request(s.url, '/v2/legacy/chain/manifests/latest', { method: 'HEAD', headers: { Accept: S2 } });
    assert.equal(again.headers['docker-content-digest'], r.headers['docker-content-digest']);
    assert.equal(r.headers['docker-content-digest'], sha(r.body));
    const byDigest = await request(s.url, `/v2/legacy/chain/manifests/${sha(r.body)}`, { headers: { Accept: S2 } });
    assert.deepEqual(byDigest.body, r.body);
    assert.deepEqual((await request(s.url, '/v2/legacy/chain/tags/list')).json(), { name: 'legacy/chain', tags: ['latest'] });
  });
});

describe('bridge: pulling a v1 tag through /v2/ writes nothing once its v2 form is stored', () => {
  let s: TestServer;
  let chain: TestImage[];
  before(async () => {
    // no metadata cache: every GET derives the manifest again from the stored records
    s = await startTestServer({ standalone: true, v2: true, metadata_cache_ttl: 0 });
    chain = makeChain(3);
    await pushV1(s.url, 'legacy/quiet', 'latest', chain);
  });
  after(() => s?.stop());

  const get = (ref = 'latest') => request(s.url, `/v2/legacy/quiet/manifests/${ref}`, { headers: { Accept: S2 } });

  it('the first GET stores the manifest, its config and links; later GETs and HEADs leave every file as it was', async () => {
    const first = await get();
    assert.equal(first.status, 200, first.text);
    const before = await fileStates(s.dataDir);
    const m = first.json<{ config: { digest: string } }>();
    assert.ok(
      [...before.keys()].some((k) => k.includes(m.config.digest.slice(7))),
      'the config blob is stored',
    );
    for (let i = 0; i < 3; i++) {
      const again = await get();
      assert.equal(again.status, 200);
      assert.deepEqual(again.body, first.body);
      assert.equal((await request(s.url, '/v2/legacy/quiet/manifests/latest', { method: 'HEAD', headers: { Accept: S2 } })).status, 200);
    }
    assert.deepEqual(await fileStates(s.dataDir), before, 'a pull rewrote stored files');
    assert.deepEqual((await get(sha(first.body))).body, first.body);
  });

  it('what is missing or different is written again: a poisoned manifest blob, a poisoned config, a removed layer link', async () => {
    const first = await get();
    const blobFile = (digest: string): string => join(s.dataDir, 'blobs', 'sha256', digest.slice(7, 9), digest.slice(7), 'data');
    const digest = sha(first.body);
    // wrong bytes of the right size where the manifest's bytes are
    await writeFile(blobFile(digest), Buffer.alloc(first.body.length, 0x21));
    assert.deepEqual((await get()).body, first.body);
    assert.deepEqual((await get(digest)).body, first.body, 'the manifest blob holds the derived bytes again');
    // the same with the config
    const config = first.json<{ config: { digest: string; size: number } }>().config;
    await writeFile(blobFile(config.digest), Buffer.alloc(config.size, 0x21));
    assert.deepEqual((await get()).body, first.body);
    assert.equal(sha((await request(s.url, `/v2/legacy/quiet/blobs/${config.digest}`)).body), config.digest, 'the config blob holds the derived bytes again');
    // a layer's link in the repository
    const layer = sha(chain[1]!.layer);
    const linkDir = join(s.dataDir, 'v2', 'repositories', 'legacy', 'quiet', '_layers');
    const linkFile = (await readdir(linkDir, { recursive: true })).find((f) => f.includes(layer.slice(7)));
    assert.ok(linkFile, 'the layer link is stored');
    await rm(join(linkDir, linkFile), { recursive: true });
    assert.equal((await request(s.url, `/v2/legacy/quiet/blobs/${layer}`, { method: 'HEAD' })).status, 404);
    assert.deepEqual((await get()).body, first.body);
    assert.equal((await request(s.url, `/v2/legacy/quiet/blobs/${layer}`, { method: 'HEAD' })).status, 200, 'the layer is linked again');
  });
});
