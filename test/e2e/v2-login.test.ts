import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { dockerdMissing, startDockerd, type Dockerd } from '../helpers/dockerd.js';
import { writeOciLayout } from '../helpers/oci-layout.js';
import { saveUser } from '../../src/db/users.js';
import { saveRepository } from '../../src/db/repositories.js';
import { writeHtpasswdEntry } from '../../src/auth/htpasswd.js';
import { spawn, type ChildProcess } from 'node:child_process';
import { freePort } from '../helpers/ports.js';
import { request } from '../helpers/http.js';
import { podmanArgs } from '../helpers/podman.js';

const run = promisify(execFile);

/** serve (index + registry) with v2 on: token auth by default. Accounts alice (owner) and bobby. */
async function tokenServer(): Promise<TestServer> {
  const s = await startTestServer({ v2: true, bcrypt_cost: 4 });
  const a = await saveUser(s.db!, { username: 'alice', email: 'a@example.com', password: 'alicepw', active: true }, { cost: 4 });
  await saveUser(s.db!, { username: 'bobby', email: 'b@example.com', password: 'bobbypw', active: true }, { cost: 4 });
  await saveRepository(s.db!, { namespace: 'alice', name: 'private', ownerId: a!.id, private: true });
  return s;
}

/** Debian's dockerd 20.10: docker login (Bearer realm of the index, identity token), push, pull. */
describe('docker login with v2 token auth and htpasswd', { skip: dockerdMissing() }, () => {
  let s: TestServer;
  let h: TestServer;
  let d: Dockerd;
  let host: string;
  let work: string;

  before(async () => {
    s = await tokenServer();
    host = new URL(s.url).host;
    work = await mkdtemp(join(tmpdir(), 'lr-login-'));
    await writeHtpasswdEntry(join(work, 'htpasswd'), 'hanna', 'hannapw', 4);
    h = await startTestServer({ standalone: true, v2: true, v2_auth: 'htpasswd', htpasswd_path: join(work, 'htpasswd') });
    d = await startDockerd();
    await mkdir(join(work, 'root', 'etc'), { recursive: true });
    await writeFile(join(work, 'root', 'etc', 'hello'), `hello ${Date.now()}\n`);
    await run('tar', ['-C', join(work, 'root'), '-cf', join(work, 'rootfs.tar'), '.']);
    await d.docker('import', join(work, 'rootfs.tar'), `${host}/alice/private:t1`);
  });
  after(async () => {
    await d?.stop();
    await s?.stop();
    await h?.stop();
    await rm(work, { recursive: true, force: true });
  });

  it('refuses a wrong password', async () => {
    await assert.rejects(d.docker('login', '-u', 'alice', '-p', 'wrong', host), /unauthorized|401|incorrect/i);
  });

  let digest: string;
  it('logs in, pushes, pulls by tag and by digest', async () => {
    const { stdout } = await d.docker('login', '-u', 'alice', '-p', 'alicepw', host);
    assert.match(stdout, /Login Succeeded/);
    const push = await d.docker('push', `${host}/alice/private:t1`);
    const m = /t1: digest: (sha256:[a-f0-9]{64})/.exec(push.stdout);
    assert.ok(m, push.stdout);
    digest = m[1]!;
    await d.docker('rmi', `${host}/alice/private:t1`);
    assert.match((await d.docker('pull', `${host}/alice/private:t1`)).stdout, new RegExp(`Digest: ${digest}`));
    await d.docker('rmi', `${host}/alice/private:t1`);
    assert.match((await d.docker('pull', `${host}/alice/private@${digest}`)).stdout, new RegExp(`Digest: ${digest}`));
  });

  it('another account may not pull the private repository, nor push into it', async () => {
    await d.docker('logout', host);
    assert.match((await d.docker('login', '-u', 'bobby', '-p', 'bobbypw', host)).stdout, /Login Succeeded/);
    await assert.rejects(d.docker('pull', `${host}/alice/private:t1`), /denied|unauthorized/i);
    await d.docker('tag', `${host}/alice/private@${digest}`, `${host}/alice/private:bob`);
    await assert.rejects(d.docker('push', `${host}/alice/private:bob`), /denied|unauthorized/i);
    await d.docker('tag', `${host}/alice/private@${digest}`, `${host}/bobby/mine:t1`);
    await d.docker('push', `${host}/bobby/mine:t1`);
  });

  it('logs in against a registry in htpasswd mode and pushes', async () => {
    const hh = new URL(h.url).host;
    await assert.rejects(d.docker('login', '-u', 'hanna', '-p', 'wrong', hh), /unauthorized|401/i);
    assert.match((await d.docker('login', '-u', 'hanna', '-p', 'hannapw', hh)).stdout, /Login Succeeded/);
    await d.docker('tag', `${host}/alice/private@${digest}`, `${hh}/any/thing:t1`);
    const push = await d.docker('push', `${hh}/any/thing:t1`);
    assert.match(push.stdout, /t1: digest: sha256:/);
  });
});

