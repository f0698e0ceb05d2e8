/**
 * legacy-registry and distribution 2.8 (Debian `docker-registry`), both on S3: one throw-away Ceph RGW
 * on loopback (scripts/ceph-rgw.sh), a bucket each, same run, alternating ours / theirs.
 *
 *   node dist/bench/s3.js [--reps 1] [--size 256] [--big] [--out bench/results]
 *   npm run bench -- --s3          (after the default bench; BENCH_S3=1 does the same)
 *
 * distribution's storage.s3: regionendpoint + path style (2.8 uses path style with regionendpoint),
 * chunksize 10 MiB as ours (s3_part_size). Figures: v2 upload monolithic / 64 × 1 MiB (8 parallel) /
 * chunked (PATCHes of 8 MiB), blob download with 1 and 8 streams, with the registry in the data path
 * and with the redirect to pre-signed URLs (curl follows), manifest GET (64 connections), server CPU
 * per GiB and peak RSS. --big adds a 2 GiB monolithic push and pull through ours (RSS bound 200 MiB).
 * Needs root and Ceph (apt-get install radosgw ceph-mon ceph-osd ceph-common), curl; wrk for the
 * manifest phase (a node loop otherwise).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { Agent, request } from 'node:http';
import { createServer, type AddressInfo } from 'node:net';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';

const ROOT = join(new URL('.', import.meta.url).pathname, '..', '..');
const MiB = 1024 * 1024;
const argv = process.argv.slice(2);
const flag = (n: string): boolean => argv.includes(`--${n}`);
const opt = (n: string, d: string): string => {
  const i = argv.indexOf(`--${n}`);
  return i >= 0 && argv[i + 1] ? argv[i + 1]! : d;
};
if (flag('help')) {
  console.log(`usage: node dist/bench/s3.js [--reps N] [--size MiB] [--big] [--out DIR]
  --reps N     alternating repetitions (default 1; medians reported)
  --size MiB   the monolithic / download blob (default 256)
  --big        also push and pull a 2 GiB blob through ours (peak RSS ≤ 200 MiB)
  --out DIR    where the JSON result goes (default bench/results)
  --only LIST  only these figures, comma-separated: mono, small, chunked, dl1, dl8, manifest
               (dl1/dl8 also run with redirect unless --no-redirect)
  --no-redirect  skip the round with redirects to pre-signed URLs
  --count      count the object-store requests (by S3 operation) of one v2 push of a 1 MiB blob
               (POST + PUT with the body) and of a monolithic POST ?digest=, ours and distribution,
               through a counting proxy in front of RGW; prints the counts and exits
Starts a throw-away Ceph RGW (scripts/ceph-rgw.sh, root), legacy-registry and distribution 2.8 on it.`);
  process.exit(0);
}
const REPS = Number(opt('reps', '1'));
const ONLY = flag('only') ? new Set(opt('only', '').split(',').filter(Boolean)) : undefined;
const want = (key: string): boolean => !ONLY || ONLY.has(key);
const SIZE = Number(opt('size', '256')) * MiB;
const log = (s: string): void => console.error(`[bench s3] ${s}`);

interface Rgw {
  dir: string;
  endpoint: string;
  access: string;
  secret: string;
}
interface Server {
  name: 'ours' | 'distribution';
  port: number;
  proc: ChildProcess;
  agent: Agent;
}

function startRgw(dir: string): Rgw {
  const r = spawnSync(join(ROOT, 'scripts', 'ceph-rgw.sh'), ['up', dir], {
    encoding: 'utf8',
    env: { ...process.env, MEMSTORE_BYTES: flag('big') ? '12G' : '6G' },
  });
  if (r.status !== 0) throw new Error(`ceph-rgw.sh up failed:\n${r.stderr}`);
  const env = Object.fromEntries(
    r.stdout
      .split('\n')
      .filter((l) => l.includes('='))
      .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
  );
  try {
    storePids = readFileSync(join(dir, 'pids'), 'utf8')
      .split('\n')
      .map((l) => Number(l.split(' ')[0]))
      .filter((n) => Number.isInteger(n) && n > 0);
  } catch {
    storePids = [];
  }
  return { dir, endpoint: env.S3_ENDPOINT!, access: env.S3_ACCESS_KEY!, secret: env.S3_SECRET_KEY! };
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
}

function http(
  agent: Agent | undefined,
  port: number,
  method: string,
  path: string,
  headers: Record<string, string> = {},
  body?: Buffer,
): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = request(
      { host: '127.0.0.1', port, method, path, headers: body ? { 'Content-Length': String(body.length), ...headers } : headers, agent: agent ?? false },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

async function waitUp(port: number, proc: ChildProcess, what: string): Promise<void> {
  const until = Date.now() + 60_000;
  while (Date.now() < until) {
    if (proc.exitCode !== null) throw new Error(`${what} exited (${proc.exitCode})`);
    const r = await http(undefined, port, 'GET', '/v2/').catch(() => undefined);
    if (r?.status === 200) return;
    await new Promise((res) => setTimeout(res, 100));
  }
  throw new Error(`${what} did not answer /v2/ within 60 s`);
}

async function startOurs(rgw: Rgw, bucket: string, redirect: boolean, work: string): Promise<Server> {
  const port = await freePort();
  const cfg = join(work, `ours-${redirect}.yml`);
  writeFileSync(
    cfg,
    [
      'bench:',
      '  storage: s3',
      `  s3_bucket: ${bucket}`,
      `  s3_endpoint: ${rgw.endpoint}`,
      `  s3_access_key: ${rgw.access}`,
      `  s3_secret_key: ${rgw.secret}`,
      '  s3_part_size: 10MiB',
      '  storage_path: /',
      `  storage_redirect: ${redirect}`,
      '  standalone: true',
      '  v2: true',
      '  storage_delete: true',
      '  loglevel: error',
      '  access_log: false',
      '',
    ].join('\n'),
  );
  const proc = spawn(process.execPath, [join(ROOT, 'bin', 'legacy-registry.cjs'), 'serve', '--host', '127.0.0.1', '--port', String(port)], {
    env: { PATH: process.env.PATH ?? '', DOCKER_REGISTRY_CONFIG: cfg, SETTINGS_FLAVOR: 'bench', NODE_NO_WARNINGS: '1' },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  await waitUp(port, proc, 'legacy-registry');
  return { name: 'ours', port, proc, agent: new Agent({ keepAlive: true, maxSockets: 64 }) };
}

async function startDistribution(rgw: Rgw, bucket: string, redirect: boolean, work: string): Promise<Server> {
  const port = await freePort();
  const cfg = join(work, `distribution-${redirect}.yml`);
  writeFileSync(
    cfg,
    [
      'version: 0.1',
      'log:',
      '  level: error',
      '  accesslog:',
      '    disabled: true',
      'storage:',
      '  s3:',
      `    accesskey: ${rgw.access}`,
      `    secretkey: ${rgw.secret}`,
      '    region: us-east-1',
      `    regionendpoint: ${rgw.endpoint}`,
      `    bucket: ${bucket}`,
      '    secure: false',
      '    v4auth: true',
      '    chunksize: 10485760',
      '    rootdirectory: /',
      '  delete:',
      '    enabled: true',
      '  redirect:',
      `    disable: ${!redirect}`,
      'http:',
      `  addr: 127.0.0.1:${port}`,
      '',
    ].join('\n'),
  );
  const proc = spawn('/usr/bin/docker-registry', ['serve', cfg], { stdio: ['ignore', 'ignore', 'inherit'], env: { PATH: process.env.PATH ?? '' } });
  await waitUp(port, proc, 'distribution');
  return { name: 'distribution', port, proc, agent: new Agent({ keepAlive: true, maxSockets: 64 }) };
}

async function stop(s: Server): Promise<void> {
  s.agent.destroy();
  if (s.proc.exitCode !== null) return;
  s.proc.kill('SIGTERM');
  await new Promise((r) => s.proc.once('exit', r));
}

function cpuSeconds(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(f[11]) + Number(f[12])) / 100;
}
function sampleRss(pid: number): () => number {
  let peak = 0;
  const read = (): void => {
    try {
      const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
      if (m) peak = Math.max(peak, Number(m[1]) / 1024);
    } catch {
      /* gone */
    }
  };
  read();
  const t = setInterval(read, 20);
  return () => {
    clearInterval(t);
    read();
    return Math.round(peak);
  };
}

