import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { request, type Response } from '../helpers/http.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { VECTORS } from '../helpers/paths.js';
import { DOCKER_UA, chunkedStream, makeImage } from '../helpers/v1-client.js';

/**
 * Issue 17 (mutation testing, group "checksums"): PUT /v1/images/<id>/checksum (R7, spec §2.8:
 * content/v1-images.ts putChecksum and tarsumMatches) decides whether a pushed image becomes
 * visible. Each branch is reached through HTTP and its answer asserted exactly (status and body).
 */

const expected = JSON.parse(readFileSync(join(VECTORS, 'expected.json'), 'utf8')) as {
  image_id: string;
  layers: Record<string, { checksum_payload: string; tarsum_v0_with_json: string; tarsum_v1_with_json: string }>;
};
const vector = expected.layers['layer.tar.gz']!;
const vectorId = expected.image_id;
const vectorJson = readFileSync(join(VECTORS, 'json'));
const vectorLayer = readFileSync(join(VECTORS, 'layer.tar.gz'));

const H = { 'User-Agent': DOCKER_UA };

async function putJson(url: string, id: string, json: Buffer): Promise<void> {
  const r = await request(url, `/v1/images/${id}/json`, { method: 'PUT', headers: { ...H, 'Content-Type': 'application/json' }, body: json });
  assert.equal(r.status, 200, r.text);
}
async function putLayer(url: string, id: string, layer: Buffer): Promise<void> {
  const r = await request(url, `/v1/images/${id}/layer`, {
    method: 'PUT',
    headers: { ...H, 'Content-Type': 'application/octet-stream' },
    body: chunkedStream(layer, 512),
  });
  assert.equal(r.status, 200, r.text);
}
function putChecksum(url: string, id: string, payload: string | undefined, tarsum?: string): Promise<Response> {
  return request(url, `/v1/images/${id}/checksum`, {
    method: 'PUT',
    headers: {
      ...H,
      ...(payload !== undefined ? { 'X-Docker-Checksum-Payload': payload } : {}),
      ...(tarsum !== undefined ? { 'X-Docker-Checksum': tarsum } : {}),
    },
    body: '',
  });
}
const is = (r: Response, status: number, text: string, label: string) => {
  assert.equal(r.status, status, `${label}: ${r.status} ${r.text}`);
  assert.equal(r.text, text, label);
};

/** The client's checksums as stored (keys.ts: <images>/<id>/_checksum, JSON of what PUT checksum sent). */
async function storedChecksums(dir: string, id: string): Promise<unknown> {
  const all = await readdir(dir, { recursive: true });
  const rel = all.find((f) => f.endsWith(`${id}/_checksum`));
  assert.ok(rel, `no _checksum for ${id}`);
  return JSON.parse(await readFile(join(dir, rel), 'utf8'));
}

const MISMATCH = '{"error": "Checksum mismatch"}';
const UPLOADING = '{"error": "Image is being uploaded, retry later"}';

