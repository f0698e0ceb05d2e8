/** tarsumMatches (PUT checksum, spec §2.8): either header rule of spec §6.2, each under its own label. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { tarsumMatches, type LayerLink } from '../../../src/content/v1-images.js';

const hex = (c: string): string => c.repeat(64);
const set = (a: string, b: string, c: string) => ({
  v0: `tarsum+sha256:${hex(a)}`,
  v0Plain: `tarsum+sha256:${hex(b)}`,
  v1: `tarsum.v1+sha256:${hex(c)}`,
  dev: `tarsum.dev+sha256:${hex(c)}`,
});
const link: NonNullable<LayerLink['tarsum']> = { ...set('a', 'b', 'c'), go110: set('d', 'e', 'f') };

describe('tarsumMatches', () => {
  it('accepts every computed value under its label, both rules', () => {
    for (const c of ['a', 'b', 'd', 'e']) assert.equal(tarsumMatches(`tarsum+sha256:${hex(c)}`, link), true, c);
    for (const c of ['c', 'f']) {
      assert.equal(tarsumMatches(`tarsum.v1+sha256:${hex(c)}`, link), true, c);
      assert.equal(tarsumMatches(`tarsum.dev+sha256:${hex(c)}`, link), true, c);
    }
  });

  it('refuses unknown values and known values under another label', () => {
    assert.equal(tarsumMatches(`tarsum+sha256:${hex('0')}`, link), false);
    assert.equal(tarsumMatches(`tarsum+sha256:${hex('f')}`, link), false);
    assert.equal(tarsumMatches(`tarsum.v1+sha256:${hex('d')}`, link), false);
    assert.equal(tarsumMatches(`tarsum.dev+sha256:${hex('a')}`, link), false);
  });

  it('a link stored before the Go ≥ 1.10 sums existed (no go110) still checks the original ones', () => {
    const { go110: _, ...old } = link;
    assert.equal(tarsumMatches(`tarsum+sha256:${hex('a')}`, old), true);
    assert.equal(tarsumMatches(`tarsum+sha256:${hex('d')}`, old), false);
    assert.equal(tarsumMatches(`tarsum.v1+sha256:${hex('c')}`, old), true);
  });

  it('algorithms that are not computed (sha512, …) are not compared', () => {
    assert.equal(tarsumMatches(`tarsum+sha512:${'0'.repeat(128)}`, link), true);
  });
});

describe('tarsumMatches on a link with v0 sums only (a push: v1/dev computed on demand)', () => {
  const v0only: NonNullable<LayerLink['tarsum']> = {
    v0: `tarsum+sha256:${hex('a')}`,
    v0Plain: `tarsum+sha256:${hex('b')}`,
    go110: { v0: `tarsum+sha256:${hex('d')}`, v0Plain: `tarsum+sha256:${hex('e')}` },
  };
  it('v0 is decided; v1 and dev are undefined (not computed), never true', () => {
    assert.equal(tarsumMatches(`tarsum+sha256:${hex('d')}`, v0only), true);
    assert.equal(tarsumMatches(`tarsum+sha256:${hex('0')}`, v0only), false);
    assert.equal(tarsumMatches(`tarsum.v1+sha256:${hex('c')}`, v0only), undefined);
    assert.equal(tarsumMatches(`tarsum.dev+sha256:${hex('c')}`, v0only), undefined);
  });
});
