import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from '../helpers/http.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

/**
 * The stand-in index's image list with two standalone nodes on one storage (docs/scale-out.md),
 * each with its metadata cache. A merge runs under a storage lock both nodes take, but it read the
 * stored list through the node's cache: a node that had served GET images held that list for
 * metadata_cache_ttl, and its next merge wrote it back with its own entries, dropping whatever the
 * other node had merged meanwhile.
 */
describe('PUT images through two nodes sharing the storage', () => {
  let dir: string;
  let a: TestServer;
  let b: TestServer;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'lr-images-nodes-'));
    a = await startTestServer({ standalone: true, metadata_cache_ttl: 30 }, { dataDir: dir });
    b = await startTestServer({ standalone: true, metadata_cache_ttl: 30 }, { dataDir: dir });
  });
  after(async () => {
    await a?.stop();
    await b?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  const hex = (n: number): string => n.toString(16).padStart(64, '0');
  const put = (s: TestServer, path: string, ids: string[]) =>
    request(s.url, path, { method: 'PUT', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(ids.map((id) => ({ id }))) });
  const listed = async (s: TestServer, path: string): Promise<Set<string>> => {
    const r = await request(s.url, path);
    assert.equal(r.status, 200, r.text.slice(0, 200));
    return new Set(r.json<{ id: string }[]>().map((e) => e.id));
  };

  it('a merge on one node keeps what the other merged after this node last read the list', async () => {
    const path = '/v1/repositories/nodes/one/images';
    assert.equal((await put(a, path, [hex(1)])).status, 204);
    assert.deepEqual([...(await listed(a, path))], [hex(1)]); // a now holds the list in its cache
    assert.equal((await put(b, path, [hex(2)])).status, 204);
    assert.equal((await put(a, path, [hex(3)])).status, 204);
    const ids = await listed(b, path);
    for (const id of [hex(1), hex(2), hex(3)]) assert.ok(ids.has(id), `${id.slice(-2)} lost: ${[...ids].map((i) => i.slice(-2)).join(',')}`);
  });

  it('PUTs and GETs at once through both nodes lose no entry', async () => {
    const path = '/v1/repositories/nodes/many/images';
    assert.equal((await put(a, path, [hex(1000)])).status, 204);
    const n = 30;
    const answers = await Promise.all(
      Array.from({ length: n }, async (_, i) => {
        const node = i % 2 === 0 ? a : b;
        await listed(node, path); // a pull's read between pushes: each node keeps the list it read
        return put(node, path, [hex(2 * i), hex(2 * i + 1)]);
      }),
    );
    for (const r of answers) assert.equal(r.status, 204, r.text);
    const ids = await listed(b, path);
    const missing = [hex(1000), ...Array.from({ length: 2 * n }, (_, i) => hex(i))].filter((id) => !ids.has(id));
    assert.equal(missing.length, 0, `${missing.length} of ${2 * n + 1} entries lost`);
  });
});
