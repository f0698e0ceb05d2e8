import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before } from 'node:test';
import { promisify } from 'node:util';
import { request } from './http.js';
import { freePort } from './ports.js';
import { ROOT } from './paths.js';
import { pyImage, writePythonTree } from './python-tree.js';

const run = promisify(execFile);

/** Why the import/migrate e2e tests cannot run (undefined: they can); fails under E2E_REQUIRED. */
export function toolsMissing(): string | undefined {
  if (existsSync('/usr/bin/docker-registry') && existsSync('/usr/bin/skopeo')) return undefined;
  if (process.env.E2E_REQUIRED) throw new Error('E2E_REQUIRED: docker-registry or skopeo is not installed (apt-get install docker-registry skopeo)');
  return 'docker-registry (distribution 2.8) or skopeo is not installed';
}

export interface CliResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** `legacy-registry <args>` (the compiled CLI) with the test flavor of config_sample.yml on `storage`. */
export function cli(storage: string, args: readonly string[], env: Record<string, string> = {}, onSpawn?: (p: ChildProcess) => void): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [join(ROOT, 'bin', 'legacy-registry.cjs'), ...args], {
      env: {
        PATH: process.env.PATH ?? '',
        SETTINGS_FLAVOR: 'test',
        DOCKER_REGISTRY_CONFIG: join(ROOT, 'config_sample.yml'),
        STORAGE_PATH: storage,
        LOGLEVEL: 'warn',
        ...env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    p.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
    p.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    p.once('error', reject);
    p.once('exit', (code, signal) => resolve({ code: code ?? (signal ? 128 : -1), stdout, stderr }));
    onSpawn?.(p);
  });
}

export interface Distribution {
  readonly host: string;
  readonly root: string;
  log(): string;
  stop(): Promise<void>;
}

/** Where distribution keeps its data instead of the filesystem: a bucket of an S3 server (Ceph RGW). */
export interface DistributionS3 {
  readonly endpoint: string;
  readonly region: string;
  readonly bucket: string;
  readonly accessKey: string;
  readonly secretKey: string;
  /** distribution's rootdirectory in the bucket (its tree is `<rootdirectory>/docker/registry/v2/…`) */
  readonly rootdirectory: string;
}

/**
 * Debian's distribution 2.8.2 (/usr/bin/docker-registry) on a free port, its data in `root` (or in
 * an S3 bucket: `s3`); htpasswd auth when given.
 */
export async function startDistribution(work: string, name: string, root: string, htpasswd?: string, s3?: DistributionS3): Promise<Distribution> {
  const port = await freePort();
  const config = join(work, `${name}.yml`);
  await writeFile(
    config,
    [
      'version: 0.1',
      'log:',
      '  level: info',
      '  accesslog:',
      '    disabled: false',
      'storage:',
      ...(s3
        ? [
            '  s3:',
            `    accesskey: ${s3.accessKey}`,
            `    secretkey: ${s3.secretKey}`,
            `    region: ${s3.region}`,
            `    regionendpoint: ${s3.endpoint}`,
            `    bucket: ${s3.bucket}`,
            `    rootdirectory: ${s3.rootdirectory}`,
            '    secure: false',
            '    v4auth: true',
          ]
        : ['  filesystem:', `    rootdirectory: ${root}`]),
      '  delete:',
      '    enabled: true',
      'http:',
      `  addr: 127.0.0.1:${port}`,
      ...(htpasswd ? ['auth:', '  htpasswd:', '    realm: migrate-test', `    path: ${htpasswd}`] : []),
      '',
    ].join('\n'),
  );
  const proc = spawn('/usr/bin/docker-registry', ['serve', config], { stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: process.env.PATH ?? '' } });
  let log = '';
  proc.stdout!.on('data', (d: Buffer) => (log += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (log += d.toString()));
  const exited = new Promise((r) => proc.once('exit', r));
  for (let i = 0; ; i++) {
    try {
      const s = (await request(`http://127.0.0.1:${port}`, '/v2/')).status;
      if (s === 200 || s === 401) break;
    } catch {
      // not listening yet
    }
    if (i > 200) throw new Error(`distribution did not start:\n${log}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    host: `127.0.0.1:${port}`,
    root,
    log: () => log,
    async stop() {
      proc.kill('SIGTERM');
      await exited;
    },
  };
}

/** skopeo with its own HOME (no auth file of the machine) and a generous timeout. */
export function skopeo(home: string, ...args: string[]): Promise<{ stdout: string; stderr: string }> {
  return run('skopeo', ['--insecure-policy', ...args], { timeout: 180_000, maxBuffer: 16 << 20, env: { PATH: process.env.PATH ?? '', HOME: home } });
}

/** The report `migrate --report` writes, as the migrate-hostile suites read it. */
export interface MigrateReport {
  target: string;
  moved: { source: string; target: string; digest: string; resumed?: boolean }[];
  failed: { what: string; reason: string }[];
}

/**
 * The harness of the migrate-hostile suites, for the describe it is called in: a storage in a new
 * directory (`work`) holding a Python tree imported as alice/web (a plain base image and a gzip top
 * on it; `tags` names its tags), the targets `serve` was given (closed after the suite), and
 * `migrate`: one run to a target (2 s per request) that must end within 30 s, with its report.
 */
export function hostileMigrateSuite(
  prefix: string,
  tags: (ids: { base: string; top: string }) => Record<string, string>,
): {
  readonly work: string;
  readonly storage: string;
  serve<T extends { close(): Promise<unknown> }>(h: Promise<T>): Promise<T>;
  migrate(to: string, extra?: string[], env?: Record<string, string>): Promise<CliResult & { report?: MigrateReport; reportText: string }>;
} {
  let work = '';
  const open: { close(): Promise<unknown> }[] = [];
  let n = 0;
  before(async () => {
    work = await mkdtemp(join(tmpdir(), prefix));
    const base = pyImage({ gzip: false, label: 'base' });
    const top = pyImage({ gzip: true, parent: base.id, size: 2000 });
    await writePythonTree(join(work, 'py'), [base, top], [{ name: 'alice/web', tags: tags({ base: base.id, top: top.id }) }]);
    const storage = join(work, 'storage');
    assert.equal((await cli(storage, ['user', 'add', 'alice', 'alice@example.com', '--password', 'alicepw1'])).code, 0);
    const r = await cli(storage, ['import', '--owner', 'alice', '--no-progress', join(work, 'py')]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
  });
  after(async () => {
    for (const s of open) await s.close();
    await rm(work, { recursive: true, force: true });
  });
  return {
    get work() {
      return work;
    },
    get storage() {
      return join(work, 'storage');
    },
    async serve(h) {
      const s = await h;
      open.push(s);
      return s;
    },
    async migrate(to, extra = [], env = {}) {
      const reportFile = join(work, `report-${++n}.json`);
      const started = Date.now();
      const r = await cli(join(work, 'storage'), ['migrate', '--to', to, '--no-progress', '--timeout', '2', '--report', reportFile, ...extra], env);
      assert.ok(Date.now() - started < 30_000, 'the migration ended in time');
      let reportText = '';
      let report: MigrateReport | undefined;
      try {
        reportText = await readFile(reportFile, 'utf8');
        report = JSON.parse(reportText) as MigrateReport;
      } catch {
        // no report: the run stopped before migrating
      }
      return { ...r, reportText, ...(report ? { report } : {}) };
    },
  };
}