interface Phase {
  seconds: number;
  cpu: number;
  /** CPU seconds of the object store's processes (radosgw, ceph-osd, ceph-mon) over the phase */
  storeCpu?: number;
  rss: number;
  /** requests served, for the request-rate phase */
  count?: number;
}
/** The Ceph processes scripts/ceph-rgw.sh started (its `pids` file), for their CPU per phase. */
let storePids: number[] = [];
function storeCpuSeconds(): number {
  let sum = 0;
  for (const pid of storePids) {
    try {
      sum += cpuSeconds(pid);
    } catch {
      /* gone */
    }
  }
  return sum;
}
async function measure(s: Server, fn: () => Promise<void>): Promise<Phase> {
  const pid = s.proc.pid!;
  const rss = sampleRss(pid);
  const c0 = cpuSeconds(pid);
  const st0 = storeCpuSeconds();
  const t0 = process.hrtime.bigint();
  await fn();
  return { seconds: Number(process.hrtime.bigint() - t0) / 1e9, cpu: cpuSeconds(pid) - c0, storeCpu: storeCpuSeconds() - st0, rss: rss() };
}

const sha = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

async function makeBlobFile(path: string, size: number): Promise<{ path: string; size: number; digest: string }> {
  const h = createHash('sha256');
  const out = createWriteStream(path);
  const chunk = randomBytes(4 * MiB);
  for (let left = size, i = 0; left > 0; i++) {
    const n = Math.min(chunk.length, left);
    chunk.writeUInt32BE(i, 0);
    const piece = Buffer.from(chunk.subarray(0, n));
    h.update(piece);
    if (!out.write(piece)) await new Promise<void>((r) => out.once('drain', () => r()));
    left -= n;
  }
  await new Promise<void>((resolve, reject) => out.end((e?: Error | null) => (e ? reject(e) : resolve())));
  return { path, size, digest: `sha256:${h.digest('hex')}` };
}

