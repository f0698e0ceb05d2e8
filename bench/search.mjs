// Search latency of the index database: N repositories (default 100,000), ~500 varied queries, p50/p99 per
// query kind and overall. Usage: node bench/search.mjs [sqlite|pg] [N]   (pg: TEST_PG_URL or postgres@127.0.0.1/test)
// With SQL=1, each query also runs through the SQL search right after (the reference, PostgreSQL's path
// before issue 18), so both are measured in the same conditions on a shared machine.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { createDb, migrateLatest, closeDb } from '../dist/src/db/knex.js';
import { searchRepositories, searchWithSql } from '../dist/src/db/search.js';

const PG = process.env.TEST_PG_URL || 'postgresql://postgres@127.0.0.1:5432/test';
const engine = process.argv[2] ?? 'sqlite';
const N = Number(process.argv[3] ?? 100_000);
let seed = 42;
const rnd = () => {
  seed |= 0;
  seed = (seed + 0x6d2b79f5) | 0;
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
};
const pick = (a) => a[Math.floor(rnd() * a.length)];
const WORDS =
  'nginx redis node alpine busybox python golang java ruby php mysql postgres mongo rabbit kafka elastic search web api app db cache proxy server client worker queue build ci cd test dev prod base image tools utils edge mini micro slim full core lib sdk cli agent monitor metrics logs trace auth gateway router store static media video audio stream data ml ai model train infer notebook jupyter spark hadoop flink airflow etl sync backup restore deploy helm kube docker compose ubuntu debian centos fedora arch nix wordpress drupal ghost jenkins gitlab gitea nexus registry mirror vpn dns mail smtp ftp ssh shell bash zsh vim emacs node red blue green alpha beta gamma delta'.split(
    ' ',
  );
const DESC = (
  WORDS.join(' ') +
  ' the a of for and with based on lightweight official image container running small fast secure simple minimal production ready service tool for your stack built from source latest stable release unofficial fork patched hardened'
).split(' ');
const namespaces = Array.from({ length: 5000 }, (_, i) => `${pick(WORDS)}${pick(['', '_', ''])}${i}`);

let db, cleanup;
if (engine === 'pg') {
  const schema = process.env.KEEP_PG ?? `lr_bench_${randomBytes(4).toString('hex')}`;
  const admin = createDb(PG, tmpdir());
  await admin.raw('create schema ??', [schema]);
  await admin.destroy();
  db = createDb(PG, tmpdir(), { searchPath: [schema] });
  cleanup = async () => {
    await closeDb(db);
    if (process.env.KEEP_PG) return;
    const a = createDb(PG, tmpdir());
    await a.raw('drop schema ?? cascade', [schema]);
    await a.destroy();
  };
} else {
  const keep = process.env.KEEP;
  const dir = keep ?? mkdtempSync(join(tmpdir(), 'lr-bench-'));
  db = createDb(null, dir);
  cleanup = async () => {
    await closeDb(db);
    if (!keep) rmSync(dir, { recursive: true, force: true });
  };
}
await migrateLatest(db);
// a few users and an org for visibility
const now = engine === 'pg' ? new Date() : new Date().toISOString();
const uids = [];
for (let i = 0; i < 50; i++) {
  const [r] = await db('users')
    .insert({ username: `bench_user_${i}`, email: `u${i}@x.org`, password_hash: 'x', active: true, admin: i === 0, created_at: now })
    .returning('id');
  uids.push(typeof r === 'object' ? r.id : r);
}
const t0 = performance.now();
const seen = new Set();
let batch = [];
let inserted = 0;
while (inserted < N) {
  const ns = pick(namespaces);
  const name = [pick(WORDS), rnd() < 0.5 ? pick(WORDS) : '', rnd() < 0.3 ? String(Math.floor(rnd() * 100)) : '']
    .filter(Boolean)
    .join(pick(['-', '_', '.', '-']));
  const key = `${ns}/${name}`;
  if (seen.has(key)) continue;
  seen.add(key);
  const desc = Array.from({ length: 4 + Math.floor(rnd() * 14) }, () => pick(DESC)).join(' ');
  const priv = rnd() < 0.1;
  batch.push({
    namespace: ns,
    name,
    description: desc,
    private: priv,
    owner_id: priv ? pick(uids) : null,
    push_complete: true,
    star_count: Math.floor(1 / (rnd() + 0.0005)) % 5000,
    created_at: now,
    updated_at: now,
  });
  inserted++;
  if (batch.length === 500) {
    await db('repositories').insert(batch);
    batch = [];
  }
}
if (batch.length) await db('repositories').insert(batch);
const loadMs = performance.now() - t0;
if (engine === 'pg') await db.raw('analyze');
else await db.raw('pragma optimize');
// collaborators for some private repos
const some = await db('repositories').where({ private: true }).limit(200).select('id');
for (const r of some)
  await db('collaborators')
    .insert({ repo_id: r.id, user_id: pick(uids), access: 'read' })
    .onConflict(['repo_id', 'user_id'])
    .ignore();

