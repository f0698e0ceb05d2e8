import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { IndexJournal, V1_PENDING_ROOT, type PendingNotice, type V1PushNotice } from '../../../src/content/index-journal.js';
import { MAX_ANCESTRY } from '../../../src/content/v1-images.js';
import { createMemoryDriver } from '../../../src/storage/drivers/memory.js';

const hex = (n: number): string => n.toString(16).padStart(64, '0');

/**
 * The index journal reads back what it wrote, whatever its size within what a request can make: a
 * split registry's v1 push notice lists the pushed chain (up to MAX_ANCESTRY ids, ~67 KB), a v2
 * delete by digest every tag it untagged. Read within 64 KiB (2026-12-07, the bound on stored
 * records), such a notice failed every replay, the notices after it included, for good.
 */
describe('index journal: notices as large as a request makes them', () => {
  it('a v1 push notice of a chain of MAX_ANCESTRY images is read back and replayed', async () => {
    const j = new IndexJournal<V1PushNotice>(createMemoryDriver(), V1_PENDING_ROOT);
    const images = Array.from({ length: MAX_ANCESTRY }, (_, i) => hex(i));
    await j.begin({ name: 'library/deep', tag: 'latest', images, authorization: 'Token x' });
    const pending = await j.pending();
    assert.equal(pending.length, 1);
    assert.deepEqual(pending[0]!.notice.images, images);
    const sent: V1PushNotice[] = [];
    const r = await j.replay(
      async (n) => void sent.push(n),
      (_n, e) => assert.fail(String(e)),
      Date.now() + 60_000,
    );
    assert.deepEqual(r, { sent: 1, dropped: 0 });
    assert.equal(sent[0]!.images.length, MAX_ANCESTRY);
  });

  it('a delete notice of 5,000 tags is read back; an object past the bound is dropped as junk, the others still replayed', async () => {
    const d = createMemoryDriver();
    const j = new IndexJournal<PendingNotice>(d);
    const tags = Array.from({ length: 5000 }, (_, i) => `release-${String(i).padStart(5, '0')}-${'x'.repeat(40)}`);
    await j.begin({ op: 'deleted', name: 'team/app', tags, account: 'alice', admin: false });
    await d.putContent('v2/_pending/junk', Buffer.alloc(17 * 1024 * 1024, 0x20));
    const pending = await j.pending();
    assert.equal(pending.length, 1);
    assert.equal(pending[0]!.notice.tags!.length, 5000);
    await assert.rejects(d.stat('v2/_pending/junk'), 'the junk object is removed');
  });
});
