/**
 * v1 layer push and pull of a large gzipped layer, exactly as the Docker 1.x client does it
 * (PUT json, PUT layer chunked, PUT checksum with tarsum + payload; GET layer), against the real
 * server in its own process, with the server's peak RSS read from /proc.
 *
 *   node dist/bench/v1-layer.js [--size-mib 512] [--owner root] [--keep] [--layer PATH]
 *
 * --owner writes that uname/gname into the tar header (as GNU tar and most tools do; Docker 1.x's
 * own export leaves them empty): the case where the two tarsum forms of spec §6.2 differ.
 */
import { spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream, existsSync, readFileSync, readdirSync } from 'node:fs';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Readable, Writable } from 'node:stream';
import { createGunzip, createGzip } from 'node:zlib';

const ROOT = join(new URL('.', import.meta.url).pathname, '..', '..');

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1]! : dflt;
}

/**
 * Write out what earlier phases left dirty in the page cache before a timed phase starts:
 * distribution does not fsync, so its 512 MiB would otherwise be written back by the kernel during
 * whichever phase comes next (ours, the floor's, the v1 push). Ours fsyncs inside its own timing.
 */
export function flushDirty(): void {
  spawnSync('sync', { stdio: 'ignore' });
}

/** A tar with one file of `size` semi-random bytes (compresses ~2:1, like real binaries), gzipped. */
export async function makeLayer(path: string, size: number, owner?: string): Promise<void> {
  const header = Buffer.alloc(512);
  header.write('bigfile', 0);
  header.write('0000644\0', 100);
  header.write('0000000\0', 108);
  header.write('0000000\0', 116);
  header.write(size.toString(8).padStart(11, '0') + '\0', 124);
  header.write('14440100400\0', 136);
  header.write('        ', 148);
  header.write('0', 156);
  header.write('ustar\0', 257);
  header.write('00', 263);
  if (owner) {
    header.write(owner, 265); // uname
    header.write(owner, 297); // gname
  }
  let sum = 0;
  for (const b of header) sum += b;
  header.write(sum.toString(8).padStart(6, '0') + '\0 ', 148);
  const block = 1 << 20;
  const rnd = randomBytes(block / 2);
  let left = size;
  let sent = false;
  const src = new Readable({
    read() {
      if (!sent) {
        sent = true;
        this.push(header);
        return;
      }
      if (left <= 0) {
        this.push(Buffer.alloc(((512 - (size % 512)) % 512) + 1024));
        this.push(null);
        return;
      }
      const n = Math.min(block, left);
      const b = Buffer.alloc(n);
      // half random, half a repeated pattern: gzip gets roughly 2:1
      rnd.copy(b, 0, (left * 7) % (block / 4), Math.min(n, block / 2));
      for (let i = block / 2; i < n; i += 64) b.write('legacy-registry benchmark data, compressible part..............', i);
      left -= n;
      this.push(b);
    },
  });
  await pipeline(src, createGzip({ level: 1 }), createWriteStream(path));
}

/** The machine's limit for this layer: gunzip alone (zlib on one pool thread), MiB/s of gzip read. */
async function gunzipLimit(path: string, size: number): Promise<number> {
  const t0 = process.hrtime.bigint();
  await pipeline(createReadStream(path, { highWaterMark: 1 << 20 }), createGunzip({ chunkSize: 512 << 10 }), new Writable({ write: (_c, _e, cb) => cb() }));
  return Math.round(size / (1024 * 1024) / (Number(process.hrtime.bigint() - t0) / 1e9));
}

async function hashFile(path: string, prefix?: Buffer): Promise<string> {
  const h = createHash('sha256');
  if (prefix) h.update(prefix);
  for await (const c of createReadStream(path, { highWaterMark: 1 << 20 })) h.update(c as Buffer);
  return h.digest('hex');
}

interface Sampler {
  stop(): { peakRssMiB: number };
}
function sampleRss(pid: number): Sampler {
  let peak = 0;
  const read = (): void => {
    try {
      const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
      if (m) peak = Math.max(peak, Number(m[1]) / 1024);
    } catch {
      /* process gone */
    }
  };
  const t = setInterval(read, 20);
  return {
    stop() {
      clearInterval(t);
      read();
      return { peakRssMiB: Math.round(peak) };
    },
  };
}

/** utime + stime of every thread of pid, by thread id, with its name (main "node", libuv's pool, V8's helpers). */
function threadCpu(pid: number): Map<string, { comm: string; sec: number }> {
  const out = new Map<string, { comm: string; sec: number }>();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const raw = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const comm = raw.slice(raw.indexOf('(') + 1, raw.lastIndexOf(')'));
      const f = raw.slice(raw.lastIndexOf(') ') + 2).split(' ');
      out.set(tid, { comm, sec: (Number(f[11]) + Number(f[12])) / 100 });
    } catch {
      /* thread gone */
    }
  }
  return out;
}

