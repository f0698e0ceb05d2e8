import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCrashCampaign } from './crash.js';

const HELP = `usage: node dist/campaigns/run.js <campaign> [options]

Reliability campaigns (issue 17). Each runs servers on loopback only, bounded in count and time, and
prints a JSON report; exit 1 when an invariant was violated.

  crash   --kills N (200) --concurrency C (4) --seed S   SIGKILL during concurrent v1/v2 pushes and deletes
  --help  this text
`;

function arg(name: string, def: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : def;
}

async function main(): Promise<void> {
  const which = process.argv[2];
  if (!which || which === '--help' || which === '-h') {
    process.stdout.write(HELP);
    return;
  }
  const dir = await mkdtemp(join(tmpdir(), `lr-campaign-${which}-`));
  try {
    if (which === 'crash') {
      const seed = arg('seed', Date.now() % 1_000_000);
      const report = await runCrashCampaign({
        dataDir: dir,
        kills: arg('kills', 200),
        concurrency: arg('concurrency', 4),
        seed,
        log: (l) => process.stderr.write(`${l}\n`),
      });
      process.stdout.write(`${JSON.stringify({ campaign: 'crash', seed, ...report }, null, 2)}\n`);
      if (report.violations.length > 0) process.exitCode = 1;
      return;
    }
    process.stderr.write(`unknown campaign ${which}\n${HELP}`);
    process.exitCode = 2;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

void main();
