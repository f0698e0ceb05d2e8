/**
 * The cost of v2 upload sessions on our server alone (security issue 10: one request at a time per
 * session, bounded sessions). Two workloads against a standalone registry in its own process:
 *   big:   64 blobs × 1 MiB, each POST + one PATCH (Content-Range) + PUT, 8 pushes at a time
 *   small: 200 blobs × 256 KiB, each POST + 4 PATCHes of 64 KiB + PUT, 8 at a time
 * Each runs --reps times (fresh data directory each time); prints the median wall time, requests
 * per second and server CPU seconds (utime + stime from /proc/<pid>/stat).
 *
 *   node dist/bench/upload-sessions.js [--root DIR] [--reps N] [--only big,small]
 * --root: the checkout whose bin/legacy-registry.cjs is started (default: this one), so the same
 * script measures another build (e.g. the commit before a change) under the same load.
 *
 * Measured for security issue 10 (claims on upload sessions), 2-core machine shared with other
 * work (load average 6–9, so wall times vary by ±40% run to run), 4 alternating runs each:
 *   big, wall s:   before 2.19 1.43 1.18 2.01, after 2.51 1.27 3.86 2.80; server CPU s:
 *                  before 0.98 1.02 0.94 1.07, after 1.17 1.07 1.30 1.19
 *   small, wall s: before 6.57 5.86 5.63 8.80, after 8.86 4.91 7.48 9.38; server CPU s:
 *                  before 4.12 3.58 4.16 4.23, after 4.49 3.88 4.86 4.70
 * Deterministic count (strace -c -f, V2Uploads in process, 100 uploads × (4 PATCHes + PUT)):
 * filesystem syscalls 21.5k before, 22.9k after (+2.4 per request: the claim and release renames,
 * a stat of the state before it is rewritten, the empty data file at POST).
 */
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { Agent, request } from 'node:http';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const arg = (name: string, dflt: string): string => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1]! : dflt;
};
const ROOT = resolve(arg('root', join(import.meta.dirname, '..', '..')));
const REPS = Number(arg('reps', '3'));
const MiB = 1024 * 1024;

interface Server {
  readonly port: number;
  readonly pid: number;
  stop(): Promise<void>;
}

async function startServer(dataDir: string): Promise<Server> {
  const proc = spawn(process.execPath, [join(ROOT, 'bin', 'legacy-registry.cjs'), 'serve', '--host', '127.0.0.1', '--port', '0'], {
    env: { PATH: process.env.PATH ?? '', LOGLEVEL: 'info', STANDALONE: 'true', V2: 'true', STORAGE_PATH: dataDir },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  const port = await new Promise<number>((res, rej) => {
    const t = setTimeout(() => rej(new Error(`server did not start:\n${out}`)), 20_000);
    const check = (d: Buffer): void => {
      out += d.toString();
      const m = /address=\S+:(\d+)/.exec(out);
      if (m) {
        clearTimeout(t);
        res(Number(m[1]));
      }
    };
    proc.stdout!.on('data', check);
    proc.stderr!.on('data', check);
    proc.once('exit', (c) => rej(new Error(`server exited ${c}:\n${out}`)));
  });
  return {
    port,
    pid: proc.pid!,
    stop: () =>
      new Promise((res) => {
        proc.once('exit', () => res());
        proc.kill('SIGTERM');
      }),
  };
}

async function cpuSeconds(pid: number): Promise<number> {
  const f = (await readFile(`/proc/${pid}/stat`, 'utf8')).split(') ')[1]!.split(' ');
  return (Number(f[11]) + Number(f[12])) / 100; // utime, stime in clock ticks (100/s)
}

function http(
  agent: Agent,
  port: number,
  method: string,
  path: string,
  headers: Record<string, string>,
  body?: Buffer,
): Promise<{ status: number; location: string }> {
  return new Promise((res, rej) => {
    const req = request({ host: '127.0.0.1', port, method, path, agent, headers: { ...headers, 'Content-Length': String(body?.length ?? 0) } }, (r) => {
      r.resume();
      r.on('end', () => res({ status: r.statusCode ?? 0, location: String(r.headers.location ?? '') }));
      r.on('error', rej);
    });
    req.on('error', rej);
    req.end(body);
  });
}

async function push(agent: Agent, port: number, repo: string, blob: Buffer, pieces: number): Promise<number> {
  const digest = `sha256:${createHash('sha256').update(blob).digest('hex')}`;
  const start = await http(agent, port, 'POST', `/v2/${repo}/blobs/uploads/`, {});
  if (start.status !== 202) throw new Error(`POST ${start.status}`);
  const loc = start.location;
  const size = Math.ceil(blob.length / pieces);
  for (let off = 0; off < blob.length; off += size) {
    const piece = blob.subarray(off, off + size);
    const r = await http(agent, port, 'PATCH', loc, { 'Content-Type': 'application/octet-stream', 'Content-Range': `${off}-${off + piece.length - 1}` }, piece);
    if (r.status !== 202) throw new Error(`PATCH ${r.status}`);
  }
  const done = await http(agent, port, 'PUT', `${loc}?digest=${digest}`, {});
  if (done.status !== 201) throw new Error(`PUT ${done.status}`);
  return pieces + 2;
}

async function workload(name: string, count: number, size: number, pieces: number): Promise<void> {
  const results: { seconds: number; reqs: number; cpu: number }[] = [];
  for (let rep = 0; rep < REPS; rep++) {
    const blobs = Array.from({ length: count }, () => randomBytes(size));
    const dir = await mkdtemp(join(tmpdir(), 'lr-bench-uploads-'));
    const s = await startServer(dir);
    const agent = new Agent({ keepAlive: true, maxSockets: 8 });
    try {
      const cpu0 = await cpuSeconds(s.pid);
      const t0 = process.hrtime.bigint();
      let next = 0;
      let reqs = 0;
      await Promise.all(
        Array.from({ length: 8 }, async (_, w) => {
          for (;;) {
            const i = next++;
            if (i >= blobs.length) return;
            const n = await push(agent, s.port, `bench/w${w}`, blobs[i]!, pieces);
            reqs += n;
          }
        }),
      );
      const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
      results.push({ seconds, reqs, cpu: (await cpuSeconds(s.pid)) - cpu0 });
    } finally {
      agent.destroy();
      await s.stop();
      await rm(dir, { recursive: true, force: true });
    }
  }
  const sorted = [...results].sort((a, b) => a.seconds - b.seconds);
  const med = sorted[Math.floor(sorted.length / 2)]!;
  const all = results.map((r) => r.seconds.toFixed(3)).join(' ');
  console.log(
    `${name}: median ${med.seconds.toFixed(3)} s (${(med.reqs / med.seconds).toFixed(0)} req/s, ${((count * size) / MiB / med.seconds).toFixed(1)} MiB/s, server CPU ${med.cpu.toFixed(2)} s); all runs: ${all}`,
  );
}

const ONLY = arg('only', 'big,small').split(',');
console.log(`root ${ROOT}, ${REPS} reps`);
if (ONLY.includes('big')) await workload('big   64 × 1 MiB, 1 PATCH each ', 64, MiB, 1);
if (ONLY.includes('small')) await workload('small 200 × 256 KiB, 4 PATCHes each', 200, 256 * 1024, 4);
