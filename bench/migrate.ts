/**
 * Import and migrate throughput on a generated Python docker-registry tree (issue 16 "Measured"):
 *
 *   node dist/bench/migrate.js [--images 1000] [--mib 2048] [--chain 10] [--concurrency 4] [--migrate-concurrency 4] [--reps 3]
 *                              [--tree DIR] [--no-migrate] [--cpu-prof DIR] [--out bench/results] [--no-fill-page-cache]
 *
 * 1. writes a Python storage tree: `images` images in chains of `chain` (one repository and tag per
 *    chain), `mib` MiB of layers in all, every other layer gzip (level 1) and the rest plain tar,
 *    random (incompressible) content, `_checksum` recorded as the Python registry did;
 * 2. one untimed `cp -r`, then `reps` alternating repetitions on the same tree: `cp -r` + `sync`
 *    (the baseline), the verifying copy + `sync` (bench/import-floor.mjs: the layers' hashes and
 *    writes alone, in their simplest form, one thread per core: a practical lower bound for an
 *    importer that verifies every byte and keeps records besides), then
 *    `legacy-registry import` + `sync` into an empty storage with an index
 *    (SQLite), each timed and each into a new directory (nothing removed before the end); peak RSS
 *    from the command's own report; medians and the median of the per-pair ratios; `--tree DIR`
 *    keeps the generated tree there (or reuses it when it already holds one);
 * 3. the verification floor: the layers hashed and inflated in this process, as the import must;
 * 4. `legacy-registry migrate` of everything to Debian's distribution 2.8.2 (no auth, same disk).
 * Target (issue 16): import within 1.5× of cp -r, peak RSS ≤ 200 MiB.
 */
import { spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, statfsSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { ensurePageCacheFull } from './page-cache.js';
import { createSha256, sha256x2, updateBoth } from '../src/digest/sha256.js';

const ROOT = join(new URL('.', import.meta.url).pathname, '..', '..');
const MiB = 1024 * 1024;
const argv = process.argv.slice(2);
const opt = (n: string, d: number): number => {
  const i = argv.indexOf(`--${n}`);
  return i >= 0 && argv[i + 1] ? Number(argv[i + 1]) : d;
};
if (argv.includes('--help')) {
  console.log(
    'usage: node dist/bench/migrate.js [--images 1000] [--mib 2048] [--chain 10] [--concurrency 4] [--migrate-concurrency 4] [--reps 3] [--tree DIR] [--no-migrate] [--cpu-prof DIR] [--out bench/results] [--no-fill-page-cache]',
  );
  process.exit(0);
}
const IMAGES = opt('images', 1000);
const TOTAL = opt('mib', 2048) * MiB;
const CHAIN = opt('chain', 10);
const CONCURRENCY = opt('concurrency', 4);
/** migrate's own default (tags at once). */
const MIGRATE_CONCURRENCY = opt('migrate-concurrency', 4);
const REPS = Math.max(1, opt('reps', 3));
const strOpt = (n: string): string | undefined => {
  const i = argv.indexOf(`--${n}`);
  return i >= 0 ? argv[i + 1] : undefined;
};
const TREE = strOpt('tree');
const CPU_PROF = strOpt('cpu-prof');
const MIGRATE = !argv.includes('--no-migrate');
const outIdx = argv.indexOf('--out');
const OUT = outIdx >= 0 ? argv[outIdx + 1]! : join(ROOT, 'bench', 'results');

function tarOf(name: string, data: Buffer): Buffer {
  const h = Buffer.alloc(512);
  h.write(name, 0, 100, 'utf8');
  h.write('0000644\0', 100);
  h.write('0000000\0', 108);
  h.write('0000000\0', 116);
  h.write(data.length.toString(8).padStart(11, '0') + '\0', 124);
  h.write('14440100400\0', 136);
  h.write('        ', 148);
  h.write('0', 156);
  h.write('ustar\0', 257);
  h.write('00', 263);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148);
  return Buffer.concat([h, data, Buffer.alloc((512 - (data.length % 512)) % 512), Buffer.alloc(1024)]);
}