const sample = [...seen].slice(0, 20000);
const queries = [];
for (let i = 0; i < 500; i++) {
  const k = i % 10;
  let q;
  if (k === 0)
    q = pick(WORDS); // common word
  else if (k === 1)
    q = pick(WORDS).slice(0, 2); // 2-char prefix
  else if (k === 2)
    q = pick(WORDS).slice(0, 4); // 4-char prefix
  else if (k === 3)
    q = `${pick(WORDS)} ${pick(WORDS)}`; // two words
  else if (k === 4)
    q = pick(sample); // exact full name
  else if (k === 5)
    q = pick(sample).split('/')[1]; // exact name
  else if (k === 6) {
    const w = pick(WORDS);
    q = w.length > 4 ? w.slice(1, 4) : w + 'x';
  } // substring
  else if (k === 7)
    q = pick(['qzxv', 'zzzzzz', 'nomatchhere', 'xyzzy', '42']); // rare / no match
  else if (k === 8)
    q = pick(["'--", '"', '*', '%', "' OR 1=1 --", 'NOT x', 'busy*', 'a"b', '日本語', '']); // hostile/empty
  else q = `${pick(DESC)} ${pick(DESC)} ${pick(DESC)}`; // description words
  const who = i % 3 === 0 ? {} : i % 3 === 1 ? { userId: pick(uids) } : { userId: uids[0], admin: true };
  queries.push({ q, who, page: 1 + (i % 4 === 3 ? 2 : 0), kind: k });
}
// the memory index loads on the first search: its time and what it adds to the process (run with
// --expose-gc for a steadier figure)
globalThis.gc?.();
const rss0 = process.memoryUsage();
const tl = performance.now();
await searchRepositories(db, { query: 'warm' });
const firstMs = performance.now() - tl;
// warm-up
for (const x of queries.slice(0, 30)) await searchRepositories(db, { query: x.q, visibleTo: x.who, page: x.page });
const times = [];
const byKind = new Map();
const sqlTimes = [];
const byCaller = { anonymous: [], user: [], admin: [] };
for (const x of queries) {
  const opts = { query: x.q, visibleTo: x.who, page: x.page, pageSize: 25 };
  const s = performance.now();
  const r = await searchRepositories(db, opts);
  const ms = performance.now() - s;
  times.push(ms);
  byCaller[x.who.admin ? 'admin' : x.who.userId !== undefined ? 'user' : 'anonymous'].push(ms);
  if (process.env.SQL === '1') {
    const s2 = performance.now();
    const r2 = await searchWithSql(db, opts);
    sqlTimes.push(performance.now() - s2);
    if (JSON.stringify(r2) !== JSON.stringify(r)) throw new Error(`memory and SQL differ for ${JSON.stringify(opts)}`);
  }
  if (!byKind.has(x.kind)) byKind.set(x.kind, []);
  byKind.get(x.kind).push([ms, r.total, x.q]);
}
const pct = (a, p) => {
  const s = [...a].sort((x, y) => x - y);
  return s[Math.min(s.length - 1, Math.floor(p * s.length))];
};
globalThis.gc?.();
const rss1 = process.memoryUsage();
const mib = (x) => (x / 1048576).toFixed(0);
console.log(`${engine}: ${N} repos loaded in ${(loadMs / 1000).toFixed(1)} s; ${times.length} queries`);
console.log(
  `  first search (loads the memory index) ${firstMs.toFixed(0)} ms; RSS ${mib(rss0.rss)} → ${mib(rss1.rss)} MiB (+${mib(rss1.rss - rss0.rss)}), heap ${mib(rss0.heapUsed)} → ${mib(rss1.heapUsed)} MiB, array buffers ${mib(rss0.arrayBuffers)} → ${mib(rss1.arrayBuffers)} MiB`,
);
console.log(`  all     p50 ${pct(times, 0.5).toFixed(2)} ms  p99 ${pct(times, 0.99).toFixed(2)} ms  max ${Math.max(...times).toFixed(2)} ms`);
if (sqlTimes.length > 0)
  console.log(
    `  SQL     p50 ${pct(sqlTimes, 0.5).toFixed(2)} ms  p99 ${pct(sqlTimes, 0.99).toFixed(2)} ms  max ${Math.max(...sqlTimes).toFixed(2)} ms  (the same queries in SQL, interleaved; results identical)`,
  );
console.log(
  `  by caller: ${Object.entries(byCaller)
    .map(([k, v]) => `${k} p50 ${pct(v, 0.5).toFixed(2)} / p99 ${pct(v, 0.99).toFixed(2)} ms`)
    .join(', ')}`,
);
const names = [
  'common word',
  '2-char prefix',
  '4-char prefix',
  'two words',
  'exact ns/name',
  'exact name',
  'substring',
  'rare/none',
  'hostile/empty',
  '3 desc words',
];
for (const [k, v] of [...byKind].sort((a, b) => a[0] - b[0])) {
  const t = v.map((x) => x[0]);
  const worst = v.sort((a, b) => b[0] - a[0])[0];
  console.log(
    `  ${names[k].padEnd(14)} p50 ${pct(t, 0.5).toFixed(2).padStart(7)} ms  p99 ${pct(t, 0.99).toFixed(2).padStart(7)} ms  (worst ${JSON.stringify(worst[2])} total=${worst[1]})`,
  );
}
await cleanup();
