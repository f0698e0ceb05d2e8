import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { digestOf, isImageId, parseDigest, sha256Hex } from '../../../src/digest/digest.js';

describe('digest helpers', () => {
  it('sha256Hex: known values, several parts hash as their concatenation', () => {
    assert.equal(sha256Hex(Buffer.alloc(0)), 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
    assert.equal(sha256Hex(Buffer.from('abc')), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
    assert.equal(sha256Hex(Buffer.from('a'), 'b', Buffer.from('c')), sha256Hex(Buffer.from('abc')));
    assert.equal(digestOf(Buffer.from('abc')), 'sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
  });

  it('parseDigest accepts sha256:<64 lowercase hex> only', () => {
    const hex = 'a'.repeat(64);
    assert.equal(parseDigest(`sha256:${hex}`), `sha256:${hex}`);
    for (const bad of [
      hex,
      `sha256:${'A'.repeat(64)}`,
      `sha256:${hex.slice(1)}`,
      `sha256:${hex}0`,
      `sha512:${hex}`,
      `sha256:${hex}\n`,
      ` sha256:${hex}`,
      `sha256:${'g'.repeat(64)}`,
      '',
    ]) {
      assert.equal(parseDigest(bad), undefined, JSON.stringify(bad));
    }
  });

  it('isImageId: 64 or 16 lowercase hex', () => {
    assert.ok(isImageId('aeed688771e369924b4b3378c463ed84e5d800626f19ae0a9b6798ecb2670a52'));
    assert.ok(isImageId('0123456789abcdef'));
    for (const bad of ['0123456789abcde', '0123456789abcdef0', 'AEED688771E36992', 'sha256:0123456789abcdef', `${'a'.repeat(64)}\n`, '']) {
      assert.equal(isImageId(bad), false, JSON.stringify(bad));
    }
  });
});
