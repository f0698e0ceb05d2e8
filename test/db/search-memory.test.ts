import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { closeDb, createDb, migrateLatest, type Knex } from '../../src/db/knex.js';
import { rawRows, toNum } from '../../src/db/rows.js';
import { addCollaborator, markDeleted, saveRepository } from '../../src/db/repositories.js';
import { addMember, saveOrganization } from '../../src/db/organizations.js';
import { saveUser, type User } from '../../src/db/users.js';
import { searchRepositories, searchWithSql, type SearchOptions } from '../../src/db/search.js';
import { memoryIndex } from '../../src/db/search-memory.js';
import { ENGINES, PG_URL, type EngineName } from './engines.js';

/**
 * Both engines search from memory (src/db/search-memory.ts). The SQL search is the reference: on the
 * same data both must give the same page and the same total, for every kind of query and caller;
 * and changes made through another connection (another process or index node, the CLI) must show
 * within 250 ms.
 */

/** Two connections to one fresh database (a temp file, or a PostgreSQL schema), as two processes would have. */
async function openPair(engine: EngineName): Promise<{ db: Knex; other: Knex; dispose: () => Promise<void> }> {
  if (engine === 'sqlite') {
    const dir = await mkdtemp(join(tmpdir(), 'lr-searchmem-'));
    const db = createDb(null, dir);
    const other = createDb(null, dir);
    return {
      db,
      other,
      dispose: async () => {
        await closeDb(other);
        await closeDb(db);
        await rm(dir, { recursive: true, force: true });
      },
    };
  }
  const schema = `lr_test_${randomBytes(6).toString('hex')}`;
  const admin = createDb(PG_URL, tmpdir(), { poolMax: 1 });
  await admin.raw('create schema ??', [schema]).finally(() => admin.destroy());
  const db = createDb(PG_URL, tmpdir(), { searchPath: [schema] });
  const other = createDb(PG_URL, tmpdir(), { searchPath: [schema] });
  return {
    db,
    other,
    dispose: async () => {
      await closeDb(other);
      await closeDb(db);
      const a = createDb(PG_URL, tmpdir(), { poolMax: 1 });
      await a.raw('drop schema if exists ?? cascade', [schema]).finally(() => a.destroy());
    },
  };
}

let seed = 7;
function rnd(): number {
  seed = (seed * 1103515245 + 12345) & 0x7fffffff;
  return seed / 0x7fffffff;
}
const pick = <T>(a: readonly T[]): T => a[Math.floor(rnd() * a.length)]!;
const WORDS = 'nginx redis node alpine busybox python web api app db cache proxy server red re-run rest base basic tool tools build café naïve data'.split(' ');

