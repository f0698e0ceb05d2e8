/**
 * Delivery latency of webhooks and notifications (issue 15): an index + registry in this process
 * (SQLite index, filesystem storage), one repository with one webhook, one notifications endpoint,
 * both receivers on loopback answering at once. Pushes N tags of a small v2 image one after the
 * other (manifest PUT by tag; the blobs are pushed once) and measures, per tag, the time from the
 * PUT's 201 to the receiver having the webhook payload and the manifest push event. A second run
 * with receivers that take 2 s to answer (at most 50 tags) shows what a slow receiver costs a push
 * (nothing: the PUT only queues) and how deliveries catch up.
 *
 *   node dist/bench/events-latency.js [--tags N]
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { loadConfig } from '../src/config/load.js';
import { createLogger } from '../src/log/logger.js';
import { startServer } from '../src/main.js';
import { saveUser } from '../src/db/users.js';
import { createHook } from '../src/webhooks/store.js';
import { findRepository } from '../src/db/repositories.js';
import { pushV2Image, S2, Site, v2Image } from '../test/helpers/accounts.js';

const arg = (name: string, dflt: string): string => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1]! : dflt;
};
const TAGS = Number(arg('tags', '200'));
void TAGS;

function receiver(delayMs: number, seen: (body: string) => void): Promise<{ server: Server; url: string }> {
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      seen(Buffer.concat(chunks).toString('utf8'));
      setTimeout(() => res.end('ok'), delayMs);
    });
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({ server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` })));
}

const pct = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
};
const fmt = (xs: number[]): string => `p50 ${pct(xs, 50).toFixed(1)} ms, p99 ${pct(xs, 99).toFixed(1)} ms, max ${Math.max(...xs).toFixed(1)} ms`;

async function run(delayMs: number, TAGS: number): Promise<void> {
  const hookAt = new Map<string, number>();
  const eventAt = new Map<string, number>();
  const hooks = await receiver(delayMs, (b) => hookAt.set((JSON.parse(b) as { push_data: { tag: string } }).push_data.tag, performance.now()));
  const events = await receiver(delayMs, (b) => {
    for (const e of (JSON.parse(b) as { events: { action: string; target: { tag?: string } }[] }).events)
      if (e.action === 'push' && e.target.tag) eventAt.set(e.target.tag, performance.now());
  });
  const dir = await mkdtemp(join(tmpdir(), 'lr-bench-events-'));
  const config = loadConfig({
    env: {},
    flavor: 'test',
    overrides: {
      host: '127.0.0.1',
      port: 0,
      storage_path: dir,
      loglevel: 'silent',
      bcrypt_cost: 4,
      webhook_timeout: 30,
      webhook_allowed_networks: ['127.0.0.1'],
      notifications: { endpoints: [{ name: 'bench', url: `${events.url}/events`, timeout: 30 }] },
    },
  });
  const s = await startServer(config, { logger: createLogger('silent') });
  try {
    await saveUser(s.db!, { username: 'bench', email: 'bench@example.com', password: 'benchpw1', active: true }, { cost: 4 });
    const site = new Site(s.url, s.url);
    const token = await site.bearer(['bench', 'benchpw1'], 'repository:bench/app:pull,push');
    const img = v2Image('bench', 1);
    await pushV2Image(site, 'bench/app', 'first', token, img);
    const repo = await findRepository(s.db!, 'bench', 'app');
    await createHook(s.db!, repo!.id, { name: 'bench', url: `${hooks.url}/hook` });
    const done = new Map<string, number>();
    const putMs: number[] = [];
    for (let i = 0; i < TAGS; i++) {
      const tag = `t${i}`;
      const t0 = performance.now();
      const r = await site.v2(`/v2/bench/app/manifests/${tag}`, token, { method: 'PUT', body: img.manifest, headers: { 'Content-Type': S2 } });
      if (r.status !== 201) throw new Error(`PUT ${tag}: ${r.status} ${r.text}`);
      const t1 = performance.now();
      putMs.push(t1 - t0);
      done.set(tag, t1);
    }
    const deadline = Date.now() + 120_000 + TAGS * delayMs * 2;
    while ((hookAt.size < TAGS || [...done.keys()].some((t) => !eventAt.has(t))) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    const lag = (m: Map<string, number>) => [...done].filter(([t]) => m.has(t)).map(([t, at]) => m.get(t)! - at);
    console.log(`receivers answering after ${delayMs} ms, ${TAGS} tags pushed one after the other:`);
    console.log(`  manifest PUT (queues both):     ${fmt(putMs)}`);
    console.log(`  webhook received after the 201: ${fmt(lag(hookAt))} (${hookAt.size}/${TAGS})`);
    console.log(`  push event received after 201:  ${fmt(lag(eventAt))} (${[...done.keys()].filter((t) => eventAt.has(t)).length}/${TAGS})`);
  } finally {
    await s.close();
    hooks.server.close();
    events.server.close();
    await rm(dir, { recursive: true, force: true });
  }
}

await run(0, TAGS);
await run(2000, Math.min(TAGS, 50));
