import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cli } from '../helpers/migrate.js';

/**
 * `legacy-registry migrate --state <file>` given a file that is no state file of it: one past the
 * size cap (256 MiB: a sparse file) or one nested deeper than its flat records. The run refuses it
 * with a clear error and a non-zero exit, before contacting the target; it neither reads the whole
 * file into one string (a crash near V8's largest string) nor parses the nesting.
 */
describe('migrate: a state file that is too large or too deep is refused with an error', { timeout: 60_000 }, () => {
  let work = '';
  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'lr-migrate-state-file-'));
  });
  after(async () => {
    await rm(work, { recursive: true, force: true });
  });

  const migrate = (state: string) => cli(join(work, 'storage'), ['migrate', '--to', 'http://127.0.0.1:9', '--no-progress', '--timeout', '2', '--state', state]);

  it('refuses a state file over 256 MiB', async () => {
    const state = join(work, 'big.state');
    await writeFile(state, `${JSON.stringify({ target: 'http://127.0.0.1:9/' })}\n`);
    await truncate(state, 256 * 1024 * 1024 + 1);
    const r = await migrate(state);
    assert.notEqual(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stderr, /state file .*big\.state is larger than 256 MiB/);
    assert.doesNotMatch(r.stderr, /\n\s+at /, 'an error message, not a stack');
  });

  it('refuses a state file with a line nested deeper than a record', async () => {
    const state = join(work, 'deep.state');
    const n = 200_000;
    await writeFile(state, `${JSON.stringify({ target: 'http://127.0.0.1:9/' })}\n${'['.repeat(n)}${']'.repeat(n)}\n`);
    const r = await migrate(state);
    assert.notEqual(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stderr, /state file .*deep\.state: line 2 nests deeper than a state record/);
    assert.doesNotMatch(r.stderr, /\n\s+at /, 'an error message, not a stack');
  });
});
