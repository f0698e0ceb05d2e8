import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { filesUnder } from '../helpers/files.js';
import { request, type Response } from '../helpers/http.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { chunkedStream } from '../helpers/v1-client.js';

const sha = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const code = (r: Response): string => r.json<{ errors: { code: string }[] }>().errors[0]!.code;

describe('v2 API (switch on, standalone): /v2/, blobs and upload sessions', () => {
  let s: TestServer;
  let reg: string;
  before(async () => {
    s = await startTestServer({ standalone: true, v2: true });
    reg = s.url;
  });
  after(() => s.stop());

  it('answers /v2/ with 200 {} and the API version header', async () => {
    const r = await request(reg, '/v2/');
    assert.equal(r.status, 200);
    assert.equal(r.text, '{}');
    assert.equal(r.headers['docker-distribution-api-version'], 'registry/2.0');
  });

  it('takes a monolithic upload (POST, PUT ?digest= with the body) and serves it back', async () => {
    const blob = randomBytes(300_000);
    const post = await request(reg, '/v2/ns/mono/blobs/uploads/', { method: 'POST', body: '' });
    assert.equal(post.status, 202);
    assert.equal(post.headers.range, '0-0');
    const location = String(post.headers.location);
    assert.match(location, /^\/v2\/ns\/mono\/blobs\/uploads\/[0-9a-f-]{36}$/);
    assert.equal(post.headers['docker-upload-uuid'], location.split('/').pop());
    const put = await request(reg, `${location}?digest=${sha(blob)}`, { method: 'PUT', body: blob, headers: { 'Content-Type': 'application/octet-stream' } });
    assert.equal(put.status, 201, put.text);
    assert.equal(put.headers.location, `/v2/ns/mono/blobs/${sha(blob)}`);
    assert.equal(put.headers['docker-content-digest'], sha(blob));
    const head = await request(reg, `/v2/ns/mono/blobs/${sha(blob)}`, { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(head.headers['content-length'], String(blob.length));
    assert.equal(head.headers['docker-content-digest'], sha(blob));
    const get = await request(reg, `/v2/ns/mono/blobs/${sha(blob)}`);
    assert.deepEqual(get.body, blob);
    const part = await request(reg, `/v2/ns/mono/blobs/${sha(blob)}`, { headers: { Range: 'bytes=1000-1999' } });
    assert.equal(part.status, 206);
    assert.equal(part.headers['content-range'], `bytes 1000-1999/${blob.length}`);
    assert.deepEqual(part.body, blob.subarray(1000, 2000));
    const gone = await request(reg, location);
    assert.equal(gone.status, 404);
    assert.equal(code(gone), 'BLOB_UPLOAD_UNKNOWN');
  });

  it('serves small blobs (kept in memory) as it streams large ones: same headers, same bytes, ranges, per-repository links', async () => {
    const small = randomBytes(2000);
    const large = randomBytes(200_000);
    for (const b of [small, large]) {
      const r = await request(reg, `/v2/ns/sizes/blobs/uploads/?digest=${sha(b)}`, { method: 'POST', body: b });
      assert.equal(r.status, 201, r.text);
    }
    const pick = (r: Response): Record<string, unknown> => {
      const h = r.headers;
      return {
        type: h['content-type'],
        ranges: h['accept-ranges'],
        cache: h['cache-control'],
        digest: h['docker-content-digest'],
        etag: h.etag,
        length: h['content-length'],
      };
    };
    for (const b of [small, large]) {
      const want = {
        type: 'application/octet-stream',
        ranges: 'bytes',
        cache: 'max-age=31536000',
        digest: sha(b),
        etag: `"${sha(b)}"`,
        length: String(b.length),
      };
      for (let i = 0; i < 3; i++) {
        const r = await request(reg, `/v2/ns/sizes/blobs/${sha(b)}`);
        assert.equal(r.status, 200);
        assert.deepEqual(r.body, b);
        assert.deepEqual(pick(r), want);
      }
      const head = await request(reg, `/v2/ns/sizes/blobs/${sha(b)}`, { method: 'HEAD' });
      assert.deepEqual(pick(head), want);
      const part = await request(reg, `/v2/ns/sizes/blobs/${sha(b)}`, { headers: { Range: 'bytes=10-19' } });
      assert.equal(part.status, 206);
      assert.equal(part.headers['content-range'], `bytes 10-19/${b.length}`);
      assert.deepEqual(part.body, b.subarray(10, 20));
      // another repository has no link to it: unknown there, whatever this node keeps in memory
      assert.equal((await request(reg, `/v2/ns/elsewhere/blobs/${sha(b)}`)).status, 404);
    }
  });

  it('takes a single POST ?digest= with the whole blob (201)', async () => {
    const blob = randomBytes(5000);
    const r = await request(reg, `/v2/ns/single/blobs/uploads/?digest=${sha(blob)}`, { method: 'POST', body: blob });
    assert.equal(r.status, 201);
    assert.deepEqual((await request(reg, `/v2/ns/single/blobs/${sha(blob)}`)).body, blob);
  });

  it('takes chunks with Content-Range, refuses out-of-order ones (416), keeps old Locations working', async () => {
    const blob = randomBytes(200_000);
    const post = await request(reg, '/v2/ns/chunked/blobs/uploads/', { method: 'POST' });
    const loc = String(post.headers.location);
    const p1 = await request(reg, loc, { method: 'PATCH', body: blob.subarray(0, 70_000), headers: { 'Content-Range': '0-69999' } });
    assert.equal(p1.status, 202);
    assert.equal(p1.headers.range, '0-69999');
    assert.equal(p1.headers.location, loc);
    const skip = await request(reg, loc, { method: 'PATCH', body: blob.subarray(80_000, 90_000), headers: { 'Content-Range': '80000-89999' } });
    assert.equal(skip.status, 416);
    assert.equal(code(skip), 'RANGE_INVALID');
    const again = await request(reg, loc, { method: 'PATCH', body: blob.subarray(0, 70_000), headers: { 'Content-Range': '0-69999' } });
    assert.equal(again.status, 416, 'the previous chunk re-sent to the previous Location');
    const status = await request(reg, loc);
    assert.equal(status.status, 204);
    assert.equal(status.headers.range, '0-69999');
    const p2 = await request(reg, loc, { method: 'PATCH', body: chunkedStream(blob.subarray(70_000), 8192) });
    assert.equal(p2.status, 202);
    assert.equal(p2.headers.range, `0-${blob.length - 1}`);
    const put = await request(reg, `${loc}?digest=${sha(blob)}`, { method: 'PUT', body: '' });
    assert.equal(put.status, 201, put.text);
    assert.deepEqual((await request(reg, `/v2/ns/chunked/blobs/${sha(blob)}`)).body, blob);
  });

  it('refuses a digest mismatch (400 DIGEST_INVALID): no blob, the session is gone', async () => {
    const blob = randomBytes(10_000);
    const wrong = sha(Buffer.from('something else'));
    const post = await request(reg, '/v2/ns/bad/blobs/uploads/', { method: 'POST' });
    const loc = String(post.headers.location);
    const put = await request(reg, `${loc}?digest=${wrong}`, { method: 'PUT', body: blob });
    assert.equal(put.status, 400);
    assert.equal(code(put), 'DIGEST_INVALID');
    assert.equal((await request(reg, `/v2/ns/bad/blobs/${wrong}`, { method: 'HEAD' })).status, 404);
    assert.equal((await request(reg, `/v2/ns/bad/blobs/${sha(blob)}`, { method: 'HEAD' })).status, 404);
    assert.equal((await request(reg, loc)).status, 404);
  });

  it('answers bad input with the spec codes, with the API header on errors too', async () => {
    const cases: [string, string, string, number, string][] = [
      ['GET', '/v2/ns/x/blobs/sha256:abc', '', 400, 'DIGEST_INVALID'],
      ['GET', '/v2/ns/x/blobs/notadigest', '', 400, 'DIGEST_INVALID'],
      ['GET', `/v2/ns/x/blobs/sha256:${'0'.repeat(64)}`, '', 404, 'BLOB_UNKNOWN'],
      ['GET', '/v2/NS/Upper/blobs/uploads/00000000-0000-0000-0000-000000000000', '', 400, 'NAME_INVALID'],
      ['GET', '/v2/ns/x/blobs/uploads/00000000-0000-0000-0000-000000000000', '', 404, 'BLOB_UPLOAD_UNKNOWN'],
      ['PATCH', '/v2/ns/x/blobs/uploads/not-a-uuid', 'x', 404, 'BLOB_UPLOAD_UNKNOWN'],
      ['PUT', '/v2/ns/x/blobs/uploads/00000000-0000-0000-0000-000000000000?digest=sha256:zz', '', 400, 'DIGEST_INVALID'],
      ['DELETE', `/v2/ns/x/blobs/sha256:${'0'.repeat(64)}`, '', 405, 'UNSUPPORTED'],
      ['GET', '/v2/ns/x/manifests/latest', '', 404, 'MANIFEST_UNKNOWN'],
      ['GET', '/v2/ns/x/manifests/sha256:totallywrong', '', 404, 'MANIFEST_UNKNOWN'],
      ['PUT', '/v2/ns/x/manifests/sha256:totallywrong', '{}', 400, 'DIGEST_INVALID'],
      ['PUT', '/v2/ns/x/manifests/latest', '{}', 400, 'MANIFEST_INVALID'],
      ['PUT', '/v2/ns/x/manifests/latest', 'not json', 400, 'MANIFEST_INVALID'],
      ['GET', '/v2/ns/x/tags/list', '', 404, 'NAME_UNKNOWN'],
      ['POST', '/v2/_catalog', '', 405, 'UNSUPPORTED'],
      ['GET', '/v2/a/..%2F../blobs/uploads/', '', 400, 'NAME_INVALID'],
    ];
    for (const [method, path, body, status, c] of cases) {
      const r = await request(reg, path, { method, body });
      assert.equal(r.status, status, `${method} ${path}`);
      assert.equal(code(r), c, `${method} ${path}`);
      assert.equal(r.headers['docker-distribution-api-version'], 'registry/2.0');
    }
  });

  it('keeps blobs per repository: unknown elsewhere until mounted; mount from nowhere opens a session', async () => {
    const blob = randomBytes(4096);
    await request(reg, `/v2/ns/a/blobs/uploads/?digest=${sha(blob)}`, { method: 'POST', body: blob });
    assert.equal((await request(reg, `/v2/ns/b/blobs/${sha(blob)}`, { method: 'HEAD' })).status, 404);
    const nowhere = await request(reg, `/v2/ns/b/blobs/uploads/?mount=${sha(blob)}&from=ns/zzz`, { method: 'POST' });
    assert.equal(nowhere.status, 202);
    const mount = await request(reg, `/v2/ns/b/blobs/uploads/?mount=${sha(blob)}&from=ns/a`, { method: 'POST' });
    assert.equal(mount.status, 201);
    assert.equal(mount.headers['docker-content-digest'], sha(blob));
    assert.deepEqual((await request(reg, `/v2/ns/b/blobs/${sha(blob)}`)).body, blob);
  });

  it('cancels a session (204, then 404) and leaves no upload data', async () => {
    const post = await request(reg, '/v2/ns/cancel/blobs/uploads/', { method: 'POST' });
    const loc = String(post.headers.location);
    await request(reg, loc, { method: 'PATCH', body: randomBytes(1000) });
    const del = await request(reg, loc, { method: 'DELETE' });
    assert.equal(del.status, 204);
    assert.equal((await request(reg, loc)).status, 404);
    const uuid = loc.split('/').pop()!;
    assert.deepEqual(await filesUnder(join(s.dataDir, 'uploads', uuid)), []);
  });

  it('continues a session after a restart (upload state lives in storage)', async () => {
    const blob = randomBytes(50_000);
    const post = await request(reg, '/v2/ns/restart/blobs/uploads/', { method: 'POST' });
    const loc = String(post.headers.location);
    await request(reg, loc, { method: 'PATCH', body: blob.subarray(0, 20_000), headers: { 'Content-Range': '0-19999' } });
    const dir = s.dataDir;
    await s.close();
    s = await startTestServer({ standalone: true, v2: true }, { dataDir: dir });
    reg = s.url;
    const st = await request(reg, loc);
    assert.equal(st.status, 204);
    assert.equal(st.headers.range, '0-19999');
    await request(reg, loc, { method: 'PATCH', body: blob.subarray(20_000), headers: { 'Content-Range': `20000-${blob.length - 1}` } });
    const put = await request(reg, `${loc}?digest=${sha(blob)}`, { method: 'PUT' });
    assert.equal(put.status, 201, put.text);
    assert.deepEqual((await request(reg, `/v2/ns/restart/blobs/${sha(blob)}`)).body, blob);
  });
});

describe('v2 switch', () => {
  it("next to an index, /v2/ asks for the index's Bearer tokens (v2_auth derived: token)", async () => {
    const s = await startTestServer({ v2: true });
    try {
      const r = await request(s.url, '/v2/');
      assert.equal(r.status, 401);
      assert.match(String(r.headers['www-authenticate']), /^Bearer realm="http:\/\/127\.0\.0\.1:\d+\/v2\/token",service="127\.0\.0\.1:\d+"$/);
    } finally {
      await s.stop();
    }
  });

  it('refuses htpasswd mode without a file, and token mode on a registry with no index', async () => {
    await assert.rejects(startTestServer({ v2: true, standalone: true, v2_auth: 'htpasswd' }), /htpasswd_path: required/);
    // beside an index, the index's accounts are the only ones (no repositories without an owner)
    await assert.rejects(startTestServer({ v2: true, v2_auth: 'htpasswd', htpasswd_path: '/nonexistent' }), /htpasswd is for a registry without an index/);
    await assert.rejects(
      startTestServer({ v2: true, standalone: false, index_endpoint: 'http://127.0.0.1:9', v2_auth: 'htpasswd', htpasswd_path: '/x' }, { role: 'registry' }),
      /htpasswd is for a registry without an index/,
    );
    await assert.rejects(startTestServer({ v2: true, standalone: true, v2_auth: 'token' }, { role: 'registry' }), /needs an index/);
  });
});
