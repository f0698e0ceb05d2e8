import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import bcrypt from 'bcryptjs';
import { freePort } from '../helpers/ports.js';
import { request } from '../helpers/http.js';
import { writeOciLayout } from '../helpers/oci-layout.js';
import { ROOT } from '../helpers/paths.js';
import { Receiver, type Received } from '../helpers/receiver.js';

const run = promisify(execFile);

function missing(): string | undefined {
  if (existsSync('/usr/bin/docker-registry') && existsSync('/usr/bin/skopeo')) return undefined;
  if (process.env.E2E_REQUIRED) throw new Error('E2E_REQUIRED: docker-registry or skopeo is not installed (apt-get install docker-registry skopeo)');
  return 'docker-registry (distribution 2.8) or skopeo is not installed';
}

interface Proc {
  readonly name: string;
  proc: ChildProcess;
  readonly host: string;
  readonly rx: Receiver;
  readonly argv: string[];
  readonly env: Record<string, string>;
  log: string;
}

interface Ev {
  id: string;
  timestamp: string;
  action: string;
  target: Record<string, unknown>;
  request: { id: string; addr: string; host: string; method: string; useragent: string };
  actor: { name?: string };
  source: { addr: string; instanceID: string };
}

const sha = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const events = (r: readonly Received[]): Ev[] => r.flatMap((x) => (JSON.parse(x.body) as { events: Ev[] }).events);

/**
 * The fields that differ by nature between two registries (ids, times, ports, addresses), replaced
 * by placeholders; everything else is compared as distribution wrote it, key order included.
 */
function normalise(e: Ev, host: string): string {
  assert.match(e.id, /^[0-9a-f-]{36}$/);
  assert.match(e.timestamp, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/);
  assert.match(e.source.instanceID, /^[0-9a-f-]{36}$/);
  assert.match(e.source.addr, /^[^:]+:\d+$/);
  assert.match(e.request.addr, /^127\.0\.0\.1:\d+$/);
  assert.ok(e.request.id.length > 0);
  const copy = { ...e, id: 'ID', timestamp: 'T', request: { ...e.request, id: 'RID', addr: 'ADDR' }, source: { addr: 'SRC', instanceID: 'IID' } };
  return JSON.stringify(copy).split(host).join('HOST');
}

/**
 * distribution's notifications, compared with Debian's docker-registry (distribution 2.8.2) field by
 * field: both servers get one config.yml with a notifications endpoint (each its own receiver on
 * loopback), the same requests, and must send the same events in the same order. Then skopeo
 * pushes to both. Ours also keeps its queue across a restart while the receiver is down.
 */