function generate(root: string): { bytes: number } {
  const per = Math.floor(TOTAL / IMAGES);
  let bytes = 0;
  let parent: string | undefined;
  for (let i = 0; i < IMAGES; i++) {
    if (i % CHAIN === 0) parent = undefined;
    const id = createHash('sha256').update(`bench-${i}-${Math.random()}`).digest('hex');
    const json = Buffer.from(
      JSON.stringify({
        id,
        ...(parent ? { parent } : {}),
        created: '2015-03-01T10:00:00Z',
        container_config: { Cmd: ['/bin/sh', '-c', `step ${i}`] },
        docker_version: '1.5.0',
        architecture: 'amd64',
        os: 'linux',
      }),
    );
    const tar = tarOf(`f${i}`, randomBytes(per));
    const layer = i % 2 === 0 ? gzipSync(tar, { level: 1 }) : tar;
    bytes += layer.length;
    const dir = join(root, 'images', id);
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'json'), json);
    writeFileSync(join(dir, 'layer'), layer);
    const ancestry: string[] = [id];
    if (parent) ancestry.push(...(JSON.parse(readFileSync(join(root, 'images', parent, 'ancestry'), 'utf8')) as string[]));
    writeFileSync(join(dir, 'ancestry'), JSON.stringify(ancestry));
    const payload = createHash('sha256').update(json).update('\n').update(layer).digest('hex');
    writeFileSync(join(dir, '_checksum'), JSON.stringify([`sha256:${payload}`]));
    parent = id;
    if (i % CHAIN === CHAIN - 1 || i === IMAGES - 1) {
      const repo = join(root, 'repositories', 'bench', `app${String(Math.floor(i / CHAIN)).padStart(4, '0')}`);
      mkdirSync(repo, { recursive: true });
      writeFileSync(join(repo, 'tag_latest'), id);
    }
  }
  return { bytes };
}

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
}

function cli(storage: string, args: string[], nodeArgs: string[] = []): { seconds: number; status: number | null; out: string } {
  const t = process.hrtime.bigint();
  const r = spawnSync(process.execPath, [...nodeArgs, join(ROOT, 'bin', 'legacy-registry.cjs'), ...args], {
    env: {
      PATH: process.env.PATH ?? '',
      SETTINGS_FLAVOR: 'test',
      DOCKER_REGISTRY_CONFIG: join(ROOT, 'config_sample.yml'),
      STORAGE_PATH: storage,
      LOGLEVEL: 'warn',
      ...(process.env.LR_SHA256X2 ? { LR_SHA256X2: process.env.LR_SHA256X2 } : {}),
      ...(process.env.LR_NATIVE_GUNZIP ? { LR_NATIVE_GUNZIP: process.env.LR_NATIVE_GUNZIP } : {}),
      ...(process.env.LR_MALLOC_RETAIN ? { LR_MALLOC_RETAIN: process.env.LR_MALLOC_RETAIN } : {}),
      ...(process.env.LR_DIRECT_IO ? { LR_DIRECT_IO: process.env.LR_DIRECT_IO } : {}),
    },
    encoding: 'utf8',
    maxBuffer: 64 * MiB,
  });
  return { seconds: Number(process.hrtime.bigint() - t) / 1e9, status: r.status, out: r.stdout + r.stderr };
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};
const load = (): string =>
  loadavg()
    .map((l) => l.toFixed(1))
    .join(' ');

/**
 * What verifying the tree costs at the least, measured in this process on one thread: every layer
 * read from the page cache and hashed once (sha256 as the import's address), the gzip half inflated
 * and its tar hashed (the diff_id), plus a second sha256 over the raw bytes (the payload checksum,
 * computed at the rate of the first). Spread perfectly over every core, that CPU time is a floor
 * for the import's wall time that leaves out the writes, the records and the index entirely.
 */
