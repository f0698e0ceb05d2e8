/** V1TokenSigner's expiry boundary (issue 17, mutation group tokens): a token is dead at its expiry second. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { V1TokenSigner } from '../../../src/auth/v1-token.js';

describe('V1TokenSigner expiry', () => {
  const signer = new V1TokenSigner(Buffer.from('unit-secret'), 10);
  // issued at t = 0 with a 10 s lifetime: expires = 10 (epoch seconds)
  const header = `Token ${signer.issue('ns/repo', 'read', 7, 0)}`;

  it('is valid until the last millisecond before its expiry second, and not at it', () => {
    assert.deepEqual(signer.verify(header, 9_999), { repository: 'ns/repo', access: 'read', userId: 7, expires: 10 });
    assert.equal(signer.verify(header, 10_000), undefined);
    assert.equal(signer.verify(header, 10_001), undefined);
  });
});
