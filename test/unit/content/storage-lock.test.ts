import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { createFilesystemDriver, createMemoryDriver } from '../../../src/storage/drivers/index.js';
import { StorageLock } from '../../../src/content/storage-lock.js';
import { readOptional } from '../../../src/content/small-objects.js';

/* Two StorageLock instances on one directory stand for two registry nodes: their in-process queues
 * are separate, so only the lock objects in storage keep them apart. */
async function withDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), 'lr-lock-'));
  try {
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

describe('putContentIfAbsent', () => {
  it('filesystem: of concurrent creates of one key exactly one wins, and its bytes are there', async () => {
    await withDir(async (dir) => {
      const a = createFilesystemDriver({ root: dir });
      const b = createFilesystemDriver({ root: dir });
      const results = await Promise.all(Array.from({ length: 16 }, (_, i) => (i % 2 ? a : b).putContentIfAbsent!('x/y/lock', Buffer.from(`v${i}`))));
      assert.equal(results.filter(Boolean).length, 1);
      const winner = results.indexOf(true);
      assert.equal((await a.getContent('x/y/lock')).toString(), `v${winner}`);
      assert.deepEqual(await readdir(join(dir, 'x', 'y')), ['lock'], 'no temporary file left');
      assert.equal(await a.putContentIfAbsent!('x/y/lock', Buffer.from('again')), false);
      await a.delete('x/y/lock');
      assert.equal(await b.putContentIfAbsent!('x/y/lock', Buffer.from('again')), true);
    });
  });

  it('memory: false when present', async () => {
    const m = createMemoryDriver();
    assert.equal(await m.putContentIfAbsent!('k', Buffer.from('1')), true);
    assert.equal(await m.putContentIfAbsent!('k', Buffer.from('2')), false);
    assert.equal((await m.getContent('k')).toString(), '1');
  });
});

describe('StorageLock across nodes sharing a directory', () => {
  it('read-modify-write from two nodes loses no update, and leaves no lock object', async () => {
    await withDir(async (dir) => {
      const drivers = [createFilesystemDriver({ root: dir }), createFilesystemDriver({ root: dir })];
      const locks = drivers.map((d) => new StorageLock(d));
      assert.ok(locks[0]!.shared);
      const bump = async (n: number): Promise<void> => {
        const d = drivers[n % 2]!;
        await locks[n % 2]!.run('counter', async () => {
          const v = Number((await readOptional(d, 'counter', 64))?.toString() ?? '0');
          await sleep(1); // widen the window a lost update would need
          await d.putContent('counter', Buffer.from(String(v + 1)), { durable: false });
        });
      };
      await Promise.all(Array.from({ length: 40 }, (_, i) => bump(i)));
      assert.equal((await drivers[0]!.getContent('counter')).toString(), '40');
      assert.deepEqual(await drivers[0]!.list(''), ['counter'], 'lock objects removed on release');
    });
  });

  it('the same test without the storage lock does lose updates (the test can fail)', async () => {
    await withDir(async (dir) => {
      const d = createFilesystemDriver({ root: dir });
      const bump = async (): Promise<void> => {
        const v = Number((await readOptional(d, 'counter', 64))?.toString() ?? '0');
        await sleep(1);
        await d.putContent('counter', Buffer.from(String(v + 1)), { durable: false });
      };
      await Promise.all(Array.from({ length: 40 }, () => bump()));
      assert.notEqual((await d.getContent('counter')).toString(), '40');
    });
  });

  it('a lock whose lease ran out is broken, one breaker at a time', async () => {
    await withDir(async (dir) => {
      const d = createFilesystemDriver({ root: dir });
      // a record of a node elsewhere that died holding the lock
      await d.putContent(StorageLock.keyOf('x'), Buffer.from(JSON.stringify({ owner: 'gone', expires: Date.now() + 300, host: 'elsewhere', pid: 1 })));
      const lock = new StorageLock(d, { leaseMs: 300, skewMs: 100 });
      const other = new StorageLock(d, { leaseMs: 300, skewMs: 100 });
      const started = Date.now();
      let inside = 0;
      let most = 0;
      const work = async (): Promise<void> => {
        inside++;
        most = Math.max(most, inside);
        await sleep(20);
        inside--;
      };
      await Promise.all([lock.run('x', work), other.run('x', work), lock.run('x', work), other.run('x', work)]);
      assert.ok(Date.now() - started >= 350, 'waited for the lease and the skew allowance');
      assert.equal(most, 1);
      assert.deepEqual(await d.list('').catch(() => []), [], 'nothing left behind');
    });
  });

  it('a lock held by a dead process of this machine is broken at once', async () => {
    await withDir(async (dir) => {
      const d = createFilesystemDriver({ root: dir });
      const child = spawn(process.execPath, ['-e', '0']);
      const pid = child.pid!;
      await new Promise((r) => child.once('exit', r));
      await d.putContent(StorageLock.keyOf('y'), Buffer.from(JSON.stringify({ owner: 'dead', expires: Date.now() + 60_000, host: hostname(), pid })));
      const started = Date.now();
      await new StorageLock(d).run('y', async () => undefined);
      assert.ok(Date.now() - started < 5000);
    });
  });

  it('a live holder is waited for, and the wait is bounded', async () => {
    await withDir(async (dir) => {
      const d = createFilesystemDriver({ root: dir });
      const a = new StorageLock(d);
      const b = new StorageLock(d, { waitMs: 200 });
      let release!: () => void;
      const held = a.run('z', () => new Promise<void>((r) => (release = r)));
      await sleep(50);
      await assert.rejects(
        b.run('z', async () => undefined),
        /timed out waiting for lock/,
      );
      release();
      await held;
      await b.run('z', async () => undefined);
    });
  });
});
