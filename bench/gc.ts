/**
 * Garbage collection at scale: writes N images straight into a fresh filesystem storage (half v1
 * chains with tags, half v2 manifests with tags, the layout the server writes), makes a tenth of them
 * garbage (v1 and v2 tags and repositories deleted), then times a dry run, a run, and a run with
 * --delete-untagged, sampling this process's RSS every 10 ms.
 *
 *   node dist/bench/gc.js [--images 10000] [--keep DIR]
 *
 * Layers are small (the cost of GC is in listing and reading records, not in the bytes it deletes).
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GarbageCollector, type GcResult } from '../src/content/gc.js';
import { keys } from '../src/content/keys.js';
import { createFilesystemDriver } from '../src/storage/drivers/index.js';
import type { StorageDriver } from '../src/storage/driver.js';

const argv = process.argv.slice(2);
const opt = (n: string, d: string): string => {
  const i = argv.indexOf(`--${n}`);
  return i >= 0 && argv[i + 1] ? argv[i + 1]! : d;
};
if (argv.includes('--help')) {
  console.log('usage: node dist/bench/gc.js [--images 10000] [--keep DIR]');
  process.exit(0);
}
const IMAGES = Number(opt('images', '10000'));
const sha = (b: Buffer | string): string => createHash('sha256').update(b).digest('hex');
const S2 = 'application/vnd.docker.distribution.manifest.v2+json';

/** Generation writes files directly (the layout is the filesystem driver's: key = path), no fsync. */
let root = '';
const made = new Set<string>();
async function put(key: string, bytes: Buffer): Promise<void> {
  const path = join(root, ...key.split('/'));
  const d = dirname(path);
  if (!made.has(d)) {
    await mkdir(d, { recursive: true });
    made.add(d);
  }
  await writeFile(path, bytes);
}
const gen = { putContent: (k: string, b: Buffer, _o?: unknown): Promise<void> => put(k, b) } as unknown as StorageDriver;

async function blob(_driver: StorageDriver, bytes: Buffer): Promise<string> {
  const hex = sha(bytes);
  await put(keys.blob(hex), bytes);
  return hex;
}

/** v1: repositories of 5-image chains (each image its own layer), tagged `latest` at the top. */
async function v1Repo(driver: StorageDriver, repo: string, chainLength: number, shared: string): Promise<void> {
  let parent: string | undefined;
  const ancestry: string[] = [];
  for (let i = 0; i < chainLength; i++) {
    const id = sha(randomBytes(16));
    const layer = i === 0 ? shared : await blob(driver, randomBytes(512));
    const json = Buffer.from(JSON.stringify({ id, ...(parent ? { parent } : {}), created: '2015-01-01T00:00:00Z' }));
    ancestry.unshift(id);
    const root = `v1/repositories/${repo}/_images/${id}`;
    await driver.putContent(`${root}/json`, json, { durable: false });
    await driver.putContent(`${root}/ancestry`, Buffer.from(JSON.stringify(ancestry)), { durable: false });
    await driver.putContent(
      `${root}/layer`,
      Buffer.from(
        JSON.stringify({ digest: `sha256:${layer}`, size: 512, payload: `sha256:${sha(json)}`, compression: 'gzip', diffId: `sha256:${sha(layer)}` }),
      ),
      { durable: false },
    );
    parent = id;
  }
  await driver.putContent(`v1/repositories/${repo}/_created`, Buffer.from('0'), { durable: false });
  await driver.putContent(`v1/repositories/${repo}/_tags/latest`, Buffer.from(parent!), { durable: false });
}

