import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { cp, mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join, relative, sep } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { sha256x2 } from '../../src/digest/sha256.js';
import { nativeGunzip } from '../../src/digest/gunzip-native.js';
import { mallocTrimStatus } from '../../src/util/malloc-trim.js';
import { request } from '../helpers/http.js';
import { ROOT } from '../helpers/paths.js';
import { freePort } from '../helpers/ports.js';
import { DOCKER_UA, makeImage, pushImage, putTag } from '../helpers/v1-client.js';

/*
 * The Dockerfile, built and run with Debian's podman. No image can be pulled here, so the official
 * base (node:20-bookworm-slim) is stood in for by scripts/container-base.sh: debootstrap's bookworm
 * plus the node binary in use, tagged with the official name; the build uses --pull=never and the
 * Dockerfile's APP_SOURCE=prebuilt stage (this checkout's dist/ and production node_modules: the
 * default stage runs npm ci, which a test must not).
 */
const run = promisify(execFile);
const CACHE = process.env.CONTAINER_BASE_CACHE || '/var/cache/legacy-registry-test';
// kept between runs: podman's layer cache then makes an unchanged build take seconds
const IMAGE = 'localhost/legacy-registry-test/server:latest';

function missing(): string | undefined {
  const why = !existsSync('/usr/bin/podman')
    ? 'podman is not installed (apt-get install podman)'
    : process.getuid?.() !== 0
      ? 'podman tests run as root'
      : !existsSync('/usr/sbin/debootstrap') && !existsSync(join(CACHE, 'bookworm-minbase.tar'))
        ? 'debootstrap is not installed (apt-get install debootstrap; .ci/setup.d/31-debootstrap.sh)'
        : undefined;
  if (why && process.env.E2E_REQUIRED) throw new Error(`E2E_REQUIRED: ${why}`);
  return why;
}

/** What the image is made of: the Dockerfile, the lock file, the compiled server, migrations and native module. */
async function fingerprint(): Promise<string> {
  const h = createHash('sha256');
  for (const f of ['Dockerfile', 'package.json', 'package-lock.json', 'config_sample.yml', 'bin/legacy-registry.cjs'])
    h.update(f).update(readFileSync(join(ROOT, f)));
  for (const d of ['src', 'migrations', 'native']) {
    const files = (await readdir(join(ROOT, 'dist', d), { recursive: true })).filter((f) => f.endsWith('.js') || f.endsWith('.node')).sort();
    for (const f of files) h.update(f).update(readFileSync(join(ROOT, 'dist', d, f)));
  }
  return h.digest('hex').slice(0, 32);
}

/**
 * The packages the server needs at run time: package.json's dependencies and, transitively, theirs
 * (optional ones when installed), resolved as node does. Top-level folder names under
 * node_modules; a package's nested node_modules come along with it.
 */
function productionPackages(): Set<string> {
  const nm = join(ROOT, 'node_modules');
  const top = new Set<string>();
  const seen = new Set<string>();
  const depsOf = (dir: string): string[] => {
    const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as {
      dependencies?: Record<string, string>;
      optionalDependencies?: Record<string, string>;
    };
    return [...Object.keys(pkg.dependencies ?? {}), ...Object.keys(pkg.optionalDependencies ?? {})];
  };
  const queue: [string, string][] = depsOf(ROOT).map((d) => [d, ROOT]);
  while (queue.length > 0) {
    const [name, from] = queue.pop()!;
    // node's lookup: from's own node_modules, then each parent's, up to the project's
    let dir: string | undefined;
    for (let base = from; ; base = join(base, '..')) {
      const candidate = join(base, 'node_modules', name);
      if (existsSync(join(candidate, 'package.json'))) {
        dir = candidate;
        break;
      }
      if (base === ROOT || !base.startsWith(ROOT)) break;
    }
    if (!dir || seen.has(dir)) continue; // an optional dependency not installed here
    seen.add(dir);
    const rel = relative(nm, dir).split(sep);
    top.add(rel[0]!.startsWith('@') ? `${rel[0]}/${rel[1]}` : rel[0]!);
    for (const d of depsOf(dir)) queue.push([d, dir]);
  }
  return top;
}

const basic = (u: string, p: string): string => `Basic ${Buffer.from(`${u}:${p}`).toString('base64')}`;

