import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { State } from '../../../src/migrate/migrate.js';

const digest = (n: number): string => `sha256:${n.toString(16).padStart(64, '0')}`;

describe('migrate: the state of what reached the target', () => {
  it('names a mount source for a blob in time independent of the number of repositories', () => {
    const s = new State(undefined, 'http://target/');
    // 20,000 repositories of 5 blobs each, the base layer shared by all
    for (let r = 0; r < 20_000; r++) {
      s.blob(`org/app${r}`, digest(0));
      for (let b = 1; b < 5; b++) s.blob(`org/app${r}`, digest(r * 10 + b));
    }
    const t = process.hrtime.bigint();
    for (let r = 0; r < 20_000; r++) {
      // a blob of the last repository, asked for by another: the scan went through every repository
      assert.equal(s.holder(digest(19_999 * 10 + 4), `org/new${r}`), 'org/app19999');
      assert.equal(s.holder(digest(r * 10 + 1), `org/app${r}`), undefined);
      assert.equal(s.holder(digest(0), 'org/app0'), 'org/app1');
      assert.equal(s.holder(digest(0), 'org/app5'), 'org/app0');
    }
    const ms = Number(process.hrtime.bigint() - t) / 1e6;
    assert.ok(ms < 2000, `${ms.toFixed(0)} ms for 80,000 lookups`);
  });

  it('reads its records back from the file, and a blob recorded twice is written once', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'lr-migrate-state-'));
    try {
      const file = join(dir, 'state');
      const a = new State(file, 'http://target/');
      a.blob('org/a', digest(1));
      a.blob('org/a', digest(1));
      a.blob('org/b', digest(1));
      a.tag('org/a:latest', digest(9));
      const lines = (await readFile(file, 'utf8')).split('\n').filter((l) => l.trim());
      assert.equal(lines.filter((l) => l.includes('"blob"')).length, 2);
      const b = new State(file, 'http://target/');
      assert.equal(b.holder(digest(1), 'org/a'), 'org/b');
      assert.equal(b.holder(digest(1), 'org/c'), 'org/a');
      assert.equal(b.tags.get('org/a:latest'), digest(9));
      assert.ok(b.blobs.get('org/b')?.has(digest(1)));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
