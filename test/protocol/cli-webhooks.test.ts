import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ROOT } from '../helpers/paths.js';
import { Receiver } from '../helpers/receiver.js';
import { startTestServer } from '../helpers/server.js';
import { saveRepository } from '../../src/db/repositories.js';

const run = promisify(execFile);
const CLI = join(ROOT, 'bin', 'legacy-registry.cjs');

/** `legacy-registry webhook …` on the index database a server then uses (issue 15). */
describe('legacy-registry webhook CLI', () => {
  let dir: string;
  let env: NodeJS.ProcessEnv;
  const cli = (...args: string[]) => run(process.execPath, [CLI, ...args], { env, timeout: 60_000 });

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'lr-cli-hooks-'));
    env = { PATH: process.env.PATH ?? '', STORAGE_PATH: dir, BCRYPT_COST: '4', WEBHOOK_ALLOWED_NETWORKS: '127.0.0.1' };
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('prints --help for each subcommand', async () => {
    for (const args of [
      ['webhook'],
      ['webhook', 'add'],
      ['webhook', 'list'],
      ['webhook', 'remove'],
      ['webhook', 'deliveries'],
      ['webhook', 'test'],
      ['webhook', 'status'],
    ]) {
      assert.match((await cli(...args, '--help')).stdout, /Usage: legacy-registry webhook/, args.join(' '));
    }
  });

  it('adds, lists, tests (a server sends it), shows deliveries and removes hooks; refuses bad input', async () => {
    const rx = await new Receiver().up();
    await cli('db', 'migrate');
    // a repository in the same index database the CLI uses (storage_path/index.db)
    const s = await startTestServer({ webhook_poll_interval: 0.2, webhook_allowed_networks: ['127.0.0.1'] }, { dataDir: dir });
    try {
      await saveRepository(s.db!, { namespace: 'team', name: 'app' });
      await assert.rejects(cli('webhook', 'add', 'team/nope', 'ci', rx.url), /no such repository: team\/nope/);
      await assert.rejects(cli('webhook', 'add', 'team/app', 'ci', 'ftp://x/'), /url: an absolute http\(s\) URL/);
      assert.match((await cli('webhook', 'add', 'team/app', 'ci', `${rx.url}/ci`, '--secret', 'k')).stdout, /added webhook ci to team\/app/);
      await assert.rejects(cli('webhook', 'add', 'team/app', 'ci', `${rx.url}/ci`), /already has a webhook named ci/);
      await cli('webhook', 'add', 'team/app', 'next', `${rx.url}/next`, '--chained');
      assert.equal((await cli('webhook', 'list', 'team/app')).stdout, `ci\t${rx.url}/ci\tsigned\nnext\t${rx.url}/next\tchained\n`);
      const queued = /queued test delivery ([0-9a-f-]{36})/.exec((await cli('webhook', 'test', 'team/app', 'ci')).stdout)?.[1];
      assert.ok(queued);
      await rx.until((r) => r.length >= 1, 20_000, 'the test delivery');
      assert.equal(rx.received[0]!.headers['x-registry-delivery'], queued);
      assert.equal(rx.received[0]!.headers['x-registry-event'], 'test');
      let out = '';
      for (let i = 0; i < 50 && !/delivered/.test(out); i++) {
        out = (await cli('webhook', 'deliveries', 'team/app', 'ci')).stdout;
        if (!/delivered/.test(out)) await new Promise((r) => setTimeout(r, 100));
      }
      assert.match(out, new RegExp(`^${queued}\\t\\S+\\ttest\\t-\\tdelivered\\t1\\t200\\t-$`, 'm'));
      assert.match((await cli('webhook', 'status')).stdout, /^delivered\t1$/m);
      await cli('webhook', 'remove', 'team/app', 'ci');
      assert.equal((await cli('webhook', 'list', 'team/app')).stdout, `next\t${rx.url}/next\tchained\n`);
    } finally {
      await s.stop();
      await rx.down();
    }
  });
});