function curl(args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const p = spawn('curl', ['-sS', '--noproxy', '*', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    p.on('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`curl ${args.join(' ')}: ${err}`))));
  });
}

const loc = (r: { headers: Record<string, string | string[] | undefined> }): string => {
  const l = String(r.headers.location);
  return l.startsWith('http') ? new URL(l).pathname + new URL(l).search : l;
};
const withQ = (l: string, q: string): string => `${l}${l.includes('?') ? '&' : '?'}${q}`;
async function startUpload(s: Server, repo: string): Promise<string> {
  const r = await http(s.agent, s.port, 'POST', `/v2/${repo}/blobs/uploads/`, {}, Buffer.alloc(0));
  if (r.status !== 202) throw new Error(`${s.name}: POST ${r.status} ${r.body.toString().slice(0, 200)}`);
  return loc(r);
}
async function pushBuffer(s: Server, repo: string, data: Buffer): Promise<string> {
  const l = await startUpload(s, repo);
  const d = sha(data);
  const r = await http(s.agent, s.port, 'PUT', withQ(l, `digest=${d}`), { 'Content-Type': 'application/octet-stream' }, data);
  if (r.status !== 201) throw new Error(`${s.name}: PUT ${r.status} ${r.body.toString().slice(0, 200)}`);
  return d;
}
async function pushFile(s: Server, repo: string, blob: { path: string; digest: string }): Promise<void> {
  const l = await startUpload(s, repo);
  const code = await curl([
    '-o',
    '/dev/null',
    '-w',
    '%{http_code}',
    '-T',
    blob.path,
    '-H',
    'Content-Type: application/octet-stream',
    `http://127.0.0.1:${s.port}${withQ(l, `digest=${blob.digest}`)}`,
  ]);
  if (code !== '201') throw new Error(`${s.name}: monolithic PUT ${code}`);
}

interface Row {
  key: string;
  label: string;
  unit: string;
  ours: Phase[];
  theirs: Phase[];
  value: (p: Phase) => number;
  /** per-GiB CPU needs the bytes moved */
  bytes: number;
}
const rows: Row[] = [];
function row(key: string, label: string, unit: string, bytes: number, value: (p: Phase) => number): Row {
  let r = rows.find((x) => x.key === key);
  if (!r) rows.push((r = { key, label, unit, ours: [], theirs: [], value, bytes }));
  return r;
}
const median = (a: number[]): number => {
  const s = [...a].sort((x, y) => x - y);
  const m = Math.floor(s.length / 2);
  return s.length === 0 ? NaN : s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};
const fmt = (v: number): string => (!Number.isFinite(v) ? '—' : v >= 100 ? String(Math.round(v)) : v >= 10 ? v.toFixed(1) : v.toFixed(2));

let seq = 0;
async function workloads(
  servers: Server[],
  redirect: boolean,
  data: { big: { path: string; size: number; digest: string }; small: Buffer[]; chunks: Buffer[]; chunkDigest: string },
): Promise<void> {
  const tag = redirect ? ', redirect' : '';
  const add = (r: Row, s: Server, p: Phase): void => void (s.name === 'ours' ? r.ours : r.theirs).push(p);
  if (!redirect) {
    for (const s of want('mono') ? servers : []) {
      const r = row('mono', `v2 upload monolithic, ${data.big.size / MiB} MiB`, 'MiB/s', data.big.size, (p) => data.big.size / MiB / p.seconds);
      add(r, s, await measure(s, () => pushFile(s, `bench/mono${++seq}`, data.big)));
    }
    for (const s of want('small') ? servers : []) {
      const total = data.small.length * MiB;
      const r = row('small', 'v2 upload 64 × 1 MiB, 8 parallel', 'MiB/s', total, (p) => total / MiB / p.seconds);
      let next = 0;
      const repo = `bench/small${++seq}`;
      add(
        r,
        s,
        await measure(s, async () => {
          await Promise.all(
            Array.from({ length: 8 }, async () => {
              for (let i = next++; i < data.small.length; i = next++) await pushBuffer(s, repo, data.small[i]!);
            }),
          );
        }),
      );
    }
    for (const s of want('chunked') ? servers : []) {
      const total = data.chunks.reduce((a, c) => a + c.length, 0);
      const r = row(
        'chunked',
        `v2 chunked upload, ${total / MiB} MiB in ${data.chunks[0]!.length / MiB} MiB PATCHes`,
        'MiB/s',
        total,
        (p) => total / MiB / p.seconds,
      );
      const repo = `bench/chunked${++seq}`;
      add(
        r,
        s,
        await measure(s, async () => {
          let l = await startUpload(s, repo);
          let at = 0;
          for (const c of data.chunks) {
            const res = await http(
              s.agent,
              s.port,
              'PATCH',
              l,
              { 'Content-Type': 'application/octet-stream', 'Content-Range': `${at}-${at + c.length - 1}` },
              c,
            );
            if (res.status !== 202) throw new Error(`${s.name}: PATCH ${res.status} ${res.body.toString().slice(0, 200)}`);
            l = loc(res);
            at += c.length;
          }
          const done = await http(s.agent, s.port, 'PUT', withQ(l, `digest=${data.chunkDigest}`), {}, Buffer.alloc(0));
          if (done.status !== 201) throw new Error(`${s.name}: chunked PUT ${done.status} ${done.body.toString().slice(0, 200)}`);
        }),
      );
    }
  }
  for (const streams of [1, 8]) {
    for (const s of want(`dl${streams}`) ? servers : []) {
      const total = data.big.size * streams;
      const r = row(
        `dl${streams}${redirect ? '-redirect' : ''}`,
        `blob download, ${streams} stream${streams > 1 ? 's' : ''}${tag}`,
        'MiB/s',
        total,
        (p) => total / MiB / p.seconds,
      );
      const url = `http://127.0.0.1:${s.port}/v2/bench/download/blobs/${data.big.digest}`;
      add(
        r,
        s,
        await measure(s, async () => {
          const outs = await Promise.all(
            Array.from({ length: streams }, () => curl(['-L', '-o', '/dev/null', '-w', '%{http_code} %{size_download} %{num_redirects}', url])),
          );
          for (const o of outs) {
            const [code, size, redirects] = o.split(' ');
            if (code !== '200' || Number(size) !== data.big.size) throw new Error(`${s.name}: download ${o}`);
            if (Number(redirects) > 0 !== redirect) throw new Error(`${s.name}: ${redirects} redirects, expected ${redirect ? 'one' : 'none'}`);
          }
        }),
      );
    }
  }
  if (!redirect && want('manifest')) {
    const haveWrk = spawnSync('sh', ['-c', 'command -v wrk']).status === 0;
    for (const s of servers) {
      const seconds = 5;
      let reqs = 0;
      const r = row('manifest', `manifest GET by tag, 64 conns${haveWrk ? ' (wrk)' : ''}`, 'req/s', 0, (p) => (p.count ?? 0) / p.seconds);
      const p = await measure(s, async () => {
        const path = '/v2/bench/image/manifests/latest';
        const accept = 'application/vnd.docker.distribution.manifest.v2+json';
        if (haveWrk) {
          const out = await new Promise<string>((resolve, reject) => {
            const w = spawn('wrk', ['-t1', '-c64', `-d${seconds}s`, '-H', `Accept: ${accept}`, `http://127.0.0.1:${s.port}${path}`], {
              stdio: ['ignore', 'pipe', 'pipe'],
            });
            let o = '';
            w.stdout.on('data', (d: Buffer) => (o += d.toString()));
            w.on('exit', (code) => (code === 0 ? resolve(o) : reject(new Error(`wrk: ${o}`))));
          });
          if (/Non-2xx/.test(out)) throw new Error(`${s.name}: manifest GET errors:\n${out}`);
          reqs = Number(/(\d+) requests in/.exec(out)?.[1] ?? NaN);
        } else {
          const end = Date.now() + seconds * 1000;
          await Promise.all(
            Array.from({ length: 64 }, async () => {
              while (Date.now() < end) {
                const res = await http(s.agent, s.port, 'GET', path, { Accept: accept });
                if (res.status !== 200) throw new Error(`${s.name}: manifest GET ${res.status}`);
                reqs++;
              }
            }),
          );
        }
      });
      add(r, s, { ...p, count: reqs });
    }
  }
}

async function pushImage(s: Server): Promise<void> {
  const layer = randomBytes(4096);
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', config: {}, rootfs: { type: 'layers', diff_ids: [sha(layer)] } }));
  await pushBuffer(s, 'bench/image', layer);
  await pushBuffer(s, 'bench/image', config);
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.docker.distribution.manifest.v2+json',
      config: { mediaType: 'application/vnd.docker.container.image.v1+json', size: config.length, digest: sha(config) },
      layers: [{ mediaType: 'application/vnd.docker.image.rootfs.diff.tar.gzip', size: layer.length, digest: sha(layer) }],
    }),
  );
  const r = await http(
    s.agent,
    s.port,
    'PUT',
    '/v2/bench/image/manifests/latest',
    { 'Content-Type': 'application/vnd.docker.distribution.manifest.v2+json' },
    manifest,
  );
  if (r.status !== 201) throw new Error(`${s.name}: manifest PUT ${r.status}`);
}