function verificationFloor(tree: string, cpSeconds: number) {
  let raw = 0;
  let inflated = 0;
  let hashNs = 0n;
  let pairNs = 0n;
  let gunzipNs = 0n;
  for (const id of readdirSync(join(tree, 'images'))) {
    let layer: Buffer;
    try {
      layer = readFileSync(join(tree, 'images', id, 'layer'));
    } catch {
      continue;
    }
    // the address and the payload checksum: one paired pass where the import has one (src/digest/sha256.ts)
    let t = process.hrtime.bigint();
    const address = createSha256();
    const payload = createSha256().update('{}\n', 'latin1');
    updateBoth(address, payload, layer);
    address.digest();
    payload.digest();
    pairNs += process.hrtime.bigint() - t;
    raw += layer.length;
    if (layer[0] === 0x1f && layer[1] === 0x8b) {
      t = process.hrtime.bigint();
      const tar = gunzipSync(layer);
      gunzipNs += process.hrtime.bigint() - t;
      t = process.hrtime.bigint();
      createSha256().update(tar).digest();
      hashNs += process.hrtime.bigint() - t;
      inflated += tar.length;
    }
  }
  const sha256Seconds = Number(hashNs) / 1e9;
  const pairSeconds = Number(pairNs) / 1e9;
  const gunzipSeconds = Number(gunzipNs) / 1e9;
  const rate = inflated / sha256Seconds;
  const cpuSeconds = pairSeconds + sha256Seconds + gunzipSeconds;
  const cores = cpus().length;
  const wallSeconds = cpuSeconds / cores;
  return {
    sha256MiBps: rate / MiB,
    pairMiBps: raw / MiB / pairSeconds,
    paired: sha256x2.native,
    gunzipMiBps: inflated > 0 ? inflated / MiB / gunzipSeconds : 0,
    hashedMiB: Number(((2 * raw + inflated) / MiB).toFixed(1)),
    cpuSeconds,
    cpus: cores,
    wallSeconds,
    ratioToCp: wallSeconds / cpSeconds,
  };
}

