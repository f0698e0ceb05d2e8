/**
 * Issue 11 item 4: the stand-in index of a standalone registry (spec §3.12) answers /v1/search with
 * the index's response shape and paging (spec §3.11, I12): num_pages, num_results, page, page_size,
 * query, results; `n` (page size) clamped to 1…100, default 25; `page` ≥ 1, default 1.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { request } from '../helpers/http.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

interface SearchBody {
  num_pages: number;
  num_results: number;
  page: number;
  page_size: number;
  query: string;
  results: { name: string; description: string; star_count: number; is_official: boolean; is_trusted: boolean; is_automated: boolean }[];
}

const APPS = Array.from({ length: 30 }, (_, i) => `team/app${String(i).padStart(2, '0')}`);
const OTHERS = ['library/busybox', 'zeta/app', 'a/happy', 'other/tool'];

describe('GET /v1/search on a standalone registry', () => {
  let s: TestServer;
  const search = async (qs: string): Promise<SearchBody> => {
    const r = await request(s.url, `/v1/search?${qs}`, { headers: { 'X-Docker-Token': 'true' } });
    assert.equal(r.status, 200, qs);
    assert.equal(r.headers['content-type'], 'application/json');
    return r.json<SearchBody>();
  };

  before(async () => {
    s = await startTestServer({ standalone: true });
    // the stand-in index records a repository at the first image-list PUT (push step 1)
    for (const name of [...OTHERS, ...APPS].reverse()) {
      const r = await request(s.url, `/v1/repositories/${name}/`, { method: 'PUT', body: '[]', headers: { 'Content-Type': 'application/json' } });
      assert.equal(r.status, 200, name);
    }
  });
  after(() => s.stop());

  it('answers with the index fields: first page of 25 by default', async () => {
    const b = await search('q=app');
    assert.deepEqual(Object.keys(b).sort(), ['num_pages', 'num_results', 'page', 'page_size', 'query', 'results']);
    assert.equal(b.query, 'app');
    assert.equal(b.num_results, 32);
    assert.equal(b.num_pages, 2);
    assert.equal(b.page, 1);
    assert.equal(b.page_size, 25);
    assert.equal(b.results.length, 25);
    assert.deepEqual(b.results[1], { name: 'team/app00', description: '', star_count: 0, is_official: false, is_trusted: false, is_automated: false });
  });

  it('ranks like the index: exact name, then name prefix, then substring; then by name', async () => {
    const all = await search('q=app&n=100');
    assert.deepEqual(
      all.results.map((r) => r.name),
      ['zeta/app', ...APPS, 'a/happy'],
    );
    assert.equal(all.num_pages, 1);
  });

  it('pages with n and page', async () => {
    const p2 = await search('q=app&page=2');
    assert.deepEqual(
      p2.results.map((r) => r.name),
      [...APPS.slice(24), 'a/happy'],
    );
    assert.deepEqual([p2.page, p2.page_size, p2.num_pages, p2.num_results], [2, 25, 2, 32]);
    const p3 = await search('q=app&n=10&page=3');
    assert.deepEqual(
      p3.results.map((r) => r.name),
      APPS.slice(19, 29),
    );
    assert.deepEqual([p3.page, p3.page_size, p3.num_pages, p3.num_results], [3, 10, 4, 32]);
    const past = await search('q=app&n=10&page=9');
    assert.deepEqual(past.results, []);
    assert.deepEqual([past.page, past.page_size, past.num_pages, past.num_results], [9, 10, 4, 32]);
  });

  it('clamps n to 1…100 and page to ≥ 1 as the index does, never an error', async () => {
    const cases: [string, number, number][] = [
      ['n=0', 1, 1],
      ['n=-5', 1, 1],
      ['n=1000', 100, 1],
      ['n=abc', 25, 1],
      ['n=2.7', 2, 1],
      ['page=0', 25, 1],
      ['page=-3', 25, 1],
      ['page=abc', 25, 1],
      ['page=2.9', 25, 2],
      ['n=', 1, 1],
      ['n=3&n=4', 25, 1],
    ];
    for (const [qs, size, page] of cases) {
      const b = await search(`q=app&${qs}`);
      assert.equal(b.page_size, size, qs);
      assert.equal(b.page, page, qs);
      assert.equal(b.num_pages, Math.ceil(32 / size), qs);
      assert.equal(b.results.length, Math.max(0, Math.min(size, 32 - (page - 1) * size)), qs);
    }
  });

  it('reads n and page exactly as the index (I12) does', async () => {
    const idx = await startTestServer({ standalone: false });
    try {
      for (const qs of ['n=0', 'n=1000', 'n=abc', 'n=2.7', 'n=', 'page=-3', 'page=abc', 'page=2.9', 'n=3&n=4', 'n=7&page=4']) {
        const r = await request(idx.url, `/v1/search?q=x&${qs}`);
        assert.equal(r.status, 200, qs);
        const want = r.json<SearchBody>();
        const got = await search(`q=x&${qs}`);
        assert.deepEqual([got.page, got.page_size], [want.page, want.page_size], qs);
      }
    } finally {
      await idx.stop();
    }
  });

  it('an empty query lists every repository; official ones are flagged', async () => {
    const b = await search('n=100');
    assert.equal(b.query, '');
    assert.equal(b.num_results, 34);
    const busybox = b.results.find((r) => r.name === 'library/busybox');
    assert.deepEqual(busybox, { name: 'library/busybox', description: '', star_count: 0, is_official: true, is_trusted: false, is_automated: false });
  });

  it('no match: zero pages, empty results', async () => {
    const b = await search('q=nothing-like-this');
    assert.deepEqual(b, { num_pages: 0, num_results: 0, page: 1, page_size: 25, query: 'nothing-like-this', results: [] });
  });
});
