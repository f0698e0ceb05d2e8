import { createHash, randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { gzipSync } from 'node:zlib';
import { join } from 'node:path';
import { ListMultipartUploadsCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { spawnServer, type ChildServer } from '../test/helpers/child.js';
import { filesUnder } from '../test/helpers/files.js';
import { request } from '../test/helpers/http.js';
import { Site, sha, S2, type Creds } from '../test/helpers/accounts.js';
import { chunkedStream, DOCKER_UA, payloadChecksum, putTag, tarOf, type TestImage } from '../test/helpers/v1-client.js';

/**
 * Crash consistency (issue 17): concurrent v1 and v2 pushes and deletes while the server is
 * SIGKILLed at random points, many times. After every restart: every acknowledged push pulls back
 * byte-identical through v1 or v2, every acknowledged delete stays deleted, whatever else is visible
 * is whole and right (an unacknowledged push may have landed, never half), no upload survives the
 * start-up purge, and every repository storage shows is known to the index.
 */

export interface CrashOptions {
  readonly dataDir: string;
  readonly kills: number;
  /** Operations in flight at once. */
  readonly concurrency?: number;
  /** Kill between min and max ms after the round's operations start. */
  readonly killAfterMs?: readonly [number, number];
  readonly log?: (line: string) => void;
  /** Random seed (reproducible rounds). */
  readonly seed?: number;
  /**
   * Count the kill delay from the round's first acknowledged operation (at most 120 s of waiting for
   * one), not from its start: on a loaded machine (or slow storage) a fixed delay after the start
   * may kill every round before anything is acknowledged, which tests little.
   */
  readonly killAfterAck?: boolean;
  /** Stop after the kill during which this much time has passed (the campaign's time bound). */
  readonly maxSeconds?: number;
  /** Asked after every kill: true ends the campaign there (SIGINT/SIGTERM of the runner). */
  readonly shouldStop?: () => boolean;
  /** Storage of the server: the filesystem under dataDir (default), or an S3 bucket (Ceph RGW). */
  readonly s3?: S3Target;
  /**
   * Every `bigEvery`-th v1 push (default 4) has a root layer of this many MiB instead of at most
   * 200 KB: a layer that large is streamed, flushed to disk in the background while it arrives and
   * fsynced at its commit, so kills land in the middle of those (default 0: small layers only).
   */
  readonly bigLayerMiB?: number;
  readonly bigEvery?: number;
}

/** An S3 bucket for the server's storage; the index database stays on disk under dataDir (SQLite). */
export interface S3Target {
  readonly endpoint: string;
  readonly region: string;
  readonly accessKey: string;
  readonly secretKey: string;
  /** An existing, empty bucket. */
  readonly bucket: string;
  /** The key prefix (storage_path) inside the bucket. */
  readonly prefix: string;
}

export interface CrashReport {
  kills: number;
  operationsStarted: number;
  acknowledged: { v1Push: number; v2Push: number; delete: number };
  verifiedPulls: number;
  unacknowledgedVisible: number;
  violations: string[];
  orphanedUploads: number;
  /** Operations that failed before the kill cut them (refused, timed out), by message (first 20 kinds). */
  failedBeforeKill: Record<string, number>;
  seconds: number;
}

const USER: Creds = ['camp', 'camppass'];

type Expect =
  | { kind: 'v1'; repo: string; tag: string; chain: TestImage[] }
  | { kind: 'v2'; repo: string; tag: string; manifest: Buffer; digest: string; blobs: Buffer[] }
  | { kind: 'deleted'; api: 'v1' | 'v2'; repo: string; tag: string };

/** A small deterministic PRNG (mulberry32) so a failing campaign can be replayed with its seed. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function v1Image(parent: string | undefined, size: number): TestImage {
  const id = randomBytes(32).toString('hex');
  const obj: Record<string, unknown> = { id, created: '2015-01-01T00:00:00Z', container_config: { Cmd: ['/bin/sh'] } };
  if (parent) obj.parent = parent;
  const json = Buffer.from(JSON.stringify(obj));
  const layer = gzipSync(tarOf({ [`f-${id.slice(0, 8)}`]: randomBytes(size) }), { level: 1 });
  return { id, ...(parent ? { parent } : {}), json, layer, payload: payloadChecksum(json, layer) };
}

function v2Image(size: number): { config: Buffer; layers: Buffer[]; manifest: Buffer; digest: string } {
  const tars = [tarOf({ a: randomBytes(size) }), tarOf({ b: randomBytes(Math.max(1, size >> 2)) })];
  const layers = tars.map((t) => gzipSync(t, { level: 1 }));
  const config = Buffer.from(
    JSON.stringify({
      architecture: 'amd64',
      os: 'linux',
      rootfs: { type: 'layers', diff_ids: tars.map((t) => sha(t)) },
      history: tars.map((_, i) => ({ created: '2020-01-01T00:00:00Z', created_by: `step ${i}` })),
    }),
  );
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: S2,
      config: { mediaType: 'application/vnd.docker.container.image.v1+json', size: config.length, digest: sha(config) },
      layers: layers.map((l) => ({ mediaType: 'application/vnd.docker.image.rootfs.diff.tar.gzip', size: l.length, digest: sha(l) })),
    }),
  );
  return { config, layers, manifest, digest: `sha256:${createHash('sha256').update(manifest).digest('hex')}` };
}

export async function runCrashCampaign(opts: CrashOptions): Promise<CrashReport> {
  const log = opts.log ?? (() => undefined);
  let reported = 0; // violations already logged
  const random = rng(opts.seed ?? Date.now());
  const concurrency = opts.concurrency ?? 4;
  const [killMin, killMax] = opts.killAfterMs ?? [50, 1200];
  const started = Date.now();
  const report: CrashReport = {
    kills: 0,
    operationsStarted: 0,
    acknowledged: { v1Push: 0, v2Push: 0, delete: 0 },
    verifiedPulls: 0,
    unacknowledgedVisible: 0,
    violations: [],
    orphanedUploads: 0,
    failedBeforeKill: {},
    seconds: 0,
  };
  const s3 = opts.s3;
  const storageEnv: Record<string, string> = s3
    ? {
        // config_sample.yml's ceph-s3 flavor: bucket, endpoint and keys from the environment
        SETTINGS_FLAVOR: 'ceph-s3',
        AWS_BUCKET: s3.bucket,
        S3_ENDPOINT: s3.endpoint,
        AWS_REGION: s3.region,
        AWS_KEY: s3.accessKey,
        AWS_SECRET: s3.secretKey,
        STORAGE_PATH: s3.prefix,
        SQLALCHEMY_INDEX_DATABASE: `sqlite:///${join(opts.dataDir, 'index.db')}`,
      }
    : { STORAGE_PATH: opts.dataDir };
  const admin = s3
    ? new S3Client({
        endpoint: s3.endpoint,
        region: s3.region,
        forcePathStyle: true,
        credentials: { accessKeyId: s3.accessKey, secretAccessKey: s3.secretKey },
      })
    : undefined;
  /** What the start-up purge should have removed: files (objects) below uploads/, and on S3 unfinished multipart uploads. */
  const leftoverUploads = async (): Promise<number> => {
    if (!s3 || !admin) return (await filesUnder(join(opts.dataDir, 'uploads'))).length;
    const root = s3.prefix.replace(/^\/+|\/+$/g, '');
    let n = 0;
    let token: string | undefined;
    do {
      const r = await admin.send(new ListObjectsV2Command({ Bucket: s3.bucket, Prefix: `${root}/uploads/`, ...(token ? { ContinuationToken: token } : {}) }));
      n += r.KeyCount ?? r.Contents?.length ?? 0;
      token = r.IsTruncated ? r.NextContinuationToken : undefined;
    } while (token);
    const mp = await admin.send(new ListMultipartUploadsCommand({ Bucket: s3.bucket, Prefix: `${root}/` }));
    return n + (mp.Uploads?.length ?? 0);
  };
  const env = {
    ...storageEnv,
    STANDALONE: '',
    BCRYPT_COST: '4',
    UPLOAD_PURGE_AGE: '1',
    TOKEN_CACHE_TTL: '0',
    LOGLEVEL: 'info',
    ACCESS_LOG: 'false',
    STORAGE_DELETE: 'true',
    METADATA_CACHE_TTL: '0',
  };
  const expected = new Map<string, Expect>(); // `${repo}:${tag}` → what an acknowledged operation left
  // what unacknowledged operations tried since the key's last acknowledged one, latest last: an
  // operation that failed without a kill (a refused or timed-out request) may still have landed whole,
  // and a later cut one may not have; any of them, whole, is a valid state — a mix never is
  const inFlight = new Map<string, Expect[]>();
  const attempt = (key: string, e: Expect): void => {
    const list = inFlight.get(key) ?? [];
    list.push(e);
    inFlight.set(key, list);
  };
  let roundAcks = 0;
  const acknowledged = (key: string, e: Expect): void => {
    roundAcks++;
    expected.set(key, e);
    inFlight.delete(key);
  };
  /** A step's unexpected answer; a 5xx carries its body and is logged with the server's last error lines. */
  const failed = (step: string, r: { status: number; text: string }): Error => {
    if (r.status >= 500 && !killing) {
      const errors = (server?.output() ?? '')
        .split('\n')
        .filter((l) => / ERROR /.test(l))
        .slice(-3);
      log(`5xx before the kill: ${step} ${r.status} ${r.text.slice(0, 200)}\n  ${errors.join('\n  ')}`);
    }
    return new Error(`${step} ${r.status}`);
  };
  let killing = false;
  let serial = 0;
  let server: ChildServer | undefined;

  const start = async (): Promise<Site> => {
    // a busy machine (or a campaign at nice 19) can take longer than a test's 20 s to start
    server = await spawnServer(env, [], { startTimeoutMs: 120_000 });
    return new Site(server.url, server.url);
  };

  // --- what a pull sees for one repository:tag, compared with what was pushed
  const check = async (site: Site, e: Expect): Promise<'match' | 'absent' | string> => {
    if (e.kind === 'v1' || (e.kind === 'deleted' && e.api === 'v1')) {
      const token = await site.readToken(e.repo, USER);
      if (!token) return 'absent';
      const tag = await site.regGet(`/v1/repositories/${e.repo}/tags/${e.tag}`, token);
      if (tag.status === 404) return 'absent';
      if (e.kind === 'deleted') return `v1 tag ${e.repo}:${e.tag} is back after its acknowledged delete (${tag.status})`;
      if (tag.status !== 200 || tag.json<string>() !== e.chain[e.chain.length - 1]!.id)
        return `v1 tag ${e.repo}:${e.tag}: ${tag.status} ${tag.text.slice(0, 100)}`;
      const top = e.chain[e.chain.length - 1]!;
      const anc = await site.regGet(`/v1/images/${top.id}/ancestry`, token);
      const want = [...e.chain].reverse().map((i) => i.id);
      if (anc.status !== 200 || JSON.stringify(anc.json()) !== JSON.stringify(want))
        return `v1 ancestry of ${e.repo}:${e.tag}: ${anc.status} ${anc.text.slice(0, 100)}`;
      for (const img of e.chain) {
        const j = await site.regGet(`/v1/images/${img.id}/json`, token);
        if (j.status !== 200 || !j.body.equals(img.json)) return `v1 json ${img.id} of ${e.repo}:${e.tag}: ${j.status}`;
        const l = await site.regGet(`/v1/images/${img.id}/layer`, token);
        if (l.status !== 200 || !l.body.equals(img.layer))
          return `v1 layer ${img.id} of ${e.repo}:${e.tag}: ${l.status}, ${l.body.length} bytes of ${img.layer.length}`;
      }
      return 'match';
    }
    const bearer = await site.bearer(USER, `repository:${e.repo}:pull`);
    const m = await site.v2(`/v2/${e.repo}/manifests/${e.tag}`, bearer, { headers: { Accept: S2 } });
    if (m.status === 404) return 'absent';
    if (e.kind === 'deleted') return `v2 tag ${e.repo}:${e.tag} is back after its acknowledged delete (${m.status})`;
    if (m.status !== 200 || !m.body.equals(e.manifest))
      return `v2 manifest ${e.repo}:${e.tag}: ${m.status} ${m.status === 200 ? `${sha(m.body)} (pushed ${sha(e.manifest)})` : m.text.slice(0, 100)}`;
    for (const b of e.blobs) {
      const r = await site.v2(`/v2/${e.repo}/blobs/${sha(b)}`, bearer);
      if (r.status !== 200 || !r.body.equals(b)) return `v2 blob ${sha(b)} of ${e.repo}:${e.tag}: ${r.status}, ${r.body.length} bytes of ${b.length}`;
    }
    return 'match';
  };

  const verify = async (site: Site): Promise<void> => {
    // for each key: the acknowledged state, or (if an operation on it was cut by the kill) that
    // operation's result, whole; never anything else
    for (const key of new Set([...expected.keys(), ...inFlight.keys()])) {
      const acked = expected.get(key);
      const tried = [...(inFlight.get(key) ?? [])].reverse();
      const cut = tried[0];
      const seen: string[] = [];
      let ok = false;
      for (const e of [...tried, acked]) {
        if (!e) continue;
        const r = await check(site, e);
        if (e.kind === 'deleted' ? r === 'absent' : r === 'match') {
          ok = true;
          if (e !== acked) {
            report.unacknowledgedVisible++;
            expected.set(key, e);
          } else report.verifiedPulls++;
          break;
        }
        seen.push(r);
      }
      // a cut push onto a key nobody had acknowledged: absent is fine too
      if (!ok && !acked && cut && tried.every((t) => t.kind !== 'deleted') && seen[0] === 'absent') ok = true;
      if (!ok) report.violations.push(`after kill ${report.kills}: ${key}: ${seen.join(' / ')}`);
    }
    inFlight.clear();
    // the index knows every repository storage holds a pushed tag of (search finds it)
    const repos = new Set([...expected.values()].filter((e) => e.kind !== 'deleted').map((e) => e.repo));
    // (a notice cut by the kill is replayed from its write-ahead intent a few seconds after the start)
    const deadline = Date.now() + 10_000;
    for (const repo of repos) {
      for (;;) {
        const r = await request(site.idx, `/v1/search?q=${encodeURIComponent(repo.split('/')[1]!)}&n=100`, {
          headers: { Authorization: `Basic ${Buffer.from(`${USER![0]}:${USER![1]}`).toString('base64')}` },
        });
        const names = r.status === 200 ? r.json<{ results: { name: string }[] }>().results.map((x) => x.name) : [];
        if (names.includes(repo)) break;
        if (Date.now() > deadline) {
          report.violations.push(`after kill ${report.kills}: storage holds ${repo}, the index does not list it`);
          break;
        }
        await sleep(250);
      }
    }
  };

  // --- one operation of a round
  let v1Pushes = 0;
  const v1Push = async (site: Site, repo: string, tag: string): Promise<void> => {
    const big = (opts.bigLayerMiB ?? 0) > 0 && v1Pushes++ % Math.max(1, opts.bigEvery ?? 4) === 0;
    const root = v1Image(undefined, big ? opts.bigLayerMiB! * 1024 * 1024 : 1000 + Math.floor(random() * 200_000));
    const top = v1Image(root.id, 500 + Math.floor(random() * 50_000));
    const e: Expect = { kind: 'v1', repo, tag, chain: [root, top] };
    attempt(`${repo}:${tag}`, e);
    const token = await site.claim(repo, USER, [root.id, top.id], tag);
    for (const img of [root, top]) {
      const auth = { Authorization: `Token ${token}`, 'User-Agent': DOCKER_UA };
      const j = await request(site.reg, `/v1/images/${img.id}/json`, {
        method: 'PUT',
        headers: { ...auth, 'Content-Type': 'application/json' },
        body: img.json,
      });
      if (j.status !== 200) throw failed('json', j);
      const l = await request(site.reg, `/v1/images/${img.id}/layer`, { method: 'PUT', headers: auth, body: chunkedStream(img.layer, 16384) });
      if (l.status !== 200) throw failed('layer', l);
      const c = await request(site.reg, `/v1/images/${img.id}/checksum`, {
        method: 'PUT',
        headers: { ...auth, 'X-Docker-Checksum-Payload': img.payload },
        body: '',
      });
      if (c.status !== 200) throw failed('checksum', c);
    }
    const t = await putTag(site.reg, repo, tag, top.id, token);
    if (t.status !== 200) throw failed('tag', t);
    const f = await site.finish(repo, USER);
    if (f.status !== 204) throw failed('finish', f);
    acknowledged(`${repo}:${tag}`, e);
    report.acknowledged.v1Push++;
  };

  const v2Push = async (site: Site, repo: string, tag: string): Promise<void> => {
    const img = v2Image(1000 + Math.floor(random() * 300_000));
    const e: Expect = { kind: 'v2', repo, tag, manifest: img.manifest, digest: img.digest, blobs: [img.config, ...img.layers] };
    attempt(`${repo}:${tag}`, e);
    const bearer = await site.bearer(USER, `repository:${repo}:pull,push`);
    for (const [i, b] of [img.config, ...img.layers].entries()) {
      if (i % 2 === 0) {
        const r = await site.v2(`/v2/${repo}/blobs/uploads/?digest=${sha(b)}`, bearer, { method: 'POST', body: b });
        if (r.status !== 201) throw failed('blob', r);
      } else {
        // chunked: POST, two PATCHes, PUT
        const p = await site.v2(`/v2/${repo}/blobs/uploads/`, bearer, { method: 'POST' });
        let loc = String(p.headers.location);
        const half = b.length >> 1;
        for (const [from, to] of [
          [0, half],
          [half, b.length],
        ] as const) {
          const r = await site.v2(new URL(loc, site.reg).pathname, bearer, {
            method: 'PATCH',
            body: b.subarray(from, to),
            headers: { 'Content-Range': `${from}-${to - 1}` },
          });
          if (r.status !== 202) throw failed('patch', r);
          loc = String(r.headers.location);
        }
        const u = new URL(loc, site.reg);
        const put = await site.v2(`${u.pathname}?digest=${sha(b)}`, bearer, { method: 'PUT' });
        if (put.status !== 201) throw failed('put', put);
      }
    }
    const m = await site.v2(`/v2/${repo}/manifests/${tag}`, bearer, { method: 'PUT', body: img.manifest, headers: { 'Content-Type': S2 } });
    if (m.status !== 201) throw failed('manifest', m);
    acknowledged(`${repo}:${tag}`, e);
    report.acknowledged.v2Push++;
  };

  const remove = async (site: Site): Promise<void> => {
    const candidates = [...expected.entries()].filter(([k, e]) => e.kind !== 'deleted' && !busy.has(k));
    if (candidates.length === 0) return;
    const [key, e] = candidates[Math.floor(random() * candidates.length)]!;
    busy.add(key);
    try {
      await removeOne(site, key, e);
    } finally {
      busy.delete(key);
    }
  };

  const removeOne = async (site: Site, key: string, e: Expect): Promise<void> => {
    if (e.kind === 'deleted') return;
    const api = e.kind === 'v1' ? 'v1' : 'v2';
    const gone: Expect = { kind: 'deleted', api, repo: e.repo, tag: e.tag };
    attempt(key, gone);
    if (api === 'v1') {
      const token = await site.deleteToken(e.repo, USER);
      const r = await request(site.reg, `/v1/repositories/${e.repo}/tags/${e.tag}`, { method: 'DELETE', headers: { Authorization: `Token ${token}` } });
      if (r.status !== 200) throw failed('v1 delete', r);
    } else {
      const bearer = await site.bearer(USER, `repository:${e.repo}:delete`);
      const r = await site.v2(`/v2/${e.repo}/manifests/${e.tag}`, bearer, { method: 'DELETE' });
      if (r.status !== 202) throw failed('v2 delete', r);
    }
    acknowledged(key, gone);
    report.acknowledged.delete++;
  };

  const busy = new Set<string>();
  const exclusive = async (key: string, fn: () => Promise<void>): Promise<void> => {
    busy.add(key);
    try {
      await fn();
    } finally {
      busy.delete(key);
    }
  };

  let site = await start();
  const signup = await request(site.idx, '/v1/users/', {
    method: 'POST',
    body: JSON.stringify({ username: USER![0], password: USER![1], email: 'camp@example.com' }),
  });
  if (signup.status !== 201) throw new Error(`signup: ${signup.status} ${signup.text}`);

  for (let k = 0; k < opts.kills; k++) {
    if (k > 0 && ((opts.maxSeconds !== undefined && Date.now() - started > opts.maxSeconds * 1000) || opts.shouldStop?.())) {
      log(`stopping after ${report.kills} kills (${opts.shouldStop?.() ? 'asked to' : `time bound of ${opts.maxSeconds} s`})`);
      break;
    }
    // a round: operations until the kill
    let stop = false;
    const worker = async (): Promise<void> => {
      while (!stop) {
        const x = random();
        const n = serial++;
        const tag = `t${n % 6}`;
        const repo = x < 0.4 ? `camp/v1r${n % 3}` : `camp/v2r${n % 3}`;
        if (x < 0.85 && busy.has(`${repo}:${tag}`)) continue; // one operation per tag at a time
        report.operationsStarted++;
        try {
          if (x < 0.4) await exclusive(`${repo}:${tag}`, () => v1Push(site, repo, tag));
          else if (x < 0.85) await exclusive(`${repo}:${tag}`, () => v2Push(site, repo, tag));
          else await remove(site);
        } catch (e) {
          // a refused or cut operation is unacknowledged: nothing to expect from it
          if (!killing) {
            const why = (e instanceof Error ? e.message : String(e)).slice(0, 120);
            if (why in report.failedBeforeKill || Object.keys(report.failedBeforeKill).length < 20)
              report.failedBeforeKill[why] = (report.failedBeforeKill[why] ?? 0) + 1;
            await sleep(5);
          }
        }
      }
    };
    const workers = Array.from({ length: concurrency }, () => worker());
    const delay = killMin + Math.floor(random() * (killMax - killMin));
    if (opts.killAfterAck) {
      const waitUntil = Date.now() + 120_000;
      while (roundAcks === 0 && Date.now() < waitUntil) await sleep(50);
    }
    await sleep(delay);
    killing = true;
    server!.proc.kill('SIGKILL');
    await server!.exited;
    stop = true;
    await Promise.all(workers);
    report.kills++;
    // older than upload_purge_age (1 s): the start-up purge must remove every upload left behind
    await sleep(1100);
    site = await start();
    killing = false;
    const left = await leftoverUploads();
    if (left > 0) {
      report.orphanedUploads += left;
      report.violations.push(`after kill ${report.kills}: ${left} upload files survived the start-up purge`);
    }
    await verify(site);
    roundAcks = 0;
    for (const v of report.violations.slice(reported)) log(`VIOLATION ${v}`);
    reported = report.violations.length;
    log(
      `kill ${report.kills}/${opts.kills}: acknowledged ${JSON.stringify(report.acknowledged)}, verified ${report.verifiedPulls}, violations ${report.violations.length}`,
    );
  }
  server!.proc.kill('SIGTERM');
  await server!.exited;
  admin?.destroy();
  report.seconds = Math.round((Date.now() - started) / 1000);
  return report;
}