/** v2: repositories of `tags` schema2 images (config + 2 layers, one shared by all). */
async function v2Repo(driver: StorageDriver, name: string, tags: number, shared: string): Promise<void> {
  for (let t = 0; t < tags; t++) {
    const config = await blob(driver, Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', n: randomBytes(8).toString('hex') })));
    const layer = await blob(driver, randomBytes(512));
    const manifest = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: S2,
        config: { mediaType: 'application/vnd.docker.container.image.v1+json', size: 60, digest: `sha256:${config}` },
        layers: [shared, layer].map((l) => ({ mediaType: 'application/vnd.docker.image.rootfs.diff.tar.gzip', size: 512, digest: `sha256:${l}` })),
      }),
    );
    const digest = await blob(driver, manifest);
    const base = `v2/repositories/${name}`;
    for (const l of [config, shared, layer]) await driver.putContent(`${base}/_layers/${l}`, Buffer.from(`sha256:${l}`), { durable: false });
    await driver.putContent(
      `${base}/_manifests/revisions/${digest}`,
      Buffer.from(JSON.stringify({ digest: `sha256:${digest}`, mediaType: S2, size: manifest.length })),
      { durable: false },
    );
    await driver.putContent(`${base}/_manifests/tags/t${t}`, Buffer.from(`sha256:${digest}`), { durable: false });
  }
  await driver.putContent(`v2/repositories/${name}/_created`, Buffer.from('0'), { durable: false });
}

let peak = 0;
const sampler = setInterval(() => {
  peak = Math.max(peak, process.memoryUsage().rss);
}, 10);

async function timed(label: string, fn: () => Promise<GcResult>): Promise<void> {
  global.gc?.();
  peak = process.memoryUsage().rss;
  const before = peak;
  const t = process.hrtime.bigint();
  const r = await fn();
  const ms = Number(process.hrtime.bigint() - t) / 1e6;
  console.log(
    `${label.padEnd(22)} ${(ms / 1000).toFixed(2).padStart(7)} s  peak RSS ${(peak / 1048576).toFixed(0)} MiB (+${((peak - before) / 1048576).toFixed(0)})  ` +
      `blobs ${r.blobs.deleted}/${r.blobs.total} (${(r.blobs.bytesFreed / 1024).toFixed(0)} KiB), v1 ${r.v1Images.deleted}/${r.v1Images.total}, v2 ${r.v2Manifests.deleted}/${r.v2Manifests.total}, links ${r.links.deleted}/${r.links.total}`,
  );
}

const dir = opt('keep', '') || (await mkdtemp(join(tmpdir(), 'lr-gc-bench-')));
const driver = createFilesystemDriver({ root: dir });
root = dir;
try {
  const half = Math.floor(IMAGES / 2);
  const v1Repos = Math.ceil(half / 5);
  const v2Repos = Math.ceil(half / 5);
  const t = Date.now();
  const shared = await blob(gen, randomBytes(512));
  for (let i = 0; i < v1Repos; i += 4)
    await Promise.all([0, 1, 2, 3].filter((k) => i + k < v1Repos).map((k) => v1Repo(gen, `ns${(i + k) % 50}/v1repo${i + k}`, 5, shared)));
  for (let i = 0; i < v2Repos; i += 4)
    await Promise.all([0, 1, 2, 3].filter((k) => i + k < v2Repos).map((k) => v2Repo(gen, `ns${(i + k) % 50}/v2repo${i + k}`, 5, shared)));
  console.log(
    `generated ${v1Repos * 5} v1 images in ${v1Repos} repositories, ${v2Repos * 5} v2 images in ${v2Repos} repositories in ${((Date.now() - t) / 1000).toFixed(1)} s (${dir})`,
  );
  // garbage: a tenth of each deleted (v1: tag deleted = untagged chain; v2: half repositories deleted, half tags deleted)
  for (let i = 0; i < v1Repos; i += 10) await driver.delete(`v1/repositories/ns${i % 50}/v1repo${i}/_tags/latest`);
  for (let i = 0; i < v2Repos; i += 20) await driver.delete(`v2/repositories/ns${i % 50}/v2repo${i}`);
  for (let i = 10; i < v2Repos; i += 20) await driver.delete(`v2/repositories/ns${i % 50}/v2repo${i}/_manifests/tags/t0`);
  await new Promise((r) => setTimeout(r, 1100)); // everything older than the 1 s margin of a zero grace
  const gc = new GarbageCollector(driver);
  await timed('dry run', () => gc.run({ dryRun: true, graceMs: 0, settleMs: 0 }));
  await timed('run', () => gc.run({ graceMs: 0, settleMs: 0 }));
  await timed('run --delete-untagged', () => gc.run({ deleteUntagged: true, graceMs: 0, settleMs: 0 }));
} finally {
  clearInterval(sampler);
  if (!opt('keep', '')) await rm(dir, { recursive: true, force: true });
}