describe('Dockerfile: built with podman on a debootstrap base, run, restarted', { skip: missing(), timeout: 900_000 }, () => {
  let ctx: string | undefined;
  let flags: string[] = [];
  let port: number;
  const name = `lr-container-test-${process.pid}`;
  const volume = `lr-container-test-${process.pid}`;
  const podman = (args: string[], timeout = 300_000) => run('podman', args, { timeout, maxBuffer: 16 << 20 });
  const url = (): string => `http://127.0.0.1:${port}`;

  async function waitPing(): Promise<void> {
    const deadline = Date.now() + 90_000;
    for (;;) {
      const ok = await fetch(`${url()}/v1/_ping`, { signal: AbortSignal.timeout(2000) }).then(
        (r) => r.status === 200,
        () => false,
      );
      if (ok) return;
      if (Date.now() > deadline) {
        const logs = await podman(['logs', name]).catch((e: Error) => ({ stdout: '', stderr: e.message }));
        throw new Error(`the container did not answer /v1/_ping:\n${logs.stdout}${logs.stderr}`);
      }
      await sleep(250);
    }
  }

  before(async () => {
    // the base image (debootstrap cached in CACHE: minutes the first time, seconds after)
    await run(join(ROOT, 'scripts', 'container-base.sh'), [], { env: { ...process.env, BASE_CACHE: CACHE }, timeout: 900_000 });
    flags = readFileSync(join(CACHE, 'podman-flags'), 'utf8').trim().split(/\s+/).filter(Boolean);
    // The image is rebuilt when what goes into it changed (Dockerfile, lock file, compiled server):
    // podman's layer cache would still hash the ~100 MB context on every run.
    const inputs = await fingerprint();
    const label = await podman(['image', 'inspect', '--format', '{{index .Labels "legacy-registry-test.inputs"}}', IMAGE]).then(
      (r) => r.stdout.trim(),
      () => '',
    );
    if (label !== inputs) {
      // the prebuilt context: what the image runs, production dependencies only
      ctx = await mkdtemp(join(tmpdir(), 'lr-container-ctx-'));
      for (const f of ['package.json', 'config_sample.yml', 'bin']) await cp(join(ROOT, f), join(ctx, f), { recursive: true });
      // dist/native: the paired-hash and idle-trim modules (absent where they could not be built; the server then goes without)
      for (const d of ['src', 'migrations', 'native'])
        await cp(join(ROOT, 'dist', d), join(ctx, 'dist', d), { recursive: true, filter: (p) => !p.endsWith('.map') });
      const top = productionPackages();
      assert.ok(top.has('koa') && top.has('sqlite3') && !top.has('typescript'), 'production dependencies only');
      await mkdir(join(ctx, 'node_modules', '@aws-sdk'), { recursive: true });
      for (const p of top) await cp(join(ROOT, 'node_modules', p), join(ctx, 'node_modules', p), { recursive: true, dereference: true });
      const started = Date.now();
      await podman(
        [
          'build',
          '--pull=never',
          '--format',
          'docker',
          ...flags,
          '--build-arg',
          'APP_SOURCE=prebuilt',
          '--label',
          `legacy-registry-test.inputs=${inputs}`,
          '-f',
          join(ROOT, 'Dockerfile'),
          '-t',
          IMAGE,
          ctx,
        ],
        900_000,
      );
      if (process.env.TEST_TIMING) console.log(`podman build: ${Date.now() - started} ms`);
    }
    port = await freePort();
  });

  after(async () => {
    await podman(['rm', '-f', '-t', '0', name]).catch(() => undefined);
    await podman(['volume', 'rm', '-f', volume]).catch(() => undefined);
    if (ctx) await rm(ctx, { recursive: true, force: true });
  });

  it('the image: non-root user, the data volume, a healthcheck on /v1/_ping', async () => {
    const [info] = JSON.parse((await podman(['image', 'inspect', IMAGE])).stdout) as {
      Config: { User: string; Volumes: Record<string, unknown>; Entrypoint: string[] };
      Healthcheck?: { Test: string[] };
    }[];
    const cfg = info!.Config;
    assert.equal(cfg.User, 'node');
    assert.deepEqual(Object.keys(cfg.Volumes), ['/var/lib/legacy-registry']);
    assert.match(info!.Healthcheck?.Test.join(' ') ?? '', /\/v1\/_ping/);
    assert.deepEqual(cfg.Entrypoint, ['node', '/app/bin/legacy-registry.cjs']);
  });

  it('runs the embedded default: answers /v1/_ping, healthy, as uid 1000; data survives a restart in the volume', async () => {
    await podman([
      'run',
      '-d',
      '--name',
      name,
      '--network',
      'host',
      ...flags,
      '-e',
      `REGISTRY_PORT=${port}`,
      '-e',
      'REGISTRY_HOST=127.0.0.1',
      '-v',
      `${volume}:/var/lib/legacy-registry`,
      IMAGE,
    ]);
    await waitPing();
    const ping = await request(url(), '/v1/_ping');
    assert.equal(ping.status, 200);
    assert.equal((await podman(['exec', name, 'id', '-u'])).stdout.trim(), '1000');
    await podman(['healthcheck', 'run', name]); // exit 0: healthy
    // the image's node loads the paired-hash module built beside the server, where this CPU can run it
    const probe = "import('/app/dist/src/digest/sha256.js').then((m) => console.log(JSON.stringify(m.sha256x2)))";
    const x2 = JSON.parse((await podman(['exec', name, 'node', '--input-type=module', '-e', probe])).stdout) as { native: boolean; reason: string };
    assert.equal(x2.native, sha256x2.native, x2.reason);
    // and the gunzip module (native/gunzip.c), likewise
    const gzProbe =
      "import('/app/dist/src/digest/gunzip-native.js').then((m) => console.log(JSON.stringify({ native: m.nativeGunzip !== undefined, reason: m.nativeGunzipReason })))";
    const gz = JSON.parse((await podman(['exec', name, 'node', '--input-type=module', '-e', gzProbe])).stdout) as { native: boolean; reason: string };
    assert.equal(gz.native, nativeGunzip !== undefined, gz.reason);
    // and the idle-trim module (the image's C library is glibc, as here)
    const trimProbe = "import('/app/dist/src/util/malloc-trim.js').then((m) => console.log(JSON.stringify(m.mallocTrimStatus())))";
    const trim = JSON.parse((await podman(['exec', name, 'node', '--input-type=module', '-e', trimProbe])).stdout) as { available: boolean; reason: string };
    assert.equal(trim.available, mallocTrimStatus().available, trim.reason);

    // an account (SQLite index in the volume) and a 1.x push (filesystem storage in the volume)
    const signup = await request(url(), '/v1/users/', {
      method: 'POST',
      body: JSON.stringify({ username: 'carol', password: 'carolpw', email: 'carol@example.com' }),
    });
    assert.equal(signup.status, 201, signup.text);
    const img = makeImage();
    const claim = await request(url(), '/v1/repositories/carol/app/', {
      method: 'PUT',
      headers: { Authorization: basic('carol', 'carolpw'), 'X-Docker-Token': 'true', 'User-Agent': DOCKER_UA },
      body: JSON.stringify([{ id: img.id, Tag: 'latest' }]),
    });
    assert.equal(claim.status, 200, claim.text);
    const token = String(claim.headers['x-docker-token']);
    for (const r of await pushImage(url(), img, token)) assert.ok(r.status === 200 || r.status === 404, `${r.status} ${r.text}`);
    assert.equal((await putTag(url(), 'carol/app', 'latest', img.id, token)).status, 200);
    assert.equal(
      (await request(url(), '/v1/repositories/carol/app/images', { method: 'PUT', headers: { Authorization: basic('carol', 'carolpw') }, body: '[]' })).status,
      204,
    );

    await podman(['stop', '-t', '20', name]);
    await podman(['start', name]);
    await waitPing();
    const pull = await request(url(), '/v1/repositories/carol/app/images', { headers: { Authorization: basic('carol', 'carolpw'), 'X-Docker-Token': 'true' } });
    assert.equal(pull.status, 200, 'the account and the repository are still known');
    const h = { Authorization: `Token ${String(pull.headers['x-docker-token'])}` };
    assert.deepEqual((await request(url(), '/v1/repositories/carol/app/tags', { headers: h })).json(), { latest: img.id });
    assert.ok((await request(url(), `/v1/images/${img.id}/layer`, { headers: h })).body.equals(img.layer), 'the layer is still there');
    // and it was the volume that kept them
    const files = (await podman(['exec', name, 'ls', '/var/lib/legacy-registry'])).stdout.split('\n');
    assert.ok(files.includes('index.db') && files.includes('blobs'), files.join(' '));
  });
});