/** CPU seconds per thread between two snapshots, summed by thread name ("node" split: main / others). */
function threadDelta(pid: number, a: Map<string, { comm: string; sec: number }>, b: Map<string, { comm: string; sec: number }>): Record<string, number> {
  const by: Record<string, number> = {};
  for (const [tid, t] of b) {
    const d = t.sec - (a.get(tid)?.sec ?? 0);
    if (d <= 0) continue;
    const name = tid === String(pid) ? 'main' : t.comm;
    by[name] = Math.round(((by[name] ?? 0) + d) * 100) / 100;
  }
  return by;
}

function cpuSeconds(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(f[11]) + Number(f[12])) / 100; // utime + stime, in clock ticks (100 Hz)
}

function send(
  port: number,
  method: string,
  path: string,
  headers: Record<string, string>,
  body?: Readable | Buffer,
): Promise<{ status: number; body: string; bytes: number }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, method, path, headers, agent: false }, (res) => {
      let bytes = 0;
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => {
        bytes += c.length;
        if (chunks.length < 4) chunks.push(c);
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString().slice(0, 200), bytes }));
      res.on('error', reject);
    });
    req.on('error', reject);
    if (body === undefined) req.end();
    else if (Buffer.isBuffer(body)) req.end(body);
    else body.pipe(req);
  });
}

