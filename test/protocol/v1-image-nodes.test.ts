import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { request, type Response } from '../helpers/http.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { DOCKER_UA, makeImage, payloadChecksum, tarOf, type TestImage } from '../helpers/v1-client.js';
import { Site } from '../helpers/accounts.js';
import { saveUser } from '../../src/db/users.js';

const ALICE = ['alice', 'alicepw'] as const;

/**
 * A v1 push's image records with two registry nodes on one storage, each with its metadata cache
 * (metadata_cache_ttl 30 s), and an index: images are then scoped to repositories, and their
 * records (v1/repositories/…/_images/<id>/) are among what the cache keeps. The steps of a push
 * decide under the image's lock, which every node takes (a StorageLock), but they read the records
 * through the node's cache: a node that had seen the image in progress (its mark kept in the cache)
 * still saw it so after another node completed it, and a PUT json of the id with other bytes
 * restarted the complete image (its layer link and checksum removed, its json replaced) instead of
 * answering 409.
 */
describe('a v1 image pushed through one node, PUT again through another sharing the storage', () => {
  let dir: string;
  let idx: TestServer;
  let a: TestServer;
  let b: TestServer;
  let site: Site;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'lr-v1-image-nodes-'));
    idx = await startTestServer({ bcrypt_cost: 4 }, { role: 'index', dataDir: join(dir, 'index') });
    await saveUser(idx.db!, { username: ALICE[0], email: 'alice@example.com', password: ALICE[1], active: true }, { cost: 4 });
    const reg = { standalone: false, index_endpoint: idx.url, metadata_cache_ttl: 30 };
    a = await startTestServer(reg, { role: 'registry', dataDir: join(dir, 'registry') });
    b = await startTestServer(reg, { role: 'registry', dataDir: join(dir, 'registry') });
    site = new Site(idx.url, a.url);
  });
  after(async () => {
    await a?.stop();
    await b?.stop();
    await idx?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  const headers = (token: string, more: Record<string, string> = {}) => ({ 'User-Agent': DOCKER_UA, Authorization: `Token ${token}`, ...more });
  const putJson = (s: TestServer, img: TestImage, token: string): Promise<Response> =>
    request(s.url, `/v1/images/${img.id}/json`, { method: 'PUT', headers: headers(token, { 'Content-Type': 'application/json' }), body: img.json });

  it('a PUT json of an id the other node completed answers 409 and leaves the image as pushed', async () => {
    const repo = 'alice/app';
    const img = makeImage();
    const layer = gzipSync(tarOf({ 'other.txt': 'other bytes\n' }));
    const json = Buffer.from(JSON.stringify({ ...(JSON.parse(img.json.toString('utf8')) as object), comment: 'other bytes' }));
    const other: TestImage = { id: img.id, json, layer, payload: payloadChecksum(json, layer) };
    const token = await site.claim(repo, ALICE, [img.id]);

    // B: PUT json, the image is in progress
    assert.equal((await putJson(b, img, token)).status, 200);
    // A sees it so (its cache keeps the mark)
    const seen = await request(a.url, `/v1/images/${img.id}/json`, { headers: headers(token) });
    assert.equal(seen.status, 400, seen.text);
    assert.match(seen.text, /being uploaded/);
    // B completes it
    const l = await request(b.url, `/v1/images/${img.id}/layer`, {
      method: 'PUT',
      headers: headers(token, { 'Content-Type': 'application/octet-stream' }),
      body: img.layer,
    });
    assert.equal(l.status, 200, l.text);
    const c = await request(b.url, `/v1/images/${img.id}/checksum`, {
      method: 'PUT',
      headers: headers(token, { 'X-Docker-Checksum-Payload': img.payload }),
      body: '',
    });
    assert.equal(c.status, 200, c.text);

    // A: the same id with other bytes
    const again = await putJson(a, other, token);
    assert.equal(again.status, 409, `PUT json of a complete image through the other node: ${again.status} ${again.text}`);

    // the image is still B's, complete, through either node
    const read = await site.readToken(repo, ALICE);
    assert.ok(read);
    for (const s of [b, a]) {
      const j = await request(s.url, `/v1/images/${img.id}/json`, { headers: headers(read) });
      assert.equal(j.status, 200, j.text);
      assert.deepEqual(j.body, img.json);
      const got = await request(s.url, `/v1/images/${img.id}/layer`, { headers: headers(read) });
      assert.equal(got.status, 200, got.text);
      assert.deepEqual(got.body, img.layer);
    }
  });
});
