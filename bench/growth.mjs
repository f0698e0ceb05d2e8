// Cost growth (issue 18): how /v1/search, /v2/_catalog (first page, n=100) and a manifest GET by tag
// grow from 1,000 to 100,000 repositories (target: flat within 2×). One server per size (index and
// registry in one process, SQLite, token auth as the test flavor), the repositories written to the
// index database directly (as bench/search.mjs does) plus one image pushed for real; requests in
// sequence on one keep-alive connection after a warm-up, so each latency is the server's time plus a
// loopback round trip. Usage: node bench/growth.mjs [SMALL] [LARGE] [REQUESTS]
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent, request } from 'node:http';
import { loadConfig } from '../dist/src/config/load.js';
import { createLogger } from '../dist/src/log/logger.js';
import { startServer } from '../dist/src/main.js';
import { saveUser } from '../dist/src/db/users.js';
import { pushV2Image, S2, Site, v2Image } from '../dist/test/helpers/accounts.js';

const SIZES = [Number(process.argv[2] ?? 1_000), Number(process.argv[3] ?? 100_000)];
const REQUESTS = Number(process.argv[4] ?? 400);
const WORDS =
  'nginx redis node alpine busybox python golang java ruby php mysql postgres mongo rabbit kafka elastic search web api app db cache proxy server client worker queue build ci cd test dev prod base image tools utils edge mini micro slim full core lib sdk cli agent monitor metrics logs trace auth gateway router store static media video audio stream data'.split(
    ' ',
  );

