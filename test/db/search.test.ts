import assert from 'node:assert/strict';
import { before, it } from 'node:test';
import { addMember, saveOrganization, type Organization } from '../../src/db/organizations.js';
import { addCollaborator, markDeleted, saveRepository } from '../../src/db/repositories.js';
import { parseSearchQuery, searchRepositories, type SearchPage } from '../../src/db/search.js';
import { saveUser, type User } from '../../src/db/users.js';
import { rawRows } from '../../src/db/rows.js';
import { dbEngine, type Knex } from '../../src/db/knex.js';
import { describeEachEngine } from './engines.js';

const names = (p: SearchPage): string[] => p.results.map((r) => `${r.namespace}/${r.name}`);

async function hasTrigram(db: Knex): Promise<boolean> {
  if (dbEngine(db) === 'pg') {
    const rows = rawRows<{ n: unknown }>(
      db,
      await db.raw(`select count(*) as n from pg_indexes where indexname = 'repositories_full_name_trgm_idx'
                    and schemaname = current_schema()`),
    );
    return Number(rows[0]?.n) > 0;
  }
  return (await db.raw(`select 1 from sqlite_master where name = 'repositories_trgm'`)).length > 0;
}

describeEachEngine('searchRepositories', (ctx) => {
  const users: Record<string, User> = {};
  let org: Organization;
  let trigram = false;

  const repo = async (full: string, opts: { description?: string; stars?: number; private?: boolean; owner?: string } = {}): Promise<number> => {
    const [namespace, name] = full.split('/') as [string, string];
    const { repository } = await saveRepository(ctx.db, {
      namespace,
      name,
      description: opts.description ?? '',
      private: opts.private ?? false,
      ownerId: opts.owner ? (users[opts.owner] as User).id : null,
    });
    await ctx
      .db('repositories')
      .where({ id: repository.id })
      .update({ star_count: opts.stars ?? 0 });
    return repository.id;
  };

  before(async () => {
    for (const u of ['owner', 'member', 'collab', 'stranger', 'admin', 'nsuser']) {
      users[u] = (await saveUser(
        ctx.db,
        { username: `${u}_x`, email: `${u}@x.org`, password: 'secret1', active: true, admin: u === 'admin' },
        { cost: 4 },
      )) as User;
    }
    org = (await saveOrganization(ctx.db, { name: 'teamorg' })) as Organization;
    await addMember(ctx.db, org.id, (users.member as User).id);

    // Ranking set for "busybox".
    await repo('library/busybox', { stars: 1, description: 'The Swiss Army Knife of Embedded Linux' });
    await repo('someone/busybox', { stars: 10 });
    await repo('tools/busybox-extras', { stars: 100 });
    await repo('busybox/other', { stars: 0 });
    await repo('xx/my-busybox', { stars: 5 });
    await repo('yy/toolbox', { stars: 1000, description: 'Contains BusyBox utilities' });
    await repo('zz/superbusyboxer', { stars: 50 });
    await repo('aa/unrelated', { stars: 2000, description: 'nothing to see' });

    // Visibility set: one private repository per route to it.
    await repo('owner_x/hiddenthing', { private: true, owner: 'owner' });
    await repo('teamorg/hiddenthing', { private: true });
    const shared = await repo('elsewhere/hiddenthing', { private: true });
    await addCollaborator(ctx.db, shared, (users.collab as User).id, 'read');
    await repo('nsuser_x/hiddenthing', { private: true });
    await repo('public/hiddenthing-not', { description: 'public one' });
    const gone = await repo('deleted/hiddenthing');
    await markDeleted(ctx.db, gone);

    // Pagination set.
    for (let i = 0; i < 23; i++) await repo(`page${String(i).padStart(2, '0')}/pagerepo`, { stars: i % 5 });

    trigram = await hasTrigram(ctx.db);
  });

  const search = (query: string, who?: keyof typeof users | 'anon', extra: { page?: number; pageSize?: number } = {}) => {
    const u = who && who !== 'anon' ? users[who] : undefined;
    return searchRepositories(ctx.db, {
      query,
      ...extra,
      visibleTo: u ? { userId: u.id, admin: u.admin } : {},
    });
  };

  it('ranks exact, then prefix, then name words, then description words, then substrings', async () => {
    const r = await search('busybox');
    const expected = [
      'someone/busybox', // exact name, 10 stars
      'library/busybox', // exact name, 1 star
      'tools/busybox-extras', // name prefix, 100 stars
      'busybox/other', // full-name prefix
      'xx/my-busybox', // a word of the name
      'yy/toolbox', // a word of the description
    ];
    if (trigram) expected.push('zz/superbusyboxer'); // substring of the name
    assert.deepEqual(names(r), expected);
    assert.equal(r.total, expected.length);
    assert.equal(r.results[0]?.star_count, 10);
    assert.equal(r.results[0]?.private, false);
  });

  it('matches the full name exactly and is case-insensitive', async () => {
    assert.deepEqual(names(await search('library/busybox')).slice(0, 1), ['library/busybox']);
    assert.deepEqual(names(await search('  LIBRARY/BusyBox ')).slice(0, 1), ['library/busybox']);
  });

  it('matches word prefixes in names and descriptions', async () => {
    const expected = [
      'tools/busybox-extras', // name prefixes, by stars
      'someone/busybox',
      'library/busybox',
      'busybox/other', // full-name prefix
      'xx/my-busybox', // a word of the name
      'yy/toolbox', // a word of the description
    ];
    if (trigram) expected.push('zz/superbusyboxer');
    assert.deepEqual(names(await search('busyb')), expected);
    assert.deepEqual(names(await search('swiss army')), ['library/busybox']);
    assert.deepEqual(names(await search('embed')), ['library/busybox']);
    assert.deepEqual(names(await search('extras')), ['tools/busybox-extras']);
  });

  it('has its trigram index on both engines (the expected lists above depend on it)', () => {
    // sqlite3's bundled SQLite (≥ 3.34) has FTS5's trigram tokenizer and CI's PostgreSQL has pg_trgm:
    // without it the substring tier would vanish and the lists above would shrink silently.
    // SEARCH_NO_TRIGRAM=1 is for a site that builds sqlite3 against an older system SQLite.
    if (process.env.SEARCH_NO_TRIGRAM === '1') assert.equal(trigram, false);
    else assert.equal(trigram, true);
  });

  it('finds substrings of names when a trigram index exists', async (t) => {
    if (!trigram) {
      t.skip('no trigram index on this engine (SEARCH_NO_TRIGRAM)');
      return;
    }
    const r = names(await search('usy'));
    assert.deepEqual(r, ['tools/busybox-extras', 'zz/superbusyboxer', 'someone/busybox', 'xx/my-busybox', 'library/busybox', 'busybox/other']);
  });

  it('applies visibility in the query', async () => {
    const q = 'hiddenthing';
    const publicOnly = ['public/hiddenthing-not'];
    assert.deepEqual(names(await search(q, 'anon')), publicOnly);
    assert.deepEqual(names(await search(q, 'stranger')), publicOnly);
    assert.deepEqual(new Set(names(await search(q, 'owner'))), new Set(['owner_x/hiddenthing', ...publicOnly]));
    assert.deepEqual(new Set(names(await search(q, 'member'))), new Set(['teamorg/hiddenthing', ...publicOnly]));
    assert.deepEqual(new Set(names(await search(q, 'collab'))), new Set(['elsewhere/hiddenthing', ...publicOnly]));
    assert.deepEqual(new Set(names(await search(q, 'nsuser'))), new Set(['nsuser_x/hiddenthing', ...publicOnly]));
    const admin = await search(q, 'admin');
    assert.deepEqual(
      new Set(names(admin)),
      new Set(['owner_x/hiddenthing', 'teamorg/hiddenthing', 'elsewhere/hiddenthing', 'nsuser_x/hiddenthing', ...publicOnly]),
    );
    assert.equal(admin.total, 5);
    // Logically deleted repositories are never found, not even by admins.
    assert.ok(!names(admin).includes('deleted/hiddenthing'));
    const flagged = admin.results.find((r) => r.namespace === 'owner_x');
    assert.equal(flagged?.private, true);
  });

  it('pages with a total that counts every page', async () => {
    const seen: string[] = [];
    for (const page of [1, 2, 3]) {
      const r = await search('pagerepo', 'anon', { page, pageSize: 10 });
      assert.equal(r.total, 23);
      assert.equal(r.page, page);
      assert.equal(r.results.length, page < 3 ? 10 : 3);
      seen.push(...names(r));
    }
    assert.equal(new Set(seen).size, 23);
    const past = await search('pagerepo', 'anon', { page: 9, pageSize: 10 });
    assert.deepEqual(past.results, []);
    assert.equal(past.total, 23);
    const stars = (await search('pagerepo', 'anon', { pageSize: 100 })).results.map((r) => r.star_count);
    assert.deepEqual(
      stars,
      [...stars].sort((a, b) => b - a),
    );
  });

  it('clamps page and page size instead of failing', async () => {
    const big = await search('pagerepo', 'anon', { pageSize: 5000 });
    assert.equal(big.pageSize, 100);
    assert.equal(big.results.length, 23);
    const tiny = await search('pagerepo', 'anon', { pageSize: 0, page: -3 });
    assert.equal(tiny.pageSize, 1);
    assert.equal(tiny.page, 1);
    assert.equal(tiny.results.length, 1);
    const nan = await search('pagerepo', 'anon', { pageSize: Number.NaN, page: Number.POSITIVE_INFINITY });
    assert.equal(nan.pageSize, 25);
    assert.equal(nan.page, 1);
  });

  it('lists every visible repository by stars for an empty query', async () => {
    const r = await search('', 'anon', { pageSize: 100 });
    const [{ n }] = rawRows<{ n: unknown }>(
      ctx.db,
      await ctx.db.raw('select count(*) as n from repositories where deleted_at is null and private = ?', [false]),
    ) as [{ n: unknown }];
    assert.equal(r.total, Number(n));
    assert.equal(r.results[0]?.namespace + '/' + r.results[0]?.name, 'aa/unrelated');
    const stars = r.results.map((x) => x.star_count);
    assert.deepEqual(
      stars,
      [...stars].sort((a, b) => b - a),
    );
    const admin = await search('   ', 'admin', { pageSize: 1 });
    assert.equal(admin.total, Number(n) + 4);
    const past = await search('', 'anon', { page: 1000 });
    assert.deepEqual(past.results, []);
    assert.equal(past.total, Number(n));
  });

  it('never throws on hostile query text', async () => {
    const hostile = [
      "'",
      '"',
      '""',
      '*',
      '-',
      '%',
      '_',
      ';',
      "'--",
      "' OR 1=1 --",
      '" OR ""="',
      "'; drop table repositories; --",
      'busybox"',
      '"busybox',
      'bus*',
      '*busy*',
      '-busybox',
      'NOT busybox',
      'busybox AND',
      'OR',
      'AND NOT OR NEAR',
      'NEAR(busy box)',
      'name_words:busybox',
      '{name_words}: busybox',
      '^busybox',
      '(busybox',
      'busybox)',
      '\\',
      '\\\\%',
      'a&b|c!d',
      "'a':*",
      'a <-> b',
      '!busybox',
      '%%%',
      '___',
      '---',
      '...',
      '/',
      '//',
      'library/',
      '/busybox',
      '\u0000',
      'busy\u0000box',
      '\ud800busybox\udfff',
      '\u0007\u001b[31m',
      '🐳 docker',
      'ünïcödé',
      'e\u0301',
      '日本語',
      'مرحبا',
      '\u202e',
      'x'.repeat(10_000),
      'a '.repeat(500),
      '?',
      '??',
      '$1',
      ':1',
      '@p',
    ];
    for (const q of hostile) {
      for (const who of ['anon', 'admin'] as const) {
        const r = await search(q, who).catch((e: unknown) => {
          throw new Error(`search(${JSON.stringify(q.slice(0, 40))}) threw: ${String(e)}`);
        });
        assert.ok(Array.isArray(r.results), q);
        assert.ok(r.total >= r.results.length, q);
      }
    }
    // LIKE wildcards are literal, so they match nothing here.
    for (const q of ['%', '_', '%%%', '___']) assert.equal((await search(q, 'admin')).total, 0, q);
    // Prefix search survives punctuation around the word.
    assert.ok(names(await search('bus*')).includes('someone/busybox'));
    assert.ok(names(await search('"busybox')).includes('someone/busybox'));
    assert.ok(names(await search("busybox'--")).includes('someone/busybox'));
    // The tables are all still there.
    assert.ok((await ctx.db('repositories').count({ n: '*' })).length === 1);
  });

  it('parses query text into safe pieces', () => {
    const p = parseSearchQuery(" Foo-Bar_baz 'x' ");
    assert.equal(p.text, "foo-bar_baz 'x'");
    assert.deepEqual(p.words, ['foo', 'bar', 'baz', 'x']);
    assert.equal(p.substring, undefined); // a space and quotes: cannot be part of a name
    assert.equal(parseSearchQuery('my_app').prefixPattern, 'my\\_app%');
    assert.equal(parseSearchQuery('my_app').substring, 'my_app');
    assert.equal(parseSearchQuery('ab').substring, undefined);
  });
});
