import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { pyJson } from '../../../src/http/py-json.js';
import { parseRange } from '../../../src/http/respond.js';

describe('pyJson (Python json.dumps(sort_keys=True))', () => {
  it('sorts keys and uses ", " and ": " separators', () => {
    assert.equal(pyJson({ b: 1, a: [true, null, 'x'] }), '{"a": [true, null, "x"], "b": 1}');
    assert.equal(pyJson({ error: 'Image not found' }), '{"error": "Image not found"}');
    assert.equal(pyJson('"docker-registry server"'), '"\\"docker-registry server\\""');
    assert.equal(pyJson([]), '[]');
    assert.equal(pyJson({}), '{}');
  });
  it('escapes non-ASCII like ensure_ascii', () => {
    assert.equal(pyJson('é😀\u007f'), '"\\u00e9\\ud83d\\ude00\u007f"');
  });
});

describe('parseRange (spec §2.6, RFC form)', () => {
  it('parses the forms the CLI sends and clamps the end', () => {
    assert.deepEqual(parseRange('bytes=0-99', 1000), { start: 0, end: 99 });
    assert.deepEqual(parseRange('bytes=500-', 1000), { start: 500, end: 999 });
    assert.deepEqual(parseRange('bytes=500-1000', 1000), { start: 500, end: 999 });
    assert.deepEqual(parseRange('bytes=999-999', 1000), { start: 999, end: 999 });
  });
  it('ignores other forms and refuses unsatisfiable ones', () => {
    assert.equal(parseRange(undefined, 10), undefined);
    assert.deepEqual(parseRange('bytes=-5', 10), { start: 5, end: 9 }, 'a suffix range: the last 5 bytes (security issue 10, finding 18)');
    assert.equal(parseRange('bytes=0-1,3-4', 10), undefined);
    assert.equal(parseRange('lines=1-2', 10), undefined);
    assert.equal(parseRange('bytes=10-', 10), 'unsatisfiable');
    assert.equal(parseRange('bytes=5-2', 10), 'unsatisfiable');
    assert.equal(parseRange('bytes=0-', 0), 'unsatisfiable');
  });
});
