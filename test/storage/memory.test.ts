import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createMemoryDriver } from '../../src/storage/drivers/memory.js';
import { runDriverConformance } from './conformance.js';

runDriverConformance('memory', async () => ({
  driver: createMemoryDriver(),
  cleanup: async () => {},
}));

describe('memory driver', () => {
  it('gives every driver its own store', async () => {
    const a = createMemoryDriver();
    const b = createMemoryDriver();
    await a.putContent('k', Buffer.from('a'));
    assert.equal(a.name, 'memory');
    assert.deepEqual(await a.list(''), ['k']);
    assert.deepEqual(await b.list(''), []);
  });

  it('keeps the old bytes readable until a writer commits', async () => {
    const d = createMemoryDriver();
    await d.putContent('k', Buffer.from('old'));
    const w = await d.writer('k');
    w.stream.write(Buffer.from('new'));
    assert.equal((await d.getContent('k')).toString(), 'old');
    await w.commit();
    assert.equal((await d.getContent('k')).toString(), 'new');
  });
});
