/**
 * The pull-through mirror (issue 13): ours vs distribution 2.8.2 (Debian `docker-registry`, `proxy:`)
 * as mirrors of the same upstream (a third process: distribution 2.8.2 without auth), same run.
 *
 *   node dist/bench/mirror.js [--size-mib 512] [--concurrent-mib 128] [--reps 3] [--phases cold,warm,concurrent] [--out bench/results] [--json]
 *
 * Phases, each mirror with fresh storage:
 *   cold  — one pull of an image with one <size> MiB layer (manifest, config, layer) through the empty mirror
 *   warm  — the same pull again (manifest revalidated upstream, blobs from the cache)
 *   8×    — eight concurrent cold pulls of another image (one <concurrent> MiB layer)
 * Both mirrors run at once and each phase alternates ours, distribution (the shared machine's load
 * falls on both); server CPU seconds per phase come from /proc/<pid>/stat.
 * Pulls are curl processes writing to /dev/null (the client costs nothing measurable). Each mirror
 * reaches the upstream through its own counting proxy in this process, which gives the bytes each
 * fetched from upstream. Both mirrors fsync what they cache; neither has auth or access logs.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, request as httpRequest, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { ensurePageCacheFull } from './page-cache.js';

const ROOT = join(new URL('.', import.meta.url).pathname, '..', '..');
const MiB = 1024 * 1024;
const argv = process.argv.slice(2);
const opt = (n: string, d: string): string => {
  const i = argv.indexOf(`--${n}`);
  return i >= 0 && argv[i + 1] ? argv[i + 1]! : d;
};
if (argv.includes('--help')) {
  console.log(`usage: node dist/bench/mirror.js [options]
  --size-mib N        layer size of the cold/warm image (default 512)
  --concurrent-mib N  layer size of the image pulled by 8 clients at once (default 128)
  --reps N            alternating repetitions, fresh mirrors each (default 3; figures are medians)
  --phases LIST       cold,warm,concurrent (default all; warm needs cold)
  --out DIR           where the JSON result goes (default bench/results)
  --json              print the result as JSON on stdout (for bench/compare)
  --no-fill-page-cache  measure with the page cache as it is (default: fill it first when much
                      memory is free, as a long-running host has it; see bench/page-cache.ts)
Needs /usr/bin/docker-registry (distribution 2.8) and curl.`);
  process.exit(0);
}
const SIZE = Number(opt('size-mib', '512'));
const CONC = Number(opt('concurrent-mib', '128'));
const REPS = Math.max(1, Number(opt('reps', '3')));
const PHASES = new Set(opt('phases', 'cold,warm,concurrent').split(','));
const log = (s: string): void => console.error(`[mirror bench] ${s}`);
const sha = (b: Buffer | string): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const S2 = 'application/vnd.docker.distribution.manifest.v2+json';

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
}

async function waitUp(url: string, proc: ChildProcess, out: () => string): Promise<void> {
  for (let i = 0; i < 300; i++) {
    if (proc.exitCode !== null) throw new Error(`${url} exited:\n${out()}`);
    const ok = await new Promise<boolean>((r) => {
      const req = httpRequest(`${url}/v2/`, (res) => {
        res.resume();
        r(res.statusCode === 200);
      });
      req.on('error', () => r(false));
      req.end();
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${url} did not start:\n${out()}`);
}

interface Proc {
  readonly url: string;
  readonly proc: ChildProcess;
}

async function startDistribution(dir: string, extra: string[]): Promise<Proc> {
  const port = await freePort();
  const cfg = join(dir, 'config.yml');
  await writeFile(
    cfg,
    [
      'version: 0.1',
      'log:',
      '  level: error',
      '  accesslog:',
      '    disabled: true',
      'storage:',
      '  filesystem:',
      `    rootdirectory: ${join(dir, 'data')}`,
      'http:',
      `  addr: 127.0.0.1:${port}`,
      ...extra,
      '',
    ].join('\n'),
  );
  const proc = spawn('/usr/bin/docker-registry', ['serve', cfg], { stdio: ['ignore', 'ignore', 'pipe'] });
  let out = '';
  proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const url = `http://127.0.0.1:${port}`;
  await waitUp(url, proc, () => out);
  return { url, proc };
}

async function startOurs(dir: string, upstream: string): Promise<Proc> {
  const port = await freePort();
  const cfg = join(dir, 'config.yml');
  // our config in a distribution file: proxy.remoteurl as distribution's users write it
  await writeFile(
    cfg,
    [
      'version: 0.1',
      'log:',
      '  level: error',
      '  accesslog:',
      '    disabled: true',
      'storage:',
      '  filesystem:',
      `    rootdirectory: ${join(dir, 'data')}`,
      'http:',
      `  addr: 127.0.0.1:${port}`,
      'proxy:',
      `  remoteurl: ${upstream}`,
      '',
    ].join('\n'),
  );
  // MIRROR_BENCH_PROF=<dir>: a CPU profile of our server (node --cpu-prof) for looking into the cold path
  const prof = process.env.MIRROR_BENCH_PROF ? ['--cpu-prof', '--cpu-prof-dir', process.env.MIRROR_BENCH_PROF] : [];
  // bin/legacy-registry.cjs, as users start it (it sizes libuv's thread pool before the modules load)
  const proc = spawn(process.execPath, [...prof, join(ROOT, 'bin', 'legacy-registry.cjs'), 'serve', '--config', cfg], {
    stdio: ['ignore', 'ignore', 'pipe'],
    // the native modules' switches pass through, for comparisons (docs/configuration.md)
    env: {
      PATH: process.env.PATH ?? '',
      ...(process.env.LR_SHA256X2 ? { LR_SHA256X2: process.env.LR_SHA256X2 } : {}),
      ...(process.env.LR_NATIVE_GUNZIP ? { LR_NATIVE_GUNZIP: process.env.LR_NATIVE_GUNZIP } : {}),
      ...(process.env.LR_DIRECT_IO ? { LR_DIRECT_IO: process.env.LR_DIRECT_IO } : {}),
      ...(process.env.LR_SENDFILE ? { LR_SENDFILE: process.env.LR_SENDFILE } : {}),
    },
  });
  let out = '';
  proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const url = `http://127.0.0.1:${port}`;
  await waitUp(url, proc, () => out);
  return { url, proc };
}

async function stop(p: Proc | undefined): Promise<void> {
  // a process killed by a signal has no exit code, only a signal code: its exit has happened already
  if (!p || p.proc.exitCode !== null || p.proc.signalCode !== null) return;
  p.proc.kill('SIGTERM');
  await new Promise((r) => p.proc.once('exit', r));
}

/** A reverse proxy counting the body bytes the upstream sends through it. */
async function countingProxy(
  target: string,
): Promise<{ url: string; bytes: () => number; active: () => number; reset: () => void; close: () => Promise<void> }> {
  const t = new URL(target);
  let bytes = 0;
  let active = 0;
  const server: Server = createServer((req, res) => {
    active++;
    res.once('close', () => active--);
    const up = httpRequest({ host: t.hostname, port: t.port, method: req.method, path: req.url, headers: { ...req.headers, host: t.host } }, (ur) => {
      res.writeHead(ur.statusCode ?? 502, ur.headers);
      ur.on('data', (c: Buffer) => (bytes += c.length));
      ur.pipe(res);
    });
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    bytes: () => bytes,
    active: () => active,
    reset: () => void (bytes = 0),
    close: () => new Promise((r) => server.close(() => r())),
  };
}

/** utime + stime of a process, seconds (all threads). */
function cpuSeconds(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(f[11]) + Number(f[12])) / 100;
}
/** utime and stime of a process, seconds (MIRROR_BENCH_DETAIL=1 logs them per phase). */
function userSys(pid: number): [number, number] {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return [Number(f[11]) / 100, Number(f[12]) / 100];
}

