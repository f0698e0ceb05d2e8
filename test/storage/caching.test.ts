import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PathNotFoundError } from '../../src/storage/driver.js';
import { CachingDriver } from '../../src/storage/drivers/caching.js';
import { createFilesystemDriver } from '../../src/storage/drivers/filesystem.js';
import { createMemoryDriver } from '../../src/storage/drivers/memory.js';
import { expectRejects, runDriverConformance } from './conformance.js';

// Every key cached for a minute: the whole conformance suite must still hold, i.e. every write
// through the cache drops what it made stale.
runDriverConformance('caching over memory', async () => ({
  driver: new CachingDriver(createMemoryDriver(), { ttlMs: 60_000, prefixes: [''] }),
  cleanup: async () => {},
}));

/** Two registry nodes over one directory, each with its own cache, and a clock we move. */
async function twoNodes(ttlMs = 1000) {
  const root = await mkdtemp(join(tmpdir(), 'storage-cache-nodes-'));
  let now = 1_000_000;
  const clock = { now: () => now, advance: (ms: number) => (now += ms) };
  const a = new CachingDriver(createFilesystemDriver({ root }), { ttlMs, now: clock.now });
  const b = new CachingDriver(createFilesystemDriver({ root }), { ttlMs, now: clock.now });
  return { a, b, clock, cleanup: () => rm(root, { recursive: true, force: true }) };
}

describe('caching driver across nodes', () => {
  const tag = 'v2/repositories/x/y/_manifests/tags/latest';

  it('never caches a missing key: a write on another node is visible at once', async () => {
    const { a, b, cleanup } = await twoNodes();
    try {
      await expectRejects(() => b.getContent(tag), PathNotFoundError, 'getContent');
      await expectRejects(() => b.stat(tag), PathNotFoundError, 'stat');
      await a.putContent(tag, Buffer.from('sha256:1'));
      assert.equal((await b.getContent(tag)).toString(), 'sha256:1');
      assert.equal((await b.stat(tag)).size, 8);
    } finally {
      await cleanup();
    }
  });

  it("serves another node's change after the ttl, and its own change at once", async () => {
    const { a, b, clock, cleanup } = await twoNodes();
    try {
      await a.putContent(tag, Buffer.from('sha256:1'));
      assert.equal((await b.getContent(tag)).toString(), 'sha256:1');
      assert.deepEqual(await b.list('v2/repositories/x/y/_manifests/tags'), [tag]);
      await a.putContent(tag, Buffer.from('sha256:2'));
      await a.putContent(`${tag}2`, Buffer.from('sha256:2'));
      // b still has its cached answers within the ttl …
      assert.equal((await b.getContent(tag)).toString(), 'sha256:1');
      assert.deepEqual(await b.list('v2/repositories/x/y/_manifests/tags'), [tag]);
      // … but its own write is visible at once
      await b.putContent(`${tag}3`, Buffer.from('sha256:3'));
      assert.deepEqual(await b.list('v2/repositories/x/y/_manifests/tags'), [tag, `${tag}2`, `${tag}3`]);
      clock.advance(1001);
      assert.equal((await b.getContent(tag)).toString(), 'sha256:2');
      // a delete on a, seen by b after the ttl
      await a.delete('v2/repositories/x/y');
      clock.advance(1001);
      await expectRejects(() => b.getContent(tag), PathNotFoundError, 'getContent');
    } finally {
      await cleanup();
    }
  });

  it('drops a whole subtree on delete and never caches upload state', async () => {
    const { a, b, cleanup } = await twoNodes(60_000);
    try {
      await a.putContent(tag, Buffer.from('d'));
      assert.equal((await a.getContent(tag)).toString(), 'd');
      await a.delete('v2/repositories/x');
      await expectRejects(() => a.getContent(tag), PathNotFoundError, 'getContent');
      await expectRejects(() => a.list('v2/repositories/x/y/_manifests/tags'), PathNotFoundError, 'list');
      // upload state continues on any node: never served from a cache
      await a.putContent('uploads/u1/state', Buffer.from('{"offset":1}'));
      assert.equal((await b.getContent('uploads/u1/state')).toString(), '{"offset":1}');
      await a.putContent('uploads/u1/state', Buffer.from('{"offset":2}'));
      assert.equal((await b.getContent('uploads/u1/state')).toString(), '{"offset":2}');
    } finally {
      await cleanup();
    }
  });
});