function podmanMissing(): string | undefined {
  if (existsSync('/usr/bin/podman') && process.getuid?.() === 0) return undefined;
  if (process.env.E2E_REQUIRED) throw new Error('E2E_REQUIRED: podman is not installed (apt-get install podman) or not root');
  return 'podman is not installed (apt-get install podman), or not root';
}

describe('podman login, push and pull with v2 token auth', { skip: podmanMissing() }, () => {
  let s: TestServer;
  let host: string;
  let work: string;
  const podman = (...args: string[]) =>
    run('podman', [...podmanArgs(work), ...args], {
      timeout: 120_000,
      env: { PATH: process.env.PATH ?? '', HOME: work, REGISTRY_AUTH_FILE: join(work, 'auth.json') },
    });

  before(async () => {
    s = await tokenServer();
    host = new URL(s.url).host;
    // lower case only: podman names an image pulled from oci:<dir> after the directory
    work = join(tmpdir(), `lr-podman-login-${process.pid}-${Date.now()}`);
    await mkdir(work);
    await writeFile(join(work, 'auth.json'), '{"auths":{}}');
    await writeOciLayout(join(work, 'img'), 'v1');
  });
  after(async () => {
    await s?.stop();
    await rm(work, { recursive: true, force: true });
  });

  it('refuses a wrong password, logs in, pushes and pulls back', async () => {
    await assert.rejects(podman('login', '--tls-verify=false', '-u', 'alice', '-p', 'wrong', host), /unauthorized|401|invalid/i);
    assert.match((await podman('login', '--tls-verify=false', '-u', 'alice', '-p', 'alicepw', host)).stdout, /Login Succeeded/);
    await podman('pull', `oci:${join(work, 'img')}:v1`);
    const local = (await podman('images', '--format', '{{.ID}}')).stdout.trim().split('\n')[0]!;
    await podman('tag', local, `${host}/alice/private:v1`);
    await podman('push', '--tls-verify=false', `${host}/alice/private:v1`);
    await podman('rmi', '-f', `${host}/alice/private:v1`);
    const { stdout } = await podman('pull', '--tls-verify=false', `${host}/alice/private:v1`);
    assert.match(stdout.trim(), /^[a-f0-9]{64}$/m);
  });

  it('another account cannot pull the private repository', async () => {
    await podman('logout', host);
    await podman('login', '--tls-verify=false', '-u', 'bobby', '-p', 'bobbypw', host);
    // it exists (alice pushed it above): only the missing right can refuse it
    await assert.rejects(podman('pull', '--tls-verify=false', `${host}/alice/private:v1`), /denied|unauthorized/i);
  });
});

function skopeoMissing(): string | undefined {
  if (existsSync('/usr/bin/skopeo')) return undefined;
  if (process.env.E2E_REQUIRED) throw new Error('E2E_REQUIRED: skopeo is not installed (apt-get install skopeo)');
  return 'skopeo is not installed (apt-get install skopeo)';
}

describe('skopeo login, copy and inspect with v2 token auth', { skip: skopeoMissing() }, () => {
  let s: TestServer;
  let host: string;
  let work: string;
  const skopeo = (...args: string[]) =>
    run('skopeo', ['--insecure-policy', ...args], {
      timeout: 120_000,
      env: { PATH: process.env.PATH ?? '', HOME: work, REGISTRY_AUTH_FILE: join(work, 'auth.json') },
    });

  before(async () => {
    s = await tokenServer();
    host = new URL(s.url).host;
    work = await mkdtemp(join(tmpdir(), 'lr-skopeo-login-'));
    await writeFile(join(work, 'auth.json'), '{"auths":{}}');
  });
  after(async () => {
    await s?.stop();
    await rm(work, { recursive: true, force: true });
  });

  it('without login a push is refused; after login copy and inspect work', async () => {
    const img = await writeOciLayout(join(work, 'src'), 'v1');
    await assert.rejects(
      skopeo('copy', '--dest-tls-verify=false', `oci:${img.dir}:v1`, `docker://${host}/alice/sko:v1`),
      /unauthorized|authentication required|denied/i,
    );
    await assert.rejects(skopeo('login', '--tls-verify=false', '-u', 'alice', '-p', 'wrong', host), /unauthorized|401|invalid/i);
    assert.match((await skopeo('login', '--tls-verify=false', '-u', 'alice', '-p', 'alicepw', host)).stdout, /Login Succeeded/);
    await skopeo('copy', '--dest-tls-verify=false', `oci:${img.dir}:v1`, `docker://${host}/alice/sko:v1`);
    const raw = await skopeo('inspect', '--raw', '--tls-verify=false', `docker://${host}/alice/sko:v1`);
    assert.equal(raw.stdout, img.manifest.toString());
    await skopeo('copy', '--src-tls-verify=false', '--dest-tls-verify=false', `docker://${host}/alice/sko:v1`, `docker://${host}/alice/sko2:v1`);
    const tags = JSON.parse((await skopeo('list-tags', '--tls-verify=false', `docker://${host}/alice/sko2`)).stdout) as { Tags: string[] };
    assert.deepEqual(tags.Tags, ['v1']);
  });
});

