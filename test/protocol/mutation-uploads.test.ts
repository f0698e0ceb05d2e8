import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import { request, type Response } from '../helpers/http.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { DOCKER_UA, chunkedStream, makeImage } from '../helpers/v1-client.js';
import { pushV2 } from '../helpers/v2-client.js';

/**
 * Issue 17 (mutation testing, group "uploads"): what commits an upload — the digest check of a v2
 * upload before it is published (content/v2-uploads.ts finish) and the blob store's ingest and
 * publish (content/blob-store.ts) under v1 layer PUTs — through HTTP, looking at the storage
 * directory too: nothing is ever published at a digest its bytes do not hash to, no upload is left.
 */

const sha = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/** Every file (or, with all, every entry, folders too) under the data directory, relative. */
async function files(dir: string, all = false): Promise<string[]> {
  return (await readdir(dir, { recursive: true, withFileTypes: true }))
    .filter((e) => all || e.isFile())
    .map((e) => `${e.parentPath ?? e.path}/${e.name}`.slice(dir.length + 1));
}
const blobFiles = async (dir: string, hex: string) => (await files(dir)).filter((f) => f.includes(`blobs/sha256/${hex.slice(0, 2)}/${hex}/`));
/** What is left under uploads/: no file and no folder once every upload has ended. */
const uploadFiles = async (dir: string) => (await files(dir, true)).filter((f) => /(^|\/)uploads\/./.test(f));

describe('mutation group uploads: v2 uploads are published only at the digest of their bytes', () => {
  let s: TestServer;
  before(async () => {
    s = await startTestServer({ standalone: true, v2: true });
  });
  after(() => s?.stop());

  const v2 = (method: string, path: string, body?: Buffer, headers: Record<string, string> = {}) =>
    request(s.url, path, { method, headers: { ...(body ? { 'Content-Type': 'application/octet-stream' } : {}), ...headers }, ...(body ? { body } : {}) });
  const blob = (digest: string) => v2('GET', `/v2/up/app/blobs/${digest}`);
  const digestInvalid = (r: Response, expected: string, actual: string, label: string) => {
    assert.equal(r.status, 400, `${label}: ${r.status} ${r.text}`);
    const e = r.json<{ errors: { code: string; detail: unknown }[] }>().errors[0]!;
    assert.equal(e.code, 'DIGEST_INVALID', label);
    assert.deepEqual(e.detail, { expected, actual }, label);
  };
  const session = async (): Promise<string> => {
    const r = await v2('POST', '/v2/up/app/blobs/uploads/');
    assert.equal(r.status, 202, r.text);
    return String(r.headers.location);
  };
  const patch = async (loc: string, body: Buffer) => {
    const r = await v2('PATCH', loc, body);
    assert.equal(r.status, 202, r.text);
  };
  const finish = (loc: string, digest: string, body?: Buffer) => v2('PUT', `${loc}${loc.includes('?') ? '&' : '?'}digest=${digest}`, body);

  it('a single POST with the right digest is published; with a wrong one nothing is, at either digest', async () => {
    const bytes = randomBytes(3000);
    const good = await v2('POST', `/v2/up/app/blobs/uploads/?digest=${sha(bytes)}`, bytes);
    assert.equal(good.status, 201, good.text);
    assert.equal(good.headers['docker-content-digest'], sha(bytes));
    const got = await blob(sha(bytes));
    assert.equal(got.status, 200);
    assert.ok(got.body.equals(bytes));

    const other = randomBytes(3000);
    const claimed = sha(randomBytes(10));
    digestInvalid(await v2('POST', `/v2/up/app/blobs/uploads/?digest=${claimed}`, other), claimed, sha(other), 'single POST');
    assert.equal((await blob(claimed)).status, 404);
    assert.equal((await blob(sha(other))).status, 404);
    assert.deepEqual(await blobFiles(s.dataDir, claimed.slice(7)), []);
    assert.deepEqual(await blobFiles(s.dataDir, sha(other).slice(7)), []);
    assert.deepEqual(await uploadFiles(s.dataDir), []);
  });

  it('a session: chunks then a last chunk with the digest; chunks then a bare PUT; the digest covers every byte', async () => {
    const a = randomBytes(1500);
    const b = randomBytes(700);
    const c = randomBytes(300);
    const all = Buffer.concat([a, b, c]);
    const loc = await session();
    await patch(loc, a);
    await patch(loc, b);
    const done = await finish(loc, sha(all), c);
    assert.equal(done.status, 201, done.text);
    assert.ok((await blob(sha(all))).body.equals(all));

    const bare = await session();
    const d = randomBytes(2048);
    await patch(bare, d);
    const ok = await finish(bare, sha(d));
    assert.equal(ok.status, 201, ok.text);
    assert.ok((await blob(sha(d))).body.equals(d));
    assert.equal((await v2('GET', bare)).status, 404, 'a finished session is gone');
    assert.deepEqual(await uploadFiles(s.dataDir), []);
  });

  it('a session whose bytes do not give the digest: 400 DIGEST_INVALID, nothing published, the session dropped', async () => {
    const a = randomBytes(1000);
    const b = randomBytes(1000);
    const loc = await session();
    await patch(loc, a);
    // the digest of the first chunk only, then a last chunk: the whole no longer matches
    digestInvalid(await finish(loc, sha(a), b), sha(a), sha(Buffer.concat([a, b])), 'last chunk');
    assert.equal((await blob(sha(a))).status, 404);
    assert.equal((await blob(sha(Buffer.concat([a, b])))).status, 404);
    const gone = await v2('GET', loc);
    assert.equal(gone.status, 404, gone.text);
    assert.equal(gone.json<{ errors: { code: string }[] }>().errors[0]!.code, 'BLOB_UPLOAD_UNKNOWN');

    const bare = await session();
    await patch(bare, a);
    digestInvalid(await finish(bare, sha(b)), sha(b), sha(a), 'bare PUT');
    assert.equal((await blob(sha(a))).status, 404);
    assert.equal((await blob(sha(b))).status, 404);
    assert.deepEqual(await blobFiles(s.dataDir, sha(a).slice(7)), []);
    assert.deepEqual(await uploadFiles(s.dataDir), []);
  });

  it('manifests and configs are stored at the digest of their bytes (putSmall), and served back byte for byte', async () => {
    const pushed = await pushV2(s.url, 'up/small', 'v1');
    assert.equal(pushed.digest, sha(pushed.manifest));
    const m = await v2('GET', `/v2/up/small/manifests/${pushed.digest}`, undefined, { Accept: 'application/vnd.docker.distribution.manifest.v2+json' });
    assert.equal(m.status, 200, m.text);
    assert.ok(m.body.equals(pushed.manifest));
    assert.equal((await blobFiles(s.dataDir, pushed.digest.slice(7))).length, 1);
    const config = JSON.parse(pushed.manifest.toString()) as { config: { digest: string } };
    const c = await v2('GET', `/v2/up/small/blobs/${config.config.digest}`);
    assert.equal(c.status, 200);
    assert.equal(sha(c.body), config.config.digest);
  });

  it('the same blob pushed twice is accepted twice and stored once', async () => {
    const bytes = randomBytes(512);
    for (let i = 0; i < 2; i++) {
      const r = await v2('POST', `/v2/up/app/blobs/uploads/?digest=${sha(bytes)}`, bytes);
      assert.equal(r.status, 201, r.text);
    }
    assert.equal((await blobFiles(s.dataDir, sha(bytes).slice(7))).length, 1);
    assert.deepEqual(await uploadFiles(s.dataDir), []);
  });
});

