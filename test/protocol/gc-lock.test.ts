import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { ROOT } from '../helpers/paths.js';
import { StorageLock } from '../../src/content/storage-lock.js';
import { GC_LOCK, GarbageCollector, GcBusyError } from '../../src/content/gc.js';
import { createFilesystemDriver } from '../../src/storage/drivers/filesystem.js';

interface Run {
  readonly pid: number;
  readonly done: Promise<{ code: number | string; stdout: string; stderr: string }>;
  stderr: () => string;
  kill: (signal: NodeJS.Signals) => void;
}

/** `legacy-registry gc` on a storage directory, as its own process. */
function gc(dataDir: string, ...args: string[]): Run {
  const proc = spawn(
    process.execPath,
    [join(ROOT, 'bin', 'legacy-registry.cjs'), 'gc', '--flavor', 'test', '--storage-path', dataDir, '--quiet', '--grace', '0', ...args],
    {
      env: { PATH: process.env.PATH ?? '' },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let stdout = '';
  let stderr = '';
  proc.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  proc.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const done = new Promise<{ code: number | string; stdout: string; stderr: string }>((resolve) =>
    proc.once('exit', (code, signal) => resolve({ code: code ?? signal ?? -1, stdout, stderr })),
  );
  return { pid: proc.pid!, done, stderr: () => stderr, kill: (s) => proc.kill(s) };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const exists = (p: string) =>
  stat(p).then(
    () => true,
    () => false,
  );

/**
 * Issue 15: one garbage collection at a time per storage, across processes and nodes. Each run holds
 * the storage-level leased lock (src/content/storage-lock.ts); a second run exits at once with
 * status 75 and names the holder, or waits with --wait; a killed run's lock does not block the next.
 */
describe('legacy-registry gc: one run at a time per storage', () => {
  let dir: string;
  let lockFile: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'lr-gc-lock-'));
    await mkdir(join(dir, 'blobs'), { recursive: true });
    lockFile = join(dir, StorageLock.keyOf(GC_LOCK));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  /**
   * An unreferenced blob written an hour ago: a run that finds a candidate to delete pauses for
   * --settle before its second mark, which keeps it inside its collection (holding the lock) a while.
   */
  async function plantGarbage(): Promise<string> {
    const body = `garbage ${Math.random()}`;
    const hex = createHash('sha256').update(body).digest('hex');
    const file = join(dir, 'blobs', 'sha256', hex.slice(0, 2), hex, 'data');
    await mkdir(dirname(file), { recursive: true });
    await writeFile(file, body);
    const old = new Date(Date.now() - 3600_000);
    await utimes(file, old, old);
    return file;
  }

  /** Until the lock object exists (a run has started its collection). */
  async function lockTaken(run: Run): Promise<void> {
    const deadline = Date.now() + 20_000;
    while (!(await exists(lockFile))) {
      assert.ok(Date.now() < deadline, `no lock object: ${run.stderr()}`);
      await sleep(50);
    }
  }

  it('a second run (and a dry run) exits with status 75 naming the holder; --wait runs once the first is done', async () => {
    // the settle pause keeps the first run inside its collection for a while
    const garbage = await plantGarbage();
    const first = gc(dir, '--settle', '20s');
    await lockTaken(first);
    const record = JSON.parse(await readFile(lockFile, 'utf8')) as { host: string; pid: number };
    assert.deepEqual([record.host, record.pid], [hostname(), first.pid]);
    const waiting = gc(dir, '--settle', '0', '--wait');
    const [second, dry] = await Promise.all([gc(dir, '--settle', '0').done, gc(dir, '--settle', '0', '--dry-run').done]);
    for (const r of [second, dry]) {
      assert.equal(r.code, 75, r.stderr);
      assert.equal(r.stdout, '', 'no summary: nothing was done');
      assert.match(
        r.stderr,
        new RegExp(
          `another garbage collection is running on this storage \\(host ${hostname().replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}, pid ${first.pid}, since \\d{4}-\\d\\d-\\d\\dT[^)]+\\); nothing done`,
        ),
      );
    }
    const a = await first.done;
    assert.equal(a.code, 0, a.stderr);
    assert.match(a.stdout, /deleted 1 of 1 blobs/);
    assert.ok(!(await exists(garbage)));
    const w = await waiting.done;
    assert.equal(w.code, 0, w.stderr);
    assert.match(w.stderr, /another garbage collection is running on this storage .*; waiting for it to finish/);
    assert.match(w.stdout, /deleted 0 of 0 blobs/);
    assert.ok(!(await exists(lockFile)), 'the lock is released');
  });

  it('a run killed mid-way does not block the next one (its process is gone: the lock is broken at once)', async () => {
    const garbage = await plantGarbage();
    const killed = gc(dir, '--settle', '30s');
    await lockTaken(killed);
    killed.kill('SIGKILL');
    await killed.done;
    assert.ok(await exists(lockFile), 'SIGKILL left the lock object behind');
    const t0 = Date.now();
    const next = await gc(dir, '--settle', '0').done;
    assert.equal(next.code, 0, next.stderr);
    assert.ok(Date.now() - t0 < 15_000, 'it did not wait out the lease');
    assert.ok(!(await exists(garbage)), 'the next run collected');
    assert.ok(!(await exists(lockFile)));
  });

  it("another node's run holds the lock until its lease ends; an expired lease is broken", async () => {
    await mkdir(dirname(lockFile), { recursive: true });
    const since = Date.now() - 5000;
    await writeFile(lockFile, JSON.stringify({ owner: 'node-b-run', expires: Date.now() + 60_000, host: 'node-b.example', pid: 4242, since }));
    const busy = await gc(dir, '--settle', '0').done;
    assert.equal(busy.code, 75, busy.stderr);
    assert.match(busy.stderr, new RegExp(`\\(host node-b\\.example, pid 4242, since ${new Date(since).toISOString().replace(/\./g, '\\.')}\\)`));
    assert.ok(await exists(lockFile), "the live holder's lock is left alone");
    // node b died without releasing: once its lease (plus the clock-skew allowance) is over, the lock goes
    await writeFile(lockFile, JSON.stringify({ owner: 'node-b-run', expires: Date.now() - 10_000, host: 'node-b.example', pid: 4242, since }));
    const next = await gc(dir, '--settle', '0').done;
    assert.equal(next.code, 0, next.stderr);
    assert.ok(!(await exists(lockFile)));
  });

  it("in one process (the server's periodic gc): a second run while one runs is refused with GcBusyError", async () => {
    const driver = createFilesystemDriver({ root: dir });
    const a = new GarbageCollector(driver);
    const b = new GarbageCollector(driver);
    assert.equal(a.exclusiveAcrossProcesses, true);
    await plantGarbage();
    const running = a.run({ graceMs: 0, settleMs: 1500 });
    await sleep(300);
    await assert.rejects(b.run({ graceMs: 0, settleMs: 0 }), (e: unknown) => e instanceof GcBusyError && e.holder.pid === process.pid);
    await assert.rejects(a.run({ graceMs: 0, settleMs: 0 }), (e: unknown) => e instanceof GcBusyError && e.holder.here);
    assert.equal((await running).blobs.deleted, 1);
    // free again
    assert.equal((await b.run({ graceMs: 0, settleMs: 0 })).blobs.deleted, 0);
  });
});
