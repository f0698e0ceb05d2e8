import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { request } from '../helpers/http.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { VECTORS } from '../helpers/paths.js';
import { DOCKER_UA, chunkedStream, makeImage, pushImage, putTag, sha256hex, type TestImage } from '../helpers/v1-client.js';

interface Expected {
  image_id: string;
  layers: Record<string, { checksum_payload: string; tarsum_v0_with_json?: string; file_sha256: string; size: number; files_endpoint_body?: string }>;
}
const expected = JSON.parse(readFileSync(join(VECTORS, 'expected.json'), 'utf8')) as Expected;
const vectorImage: TestImage = {
  id: expected.image_id,
  json: readFileSync(join(VECTORS, 'json')),
  layer: readFileSync(join(VECTORS, 'layer.tar.gz')),
  payload: expected.layers['layer.tar.gz']!.checksum_payload,
  tarsum: expected.layers['layer.tar.gz']!.tarsum_v0_with_json!,
};

describe('Docker 1.x push and pull against a standalone registry', () => {
  let s: TestServer;
  let reg: string;
  before(async () => {
    // V2=false: the site that keeps Docker 1.6-1.9 on v1 (issue 11: v2 is on by default)
    s = await startTestServer({ standalone: true, v2: false });
    reg = s.url;
  });
  after(() => s.stop());

  it('answers the pings with the standalone and version headers', async () => {
    for (const path of ['/_ping', '/v1/_ping']) {
      const r = await request(reg, path);
      assert.equal(r.status, 200);
      assert.equal(r.headers['x-docker-registry-standalone'], 'True');
      assert.equal(r.headers['x-docker-registry-version'], '0.9.1');
      assert.equal(r.headers['content-type'], 'application/json');
      assert.equal(r.text, '{}');
    }
    const root = await request(reg, '/');
    assert.equal(root.text, '"\\"docker-registry server\\""');
  });

  it('with V2=false answers /v2/ with 404 and no v2 version header, so 1.x clients stay on v1', async () => {
    const r = await request(reg, '/v2/');
    assert.equal(r.status, 404);
    assert.equal(r.headers['docker-distribution-api-version'], undefined);
    assert.equal(r.json<{ errors: { code: string }[] }>().errors[0]!.code, 'NAME_UNKNOWN');
    const w = await request(reg, '/v2/foo/blobs/uploads/', { method: 'POST' });
    assert.equal(w.status, 404);
    assert.equal(w.json<{ errors: { code: string }[] }>().errors[0]!.code, 'UNSUPPORTED');
  });

  it('takes the full 1.x push sequence: index PUT, json, chunked gzip layer, checksum, tag, images', async () => {
    const idx = await request(reg, '/v1/repositories/alice/vec/', {
      method: 'PUT',
      headers: { 'User-Agent': DOCKER_UA, 'X-Docker-Token': 'true', 'Content-Type': 'application/json', Authorization: 'Basic Og==' },
      body: JSON.stringify([{ id: vectorImage.id, Tag: 'latest' }]),
    });
    assert.equal(idx.status, 200);
    assert.match(String(idx.headers['x-docker-token']), /^signature=[A-Z0-9]{16},repository="alice\/vec",access=write$/);
    assert.equal(idx.headers['www-authenticate'], `Token ${String(idx.headers['x-docker-token'])}`);
    assert.equal(idx.headers['x-docker-endpoints'], new URL(reg).host);
    const token = String(idx.headers['x-docker-token']);

    const [probe, json, layer, checksum] = await pushImage(reg, vectorImage, token);
    assert.equal(probe!.status, 404);
    assert.equal(probe!.text, '{"error": "Image not found"}');
    assert.equal(json!.status, 200);
    assert.equal(json!.text, 'true');
    assert.equal(layer!.status, 200);
    assert.equal(layer!.text, 'true');
    assert.equal(checksum!.status, 200, checksum!.text);
    assert.equal(checksum!.text, 'true');

    const tag = await putTag(reg, 'alice/vec', 'latest', vectorImage.id, token);
    assert.equal(tag.status, 200);
    const done = await request(reg, '/v1/repositories/alice/vec/images', {
      method: 'PUT',
      headers: { 'X-Docker-Token': 'true', 'X-Docker-Endpoints': `http://${new URL(reg).host}/v1/`, 'Content-Type': 'application/json' },
      body: '[]',
    });
    assert.equal(done.status, 204);
    assert.equal(done.body.length, 0);
  });

  it('serves the pushed image back as a 1.x pull asks for it', async () => {
    const list = await request(reg, '/v1/repositories/alice/vec/images', { headers: { 'X-Docker-Token': 'true' } });
    assert.equal(list.status, 200);
    assert.deepEqual(list.json(), [{ id: vectorImage.id }]);
    assert.match(String(list.headers['x-docker-token']), /access=read$/);
    assert.ok(list.headers['x-docker-endpoints']);

    const tags = await request(reg, '/v1/repositories/alice/vec/tags');
    assert.equal(tags.status, 200);
    assert.equal(tags.text, `{"latest": "${vectorImage.id}"}`);
    const one = await request(reg, '/v1/repositories/alice/vec/tags/latest');
    assert.equal(one.text, `"${vectorImage.id}"`);

    const anc = await request(reg, `/v1/images/${vectorImage.id}/ancestry`);
    assert.equal(anc.status, 200);
    assert.equal(anc.text, `["${vectorImage.id}"]`);
    assert.equal(anc.headers['cache-control'], 'public, max-age=31536000');

    const json = await request(reg, `/v1/images/${vectorImage.id}/json`);
    assert.equal(json.status, 200);
    assert.deepEqual(json.body, vectorImage.json, 'json bytes exactly as uploaded');
    assert.equal(json.headers['x-docker-size'], String(vectorImage.layer.length));
    assert.equal(json.headers['x-docker-checksum-payload'], vectorImage.payload);
    assert.equal(json.headers['last-modified'], 'Thu, 01 Jan 1970 00:00:00 GMT');
    assert.equal(json.headers.pragma, undefined);
    // spec §1.3: toolkit.response's Content-Type, as every other JSON answer (no charset)
    assert.equal(json.headers['content-type'], 'application/json');

    const layer = await request(reg, `/v1/images/${vectorImage.id}/layer`);
    assert.equal(layer.status, 200);
    assert.equal(layer.headers['accept-ranges'], 'bytes');
    assert.equal(layer.headers['content-length'], String(vectorImage.layer.length));
    assert.equal(sha256hex(layer.body), expected.layers['layer.tar.gz']!.file_sha256);
  });

  it('resumes a layer download with Range (206) and refuses ranges past the end (416)', async () => {
    const size = vectorImage.layer.length;
    const part = await request(reg, `/v1/images/${vectorImage.id}/layer`, { headers: { Range: `bytes=100-${size}` } });
    assert.equal(part.status, 206);
    assert.equal(part.headers['content-range'], `bytes 100-${size - 1}/${size}`);
    assert.equal(part.headers['content-length'], String(size - 100));
    assert.deepEqual(part.body, vectorImage.layer.subarray(100));
    const open = await request(reg, `/v1/images/${vectorImage.id}/layer`, { headers: { Range: 'bytes=10-19' } });
    assert.equal(open.status, 206);
    assert.deepEqual(open.body, vectorImage.layer.subarray(10, 20));
    const past = await request(reg, `/v1/images/${vectorImage.id}/layer`, { headers: { Range: `bytes=${size}-` } });
    assert.equal(past.status, 416);
    assert.equal(past.headers['content-range'], `bytes */${size}`);
    assert.equal(past.headers['content-length'], '0');
    const head = await request(reg, `/v1/images/${vectorImage.id}/layer`, { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(head.headers['content-length'], String(size));
    assert.equal(head.headers['content-type'], 'application/octet-stream');
    assert.equal(head.body.length, 0);
    const ignored = await request(reg, `/v1/images/${vectorImage.id}/layer`, { headers: { Range: 'items=0-1' } });
    assert.equal(ignored.status, 200);
    assert.equal(ignored.body.length, size);
  });

  it('lists the layer members with /files exactly as the Python registry did', async () => {
    const files = await request(reg, `/v1/images/${vectorImage.id}/files`);
    assert.equal(files.status, 200);
    assert.equal(files.text, expected.layers['layer.tar']!.files_endpoint_body);
    assert.equal(files.headers['cache-control'], 'public, max-age=31536000');
    const again = await request(reg, `/v1/images/${vectorImage.id}/files`);
    assert.equal(again.text, files.text);
    const diff = await request(reg, `/v1/images/${vectorImage.id}/diff`);
    assert.equal(diff.status, 400);
    assert.equal(diff.text, '{"error": "Diff queue is disabled"}');
  });

  it('answers If-Modified-Since with 304 on cacheable GETs', async () => {
    const r = await request(reg, `/v1/images/${vectorImage.id}/json`, { headers: { 'If-Modified-Since': 'Thu, 01 Jan 1970 00:00:00 GMT' } });
    assert.equal(r.status, 304);
    assert.equal(r.body.length, 0);
  });

  it('answers If-Modified-Since with 304 before the image is looked up, but after the upload check (spec §1.3, Q3)', async () => {
    const ims = { 'If-Modified-Since': 'Thu, 01 Jan 1970 00:00:00 GMT' };
    const unknown = makeImage();
    for (const what of ['json', 'layer', 'ancestry', 'files']) {
      const r = await request(reg, `/v1/images/${unknown.id}/${what}`, { headers: ims });
      assert.equal(r.status, 304, `${what} of an unknown image`);
      assert.equal(r.headers['last-modified'], 'Thu, 01 Jan 1970 00:00:00 GMT');
      assert.equal(r.body.length, 0);
      assert.equal((await request(reg, `/v1/images/${unknown.id}/${what}`)).status, 404, `${what} without If-Modified-Since`);
    }
    const bad = await request(reg, '/v1/images/NOTANID/json', { headers: ims });
    assert.equal(bad.status, 404);
    assert.equal(bad.text, '{"error": "Invalid image ID"}');
    const uploading = makeImage();
    assert.equal((await request(reg, `/v1/images/${uploading.id}/json`, { method: 'PUT', body: uploading.json })).status, 200);
    const r = await request(reg, `/v1/images/${uploading.id}/json`, { headers: ims });
    assert.equal(r.status, 400);
    assert.equal(r.text, '{"error": "Image is being uploaded, retry later"}');
  });

  it('lets a second push skip what exists: probe 200, PUT json 409 "Image already exists"', async () => {
    const [probe, json] = await pushImage(reg, vectorImage);
    assert.equal(probe!.status, 200);
    assert.equal(json!.status, 409);
    assert.equal(json!.text, '{"error": "Image already exists"}');
    const layer = await request(reg, `/v1/images/${vectorImage.id}/layer`, { method: 'PUT', body: vectorImage.layer });
    assert.equal(layer.status, 409);
    assert.equal(layer.text, '{"error": "Image already exists"}');
  });

  it('pushes a parent and child chain and serves the ancestry child first', async () => {
    const parent = makeImage();
    const child = makeImage(parent.id);
    for (const img of [parent, child]) {
      const rs = await pushImage(reg, img);
      assert.deepEqual(
        rs.map((r) => r.status),
        [404, 200, 200, 200],
      );
    }
    const anc = await request(reg, `/v1/images/${child.id}/ancestry`);
    assert.deepEqual(anc.json(), [child.id, parent.id]);
    assert.equal((await putTag(reg, 'alice/chain', 'v1', child.id)).status, 200);
    assert.equal((await putTag(reg, 'alice/chain', 'latest', child.id)).status, 200);
    const tags = await request(reg, '/v1/repositories/alice/chain/tags');
    assert.equal(tags.text, `{"latest": "${child.id}", "v1": "${child.id}"}`);
  });

  it('stores tag metadata from the User-Agent and serves the repository json', async () => {
    const tj = await request(reg, '/v1/repositories/alice/chain/tags/latest/json');
    assert.equal(tj.status, 200);
    const meta = tj.json<Record<string, unknown>>();
    assert.equal(meta.docker_version, '1.5.0');
    assert.equal(meta.docker_go_version, 'go1.4.1');
    assert.equal(meta.kernel, '3.16.0-4-amd64');
    assert.equal(meta.arch, 'amd64');
    assert.equal(typeof meta.last_update, 'number');
    const rj = await request(reg, '/v1/repositories/alice/chain/json');
    assert.deepEqual(rj.json(), meta);
    const none = await request(reg, '/v1/repositories/alice/nothing/json');
    assert.equal(none.text, '{"arch": "amd64", "docker_go_version": null, "docker_version": null, "kernel": null, "last_update": null, "os": "linux"}');
  });

  it('serves tag metadata as stored: only the keys the User-Agent gave (spec §2.16)', async () => {
    const img = makeImage();
    await pushImage(reg, img);
    const tag = (ua: string | undefined): Promise<unknown> =>
      request(reg, '/v1/repositories/alice/uameta/tags/latest', {
        method: 'PUT',
        headers: { 'Content-Type': 'application/json', ...(ua === undefined ? {} : { 'User-Agent': ua }) },
        body: JSON.stringify(img.id),
      });
    await tag('docker/1.5.0');
    const tj = await request(reg, '/v1/repositories/alice/uameta/tags/latest/json');
    assert.equal(tj.status, 200);
    const meta = tj.json<Record<string, unknown>>();
    assert.deepEqual(Object.keys(meta), ['docker_version', 'last_update']);
    assert.equal(meta.docker_version, '1.5.0');
    assert.equal(tj.text, `{"docker_version": "1.5.0", "last_update": ${String(meta.last_update)}}`);
    assert.equal((await request(reg, '/v1/repositories/alice/uameta/json')).text, tj.text);
    await tag(undefined);
    const bare = await request(reg, '/v1/repositories/alice/uameta/tags/latest/json');
    assert.deepEqual(Object.keys(bare.json<object>()), ['last_update']);
    // nothing stored: the default object
    const none = await request(reg, '/v1/repositories/alice/uameta/tags/nothing/json');
    assert.equal(none.text, '{"arch": "amd64", "docker_go_version": null, "docker_version": null, "kernel": null, "last_update": null, "os": "linux"}');
    // a stored file that is not a JSON object (an imported tree's): the default object, not a 500
    for (const [tagName, stored] of [
      ['nulled', 'null'],
      ['listed', '[1]'],
      ['broken', '{"arch'],
    ] as const) {
      const file = join(s.dataDir, 'v1', 'repositories', 'alice', 'uameta', '_tagjson', tagName);
      mkdirSync(dirname(file), { recursive: true });
      writeFileSync(file, stored);
      const r = await request(reg, `/v1/repositories/alice/uameta/tags/${tagName}/json`);
      assert.equal(r.status, 200, `${stored}: ${r.status}`);
      assert.equal(r.text, none.text, stored);
    }
  });

  it('treats a single-segment name as library/<name>', async () => {
    const img = makeImage();
    await pushImage(reg, img);
    assert.equal((await putTag(reg, 'busybox', 'latest', img.id)).status, 200);
    const full = await request(reg, '/v1/repositories/library/busybox/tags/latest');
    assert.equal(full.status, 200);
    assert.equal(full.json(), img.id);
  });

  it('deletes a tag (200 true, then 404 "Tag not found: <tag>") and keeps the repository', async () => {
    const del = await request(reg, '/v1/repositories/alice/chain/tags/v1', { method: 'DELETE' });
    assert.equal(del.status, 200);
    assert.equal(del.text, 'true');
    const again = await request(reg, '/v1/repositories/alice/chain/tags/v1', { method: 'DELETE' });
    assert.equal(again.status, 404);
    assert.equal(again.text, '{"error": "Tag not found: v1"}');
    const gone = await request(reg, '/v1/repositories/alice/chain/tags/v1');
    assert.equal(gone.status, 404);
    assert.equal(gone.text, '{"error": "Tag not found"}');
    await request(reg, '/v1/repositories/alice/chain/tags/latest', { method: 'DELETE' });
    const empty = await request(reg, '/v1/repositories/alice/chain/tags');
    assert.equal(empty.status, 200);
    assert.equal(empty.text, '{}');
  });

  it('deletes a repository but not its images', async () => {
    const del = await request(reg, '/v1/repositories/alice/vec/', { method: 'DELETE' });
    assert.equal(del.status, 200);
    const tags = await request(reg, '/v1/repositories/alice/vec/tags');
    assert.equal(tags.status, 404);
    assert.equal(tags.text, '{"error": "Repository not found"}');
    const again = await request(reg, '/v1/repositories/alice/vec/', { method: 'DELETE' });
    assert.equal(again.status, 404);
    const json = await request(reg, `/v1/images/${vectorImage.id}/json`);
    assert.equal(json.status, 200);
  });

  it('sets and reads the private flag', async () => {
    const put = await request(reg, '/v1/repositories/alice/priv/properties', {
      method: 'PUT',
      body: '{"access": "private"}',
      headers: { 'Content-Type': 'application/json' },
    });
    assert.equal(put.status, 200);
    assert.equal((await request(reg, '/v1/repositories/alice/priv/properties')).text, '{"access": "private"}');
    await request(reg, '/v1/repositories/alice/priv/properties', { method: 'PUT', body: '{"access": "public"}' });
    assert.equal((await request(reg, '/v1/repositories/alice/priv/properties')).text, '{"access": "public"}');
    for (const bad of ['[]', '{}', '{"access": "secret"}', 'nope']) {
      const r = await request(reg, '/v1/repositories/alice/priv/properties', { method: 'PUT', body: bad });
      assert.equal(r.status, 400, bad);
      assert.equal(r.text, '{"error": "Invalid data"}');
    }
  });

  it('accepts an absolute-form request target', async () => {
    const r = await request(reg, `/v1/images/${vectorImage.id}/json`, { absolute: true });
    assert.equal(r.status, 200);
    assert.deepEqual(r.body, vectorImage.json);
  });

  it('searches the stored repositories in standalone mode', async () => {
    const r = await request(reg, '/v1/search?q=busy');
    assert.equal(r.status, 200);
    assert.deepEqual(r.json(), {
      num_pages: 1,
      num_results: 1,
      page: 1,
      page_size: 25,
      query: 'busy',
      results: [{ name: 'library/busybox', description: '', star_count: 0, is_official: true, is_trusted: false, is_automated: false }],
    });
  });

  it('serves login for the stand-in index: created, OK, and JSON errors', async () => {
    const signup = await request(reg, '/v1/users/', {
      method: 'POST',
      body: '{"username":"u","password":"p","auth":"","email":"e@x"}',
      headers: { 'Content-Type': 'application/json; charset=utf-8' },
    });
    assert.equal(signup.status, 201);
    assert.equal(signup.text, '"User Created"');
    const bad = await request(reg, '/v1/users/', { method: 'POST', body: '{not json' });
    assert.equal(bad.status, 400);
    assert.equal(bad.text, '{"error": "Error Decoding JSON"}');
    const login = await request(reg, '/v1/users/', { headers: { Authorization: 'Basic dTpw' } });
    assert.equal(login.status, 200);
    assert.equal(login.text, '"OK"');
  });

  it('streams a layer sent with Content-Length too (not only chunked)', async () => {
    const img = makeImage();
    await request(reg, `/v1/images/${img.id}/json`, { method: 'PUT', body: img.json });
    const layer = await request(reg, `/v1/images/${img.id}/layer`, {
      method: 'PUT',
      body: chunkedStream(img.layer, 7),
      headers: { 'Content-Length': String(img.layer.length) },
    });
    assert.equal(layer.status, 200);
    const cs = await request(reg, `/v1/images/${img.id}/checksum`, { method: 'PUT', headers: { 'X-Docker-Checksum-Payload': img.payload } });
    assert.equal(cs.status, 200);
  });
});