/** The S3 operation of a request as RGW receives it (path style). */
function s3Operation(method: string, url: URL, headers: Record<string, string | string[] | undefined>): string {
  const q = url.searchParams;
  const onBucket = url.pathname.split('/').filter(Boolean).length <= 1;
  if (q.has('uploadId')) {
    if (method === 'PUT') return headers['x-amz-copy-source'] ? 'UploadPartCopy' : 'UploadPart';
    if (method === 'POST') return 'CompleteMultipartUpload';
    if (method === 'DELETE') return 'AbortMultipartUpload';
    return 'ListParts';
  }
  if (q.has('uploads')) return method === 'POST' ? 'CreateMultipartUpload' : 'ListMultipartUploads';
  if (q.has('delete') && method === 'POST') return 'DeleteObjects';
  if (onBucket) return method === 'GET' ? 'ListObjects' : `${method} bucket`;
  if (method === 'PUT') return headers['x-amz-copy-source'] ? 'CopyObject' : headers['if-none-match'] ? 'PutObject If-None-Match' : 'PutObject';
  return { GET: 'GetObject', HEAD: 'HeadObject', DELETE: 'DeleteObject' }[method] ?? method;
}

/** A proxy in front of RGW that records every request's S3 operation and key. */
async function countingProxy(target: string): Promise<{ url: string; seen: string[]; close: () => Promise<void> }> {
  const t = new URL(target);
  const seen: string[] = [];
  const { createServer: createHttpServer } = await import('node:http');
  const server = createHttpServer((req, res) => {
    const u = new URL(req.url ?? '/', 'http://x');
    const key = decodeURIComponent(u.pathname.split('/').slice(2).join('/'));
    seen.push(`${s3Operation(req.method ?? '', u, req.headers)}\t${key || (u.searchParams.get('prefix') ?? '')}`);
    // Host is kept: the client signed it
    const up = request({ host: t.hostname, port: t.port, method: req.method, path: req.url, headers: req.headers, agent: false }, (ur) => {
      res.writeHead(ur.statusCode ?? 502, ur.headers);
      ur.pipe(res);
    });
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as AddressInfo).port;
  return { url: `http://127.0.0.1:${port}`, seen, close: () => new Promise((r) => server.close(() => r())) };
}

/** --count: the object-store requests of one small-blob push, ours and distribution's. */
async function countRequests(rgw: Rgw, work: string, haveDistribution: boolean): Promise<void> {
  const proxy = await countingProxy(rgw.endpoint);
  const via = { ...rgw, endpoint: proxy.url };
  const servers = [await startOurs(via, 'bench-ours', false, work)];
  if (haveDistribution) servers.push(await startDistribution(via, 'bench-distribution', false, work));
  const summary: Record<string, Record<string, unknown>> = {};
  try {
    for (const s of servers) {
      await pushBuffer(s, 'bench/warm', randomBytes(MiB)); // start-up checks and first-use requests
      await new Promise((r) => setTimeout(r, 300));
      const scenarios: Array<[string, () => Promise<void>]> = [
        ['POST + PUT ?digest= (1 MiB body)', async () => void (await pushBuffer(s, 'bench/count', randomBytes(MiB)))],
        [
          'POST ?digest= (1 MiB body, monolithic)',
          async () => {
            const b = randomBytes(MiB);
            const r = await http(s.agent, s.port, 'POST', `/v2/bench/count/blobs/uploads/?digest=${sha(b)}`, { 'Content-Type': 'application/octet-stream' }, b);
            if (r.status === 202) {
              // not taken as a monolithic upload (distribution 2.8): finish it with a PUT of the body
              const p = await http(s.agent, s.port, 'PUT', withQ(loc(r), `digest=${sha(b)}`), { 'Content-Type': 'application/octet-stream' }, b);
              if (p.status !== 201) throw new Error(`${s.name}: PUT after POST ?digest= ${p.status}`);
              log(`${s.name}: POST ?digest= answered 202 (no monolithic POST): counted with the PUT that finished it`);
            } else if (r.status !== 201) throw new Error(`${s.name}: POST ?digest= ${r.status} ${r.body.toString().slice(0, 200)}`);
          },
        ],
        [
          'POST, 2 PATCHes of 1 MiB, PUT ?digest= (chunked)',
          async () => {
            const parts = [randomBytes(MiB), randomBytes(MiB)];
            let l = await startUpload(s, 'bench/count');
            let at = 0;
            for (const c of parts) {
              const r = await http(
                s.agent,
                s.port,
                'PATCH',
                l,
                { 'Content-Type': 'application/octet-stream', 'Content-Range': `${at}-${at + c.length - 1}` },
                c,
              );
              if (r.status !== 202) throw new Error(`${s.name}: PATCH ${r.status}`);
              l = loc(r);
              at += c.length;
            }
            const p = await http(s.agent, s.port, 'PUT', withQ(l, `digest=${sha(Buffer.concat(parts))}`), {}, Buffer.alloc(0));
            if (p.status !== 201) throw new Error(`${s.name}: chunked PUT ${p.status}`);
          },
        ],
      ];
      for (const [label, fn] of scenarios) {
        const runs: string[][] = [];
        for (let i = 0; i < 3; i++) {
          const from = proxy.seen.length;
          await fn();
          runs.push(proxy.seen.slice(from));
        }
        const byKind: Record<string, number> = {};
        for (const op of runs[runs.length - 1]!) byKind[op.split('\t')[0]!] = (byKind[op.split('\t')[0]!] ?? 0) + 1;
        summary[`${s.name}: ${label}`] = { requests: runs.map((r) => r.length), byKind, sequence: runs[runs.length - 1] };
        console.log(`\n${s.name} — ${label}: ${runs.map((r) => r.length).join(', ')} requests (3 pushes)`);
        for (const [k, n] of Object.entries(byKind)) console.log(`  ${String(n).padStart(3)} ${k}`);
        // keys shortened: a uuid or a digest as its first 8 characters
        const short = (k: string): string => k.replace(/[0-9a-f]{8}(?:-[0-9a-f]{4}){3}-[0-9a-f]{12}|[0-9a-f]{64}/g, (m) => `${m.slice(0, 8)}…`);
        console.log(`  sequence of the last:\n    ${runs[runs.length - 1]!.map((x) => short(x.replace('\t', ' '))).join('\n    ')}`);
      }
    }
    const outDir = opt('out', join(ROOT, 'bench', 'results'));
    mkdirSync(outDir, { recursive: true });
    const date = new Date().toISOString();
    const file = join(outDir, `s3-requests-${date.slice(0, 10)}.json`);
    writeFileSync(file, JSON.stringify({ date, counts: summary }, null, 2) + '\n');
    console.log(`\nwritten: ${file}`);
  } finally {
    for (const s of servers) await stop(s).catch(() => undefined);
    await proxy.close();
  }
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('the S3 bench starts a Ceph cluster: run it as root');
  if (!existsSync('/usr/bin/radosgw')) throw new Error('ceph is not installed (apt-get install radosgw ceph-mon ceph-osd ceph-common)');
  const haveDistribution = existsSync('/usr/bin/docker-registry');
  const work = await mkdtemp(join(tmpdir(), 'lr-bench-s3-'));
  const rgwDir = join(work, 'rgw');
  const servers: Server[] = [];
  let rgw: Rgw | undefined;
  try {
    log('starting Ceph RGW…');
    rgw = startRgw(rgwDir);
    const s3 = new S3Client({
      endpoint: rgw.endpoint,
      region: 'us-east-1',
      forcePathStyle: true,
      credentials: { accessKeyId: rgw.access, secretAccessKey: rgw.secret },
    });
    for (const b of ['bench-ours', 'bench-distribution']) await s3.send(new CreateBucketCommand({ Bucket: b }));
    s3.destroy();
    log('preparing data…');
    const needBig = want('mono') || want('dl1') || want('dl8');
    const big = needBig ? await makeBlobFile(join(work, 'blob'), SIZE) : { path: '', size: SIZE, digest: '' };
    const small = Array.from({ length: 64 }, () => randomBytes(MiB));
    const chunks = Array.from({ length: 16 }, () => randomBytes(8 * MiB));
    const h = createHash('sha256');
    for (const c of chunks) h.update(c);
    const data = { big, small, chunks, chunkDigest: `sha256:${h.digest('hex')}` };
    const bigResult: Record<string, number> = {};

    if (flag('count')) {
      await countRequests(rgw, work, haveDistribution);
      return;
    }
    for (const redirect of flag('no-redirect') || (ONLY && !ONLY.has('dl1') && !ONLY.has('dl8')) ? [false] : [false, true]) {
      servers.push(await startOurs(rgw, 'bench-ours', redirect, work));
      if (haveDistribution) servers.push(await startDistribution(rgw, 'bench-distribution', redirect, work));
      if (!redirect) {
        for (const s of servers) {
          if (want('dl1') || want('dl8')) await pushFile(s, 'bench/download', big);
          if (want('manifest')) await pushImage(s);
        }
      }
      for (let rep = 0; rep < REPS; rep++) {
        log(`${redirect ? 'with' : 'without'} redirect, round ${rep + 1}/${REPS}`);
        await workloads(servers, redirect, data);
      }
      if (!redirect && flag('big')) {
        log('2 GiB blob through ours…');
        const huge = await makeBlobFile(join(work, 'blob2g'), 2048 * MiB);
        const ours = servers[0]!;
        const up = await measure(ours, () => pushFile(ours, 'bench/huge', huge));
        const down = await measure(ours, async () => {
          const o = await curl(['-o', '/dev/null', '-w', '%{http_code} %{size_download}', `http://127.0.0.1:${ours.port}/v2/bench/huge/blobs/${huge.digest}`]);
          if (o !== `200 ${huge.size}`) throw new Error(`2 GiB download: ${o}`);
        });
        Object.assign(bigResult, {
          pushMiBps: Math.round(2048 / up.seconds),
          pullMiBps: Math.round(2048 / down.seconds),
          pushPeakRssMiB: up.rss,
          pullPeakRssMiB: down.rss,
        });
        await rm(huge.path, { force: true });
      }
      for (const s of servers.splice(0)) await stop(s);
    }

    // ---------------------------------------------------------------- report
    const table: string[][] = [['figure', 'ours', 'distribution', 'ratio', 'target', 'met']];
    const summary: Record<string, unknown>[] = [];
    for (const r of rows) {
      const o = median(r.ours.map(r.value));
      const t = median(r.theirs.map(r.value));
      const ratio = o / t;
      const met = Number.isFinite(ratio) ? (ratio >= 1 ? 'yes' : 'no') : '—';
      table.push([`${r.label} (${r.unit})`, fmt(o), fmt(t), Number.isFinite(ratio) ? `${ratio.toFixed(2)}×` : '—', '≥ 1.0×', met]);
      const cpuO = r.bytes ? median(r.ours.map((p) => p.cpu / (r.bytes / 1024 ** 3))) : median(r.ours.map((p) => p.cpu));
      const cpuT = r.bytes ? median(r.theirs.map((p) => p.cpu / (r.bytes / 1024 ** 3))) : median(r.theirs.map((p) => p.cpu));
      const cpuRatio = cpuT / cpuO;
      table.push([
        r.bytes ? '  s CPU/GiB (lower is better)' : '  s CPU over the phase',
        fmt(cpuO),
        fmt(cpuT),
        Number.isFinite(cpuRatio) ? `${cpuRatio.toFixed(2)}×` : '—',
        '',
        '',
      ]);
      if (r.bytes && storePids.length > 0) {
        const stO = median(r.ours.map((p) => (p.storeCpu ?? 0) / (r.bytes / 1024 ** 3)));
        const stT = median(r.theirs.map((p) => (p.storeCpu ?? 0) / (r.bytes / 1024 ** 3)));
        table.push(['  object store s CPU/GiB (RGW + OSD)', fmt(stO), fmt(stT), Number.isFinite(stT / stO) ? `${(stT / stO).toFixed(2)}×` : '—', '', '']);
      }
      const rssO = median(r.ours.map((p) => p.rss));
      const rssT = median(r.theirs.map((p) => p.rss));
      table.push(['  MiB peak RSS (lower is better)', fmt(rssO), fmt(rssT), Number.isFinite(rssT / rssO) ? `${(rssT / rssO).toFixed(2)}×` : '—', '', '']);
      summary.push({
        key: r.key,
        label: r.label,
        unit: r.unit,
        ours: o,
        distribution: t,
        ratio,
        cpuPerGiB: { ours: cpuO, distribution: cpuT },
        peakRssMiB: { ours: rssO, distribution: rssT },
        phases: { ours: r.ours, distribution: r.theirs },
      });
    }
    if (bigResult.pushMiBps) {
      const peak = Math.max(bigResult.pushPeakRssMiB!, bigResult.pullPeakRssMiB!);
      table.push([
        '2 GiB blob through ours: push / pull MiB/s, peak RSS MiB',
        `${bigResult.pushMiBps} / ${bigResult.pullMiBps}, ${peak}`,
        '',
        '',
        '≤ 200 MiB',
        peak <= 200 ? 'yes' : 'no',
      ]);
    }
    const widths = table[0]!.map((_, i) => Math.max(...table.map((r) => (r[i] ?? '').length)));
    const line = (r: string[]): string => `| ${r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join(' | ')} |`;
    const text = [
      line(table[0]!),
      `|${widths.map((w, i) => (i === 0 ? ':' : '') + '-'.repeat(w + 1) + (i === 0 ? '' : ':')).join('|')}|`,
      ...table.slice(1).map(line),
    ].join('\n');
    const date = new Date().toISOString();
    const machine = `${cpus().length} cores (${cpus()[0]?.model ?? '?'}), ${Math.round(totalmem() / 1024 ** 3)} GiB RAM, node ${process.version}, load ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}`;
    const version = haveDistribution
      ? spawnSync('/usr/bin/docker-registry', ['--version'], { encoding: 'utf8' }).stdout.trim().split(' ').pop()
      : '(not installed)';
    console.log(`\nlegacy-registry vs distribution ${version} on one Ceph RGW (S3) — ${date}`);
    console.log(`machine: ${machine}; reps ${REPS} (median)\n`);
    console.log(text);
    const outDir = opt('out', join(ROOT, 'bench', 'results'));
    mkdirSync(outDir, { recursive: true });
    const file = join(outDir, `s3-${date.slice(0, 10)}.json`);
    writeFileSync(file, JSON.stringify({ date, machine, reps: REPS, sizeMiB: SIZE / MiB, figures: summary, big: bigResult, table: text }, null, 2) + '\n');
    console.log(`\nwritten: ${file}`);
  } finally {
    for (const s of servers) await stop(s).catch(() => undefined);
    if (rgw) spawnSync(join(ROOT, 'scripts', 'ceph-rgw.sh'), ['down', rgwDir]);
    await rm(work, { recursive: true, force: true });
  }
}

await main();
