import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { StorageDriver } from '../../../src/storage/driver.js';
import { CachingDriver } from '../../../src/storage/drivers/caching.js';
import { createMemoryDriver } from '../../../src/storage/drivers/memory.js';

/** The memory driver, counting the reads that reach it (a read the cache answers does not). */
function counted(): { driver: StorageDriver; reads: () => number } {
  const inner = createMemoryDriver();
  let n = 0;
  const driver: StorageDriver = Object.create(inner) as StorageDriver;
  driver.getContent = (key: string) => {
    n++;
    return inner.getContent(key);
  };
  driver.list = (prefix: string) => {
    n++;
    return inner.list(prefix);
  };
  return { driver, reads: () => n };
}

const KEY = (i: number): string => `v2/repositories/a/b/_manifests/tags/t${i}/current/link`;

describe('CachingDriver: bounded by entries and by bytes (one bounded cache for content, stats, listings)', () => {
  it('keeps at most maxEntries: the least recently used is read again from storage', async () => {
    const { driver, reads } = counted();
    for (let i = 0; i < 20; i++) await driver.putContent(KEY(i), Buffer.from(`sha256:${i}`));
    const c = new CachingDriver(driver, { ttlMs: 60_000, maxEntries: 10 });
    for (let i = 0; i < 20; i++) await c.getContent(KEY(i));
    assert.equal(reads(), 20);
    assert.equal(c.usage.entries, 10);
    await c.getContent(KEY(19)); // recent: from memory
    assert.equal(reads(), 20);
    await c.getContent(KEY(0)); // evicted: from storage
    assert.equal(reads(), 21);
  });

  it('keeps at most maxBytes of content, listings included', async () => {
    const { driver, reads } = counted();
    const big = Buffer.alloc(10_000, 0x61);
    for (let i = 0; i < 20; i++) await driver.putContent(KEY(i), big);
    const c = new CachingDriver(driver, { ttlMs: 60_000, maxBytes: 50_000 });
    for (let i = 0; i < 20; i++) await c.getContent(KEY(i));
    assert.ok(c.usage.bytes <= 50_000, `${c.usage.bytes} bytes kept`);
    assert.ok(c.usage.entries <= 5);
    const before = reads();
    await c.getContent(KEY(0));
    assert.equal(reads(), before + 1, 'the oldest was evicted');
    await c.getContent(KEY(19));
    assert.equal(reads(), before + 1, 'the newest is still kept');
    // a listing counts its names too
    await c.list('v2/repositories/a/b/_manifests/tags');
    assert.ok(c.usage.bytes <= 50_000);
  });

  it('an expired entry is not served and does not stay', async () => {
    const { driver, reads } = counted();
    let now = 1_000;
    await driver.putContent(KEY(1), Buffer.from('x'));
    const c = new CachingDriver(driver, { ttlMs: 100, now: () => now });
    await c.getContent(KEY(1));
    await c.getContent(KEY(1));
    assert.equal(reads(), 1);
    now += 100;
    await c.getContent(KEY(1));
    assert.equal(reads(), 2);
    assert.equal(c.usage.entries, 1);
  });
});
