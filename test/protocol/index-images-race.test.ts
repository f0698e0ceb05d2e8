import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { request } from '../helpers/http.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

/**
 * The stand-in index's image list (standalone, `_index_images`): each PUT images reads the stored
 * list, merges its entries and writes it back. Two pushes of one repository at once (two 1.x
 * clients, or a client and the v2→v1 bridge) each wrote the list it read plus its own entries:
 * whichever wrote last dropped the other's. Before the merge took a lock, 40 PUTs at once left
 * about a third of their entries listed.
 */
describe('concurrent PUT images on the stand-in index', () => {
  let s: TestServer;
  before(async () => {
    s = await startTestServer({ standalone: true, metadata_cache_ttl: 0 });
  });
  after(() => s?.stop());

  it('every entry of 40 PUTs at once is listed afterwards', async () => {
    const hex = (n: number): string => n.toString(16).padStart(64, '0');
    const path = '/v1/repositories/race/list/images';
    const n = 40;
    const answers = await Promise.all(
      Array.from({ length: n }, (_, i) =>
        request(s.url, path, {
          method: 'PUT',
          headers: { 'Content-Type': 'application/json' },
          body: JSON.stringify([{ id: hex(2 * i) }, { id: hex(2 * i + 1), checksum: `sha256:${hex(i)}` }]),
        }),
      ),
    );
    for (const a of answers) assert.equal(a.status, 204, a.text);
    const got = await request(s.url, path);
    assert.equal(got.status, 200, got.text.slice(0, 200));
    const ids = new Set(got.json<{ id: string }[]>().map((e) => e.id));
    const missing = Array.from({ length: 2 * n }, (_, i) => hex(i)).filter((id) => !ids.has(id));
    assert.deepEqual(missing.length, 0, `${missing.length} of ${2 * n} entries lost`);
  });

  it('entries the index would refuse are refused here too (400, nothing merged): a non-id, a checksum past 255 characters or with a control character', async () => {
    const path = '/v1/repositories/race/strict/images';
    const id = 'a'.repeat(64);
    for (const body of [
      [{ id: 'x' }],
      [{ id: 'A'.repeat(64) }],
      [{ id, checksum: `sha256:${'b'.repeat(300)}` }],
      [{ id, checksum: 'sha256:\u0000' }],
      [{ id: 5 }],
    ]) {
      const r = await request(s.url, path, { method: 'PUT', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
      assert.equal(r.status, 400, `${JSON.stringify(body).slice(0, 80)}: ${r.status} ${r.text.slice(0, 100)}`);
    }
    assert.equal((await request(s.url, path)).status, 404, 'nothing was merged');
    const ok = await request(s.url, path, {
      method: 'PUT',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify([{ id, checksum: `sha256:${'c'.repeat(64)}` }]),
    });
    assert.equal(ok.status, 204, ok.text);
  });
});
