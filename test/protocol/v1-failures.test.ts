import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { filesUnder } from '../helpers/files.js';
import { request as httpRequest } from 'node:http';
import { connect } from 'node:net';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { request } from '../helpers/http.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { chunkedStream, makeImage, payloadChecksum, pushImage, putTag, tarOf } from '../helpers/v1-client.js';

describe('v1 registry: bad input gets the protocol error and changes nothing', () => {
  let s: TestServer;
  let reg: string;
  before(async () => {
    s = await startTestServer({ standalone: true, max_json_size: 65536, max_layer_size: 1 << 20 });
    reg = s.url;
  });
  after(() => s.stop());

  const blobs = (): Promise<string[]> => filesUnder(join(s.dataDir, 'blobs'));
  const uploads = (): Promise<string[]> => filesUnder(join(s.dataDir, 'uploads'));

  it('refuses malformed image ids with 404 "Invalid image ID"', async () => {
    for (const id of ['ABCDEF0123456789', 'abc', 'g'.repeat(64), '..', '%2e%2e', 'a'.repeat(65), '0123456789abcdef0']) {
      for (const [method, suffix] of [
        ['GET', 'json'],
        ['PUT', 'json'],
        ['GET', 'layer'],
        ['PUT', 'layer'],
        ['PUT', 'checksum'],
        ['GET', 'ancestry'],
      ] as const) {
        const r = await request(reg, `/v1/images/${id}/${suffix}`, { method, body: method === 'PUT' ? '{}' : undefined });
        assert.equal(r.status, 404, `${method} ${id}/${suffix}`);
        assert.equal(r.text, '{"error": "Invalid image ID"}');
      }
    }
  });

  it('keeps traversal out: encoded dots and slashes in repository names are 400 "Invalid repository name"', async () => {
    for (const name of ['..', '%2e%2e', 'foo/..', 'foo/%2E%2E', '..%2Ffoo', 'foo%2F..%2F..%2Fetc', 'Foo/Bar', 'a/b/c', 'foo%00', '%zz']) {
      const r = await request(reg, `/v1/repositories/${name}/tags`);
      // every one is refused as a name, before any lookup (a 404 would mean it was looked up)
      assert.equal(r.status, 400, `${name}: ${r.status}`);
      assert.equal(r.text, '{"error": "Invalid repository name"}', name);
    }
    const put = await request(reg, '/v1/repositories/%2e%2e/tags/latest', { method: 'PUT', body: '"x"' });
    assert.equal(put.status, 400);
    assert.equal(put.text, '{"error": "Invalid repository name"}');
  });

  it('rejects bad image json with the exact v1 errors, storing nothing', async () => {
    const img = makeImage();
    const cases: [string, number, string][] = [
      ['{not json', 400, 'Invalid JSON'],
      ['[1,2]', 400, 'Invalid JSON'],
      ['"str"', 400, 'Invalid JSON'],
      ['{"parent": ""}', 400, "Missing key `id' in JSON"],
      [JSON.stringify({ id: 'b'.repeat(64) }), 400, 'JSON data contains invalid id'],
      [JSON.stringify({ id: img.id, parent: 'c'.repeat(64) }), 400, 'Image depends on a non existing parent'],
      [JSON.stringify({ id: img.id, parent: 'not-an-id' }), 400, 'Image depends on a non existing parent'],
    ];
    for (const [body, status, error] of cases) {
      const r = await request(reg, `/v1/images/${img.id}/json`, { method: 'PUT', body, headers: { 'Content-Type': 'application/json' } });
      assert.equal(r.status, status, body);
      assert.equal(r.text, JSON.stringify({ error }).replace('":"', '": "'));
    }
    const big = await request(reg, `/v1/images/${img.id}/json`, { method: 'PUT', body: JSON.stringify({ id: img.id, pad: 'x'.repeat(70000) }) });
    assert.equal(big.status, 413);
    const probe = await request(reg, `/v1/images/${img.id}/json`);
    assert.equal(probe.status, 404);
    assert.equal(probe.text, '{"error": "Image not found"}');
  });

  it('refuses a layer before its json (404) and a checksum before its layer (400)', async () => {
    const img = makeImage();
    const layer = await request(reg, `/v1/images/${img.id}/layer`, { method: 'PUT', body: img.layer });
    assert.equal(layer.status, 404);
    assert.equal(layer.text, '{"error": "Image not found"}');
    assert.equal((await uploads()).length, 0);
    const cs0 = await request(reg, `/v1/images/${img.id}/checksum`, { method: 'PUT', headers: { 'X-Docker-Checksum-Payload': img.payload } });
    assert.equal(cs0.status, 404);
    await request(reg, `/v1/images/${img.id}/json`, { method: 'PUT', body: img.json });
    const cs = await request(reg, `/v1/images/${img.id}/checksum`, { method: 'PUT', headers: { 'X-Docker-Checksum-Payload': img.payload } });
    assert.equal(cs.status, 400);
    assert.match(cs.text, /^\{"error": "Image has no layer/);
    const json = await request(reg, `/v1/images/${img.id}/json`);
    assert.equal(json.status, 400);
    assert.equal(json.text, '{"error": "Image is being uploaded, retry later"}');
  });

  it('checks the checksum headers: 412 without payload, 400 empty, 400 mismatch; image stays invisible', async () => {
    const img = makeImage();
    await request(reg, `/v1/images/${img.id}/json`, { method: 'PUT', body: img.json });
    await request(reg, `/v1/images/${img.id}/layer`, { method: 'PUT', body: chunkedStream(img.layer) });
    const none = await request(reg, `/v1/images/${img.id}/checksum`, { method: 'PUT', headers: { 'X-Docker-Checksum': 'tarsum+sha256:00' } });
    assert.equal(none.status, 412);
    assert.equal(none.text, '{"error": "X-Docker-Checksum-Payload not set.  If you are using the Docker daemon, you should upgrade to version 0.10 or later"}');
    const empty = await request(reg, `/v1/images/${img.id}/checksum`, { method: 'PUT', headers: { 'X-Docker-Checksum-Payload': '' } });
    assert.equal(empty.status, 400);
    assert.equal(empty.text, `{"error": "Missing Image's checksum"}`);
    const wrong = await request(reg, `/v1/images/${img.id}/checksum`, { method: 'PUT', headers: { 'X-Docker-Checksum-Payload': `sha256:${'0'.repeat(64)}` } });
    assert.equal(wrong.status, 400);
    assert.equal(wrong.text, '{"error": "Checksum mismatch"}');
    const badTarsum = await request(reg, `/v1/images/${img.id}/checksum`, {
      method: 'PUT',
      headers: { 'X-Docker-Checksum-Payload': img.payload, 'X-Docker-Checksum': `tarsum+sha256:${'1'.repeat(64)}` },
    });
    assert.equal(badTarsum.status, 400);
    assert.equal(badTarsum.text, '{"error": "Checksum mismatch"}');
    for (const path of ['json', 'layer', 'ancestry']) {
      const r = await request(reg, `/v1/images/${img.id}/${path}`);
      assert.equal(r.status, 400, path);
      assert.equal(r.text, '{"error": "Image is being uploaded, retry later"}');
    }
    const tag = await putTag(reg, 'bob/half', 'latest', img.id);
    assert.equal(tag.status, 200, 'tagging does not require completion (spec §2.14)');
    const ok = await request(reg, `/v1/images/${img.id}/checksum`, { method: 'PUT', headers: { 'X-Docker-Checksum-Payload': img.payload } });
    assert.equal(ok.status, 200);
    const again = await request(reg, `/v1/images/${img.id}/checksum`, { method: 'PUT', headers: { 'X-Docker-Checksum-Payload': `sha256:${'0'.repeat(64)}` } });
    assert.equal(again.status, 409);
    assert.equal(again.text, '{"error": "Cannot set this image checksum"}');
  });

  it('refuses bad tags: name off the grammar, body not a JSON string, unknown image', async () => {
    const img = makeImage();
    await pushImage(reg, img);
    const bad = await putTag(reg, 'bob/tags', '-bad', img.id);
    assert.equal(bad.status, 400);
    assert.equal(bad.text, '{"error": "Invalid tag name (must match ^[\\\\w][\\\\w.-]{0,127}$)"}');
    const long = await putTag(reg, 'bob/tags', 'a'.repeat(129), img.id);
    assert.equal(long.status, 400);
    for (const body of ['{"id": 1}', '[]', '12', 'not json']) {
      const r = await request(reg, '/v1/repositories/bob/tags/tags/latest', { method: 'PUT', body, headers: { 'Content-Type': 'application/json' } });
      assert.equal(r.status, 400, body);
      assert.equal(r.text, '{"error": "Invalid data"}');
    }
    const unknown = await putTag(reg, 'bob/tags', 'latest', 'd'.repeat(64));
    assert.equal(unknown.status, 404);
    assert.equal(unknown.text, '{"error": "Image not found"}');
    const tags = await request(reg, '/v1/repositories/bob/tags/tags');
    assert.equal(tags.status, 404, 'no repository was created by the refused requests');
  });

  it('refuses a layer over max_layer_size with 413 and keeps no bytes', async () => {
    const img = makeImage();
    await request(reg, `/v1/images/${img.id}/json`, { method: 'PUT', body: img.json });
    const before = (await blobs()).length;
    const big = Buffer.alloc((1 << 20) + 4096, 7);
    const chunked = await request(reg, `/v1/images/${img.id}/layer`, { method: 'PUT', body: chunkedStream(big, 65536) });
    assert.equal(chunked.status, 413);
    assert.equal(chunked.text, '{"error": "Layer too large"}');
    const declared = await request(reg, `/v1/images/${img.id}/layer`, { method: 'PUT', body: big });
    assert.equal(declared.status, 413);
    assert.equal((await blobs()).length, before);
    assert.equal((await uploads()).length, 0);
  });

  it('cleans up after a client that aborts mid-upload: no blob, no layer, no upload left', async () => {
    const img = makeImage();
    await request(reg, `/v1/images/${img.id}/json`, { method: 'PUT', body: img.json });
    const before = (await blobs()).length;
    const u = new URL(reg);
    await new Promise<void>((resolve) => {
      const req = httpRequest({
        host: u.hostname,
        port: u.port,
        method: 'PUT',
        path: `/v1/images/${img.id}/layer`,
        headers: { 'Transfer-Encoding': 'chunked' },
      });
      req.on('error', () => resolve());
      req.write(Buffer.alloc(200000, 1));
      setTimeout(() => {
        req.destroy();
        resolve();
      }, 200);
    });
    for (let i = 0; i < 50 && (await uploads()).length > 0; i++) await new Promise((r) => setTimeout(r, 20));
    assert.equal((await uploads()).length, 0);
    assert.equal((await blobs()).length, before);
    const cs = await request(reg, `/v1/images/${img.id}/checksum`, { method: 'PUT', headers: { 'X-Docker-Checksum-Payload': img.payload } });
    assert.equal(cs.status, 400);
    // and the push can be retried to success
    const layer = await request(reg, `/v1/images/${img.id}/layer`, { method: 'PUT', body: chunkedStream(img.layer) });
    assert.equal(layer.status, 200);
    const cs2 = await request(reg, `/v1/images/${img.id}/checksum`, { method: 'PUT', headers: { 'X-Docker-Checksum-Payload': img.payload } });
    assert.equal(cs2.status, 200);
  });

  it('refuses a body shorter than its Content-Length (400) without storing it', async () => {
    const img = makeImage();
    await request(reg, `/v1/images/${img.id}/json`, { method: 'PUT', body: img.json });
    const u = new URL(reg);
    const status = await new Promise<string>((resolve) => {
      const sock = connect(Number(u.port), u.hostname, () => {
        sock.write(`PUT /v1/images/${img.id}/layer HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n`);
        sock.write(Buffer.alloc(10));
        sock.end();
      });
      let data = '';
      sock.on('data', (d: Buffer) => (data += d.toString()));
      sock.on('close', () => resolve(data));
      sock.on('error', () => resolve(data));
    });
    assert.ok(!status.startsWith('HTTP/1.1 200'), status);
    assert.equal((await uploads()).length, 0);
    const layer = await request(reg, `/v1/images/${img.id}/layer`);
    assert.equal(layer.status, 400);
  });

  it('handles two clients pushing the same image at once: both succeed, one copy stored', async () => {
    const img = makeImage(undefined, { 'same.txt': 'x'.repeat(300000) });
    const before = (await blobs()).length;
    const results = await Promise.all([pushImage(reg, img), pushImage(reg, img)]);
    for (const rs of results) {
      for (const r of rs.slice(1)) assert.ok(r.status === 200 || (r.status === 409 && r.text === '{"error": "Image already exists"}'), `${r.status} ${r.text}`);
    }
    assert.equal((await blobs()).length, before + 1);
    const layer = await request(reg, `/v1/images/${img.id}/layer`);
    assert.deepEqual(layer.body, img.layer);
  });

  it('replaces a layer on retry before the checksum (the mark is still there)', async () => {
    const img = makeImage();
    await request(reg, `/v1/images/${img.id}/json`, { method: 'PUT', body: img.json });
    const other = gzipSync(tarOf({ 'other.txt': 'other' }));
    await request(reg, `/v1/images/${img.id}/layer`, { method: 'PUT', body: other });
    const mismatch = await request(reg, `/v1/images/${img.id}/checksum`, { method: 'PUT', headers: { 'X-Docker-Checksum-Payload': img.payload } });
    assert.equal(mismatch.status, 400);
    await request(reg, `/v1/images/${img.id}/layer`, { method: 'PUT', body: img.layer });
    const ok = await request(reg, `/v1/images/${img.id}/checksum`, {
      method: 'PUT',
      headers: { 'X-Docker-Checksum-Payload': payloadChecksum(img.json, img.layer) },
    });
    assert.equal(ok.status, 200);
    assert.deepEqual((await request(reg, `/v1/images/${img.id}/layer`)).body, img.layer);
  });

  it('survives a TLS ClientHello on the plain port and keeps serving', async () => {
    const u = new URL(reg);
    const hello = Buffer.from('16030100a5010000a10303' + '00'.repeat(32) + '0000020035010000760000000e000c0000096c6f63616c686f7374', 'hex');
    const reply = await new Promise<string>((resolve) => {
      const sock = connect(Number(u.port), u.hostname, () => sock.write(hello));
      let data = '';
      sock.on('data', (d: Buffer) => (data += d.toString('latin1')));
      sock.on('close', () => resolve(data));
      sock.on('error', () => resolve(data));
    });
    assert.match(reply, /^HTTP\/1\.1 400/);
    const ping = await request(reg, '/_ping');
    assert.equal(ping.status, 200);
  });

  it('answers unknown routes with a JSON 404', async () => {
    const r = await request(reg, '/v1/nothing/here');
    assert.equal(r.status, 404);
    assert.equal(r.text, '{"error": "Not found"}');
  });
});
