import { ContentTooLargeError, isNotFound, type StorageDriver } from '../storage/driver.js';
import { jsonDepthExceeds, MAX_JSON_DEPTH } from '../http/body.js';

/**
 * Bound of a link: a digest or an image id as text (a v2 tag's link, a v1 tag). A store that answers
 * such a read with more is not believed, and not read further (GetOptions.maxSize).
 */
export const LINK_MAX = 1024;
/** Bound of a small JSON record of a few fields the registry writes itself (a v1 layer link, a layer's client checksum). */
export const RECORD_MAX = 64 * 1024;

/**
 * Content of a small object, or undefined when the key does not exist. `maxSize`: the most bytes
 * the record can hold (LINK_MAX, RECORD_MAX…); a larger object fails with ContentTooLargeError,
 * having read no more than about that (a huge or endless object in the store is never read whole).
 */
export async function readOptional(driver: StorageDriver, key: string, maxSize: number): Promise<Buffer | undefined> {
  try {
    return await driver.getContent(key, { maxSize });
  } catch (e) {
    if (isNotFound(e)) return undefined;
    throw e;
  }
}

/**
 * readOptional for an entry of a listed folder of records only this registry writes (journal
 * notices, expiry entries): one past `maxSize` is none of its own and is removed, as an unreadable
 * one is, rather than failing every pass over the folder.
 */
export async function readOrDropOversized(driver: StorageDriver, key: string, maxSize: number): Promise<Buffer | undefined> {
  try {
    return await readOptional(driver, key, maxSize);
  } catch (e) {
    if (!(e instanceof ContentTooLargeError)) throw e;
    await removeIfPresent(driver, key);
    return undefined;
  }
}

/** A stored record that nests deeper than any the registry writes (parseRecord). */
export class RecordTooDeepError extends Error {
  constructor(readonly key: string) {
    super(`${key} nests deeper than ${MAX_JSON_DEPTH}: not parsed`);
  }
}

/**
 * A stored JSON record parsed, its depth checked first (as a request body's is: deep nesting costs
 * JSON.parse far more than its size suggests). RecordTooDeepError past MAX_JSON_DEPTH, SyntaxError
 * for text that is not JSON.
 */
export function parseRecord<T>(raw: Buffer, key: string): T {
  if (jsonDepthExceeds(raw, MAX_JSON_DEPTH)) throw new RecordTooDeepError(key);
  return JSON.parse(raw.toString('utf8')) as T;
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