function curl(args: string[]): string {
  const r = spawnSync('curl', ['-sS', '--noproxy', '*', ...args], { encoding: 'utf8', maxBuffer: 1 << 20 });
  if (r.status !== 0) throw new Error(`curl ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}
function curlAsync(args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const p = spawn('curl', ['-sS', '--noproxy', '*', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    p.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`curl: ${err}`))));
  });
}

/** A random layer of n MiB written to a file (streamed: no n MiB buffer), and its digest. */
async function layerFile(path: string, n: number): Promise<{ path: string; digest: string; size: number }> {
  const h = createHash('sha256');
  const w = createWriteStream(path);
  for (let i = 0; i < n; i++) {
    const b = randomBytes(MiB);
    h.update(b);
    if (!w.write(b)) await new Promise<void>((r) => w.once('drain', () => r()));
  }
  await new Promise<void>((r, j) => {
    w.once('error', j);
    w.end(() => r());
  });
  return { path, digest: `sha256:${h.digest('hex')}`, size: n * MiB };
}

/** Push an image with this one layer to the upstream (monolithic uploads with curl). */
async function pushImage(upstream: string, name: string, layer: { path: string; digest: string; size: number }): Promise<void> {
  const config = Buffer.from(
    JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [layer.digest] }, history: [{ created_by: 'bench' }] }),
  );
  const cfgPath = `${layer.path}.config`;
  writeFileSync(cfgPath, config);
  for (const [file, digest] of [
    [cfgPath, sha(config)],
    [layer.path, layer.digest],
  ] as const) {
    const loc = /location: (\S+)/i.exec(curl(['-D', '-', '-o', '/dev/null', '-X', 'POST', `${upstream}/v2/${name}/blobs/uploads/`]))![1]!;
    const u = new URL(loc, upstream);
    u.searchParams.set('digest', digest);
    const code = curl(['-o', '/dev/null', '-w', '%{http_code}', '-T', file, '-H', 'Content-Type: application/octet-stream', u.toString()]);
    if (code !== '201') throw new Error(`blob upload answered ${code}`);
  }
  const manifest = JSON.stringify({
    schemaVersion: 2,
    mediaType: S2,
    config: { mediaType: 'application/vnd.docker.container.image.v1+json', size: config.length, digest: sha(config) },
    layers: [{ mediaType: 'application/vnd.docker.image.rootfs.diff.tar.gzip', size: layer.size, digest: layer.digest }],
  });
  const code = curl([
    '-o',
    '/dev/null',
    '-w',
    '%{http_code}',
    '-X',
    'PUT',
    '-H',
    `Content-Type: ${S2}`,
    '--data-binary',
    manifest,
    `${upstream}/v2/${name}/manifests/latest`,
  ]);
  if (code !== '201') throw new Error(`manifest put answered ${code}`);
}

/** One client's pull: manifest by tag, then each blob, bodies to /dev/null. Returns bytes received. */
/** Milliseconds of each request of the last pull (manifest, config, layers), for the log. */
let lastSteps: number[] = [];

async function pull(mirror: string, name: string): Promise<number> {
  const steps: number[] = [];
  let t0 = performance.now();
  const m = JSON.parse(await curlAsync(['-H', `Accept: ${S2}`, `${mirror}/v2/${name}/manifests/latest`])) as {
    config: { digest: string };
    layers: { digest: string }[];
  };
  steps.push(performance.now() - t0);
  let total = 0;
  for (const d of [m.config.digest, ...m.layers.map((l) => l.digest)]) {
    t0 = performance.now();
    const out = await curlAsync(['-o', '/dev/null', '-w', '%{http_code} %{size_download}', `${mirror}/v2/${name}/blobs/${d}`]);
    steps.push(performance.now() - t0);
    const [code, size] = out.trim().split(' ');
    if (code !== '200') throw new Error(`blob ${d} answered ${JSON.stringify(out)}`);
    total += Number(size);
  }
  lastSteps = steps;
  return total;
}

interface Figures {
  coldSec: number;
  coldMiBps: number;
  coldUpstreamMiB: number;
  coldCpuSec: number;
  coldCpuTotalSec: number;
  warmSec: number;
  warmMiBps: number;
  warmUpstreamMiB: number;
  warmCpuSec: number;
  concurrentSec: number;
  concurrentUpstreamMiB: number;
  /** Upstream bytes of the 8 concurrent pulls, in units of the image. */
  concurrentUpstreamImages: number;
  /** Pulls of the 8 that failed. */
  concurrentFailed: number;
}

interface Sample {
  readonly sec: number;
  readonly upMiB: number;
  /** CPU in the pull's window, and until the mirror was still again (its cache copy stored). */
  readonly cpuSec: number;
  readonly cpuTotalSec: number;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

async function main(): Promise<void> {
  if (!existsSync('/usr/bin/docker-registry')) throw new Error('needs /usr/bin/docker-registry (apt-get install docker-registry)');
  if (!existsSync(join(ROOT, 'dist', 'src', 'cli', 'main.js'))) throw new Error('build first: npm run build');
  const work = await mkdtemp(join(tmpdir(), 'lr-mirror-bench-'));
  const procs: Proc[] = [];
  const pageCache = ensurePageCacheFull(work, log, argv);
  try {
    mkdirSync(join(work, 'upstream'));
    const upstream = await startDistribution(join(work, 'upstream'), []);
    procs.push(upstream);
    log(`preparing a ${SIZE} MiB image on the upstream…`);
    const big = await layerFile(join(work, 'big.layer'), SIZE);
    await pushImage(upstream.url, 'library/big', big);
    const image = (size: number): number => size * MiB + 200; // the config blob
    const who = ['ours', 'distribution'] as const;
    const cold: Record<string, Sample[]> = { ours: [], distribution: [] };
    const warm: Record<string, Sample[]> = { ours: [], distribution: [] };
    const conc: Record<string, Sample[]> = { ours: [], distribution: [] };
    const failed: Record<string, number> = { ours: 0, distribution: 0 };
    const measure = async (s: { proxy: Awaited<ReturnType<typeof countingProxy>>; m: Proc }, fn: () => Promise<unknown>): Promise<Sample> => {
      s.proxy.reset();
      const cpu0 = cpuSeconds(s.m.proc.pid!);
      const us0 = userSys(s.m.proc.pid!);
      const t = process.hrtime.bigint();
      await fn();
      const sec = Number(process.hrtime.bigint() - t) / 1e9;
      const cpuSec = cpuSeconds(s.m.proc.pid!) - cpu0;
      if (process.env.MIRROR_BENCH_DETAIL) {
        const us1 = userSys(s.m.proc.pid!);
        log(`  user ${(us1[0] - us0[0]).toFixed(2)} s, sys ${(us1[1] - us0[1]).toFixed(2)} s`);
      }
      // What the pull left running goes on before the next measurement starts, not during it:
      // distribution's proxy stores a blob from a second upstream download that outlives its
      // client's pull; ours fsyncs and publishes its copy. Wait until the mirror has no upstream
      // request open and its CPU is still, then flush the disk. The upstream bytes and the CPU
      // after settling are what the pull cost in all.
      const settle = process.hrtime.bigint();
      for (let last = cpuSeconds(s.m.proc.pid!), quiet = 0; Number(process.hrtime.bigint() - settle) < 60e9;) {
        await new Promise((r) => setTimeout(r, 100));
        const now = cpuSeconds(s.m.proc.pid!);
        quiet = s.proxy.active() === 0 && now - last <= 0.01 ? quiet + 1 : 0;
        last = now;
        if (quiet >= 3) break;
      }
      spawnSync('sync');
      return { sec, upMiB: s.proxy.bytes() / MiB, cpuSec, cpuTotalSec: cpuSeconds(s.m.proc.pid!) - cpu0 };
    };
    // each repetition starts both mirrors afresh (empty caches) and alternates them phase by phase
    // (which one goes first alternates too), so that the shared machine's load falls on both alike
    for (let rep = 0; rep < REPS; rep++) {
      const order = rep % 2 === 0 ? who : ([...who].reverse() as unknown as typeof who);
      const setup: Record<string, { proxy: Awaited<ReturnType<typeof countingProxy>>; m: Proc }> = {};
      const concLayers: Record<string, string> = {};
      for (const w of who) {
        const proxy = await countingProxy(upstream.url);
        const dir = join(work, `${w}-${rep}`);
        mkdirSync(dir);
        if (PHASES.has('concurrent')) {
          // a fresh image per mirror and repetition for the concurrent phase: both start it cold
          const l = await layerFile(join(work, `conc-${w}.layer`), CONC);
          concLayers[w] = `library/conc-${w}-${rep}`;
          await pushImage(upstream.url, concLayers[w], l);
        }
        const m = w === 'ours' ? await startOurs(dir, proxy.url) : await startDistribution(dir, ['proxy:', `  remoteurl: ${proxy.url}`]);
        procs.push(m);
        setup[w] = { proxy, m };
      }
      const load = () => loadavg()[0]!.toFixed(1);
      if (PHASES.has('cold')) {
        for (const w of order) {
          const s = await measure(setup[w]!, async () => {
            const got = await pull(setup[w]!.m.url, 'library/big');
            if (got < big.size) throw new Error(`${w}: cold pull got ${got} bytes`);
          });
          cold[w]!.push(s);
          log(
            `rep ${rep + 1}/${REPS} ${w}: cold pull of ${SIZE} MiB ${s.sec.toFixed(2)} s, CPU ${s.cpuSec.toFixed(2)} s (${s.cpuTotalSec.toFixed(2)} s until still), upstream ${s.upMiB.toFixed(0)} MiB (load ${load()})`,
          );
        }
      }
      if (PHASES.has('warm')) {
        for (const w of order) {
          const s = await measure(setup[w]!, () => pull(setup[w]!.m.url, 'library/big'));
          warm[w]!.push(s);
          log(
            `rep ${rep + 1}/${REPS} ${w}: warm pull ${s.sec.toFixed(2)} s (manifest, config, layer: ${lastSteps.map((x) => x.toFixed(0)).join(', ')} ms), CPU ${s.cpuSec.toFixed(2)} s, upstream ${s.upMiB.toFixed(2)} MiB (load ${load()})`,
          );
        }
      }
      if (PHASES.has('concurrent')) {
        for (const w of order) {
          const s = await measure(setup[w]!, async () => {
            // a failed pull is counted, not fatal (distribution's proxy has been seen to fail some)
            const settled = await Promise.allSettled(Array.from({ length: 8 }, () => pull(setup[w]!.m.url, concLayers[w]!)));
            const bad = settled.filter((x) => x.status === 'rejected');
            for (const f of bad) log(`${w}: a concurrent pull failed: ${String((f as PromiseRejectedResult).reason)}`);
            failed[w]! += bad.length;
          });
          conc[w]!.push(s);
          log(
            `rep ${rep + 1}/${REPS} ${w}: 8 concurrent cold pulls of ${CONC} MiB ${s.sec.toFixed(2)} s, upstream ${((s.upMiB * MiB) / image(CONC)).toFixed(2)}× the image (load ${load()})`,
          );
        }
      }
      for (const w of who) {
        await stop(setup[w]!.m);
        await setup[w]!.proxy.close();
      }
    }
    const results: Record<string, Figures> = {};
    const med = (xs: Sample[], k: keyof Sample): number => (xs.length > 0 ? median(xs.map((x) => x[k])) : NaN);
    for (const w of who) {
      results[w] = {
        coldSec: round(med(cold[w]!, 'sec')),
        coldMiBps: round(SIZE / med(cold[w]!, 'sec')),
        coldUpstreamMiB: round(med(cold[w]!, 'upMiB')),
        coldCpuSec: round(med(cold[w]!, 'cpuSec')),
        coldCpuTotalSec: round(med(cold[w]!, 'cpuTotalSec')),
        warmSec: round(med(warm[w]!, 'sec')),
        warmMiBps: round(SIZE / med(warm[w]!, 'sec')),
        warmUpstreamMiB: round(med(warm[w]!, 'upMiB'), 3),
        warmCpuSec: round(med(warm[w]!, 'cpuSec')),
        concurrentSec: round(med(conc[w]!, 'sec')),
        concurrentUpstreamMiB: round(med(conc[w]!, 'upMiB')),
        // the worst repetition: one extra download in any of them is a miss
        concurrentUpstreamImages: round((Math.max(...conc[w]!.map((x) => x.upMiB)) * MiB) / image(CONC)),
        concurrentFailed: failed[w] ?? 0,
      };
      log(`${w} (medians of ${REPS}): ${JSON.stringify(results[w])}`);
    }
    const o = results.ours!;
    const d = results.distribution!;
    const rows: string[][] = [
      ['phase', 'ours', 'distribution 2.8.2', 'ratio', 'target', 'met'],
      [
        `cold pull ${SIZE} MiB (s; MiB/s)`,
        `${o.coldSec}; ${o.coldMiBps}`,
        `${d.coldSec}; ${d.coldMiBps}`,
        `${round(d.coldSec / o.coldSec)}×`,
        '≥ 1.0×',
        d.coldSec / o.coldSec >= 1 ? 'yes' : 'no',
      ],
      [
        `warm pull ${SIZE} MiB (s; MiB/s)`,
        `${o.warmSec}; ${o.warmMiBps}`,
        `${d.warmSec}; ${d.warmMiBps}`,
        `${round(d.warmSec / o.warmSec)}×`,
        '≥ 1.0×',
        d.warmSec / o.warmSec >= 1 ? 'yes' : 'no',
      ],
      [
        `8 concurrent cold pulls ${CONC} MiB (s; failed)`,
        `${o.concurrentSec}; ${o.concurrentFailed}`,
        `${d.concurrentSec}; ${d.concurrentFailed}`,
        `${round(d.concurrentSec / o.concurrentSec)}×`,
        '',
        '',
      ],
      [
        '  upstream bytes (× image, worst rep)',
        `${o.concurrentUpstreamImages}×`,
        `${d.concurrentUpstreamImages}×`,
        '',
        '1× (distribution 8×)',
        o.concurrentUpstreamImages <= 1.01 ? 'yes' : 'no',
      ],
      ['upstream MiB: cold / warm', `${o.coldUpstreamMiB} / ${o.warmUpstreamMiB}`, `${d.coldUpstreamMiB} / ${d.warmUpstreamMiB}`, '', '', ''],
      ['server CPU s: cold / warm', `${o.coldCpuSec} / ${o.warmCpuSec}`, `${d.coldCpuSec} / ${d.warmCpuSec}`, '', '', ''],
      ['server CPU s: cold, until stored', `${o.coldCpuTotalSec}`, `${d.coldCpuTotalSec}`, '', '', ''],
    ];
    const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
    const line = (r: string[]): string => `| ${r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join(' | ')} |`;
    const table = [
      line(rows[0]!),
      `|${widths.map((w, i) => (i === 0 ? ':' : '') + '-'.repeat(w + 1) + (i === 0 ? '' : ':')).join('|')}|`,
      ...rows.slice(1).map(line),
    ].join('\n');
    const date = new Date().toISOString();
    const machine = `${cpus().length} cores (${cpus()[0]?.model ?? '?'}), ${Math.round(totalmem() / 1024 ** 3)} GiB RAM, node ${process.version}, load average ${loadavg()[0]!.toFixed(1)}`;
    const outDir = opt('out', join(ROOT, 'bench', 'results'));
    mkdirSync(outDir, { recursive: true });
    const file = join(outDir, `mirror-${date.slice(0, 10)}.json`);
    const samples = { cold, warm, concurrent: conc };
    const doc = { date, machine, pageCache: pageCache.note, sizeMiB: SIZE, concurrentMiB: CONC, reps: REPS, results, samples, table };
    writeFileSync(file, JSON.stringify(doc, null, 2) + '\n');
    if (argv.includes('--json')) console.log(JSON.stringify(doc));
    else {
      console.log(
        `\npull-through mirror: legacy-registry vs distribution 2.8.2 — ${date}, medians of ${REPS} alternating repetitions\nmachine: ${machine}\n${pageCache.note}\n`,
      );
      console.log(table);
      console.log(`\nwritten: ${file}`);
    }
  } finally {
    for (const p of procs) await stop(p).catch(() => undefined);
    pageCache.cleanup();
    await rm(work, { recursive: true, force: true });
  }
}

function round(x: number, digits = 2): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

await main();
