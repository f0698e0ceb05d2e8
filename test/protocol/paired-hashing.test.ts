import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { spawnServer, type ChildServer } from '../helpers/child.js';
import { request } from '../helpers/http.js';
import { VECTORS } from '../helpers/paths.js';
import { payloadChecksum, pushImage, putTag, tarOf, type TestImage } from '../helpers/v1-client.js';

const S2 = 'application/vnd.docker.distribution.manifest.v2+json';
const sha = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const hasShaNi = process.platform === 'linux' && process.arch === 'x64' && /\bsha_ni\b/.test(readFileSync('/proc/cpuinfo', 'utf8'));

/** The checksum vectors' image: its json, its gzip layer and the tarsum Docker 1.x sends for it. */
function vectorImage(): TestImage {
  const ex = JSON.parse(readFileSync(join(VECTORS, 'expected.json'), 'utf8')) as {
    image_id: string;
    json_file: string;
    layers: Record<string, { tarsum_v0_with_json: string }>;
  };
  const json = readFileSync(join(VECTORS, ex.json_file));
  const layer = readFileSync(join(VECTORS, 'layer.tar.gz'));
  return { id: ex.image_id, json, layer, payload: payloadChecksum(json, layer), tarsum: ex.layers['layer.tar.gz']!.tarsum_v0_with_json };
}

/**
 * A layer's pairs of sha256 (address and payload checksum over the gzip; diff_id and tarsum over
 * the tar) are hashed in one pass by native/sha256x2.c where the CPU can, by node:crypto otherwise
 * (LR_SHA256X2=0). Both servers, each its own process: the start line names the path; the
 * vectors' image is accepted with its recorded tarsum and payload checksum and refused with a
 * payload checksum one bit off; a 3 MiB layer of several files (content across the server's read
 * and inflate chunks) comes back on /v2/ with its address and its diff_id as computed here.
 */
for (const mode of ['default', 'LR_SHA256X2=0'] as const) {
  describe(`paired hashing through a running server (${mode})`, { timeout: 120_000 }, () => {
    let s: ChildServer;
    let dir: string;
    before(async () => {
      dir = await mkdtemp(join(tmpdir(), 'lr-paired-'));
      s = await spawnServer({ STORAGE_PATH: join(dir, 'data'), V2: 'true', ...(mode === 'default' ? {} : { LR_SHA256X2: '0' }) }, [], {
        startTimeoutMs: 60_000,
      });
    });
    after(async () => {
      if (s && s.proc.exitCode === null) {
        s.proc.kill('SIGTERM');
        await s.exited;
      }
      await rm(dir, { recursive: true, force: true });
    });

    it('names its hash path on the start line', () => {
      const line =
        s
          .output()
          .split('\n')
          .find((l) => l.includes('legacy-registry listening')) ?? '';
      if (mode === 'default' && hasShaNi) assert.match(line, /sha256="?paired \(SHA extensions\)/, line);
      else
        assert.match(
          line,
          mode === 'default' ? /sha256="?node:crypto \(paired module / : /sha256="?node:crypto \(paired module turned off \(LR_SHA256X2=0\)\)/,
          line,
        );
    });

    it('checks the recorded tarsum and payload checksum of the vectors image, and refuses a wrong payload', async () => {
      const img = vectorImage();
      const wrong = { ...img, id: createHash('sha256').update(`wrong-${mode}`).digest('hex') };
      const wrongJson = Buffer.from(img.json.toString('latin1').replace(img.id, wrong.id), 'latin1');
      const last = img.payload.at(-1) === '0' ? '1' : '0';
      const bad = await pushImage(s.url, {
        ...wrong,
        json: wrongJson,
        payload: `${payloadChecksum(wrongJson, img.layer).slice(0, -1)}${last}`,
        tarsum: undefined,
      });
      assert.equal(bad[3]!.status, 400, bad[3]!.text);
      const rs = await pushImage(s.url, img);
      assert.deepEqual(
        rs.map((r) => r.status),
        [404, 200, 200, 200],
        rs.map((r) => r.text).join(' '),
      );
    });

    it('serves a multi-file layer on /v2/ at its sha256, with the diff_id of its tar', async () => {
      const tar = tarOf({ 'a.bin': randomBytes(1_500_001), 'b/c.bin': randomBytes(700_000), 'd.txt': 'x', 'e.bin': randomBytes(1 << 20) });
      const layer = gzipSync(tar, { level: 1 });
      const id = createHash('sha256').update(`paired-${mode}-${Math.random()}`).digest('hex');
      const json = Buffer.from(JSON.stringify({ id, created: '2015-01-01T00:00:00Z', architecture: 'amd64', os: 'linux', container_config: { Cmd: null } }));
      const rs = await pushImage(s.url, { id, json, layer, payload: payloadChecksum(json, layer) });
      assert.deepEqual(
        rs.map((r) => r.status),
        [404, 200, 200, 200],
        rs.map((r) => r.text).join(' '),
      );
      assert.equal((await putTag(s.url, 'paired/app', 'latest', id)).status, 200);
      const m = await request(s.url, '/v2/paired/app/manifests/latest', { headers: { Accept: S2 } });
      assert.equal(m.status, 200, m.text);
      const manifest = m.json<{ config: { digest: string }; layers: { digest: string }[] }>();
      assert.deepEqual(
        manifest.layers.map((l) => l.digest),
        [sha(layer)],
      );
      const config = (await request(s.url, `/v2/paired/app/blobs/${manifest.config.digest}`)).json<{ rootfs: { diff_ids: string[] } }>();
      assert.deepEqual(config.rootfs.diff_ids, [sha(tar)]);
    });
  });
}
