import { readdir, readFile, stat } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { spawnServer } from '../test/helpers/child.js';
import { freePort } from '../test/helpers/ports.js';
import { request } from '../test/helpers/http.js';
import { pushV2Image, S2, sha, Site, v2Image, type Creds } from '../test/helpers/accounts.js';
import { makeImage } from '../test/helpers/v1-client.js';

/**
 * Soak (issue 17): mixed v1/v2 traffic at a steady rate against one server process for a long time;
 * its RSS, open file descriptors, event-loop delay (the server's own monitorEventLoopDelay, read
 * from its metrics listener: p50/p99/max since the previous sample) and ping latency are sampled,
 * and every answer checked. Flat figures and zero errors are the pass.
 */

export interface SoakSample {
  readonly atSec: number;
  readonly rssMiB: number;
  readonly fds: number;
  readonly pingP50Ms: number;
  readonly pingP99Ms: number;
  /** The server's event-loop delay since the previous sample (ms). */
  readonly loopDelayP50Ms: number;
  readonly loopDelayP99Ms: number;
  readonly loopDelayMaxMs: number;
  /** The server's V8 heap in use and its memory outside the heap (Buffers, ArrayBuffers), MiB: a leak grows the first, buffers the allocator keeps show in RSS only. */
  readonly heapUsedMiB: number;
  readonly externalMiB: number;
}

export interface SoakReport {
  seconds: number;
  operations: number;
  /** Failed or wrong answers (the first 100; `errorCount` counts them all). */
  errors: string[];
  errorCount: number;
  /** Ticks at which more than 4 s of operations were in flight (the target rate was not held), and the most in flight. */
  behindTicks: number;
  maxInFlight: number;
  samples: SoakSample[];
}

const USER: Creds = ['soak', 'soakpass'];

async function procStats(pid: number): Promise<{ rssMiB: number; fds: number }> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const rss = Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? 0) / 1024;
  const fds = (await readdir(`/proc/${pid}/fd`)).length;
  return { rssMiB: Math.round(rss * 10) / 10, fds };
}

const pct = (xs: number[], p: number): number => {
  if (xs.length === 0) return 0;
  const s = [...xs].sort((a, b) => a - b);
  return Math.round(s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]! * 10) / 10;
};

/** Event-loop delay gauges of the server's Prometheus text (prom-client's nodejs_eventloop_lag_*), in ms. */
async function loopDelay(
  metricsUrl: string,
): Promise<{ loopDelayP50Ms: number; loopDelayP99Ms: number; loopDelayMaxMs: number; heapUsedMiB: number; externalMiB: number }> {
  const text = (await request(metricsUrl, '/metrics')).text;
  const read = (name: string): number => {
    const m = new RegExp(`^${name}(?:\\{[^}]*\\})? ([0-9.eE+-]+)$`, 'm').exec(text);
    return m ? Math.round(Number(m[1]) * 10_000) / 10 : NaN;
  };
  const mib = (name: string): number => {
    const m = new RegExp(`^${name}(?:\\{[^}]*\\})? ([0-9.eE+-]+)$`, 'm').exec(text);
    return m ? Math.round((Number(m[1]) / 1048576) * 10) / 10 : NaN;
  };
  return {
    loopDelayP50Ms: read('nodejs_eventloop_lag_p50_seconds'),
    loopDelayP99Ms: read('nodejs_eventloop_lag_p99_seconds'),
    loopDelayMaxMs: read('nodejs_eventloop_lag_max_seconds'),
    heapUsedMiB: mib('nodejs_heap_size_used_bytes'),
    externalMiB: mib('nodejs_external_memory_bytes'),
  };
}

/**
 * A heap snapshot of the server (SIGUSR2 with --heapsnapshot-signal): written to `dir`; resolves once the
 * file is complete. It stops the server's event loop for a second or two, so the soak takes one only
 * after its first sample and one at the end (`--heap-snapshots DIR`; scripts/heap-summary.mjs reads them).
 */
async function heapSnapshot(pid: number, dir: string): Promise<string | undefined> {
  const before = new Set(await readdir(dir));
  process.kill(pid, 'SIGUSR2');
  for (let i = 0; i < 600; i++) {
    await sleep(500);
    const fresh = (await readdir(dir)).filter((f) => f.endsWith('.heapsnapshot') && !before.has(f));
    if (fresh.length === 0) continue;
    const path = `${dir}/${fresh[0]!}`;
    // complete when the size stops changing
    const a = (await stat(path)).size;
    await sleep(1000);
    if ((await stat(path)).size === a && a > 0) return path;
  }
  return undefined;
}

