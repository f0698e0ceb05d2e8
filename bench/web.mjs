// Web UI server time at N repositories (default 100,000; issue 14: target p99 ≤ 50 ms): repository
// pages (pushed over v1 and v2 with stored content, and rows of the 100k with none) and search
// pages, anonymous and signed in, one keep-alive connection, requests in sequence, so each
// latency is the server's time plus a loopback round trip. Usage: node bench/web.mjs [N]
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent, request } from 'node:http';
import { loadConfig } from '../dist/src/config/load.js';
import { createLogger } from '../dist/src/log/logger.js';
import { startServer } from '../dist/src/main.js';
import { saveUser } from '../dist/src/db/users.js';
import { makeImage } from '../dist/test/helpers/v1-client.js';
import { pushV2Image, Site, v2Image } from '../dist/test/helpers/accounts.js';

const N = Number(process.argv[2] ?? 100_000);
let seed = 7;
const rnd = () => {
  seed |= 0;
  seed = (seed + 0x6d2b79f5) | 0;
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
};
const pick = (a) => a[Math.floor(rnd() * a.length)];
const WORDS =
  'nginx redis node alpine busybox python golang java ruby php mysql postgres mongo rabbit kafka elastic search web api app db cache proxy server client worker queue build ci cd test dev prod base image tools utils edge mini micro slim full core lib sdk cli agent monitor metrics logs trace auth gateway router store static media video audio stream data'.split(
    ' ',
  );

const dir = mkdtempSync(join(tmpdir(), 'lr-bench-web-'));
const config = loadConfig({ env: {}, flavor: 'test', overrides: { host: '127.0.0.1', port: 0, storage_path: dir, loglevel: 'silent', access_log: false } });
const server = await startServer(config, { logger: createLogger('silent') });
const db = server.db;
const base = server.url;
try {
  await saveUser(db, { username: 'alice', email: 'a@x.org', password: 'alicepw1', active: true }, { cost: 4 });
  const uids = [];
  for (let i = 0; i < 50; i++)
    uids.push((await saveUser(db, { username: `bench_user_${i}`, email: `u${i}@x.org`, password: 'benchpw1', active: true }, { cost: 4 })).id);
  const t0 = performance.now();
  const seen = new Set();
  const names = [];
  let batch = [];
  const now = new Date().toISOString();
  while (names.length < N) {
    const ns = `${pick(WORDS)}${Math.floor(rnd() * 5000)}`;
    const name = [pick(WORDS), rnd() < 0.5 ? pick(WORDS) : ''].filter(Boolean).join('-');
    const key = `${ns}/${name}`;
    if (seen.has(key)) continue;
    seen.add(key);
    const priv = rnd() < 0.1;
    batch.push({
      namespace: ns,
      name,
      description: Array.from({ length: 6 }, () => pick(WORDS)).join(' '),
      private: priv,
      owner_id: priv ? pick(uids) : null,
      push_complete: true,
      star_count: Math.floor(1 / (rnd() + 0.0005)) % 5000,
      created_at: now,
      updated_at: now,
    });
    if (!priv) names.push(key);
    if (batch.length === 500) {
      await db('repositories').insert(batch);
      batch = [];
    }
  }
  if (batch.length) await db('repositories').insert(batch);
  await db.raw('pragma optimize');
  const site = new Site(base, base);
  const chain = [makeImage()];
  for (let i = 0; i < 3; i++) chain.push(makeImage(chain[chain.length - 1].id));
  await site.pushV1('alice/oldapp', ['alice', 'alicepw1'], chain, 'latest');
  const token = await site.bearer(['alice', 'alicepw1'], 'repository:alice/newapp:pull,push');
  for (const tag of ['1.0', '1.1', 'latest']) await pushV2Image(site, 'alice/newapp', tag, token, v2Image(tag, 3));
  const loadMs = performance.now() - t0;

  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const u = new URL(base);
  const get = (path, cookie) =>
    new Promise((resolve, reject) => {
      const s = performance.now();
      const req = request({ host: u.hostname, port: u.port, path, agent, headers: { Accept: 'text/html', ...(cookie ? { Cookie: cookie } : {}) } }, (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => resolve({ ms: performance.now() - s, status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString() }));
      });
      req.on('error', reject);
      req.end();
    });
  // a signed-in session (the login form with its pre-session token)
  const form = await get('/login');
  const pre = String(form.headers['set-cookie']).split(';')[0];
  const session = await new Promise((resolve, reject) => {
    const body = `_csrf=${pre.slice('lr_csrf='.length)}&username=alice&password=alicepw1`;
    const req = request(
      {
        host: u.hostname,
        port: u.port,
        path: '/login',
        method: 'POST',
        agent,
        headers: { Cookie: pre, 'Content-Type': 'application/x-www-form-urlencoded', 'Content-Length': Buffer.byteLength(body) },
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve(String(res.headers['set-cookie']).split(';')[0]));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
  if (!session.startsWith('lr_session=')) throw new Error('no session');

  const measure = async (label, paths) => {
    for (const [p, c] of paths.slice(0, 30)) await get(p, c); // warm-up
    const times = [];
    const cpu0 = process.cpuUsage();
    for (const [p, c] of paths) {
      const r = await get(p, c);
      if (r.status !== 200) throw new Error(`${p}: ${r.status}`);
      times.push(r.ms);
      if (process.env.SLOW && r.ms > 25) console.log('slow', r.ms.toFixed(1), p, c ? 'signed-in' : 'anon');
    }
    const cpu = process.cpuUsage(cpu0);
    const s = [...times].sort((a, b) => a - b);
    const q = (x) => s[Math.min(s.length - 1, Math.floor(x * s.length))];
    // CPU of this process (server and the small client together) per request: steadier than
    // latency on a shared machine
    const cpuMs = (cpu.user + cpu.system) / 1000 / times.length;
    console.log(
      `${label.padEnd(12)} p50 ${q(0.5).toFixed(2)} ms  p99 ${q(0.99).toFixed(2)} ms  max ${s[s.length - 1].toFixed(2)} ms  cpu ${cpuMs.toFixed(2)} ms/request  (${times.length} requests)`,
    );
    return { p50: q(0.5), p99: q(0.99) };
  };
  const who = (i) => (i % 2 === 0 ? undefined : session);
  const repoPaths = Array.from({ length: 600 }, (_, i) => {
    const k = i % 3;
    const p = k === 0 ? '/u/alice/oldapp/' : k === 1 ? '/u/alice/newapp/' : `/u/${pick(names)}/`;
    return [p, who(i)];
  });
  const searchPaths = Array.from({ length: 600 }, (_, i) => {
    const k = i % 5;
    const q =
      k === 0 ? pick(WORDS) : k === 1 ? pick(WORDS).slice(0, 2) : k === 2 ? `${pick(WORDS)} ${pick(WORDS)}` : k === 3 ? pick(names) : pick(WORDS).slice(1, 4);
    return [`/search?q=${encodeURIComponent(q)}&page=${1 + (i % 3)}`, who(i)];
  });
  console.log(`web UI at ${N} repositories (SQLite), loaded in ${(loadMs / 1000).toFixed(1)} s`);
  const repo = await measure('repository', repoPaths);
  const search = await measure('search', searchPaths);
  console.log(`all repository p99 ${repo.p99.toFixed(2)} ms search p99 ${search.p99.toFixed(2)} ms`);
  agent.destroy();
} finally {
  await server.close();
  rmSync(dir, { recursive: true, force: true });
}
