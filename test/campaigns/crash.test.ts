import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCrashCampaign } from '../../campaigns/crash.js';

/**
 * The crash-consistency campaign (issue 17), short: a few SIGKILLs during concurrent v1 and v2
 * pushes and deletes; every acknowledged push pulls back, every acknowledged delete stays, nothing
 * half-visible, no upload left, the index knows every repository. The full run (200+ kills) is
 * `node dist/campaigns/run.js crash --kills 200`; its figures are in the README.
 */
describe('crash campaign (short)', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'lr-crash-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('survives 6 kills with no invariant broken', async () => {
    const seed = Number(process.env.CRASH_SEED ?? Date.now() % 1_000_000);
    // each kill's delay counted from the round's first acknowledged operation: with another test
    // file running beside this one (npm test runs two at a time), a delay from the round's start
    // could kill every round before anything was acknowledged (CI, 2026-12-05: no push acknowledged)
    const report = await runCrashCampaign({ dataDir: dir, kills: 6, seed, killAfterAck: true });
    assert.deepEqual(report.violations, [], `seed ${seed}`);
    assert.equal(report.kills, 6);
    assert.ok(report.acknowledged.v1Push + report.acknowledged.v2Push > 0, 'some pushes were acknowledged');
  });
});
