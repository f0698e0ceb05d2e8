import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import { S3Client } from '@aws-sdk/client-s3';
import { ROOT } from './paths.js';

const run = promisify(execFile);

/** A running throw-away Ceph RADOS Gateway (scripts/ceph-rgw.sh) with an S3 user and a Swift subuser. */
export interface Rgw {
  /** http://127.0.0.1:PORT, the S3 endpoint (path-style addressing). */
  readonly endpoint: string;
  readonly accessKey: string;
  readonly secretKey: string;
  readonly region: string;
  /** Swift auth v1 URL (…/auth/1.0), its user (uid:swift) and key. */
  readonly swiftAuthUrl: string;
  readonly swiftUser: string;
  readonly swiftKey: string;
  /** The cluster's directory (logs in DIR/log). */
  readonly dir: string;
  /** A bucket/container name nobody has used yet (valid S3 name: lowercase, 3–63 chars). */
  uniqueBucket(prefix?: string): string;
  /** Stops the daemons and removes the directory. */
  stop(): Promise<void>;
}

const TOOLS = ['/usr/bin/ceph-mon', '/usr/bin/ceph-osd', '/usr/bin/radosgw', '/usr/bin/radosgw-admin'];

/**
 * Why the Ceph tests cannot run here, or undefined. E2E_REQUIRED (CI) turns the skip into a failure:
 * .ci/setup.d/20-ceph.sh installs the packages there.
 */
export function cephMissing(): string | undefined {
  const missing = TOOLS.filter((t) => !existsSync(t));
  let why: string | undefined;
  if (missing.length > 0) why = `ceph is not installed (${missing.join(', ')}; apt-get install radosgw ceph-mon ceph-osd ceph-common)`;
  else if (process.getuid?.() !== 0) why = 'the throw-away Ceph cluster needs root';
  if (why && process.env.E2E_REQUIRED) throw new Error(`E2E_REQUIRED: ${why}`);
  return why;
}

let counter = 0;

/**
 * Starts one RGW for the calling test file (about 2–5 s). Share it across the file's tests and give
 * each test its own bucket with uniqueBucket(). Set CEPH_RGW_ENV to the env file of a cluster already
 * running (scripts/ceph-rgw.sh up) to reuse it instead while developing; stop() then leaves it alone.
 */
export async function startRgw(): Promise<Rgw> {
  const reuse = process.env.CEPH_RGW_ENV;
  let dir: string;
  let text: string;
  let owned = true;
  if (reuse) {
    const { readFile } = await import('node:fs/promises');
    text = await readFile(reuse, 'utf8');
    owned = false;
    dir = '';
  } else {
    const parent = await mkdtemp(join(tmpdir(), 'lr-ceph-'));
    dir = join(parent, 'cluster');
    try {
      const out = await run(join(ROOT, 'scripts', 'ceph-rgw.sh'), ['up', dir], { timeout: 180_000, maxBuffer: 4 << 20 });
      text = out.stdout;
    } catch (err) {
      await rm(parent, { recursive: true, force: true });
      const e = err as { stderr?: string; message: string };
      throw new Error(`scripts/ceph-rgw.sh up failed: ${e.message}\n${e.stderr ?? ''}`, { cause: err });
    }
    dir = join(parent, 'cluster');
  }
  const env: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const m = /^([A-Z0-9_]+)=(.*)$/.exec(line.trim());
    if (m) env[m[1]!] = m[2]!;
  }
  if (!dir) dir = env.CEPH_RGW_DIR ?? '';
  const need = (k: string): string => {
    const v = env[k];
    if (!v) throw new Error(`ceph-rgw.sh printed no ${k}`);
    return v;
  };
  const run_id = randomBytes(3).toString('hex');
  return {
    endpoint: need('S3_ENDPOINT'),
    accessKey: need('S3_ACCESS_KEY'),
    secretKey: need('S3_SECRET_KEY'),
    region: env.S3_REGION ?? 'us-east-1',
    swiftAuthUrl: need('SWIFT_AUTH_URL'),
    swiftUser: need('SWIFT_USER'),
    swiftKey: need('SWIFT_KEY'),
    dir,
    uniqueBucket(prefix = 'lr') {
      counter++;
      return `${prefix}-${run_id}-${process.pid}-${counter}`.toLowerCase().slice(0, 63);
    },
    async stop() {
      if (!owned) return;
      await run(join(ROOT, 'scripts', 'ceph-rgw.sh'), ['down', dir], { timeout: 60_000 }).catch(() => undefined);
      await rm(join(dir, '..'), { recursive: true, force: true });
    },
  };
}

/** An S3 client of the cluster's user (path-style), for a test's own setup and checks. */
export function rgwClient(rgw: Rgw): S3Client {
  return new S3Client({
    endpoint: rgw.endpoint,
    region: rgw.region,
    forcePathStyle: true,
    credentials: { accessKeyId: rgw.accessKey, secretAccessKey: rgw.secretKey },
  });
}
