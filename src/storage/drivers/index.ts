import { resolve } from 'node:path';
import type { StorageDriver } from '../driver.js';
import { STALE_TEMP_AGE_MS, cleanStaleTempFiles, createFilesystemDriver } from './filesystem.js';
import { createMemoryDriver } from './memory.js';

export { cleanStaleTempFiles, createFilesystemDriver, isTempFileName, keyToPath, STALE_TEMP_AGE_MS } from './filesystem.js';
export type { FilesystemDriverOptions } from './filesystem.js';
export { createMemoryDriver } from './memory.js';

/** The configuration keys that choose and place the storage driver (same names as the config file). */
export interface DriverConfig {
  /** 'file' and 'local' are the same filesystem driver (both names exist in old configs). */
  readonly storage: 'file' | 'local' | 'memory';
  /** Root directory of the filesystem driver, relative to the working directory if not absolute. */
  readonly storage_path: string;
}

/**
 * Builds the configured driver. For the filesystem driver it also creates the root directory and
 * removes temporary files a killed process left there (older than STALE_TEMP_AGE_MS, so files of
 * other nodes sharing the directory are safe); this walks the key tree once at startup.
 */
export async function createDriver(config: DriverConfig): Promise<StorageDriver> {
  const storage: unknown = config.storage; // the config may come from anywhere at runtime
  switch (config.storage) {
    case 'file':
    case 'local': {
      const root = resolve(config.storage_path);
      const driver = createFilesystemDriver({ root });
      await driver.list(''); // creates the root, and fails early when it cannot be used
      await cleanStaleTempFiles(root, STALE_TEMP_AGE_MS);
      return driver;
    }
    case 'memory':
      return createMemoryDriver();
    default:
      config.storage satisfies never; // a new name in DriverConfig must get a case above
      throw new Error(`storage: unknown storage driver ${JSON.stringify(storage)} (expected file, local or memory)`);
  }
}
