import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { peakRssMiB } from '../../../src/migrate/report.js';

const REPORT = new URL('../../../src/migrate/report.js', import.meta.url).href;

describe('peakRssMiB (the import and migrate reports)', () => {
  it("is the program's own peak, not that of the process that started it", () => {
    // a parent holding 400 MiB when it starts the child: getrusage's maxRSS would give the child
    // at least that much (Linux keeps it across exec), though the child never used it
    const parent = Buffer.alloc(400 * 1024 * 1024, 1);
    const child = spawnSync(process.execPath, ['--input-type=module', '-e', `import(${JSON.stringify(REPORT)}).then((m) => console.log(m.peakRssMiB()))`], {
      encoding: 'utf8',
    });
    assert.equal(child.status, 0, child.stderr);
    const mib = Number(child.stdout.trim());
    assert.ok(mib > 10 && mib < 200, `the child's peak: ${mib} MiB (the parent holds ${parent.length >> 20} MiB)`);
    // and this process's own peak counts what it holds
    assert.ok(peakRssMiB() >= 400, `this process: ${peakRssMiB()} MiB`);
  });
});
