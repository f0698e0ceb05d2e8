import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, it } from 'node:test';
import { DbUrlError } from '../../src/db/errors.js';
import { closeDb, createDb, dbEngine, migrateLatest, migrateRollbackAll, migrationsDirectory, parseDbUrl } from '../../src/db/knex.js';
import { rawRows } from '../../src/db/rows.js';
import { ROOT } from '../helpers/paths.js';
import { describeEachEngine, ENGINES } from './engines.js';

const TABLES = ['users', 'organizations', 'organization_members', 'repositories', 'collaborators', 'stars', 'comments', 'repository_images', 'login_failures'];

describe('parseDbUrl', () => {
  it('uses <dataDir>/index.db when no URL is configured', () => {
    assert.deepEqual(parseDbUrl(null, '/data'), { client: 'sqlite3', filename: '/data/index.db' });
    assert.deepEqual(parseDbUrl('', '/data'), { client: 'sqlite3', filename: '/data/index.db' });
    assert.deepEqual(parseDbUrl('  ', '/data'), { client: 'sqlite3', filename: '/data/index.db' });
  });

  it('reads absolute SQLite paths with three or four slashes', () => {
    assert.deepEqual(parseDbUrl('sqlite:///abs/path.db', '/d'), { client: 'sqlite3', filename: '/abs/path.db' });
    assert.deepEqual(parseDbUrl('sqlite:////tmp/x.db', '/d'), { client: 'sqlite3', filename: '/tmp/x.db' });
  });

  it('reads relative SQLite paths against the working directory', () => {
    assert.deepEqual(parseDbUrl('sqlite://relative/x.db', '/d'), {
      client: 'sqlite3',
      filename: resolve('relative/x.db'),
    });
  });

  it('recognises in-memory SQLite', () => {
    for (const u of ['sqlite::memory:', 'sqlite://:memory:', 'sqlite:///:memory:']) {
      assert.deepEqual(parseDbUrl(u, '/d'), { client: 'sqlite3', filename: ':memory:' }, u);
    }
  });

  it('selects PostgreSQL for postgresql:// and postgres://', () => {
    assert.equal(parseDbUrl('postgresql://u:p@h:5432/db', '/d').client, 'pg');
    assert.equal(parseDbUrl('postgres://h/db', '/d').client, 'pg');
  });

  it('refuses other schemes without echoing the password', () => {
    assert.throws(
      () => parseDbUrl('mysql://u:secret@h/db', '/d'),
      (e: unknown) => {
        assert.ok(e instanceof DbUrlError);
        assert.doesNotMatch(e.message, /secret/);
        return true;
      },
    );
    assert.throws(() => parseDbUrl('sqlite://', '/d'), DbUrlError);
  });
});

describe('in-memory SQLite', () => {
  it('keeps its one connection, so data survives between queries', async () => {
    const db = createDb('sqlite::memory:', '/nonexistent');
    try {
      await migrateLatest(db);
      await db('organizations').insert({ name: 'kept', created_at: new Date().toISOString() });
      const rows = await db('organizations').select('name');
      assert.deepEqual(rows, [{ name: 'kept' }]);
      assert.equal(dbEngine(db), 'sqlite');
    } finally {
      await closeDb(db);
    }
  });
});

/** Every migration in the source tree, as knex names the compiled files, in order. */
const MIGRATIONS = readdirSync(join(ROOT, 'migrations'))
  .filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'))
  .map((f) => f.replace(/\.ts$/, '.js'))
  .sort();

describe('migrations build', () => {
  it('compiles every migrations/*.ts next to the running code', () => {
    const sources = MIGRATIONS;
    const compiled = readdirSync(migrationsDirectory())
      .filter((f) => f.endsWith('.js'))
      .sort();
    assert.ok(sources.length >= 2);
    assert.deepEqual(compiled, sources, 'every migrations/*.ts is compiled (tsconfig include)');
  });
});

async function tableNames(db: ReturnType<typeof createDb>): Promise<string[]> {
  if (dbEngine(db) === 'pg') {
    const rows = rawRows<{ table_name: string }>(db, await db.raw(`select table_name from information_schema.tables where table_schema = current_schema()`));
    return rows.map((r) => r.table_name).sort();
  }
  const rows = rawRows<{ name: string }>(db, await db.raw(`select name from sqlite_master where type = 'table'`));
  return rows.map((r) => r.name).sort();
}

for (const { handle, skip } of ENGINES) {
  describe(`migrations [${handle.engine}]`, skip === undefined ? {} : { skip }, () => {
    it('migrate up from an empty database, then a re-run is a no-op', async () => {
      const db = await handle.open();
      try {
        const first = await migrateLatest(db);
        assert.deepEqual(first, MIGRATIONS);
        const names = await tableNames(db);
        for (const t of TABLES) assert.ok(names.includes(t), `table ${t}`);
        assert.deepEqual(await migrateLatest(db), []);
      } finally {
        await handle.dispose(db);
      }
    });

    it('rolls back to empty and comes up again', async () => {
      const db = await handle.open();
      try {
        await migrateLatest(db);
        const undone = await migrateRollbackAll(db);
        assert.equal(undone.length, MIGRATIONS.length);
        const left = (await tableNames(db)).filter((t) => !t.startsWith('knex_') && !t.startsWith('sqlite_'));
        assert.deepEqual(left, []);
        assert.equal((await migrateLatest(db)).length, MIGRATIONS.length);
      } finally {
        await handle.dispose(db);
      }
    });
  });
}

describeEachEngine('connection settings', (ctx) => {
  it('enforces foreign keys', async () => {
    await assert.rejects(ctx.db('stars').insert({ repo_id: 999999, user_id: 999999, created_at: new Date().toISOString() }));
  });

  it('uses WAL and a busy timeout on SQLite', { skip: ctx.engine !== 'sqlite' && 'SQLite only' }, async () => {
    const [mode] = rawRows<{ journal_mode: string }>(ctx.db, await ctx.db.raw('pragma journal_mode'));
    assert.equal(mode?.journal_mode, 'wal');
    const [busy] = rawRows<{ timeout: number }>(ctx.db, await ctx.db.raw('pragma busy_timeout'));
    assert.equal(busy?.timeout, 5000);
  });
});
