import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { request } from '../helpers/http.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { dockerdMissing, startDockerd, type Dockerd } from '../helpers/dockerd.js';
import { VECTORS } from '../helpers/paths.js';
import { payloadChecksum, pushImage, putTag } from '../helpers/v1-client.js';
import { readFileSync } from 'node:fs';

const run = promisify(execFile);

/** Debian's dockerd 20.10 pushing and pulling through the v2 API (switch on, standalone registry). */
describe('docker 20.10 push and pull over v2', { skip: dockerdMissing() }, () => {
  let s: TestServer;
  let d: Dockerd;
  let host: string;
  let work: string;

  before(async () => {
    s = await startTestServer({ standalone: true, v2: true });
    host = new URL(s.url).host;
    d = await startDockerd();
    work = await mkdtemp(join(tmpdir(), 'lr-docker-'));
    await mkdir(join(work, 'root', 'etc'), { recursive: true });
    await writeFile(join(work, 'root', 'etc', 'hello'), `hello ${Date.now()}\n`);
    await run('tar', ['-C', join(work, 'root'), '-cf', join(work, 'rootfs.tar'), '.']);
  });
  after(async () => {
    await d?.stop();
    await s?.stop();
    await rm(work, { recursive: true, force: true });
  });

  let digest: string;
  it('pushes an imported image (HEAD, POST, PATCH, PUT ?digest=, schema2 manifest)', async () => {
    await d.docker('import', join(work, 'rootfs.tar'), `${host}/ns/imp:t1`);
    const { stdout } = await d.docker('push', `${host}/ns/imp:t1`);
    const m = /t1: digest: (sha256:[a-f0-9]{64}) size: (\d+)/.exec(stdout);
    assert.ok(m, stdout);
    digest = m[1]!;
    const head = await request(s.url, '/v2/ns/imp/manifests/t1', {
      method: 'HEAD',
      headers: { Accept: 'application/vnd.docker.distribution.manifest.v2+json' },
    });
    assert.equal(head.headers['docker-content-digest'], digest);
  });

  it('pulls it back by tag and by digest after removing it locally', async () => {
    await d.docker('rmi', `${host}/ns/imp:t1`);
    const byTag = await d.docker('pull', `${host}/ns/imp:t1`);
    assert.match(byTag.stdout, new RegExp(`Digest: ${digest}`));
    await d.docker('rmi', `${host}/ns/imp:t1`);
    const byDigest = await d.docker('pull', `${host}/ns/imp@${digest}`);
    assert.match(byDigest.stdout, new RegExp(`Digest: ${digest}`));
  });

  it('pulls an image pushed with the v1 protocol; its image ID is the one Docker computes (bridge vector)', async () => {
    const vec = JSON.parse(readFileSync(join(VECTORS, 'bridge', 'v1-to-config.json'), 'utf8')) as {
      v1_json_chain_root_first: string[];
      layer_blobs_base64_root_first: string[];
      expected_config_digest: string;
    };
    let top = '';
    for (const [i, j] of vec.v1_json_chain_root_first.entries()) {
      const json = Buffer.from(j);
      const layer = Buffer.from(vec.layer_blobs_base64_root_first[i]!, 'base64');
      top = (JSON.parse(j) as { id: string }).id;
      const rs = await pushImage(s.url, { id: top, json, layer, payload: payloadChecksum(json, layer) });
      assert.equal(rs[rs.length - 1]!.status, 200);
    }
    assert.equal((await putTag(s.url, 'legacy/chain', 'latest', top)).status, 200);
    await d.docker('pull', `${host}/legacy/chain:latest`);
    const { stdout } = await d.docker('image', 'inspect', '--format', '{{.Id}}', `${host}/legacy/chain:latest`);
    assert.equal(stdout.trim(), vec.expected_config_digest);
  });

  it('pushes the same layers to another repository by cross-repository mount', async () => {
    await d.docker('tag', `${host}/ns/imp@${digest}`, `${host}/ns/copy:t2`);
    const { stdout } = await d.docker('push', `${host}/ns/copy:t2`);
    assert.match(stdout, /Mounted from ns\/imp|Layer already exists|Pushed/);
    const tags = await request(s.url, '/v2/ns/copy/tags/list');
    assert.deepEqual(tags.json(), { name: 'ns/copy', tags: ['t2'] });
  });
});