describe('mutation group uploads: v1 layer PUT goes through ingest, published at the sha256 of its bytes', () => {
  let s: TestServer;
  before(async () => {
    s = await startTestServer({ standalone: true, max_layer_size: 64 * 1024 });
  });
  after(() => s?.stop());

  const H = { 'User-Agent': DOCKER_UA };

  it('the layer lands at sha256(bytes), with no upload left; a layer over max_layer_size is refused and leaves nothing', async () => {
    const img = makeImage();
    const j = await request(s.url, `/v1/images/${img.id}/json`, { method: 'PUT', headers: { ...H, 'Content-Type': 'application/json' }, body: img.json });
    assert.equal(j.status, 200, j.text);
    const l = await request(s.url, `/v1/images/${img.id}/layer`, { method: 'PUT', headers: H, body: chunkedStream(img.layer, 100) });
    assert.equal(l.status, 200, l.text);
    const hex = sha(img.layer).slice(7);
    assert.equal((await blobFiles(s.dataDir, hex)).length, 1, 'published at the digest of the bytes');
    assert.deepEqual(await uploadFiles(s.dataDir), []);
    const c = await request(s.url, `/v1/images/${img.id}/checksum`, { method: 'PUT', headers: { ...H, 'X-Docker-Checksum-Payload': img.payload }, body: '' });
    assert.equal(c.status, 200, c.text);
    const got = await request(s.url, `/v1/images/${img.id}/layer`);
    assert.ok(got.body.equals(img.layer));

    const big = makeImage();
    const j2 = await request(s.url, `/v1/images/${big.id}/json`, { method: 'PUT', headers: { ...H, 'Content-Type': 'application/json' }, body: big.json });
    assert.equal(j2.status, 200, j2.text);
    const bytes = randomBytes(64 * 1024 + 1);
    const r = await request(s.url, `/v1/images/${big.id}/layer`, { method: 'PUT', headers: H, body: chunkedStream(bytes, 8192) });
    assert.equal(r.status, 413, r.text);
    assert.equal(r.text, '{"error": "Layer too large"}');
    assert.deepEqual(await blobFiles(s.dataDir, sha(bytes).slice(7)), []);
    assert.deepEqual(await uploadFiles(s.dataDir), []);
    const exact = randomBytes(64 * 1024);
    const ok = await request(s.url, `/v1/images/${big.id}/layer`, { method: 'PUT', headers: H, body: chunkedStream(exact, 8192) });
    assert.equal(ok.status, 200, `exactly max_layer_size is allowed: ${ok.text}`);
    assert.equal((await blobFiles(s.dataDir, sha(exact).slice(7))).length, 1);
  });
});
