import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ExpirySchedule } from '../../../src/mirror/expiry.js';
import { createMemoryDriver } from '../../../src/storage/drivers/memory.js';

const digest = `sha256:${'a'.repeat(64)}`;

/**
 * The mirror's expiry schedule reads its entries within a small record's bound (2026-12-07): an
 * object past it under the schedule (none of its own: an entry is a name and a digest) failed every
 * sweep, as an unreadable one did not. It is dropped as an unreadable one is.
 */
describe('mirror expiry schedule: an object past an entry’s bound', () => {
  it('is dropped, and the entries beside it are still listed', async () => {
    const d = createMemoryDriver();
    const s = new ExpirySchedule(d);
    await s.schedule('blob', 'library/app', digest, 123);
    await d.putContent('mirror/_expiry/blob/junk', Buffer.alloc(70 * 1024, 0x20));
    const got = await s.entries('blob');
    assert.deepEqual(got, [{ kind: 'blob', name: 'library/app', digest, expires: 123 }]);
    await assert.rejects(d.stat('mirror/_expiry/blob/junk'));
  });
});
