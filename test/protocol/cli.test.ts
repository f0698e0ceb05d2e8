import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { request } from '../helpers/http.js';
import { spawnServer, type ChildServer } from '../helpers/child.js';
import { ROOT } from '../helpers/paths.js';
import { closeDb, createDb } from '../../src/db/knex.js';

const run = promisify(execFile);
const CLI = join(ROOT, 'bin', 'legacy-registry.cjs');
const basic = (u: string, p: string): string => `Basic ${Buffer.from(`${u}:${p}`).toString('base64')}`;

describe('legacy-registry CLI: --help, db migrate, user management, htpasswd import', () => {
  let dir: string;
  let env: NodeJS.ProcessEnv;
  const cli = (...args: string[]) => run(process.execPath, [CLI, ...args], { env });
  /** The owners of an organization, read from the database the CLI writes. */
  const owners = async (org: string): Promise<string[]> => {
    const db = createDb(null, dir);
    try {
      const rows = (await db('organization_members as m')
        .join('organizations as o', 'o.id', 'm.org_id')
        .join('users as u', 'u.id', 'm.user_id')
        .where({ 'o.name': org, 'm.role': 'owner' })
        .orderBy('u.username')
        .select('u.username')) as { username: string }[];
      return rows.map((r) => r.username);
    } finally {
      await closeDb(db);
    }
  };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'lr-cli-'));
    env = { PATH: process.env.PATH ?? '', STORAGE_PATH: dir, BCRYPT_COST: '4' };
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('prints --help for every command', async () => {
    // the commands at once: each is a process of its own, and their start-up is most of the time
    const commands = [
      [],
      ['serve'],
      ['config-check'],
      ['db'],
      ['db', 'migrate'],
      ['user'],
      ['user', 'add'],
      ['user', 'import-htpasswd'],
      ['org'],
      ['org', 'add'],
      ['org', 'rm'],
      ['user', 'rm'],
      ['repo', 'collaborator'],
      ['htpasswd'],
    ];
    const outputs = await Promise.all(commands.map(async (args) => ({ args, out: (await cli(...args, '--help')).stdout })));
    for (const { args, out } of outputs) assert.match(out, /Usage: legacy-registry/, args.join(' '));
  });

  it('loads only what the command runs: --help and the light commands start without the server, the database or the importer', async () => {
    // the node_modules packages each command loaded (test/fixtures/cli/loaded-packages.mjs)
    const loaded = async (...args: string[]): Promise<string[]> => {
      const out = join(dir, `loaded-${args.join('-').replace(/[^a-z-]/g, '')}.txt`);
      await run(process.execPath, ['--import', pathToFileURL(join(ROOT, 'test', 'fixtures', 'cli', 'loaded-packages.mjs')).href, CLI, ...args], {
        // a storage of its own: `user list` creates and migrates its database, which the next test expects new
        env: { ...env, STORAGE_PATH: join(dir, 'lazy'), LR_TEST_LOADED_OUT: out },
      }).catch(() => undefined); // the exit status does not matter here, the list does
      const names = new Set<string>();
      for (const line of (await readFile(out, 'utf8')).split('\n')) {
        const m = /[\\/]node_modules[\\/]((?:@[^\\/]+[\\/])?[^\\/]+)[\\/]/.exec(line);
        if (m) names.add(m[1]!.replace(/\\/g, '/'));
      }
      return [...names];
    };
    const [help, importHelp, gcHelp, htpasswd, userList] = await Promise.all([
      loaded('--help'),
      loaded('import', '--help'),
      loaded('gc', '--help'),
      loaded('htpasswd', join(dir, 'lazy.htpasswd'), 'alice', '--delete'),
      loaded('user', 'list'),
    ]);
    // the hook sees what a command needs: listing accounts opens the database (knex)
    assert.ok(userList.includes('knex'), `user list loaded ${userList.join(', ')}`);
    assert.ok(htpasswd.includes('bcryptjs'), `htpasswd loaded ${htpasswd.join(', ')}`);
    for (const [what, pkgs] of [
      ['--help', help],
      ['import --help', importHelp],
      ['gc --help', gcHelp],
      ['htpasswd', htpasswd],
      ['user list', userList],
    ] as const) {
      for (const heavy of ['koa', '@koa/router', 'koa-body', 'prom-client']) assert.ok(!pkgs.includes(heavy), `${what} loaded ${heavy} (the server's modules)`);
      if (what !== 'user list') assert.ok(!pkgs.includes('knex'), `${what} loaded knex (the database)`);
    }
  });

  it('migrates the database, then says it is up to date', async () => {
    assert.match((await cli('db', 'migrate')).stdout, /applied: .*initial/);
    assert.match((await cli('db', 'migrate')).stdout, /already up to date/);
  });

  it('adds, lists, re-passwords, deactivates and removes users; the index honours each', async () => {
    await cli('user', 'add', 'admin1', 'admin@example.com', '--password', 'adminpw', '--admin');
    await cli('user', 'add', 'carol', 'carol@example.com', '--password', 'carolpw');
    await assert.rejects(cli('user', 'add', 'carol', 'other@example.com', '--password', 'carolpw'), /already exists/);
    await assert.rejects(cli('user', 'add', 'x', 'x@example.com', '--password', 'carolpw'), /username/);
    const list = (await cli('user', 'list')).stdout;
    assert.match(list, /^admin1\tadmin@example.com\tactive\tadmin$/m);
    assert.match(list, /^carol\tcarol@example.com\tactive$/m);
    await cli('user', 'passwd', 'carol', '--password', 'newpass');
    let srv: ChildServer | undefined;
    try {
      srv = await spawnServer({ STORAGE_PATH: dir, STANDALONE: '' });
      assert.equal((await request(srv.url, '/v1/users/', { headers: { Authorization: basic('carol', 'carolpw') } })).status, 401);
      assert.equal((await request(srv.url, '/v1/users/', { headers: { Authorization: basic('carol', 'newpass') } })).status, 200);
      // admins may write library/
      const lib = await request(srv.url, '/v1/repositories/base/', {
        method: 'PUT',
        headers: { Authorization: basic('admin1', 'adminpw'), 'X-Docker-Token': 'true' },
        body: '[]',
      });
      assert.equal(lib.status, 200);
      assert.match(String(lib.headers['x-docker-token']), /repository="library\/base",access=write/);
      await cli('user', 'activate', 'carol', '--off');
      const inactive = await request(srv.url, '/v1/users/', { headers: { Authorization: basic('carol', 'newpass') } });
      assert.equal(inactive.status, 403);
      assert.equal(inactive.text, '"Account is not Active"');
      await cli('user', 'rm', 'carol');
      assert.equal((await request(srv.url, '/v1/users/', { headers: { Authorization: basic('carol', 'newpass') } })).status, 401);
    } finally {
      srv?.proc.kill('SIGTERM');
      await srv?.exited;
    }
  });

  it('organizations and collaborators decide who may push and read', async () => {
    await cli('user', 'add', 'olga', 'olga@example.com', '--password', 'olgapw');
    await cli('user', 'add', 'oscar', 'oscar@example.com', '--password', 'oscarpw');
    await cli('user', 'add', 'pete', 'pete@example.com', '--password', 'petepw');
    await cli('org', 'add', 'acme', 'olga');
    await assert.rejects(cli('org', 'add', 'olga', 'olga'), /taken/);
    await cli('org', 'member', 'acme', 'oscar');
    const srv = await spawnServer({ STORAGE_PATH: dir, STANDALONE: '' });
    const claim = (repo: string, u: string, p: string) =>
      request(srv.url, `/v1/repositories/${repo}/`, { method: 'PUT', headers: { Authorization: basic(u, p), 'X-Docker-Token': 'true' }, body: '[]' });
    const list = (repo: string, u?: string, p?: string) =>
      request(srv.url, `/v1/repositories/${repo}/images`, { headers: { 'X-Docker-Token': 'true', ...(u ? { Authorization: basic(u, p!) } : {}) } });
    try {
      assert.equal((await claim('acme/tool', 'olga', 'olgapw')).status, 200, 'owner');
      assert.equal((await claim('acme/tool', 'oscar', 'oscarpw')).status, 200, 'member');
      assert.equal((await claim('acme/tool', 'pete', 'petepw')).status, 403, 'outsider');
      await cli('repo', 'private', 'acme/tool');
      assert.equal((await list('acme/tool', 'pete', 'petepw')).status, 404);
      await cli('repo', 'collaborator', 'acme/tool', 'pete');
      assert.equal((await list('acme/tool', 'pete', 'petepw')).status, 200, 'read collaborator reads');
      assert.equal((await claim('acme/tool', 'pete', 'petepw')).status, 403, 'read collaborator does not write');
      await cli('repo', 'collaborator', 'acme/tool', 'pete', '--access', 'write');
      assert.equal((await claim('acme/tool', 'pete', 'petepw')).status, 200, 'write collaborator writes');
      await cli('org', 'member', 'acme', 'oscar', '--remove');
      assert.equal((await claim('acme/tool', 'oscar', 'oscarpw')).status, 403, 'former member');
      assert.equal((await list('acme/tool')).status, 401, 'anonymous on a private repository');
    } finally {
      srv.proc.kill('SIGTERM');
      await srv.exited;
    }
  });

  it('user rm refuses the only owner of an organization (nothing deleted); a co-owner goes; --orphan-organizations deletes as before', async () => {
    for (const u of ['solo', 'coone', 'cotwo', 'orphaner']) await cli('user', 'add', u, `${u}@example.com`, '--password', `${u}pw`);
    await cli('org', 'add', 'soloteam', 'solo');
    await cli('org', 'add', 'solotwo', 'solo');
    await cli('org', 'add', 'shared', 'coone');
    await cli('org', 'member', 'shared', 'cotwo', '--owner');
    await cli('org', 'add', 'leftover', 'orphaner');
    // before: removed, and soloteam and solotwo had no owner left
    const refused = await cli('user', 'rm', 'solo').then(
      () => assert.fail('user rm of the only owner of organizations succeeded'),
      (e: { code?: number; stdout: string; stderr: string }) => e,
    );
    assert.equal(refused.code, 1);
    assert.equal(refused.stdout, '');
    assert.match(refused.stderr, /solo is the only owner of the organizations soloteam, solotwo: /);
    assert.match(refused.stderr, /org member <org> <username> --owner/);
    assert.match(refused.stderr, /--orphan-organizations/);
    assert.match((await cli('user', 'list')).stdout, /^solo\t/m);
    assert.deepEqual(await owners('soloteam'), ['solo']);
    assert.deepEqual(await owners('solotwo'), ['solo']);
    // once the organizations are handed over or deleted, the account goes
    await cli('org', 'member', 'soloteam', 'coone', '--owner');
    await cli('org', 'rm', 'solotwo');
    assert.match((await cli('user', 'rm', 'solo')).stdout, /removed solo/);
    assert.deepEqual(await owners('soloteam'), ['coone']);
    // an organization with another owner does not hold the deletion up
    assert.match((await cli('user', 'rm', 'cotwo')).stdout, /removed cotwo/);
    assert.deepEqual(await owners('shared'), ['coone']);
    // the explicit option: as before, the organization is left without an owner
    assert.match((await cli('user', 'rm', 'orphaner', '--orphan-organizations')).stdout, /removed orphaner/);
    assert.deepEqual(await owners('leftover'), []);
    assert.doesNotMatch((await cli('user', 'list')).stdout, /^(solo|cotwo|orphaner)\t/m);
  });

  it('org member does not remove or demote the last owner; an ownerless organization gets one again', async () => {
    // soloteam (owner coone) and leftover (no owner) of the test before; before: soloteam left with none
    for (const args of [['--remove'], []]) {
      await assert.rejects(cli('org', 'member', 'soloteam', 'coone', ...args), /coone is the only owner of soloteam: make another member an owner first/);
      assert.deepEqual(await owners('soloteam'), ['coone']);
    }
    // an ownerless organization gets an owner again, and members come and go as before
    await cli('org', 'member', 'leftover', 'coone', '--owner');
    assert.deepEqual(await owners('leftover'), ['coone']);
    await cli('user', 'add', 'cothree', 'cothree@example.com', '--password', 'cothreepw');
    await cli('org', 'member', 'soloteam', 'cothree', '--owner');
    await cli('org', 'member', 'soloteam', 'coone');
    assert.deepEqual(await owners('soloteam'), ['cothree']);
    await cli('org', 'member', 'soloteam', 'coone', '--remove');
  });

  it('imports bcrypt entries of an htpasswd file and skips the others', async () => {
    // bcrypt of "htpass1" (cost 5), written with the $2y$ prefix htpasswd uses
    const { stdout: hash } = await run(process.execPath, ['-e', "import('bcryptjs').then(b=>process.stdout.write(b.default.hashSync('htpass1',5)))"], {
      cwd: ROOT,
    });
    const file = join(dir, 'htpasswd');
    await writeFile(file, `dave:${hash.replace(/^\$2[ab]\$/, '$2y$')}\nmd5user:$apr1$abc$defghijklmnopqrstuvwx\n# comment\n\n`);
    const out = await cli('user', 'import-htpasswd', file);
    assert.match(out.stdout, /imported 1 \(1 created, 0 updated\), skipped 1/);
    assert.match(out.stderr, /md5user: not a bcrypt entry/);
    const srv = await spawnServer({ STORAGE_PATH: dir, STANDALONE: '' });
    try {
      assert.equal((await request(srv.url, '/v1/users/', { headers: { Authorization: basic('dave', 'htpass1') } })).status, 200);
    } finally {
      srv.proc.kill('SIGTERM');
      await srv.exited;
    }
  });

  it('htpasswd writes a $2y$ entry the index importer and htpasswd mode accept; refuses bad input; --delete removes it', async () => {
    const file = join(dir, 'written.htpasswd');
    const write = (args: string[], input: string) =>
      new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
        const p = execFile(process.execPath, [CLI, 'htpasswd', file, ...args], { env }, (err, stdout, stderr) =>
          resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
        );
        p.stdin!.end(input);
      });
    assert.match((await write(['gina', '--password-stdin'], 'ginapw1\n')).stdout, /added gina/);
    assert.match((await write(['hugo', '--password-stdin'], 'hugopw1\n')).stdout, /added hugo/);
    assert.match((await write(['gina', '--password-stdin'], 'ginapw2\n')).stdout, /updated gina/);
    const { readFile } = await import('node:fs/promises');
    const text = await readFile(file, 'utf8');
    assert.match(text, /^hugo:\$2y\$04\$[./A-Za-z0-9]{53}\ngina:\$2y\$04\$[./A-Za-z0-9]{53}\n$/);
    const noTty = await write(['ivan'], 'x\n');
    assert.notEqual(noTty.code, 0);
    assert.match(noTty.stderr, /--password-stdin/);
    assert.notEqual((await write(['bad:name', '--password-stdin'], 'pw\n')).code, 0);
    assert.notEqual((await write(['ivan', '--password-stdin'], '\n')).code, 0, 'empty password');
    const out = await cli('user', 'import-htpasswd', file);
    assert.match(out.stdout, /imported 2/);
    const srv = await spawnServer({ STORAGE_PATH: dir, STANDALONE: '' });
    try {
      assert.equal((await request(srv.url, '/v1/users/', { headers: { Authorization: basic('gina', 'ginapw2') } })).status, 200);
    } finally {
      srv.proc.kill('SIGTERM');
      await srv.exited;
    }
    assert.match((await write(['gina', '--delete'], '')).stdout, /removed gina/);
    assert.doesNotMatch(await readFile(file, 'utf8'), /gina/);
  });
});