for (const {
  handle: { engine },
  skip,
} of ENGINES)
  describe(`in-memory search [${engine}]`, skip === undefined ? {} : { skip }, () => {
    let db: Knex;
    let other: Knex;
    let dispose: () => Promise<void>;
    const users: User[] = [];

    before(async () => {
      seed = 7;
      // a second connection to the same database, as another process, index node or the CLI would have
      ({ db, other, dispose } = await openPair(engine));
      await migrateLatest(db);
      for (let i = 0; i < 6; i++)
        users.push((await saveUser(db, { username: `user${i}`, email: `u${i}@x.org`, password: 'secret1', active: true, admin: i === 0 }, { cost: 4 }))!);
      const org = (await saveOrganization(db, { name: 'crew' }))!;
      await addMember(db, org.id, users[2]!.id);
      const seen = new Set<string>();
      while (seen.size < 1500) {
        const ns = pick([
          'user1',
          'user2',
          'crew',
          'library',
          'acme',
          'red',
          'base',
          'tools',
          `${pick(WORDS).replace(/[^a-z]/g, '')}${Math.floor(rnd() * 40)}`,
        ]);
        const name = [pick(WORDS), rnd() < 0.5 ? pick(WORDS) : '', rnd() < 0.3 ? String(Math.floor(rnd() * 50)) : '']
          .filter(Boolean)
          .join(pick(['-', '_', '.']))
          .normalize('NFD')
          .replace(/\p{M}/gu, '')
          .replace(/[^a-z0-9._-]/g, '');
        if (!name || seen.has(`${ns}/${name}`)) continue;
        seen.add(`${ns}/${name}`);
        const priv = rnd() < 0.15;
        const { repository } = await saveRepository(db, {
          namespace: ns,
          name,
          description: Array.from({ length: Math.floor(rnd() * 8) }, () => pick([...WORDS, 'The', 'small', 'Fast'])).join(' '),
          private: priv,
          ownerId: priv ? pick(users).id : null,
        });
        // many ties on stars, as in real data
        await db('repositories')
          .where({ id: repository.id })
          .update({ star_count: Math.floor(rnd() * 4) === 0 ? Math.floor(rnd() * 100) : Math.floor(rnd() * 3) });
        if (priv && rnd() < 0.2) await addCollaborator(db, repository.id, pick(users).id, 'read');
        if (rnd() < 0.02) await markDeleted(db, repository.id);
      }
      // v2 names deeper than ns/name keep the rest, '/' and all, as the repository name
      for (const [namespace, name] of [
        ['acme', 'team/app'],
        ['acme', 'team/redis-api'],
        ['crew', 'red/tools'],
        ['library', 'base/web/api'],
        ['user1', 'x/acme/red'],
      ] as const)
        await saveRepository(db, { namespace, name, description: 'deep name', private: false, ownerId: null });
    });
    after(async () => {
      await dispose();
    });

    it('gives the SQL search’s pages and totals for every kind of query and caller', async () => {
      const queries = [
        '',
        're',
        'red',
        'redis',
        'r',
        'base',
        'ba',
        'web api',
        'node server',
        'tools/',
        'acme/red',
        'library/redis',
        'edi',
        'ool',
        'é',
        'cafe',
        'café',
        'naive',
        'x',
        'zzz',
        '-',
        '_x',
        '%',
        "' or 1=1",
        'a"b',
        'crew/',
        're-run',
        'rest.',
        '.10',
        '42',
        'caf',
        'na',
        'naï',
        'the small',
        'fast re',
        'team/app',
        'm/re',
        'acme/team/',
        'red/tool',
        'e/web/a',
        'x/acme/red',
        '/red',
        'b/w',
        'me/red',
        'cme/team',
        'rew/red',
        'ols/b',
        'is1',
        'ache',
        'ools3',
        'edis2',
      ];
      const callers: SearchOptions['visibleTo'][] = [
        {},
        { userId: users[1]!.id },
        { userId: users[2]!.id },
        { userId: users[3]!.id },
        { userId: users[0]!.id, admin: true },
      ];
      let compared = 0;
      for (const query of queries) {
        for (const visibleTo of callers) {
          for (const [page, pageSize] of [
            [1, 25],
            [2, 25],
            [1, 7],
            [3, 10],
            [40, 100],
          ] as const) {
            const opts = { query, visibleTo, page, pageSize };
            const mem = await searchRepositories(db, opts);
            const sql = await searchWithSql(db, opts);
            assert.deepEqual(mem, sql, JSON.stringify(opts));
            compared++;
          }
        }
      }
      assert.equal(compared, queries.length * callers.length * 5);
    });

    it('walks the packed word lists and the per-token lists alike, and repacks once changes pause', async () => {
      const callers: SearchOptions['visibleTo'][] = [{}, { userId: users[2]!.id }, { userId: users[0]!.id, admin: true }];
      const queries = ['re', 'red', 'redis', 'r', 'base', 'web api', 'node server', 'tools/', 'the small', 'fast re', 'edis2', 'zz'];
      const same = async (when: string): Promise<void> => {
        for (const query of queries)
          for (const visibleTo of callers)
            for (const [page, pageSize] of [
              [1, 25],
              [2, 7],
            ] as const) {
              const opts = { query, visibleTo, page, pageSize };
              assert.deepEqual(await searchRepositories(db, opts), await searchWithSql(db, opts), `${when}: ${JSON.stringify(opts)}`);
            }
      };
      await searchRepositories(db, { query: 'warm' });
      const mi = memoryIndex(db);
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(mi.packed, true, 'packed once loaded and quiet');
      await same('packed');
      // new words: the packed copy is dropped at once, searches walk the lists meanwhile
      const { repository } = await saveRepository(db, { namespace: 'redis9', name: 'redis-fresh', description: 'web api node server' });
      await saveRepository(db, { namespace: 'base', name: 'fast-red', description: 'The small' });
      await searchRepositories(db, { query: 'warm' });
      assert.equal(mi.packed, false, 'a change drops it');
      await same('unpacked');
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(mi.packed, true, 'rebuilt once changes paused');
      await same('repacked');
      // the same text with other stars or flags keeps it
      await db('repositories').where({ id: repository.id }).update({ star_count: 77 });
      assert.equal((await searchRepositories(db, { query: 'redis-fresh' })).results[0]?.star_count, 77);
      assert.equal(mi.packed, true, 'a star changes no word');
      await db('repositories').where({ id: repository.id }).update({ description: 'about wombats' });
      assert.deepEqual(
        (await searchRepositories(db, { query: 'wombats' })).results.map((r) => r.name),
        ['redis-fresh'],
      );
      assert.equal(mi.packed, false, 'a description does');
      await same('unpacked again');
      // (the tests after this one do not see these two)
      await db('repositories').whereIn('name', ['redis-fresh', 'fast-red']).delete();
    });

    it('sees its own writes at the next search, and those of another connection within 250 ms', async () => {
      const now = async (q: string): Promise<string[]> =>
        (await searchRepositories(db, { query: q, pageSize: 100 })).results.map((r) => `${r.namespace}/${r.name}`);
      // another process's change is read from the change log at most 250 ms later
      const find = async (q: string): Promise<string[]> => {
        await new Promise((r) => setTimeout(r, 260));
        return now(q);
      };
      await searchRepositories(db, { query: 'warm' }); // loaded
      const mine = await saveRepository(db, { namespace: 'own', name: 'platypus' });
      assert.deepEqual(await now('platypus'), ['own/platypus'], 'a write through this connection shows at once');
      await db('repositories').where({ id: mine.repository.id }).update({ private: true });
      assert.deepEqual(await now('platypus'), [], 'and so does making it private');
      const { repository } = await saveRepository(other, { namespace: 'late', name: 'zebrafish', description: 'arrived later' });
      assert.deepEqual(await find('zebrafish'), ['late/zebrafish']);
      await other('repositories').where({ id: repository.id }).update({ description: 'now about quokkas' });
      assert.deepEqual(await find('quokkas'), ['late/zebrafish']);
      assert.deepEqual(await find('arrived'), [], 'the old words are gone');
      await other('repositories').where({ id: repository.id }).update({ private: true });
      assert.deepEqual(await find('zebrafish'), [], 'private now');
      await other('repositories').where({ id: repository.id }).update({ private: false, star_count: 5 });
      await saveRepository(other, { namespace: 'late', name: 'zebrafish-two' });
      assert.deepEqual(await find('zebrafish'), ['late/zebrafish', 'late/zebrafish-two']);
      await other('repositories').where({ id: repository.id }).update({ star_count: 0 });
      await other('repositories').where({ namespace: 'late', name: 'zebrafish-two' }).update({ star_count: 9 });
      assert.deepEqual(await find('zebrafish'), ['late/zebrafish', 'late/zebrafish-two'], 'exact name first whatever the stars');
      assert.deepEqual(await find('zebra'), ['late/zebrafish-two', 'late/zebrafish'], 'then by stars');
      await other('repositories').where({ id: repository.id }).delete();
      assert.deepEqual(await find('zebrafish'), ['late/zebrafish-two']);
      // a grant made elsewhere counts within 250 ms (the log tells a grant changed)
      const { repository: secret } = await saveRepository(other, { namespace: 'late', name: 'secretive', private: true });
      const u5 = { userId: users[5]!.id };
      await new Promise((r) => setTimeout(r, 260));
      assert.equal((await searchRepositories(db, { query: 'secretive', visibleTo: u5 })).total, 0);
      await addCollaborator(other, secret.id, users[5]!.id, 'read');
      await new Promise((r) => setTimeout(r, 260));
      assert.equal((await searchRepositories(db, { query: 'secretive', visibleTo: u5 })).total, 1);
      // a grant through this connection counts at once (grants kept per account, dropped on a write)
      const { repository: secret2 } = await saveRepository(db, { namespace: 'late', name: 'secretive-two', private: true });
      assert.equal((await searchRepositories(db, { query: 'secretive', visibleTo: u5 })).total, 1);
      await addCollaborator(db, secret2.id, users[5]!.id, 'read');
      assert.equal((await searchRepositories(db, { query: 'secretive', visibleTo: u5 })).total, 2);
    });

    it('keeps substring matches current as names come, change and go', async () => {
      const names = async (q: string): Promise<string[]> => {
        const opts = { query: q, pageSize: 100, visibleTo: {} };
        const mem = await searchRepositories(db, opts);
        assert.deepEqual(mem, await searchWithSql(db, opts), q);
        return mem.results.map((r) => `${r.namespace}/${r.name}`).filter((n) => n.startsWith('subs'));
      };
      await names('qqzv'); // the substring index is made here, then kept up to date
      const { repository: a } = await saveRepository(db, { namespace: 'subsa', name: 'abcpanda' });
      assert.deepEqual(await names('bcpand'), ['subsa/abcpanda']);
      assert.deepEqual(await names('cpa'), ['subsa/abcpanda']);
      await db('repositories').where({ id: a.id }).update({ name: 'abcpangolin' });
      assert.deepEqual(await names('bcpand'), [], 'the old name is gone');
      assert.deepEqual(await names('cpangol'), ['subsa/abcpangolin']);
      assert.deepEqual(await names('cpa'), ['subsa/abcpangolin']);
      await saveRepository(db, { namespace: 'subsb', name: 'zz-xcpa9' });
      assert.deepEqual((await names('cpa')).sort(), ['subsa/abcpangolin', 'subsb/zz-xcpa9'], 'a new name with a known trigram');
      assert.deepEqual(await names('xcpa9'), ['subsb/zz-xcpa9']);
      await db('repositories').where({ id: a.id }).update({ name: 'abxyz' });
      assert.deepEqual(await names('cpa'), ['subsb/zz-xcpa9'], 'a name that no longer holds the trigram');
      assert.deepEqual(await names('bxy'), ['subsa/abxyz']);
      await db('repositories').where({ id: a.id }).delete();
      assert.deepEqual(await names('bxy'), []);
      assert.deepEqual(await names('ubsb'), ['subsb/zz-xcpa9'], 'within the namespace');
    });

    it('keeps grants until one changes, here or elsewhere (membership, collaborator, organization)', async () => {
      const u4 = { userId: users[4]!.id };
      const hits = async (q: string): Promise<number> => (await searchRepositories(db, { query: q, visibleTo: u4 })).total;
      const later = (): Promise<void> => new Promise((r) => setTimeout(r, 260));
      const guild = (await saveOrganization(other, { name: 'guild' }))!;
      const { repository: hoard } = await saveRepository(other, { namespace: 'guild', name: 'hoard', private: true });
      await later();
      assert.equal(await hits('hoard'), 0);
      assert.equal(await hits('hoard'), 0, 'grants now kept');
      await addMember(other, guild.id, users[4]!.id);
      await later();
      assert.equal(await hits('hoard'), 1, 'a membership added elsewhere');
      await other('organization_members').where({ org_id: guild.id, user_id: users[4]!.id }).delete();
      await later();
      assert.equal(await hits('hoard'), 0, 'and removed');
      await addCollaborator(other, hoard.id, users[4]!.id, 'read');
      await later();
      assert.equal(await hits('hoard'), 1, 'a collaborator added elsewhere');
      await other('collaborators').where({ repo_id: hoard.id, user_id: users[4]!.id }).delete();
      await later();
      assert.equal(await hits('hoard'), 0, 'and removed');
      await addMember(db, guild.id, users[4]!.id);
      assert.equal(await hits('hoard'), 1, 'a membership added here: at once');
      await other('organizations').where({ id: guild.id }).update({ name: 'guild-renamed' });
      await later();
      assert.equal(await hits('hoard'), 0, 'the organization renamed elsewhere: guild/ is no longer its namespace');
      assert.deepEqual(await searchRepositories(db, { query: 'hoard', visibleTo: u4 }), await searchWithSql(db, { query: 'hoard', visibleTo: u4 }));
    });

    it('reloads everything when the change log was pruned past what it saw', async () => {
      await searchRepositories(db, { query: 'warm' });
      await saveRepository(other, { namespace: 'pruned', name: 'walrus' });
      // what the prune trigger does to an old log: keep only changes newer than this reader knows
      const s = toNum(rawRows<{ s: unknown }>(other, await other.raw('select max(seq) as s from repository_changes'))[0]?.s);
      await other.raw('delete from repository_changes where seq <= ?', [s]);
      await saveRepository(other, { namespace: 'pruned', name: 'walrus-two' });
      await new Promise((r) => setTimeout(r, 260));
      const r = await searchRepositories(db, { query: 'walrus' });
      assert.deepEqual(
        r.results.map((x) => `${x.namespace}/${x.name}`),
        ['pruned/walrus', 'pruned/walrus-two'],
      );
      assert.deepEqual(r, await searchWithSql(db, { query: 'walrus' }));
    });

    // PostgreSQL's writers run concurrently: a change numbered below one already read may commit later
    it('sees a change that commits after a later-numbered one', { skip: engine !== 'pg' }, async () => {
      await searchRepositories(db, { query: 'warm' });
      let release!: () => void;
      const held = new Promise<void>((r) => (release = r));
      let inserted!: () => void;
      const wrote = new Promise<void>((r) => (inserted = r));
      const slow = other.transaction(async (trx) => {
        await saveRepository(trx, { namespace: 'slow', name: 'narwhal' });
        inserted();
        await held;
      });
      await wrote;
      await saveRepository(other, { namespace: 'fast', name: 'narwhal-two' });
      await new Promise((r) => setTimeout(r, 260));
      const names = async (): Promise<string[]> => (await searchRepositories(db, { query: 'narwhal' })).results.map((x) => `${x.namespace}/${x.name}`);
      assert.deepEqual(await names(), ['fast/narwhal-two'], 'the committed one shows, the running one not yet');
      release();
      await slow;
      await new Promise((r) => setTimeout(r, 260));
      assert.deepEqual(await names(), ['slow/narwhal', 'fast/narwhal-two']);
      assert.deepEqual(await searchRepositories(db, { query: 'narwhal' }), await searchWithSql(db, { query: 'narwhal' }));
    });
  });