describe('mutation group checksums: PUT checksum with verify_tarsum on', () => {
  let s: TestServer;
  before(async () => {
    s = await startTestServer({ standalone: true });
  });
  after(() => s?.stop());

  it('the payload checksum: required, non-empty, equal (trimmed); then the image is served with it', async () => {
    const img = makeImage();
    await putJson(s.url, img.id, img.json);
    is(await putChecksum(s.url, img.id, img.payload), 400, '{"error": "Image has no layer: PUT /v1/images/<id>/layer first"}', 'before the layer');
    await putLayer(s.url, img.id, img.layer);
    const notSet = await putChecksum(s.url, img.id, undefined);
    assert.equal(notSet.status, 412, notSet.text);
    assert.match(notSet.text, /X-Docker-Checksum-Payload not set/);
    is(await putChecksum(s.url, img.id, '   '), 400, `{"error": "Missing Image's checksum"}`, 'blank');
    is(await putChecksum(s.url, img.id, `sha256:${'0'.repeat(64)}`), 400, MISMATCH, 'another payload');
    is(await putChecksum(s.url, img.id, img.payload.toUpperCase()), 400, MISMATCH, 'case matters');
    is(await putChecksum(s.url, img.id, `${img.payload}0`), 400, MISMATCH, 'longer');
    is(await request(s.url, `/v1/images/${img.id}/json`), 400, UPLOADING, 'not served before its checksum');
    // an algorithm the server does not compute (sha512) is not compared: the payload decides
    is(await putChecksum(s.url, img.id, `  ${img.payload}  `, `tarsum+sha512:${'0'.repeat(128)}`), 200, 'true', 'right payload, spaces around');
    const meta = await request(s.url, `/v1/images/${img.id}/json`);
    assert.equal(meta.status, 200);
    assert.equal(meta.headers['x-docker-checksum-payload'], img.payload);
    assert.deepEqual(await storedChecksums(s.dataDir, img.id), { payload: img.payload, tarsum: `tarsum+sha512:${'0'.repeat(128)}` });
    assert.ok(meta.body.equals(img.json));
    is(await putChecksum(s.url, img.id, img.payload), 409, '{"error": "Image already exists"}', 'again, same checksum (a concurrent push finishing)');
    is(await putChecksum(s.url, img.id, `sha256:${'1'.repeat(64)}`), 409, '{"error": "Cannot set this image checksum"}', 'again, another checksum');
  });

  it('an unknown image: 404; an image with only its json and no layer: 400', async () => {
    const r = await putChecksum(s.url, 'f'.repeat(64), `sha256:${'0'.repeat(64)}`);
    assert.equal(r.status, 404, r.text);
    const img = makeImage();
    await putJson(s.url, img.id, img.json);
    is(
      await putChecksum(s.url, img.id, img.payload, vector.tarsum_v0_with_json),
      400,
      '{"error": "Image has no layer: PUT /v1/images/<id>/layer first"}',
      'no layer',
    );
  });

  it('the tarsum: compared when given (v0 at once, v1 computed on demand), under its own label; a blank one is none', async () => {
    await putJson(s.url, vectorId, vectorJson);
    await putLayer(s.url, vectorId, vectorLayer);
    const p = vector.checksum_payload;
    is(await putChecksum(s.url, vectorId, p, `tarsum+sha256:${'1'.repeat(64)}`), 400, MISMATCH, 'wrong v0');
    is(await putChecksum(s.url, vectorId, p, vector.tarsum_v1_with_json.replace('tarsum.v1+', 'tarsum+')), 400, MISMATCH, 'v1 value under the v0 label');
    is(await putChecksum(s.url, vectorId, p, `tarsum.v1+sha256:${'2'.repeat(64)}`), 400, MISMATCH, 'wrong v1 (computed, then compared)');
    is(await putChecksum(s.url, vectorId, `sha256:${'3'.repeat(64)}`, vector.tarsum_v0_with_json), 400, MISMATCH, 'right tarsum, wrong payload');
    is(await request(s.url, `/v1/images/${vectorId}/layer`), 400, UPLOADING, 'still not served');
    is(await putChecksum(s.url, vectorId, p, `  ${vector.tarsum_v1_with_json} `), 200, 'true', 'right v1, spaces around');
    const layer = await request(s.url, `/v1/images/${vectorId}/layer`);
    assert.equal(layer.status, 200);
    assert.ok(layer.body.equals(vectorLayer));
  });

  it('a blank tarsum header is no tarsum: the payload alone decides', async () => {
    const img = makeImage();
    await putJson(s.url, img.id, img.json);
    await putLayer(s.url, img.id, img.layer);
    is(await putChecksum(s.url, img.id, img.payload, '   '), 200, 'true', 'blank tarsum');
    assert.deepEqual(await storedChecksums(s.dataDir, img.id), { payload: img.payload });
    const bare = makeImage();
    await putJson(s.url, bare.id, bare.json);
    await putLayer(s.url, bare.id, bare.layer);
    is(await putChecksum(s.url, bare.id, bare.payload), 200, 'true', 'no tarsum header at all');
    assert.deepEqual(await storedChecksums(s.dataDir, bare.id), { payload: bare.payload });
  });
});

describe('mutation group checksums: a v1 tarsum first (not computed at PUT layer)', () => {
  let s: TestServer;
  before(async () => {
    s = await startTestServer({ standalone: true });
  });
  after(() => s?.stop());

  it('the right v1 tarsum is computed on demand and accepted', async () => {
    await putJson(s.url, vectorId, vectorJson);
    await putLayer(s.url, vectorId, vectorLayer);
    is(await putChecksum(s.url, vectorId, vector.checksum_payload, vector.tarsum_v1_with_json), 200, 'true', 'right v1 at once');
    assert.deepEqual(await storedChecksums(s.dataDir, vectorId), { payload: vector.checksum_payload, tarsum: vector.tarsum_v1_with_json });
  });
});

describe('mutation group checksums: verify_tarsum off', () => {
  let s: TestServer;
  before(async () => {
    s = await startTestServer({ standalone: true, verify_tarsum: false });
  });
  after(() => s?.stop());

  it('a wrong tarsum is not compared, the payload still is', async () => {
    await putJson(s.url, vectorId, vectorJson);
    await putLayer(s.url, vectorId, vectorLayer);
    is(await putChecksum(s.url, vectorId, `sha256:${'3'.repeat(64)}`, vector.tarsum_v0_with_json), 400, MISMATCH, 'wrong payload');
    is(await putChecksum(s.url, vectorId, vector.checksum_payload, `tarsum+sha256:${'1'.repeat(64)}`), 200, 'true', 'wrong tarsum, right payload');
  });
});
