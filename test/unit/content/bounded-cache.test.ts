import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { BoundedCache } from '../../../src/util/bounded-cache.js';

function clock(): { now: () => number; advance: (ms: number) => void } {
  let t = 1_000_000;
  return { now: () => t, advance: (ms) => void (t += ms) };
}

const byLength = (v: string): number => v.length;

describe('BoundedCache', () => {
  it('never returns an expired entry, and drops it when it is read', () => {
    const c = clock();
    const cache = new BoundedCache<string>({ maxEntries: 10, maxBytes: 1000, weight: byLength, now: c.now });
    cache.set('a', 'xxxx', 100);
    assert.equal(cache.get('a'), 'xxxx');
    c.advance(99);
    assert.equal(cache.peek('a'), 'xxxx');
    c.advance(1);
    assert.equal(cache.peek('a'), undefined);
    assert.equal(cache.size, 1, 'peek leaves it');
    assert.equal(cache.get('a'), undefined);
    assert.equal(cache.size, 0);
    assert.equal(cache.bytes, 0);
  });

  it('is bounded by entries: the least recently used goes first', () => {
    const cache = new BoundedCache<string>({ maxEntries: 3, maxBytes: 1000, weight: byLength });
    for (const k of ['a', 'b', 'c']) cache.set(k, k, 60_000);
    assert.equal(cache.get('a'), 'a'); // a is now the most recent, b the least
    cache.set('d', 'd', 60_000);
    assert.equal(cache.size, 3);
    assert.equal(cache.peek('b'), undefined);
    assert.deepEqual(
      ['a', 'c', 'd'].map((k) => cache.peek(k)),
      ['a', 'c', 'd'],
    );
  });

  it('is bounded by bytes as the weight function counts them', () => {
    const cache = new BoundedCache<string>({ maxEntries: 1000, maxBytes: 100, weight: byLength });
    for (let i = 0; i < 10; i++) cache.set(`k${i}`, 'x'.repeat(30), 60_000);
    assert.equal(cache.size, 3);
    assert.equal(cache.bytes, 90);
    assert.deepEqual(
      ['k7', 'k8', 'k9'].map((k) => cache.peek(k)?.length),
      [30, 30, 30],
    );
    // one value heavier than the whole budget is not kept, and evicts nothing
    assert.equal(cache.set('huge', 'x'.repeat(101), 60_000), false);
    assert.equal(cache.size, 3);
    assert.equal(cache.peek('huge'), undefined);
    // replacing a key counts its new weight only
    cache.set('k9', 'x'.repeat(10), 60_000);
    assert.equal(cache.bytes, 70);
  });

  it('evicts expired entries before live ones, whatever their recency', () => {
    const c = clock();
    const cache = new BoundedCache<string>({ maxEntries: 3, maxBytes: 1000, weight: byLength, now: c.now });
    cache.set('live1', 'a', 60_000);
    cache.set('short', 'b', 10);
    cache.set('live2', 'c', 60_000);
    c.advance(20);
    cache.set('live3', 'd', 60_000);
    assert.deepEqual(
      ['live1', 'short', 'live2', 'live3'].map((k) => cache.peek(k)),
      ['a', undefined, 'c', 'd'],
    );
  });

  it('a value that grows after it was stored is weighed again', () => {
    const cache = new BoundedCache<{ n: number }>({ maxEntries: 10, maxBytes: 100, weight: (v) => v.n });
    const a = { n: 1 };
    const b = { n: 1 };
    cache.set('a', a, 60_000);
    cache.set('b', b, 60_000);
    b.n = 80;
    cache.reweigh('b');
    assert.equal(cache.bytes, 81);
    a.n = 30; // now 110 > 100: the least recently used (a, weighing does not count as a use) goes
    cache.reweigh('a');
    assert.equal(cache.peek('a'), undefined);
    assert.equal(cache.peek('b'), b);
    assert.equal(cache.bytes, 80);
    b.n = 500; // alone heavier than the budget
    cache.reweigh('b');
    assert.equal(cache.size, 0);
    assert.equal(cache.bytes, 0);
  });

  it('deletes by key and by predicate; ttl 0 keeps nothing', () => {
    const cache = new BoundedCache<string>({ maxEntries: 10, maxBytes: 1000, weight: byLength });
    for (const k of ['x/1', 'x/2', 'y/1']) cache.set(k, k, 60_000);
    assert.equal(
      cache.deleteWhere((k) => k.startsWith('x/')),
      2,
    );
    assert.equal(cache.delete('y/1'), true);
    assert.equal(cache.delete('y/1'), false);
    assert.equal(cache.bytes, 0);
    assert.equal(cache.set('z', 'z', 0), false);
    assert.equal(cache.size, 0);
  });

  it('holds its bounds under random use (entries, bytes, no expired value returned)', () => {
    const c = clock();
    const cache = new BoundedCache<string>({ maxEntries: 50, maxBytes: 2000, weight: (v, k) => v.length + k.length, now: c.now });
    let seed = 7;
    const rnd = (n: number): number => (seed = (seed * 1103515245 + 12345) % 2 ** 31) % n;
    const expiry = new Map<string, number>();
    for (let i = 0; i < 20_000; i++) {
      const k = `k${rnd(200)}`;
      if (rnd(3) === 0) {
        const ttl = rnd(500);
        if (cache.set(k, 'v'.repeat(rnd(120)), ttl)) expiry.set(k, c.now() + ttl);
      } else {
        const v = cache.get(k);
        if (v !== undefined) assert.ok(expiry.get(k)! > c.now(), 'an expired value was returned');
      }
      c.advance(rnd(5));
      assert.ok(cache.size <= 50);
      assert.ok(cache.bytes <= 2000);
    }
  });
});