async function measureAt(n) {
  let seed = 11;
  const rnd = () => {
    seed |= 0;
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const pick = (a) => a[Math.floor(rnd() * a.length)];
  const dir = mkdtempSync(join(tmpdir(), 'lr-bench-growth-'));
  const config = loadConfig({ env: {}, flavor: 'test', overrides: { host: '127.0.0.1', port: 0, storage_path: dir, loglevel: 'silent', access_log: false } });
  const server = await startServer(config, { logger: createLogger('silent') });
  const db = server.db;
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  try {
    const t0 = performance.now();
    await saveUser(db, { username: 'alice', email: 'a@x.org', password: 'alicepw1', active: true }, { cost: 4 });
    const uids = [];
    for (let i = 0; i < 20; i++)
      uids.push((await saveUser(db, { username: `bench_user_${i}`, email: `u${i}@x.org`, password: 'benchpw1', active: true }, { cost: 4 })).id);
    const seen = new Set();
    let batch = [];
    const now = new Date().toISOString();
    while (seen.size < n) {
      const ns = `${pick(WORDS)}${Math.floor(rnd() * (n / 20))}`;
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
      if (batch.length === 500) {
        await db('repositories').insert(batch);
        batch = [];
      }
    }
    if (batch.length) await db('repositories').insert(batch);
    await db.raw('pragma optimize');
    const site = new Site(server.url, server.url);
    const push = await site.bearer(['alice', 'alicepw1'], 'repository:alice/app:pull,push');
    await pushV2Image(site, 'alice/app', 'latest', push, v2Image('growth', 3));
    const pull = await site.bearer(['alice', 'alicepw1'], 'repository:alice/app:pull');
    const catalog = await site.bearer(['alice', 'alicepw1'], 'registry:catalog:*');
    const fillSec = (performance.now() - t0) / 1000;

    const u = new URL(server.url);
    const get = (path, headers) =>
      new Promise((resolve, reject) => {
        const s = performance.now();
        const req = request({ host: u.hostname, port: u.port, path, agent, headers }, (res) => {
          const parts = [];
          res.on('data', (c) => parts.push(c));
          res.on('end', () => resolve({ ms: performance.now() - s, status: res.statusCode, body: Buffer.concat(parts) }));
        });
        req.on('error', reject);
        req.end();
      });
    const quantiles = (xs) => {
      const s = [...xs].sort((a, b) => a - b);
      const q = (x) => s[Math.min(s.length - 1, Math.floor(x * s.length))];
      return { p50: q(0.5), p99: q(0.99) };
    };
    // per query class (search): latencies and how many repositories matched (num_results)
    const classes = new Map();
    const measure = async (label, reqs) => {
      for (const [p, h] of reqs.slice(0, 30)) await get(p, h); // warm-up (the search's memory index loads here)
      const times = [];
      for (const [p, h, cls] of reqs) {
        const r = await get(p, h);
        if (r.status !== 200) throw new Error(`${label} ${p}: ${r.status}`);
        times.push(r.ms);
        if (cls) {
          const c = classes.get(cls) ?? { ms: [], matches: [] };
          c.ms.push(r.ms);
          c.matches.push(JSON.parse(r.body.toString()).num_results);
          classes.set(cls, c);
        }
      }
      return quantiles(times);
    };
    const names = [...seen];
    const CLASS = ['one word', 'two letters', 'two words', 'full name', 'three-letter infix'];
    const searchReqs = Array.from({ length: REQUESTS }, (_, i) => {
      const k = i % 5;
      const q =
        k === 0 ? pick(WORDS) : k === 1 ? pick(WORDS).slice(0, 2) : k === 2 ? `${pick(WORDS)} ${pick(WORDS)}` : k === 3 ? pick(names) : pick(WORDS).slice(1, 4);
      return [`/v1/search?q=${encodeURIComponent(q)}&n=25`, {}, CLASS[k]];
    });
    const auth = (t) => ({ Authorization: `Bearer ${t}` });
    const catalogReqs = Array.from({ length: REQUESTS }, () => ['/v2/_catalog?n=100', auth(catalog)]);
    const manifestReqs = Array.from({ length: REQUESTS }, () => ['/v2/alice/app/manifests/latest', { ...auth(pull), Accept: S2 }]);
    const r = {
      n,
      fillSec,
      search: await measure('search', searchReqs),
      catalog: await measure('catalog', catalogReqs),
      manifest: await measure('manifest', manifestReqs),
    };
    const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
    r.searchClasses = Object.fromEntries([...classes].map(([k, c]) => [k, { ...quantiles(c.ms), matches: median(c.matches) }]));
    return r;
  } finally {
    agent.destroy();
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

const results = [];
for (const n of SIZES) results.push(await measureAt(n));
const [a, b] = results;
const f = (x) => x.toFixed(2);
for (const r of results) console.log(`at ${r.n} repositories (filled in ${r.fillSec.toFixed(1)} s)`);
for (const k of ['search', 'catalog', 'manifest']) {
  console.log(
    `${k.padEnd(9)} p50 ${f(a[k].p50)} → ${f(b[k].p50)} ms  p99 ${f(a[k].p99)} → ${f(b[k].p99)} ms  ratio p50 ${f(b[k].p50 / a[k].p50)}× p99 ${f(b[k].p99 / a[k].p99)}×`,
  );
}
// Search answers with an exact count of the visible matches (num_results), so its cost follows
// the number of repositories a query matches, not the number there are: per class, how latency
// and matches grow, and the time per thousand matches above the smallest class's latency.
const floor = Math.min(a.manifest.p50, b.manifest.p50);
for (const k of Object.keys(a.searchClasses)) {
  const x = a.searchClasses[k];
  const y = b.searchClasses[k];
  const per = (c) => (c.matches > 0 ? `${(((c.p50 - floor) / c.matches) * 1000).toFixed(1)} µs` : '–');
  console.log(
    `search, ${k.padEnd(18)} p50 ${f(x.p50)} → ${f(y.p50)} ms (${f(y.p50 / x.p50)}×), matches ${x.matches} → ${y.matches}, above a manifest GET per match ${per(x)} → ${per(y)}`,
  );
}
console.log(`JSON ${JSON.stringify(results)}`);
