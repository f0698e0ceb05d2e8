import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { PerformanceObserver, constants, performance } from 'node:perf_hooks';
import { trimWhenIdle } from '../../../src/http/idle-memory.js';
import { mallocTrim, mallocTrimStatus } from '../../../src/util/malloc-trim.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const glibc = (process.report.getReport() as { header?: { glibcVersionRuntime?: string } }).header?.glibcVersionRuntime;

describe('idle trimming of the C heap (src/http/idle-memory.ts, native/memory.c)', () => {
  it('is available wherever the C library is glibc on x86-64 or arm64 Linux (the build makes the module)', () => {
    const s = mallocTrimStatus();
    if (process.env.LR_MALLOC_TRIM === '0') return assert.equal(s.available, false);
    const expected = process.platform === 'linux' && ['x64', 'arm64'].includes(process.arch) && glibc !== undefined;
    // a CI machine with glibc must exercise the module, not silently go without it
    assert.equal(s.available, expected, s.reason);
    assert.equal(typeof mallocTrim(), 'boolean');
  });

  it('LR_MALLOC_TRIM=0 turns it off', () => {
    const url = new URL('../../../src/util/malloc-trim.js', import.meta.url).href;
    const r = spawnSync(
      process.execPath,
      ['--input-type=module', '-e', `import(${JSON.stringify(url)}).then((m) => console.log(JSON.stringify([m.mallocTrimStatus(), m.mallocTrim()])))`],
      {
        env: { ...process.env, LR_MALLOC_TRIM: '0' },
        encoding: 'utf8',
        cwd: fileURLToPath(new URL('.', import.meta.url)),
      },
    );
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), [{ available: false, reason: 'turned off (LR_MALLOC_TRIM=0)' }, false]);
  });

  it('trims once per idle period, never with a request in flight, and again after memory was noted released', async () => {
    let started = 0;
    let inFlight = 0;
    let released = 0;
    let trims = 0;
    const stop = trimWhenIdle({
      started: () => started,
      inFlight: () => inFlight,
      released: () => released,
      trim: () => {
        trims++;
        return true;
      },
      intervalMs: 10,
      trimAfterMs: 0,
      // no scavenge stands in the way: the new space is always under this
      minBytes: Number.MAX_SAFE_INTEGER,
    });
    try {
      await sleep(80);
      assert.equal(trims, 1, 'one trim in the first idle period');
      // busy: a request in flight, then requests keep starting
      inFlight = 1;
      started++;
      await sleep(60);
      assert.equal(trims, 1, 'no trim while a request is in flight');
      inFlight = 0;
      for (let i = 0; i < 6; i++) {
        started++;
        await sleep(5);
      }
      await sleep(80);
      assert.equal(trims, 2, 'the next idle period trims once more');
      released++;
      await sleep(60);
      assert.equal(trims, 3, 'memory noted released is trimmed at the next idle look');
      await sleep(60);
      assert.equal(trims, 3, 'and only once');
    } finally {
      stop();
    }
  });

  it('trims only once the server has been idle for trimAfterMs', async () => {
    let started = 0;
    let trims = 0;
    const stop = trimWhenIdle({
      started: () => started,
      inFlight: () => 0,
      released: () => 0,
      trim: () => (trims++, true),
      intervalMs: 10,
      trimAfterMs: 150,
      minBytes: Number.MAX_SAFE_INTEGER,
    });
    try {
      // requests keep coming every 40 ms for 300 ms: never idle that long
      for (let i = 0; i < 8; i++) {
        started++;
        await sleep(40);
      }
      assert.equal(trims, 0, 'short pauses between requests do not trim');
      await sleep(250);
      assert.equal(trims, 1, 'a pause past trimAfterMs does');
    } finally {
      stop();
    }
  });

  it('scavenges first (up to `attempts` times), then trims', async () => {
    // minor GCs seen by V8's own performance entries, with their start times
    const minors: number[] = [];
    const obs = new PerformanceObserver((list) => {
      for (const e of list.getEntries())
        if ((e as unknown as { detail?: { kind?: number } }).detail?.kind === constants.NODE_PERFORMANCE_GC_MINOR) minors.push(e.startTime);
    });
    obs.observe({ entryTypes: ['gc'] });
    let trimAt = -1;
    let trims = 0;
    const stop = trimWhenIdle({
      started: () => 0,
      inFlight: () => 0,
      released: () => 0,
      trim: () => {
        trims++;
        trimAt = performance.now();
        return true;
      },
      intervalMs: 20,
      trimAfterMs: 0,
      attempts: 2,
      // always above: both scavenge attempts are used before the trim
      minBytes: -1,
    });
    try {
      await sleep(200);
    } finally {
      stop();
    }
    await sleep(20);
    obs.disconnect();
    assert.equal(trims, 1);
    assert.ok(minors.filter((t) => t < trimAt).length >= 2, `minor GCs at ${minors.map((t) => t.toFixed(0)).join(', ')}, the trim at ${trimAt.toFixed(0)}`);
  });
});
