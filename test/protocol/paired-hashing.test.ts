import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { type ChildServer, spawnServer, stopChild } from '../helpers/child.js';
import { request } from '../helpers/http.js';
import { VECTORS } from '../helpers/paths.js';
import { payloadChecksum, pushImage, putTag, tarOf, type TestImage } from '../helpers/v1-client.js';
import { TarSum } from '../../src/digest/tarsum.js';

const S2 = 'application/vnd.docker.distribution.manifest.v2+json';
const sha = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const cpuinfo = process.platform === 'linux' ? readFileSync('/proc/cpuinfo', 'utf8') : '';
const hasShaNi = process.arch === 'x64' && /\bsha_ni\b/.test(cpuinfo);
const hasPclmul = process.arch === 'x64' && /\bpclmulqdq\b/.test(cpuinfo);

/** The tarsum v0 Docker 1.x sends for a layer whose tar is `tar` and whose json is `json`. */
function tarsumV0(json: Buffer, tar: Buffer): string {
  const t = new TarSum(json, { v1: false });
  t.write(tar);
  t.end();
  return t.result()!.v0;
}

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
 * (LR_SHA256X2=0); its gzip is inflated by native/gunzip.c (PCLMULQDQ CRC-32) where the CPU can,
 * by node:zlib otherwise (LR_NATIVE_GUNZIP=0). Each server its own process: the start line names
 * the paths; the vectors' image is accepted with its recorded tarsum and payload checksum and
 * refused with a payload checksum one bit off; a layer whose gzip trailer is wrong (its CRC-32 or
 * its length) has no diff_id, so no v2 form, where the same tar gzipped intact has one; a 3 MiB layer of several files (content across the server's
 * read and inflate chunks) comes back on /v2/ with its address and its diff_id as computed here.
 */
for (const mode of ['default', 'LR_SHA256X2=0', 'LR_NATIVE_GUNZIP=0'] as const) {
  describe(`paired hashing through a running server (${mode})`, { timeout: 120_000 }, () => {
    let s: ChildServer;
    let dir: string;
    before(async () => {
      dir = await mkdtemp(join(tmpdir(), 'lr-paired-'));
      s = await spawnServer(
        {
          STORAGE_PATH: join(dir, 'data'),
          V2: 'true',
          ...(mode === 'LR_SHA256X2=0' ? { LR_SHA256X2: '0' } : mode === 'LR_NATIVE_GUNZIP=0' ? { LR_NATIVE_GUNZIP: '0' } : {}),
        },
        [],
        {
          startTimeoutMs: 60_000,
        },
      );
    });
    after(async () => {
      await stopChild(s);
      await rm(dir, { recursive: true, force: true });
    });

    it('names its hash path on the start line', () => {
      const line =
        s
          .output()
          .split('\n')
          .find((l) => l.includes('legacy-registry listening')) ?? '';
      if (mode !== 'LR_SHA256X2=0' && hasShaNi) assert.match(line, /sha256="?paired \(SHA extensions\)/, line);
      else
        assert.match(
          line,
          mode !== 'LR_SHA256X2=0' ? /sha256="?node:crypto \(paired module / : /sha256="?node:crypto \(paired module turned off \(LR_SHA256X2=0\)\)/,
          line,
        );
      if (mode !== 'LR_NATIVE_GUNZIP=0' && hasPclmul) assert.match(line, /gunzip="?native \(PCLMULQDQ CRC-32\)/, line);
      else
        assert.match(
          line,
          mode !== 'LR_NATIVE_GUNZIP=0' ? /gunzip="?node:zlib \(native module / : /gunzip="?node:zlib \(native module turned off \(LR_NATIVE_GUNZIP=0\)\)/,
          line,
        );
    });

    it('gives no diff_id, so no v2 form, to a layer whose gzip trailer does not match what it inflates to', async () => {
      const tar = tarOf({ 'a.bin': randomBytes(300_000), 'b.txt': 'hello\n'.repeat(50_000) });
      const good = gzipSync(tar);
      for (const [what, at] of [
        ['CRC-32', good.length - 7],
        ['length', good.length - 3],
      ] as const) {
        const layer = Buffer.from(good);
        layer[at]! ^= 0x10;
        const id = createHash('sha256').update(`bad-${what}-${mode}`).digest('hex');
        const json = Buffer.from(JSON.stringify({ id, created: '2015-01-01T00:00:00Z', architecture: 'amd64', os: 'linux' }));
        // the payload checksum says the bytes are the client's own, and the Python registry takes
        // them so; but they are not a readable layer (the trailer is checked, whichever gunzip):
        // the bridge has no diff_id for it, so the tag has no v2 form
        const ok = await pushImage(s.url, { id, json, layer, payload: payloadChecksum(json, layer), tarsum: tarsumV0(json, tar) });
        assert.equal(ok[3]!.status, 200, `${what}: ${ok.map((r) => `${r.status} ${r.text}`).join(' | ')}`);
        assert.equal((await putTag(s.url, 'paired/badgz', what, id)).status, 200);
        const m = await request(s.url, `/v2/paired/badgz/manifests/${what}`, { headers: { Accept: S2 } });
        assert.notEqual(m.status, 200, `${what}: ${m.text}`);
        assert.ok(m.status < 500, `${what}: ${m.status} ${m.text}`);
      }
      // the same tar with its gzip intact goes through with that tarsum
      const id = createHash('sha256').update(`good-${mode}`).digest('hex');
      const json = Buffer.from(JSON.stringify({ id, created: '2015-01-01T00:00:00Z', architecture: 'amd64', os: 'linux' }));
      const rs = await pushImage(s.url, { id, json, layer: good, payload: payloadChecksum(json, good), tarsum: tarsumV0(json, tar) });
      assert.deepEqual(
        rs.map((r) => r.status),
        [404, 200, 200, 200],
        rs.map((r) => r.text).join(' '),
      );
      assert.equal((await putTag(s.url, 'paired/badgz', 'intact', id)).status, 200);
      const m = await request(s.url, '/v2/paired/badgz/manifests/intact', { headers: { Accept: S2 } });
      assert.equal(m.status, 200, m.text);
      const config = (await request(s.url, `/v2/paired/badgz/blobs/${m.json<{ config: { digest: string } }>().config.digest}`)).json<{
        rootfs: { diff_ids: string[] };
      }>();
      assert.deepEqual(config.rootfs.diff_ids, [sha(tar)]);
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
