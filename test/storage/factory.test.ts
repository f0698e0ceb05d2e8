import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createDriver, type DriverConfig, type TempFileSweep } from '../../src/storage/drivers/index.js';

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'storage-factory-'));
  try {
    await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** A temporary file a killed process left a day ago, and a young one (a write in flight elsewhere). */
async function tempFiles(dir: string): Promise<{ stale: string; young: string }> {
  await mkdir(join(dir, 'k'));
  const stale = join(dir, 'k', 'json~tmp-0123456789abcdef');
  await writeFile(stale, 'partial');
  const old = new Date(Date.now() - 24 * 60 * 60 * 1000);
  await utimes(stale, old, old);
  const young = join(dir, 'young~tmp-0123456789abcdef');
  await writeFile(young, 'in flight elsewhere');
  return { stale, young };
}

describe('createDriver', () => {
  for (const storage of ['file', 'local'] as const) {
    it(`builds the filesystem driver for storage: ${storage}, rooted at storage_path`, () =>
      withDir(async (dir) => {
        const root = join(dir, 'data', 'nested');
        const driver = await createDriver({ storage, storage_path: root });
        assert.equal(driver.name, 'filesystem');
        assert.equal(existsSync(root), true, 'root created at startup');
        await driver.putContent('a/b', Buffer.from('bytes'));
        assert.equal(await readFile(join(root, 'a', 'b'), 'utf8'), 'bytes');
      }));
  }

  it('removes stale temporary files at startup', () =>
    withDir(async (dir) => {
      const { stale, young } = await tempFiles(dir);
      await createDriver({ storage: 'file', storage_path: dir });
      assert.equal(existsSync(stale), false);
      assert.equal(existsSync(young), true);
    }));

  it('hands the sweep to deferSweep: nothing removed before it runs, an aborted sweep stops, a run removes the stale file only', () =>
    withDir(async (dir) => {
      const { stale, young } = await tempFiles(dir);
      let sweep: TempFileSweep | undefined;
      await createDriver({ storage: 'file', storage_path: dir }, { deferSweep: (s) => (sweep = s) });
      assert.ok(sweep, 'the sweep was handed over');
      assert.equal(existsSync(stale), true, 'nothing swept before the caller runs it');
      const stopped = new AbortController();
      stopped.abort();
      assert.equal(await sweep(stopped.signal), 0);
      assert.equal(existsSync(stale), true, 'an aborted sweep walks nothing');
      assert.equal(await sweep(new AbortController().signal), 1);
      assert.equal(existsSync(stale), false);
      assert.equal(existsSync(young), true);
    }));

  it('builds an empty memory driver', async () => {
    const driver = await createDriver({ storage: 'memory', storage_path: '/unused' });
    assert.equal(driver.name, 'memory');
    assert.deepEqual(await driver.list(''), []);
  });

  it('rejects an unknown storage name, naming the key', async () => {
    const config = { storage: 'gcs', storage_path: '/unused' } as unknown as DriverConfig;
    await assert.rejects(createDriver(config), /^Error: storage: unknown storage driver "gcs"/);
  });
});
