import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { request } from '../helpers/http.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { sha256, writeOciLayout, type LayoutImage } from '../helpers/oci-layout.js';

const run = promisify(execFile);

function skopeoMissing(): string | undefined {
  if (existsSync('/usr/bin/skopeo')) return undefined;
  if (process.env.E2E_REQUIRED) throw new Error('E2E_REQUIRED: skopeo is not installed (apt-get install skopeo)');
  return 'skopeo is not installed (apt-get install skopeo)';
}

/** Debian's skopeo 1.9.3 against the v2 API (switch on, standalone registry). */
describe('skopeo: copy in and out, inspect, list-tags, delete', { skip: skopeoMissing() }, () => {
  let s: TestServer;
  let host: string;
  let work: string;
  let img: LayoutImage;
  const skopeo = (...args: string[]) => run('skopeo', ['--insecure-policy', ...args], { timeout: 120_000, env: { PATH: process.env.PATH ?? '', HOME: work } });

  before(async () => {
    s = await startTestServer({ standalone: true, v2: true, storage_delete: true });
    host = new URL(s.url).host;
    work = await mkdtemp(join(tmpdir(), 'lr-skopeo-'));
    img = await writeOciLayout(join(work, 'src'), 'v1');
  });
  after(async () => {
    await s?.stop();
    await rm(work, { recursive: true, force: true });
  });

  it('pushes an OCI image (POST, PATCH, PUT ?digest=, manifest PUT) and inspects it', async () => {
    await skopeo('copy', '--dest-tls-verify=false', `oci:${img.dir}:v1`, `docker://${host}/ns/app:v1`);
    const raw = await skopeo('inspect', '--raw', '--tls-verify=false', `docker://${host}/ns/app:v1`);
    assert.equal(raw.stdout, img.manifest.toString());
    const info = JSON.parse((await skopeo('inspect', '--tls-verify=false', `docker://${host}/ns/app:v1`)).stdout) as {
      Digest: string;
      Layers: string[];
      Architecture: string;
    };
    assert.equal(info.Digest, sha256(img.manifest));
    assert.deepEqual(info.Layers, [sha256(img.layer)]);
    const config = JSON.parse((await skopeo('inspect', '--config', '--tls-verify=false', `docker://${host}/ns/app:v1`)).stdout) as {
      rootfs: { diff_ids: string[] };
    };
    assert.deepEqual(config.rootfs.diff_ids, [sha256(img.tar)]);
  });

  it('copies between repositories as schema2 (blob mount), lists tags, pulls the bytes back', async () => {
    await skopeo('copy', '--src-tls-verify=false', '--dest-tls-verify=false', '--format', 'v2s2', `docker://${host}/ns/app:v1`, `docker://${host}/ns/other:s2`);
    const raw = JSON.parse((await skopeo('inspect', '--raw', '--tls-verify=false', `docker://${host}/ns/other:s2`)).stdout) as { mediaType: string };
    assert.equal(raw.mediaType, 'application/vnd.docker.distribution.manifest.v2+json');
    const tags = JSON.parse((await skopeo('list-tags', '--tls-verify=false', `docker://${host}/ns/other`)).stdout) as { Tags: string[] };
    assert.deepEqual(tags.Tags, ['s2']);
    await skopeo('copy', '--src-tls-verify=false', `docker://${host}/ns/other:s2`, `oci:${join(work, 'out')}:back`);
    const layer = await readFile(join(work, 'out', 'blobs', 'sha256', sha256(img.layer).slice(7)));
    assert.ok(layer.equals(img.layer), 'layer bytes identical after the round trip');
  });

  it('pushes a signed schema1 manifest (--format v2s1: signatures verified) and pulls it back', async () => {
    await skopeo('copy', '--dest-tls-verify=false', '--format', 'v2s1', `oci:${img.dir}:v1`, `docker://${host}/ns/legacy1:v1`);
    const raw = JSON.parse((await skopeo('inspect', '--raw', '--tls-verify=false', `docker://${host}/ns/legacy1:v1`)).stdout) as {
      schemaVersion: number;
      fsLayers: { blobSum: string }[];
      signatures: unknown[];
    };
    assert.equal(raw.schemaVersion, 1);
    assert.equal(raw.signatures.length, 1);
    await skopeo('copy', '--src-tls-verify=false', `docker://${host}/ns/legacy1:v1`, `oci:${join(work, 'out1')}:back`);
    assert.ok(readFileSync(join(work, 'out1', 'index.json')).length > 0);
  });

  it('deletes a tag by digest (GET manifest, DELETE /manifests/<digest>)', async () => {
    await skopeo('delete', '--tls-verify=false', `docker://${host}/ns/other:s2`);
    await assert.rejects(skopeo('inspect', '--tls-verify=false', `docker://${host}/ns/other:s2`), /manifest unknown/);
    assert.equal(
      (await request(s.url, '/v2/ns/app/manifests/v1', { method: 'HEAD', headers: { Accept: 'application/vnd.oci.image.manifest.v1+json' } })).status,
      200,
      'the other repository is untouched',
    );
  });
});