const work = await mkdtemp(join(tmpdir(), 'lr-bench-migrate-'));
const pageCache = ensurePageCacheFull(work, (s) => console.log(s), argv);
try {
  const tree = TREE ?? join(work, 'python');
  let bytes: number;
  if (TREE && existsSync(join(TREE, 'bench-tree.json'))) {
    ({ bytes } = JSON.parse(readFileSync(join(TREE, 'bench-tree.json'), 'utf8')) as { bytes: number });
    console.log(`reusing the tree in ${TREE} (${(bytes / MiB).toFixed(0)} MiB)`);
  } else {
    console.log(`generating ${IMAGES} images, ${TOTAL / MiB} MiB …`);
    ({ bytes } = generate(tree));
    if (TREE) writeFileSync(join(TREE, 'bench-tree.json'), JSON.stringify({ bytes, images: IMAGES, chain: CHAIN }));
  }
  spawnSync('sync');
  const mib = bytes / MiB;

  // alternating repetitions on the same tree: cp -r + sync, then import + sync. Each writes into
  // a new directory, and none is removed before the end: on a file system without a journal (this
  // machine's ext4), inodes freed in the last 60 s are skipped one by one by every new file's
  // inode allocation (ext4 recently_deleted), so removing the previous repetition's 3 GiB of
  // copies and stores just before a step made its file creations pay for them (perf: 11.6 % of
  // an import's CPU samples in that scan).
  // The first copy after the page cache was filled is slower, whatever copies (4.6–8.5 s against
  // 1.6–3.1 s for the next ones, 2026-12-04): one untimed copy first, so that neither side pays it.
  // Kept only where the disk has room for all of them (and the migration's copy), with 2 GiB to
  // spare; else each step's directory goes before the next step, as before, and the JSON says so.
  const disk = statfsSync(work);
  const keepAll = disk.bavail * disk.bsize > bytes * (4 * REPS + 2) + 2 * 1024 * MiB;
  if (!keepAll)
    console.log('not enough disk to keep every repetition: each is removed before the next (ext4 without a journal then slows the file creations that follow)');
  spawnSync('cp', ['-r', tree, join(work, 'copy-warmup')]);
  spawnSync('sync');
  let storage = '';
  const runs: { cp: number; floorCopy: number; floorNoDiff: number; import: number; peakRssMiB: number; load: string }[] = [];
  for (let rep = 0; rep < REPS; rep++) {
    if (!keepAll) {
      await rm(join(work, rep === 0 ? 'copy-warmup' : `copy-${rep - 1}`), { recursive: true, force: true });
      if (rep > 0) await rm(join(work, `floor-${rep - 1}`), { recursive: true, force: true });
      if (rep > 0) await rm(join(work, `floor-nodiff-${rep - 1}`), { recursive: true, force: true });
      if (storage) await rm(storage, { recursive: true, force: true });
      spawnSync('sync');
    }
    let t = process.hrtime.bigint();
    spawnSync('cp', ['-r', tree, join(work, `copy-${rep}`)]);
    spawnSync('sync');
    const cpSeconds = Number(process.hrtime.bigint() - t) / 1e9;
    // the least a verifying importer can do (bench/import-floor.mjs), in its own process as cp is
    t = process.hrtime.bigint();
    const fc = spawnSync(process.execPath, [join(ROOT, 'bench', 'import-floor.mjs'), tree, join(work, `floor-${rep}`)], { encoding: 'utf8' });
    spawnSync('sync');
    const floorCopySeconds = Number(process.hrtime.bigint() - t) / 1e9;
    if (fc.status !== 0) throw new Error(`import-floor failed:\n${fc.stdout}${fc.stderr}`);
    // the same without the diff_ids (no inflating): the address and the payload checksum alone
    t = process.hrtime.bigint();
    const fn = spawnSync(process.execPath, [join(ROOT, 'bench', 'import-floor.mjs'), tree, join(work, `floor-nodiff-${rep}`), '--no-diff-id'], {
      encoding: 'utf8',
    });
    spawnSync('sync');
    const floorNoDiffSeconds = Number(process.hrtime.bigint() - t) / 1e9;
    if (fn.status !== 0) throw new Error(`import-floor --no-diff-id failed:\n${fn.stdout}${fn.stderr}`);
    storage = join(work, `storage-${rep}`);
    cli(storage, ['user', 'add', 'bench', 'bench@example.com', '--password', 'benchpw1']);
    spawnSync('sync');
    const importReport = join(work, 'import.json');
    const prof = CPU_PROF && rep === 0 ? ['--cpu-prof', '--cpu-prof-dir', CPU_PROF] : [];
    t = process.hrtime.bigint();
    const imp = cli(storage, ['import', '--owner', 'bench', '--no-progress', '--concurrency', String(CONCURRENCY), '--report', importReport, tree], prof);
    spawnSync('sync');
    const importSeconds = Number(process.hrtime.bigint() - t) / 1e9;
    if (imp.status !== 0) throw new Error(`import failed:\n${imp.out}`);
    const ir = JSON.parse(readFileSync(importReport, 'utf8')) as { peakRssMiB: number; images: { imported: number } };
    if (ir.images.imported !== IMAGES && !TREE) throw new Error(`import: ${ir.images.imported} images imported, ${IMAGES} expected`);
    runs.push({ cp: cpSeconds, floorCopy: floorCopySeconds, floorNoDiff: floorNoDiffSeconds, import: importSeconds, peakRssMiB: ir.peakRssMiB, load: load() });
    console.log(
      `rep ${rep + 1}: cp -r + sync ${cpSeconds.toFixed(1)} s (${(mib / cpSeconds).toFixed(0)} MiB/s); ` +
        `verifying copy + sync ${floorCopySeconds.toFixed(1)} s, ${(floorCopySeconds / cpSeconds).toFixed(2)}× cp (without diff_ids ${floorNoDiffSeconds.toFixed(1)} s, ${(floorNoDiffSeconds / cpSeconds).toFixed(2)}×); import + sync ${importSeconds.toFixed(1)} s (${(mib / importSeconds).toFixed(0)} MiB/s, ${(ir.images.imported / importSeconds).toFixed(1)} images/s), ${(importSeconds / cpSeconds).toFixed(2)}× cp, peak RSS ${ir.peakRssMiB} MiB; load ${load()}`,
    );
  }
  const cpMedian = median(runs.map((r) => r.cp));
  const importMedian = median(runs.map((r) => r.import));
  const ratioMedian = median(runs.map((r) => r.import / r.cp));
  const floorCopyMedian = median(runs.map((r) => r.floorCopy));
  const floorCopyRatio = median(runs.map((r) => r.floorCopy / r.cp));
  const floorNoDiffMedian = median(runs.map((r) => r.floorNoDiff));
  const floorNoDiffRatio = median(runs.map((r) => r.floorNoDiff / r.cp));
  console.log(
    `medians over ${REPS}: cp ${cpMedian.toFixed(1)} s, import ${importMedian.toFixed(1)} s, ratio ${ratioMedian.toFixed(2)}×, peak RSS max ${Math.max(...runs.map((r) => r.peakRssMiB))} MiB`,
  );
  console.log(
    `verifying copy (bench/import-floor.mjs: the hashes and writes of the layers and jsons on every core, no other record): ${floorCopyMedian.toFixed(1)} s, ${floorCopyRatio.toFixed(2)}× cp; without the diff_ids (no inflating) ${floorNoDiffMedian.toFixed(1)} s, ${floorNoDiffRatio.toFixed(2)}× cp`,
  );

  const floor = verificationFloor(tree, cpMedian);
  console.log(
    `verification floor: sha256 ${floor.sha256MiBps.toFixed(0)} MiB/s, address + payload ${floor.pairMiBps.toFixed(0)} MiB/s (${floor.paired ? 'paired' : 'one after the other'}), gunzip ${floor.gunzipMiBps.toFixed(0)} MiB/s (this process, one thread); ` +
      `the import's three hashes (address and payload, diff_id of the gzip half) and the gunzip cost ${floor.cpuSeconds.toFixed(1)} s of CPU, ` +
      `${floor.wallSeconds.toFixed(1)} s on ${floor.cpus} cores at best = ${floor.ratioToCp.toFixed(2)}× cp before a byte is written`,
  );

  const again = cli(storage, ['import', '--owner', 'bench', '--no-progress', tree]);
  console.log(`second import (nothing new): ${again.seconds.toFixed(1)} s`);

  let migrate: Record<string, number> | undefined;
  if (MIGRATE) {
    const port = await freePort();
    const cfg = join(work, 'dist.yml');
    await writeFile(
      cfg,
      `version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: ${join(work, 'target')}\nhttp:\n  addr: 127.0.0.1:${port}\n`,
    );
    const dist = spawn('/usr/bin/docker-registry', ['serve', cfg], { stdio: 'ignore' });
    await new Promise((r) => setTimeout(r, 1500));
    const migrateReport = join(work, 'migrate.json');
    let mig;
    try {
      mig = cli(storage, [
        'migrate',
        '--to',
        `http://127.0.0.1:${port}`,
        '--no-progress',
        '--concurrency',
        String(MIGRATE_CONCURRENCY),
        '--report',
        migrateReport,
      ]);
    } finally {
      dist.kill('SIGTERM');
    }
    if (mig.status !== 0) throw new Error(`migrate failed:\n${mig.out}`);
    const mr = JSON.parse(readFileSync(migrateReport, 'utf8')) as { peakRssMiB: number; bytesUploaded: number; tags: number };
    console.log(
      `migrate: ${mig.seconds.toFixed(1)} s (${(mr.bytesUploaded / MiB / mig.seconds).toFixed(0)} MiB/s, ${(IMAGES / mig.seconds).toFixed(1)} images/s, ${mr.tags} tags), peak RSS ${mr.peakRssMiB} MiB; load ${load()}`,
    );
    migrate = {
      seconds: mig.seconds,
      mibPerSecond: mr.bytesUploaded / MiB / mig.seconds,
      imagesPerSecond: IMAGES / mig.seconds,
      peakRssMiB: mr.peakRssMiB,
      concurrency: MIGRATE_CONCURRENCY,
    };
  }

  const tags = Math.ceil(IMAGES / CHAIN);
  const result = {
    date: new Date().toISOString(),
    machine: { cpus: cpus().length, loadavg: loadavg() },
    pageCache: pageCache.note,
    tree: { images: IMAGES, tags, mib: Number(mib.toFixed(1)) },
    repetitionsKept: keepAll,
    runs,
    cp: { seconds: cpMedian, mibPerSecond: mib / cpMedian },
    import: {
      seconds: importMedian,
      mibPerSecond: mib / importMedian,
      imagesPerSecond: IMAGES / importMedian,
      ratioToCp: ratioMedian,
      peakRssMiB: Math.max(...runs.map((r) => r.peakRssMiB)),
      concurrency: CONCURRENCY,
    },
    verificationFloor: floor,
    verifyingCopy: { seconds: floorCopyMedian, ratioToCp: floorCopyRatio, threads: cpus().length },
    verifyingCopyWithoutDiffIds: { seconds: floorNoDiffMedian, ratioToCp: floorNoDiffRatio, threads: cpus().length },
    reimport: { seconds: again.seconds },
    ...(migrate ? { migrate } : {}),
  };
  mkdirSync(OUT, { recursive: true });
  const file = join(OUT, `migrate-${result.date.slice(0, 19).replace(/:/g, '')}.json`);
  writeFileSync(file, JSON.stringify(result, null, 2) + '\n');
  console.log(`written ${file}`);
} finally {
  pageCache.cleanup();
  await rm(work, { recursive: true, force: true });
}