function distributionMissing(): string | undefined {
  if (existsSync('/usr/bin/docker-registry') && existsSync('/usr/bin/skopeo')) return undefined;
  if (process.env.E2E_REQUIRED) throw new Error('E2E_REQUIRED: docker-registry or skopeo is not installed (apt-get install docker-registry skopeo)');
  return 'docker-registry (distribution 2.8) or skopeo is not installed';
}

/**
 * Debian's docker-registry (distribution 2.8.2) with auth.token pointing at our index: it checks our
 * JWTs (x5c against the published certificate, libtrust kid) exactly as for any token service.
 */
describe('distribution 2.8 as the registry, our index as its token service', { skip: distributionMissing() }, () => {
  let idx: TestServer;
  let dist: ChildProcess;
  let distHost: string;
  let work: string;
  let log = '';
  const skopeo = (...args: string[]) =>
    run('skopeo', ['--insecure-policy', ...args], {
      timeout: 120_000,
      env: { PATH: process.env.PATH ?? '', HOME: work, REGISTRY_AUTH_FILE: join(work, 'auth.json') },
    });

  before(async () => {
    // the index issues tokens for distribution's auth.token.service only when told of it
    idx = await startTestServer({ bcrypt_cost: 4, token_audiences: ['distribution-test'] }, { role: 'index' });
    await saveUser(idx.db!, { username: 'alice', email: 'a@example.com', password: 'alicepw', active: true }, { cost: 4 });
    await saveUser(idx.db!, { username: 'bobby', email: 'b@example.com', password: 'bobbypw', active: true }, { cost: 4 });
    work = await mkdtemp(join(tmpdir(), 'lr-dist-token-'));
    await writeFile(join(work, 'auth.json'), '{"auths":{}}');
    await writeFile(join(work, 'bundle.pem'), (await request(idx.url, '/.well-known/token-cert.pem')).text);
    const port = await freePort();
    distHost = `127.0.0.1:${port}`;
    await writeFile(
      join(work, 'config.yml'),
      [
        'version: 0.1',
        'log: {level: info}',
        'storage:',
        `  filesystem: {rootdirectory: ${join(work, 'data')}}`,
        'http:',
        `  addr: ${distHost}`,
        'auth:',
        '  token:',
        `    realm: ${idx.url}/v2/token`,
        '    service: distribution-test',
        '    issuer: legacy-registry',
        `    rootcertbundle: ${join(work, 'bundle.pem')}`,
        '',
      ].join('\n'),
    );
    dist = spawn('/usr/bin/docker-registry', ['serve', join(work, 'config.yml')], { stdio: ['ignore', 'pipe', 'pipe'] });
    dist.stdout!.on('data', (d: Buffer) => (log += d.toString()));
    dist.stderr!.on('data', (d: Buffer) => (log += d.toString()));
    for (let i = 0; ; i++) {
      try {
        if ((await request(`http://${distHost}`, '/v2/')).status === 401) break;
      } catch {
        // not listening yet
      }
      if (i > 100) throw new Error(`docker-registry did not start:\n${log}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  });
  after(async () => {
    dist?.kill('SIGTERM');
    if (dist) await new Promise((r) => dist.once('exit', r));
    await idx?.stop();
    await rm(work, { recursive: true, force: true });
  });

  it('skopeo logs in through our realm, pushes and inspects; another account is denied', async () => {
    const challenge = String((await request(`http://${distHost}`, '/v2/')).headers['www-authenticate']);
    assert.match(challenge, new RegExp(`realm="${idx.url}/v2/token"`));
    assert.match((await skopeo('login', '--tls-verify=false', '-u', 'alice', '-p', 'alicepw', distHost)).stdout, /Login Succeeded/);
    const img = await writeOciLayout(join(work, 'src'), 'v1');
    await skopeo('copy', '--dest-tls-verify=false', `oci:${img.dir}:v1`, `docker://${distHost}/alice/app:v1`);
    const raw = await skopeo('inspect', '--raw', '--tls-verify=false', `docker://${distHost}/alice/app:v1`);
    assert.equal(raw.stdout, img.manifest.toString(), log.slice(-2000));
    await skopeo('login', '--tls-verify=false', '-u', 'bobby', '-p', 'bobbypw', distHost);
    await assert.rejects(
      skopeo('copy', '--dest-tls-verify=false', `oci:${img.dir}:v1`, `docker://${distHost}/alice/app:v2`),
      /denied|unauthorized|authentication required/i,
    );
  });
});
