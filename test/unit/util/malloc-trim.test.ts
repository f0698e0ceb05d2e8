import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { mallocRetain, mallocTrimStatus, mapTextInPages, RETAIN_MMAP_THRESHOLD, RETAIN_TRIM_THRESHOLD } from '../../../src/util/malloc-trim.js';

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

/** This process's resident pages of its own executable (kB, from smaps). */
function executableRssKb(): number {
  const exe = readFileSync('/proc/self/cmdline', 'latin1').split('\0')[0]!;
  let kb = 0;
  let mine = false;
  for (const line of readFileSync('/proc/self/smaps', 'latin1').split('\n')) {
    const m = /^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \S+\s+(.*)$/.exec(line);
    if (m) mine = m[1] === process.execPath || m[1] === exe;
    else if (mine && line.startsWith('Rss:')) kb += Number(line.split(/\s+/)[1]);
  }
  return kb;
}

describe("mapTextInPages (native/memory.c): an idle server drops its executable's resident pages", () => {
  const status = mallocTrimStatus();
  const linux = process.platform === 'linux' && status.available;
  it('drops the read-only mappings of node, which keeps running on them', { skip: !linux && 'no native memory module here' }, () => {
    const before = executableRssKb();
    const bytes = mapTextInPages();
    const after = executableRssKb();
    assert.ok(bytes > 1024 * 1024, `${bytes} bytes of mappings advised`);
    assert.ok(after < before, `resident ${before} kB before, ${after} kB after`);
    // the code runs on: JSON, regular expressions, crypto and the event loop after the drop
    assert.equal(JSON.parse(JSON.stringify({ a: [1, 2] })).a[1], 2);
    assert.match('abc123', /\d+/);
    assert.ok(executableRssKb() > 0);
  });

  it(
    'leaves the relocated pages of the executable in place: the process runs on after a second call',
    { skip: !linux && 'no native memory module here' },
    async () => {
      mapTextInPages();
      const { createHash } = await import('node:crypto');
      assert.equal(createHash('sha256').update('x').digest('hex').length, 64);
      await new Promise((r) => setTimeout(r, 10));
      assert.ok(mapTextInPages() > 0);
    },
  );
});
