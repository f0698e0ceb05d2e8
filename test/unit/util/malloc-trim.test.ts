import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mallocRetain, mallocTrimStatus, RETAIN_MMAP_THRESHOLD, RETAIN_TRIM_THRESHOLD } from '../../../src/util/malloc-trim.js';

/** native/memory.c's retain(): the thresholds a busy process keeps its freed C heap under. */
describe('mallocRetain (native/memory.c retain)', () => {
  const status = mallocTrimStatus();
  const skip = status.available ? false : `memory module not loaded: ${status.reason}`;

  it('is false where the module is not loaded', { skip: status.available ? 'the module is loaded here' : false }, () => {
    assert.equal(mallocRetain(), false);
  });

  it('sets the thresholds where glibc has mallopt, and refuses values out of range', { skip }, () => {
    assert.equal(RETAIN_TRIM_THRESHOLD, 64 * 1024 * 1024);
    assert.equal(RETAIN_MMAP_THRESHOLD, 32 * 1024 * 1024);
    assert.equal(mallocRetain(), true);
    // glibc caps the mmap threshold at 32 MiB; none may be zero, negative or past 1 GiB
    assert.equal(mallocRetain(RETAIN_TRIM_THRESHOLD, 64 * 1024 * 1024), false);
    assert.equal(mallocRetain(0, RETAIN_MMAP_THRESHOLD), false);
    assert.equal(mallocRetain(RETAIN_TRIM_THRESHOLD, -1), false);
    assert.equal(mallocRetain(2 * 1024 * 1024 * 1024, RETAIN_MMAP_THRESHOLD), false);
  });

  it('leaves glibc alone with LR_MALLOC_RETAIN=0', { skip }, () => {
    const before = process.env.LR_MALLOC_RETAIN;
    process.env.LR_MALLOC_RETAIN = '0';
    try {
      assert.equal(mallocRetain(), false);
    } finally {
      if (before === undefined) delete process.env.LR_MALLOC_RETAIN;
      else process.env.LR_MALLOC_RETAIN = before;
    }
  });
});
