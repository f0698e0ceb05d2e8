import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { jsonDepthExceeds, MAX_JSON_DEPTH } from '../../../src/http/body.js';

const b = (s: string): Buffer => Buffer.from(s, 'utf8');

describe('jsonDepthExceeds (the pre-scan before JSON.parse)', () => {
  it('counts arrays and objects, and only them', () => {
    assert.equal(jsonDepthExceeds(b('[[{"a": [1]}]]'), 4), false);
    assert.equal(jsonDepthExceeds(b('[[{"a": [1]}]]'), 3), true);
    assert.equal(jsonDepthExceeds(b('"plain"'), 0), false);
    assert.equal(jsonDepthExceeds(b('[1, [2], [3], [4]]'), 2), false, 'siblings do not add up');
  });

  it('skips brackets inside strings, escaped quotes included', () => {
    assert.equal(jsonDepthExceeds(b('{"k": "[[[[{{{{"}'), 1), false);
    assert.equal(jsonDepthExceeds(b('{"k": "\\"[[[[", "l": "\\\\"}'), 1), false);
    assert.equal(jsonDepthExceeds(b('{"k": "\\\\", "l": [[1]]}'), 2), true, 'an escaped backslash ends before the quote');
    assert.equal(jsonDepthExceeds(b('["é[", "漢{"]'), 1), false, 'multi-byte text');
  });

  it('is linear: two million levels are refused in one pass', () => {
    const n = 2 * 1024 * 1024;
    const text = b('['.repeat(n) + ']'.repeat(n));
    assert.equal(jsonDepthExceeds(text, MAX_JSON_DEPTH), true);
    assert.equal(jsonDepthExceeds(b('['.repeat(MAX_JSON_DEPTH) + ']'.repeat(MAX_JSON_DEPTH)), MAX_JSON_DEPTH), false);
  });
});
