import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from '../helpers/http.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { pushV2 } from '../helpers/v2-client.js';
import { chunkedStream, DOCKER_UA, makeImage, pushImage } from '../helpers/v1-client.js';

const S2 = 'application/vnd.docker.distribution.manifest.v2+json';
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Manifest-by-tag and tag-list answers are kept per node (src/v2/routes.ts AnswerCache): a node
 * sees its own writes at once and another node's within metadata_cache_ttl, never later.
 */
describe('answers kept per node: own writes at once, other nodes within metadata_cache_ttl', () => {
  let dir: string;
  let a: TestServer;
  let b: TestServer;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'lr-answers-'));
    a = await startTestServer({ standalone: true, v2: true, storage_delete: true, metadata_cache_ttl: 0.5 }, { dataDir: dir });
    b = await startTestServer({ standalone: true, v2: true, storage_delete: true, metadata_cache_ttl: 0.5 }, { dataDir: dir });
  });
  after(async () => {
    await a.stop();
    await b.stop();
    await rm(dir, { recursive: true, force: true });
  });

  const digestOf = async (s: TestServer, tag: string): Promise<string | number> => {
    const r = await request(s.url, `/v2/shared/app/manifests/${tag}`, { headers: { Accept: S2 } });
    return r.status === 200 ? String(r.headers['docker-content-digest']) : r.status;
  };
  const tagsOf = async (s: TestServer): Promise<string[]> => (await request(s.url, '/v2/shared/app/tags/list')).json<{ tags: string[] }>().tags;

  it('a node answers with its own new tag and manifest at once', async () => {
    const first = await pushV2(a.url, 'shared/app', 'v1', {}, 'one');
    assert.equal(await digestOf(a, 'v1'), first.digest);
    assert.deepEqual(await tagsOf(a), ['v1']);
    const second = await pushV2(a.url, 'shared/app', 'v1', {}, 'two');
    assert.equal(await digestOf(a, 'v1'), second.digest, 'a re-tag through this node shows at once');
    await pushV2(a.url, 'shared/app', 'v2', {}, 'three');
    assert.deepEqual(await tagsOf(a), ['v1', 'v2']);
    assert.equal((await request(a.url, '/v2/shared/app/manifests/v2', { method: 'DELETE' })).status, 202);
    assert.deepEqual(await tagsOf(a), ['v1'], 'a delete through this node shows at once');
    assert.equal(await digestOf(a, 'v2'), 404);
  });

  it("another node's re-tag and new tag show within the TTL", async () => {
    const before = await digestOf(a, 'v1');
    assert.deepEqual(await tagsOf(a), ['v1']);
    const moved = await pushV2(b.url, 'shared/app', 'v1', {}, 'moved by b');
    await pushV2(b.url, 'shared/app', 'v3', {}, 'new on b');
    assert.notEqual(moved.digest, before);
    // within the TTL node A may still answer the old ones; after it, never
    await sleep(700);
    assert.equal(await digestOf(a, 'v1'), moved.digest);
    assert.deepEqual(await tagsOf(a), ['v1', 'v3']);
  });

  it('concurrent requests for an expired answer all get the right one', async () => {
    await sleep(600);
    const all = await Promise.all(Array.from({ length: 32 }, () => tagsOf(a)));
    for (const t of all) assert.deepEqual(t, ['v1', 'v3']);
    const missing = await Promise.all(Array.from({ length: 8 }, () => request(a.url, '/v2/shared/nothing/tags/list')));
    for (const r of missing) assert.equal(r.status, 404);
  });
});

/**
 * v1 image records (GET …/json, …/ancestry, …/layer) are kept per node once the image is complete
 * (src/content/v1-images.ts V1Images.complete): an image being pushed is never served nor kept,
 * and another node's delete shows within metadata_cache_ttl.
 */
