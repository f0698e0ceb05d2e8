import { mkdir, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { StorageLock } from '../../src/content/storage-lock.js';

/**
 * Holds a storage lock of a filesystem storage from outside, as another node holding it would (its
 * lock object, owned elsewhere, unexpired): every request that needs it waits until the returned
 * function lets it go. `name` is the lock's name (`repository\n<ns>/<repo>` for a repository's).
 */
export async function holdLock(dataDir: string, name: string): Promise<() => Promise<void>> {
  const file = join(dataDir, StorageLock.keyOf(name));
  await mkdir(dirname(file), { recursive: true });
  await writeFile(file, JSON.stringify({ owner: 'test', expires: Date.now() + 600_000, host: 'elsewhere', pid: 1, since: Date.now() }));
  return () => rm(file, { force: true });
}
