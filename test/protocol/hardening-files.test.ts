import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { gzipSync } from 'node:zlib';
import { request } from '../helpers/http.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { chunkedStream, DOCKER_UA, payloadChecksum, sha256hex, tarOf } from '../helpers/v1-client.js';
import { FILES_CACHE_MAX } from '../../src/content/v1-files.js';

/** A ustar header block of an empty regular file (mtime 0, mode 0644, root). */
function header(name: string): Buffer {
  const h = Buffer.alloc(512);
  h.write(name, 0, 100, 'utf8');
  h.write('0000644\0', 100);
  h.write('0000000\0', 108);
  h.write('0000000\0', 116);
  h.write('00000000000\0', 124);
  h.write('00000000000\0', 136);
  h.write('        ', 148);
  h.write('0', 156);
  h.write('ustar\0', 257);
  h.write('00', 263);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148);
  return h;
}

/** A gzipped layer of n empty files named f/<i> (what "a small layer with many entries" looks like). */
function manyFiles(n: number): Buffer {
  const blocks: Buffer[] = [];
  for (let i = 0; i < n; i++) blocks.push(header(`f/${i.toString().padStart(7, '0')}`));
  blocks.push(Buffer.alloc(1024));
  return gzipSync(Buffer.concat(blocks), { level: 1 });
}

/** Push one image with this layer to a standalone registry; returns its id. */
async function pushLayer(url: string, layer: Buffer): Promise<string> {
  const id = sha256hex(Buffer.from(`files-${Math.random()}-${Date.now()}`));
  const json = Buffer.from(JSON.stringify({ id, created: '2015-01-01T00:00:00Z', os: 'linux' }));
  const h = { 'User-Agent': DOCKER_UA };
  assert.equal((await request(url, `/v1/images/${id}/json`, { method: 'PUT', body: json, headers: h })).status, 200);
  assert.equal((await request(url, `/v1/images/${id}/layer`, { method: 'PUT', body: chunkedStream(layer, 256 * 1024), headers: h })).status, 200);
  assert.equal(
    (await request(url, `/v1/images/${id}/checksum`, { method: 'PUT', body: '', headers: { ...h, 'X-Docker-Checksum-Payload': payloadChecksum(json, layer) } }))
      .status,
    200,
  );
  return id;
}

type Entry = [string, string, boolean, number, number, number, number, number];

/**
 * Security issue 10, finding 9: GET /v1/images/<id>/files built the whole member list in memory (a
 * small layer with millions of entries: a 16 MB body, 4 GB RSS with 8 requests at once) and kept it
 * whatever its size. Now the listing is streamed while the tar is parsed and kept only when small.
 * (The entry cap, FILES_MAX_ENTRIES, is tested on filesListing itself: test/unit/content/v1-files.test.ts.)
 */
describe('hardening: GET /v1/images/<id>/files streams, caps, and keeps only small listings', () => {
  let s: TestServer;
  before(async () => {
    s = await startTestServer({ standalone: true });
  });
  after(() => s?.stop());

  const kept = async (id: string): Promise<boolean> => {
    try {
      await s.driver.stat(`v1/images/${id}/_files`);
      return true;
    } catch {
      return false;
    }
  };

  it('a small listing: exact body in the Python format, kept beside the image, the same from the kept copy', async () => {
    const id = await pushLayer(s.url, gzipSync(tarOf({ 'etc/hosts': 'x\n', './.wh.gone': '' })));
    const r = await request(s.url, `/v1/images/${id}/files`);
    assert.equal(r.status, 200);
    assert.equal(r.headers['content-type'], 'application/json');
    assert.equal(r.headers['cache-control'], 'public, max-age=31536000');
    assert.equal(r.text, '[["etc/hosts", "f", false, 2, 1686143232, 420, 0, 0], ["/gone", "f", true, 0, 1686143232, 420, 0, 0]]');
    assert.ok(await kept(id));
    const again = await request(s.url, `/v1/images/${id}/files`);
    assert.equal(again.status, 200);
    assert.equal(again.text, r.text);
  });

  it('a listing larger than the cache limit: streamed (no Content-Length), complete, not kept; 8 requests at once', async () => {
    const n = 30_000; // ~1.3 MB of JSON
    const id = await pushLayer(s.url, manyFiles(n));
    const answers = await Promise.all(Array.from({ length: 8 }, () => request(s.url, `/v1/images/${id}/files`)));
    for (const r of answers) {
      assert.equal(r.status, 200);
      assert.equal(r.headers['content-length'], undefined);
      assert.equal(r.headers['transfer-encoding'], 'chunked');
      assert.equal(r.text, answers[0]!.text);
    }
    const r = answers[0]!;
    assert.ok(r.body.length > FILES_CACHE_MAX);
    const list = r.json<Entry[]>();
    assert.equal(list.length, n);
    assert.deepEqual(list[0], ['f/0000000', 'f', false, 0, 0, 420, 0, 0]);
    assert.deepEqual(list[n - 1], [`f/${String(n - 1).padStart(7, '0')}`, 'f', false, 0, 0, 420, 0, 0]);
    assert.ok(r.text.startsWith('[["f/0000000", "f", false, 0, 0, 420, 0, 0], ["f/0000001"'), 'the Python format, streamed too');
    assert.equal(await kept(id), false, 'a large listing is not kept in storage');
  });

  it('a layer that is not a tar: 400 Layer format not supported, before any listing is sent', async () => {
    const id = await pushLayer(s.url, gzipSync(Buffer.from('this is not a tar archive, only text that goes on '.repeat(40))));
    const r = await request(s.url, `/v1/images/${id}/files`);
    assert.equal(r.status, 400);
    assert.equal(r.text, '{"error": "Layer format not supported"}');
    assert.equal(await kept(id), false);
  });

  it('the checks before the listing stay: bad id 404, unknown image 404, If-Modified-Since 304', async () => {
    assert.equal((await request(s.url, '/v1/images/nothex/files')).text, '{"error": "Invalid image ID"}');
    const unknown = await request(s.url, `/v1/images/${'e'.repeat(64)}/files`);
    assert.equal(unknown.status, 404);
    assert.equal(unknown.text, '{"error": "Image not found"}');
    const id = await pushLayer(s.url, gzipSync(tarOf({ a: 'a' })));
    const r = await request(s.url, `/v1/images/${id}/files`, { headers: { 'If-Modified-Since': 'Thu, 01 Jan 1970 00:00:00 GMT' } });
    assert.equal(r.status, 304);
  });
});
