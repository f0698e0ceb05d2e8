/**
 * Issue 11 item 1: the tarsum in X-Docker-Checksum (PUT checksum, spec §2.8) is accepted in both
 * forms of spec §6.2 — Docker 1.x's, and that of clients built with Go ≥ 1.10 (uname and gname
 * hashed empty) — and a wrong one still gets 400 "Checksum mismatch". The layer is the vector
 * layer.tar.gz, whose entries are owned by root/root, so the two forms differ.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { request, type Response } from '../helpers/http.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { VECTORS } from '../helpers/paths.js';
import { DOCKER_UA, chunkedStream } from '../helpers/v1-client.js';

interface LayerVector {
  checksum_payload: string;
  tarsum_v0_with_json: string;
  tarsum_v1_with_json: string;
  tarsum_dev_with_json: string;
  go110_tarsum_v0_with_json: string;
  go110_tarsum_v1_with_json: string;
  go110_tarsum_dev_with_json: string;
}
const expected = JSON.parse(readFileSync(join(VECTORS, 'expected.json'), 'utf8')) as { image_id: string; layers: Record<string, LayerVector> };
const v = expected.layers['layer.tar.gz']!;
const id = expected.image_id;
const json = readFileSync(join(VECTORS, 'json'));
const layer = readFileSync(join(VECTORS, 'layer.tar.gz'));
/** The User-Agent of a Go ≥ 1.10 build (Docker 18.03); the server decides nothing from it. */
const GO110_UA = 'docker/18.03.1-ce go/go1.10.1 git-commit/9ee9f40 kernel/4.15.0 os/linux arch/amd64';

/** PUT json and PUT layer as the CLI does them (spec §5.3), asserting each 200. */
async function putJsonAndLayer(reg: string, ua: string): Promise<void> {
  const j = await request(reg, `/v1/images/${id}/json`, { method: 'PUT', headers: { 'User-Agent': ua, 'Content-Type': 'application/json' }, body: json });
  assert.equal(j.status, 200, j.text);
  const l = await request(reg, `/v1/images/${id}/layer`, {
    method: 'PUT',
    headers: { 'User-Agent': ua, 'Content-Type': 'application/octet-stream' },
    body: chunkedStream(layer, 64),
  });
  assert.equal(l.status, 200, l.text);
}

function putChecksum(reg: string, ua: string, tarsum: string): Promise<Response> {
  return request(reg, `/v1/images/${id}/checksum`, {
    method: 'PUT',
    headers: { 'User-Agent': ua, 'X-Docker-Checksum': tarsum, 'X-Docker-Checksum-Payload': v.checksum_payload },
    body: '',
  });
}

describe('PUT /v1/images/:id/checksum: X-Docker-Checksum in either tarsum form (spec §6.2)', () => {
  it('the vector has owner names: the Go ≥ 1.10 tarsums differ from the original ones', () => {
    assert.notEqual(v.go110_tarsum_v0_with_json, v.tarsum_v0_with_json);
    assert.notEqual(v.go110_tarsum_v1_with_json, v.tarsum_v1_with_json);
  });

  const cases: [string, string, string][] = [
    ['Go ≥ 1.10 v0 (what Docker 17.x/18.x sends)', GO110_UA, v.go110_tarsum_v0_with_json],
    ['Go ≥ 1.10 v1', GO110_UA, v.go110_tarsum_v1_with_json],
    ['Go ≥ 1.10 dev', GO110_UA, v.go110_tarsum_dev_with_json],
    ['original v0 (what Docker 1.x sends)', DOCKER_UA, v.tarsum_v0_with_json],
    ['original v1', DOCKER_UA, v.tarsum_v1_with_json],
    ['original dev', DOCKER_UA, v.tarsum_dev_with_json],
  ];
  for (const [what, ua, tarsum] of cases) {
    describe(what, () => {
      let s: TestServer;
      before(async () => {
        s = await startTestServer({ standalone: true });
      });
      after(() => s.stop());

      it('is accepted: 200 true, and the image is served', async () => {
        await putJsonAndLayer(s.url, ua);
        const r = await putChecksum(s.url, ua, tarsum);
        assert.equal(r.status, 200);
        assert.equal(r.text, 'true');
        const got = await request(s.url, `/v1/images/${id}/layer`);
        assert.equal(got.status, 200);
        assert.ok(got.body.equals(layer));
        const meta = await request(s.url, `/v1/images/${id}/json`);
        assert.equal(meta.status, 200);
        assert.equal(meta.headers['x-docker-checksum-payload'], v.checksum_payload);
      });
    });
  }

  describe('a wrong tarsum', () => {
    let s: TestServer;
    before(async () => {
      s = await startTestServer({ standalone: true });
    });
    after(() => s.stop());

    it('is refused in every label with 400 "Checksum mismatch"; the right one then completes the push', async () => {
      await putJsonAndLayer(s.url, GO110_UA);
      const wrong = [
        `tarsum+sha256:${'1'.repeat(64)}`,
        // the right value under the wrong label
        v.go110_tarsum_v0_with_json.replace('tarsum+', 'tarsum.v1+'),
        v.tarsum_v1_with_json.replace('tarsum.v1+', 'tarsum+'),
        `tarsum.dev+sha256:${'2'.repeat(64)}`,
      ];
      for (const tarsum of wrong) {
        const r = await putChecksum(s.url, GO110_UA, tarsum);
        assert.equal(r.status, 400, tarsum);
        assert.equal(r.text, '{"error": "Checksum mismatch"}');
      }
      const half = await request(s.url, `/v1/images/${id}/json`);
      assert.equal(half.status, 400);
      assert.equal(half.text, '{"error": "Image is being uploaded, retry later"}');
      const ok = await putChecksum(s.url, GO110_UA, v.go110_tarsum_v0_with_json);
      assert.equal(ok.status, 200);
      assert.equal(ok.text, 'true');
    });
  });
});
