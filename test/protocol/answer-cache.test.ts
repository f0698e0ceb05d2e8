import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from '../helpers/http.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { pushV2 } from '../helpers/v2-client.js';

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
