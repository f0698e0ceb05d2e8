import { createHash } from 'node:crypto';
import type { StorageDriver } from '../storage/driver.js';
import { isNotFound } from '../storage/driver.js';
import { readOrDropOversized, RECORD_MAX, removeIfPresent } from '../content/small-objects.js';

/**
 * When cached content expires (issue 13; distribution keeps `scheduler-state.json`): one small
 * object per cached item in storage, so the schedule survives restarts and every node sharing the
 * storage sees it; any node's sweep may remove an expired item (removals are idempotent, a second
 * node's sweep finds nothing left to do).
 *
 *   mirror/_expiry/manifest/<hash of name>-<hex>   {"name","digest","expires"}
 *   mirror/_expiry/blob/<hash of name>-<hex>       the same, for a blob linked into name
 */
export type ExpiryKind = 'manifest' | 'blob';

export interface ExpiryEntry {
  readonly kind: ExpiryKind;
  readonly name: string;
  readonly digest: string;
  /** Epoch milliseconds. */
  readonly expires: number;
}

const ROOT = 'mirror/_expiry';
const nameHash = (name: string): string => createHash('sha256').update(name).digest('hex').slice(0, 24);
const entryKey = (kind: ExpiryKind, name: string, digest: string): string => `${ROOT}/${kind}/${nameHash(name)}-${digest.slice('sha256:'.length)}`;

export class ExpirySchedule {
  constructor(private readonly driver: StorageDriver) {}

  /** (Re)schedule an item: its expiry moves to `expires`. */
  async schedule(kind: ExpiryKind, name: string, digest: string, expires: number): Promise<void> {
    const e: ExpiryEntry = { kind, name, digest, expires };
    await this.driver.putContent(entryKey(kind, name, digest), Buffer.from(JSON.stringify(e)));
  }

  async remove(e: Pick<ExpiryEntry, 'kind' | 'name' | 'digest'>): Promise<void> {
    await removeIfPresent(this.driver, entryKey(e.kind, e.name, e.digest));
  }

  /** Every entry of a kind (sweeps; tests). */
  async entries(kind: ExpiryKind): Promise<ExpiryEntry[]> {
    let keys: string[];
    try {
      keys = await this.driver.list(`${ROOT}/${kind}`);
    } catch (e) {
      if (isNotFound(e)) return [];
      throw e;
    }
    const out: ExpiryEntry[] = [];
    for (const k of keys) {
      // one past any entry schedule() writes is dropped as an unreadable one is (it failed every sweep)
      const raw = await readOrDropOversized(this.driver, k, RECORD_MAX);
      if (!raw) continue;
      try {
        out.push(JSON.parse(raw.toString('utf8')) as ExpiryEntry);
      } catch {
        // a torn entry cannot happen (putContent is atomic); an unreadable one is dropped
        await removeIfPresent(this.driver, k);
      }
    }
    return out;
  }

  /** Whether another repository's cached copy of this blob is still scheduled. */
  async blobElsewhere(digest: string, exceptName: string): Promise<boolean> {
    const hex = digest.slice('sha256:'.length);
    let keys: string[];
    try {
      keys = await this.driver.list(`${ROOT}/blob`);
    } catch (e) {
      if (isNotFound(e)) return false;
      throw e;
    }
    const mine = entryKey('blob', exceptName, digest);
    return keys.some((k) => k.endsWith(`-${hex}`) && k !== mine);
  }
}