describe('v1 image records kept per node: complete images only, other nodes within metadata_cache_ttl', () => {
  const TTL = 1.5;
  let dir: string;
  let a: TestServer;
  let b: TestServer;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'lr-v1records-'));
    a = await startTestServer({ standalone: true, v2: true, storage_delete: true, metadata_cache_ttl: TTL }, { dataDir: dir });
    b = await startTestServer({ standalone: true, v2: true, storage_delete: true, metadata_cache_ttl: TTL }, { dataDir: dir });
  });
  after(async () => {
    await a.stop();
    await b.stop();
    await rm(dir, { recursive: true, force: true });
  });
  const common = { 'User-Agent': DOCKER_UA };

  it('a push in progress on another node is never served; its completion shows at once', async () => {
    const parent = makeImage();
    const img = makeImage(parent.id);
    assert.equal((await pushImage(b.url, parent)).at(-1)!.status, 200);
    const put = await request(b.url, `/v1/images/${img.id}/json`, {
      method: 'PUT',
      headers: { ...common, 'Content-Type': 'application/json' },
      body: img.json,
    });
    assert.equal(put.status, 200);
    for (let i = 0; i < 3; i++) {
      assert.equal((await request(a.url, `/v1/images/${img.id}/json`)).status, 400, 'json of an image being pushed');
      assert.equal((await request(a.url, `/v1/images/${img.id}/ancestry`)).status, 400, 'ancestry of an image being pushed');
    }
    const layer = await request(b.url, `/v1/images/${img.id}/layer`, {
      method: 'PUT',
      headers: { ...common, 'Content-Type': 'application/octet-stream' },
      body: chunkedStream(img.layer),
    });
    assert.equal(layer.status, 200, layer.text);
    assert.equal((await request(a.url, `/v1/images/${img.id}/json`)).status, 400, 'layer stored, checksum not yet: still being pushed');
    const sum = await request(b.url, `/v1/images/${img.id}/checksum`, {
      method: 'PUT',
      headers: { ...common, 'X-Docker-Checksum-Payload': img.payload, ...(img.tarsum ? { 'X-Docker-Checksum': img.tarsum } : {}) },
      body: '',
    });
    assert.equal(sum.status, 200, sum.text);
    // complete now: node A answers at once (nothing negative was kept), with every header
    const json = await request(a.url, `/v1/images/${img.id}/json`);
    assert.equal(json.status, 200);
    assert.deepEqual(json.body, img.json);
    assert.equal(json.headers['x-docker-size'], String(img.layer.length));
    assert.equal(json.headers['x-docker-checksum-payload'], img.payload);
    assert.deepEqual((await request(a.url, `/v1/images/${img.id}/ancestry`)).json(), [img.id, parent.id]);
    const bytes = await request(a.url, `/v1/images/${img.id}/layer`);
    assert.equal(bytes.status, 200);
    assert.deepEqual(bytes.body, img.layer);
  });

  it("another node's delete and new push of the id show within the TTL, never the half-pushed image", async () => {
    const img = makeImage();
    assert.equal((await pushImage(b.url, img)).at(-1)!.status, 200);
    assert.equal((await request(a.url, `/v1/images/${img.id}/json`)).status, 200);
    const readAt = Date.now();
    // node B drops the records (as gc or a repository delete does) and a new push of the same id begins
    await b.driver.delete(`v1/images/${img.id}`);
    const other = Buffer.from(JSON.stringify({ id: img.id, created: '2026-12-03T00:00:00Z', comment: 'pushed again, not finished' }));
    const put = await request(b.url, `/v1/images/${img.id}/json`, { method: 'PUT', headers: { ...common, 'Content-Type': 'application/json' }, body: other });
    assert.equal(put.status, 200, put.text);
    // within the TTL node A answers the complete image it read, or "being uploaded"; never the new json
    const seen: number[] = [];
    while (Date.now() - readAt < TTL * 1000 + 300) {
      const r = await request(a.url, `/v1/images/${img.id}/json`);
      seen.push(r.status);
      if (r.status === 200) {
        assert.deepEqual(r.body, img.json, 'only the complete image that was read');
        assert.equal(r.headers['x-docker-checksum-payload'], img.payload);
      } else assert.equal(r.status, 400, r.text);
      await sleep(100);
    }
    assert.ok(seen[0] === 200, `the complete image is served from memory within the TTL (statuses: ${seen.join(',')})`);
    assert.equal((await request(a.url, `/v1/images/${img.id}/json`)).status, 400, 'after the TTL: the new push in progress');
    assert.equal((await request(a.url, `/v1/images/${img.id}/ancestry`)).status, 400);
    assert.equal((await request(a.url, `/v1/images/${img.id}/layer`)).status, 400);
  });
});
