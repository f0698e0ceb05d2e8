import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { VECTORS } from '../helpers/paths.js';
import { payloadChecksum, pushImage, putTag } from '../helpers/v1-client.js';
import { writeOciLayout } from '../helpers/oci-layout.js';
import { findUserByName, saveUser } from '../../src/db/users.js';
import { saveRepository } from '../../src/db/repositories.js';
import { podmanArgs } from '../helpers/podman.js';

const run = promisify(execFile);

function podmanMissing(): string | undefined {
  if (existsSync('/usr/bin/podman') && process.getuid?.() === 0) return undefined;
  if (process.env.E2E_REQUIRED) throw new Error('E2E_REQUIRED: podman is not installed (apt-get install podman) or not root');
  return 'podman is not installed (apt-get install podman), or not root';
}

/** Debian's podman 4.3 (isolated vfs storage) against the v2 API and the v1 search, standalone. */
describe('podman: search, pull of a v1-pushed image, push, list tags', { skip: podmanMissing() }, () => {
  let s: TestServer;
  let host: string;
  let work: string;
  const podman = (...args: string[]) =>
    run('podman', [...podmanArgs(work), ...args], {
      timeout: 120_000,
      env: { PATH: process.env.PATH ?? '', HOME: work, REGISTRY_AUTH_FILE: join(work, 'auth.json') },
    });

  before(async () => {
    s = await startTestServer({ standalone: true, v2: true });
    host = new URL(s.url).host;
    work = await mkdtemp(join(tmpdir(), 'lr-podman-'));
    await writeFile(join(work, 'auth.json'), '{"auths":{}}');
    const vec = JSON.parse(readFileSync(join(VECTORS, 'bridge', 'v1-to-config.json'), 'utf8')) as {
      v1_json_chain_root_first: string[];
      layer_blobs_base64_root_first: string[];
    };
    let top = '';
    for (const [i, j] of vec.v1_json_chain_root_first.entries()) {
      const json = Buffer.from(j);
      const layer = Buffer.from(vec.layer_blobs_base64_root_first[i]!, 'base64');
      top = (JSON.parse(j) as { id: string }).id;
      await pushImage(s.url, { id: top, json, layer, payload: payloadChecksum(json, layer) });
    }
    // the stand-in index records the repository (as a 1.x push does), then the tag
    const { request } = await import('../helpers/http.js');
    await request(s.url, '/v1/repositories/legacy/oldapp/', { method: 'PUT', body: JSON.stringify([{ id: top, Tag: 'latest' }]) });
    assert.equal((await putTag(s.url, 'legacy/oldapp', 'latest', top)).status, 200);
  });
  after(async () => {
    await s?.stop();
    await rm(work, { recursive: true, force: true });
  });

  it('searches (GET /v2/, then /v1/search)', async () => {
    const { stdout } = await podman('search', '--tls-verify=false', `${host}/oldapp`);
    assert.match(stdout, /legacy\/oldapp/);
  });

  it('pulls the v1-pushed image through the bridge', async () => {
    const { stdout } = await podman('pull', '--tls-verify=false', `${host}/legacy/oldapp:latest`);
    assert.match(stdout.trim(), /^[a-f0-9]{64}$/m);
  });

  it('pushes it to a new repository and lists its tags', async () => {
    await podman('tag', `${host}/legacy/oldapp:latest`, `${host}/ns/newapp:v2`);
    await podman('push', '--tls-verify=false', `${host}/ns/newapp:v2`);
    const { stdout } = await podman('search', '--tls-verify=false', '--list-tags', `${host}/ns/newapp`);
    assert.match(stdout, /ns\/newapp\s+v2/);
    // the v2-pushed repository is found by a search term too
    const found = await podman('search', '--tls-verify=false', `${host}/newapp`);
    assert.match(found.stdout, /ns\/newapp/);
  });
});

/**
 * The default deployment (index + registry, v2 Bearer tokens from the index): podman and skopeo log
 * in, push through /v2/, and podman search finds the public repositories they pushed (never a
 * private one).
 */
describe('podman and skopeo with the index: login, push, search finds v2-pushed repositories', { skip: podmanMissing() }, () => {
  let s: TestServer;
  let host: string;
  let work: string;
  const env = (): NodeJS.ProcessEnv => ({ PATH: process.env.PATH ?? '', HOME: work, REGISTRY_AUTH_FILE: join(work, 'auth.json') });
  const podman = (...args: string[]) =>
    run('podman', [...podmanArgs(work), ...args], {
      timeout: 120_000,
      env: env(),
    });
  const skopeo = (...args: string[]) => run('skopeo', ['--insecure-policy', ...args], { timeout: 120_000, env: env() });

  before(async () => {
    s = await startTestServer({ v2: true, bcrypt_cost: 4 });
    host = new URL(s.url).host;
    work = await mkdtemp(join(tmpdir(), 'lr-podman-idx-'));
    await writeFile(join(work, 'auth.json'), '{"auths":{}}');
    await saveUser(s.db!, { username: 'alice', email: 'a@example.com', password: 'alicepw', active: true }, { cost: 4 });
    await saveUser(s.db!, { username: 'bobby', email: 'b@example.com', password: 'bobbypw', active: true }, { cost: 4 });
  });
  after(async () => {
    await s?.stop();
    await rm(work, { recursive: true, force: true });
  });

  it('skopeo pushes with a login; podman search finds the repository, with its tags', async () => {
    assert.match((await skopeo('login', '--tls-verify=false', '-u', 'alice', '-p', 'alicepw', host)).stdout, /Login Succeeded/);
    const img = await writeOciLayout(join(work, 'src'), 'v1');
    await skopeo('copy', '--dest-tls-verify=false', `oci:${img.dir}:v1`, `docker://${host}/alice/gadget:v1`);
    await skopeo('copy', '--dest-tls-verify=false', `oci:${img.dir}:v1`, `docker://${host}/alice/hidden-gadget:v1`);
    const owner = await findUserByName(s.db!, 'alice');
    await saveRepository(s.db!, { namespace: 'alice', name: 'hidden-gadget', private: true, ownerId: owner!.id });

    // podman sends no credentials to /v1/search (it answers without a challenge), so the private
    // repository never shows, not even to its owner; the public one does
    const mine = await podman('search', '--tls-verify=false', '--format', '{{.Name}}', `${host}/gadget`);
    assert.deepEqual(mine.stdout.trim().split('\n'), [`${host}/alice/gadget`]);
    const tags = await podman('search', '--tls-verify=false', '--list-tags', `${host}/alice/gadget`);
    assert.match(tags.stdout, /alice\/gadget\s+v1/);

    // another account: the same
    await podman('login', '--tls-verify=false', '-u', 'bobby', '-p', 'bobbypw', host);
    const theirs = await podman('search', '--tls-verify=false', '--format', '{{.Name}}', `${host}/gadget`);
    assert.deepEqual(theirs.stdout.trim().split('\n'), [`${host}/alice/gadget`]);
  });
});