export async function runSoak(opts: {
  dataDir: string;
  seconds: number;
  opsPerSecond?: number;
  sampleEverySec?: number;
  heapSnapshotDir?: string;
  log?: (l: string) => void;
}): Promise<SoakReport> {
  const debugPort = await freePort();
  const metricsUrl = `http://127.0.0.1:${debugPort}`;
  const server = await spawnServer(
    {
      STORAGE_PATH: opts.dataDir,
      STANDALONE: '',
      BCRYPT_COST: '4',
      ACCESS_LOG: 'false',
      LOGLEVEL: 'info',
      DEBUG_ADDR: `127.0.0.1:${debugPort}`,
      METRICS: 'true',
      ...(opts.heapSnapshotDir ? { NODE_OPTIONS: `--heapsnapshot-signal=SIGUSR2 --diagnostic-dir=${opts.heapSnapshotDir}` } : {}),
    },
    [],
    { startTimeoutMs: 120_000 },
  );
  // the first scrape starts the default metrics (and its delay histogram): discard it
  await loopDelay(metricsUrl);
  const pid = server.proc.pid!;
  const site = new Site(server.url, server.url);
  const report: SoakReport = { seconds: opts.seconds, operations: 0, errors: [], errorCount: 0, behindTicks: 0, maxInFlight: 0, samples: [] };
  const signup = await request(server.url, '/v1/users/', {
    method: 'POST',
    body: JSON.stringify({ username: USER![0], password: USER![1], email: 'soak@example.com' }),
  });
  if (signup.status !== 201) throw new Error(`signup ${signup.status}`);
  const rate = opts.opsPerSecond ?? 20;
  const every = opts.sampleEverySec ?? 60;
  const started = Date.now();
  let pings: number[] = [];
  let n = 0;
  const v1Tags: string[] = [];
  const v2Tags: string[] = [];
  const fail = (what: string): void => {
    report.errorCount++;
    if (report.errors.length < 100) report.errors.push(`${Math.round((Date.now() - started) / 1000)}s ${what}`);
  };
  const op = async (k: number): Promise<void> => {
    const kind = k % 10;
    try {
      if (kind === 0) {
        const tag = `t${k}`;
        await site.pushV1(`soak/v1r${k % 4}`, USER, [makeImage()], tag);
        v1Tags.push(`soak/v1r${k % 4}:${tag}`);
      } else if (kind === 1) {
        const tag = `t${k}`;
        const bearer = await site.bearer(USER, `repository:soak/v2r${k % 4}:pull,push`);
        await pushV2Image(site, `soak/v2r${k % 4}`, tag, bearer, v2Image(`soak${k}`, 1));
        v2Tags.push(`soak/v2r${k % 4}:${tag}`);
      } else if (kind <= 4 && v2Tags.length > 0) {
        const [repo, tag] = v2Tags[k % v2Tags.length]!.split(':') as [string, string];
        const bearer = await site.bearer(USER, `repository:${repo}:pull`);
        const m = await site.v2(`/v2/${repo}/manifests/${tag}`, bearer, { headers: { Accept: S2 } });
        if (m.status !== 200) return fail(`v2 manifest ${repo}:${tag} ${m.status}`);
        const layer = (JSON.parse(m.text) as { layers: { digest: string }[] }).layers[0]!.digest;
        const b = await site.v2(`/v2/${repo}/blobs/${layer}`, bearer);
        if (b.status !== 200 || sha(b.body) !== layer) fail(`v2 blob ${layer} ${b.status}`);
      } else if (kind <= 6 && v1Tags.length > 0) {
        const [repo, tag] = v1Tags[k % v1Tags.length]!.split(':') as [string, string];
        const token = await site.readToken(repo, USER);
        const id = (await site.regGet(`/v1/repositories/${repo}/tags/${tag}`, token)).json<string>();
        const l = await site.regGet(`/v1/images/${id}/layer`, token);
        if (l.status !== 200) fail(`v1 layer ${repo}:${tag} ${l.status}`);
      } else if (kind === 7) {
        const r = await request(server.url, `/v1/search?q=soak&n=25`);
        if (r.status !== 200) fail(`search ${r.status}`);
      } else if (kind === 8) {
        const r = await site.v2('/v2/_catalog?n=100', await site.bearer(USER, 'registry:catalog:*'));
        if (r.status !== 200) fail(`catalog ${r.status}`);
      } else {
        const t0 = performance.now();
        const r = await request(server.url, '/v1/_ping');
        pings.push(performance.now() - t0);
        if (r.status !== 200) fail(`ping ${r.status}`);
      }
      report.operations++;
    } catch (e) {
      fail(`op ${kind}: ${(e as Error).message.slice(0, 200)}`);
    }
  };
  /** One sample of the server: memory, fds, the pings since the last one, its event-loop delay. */
  const sample = async (): Promise<void> => {
    report.samples.push({
      atSec: Math.round((Date.now() - started) / 1000),
      ...(await procStats(pid)),
      pingP50Ms: pct(pings, 50),
      pingP99Ms: pct(pings, 99),
      ...(await loopDelay(metricsUrl)),
    });
  };
  const inflight = new Set<Promise<void>>();
  let nextSample = started + 30_000; // the first sample after a warm-up
  while (Date.now() - started < opts.seconds * 1000) {
    const tick = Date.now();
    for (let i = 0; i < rate / 5; i++) {
      const p = op(n++);
      inflight.add(p);
      void p.finally(() => inflight.delete(p));
    }
    // falling behind the rate is the machine's or the server's limit, reported apart from wrong answers
    report.maxInFlight = Math.max(report.maxInFlight, inflight.size);
    if (inflight.size > rate * 4) report.behindTicks++;
    if (Date.now() >= nextSample) {
      await sample();
      opts.log?.(JSON.stringify(report.samples[report.samples.length - 1]));
      if (opts.heapSnapshotDir && report.samples.length === 1) opts.log?.(`heap snapshot: ${await heapSnapshot(pid, opts.heapSnapshotDir)}`);
      pings = [];
      nextSample += every * 1000;
    }
    await sleep(Math.max(0, 200 - (Date.now() - tick)));
  }
  await Promise.all(inflight);
  // the server's idle-time collection runs after a few quiet seconds: the last sample is the drained, idle server
  await sleep(15_000);
  await sample();
  if (opts.heapSnapshotDir) opts.log?.(`heap snapshot: ${await heapSnapshot(pid, opts.heapSnapshotDir)}`);
  server.proc.kill('SIGTERM');
  await server.exited;
  return report;
}