describe('notifications: distribution 2.8.2 and legacy-registry send the same events', { skip: missing() }, () => {
  let work: string;
  const procs: Proc[] = [];
  const auth = `Basic ${Buffer.from('alice:alicepw').toString('base64')}`;

  async function waitUp(p: Proc): Promise<void> {
    for (let i = 0; ; i++) {
      try {
        if ((await request(`http://${p.host}`, '/v2/')).status === 401) return;
      } catch {
        // not listening yet
      }
      if (i > 200) throw new Error(`${p.name} did not start:\n${p.log}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  function spawnProc(p: Proc): void {
    p.proc = spawn(p.argv[0]!, [...p.argv.slice(1), 'serve', join(work, 'config.yml')], { env: p.env, stdio: ['ignore', 'pipe', 'pipe'] });
    p.proc.stdout!.on('data', (d: Buffer) => (p.log += d.toString()));
    p.proc.stderr!.on('data', (d: Buffer) => (p.log += d.toString()));
  }

  async function start(name: string, argv: string[]): Promise<Proc> {
    const port = await freePort();
    const rx = await new Receiver().up();
    const p: Proc = {
      name,
      proc: undefined as unknown as ChildProcess,
      host: `127.0.0.1:${port}`,
      rx,
      argv,
      env: {
        PATH: process.env.PATH ?? '',
        REGISTRY_HTTP_ADDR: `127.0.0.1:${port}`,
        REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY: join(work, `data-${name}`),
        // the endpoint list cannot be addressed by REGISTRY_* in 2.8: a whole list in one variable
        REGISTRY_NOTIFICATIONS_ENDPOINTS: JSON.stringify([
          { name: 'rx', url: `${rx.url}/events`, timeout: '2s', threshold: 3, backoff: '200ms', headers: { 'X-Test': ['side-by-side'] } },
        ]),
      },
      log: '',
    };
    spawnProc(p);
    await waitUp(p);
    procs.push(p);
    return p;
  }

  async function stop(p: Proc): Promise<void> {
    if (p.proc.exitCode !== null) return;
    p.proc.kill('SIGTERM');
    await new Promise((r) => p.proc.once('exit', r));
  }

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'lr-notify-'));
    await writeFile(join(work, 'auth.json'), '{"auths":{}}');
    await writeFile(join(work, 'htpasswd'), `alice:${bcrypt.hashSync('alicepw', 5)}\n`);
    await writeFile(
      join(work, 'config.yml'),
      [
        'version: 0.1',
        'storage:',
        '  filesystem:',
        '    rootdirectory: /var/lib/docker-registry',
        '  delete:',
        '    enabled: true',
        'http:',
        '  addr: :5000',
        'auth:',
        '  htpasswd:',
        '    realm: basic-realm',
        `    path: ${join(work, 'htpasswd')}`,
        '',
      ].join('\n'),
    );
    await start('distribution', ['/usr/bin/docker-registry']);
    await start('ours', [process.execPath, join(ROOT, 'dist', 'src', 'cli', 'main.js')]);
  });
  after(async () => {
    for (const p of procs) {
      await stop(p);
      await p.rx.down();
    }
    await rm(work, { recursive: true, force: true });
  });

  /** The same requests against one server: chunked and monolithic uploads, manifest by tag, pulls by GET and HEAD, a mount, deletes. */
  async function operations(p: Proc): Promise<void> {
    const base = `http://${p.host}`;
    const layer = Buffer.from(`layer ${'x'.repeat(100)}`);
    const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [sha(layer)] } }));
    const manifest = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.docker.distribution.manifest.v2+json',
        config: { mediaType: 'application/vnd.docker.container.image.v1+json', size: config.length, digest: sha(config) },
        layers: [{ mediaType: 'application/vnd.docker.image.rootfs.diff.tar.gzip', size: layer.length, digest: sha(layer) }],
      }),
    );
    const S2 = 'application/vnd.docker.distribution.manifest.v2+json';
    const f = async (method: string, path: string, body?: Buffer, headers: Record<string, string> = {}, expect?: number) => {
      const r = await request(base, path, {
        method,
        headers: { Authorization: auth, 'User-Agent': 'side-by-side/1.0', ...headers },
        ...(body ? { body } : {}),
      });
      if (expect !== undefined) assert.equal(r.status, expect, `${p.name} ${method} ${path}: ${r.text}`);
      return r;
    };
    const next = (loc: string, digest: string) => {
      const u = new URL(loc, base);
      return `${u.pathname}${u.search ? `${u.search}&` : '?'}digest=${digest}`;
    };
    // config: monolithic PUT of a session; layer: POST, PATCH, PUT
    const s0 = await f('POST', '/v2/team/app/blobs/uploads/', undefined, {}, 202);
    await f('PUT', next(String(s0.headers.location), sha(config)), config, { 'Content-Type': 'application/octet-stream' }, 201);
    const s1 = await f('POST', '/v2/team/app/blobs/uploads/', undefined, {}, 202);
    const u1 = new URL(String(s1.headers.location), base);
    const pa = await f('PATCH', `${u1.pathname}${u1.search}`, layer, { 'Content-Type': 'application/octet-stream' }, 202);
    await f('PUT', next(String(pa.headers.location), sha(layer)), undefined, {}, 201);
    await f('PUT', '/v2/team/app/manifests/v1', manifest, { 'Content-Type': S2 }, 201);
    await f('HEAD', '/v2/team/app/manifests/v1', undefined, { Accept: S2 }, 200);
    await f('GET', `/v2/team/app/manifests/${sha(manifest)}`, undefined, { Accept: S2 }, 200);
    await f('GET', `/v2/team/app/blobs/${sha(layer)}`, undefined, {}, 200);
    await f('HEAD', `/v2/team/app/blobs/${sha(config)}`, undefined, {}, 200);
    await f('GET', '/v2/team/app/manifests/v1', undefined, { Accept: S2 }, 200);
    // refused requests send nothing
    await f('GET', '/v2/team/app/manifests/nope', undefined, { Accept: S2 }, 404);
    await f('HEAD', `/v2/team/app/blobs/${sha(Buffer.from('absent'))}`, undefined, {}, 404);
    await f('POST', `/v2/team/other/blobs/uploads/?mount=${sha(layer)}&from=team/app`, undefined, {}, 201);
    await f('DELETE', `/v2/team/app/manifests/${sha(manifest)}`, undefined, {}, 202);
    await f('DELETE', `/v2/team/other/blobs/${sha(layer)}`, undefined, {}, 202);
  }

  it('the same requests give the same events, field by field and in order (actor, request, target, envelope headers)', async () => {
    for (const p of procs) await operations(p);
    const [d, o] = procs as [Proc, Proc];
    // 13 events: 3 pushes, 5 pulls, a mount, a digest delete with its tag, a blob delete
    await d.rx.until((r) => events(r).length >= 12, 30_000, 'distribution events');
    await o.rx.until((r) => events(r).length >= 12, 30_000, 'our events');
    await new Promise((r) => setTimeout(r, 500));
    const de = events(d.rx.received).map((e) => normalise(e, d.host));
    const oe = events(o.rx.received).map((e) => normalise(e, o.host));
    assert.equal(de.length, 12, de.join('\n'));
    assert.deepEqual(oe, de);
    for (const p of procs) {
      for (const r of p.rx.received) {
        assert.equal(r.headers['content-type'], 'application/vnd.docker.distribution.events.v1+json', p.name);
        assert.equal(r.headers['x-test'], 'side-by-side', p.name);
      }
      const evs = events(p.rx.received);
      assert.equal(evs[0]!.actor.name, 'alice');
      assert.equal(evs[0]!.request.useragent, 'side-by-side/1.0');
      assert.deepEqual(
        evs.map((e) => `${e.action} ${e.request.method}`),
        [
          'push PUT',
          'push PUT',
          'push PUT',
          'pull HEAD',
          'pull GET',
          'pull GET',
          'pull HEAD',
          'pull GET',
          'mount POST',
          'delete DELETE',
          'delete DELETE',
          'delete DELETE',
        ],
      );
    }
  });

  it('skopeo copy to both: the same push events (blobs and the tagged manifest)', async () => {
    const img = await writeOciLayout(join(work, 'src'), 'v1');
    const seen: string[][] = [];
    for (const p of procs) {
      p.rx.received.length = 0;
      await run(
        'skopeo',
        ['--insecure-policy', 'copy', '--dest-tls-verify=false', '--dest-creds', 'alice:alicepw', `oci:${img.dir}:v1`, `docker://${p.host}/team/sko:v1`],
        {
          timeout: 120_000,
          env: { PATH: process.env.PATH ?? '', HOME: work, REGISTRY_AUTH_FILE: join(work, 'auth.json') },
        },
      );
      await p.rx.until((r) => events(r).some((e) => e.target.tag === 'v1'), 30_000, `${p.name} manifest push`);
      await new Promise((r) => setTimeout(r, 300));
      seen.push(events(p.rx.received).map((e) => normalise({ ...e, request: { ...e.request, useragent: 'UA' } }, p.host)));
    }
    assert.deepEqual(seen[1], seen[0]);
    assert.deepEqual(
      events(procs[1]!.rx.received)
        .filter((e) => e.action === 'push')
        .map((e) => e.target.digest)
        .sort(),
      [sha(img.config), sha(img.layer), sha(img.manifest)].sort(),
    );
  });

  it('ours keeps undelivered events across a restart while the receiver is down, then delivers each once, in order', async () => {
    const o = procs[1]!;
    o.rx.received.length = 0;
    await o.rx.down();
    const img = await writeOciLayout(join(work, 'src2'), 'v2');
    await run(
      'skopeo',
      ['--insecure-policy', 'copy', '--dest-tls-verify=false', '--dest-creds', 'alice:alicepw', `oci:${img.dir}:v2`, `docker://${o.host}/team/later:v2`],
      {
        timeout: 120_000,
        env: { PATH: process.env.PATH ?? '', HOME: work, REGISTRY_AUTH_FILE: join(work, 'auth.json') },
      },
    );
    for (let i = 0; i < 5; i++) {
      const r = await request(`http://${o.host}`, `/v2/team/later/manifests/v2`, {
        method: 'HEAD',
        headers: { Authorization: auth, Accept: 'application/vnd.oci.image.manifest.v1+json' },
      });
      assert.equal(r.status, 200);
    }
    await stop(o);
    spawnProc(o);
    await waitUp(o);
    await o.rx.up(); // the same port again
    await o.rx.until((r) => events(r).filter((e) => e.action === 'pull').length >= 5, 30_000, 'events kept across the restart');
    await new Promise((r) => setTimeout(r, 500));
    const evs = events(o.rx.received);
    assert.deepEqual(
      evs.map((e) => e.action),
      ['push', 'push', 'push', 'pull', 'pull', 'pull', 'pull', 'pull'],
      'every event once, in the order they happened',
    );
    assert.equal(new Set(evs.map((e) => e.id)).size, evs.length);
    assert.equal(evs.find((e) => e.target.tag === 'v2')?.target.digest, sha(img.manifest));
  });
});
