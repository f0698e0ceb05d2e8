import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { parseRange } from '../../../src/http/respond.js';

describe('parseRange (spec §2.6 REC, RFC 7233)', () => {
  it('bytes=a-b and bytes=a- as before (end clamped)', () => {
    assert.deepEqual(parseRange('bytes=0-9', 100), { start: 0, end: 9 });
    assert.deepEqual(parseRange('bytes=10-100', 100), { start: 10, end: 99 });
    assert.deepEqual(parseRange('bytes=10-', 100), { start: 10, end: 99 });
    assert.equal(parseRange('bytes=100-', 100), 'unsatisfiable');
    assert.equal(parseRange('bytes=5-4', 100), 'unsatisfiable');
  });

  it('suffix ranges: the last n bytes, all of them when n ≥ size, 416 for n = 0 or an empty body', () => {
    assert.deepEqual(parseRange('bytes=-5', 100), { start: 95, end: 99 });
    assert.deepEqual(parseRange(' bytes = - 100 ', 100), { start: 0, end: 99 });
    assert.deepEqual(parseRange('bytes=-1000', 100), { start: 0, end: 99 });
    assert.deepEqual(parseRange(`bytes=-${'9'.repeat(400)}`, 100), { start: 0, end: 99 });
    assert.equal(parseRange('bytes=-0', 100), 'unsatisfiable');
    assert.equal(parseRange('bytes=-5', 0), 'unsatisfiable');
  });

  it('anything else is ignored', () => {
    for (const h of ['bytes=0-1,5-6', 'items=0-1', 'bytes=-', 'bytes=--5', 'bytes=a-b', '']) assert.equal(parseRange(h, 100), undefined, h);
  });
});
