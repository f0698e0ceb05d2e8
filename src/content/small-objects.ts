import { isNotFound, type StorageDriver } from '../storage/driver.js';

/** Content of a small object, or undefined when the key does not exist. */
export async function readOptional(driver: StorageDriver, key: string): Promise<Buffer | undefined> {
  try {
    return await driver.getContent(key);
  } catch (e) {
    if (isNotFound(e)) return undefined;
    throw e;
  }
}

/** The keys directly below a prefix, or none when the prefix does not exist. */
export async function listOptional(driver: StorageDriver, prefix: string): Promise<string[]> {
  try {
    return await driver.list(prefix);
  } catch (e) {
    if (isNotFound(e)) return [];
    throw e;
  }
}

export async function keyExists(driver: StorageDriver, key: string): Promise<boolean> {
  try {
    await driver.stat(key);
    return true;
  } catch (e) {
    if (isNotFound(e)) return false;
    throw e;
  }
}

/** Delete a key (and what is below it); false when there was nothing. */
export async function removeIfPresent(driver: StorageDriver, key: string): Promise<boolean> {
  try {
    await driver.delete(key);
    return true;
  } catch (e) {
    if (isNotFound(e)) return false;
    throw e;
  }
}
