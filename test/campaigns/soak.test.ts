import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runSoak } from '../../campaigns/soak.js';

/**
 * The soak (issue 17), short: 40 s of mixed v1/v2 pushes, pulls, search, catalog and pings at
 * 5 ops/s, sampled after a 30-s warm-up and once drained. Every answer is checked by the campaign itself (a wrong digest or
 * status is an error); here the run must have no error, hold its rate and leave no descriptor open
 * once drained. The full run (30 minutes) is `node dist/campaigns/run.js soak --seconds 1800 --rate 5`;
 * its figures are in the README.
 */
describe('soak campaign (short)', { timeout: 180_000 }, () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'lr-soak-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('40 s at 5 ops/s: no error, the rate held, descriptors back down after draining', async () => {
    const report = await runSoak({ dataDir: dir, seconds: 40, opsPerSecond: 5 });
    assert.deepEqual(report.errors, []);
    assert.ok(report.operations >= 150, `${report.operations} operations`);
    assert.equal(report.behindTicks, 0, `fell behind (${report.maxInFlight} in flight)`);
    assert.ok(report.samples.length >= 2, `${report.samples.length} samples`);
    const first = report.samples[0]!;
    const last = report.samples[report.samples.length - 1]!;
    assert.ok(last.fds <= first.fds + 5, `fds ${first.fds} → ${last.fds}`);
    assert.ok(Number.isFinite(last.heapUsedMiB) && last.heapUsedMiB > 0, 'heap in use read from the metrics');
  });
});
