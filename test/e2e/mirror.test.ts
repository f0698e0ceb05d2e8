import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import bcrypt from 'bcryptjs';
import { request } from '../helpers/http.js';
import { freePort } from '../helpers/ports.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { cleanup, startCountingProxy, stopChild, type CountingProxy } from '../helpers/counting-proxy.js';
import { sha256, writeOciLayout, type LayoutImage } from '../helpers/oci-layout.js';
import { dockerdMissing, startDockerd, type Dockerd } from '../helpers/dockerd.js';
import { saveUser } from '../../src/db/users.js';
import { podmanArgs } from '../helpers/podman.js';

const run = promisify(execFile);

function toolsMissing(): string | undefined {
  const missing = ['/usr/bin/docker-registry', '/usr/bin/skopeo', '/usr/bin/podman'].filter((f) => !existsSync(f));
  if (missing.length === 0) return undefined;
  if (process.env.E2E_REQUIRED) throw new Error(`E2E_REQUIRED: ${missing.join(', ')} not installed (apt-get install docker-registry skopeo podman)`);
  return `${missing.join(', ')} not installed`;
}

interface Distribution {
  readonly url: string;
  readonly host: string;
  stop(): Promise<void>;
}

/** Debian's docker-registry (distribution 2.8.2) as the upstream, with htpasswd or token auth. */
async function startDistribution(work: string, auth: string[]): Promise<Distribution> {
  const port = await freePort();
  const cfg = join(work, `dist-${port}.yml`);
  await writeFile(
    cfg,
    [
      'version: 0.1',
      'log:',
      '  level: warn',
      'storage:',
      '  filesystem:',
      `    rootdirectory: ${join(work, `dist-${port}`)}`,
      '  delete:',
      '    enabled: true',
      'http:',
      `  addr: 127.0.0.1:${port}`,
      'auth:',
      ...auth,
      '',
    ].join('\n'),
  );
  const proc: ChildProcess = spawn('/usr/bin/docker-registry', ['serve', cfg], { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  proc.stdout!.on('data', (d: Buffer) => (log += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (log += d.toString()));
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; ; i++) {
    try {
      if ((await request(url, '/v2/')).status === 401) break;
    } catch {
      // not listening yet
    }
    if (i > 150) throw new Error(`docker-registry did not start:\n${log}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    url,
    host: `127.0.0.1:${port}`,
    stop: () => stopChild(proc),
  };
}

/**
 * The pull-through mirror with real upstreams and real clients (issue 13): distribution 2.8.2 with
 * htpasswd behind a counting proxy; skopeo, podman (registries.conf mirror entry) and dockerd 20.10
 * (registry-mirrors, library/… names) pulling through us.
 */
describe('mirror e2e: distribution 2.8.2 upstream (htpasswd), skopeo, podman, dockerd', { skip: toolsMissing(), timeout: 600_000 }, () => {
  let work: string;
  let dist: Distribution;
  let proxy: CountingProxy;
  let mirror: TestServer;
  let mhost: string;
  let img: LayoutImage;
  const creds = 'puller:pullerpw';
  const skopeo = (...args: string[]) => run('skopeo', ['--insecure-policy', ...args], { timeout: 180_000, env: { PATH: process.env.PATH ?? '', HOME: work } });
  /** Copies the layout's v1 image to the upstream only (as schema2), at `ref`. */
  const pushUpstream = (layout: string, ref: string) =>
    skopeo('copy', '--dest-tls-verify=false', '--dest-creds', creds, '--format', 'v2s2', `oci:${layout}:v1`, `docker://${dist.host}/${ref}`);

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'lr-mirror-e2e-'));
    await writeFile(join(work, 'htpasswd'), `puller:${bcrypt.hashSync('pullerpw', 5)}\n`);
    dist = await startDistribution(work, ['  htpasswd:', '    realm: upstream', `    path: ${join(work, 'htpasswd')}`]);
    proxy = await startCountingProxy(dist.url);
    img = await writeOciLayout(join(work, 'img'), 'v1');
    // only the upstream has library/hello (what a docker daemon asks its mirror for)
    await pushUpstream(img.dir, 'library/hello:latest');
    mirror = await startTestServer({
      standalone: true,
      v2: true,
      mirror: { upstreams: [{ url: proxy.url, username: 'puller', password: 'pullerpw' }], ttl: 3600, timeout: 10, breaker_seconds: 1 },
    });
    mhost = new URL(mirror.url).host;
  });
  after(() =>
    cleanup(
      () => mirror?.stop(),
      () => proxy?.close(),
      () => dist?.stop(),
      () => rm(work, { recursive: true, force: true }),
    ),
  );

  it('skopeo copies an image through the mirror (the upstream Basic credentials are the mirror’s)', async () => {
    await skopeo('copy', '--src-tls-verify=false', `docker://${mhost}/library/hello:latest`, `oci:${join(work, 'out1')}:x`);
    const layer = await readFile(join(work, 'out1', 'blobs', 'sha256', sha256(img.layer).slice(7)));
    assert.ok(layer.equals(img.layer));
    assert.ok(proxy.count(/^GET \/v2\/library\/hello\/blobs\//) >= 2);
    const cat = (await request(mirror.url, '/v2/_catalog')).json<{ repositories: string[] }>();
    assert.deepEqual(cat.repositories, ['library/hello']);
  });

  it('podman pulls through a registries.conf mirror entry', { skip: process.getuid?.() === 0 ? undefined : 'podman needs root here' }, async () => {
    const conf = join(work, 'registries.conf');
    await writeFile(
      conf,
      [
        '[[registry]]',
        'prefix = "upstream.invalid"',
        'location = "upstream.invalid"',
        '[[registry.mirror]]',
        `location = "${mhost}"`,
        'insecure = true',
        '',
      ].join('\n'),
    );
    const podman = (...args: string[]) =>
      run('podman', [...podmanArgs(work, { root: 'proot', run: 'prun' }), ...args], {
        timeout: 180_000,
        env: { PATH: process.env.PATH ?? '', HOME: work, CONTAINERS_REGISTRIES_CONF: conf, REGISTRY_AUTH_FILE: join(work, 'auth.json') },
      });
    await writeFile(join(work, 'auth.json'), '{"auths":{}}');
    // upstream.invalid does not resolve: only the mirror can answer
    await podman('pull', 'upstream.invalid/library/hello:latest');
    const { stdout } = await podman('image', 'inspect', '--format', '{{.Digest}}', 'upstream.invalid/library/hello:latest');
    assert.match(stdout, /^sha256:/);
  });

  it('dockerd 20.10 with registry-mirrors pulls library/hello that only the upstream has', { skip: dockerdMissing() }, async () => {
    let d: Dockerd | undefined;
    try {
      d = await startDockerd(['--registry-mirror', mirror.url]);
      await d.docker('pull', 'hello:latest');
      const { stdout } = await d.docker('image', 'inspect', '--format', '{{.Id}}', 'hello:latest');
      assert.equal(stdout.trim(), sha256(img.config));
    } finally {
      await d?.stop();
    }
  });

  it('upstream killed after a first pull: the second pull comes from the cache, an uncached tag is a clear error', async () => {
    await proxy.down();
    try {
      await skopeo('copy', '--src-tls-verify=false', `docker://${mhost}/library/hello:latest`, `oci:${join(work, 'out2')}:x`);
      const layer = await readFile(join(work, 'out2', 'blobs', 'sha256', sha256(img.layer).slice(7)));
      assert.ok(layer.equals(img.layer));
      await assert.rejects(skopeo('inspect', '--tls-verify=false', `docker://${mhost}/library/hello:other`), /503 Service Unavailable/);
      // skopeo shows the status; the body says why
      const r = await request(mirror.url, '/v2/library/hello/manifests/other');
      assert.equal(r.status, 503);
      assert.match(r.text, /"code":"UNAVAILABLE".*the upstream is unavailable .* and library\/hello:other is not cached/);
    } finally {
      await proxy.up();
    }
  });

  it('upstream back: a tag changed upstream is what the next pull gets', async () => {
    const img2 = await writeOciLayout(join(work, 'img2'), 'v1');
    await pushUpstream(img2.dir, 'library/hello:latest');
    await new Promise((r) => setTimeout(r, 1200)); // the breaker opened by the outage lets a trial through
    const info = JSON.parse((await skopeo('inspect', '--tls-verify=false', `docker://${mhost}/library/hello:latest`)).stdout) as { Layers: string[] };
    assert.deepEqual(info.Layers, [sha256(img2.layer)]);
  });

  it('eight concurrent cold pulls (skopeo) fetch each blob from upstream once', async () => {
    const img3 = await writeOciLayout(join(work, 'img3'), 'v1');
    await pushUpstream(img3.dir, 'team/eight:v1');
    await Promise.all(
      Array.from({ length: 8 }, (_, i) => skopeo('copy', '--src-tls-verify=false', `docker://${mhost}/team/eight:v1`, `oci:${join(work, `eight${i}`)}:x`)),
    );
    for (const b of [img3.layer, img3.config]) assert.equal(proxy.count(new RegExp(`^GET /v2/team/eight/blobs/${sha256(b)}`)), 1, `${sha256(b)} fetched once`);
  });
});

/**
 * distribution 2.8.2 with token auth whose token service is our index (it trusts the index's
 * certificate): the mirror does the Bearer dance with its credentials; the mirror's own htpasswd
 * decides who may read through it.
 */
describe('mirror e2e: distribution 2.8.2 upstream with token auth (our index as its token service)', { skip: toolsMissing(), timeout: 300_000 }, () => {
  let work: string;
  let idx: TestServer;
  let realm: CountingProxy;
  let dist: Distribution;
  let mirror: TestServer;
  const skopeo = (...args: string[]) => run('skopeo', ['--insecure-policy', ...args], { timeout: 180_000, env: { PATH: process.env.PATH ?? '', HOME: work } });

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'lr-mirror-tok-'));
    idx = await startTestServer({ bcrypt_cost: 4, token_audiences: ['upstream-registry'] }, { role: 'index' });
    await saveUser(idx.db!, { username: 'tokuser', email: 't@example.com', password: 'tokuserpw', active: true }, { cost: 4 });
    await writeFile(join(work, 'bundle.pem'), (await request(idx.url, '/.well-known/token-cert.pem')).text);
    // the token service is reached through a counting proxy: token requests are counted
    realm = await startCountingProxy(idx.url);
    dist = await startDistribution(work, [
      '  token:',
      `    realm: ${realm.url}/v2/token`,
      '    service: upstream-registry',
      '    issuer: legacy-registry',
      `    rootcertbundle: ${join(work, 'bundle.pem')}`,
    ]);
    await writeFile(join(work, 'mirror-htpasswd'), `reader:${bcrypt.hashSync('readerpw', 5)}\n`);
    mirror = await startTestServer({
      standalone: true,
      v2: true,
      v2_auth: 'htpasswd',
      htpasswd_path: join(work, 'mirror-htpasswd'),
      mirror: { upstreams: [{ url: dist.url, username: 'tokuser', password: 'tokuserpw' }] },
    });
  });
  after(() =>
    cleanup(
      () => mirror?.stop(),
      () => dist?.stop(),
      () => realm?.close(),
      () => idx?.stop(),
      () => rm(work, { recursive: true, force: true }),
    ),
  );

  it('pulls a private upstream image with Bearer tokens for the mirror’s credentials; clients need the mirror’s own login', async () => {
    const img = await writeOciLayout(join(work, 'img'), 'v1');
    await skopeo('copy', '--dest-tls-verify=false', '--dest-creds', 'tokuser:tokuserpw', `oci:${img.dir}:v1`, `docker://${dist.host}/tokuser/app:v1`);
    const mhost = new URL(mirror.url).host;
    await assert.rejects(skopeo('inspect', '--tls-verify=false', `docker://${mhost}/tokuser/app:v1`), /unauthorized|authentication required/i);
    const tokensBefore = realm.count(/^GET \/v2\/token/);
    await skopeo('copy', '--src-tls-verify=false', '--src-creds', 'reader:readerpw', `docker://${mhost}/tokuser/app:v1`, `oci:${join(work, 'out')}:x`);
    const layer = await readFile(join(work, 'out', 'blobs', 'sha256', sha256(img.layer).slice(7)));
    assert.ok(layer.equals(img.layer));
    // a second pull (the tag is revalidated upstream): the token is reused until it expires
    await skopeo('copy', '--src-tls-verify=false', '--src-creds', 'reader:readerpw', `docker://${mhost}/tokuser/app:v1`, `oci:${join(work, 'out2')}:x`);
    const mine = realm.seen.slice(-(realm.count(/^GET \/v2\/token/) - tokensBefore));
    assert.equal(mine.length, 1, `one token for the repository's pull scope: ${mine.join(', ')}`);
    assert.match(mine[0]!, /scope=repository%3Atokuser%2Fapp%3Apull/);
  });
});
