import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCrashCampaign } from './crash.js';
import { runHttpFuzz } from './http-fuzz.js';
import { runSoak } from './soak.js';
import { startTestServer } from '../test/helpers/server.js';
import { makeImage } from '../test/helpers/v1-client.js';
import { pushV2Image, Site, v2Image } from '../test/helpers/accounts.js';
import { saveUser } from '../src/db/users.js';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { cephMissing, startRgw, type Rgw } from '../test/helpers/ceph.js';
import type { S3Target } from './crash.js';

const HELP = `usage: node dist/campaigns/run.js <campaign> [options]

Reliability campaigns (issue 17). Each runs servers on loopback only, bounded in count and time, and
prints a JSON report; exit 1 when an invariant was violated.

  crash   --kills N (200) --concurrency C (4) --seed S   SIGKILL during concurrent v1/v2 pushes and deletes
          --kill-min MS (50) --kill-max MS (1200)         the kill falls this long after a round starts
          --kill-after-ack                                the delay counts from the round's first acknowledged
                                                          operation (loaded machines, slow storage)
          --max-seconds N                                 time bound: stop after the kill that passes it
                                                          (SIGINT/SIGTERM: stop after the current kill, report)
          --storage file|s3 (file)                        s3: a throw-away Ceph RGW (root, radosgw installed;
                                                          CEPH_RGW_ENV reuses a running one), index on SQLite
          --big-layer-mib M (0) --big-every N (4)         every N-th v1 push has a root layer of M MiB (kills
                                                          then land in large streamed writes and their fsync)
  fuzz    --requests N (20000) --seed S                   random requests over every route: no 5xx, no state change
  soak    --seconds N (1800) --rate R (20 ops/s)          steady mixed traffic: RSS, fds, ping latency flat, no errors
          --heap-snapshots DIR                            the server's heap after the first sample and at the end
                                                          (scripts/heap-summary.mjs compares them)
  --help  this text
`;

function option(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? (process.argv[i + 1] ?? def) : def;
}

/** A fresh bucket on a throw-away Ceph RGW for the crash campaign's S3 run. */
async function s3Target(): Promise<{ target: S3Target; rgw: Rgw }> {
  const why = cephMissing();
  if (why) throw new Error(`--storage s3: ${why}`);
  const rgw = await startRgw();
  const bucket = rgw.uniqueBucket('crash');
  const admin = new S3Client({
    endpoint: rgw.endpoint,
    region: rgw.region,
    forcePathStyle: true,
    credentials: { accessKeyId: rgw.accessKey, secretAccessKey: rgw.secretKey },
  });
  try {
    await admin.send(new CreateBucketCommand({ Bucket: bucket }));
  } finally {
    admin.destroy();
  }
  return { rgw, target: { endpoint: rgw.endpoint, region: rgw.region, accessKey: rgw.accessKey, secretKey: rgw.secretKey, bucket, prefix: '/registry' } };
}

/** SIGINT/SIGTERM: the crash campaign ends after the current kill and reports (servers and RGW stopped). */
let stopAsked = false;
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    if (stopAsked) process.exit(130);
    stopAsked = true;
  });
}

function arg(name: string, def: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : def;
}

async function main(): Promise<void> {
  const which = process.argv[2];
  // `crash --help` too: help anywhere on the line prints it and runs nothing
  if (!which || process.argv.slice(2).some((a) => a === '--help' || a === '-h')) {
    process.stdout.write(HELP);
    return;
  }
  const dir = await mkdtemp(join(tmpdir(), `lr-campaign-${which}-`));
  try {
    if (which === 'crash') {
      const seed = arg('seed', Date.now() % 1_000_000);
      const storage = option('storage', 'file');
      if (storage !== 'file' && storage !== 's3') throw new Error(`--storage ${storage}: file or s3`);
      const s3 = storage === 's3' ? await s3Target() : undefined;
      let report: Awaited<ReturnType<typeof runCrashCampaign>>;
      try {
        report = await runCrashCampaign({
          dataDir: dir,
          kills: arg('kills', 200),
          concurrency: arg('concurrency', 4),
          killAfterMs: [arg('kill-min', 50), arg('kill-max', 1200)],
          ...(process.argv.includes('--kill-after-ack') ? { killAfterAck: true } : {}),
          ...(process.argv.includes('--max-seconds') ? { maxSeconds: arg('max-seconds', 0) } : {}),
          shouldStop: () => stopAsked,
          seed,
          ...(s3 ? { s3: s3.target } : {}),
          ...(process.argv.includes('--big-layer-mib') ? { bigLayerMiB: arg('big-layer-mib', 0), bigEvery: arg('big-every', 4) } : {}),
          log: (l) => process.stderr.write(`${l}\n`),
        });
      } finally {
        await s3?.rgw.stop();
      }
      process.stdout.write(`${JSON.stringify({ campaign: 'crash', storage, seed, ...report }, null, 2)}\n`);
      if (report.violations.length > 0) process.exitCode = 1;
      return;
    }
    if (which === 'soak') {
      const report = await runSoak({
        dataDir: dir,
        seconds: arg('seconds', 1800),
        opsPerSecond: arg('rate', 20),
        ...(process.argv.includes('--heap-snapshots') ? { heapSnapshotDir: option('heap-snapshots', '.') } : {}),
        log: (l) => process.stderr.write(`${l}\n`),
      });
      process.stdout.write(`${JSON.stringify({ campaign: 'soak', ...report }, null, 2)}\n`);
      if (report.errors.length > 0) process.exitCode = 1;
      return;
    }
    if (which === 'fuzz') {
      const seed = arg('seed', Date.now() % 1_000_000);
      const s = await startTestServer({ bcrypt_cost: 4, storage_delete: true }, { dataDir: dir });
      try {
        const site = new Site(s.url, s.url);
        await saveUser(s.db!, { username: 'alice', email: 'a@example.com', password: 'alicepw', active: true }, { cost: 4 });
        await site.pushV1('alice/app', ['alice', 'alicepw'], [makeImage()]);
        await pushV2Image(site, 'alice/v2app', 'latest', await site.bearer(['alice', 'alicepw'], 'repository:alice/v2app:pull,push'), v2Image('fuzz'));
        const started = Date.now();
        const report = await runHttpFuzz({
          url: s.url,
          dataDir: dir,
          db: s.db!,
          requests: arg('requests', 20000),
          seed,
          log: (l) => process.stderr.write(`${l}\n`),
        });
        process.stdout.write(`${JSON.stringify({ campaign: 'fuzz', seed, seconds: Math.round((Date.now() - started) / 1000), ...report }, null, 2)}\n`);
        if (report.fiveHundreds.length + report.stateChanges.length > 0) process.exitCode = 1;
      } finally {
        await s.stop();
      }
      return;
    }
    process.stderr.write(`unknown campaign ${which}\n${HELP}`);
    process.exitCode = 2;
  } finally {
    // a server killed last may still be exiting: retry, and never let the cleanup hide the result
    await rm(dir, { recursive: true, force: true, maxRetries: 10, retryDelay: 200 }).catch((e: unknown) => {
      process.stderr.write(`could not remove ${dir}: ${String(e)}\n`);
    });
  }
}

void main();
