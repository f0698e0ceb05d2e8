import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import bcrypt from 'bcryptjs';
import { freePort } from '../helpers/ports.js';
import { request, type Response } from '../helpers/http.js';
import { writeOciLayout } from '../helpers/oci-layout.js';
import { ROOT } from '../helpers/paths.js';

const run = promisify(execFile);

function missing(): string | undefined {
  if (existsSync('/usr/bin/docker-registry') && existsSync('/usr/bin/skopeo')) return undefined;
  if (process.env.E2E_REQUIRED) throw new Error('E2E_REQUIRED: docker-registry or skopeo is not installed (apt-get install docker-registry skopeo)');
  return 'docker-registry (distribution 2.8) or skopeo is not installed';
}

interface Proc {
  readonly proc: ChildProcess;
  readonly host: string;
  readonly debug: string;
  log: string;
}

/**
 * One distribution config.yml, two registries: Debian's docker-registry (distribution 2.8.2) and
 * ours, each started as `<binary> serve config.yml` with the same REGISTRY_* overrides (its own
 * address and root directory). Both must answer the same requests the same way.
 */
describe('one config.yml and REGISTRY_* variables: distribution 2.8 and legacy-registry side by side', { skip: missing() }, () => {
  let work: string;
  const procs: Proc[] = [];
  const skopeo = (...args: string[]) =>
    run('skopeo', ['--insecure-policy', ...args], {
      timeout: 120_000,
      env: { PATH: process.env.PATH ?? '', HOME: work, REGISTRY_AUTH_FILE: join(work, 'auth.json') },
    });

  async function start(name: string, argv: string[]): Promise<Proc> {
    const port = await freePort();
    const debugPort = await freePort();
    const p: Proc = {
      proc: spawn(argv[0]!, [...argv.slice(1), 'serve', join(work, 'config.yml')], {
        env: {
          PATH: process.env.PATH ?? '',
          REGISTRY_HTTP_ADDR: `127.0.0.1:${port}`,
          REGISTRY_HTTP_DEBUG_ADDR: `127.0.0.1:${debugPort}`,
          REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY: join(work, `data-${name}`),
          REGISTRY_AUTH_HTPASSWD_REALM: 'Side By Side',
          REGISTRY_AUTH_HTPASSWD_PATH: join(work, 'htpasswd'),
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      }),
      host: `127.0.0.1:${port}`,
      debug: `http://127.0.0.1:${debugPort}`,
      log: '',
    };
    p.proc.stdout!.on('data', (d: Buffer) => (p.log += d.toString()));
    p.proc.stderr!.on('data', (d: Buffer) => (p.log += d.toString()));
    for (let i = 0; ; i++) {
      try {
        if ((await request(`http://${p.host}`, '/v2/')).status === 401) break;
      } catch {
        // not listening yet
      }
      if (i > 150) throw new Error(`${name} did not start:\n${p.log}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    procs.push(p);
    return p;
  }

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'lr-dist-side-'));
    await writeFile(join(work, 'auth.json'), '{"auths":{}}');
    await writeFile(join(work, 'htpasswd'), `alice:${bcrypt.hashSync('alicepw', 5)}\n`);
    // Debian's own /etc/docker/registry/config.yml with health and a debug listener; the
    // environment moves the address, root directory and htpasswd file of each server
    await writeFile(
      join(work, 'config.yml'),
      [
        'version: 0.1',
        'log:',
        '  fields:',
        '    service: registry',
        'storage:',
        '  cache:',
        '    blobdescriptor: inmemory',
        '  filesystem:',
        '    rootdirectory: /var/lib/docker-registry',
        '  delete:',
        '    enabled: true',
        'http:',
        '  addr: :5000',
        '  headers:',
        '    X-Content-Type-Options: [nosniff]',
        'auth:',
        '  htpasswd:',
        '    realm: basic-realm',
        '    path: /etc/docker/registry',
        'health:',
        '  storagedriver:',
        '    enabled: true',
        '    interval: 10s',
        '    threshold: 3',
        '',
      ].join('\n'),
    );
    await start('distribution', ['/usr/bin/docker-registry']);
    await start('ours', [process.execPath, join(ROOT, 'dist', 'src', 'cli', 'main.js')]);
  });
  after(async () => {
    for (const p of procs) {
      p.proc.kill('SIGTERM');
      await new Promise((r) => p.proc.once('exit', r));
    }
    await rm(work, { recursive: true, force: true });
  });

  const both = async (fn: (p: Proc) => Promise<Response>): Promise<[Response, Response]> => [await fn(procs[0]!), await fn(procs[1]!)];
  const basic = `Basic ${Buffer.from('alice:alicepw').toString('base64')}`;

  it('answers /v2/ alike: the Basic challenge with the realm from the environment, headers from the file', async () => {
    const [d, o] = await both((p) => request(`http://${p.host}`, '/v2/'));
    assert.equal(o.status, d.status);
    assert.equal(d.status, 401);
    assert.equal(o.headers['www-authenticate'], d.headers['www-authenticate']);
    assert.equal(d.headers['www-authenticate'], 'Basic realm="Side By Side"');
    assert.equal(o.headers['x-content-type-options'], 'nosniff');
    assert.equal(d.headers['x-content-type-options'], 'nosniff');
    assert.equal(o.headers['docker-distribution-api-version'], d.headers['docker-distribution-api-version']);
    const [d2, o2] = await both((p) => request(`http://${p.host}`, '/v2/', { headers: { Authorization: basic } }));
    assert.equal(d2.status, 200);
    assert.equal(o2.status, 200);
    const [dh, oh] = await both((p) => request(p.debug, '/debug/health'));
    assert.equal(dh.status, 200);
    assert.equal(oh.status, 200);
    assert.deepEqual(oh.json(), dh.json());
  });

  it('skopeo logs in, copies an image in and out, lists and deletes on both, with the same digests', async () => {
    const img = await writeOciLayout(join(work, 'src'), 'v1');
    const results: { digest: string; tags: string[]; raw: string }[] = [];
    for (const p of procs) {
      assert.match((await skopeo('login', '--tls-verify=false', '-u', 'alice', '-p', 'alicepw', p.host)).stdout, /Login Succeeded/);
      await skopeo('copy', '--dest-tls-verify=false', `oci:${img.dir}:v1`, `docker://${p.host}/team/app:v1`);
      const raw = (await skopeo('inspect', '--raw', '--tls-verify=false', `docker://${p.host}/team/app:v1`)).stdout;
      const info = JSON.parse((await skopeo('inspect', '--tls-verify=false', `docker://${p.host}/team/app:v1`)).stdout) as { Digest: string };
      const tags = JSON.parse((await skopeo('list-tags', '--tls-verify=false', `docker://${p.host}/team/app`)).stdout) as { Tags: string[] };
      results.push({ digest: info.Digest, tags: tags.Tags, raw });
      // storage.delete.enabled from the file: the manifest can be deleted
      await skopeo('delete', '--tls-verify=false', `docker://${p.host}/team/app:v1`);
      await assert.rejects(skopeo('inspect', '--tls-verify=false', `docker://${p.host}/team/app:v1`), /manifest unknown/);
    }
    assert.deepEqual(results[1], results[0]);
    assert.equal(results[0]!.raw, img.manifest.toString());
    assert.ok(existsSync(join(work, 'data-ours', 'blobs')), 'ours stored under the root directory the environment gave');
    assert.ok(existsSync(join(work, 'data-distribution', 'docker', 'registry', 'v2', 'blobs')));
  });
});