/** PUT of a file with curl, chunked (Transfer-Encoding: chunked, as the Docker 1.x client sends a layer). */
function curlPut(port: number, path: string, file: string): Promise<{ status: number; body: string; bytes: number }> {
  return new Promise((resolve, reject) => {
    const args = ['-sS', '--noproxy', '*', '-X', 'PUT', '-H', 'Content-Type: application/octet-stream', '-H', 'Transfer-Encoding: chunked', '-H', 'Expect:'];
    args.push('-T', file, '-w', '\n%{http_code}', `http://127.0.0.1:${port}${path}`);
    const p = spawn('curl', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    p.on('error', reject);
    p.on('exit', (code) => {
      if (code !== 0) return reject(new Error(`curl PUT ${path}: ${err}`));
      const i = out.lastIndexOf('\n');
      resolve({ status: Number(out.slice(i + 1)), body: out.slice(0, i).slice(0, 200), bytes: 0 });
    });
  });
}

export interface V1LayerResult {
  layerMiB: number;
  /** gunzip of the same layer alone, one core: the limit the push is measured against (MiB/s of gzip). */
  gunzipMiBps: number;
  pushMiBps: number;
  pullMiBps: number;
  pushPeakRssMiB: number;
  pullPeakRssMiB: number;
  pushCpuSecPerGiB: number;
  pullCpuSecPerGiB: number;
  /** CPU seconds of the push by thread (main event loop, digest worker, libuv pool, V8 helpers). */
  pushThreadCpuSec: Record<string, number>;
}

/** given: a layer made by makeLayer earlier (compare.ts reuses one across its repetitions). */
export async function benchV1Layer(sizeMiB: number, log: (s: string) => void = console.log, owner?: string, given?: string): Promise<V1LayerResult> {
  const work = await mkdtemp(join(tmpdir(), 'lr-bench-'));
  try {
    const layerPath = given ?? join(work, 'layer.tar.gz');
    if (!given) {
      log(`generating a ${sizeMiB} MiB tar${owner ? ` owned by ${owner}` : ''}, gzipped…`);
      await makeLayer(layerPath, sizeMiB * 1024 * 1024, owner);
    }
    const size = (await stat(layerPath)).size;
    const gunzipMiBps = await gunzipLimit(layerPath, size);
    log(`gunzip of this layer alone: ${gunzipMiBps} MiB/s of gzip (one core)`);
    const id = createHash('sha256').update(randomBytes(16)).digest('hex');
    const json = Buffer.from(JSON.stringify({ id, created: '2015-01-01T00:00:00Z', os: 'linux', architecture: 'amd64' }));
    const payload = `sha256:${await hashFile(layerPath, Buffer.concat([json, Buffer.from('\n')]))}`;

    const cli = join(ROOT, 'bin', 'legacy-registry.cjs'); // sets UV_THREADPOOL_SIZE as users get it
    if (!existsSync(cli)) throw new Error('build first: npm run build');
    // BENCH_NODE_ARGS: flags for the server's node (--cpu-prof --cpu-prof-dir=…, --trace-gc)
    const nodeArgs = (process.env.BENCH_NODE_ARGS ?? '').split(' ').filter((a) => a !== '');
    const proc = spawn(process.execPath, [...nodeArgs, cli, 'serve', '--host', '127.0.0.1', '--port', '0'], {
      env: {
        PATH: process.env.PATH ?? '',
        STORAGE_PATH: join(work, 'data'),
        LOGLEVEL: 'info',
        STANDALONE: 'true',
        // LR_SHA256X2=0: the server hashes with node:crypto alone (an A/B of paired hashing)
        ...(process.env.LR_SHA256X2 ? { LR_SHA256X2: process.env.LR_SHA256X2 } : {}),
        ...(process.env.LR_NATIVE_GUNZIP ? { LR_NATIVE_GUNZIP: process.env.LR_NATIVE_GUNZIP } : {}),
        ...(process.env.LR_MALLOC_RETAIN ? { LR_MALLOC_RETAIN: process.env.LR_MALLOC_RETAIN } : {}),
        ...(process.env.LR_DIRECT_IO ? { LR_DIRECT_IO: process.env.LR_DIRECT_IO } : {}),
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    proc.stderr.on('data', (d: Buffer) => (out += d.toString()));
    // the listening line is at info level: ask for it with a tiny probe loop on the log instead
    const port = await new Promise<number>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no start: ${out}`)), 20000);
      const iv = setInterval(() => {
        const m = /address=127\.0\.0\.1:(\d+)/.exec(out);
        if (m) {
          clearInterval(iv);
          clearTimeout(t);
          resolve(Number(m[1]));
        }
      }, 20);
    });
    const pid = proc.pid!;
    try {
      let r = await send(port, 'PUT', `/v1/images/${id}/json`, { 'Content-Type': 'application/json', 'Content-Length': String(json.length) }, json);
      if (r.status !== 200) throw new Error(`PUT json ${r.status} ${r.body}`);
      flushDirty();
      const cpu0 = cpuSeconds(pid);
      const threads0 = threadCpu(pid);
      let s = sampleRss(pid);
      let t0 = process.hrtime.bigint();
      // curl sends the layer (chunked, as the Docker 1.x client does): the same lean load generator
      // compare.ts measures distribution's monolithic upload with, so the two figures compare
      r = await curlPut(port, `/v1/images/${id}/layer`, layerPath);
      if (r.status !== 200) throw new Error(`PUT layer ${r.status} ${r.body}`);
      r = await send(port, 'PUT', `/v1/images/${id}/checksum`, { 'X-Docker-Checksum-Payload': payload, 'Content-Length': '0' });
      if (r.status !== 200) throw new Error(`PUT checksum ${r.status} ${r.body}`);
      const pushSec = Number(process.hrtime.bigint() - t0) / 1e9;
      const push = s.stop();
      const cpu1 = cpuSeconds(pid);
      const pushThreads = threadDelta(pid, threads0, threadCpu(pid));
      s = sampleRss(pid);
      t0 = process.hrtime.bigint();
      r = await send(port, 'GET', `/v1/images/${id}/layer`, {});
      const pullSec = Number(process.hrtime.bigint() - t0) / 1e9;
      const pull = s.stop();
      const cpu2 = cpuSeconds(pid);
      if (r.status !== 200 || r.bytes !== size) throw new Error(`GET layer ${r.status} ${r.bytes}/${size}`);
      const mib = size / (1024 * 1024);
      const gib = size / 1024 ** 3;
      return {
        layerMiB: Math.round(mib),
        gunzipMiBps,
        pushMiBps: Math.round(mib / pushSec),
        pullMiBps: Math.round(mib / pullSec),
        pushPeakRssMiB: push.peakRssMiB,
        pullPeakRssMiB: pull.peakRssMiB,
        pushCpuSecPerGiB: Math.round(((cpu1 - cpu0) / gib) * 100) / 100,
        pullCpuSecPerGiB: Math.round(((cpu2 - cpu1) / gib) * 100) / 100,
        pushThreadCpuSec: pushThreads,
      };
    } finally {
      proc.kill('SIGTERM');
      await new Promise((r) => proc.once('exit', r));
    }
  } finally {
    if (!process.argv.includes('--keep')) await rm(work, { recursive: true, force: true });
  }
}

if (process.argv[1] && import.meta.url.endsWith(process.argv[1].split('/').pop()!)) {
  const sizeMiB = Number(arg('size-mib', '512'));
  const owner = process.argv.includes('--owner') ? arg('owner', 'root') : undefined;
  // --layer PATH: push that gzipped tar (kept) instead of generating one
  const given = process.argv.includes('--layer') ? arg('layer', '') : undefined;
  const res = await benchV1Layer(sizeMiB, console.log, owner, given);
  console.log(JSON.stringify(res, null, 2));
}
