import type { Knex } from 'knex';

/**
 * Full-text search over repositories (spec v1-protocol §3.11, I12), served by an index, never a scan.
 *
 * SQLite: an FTS5 table `repositories_fts(full_name, name_words, description)` (FTS4 when FTS5 is not compiled
 * in) kept in sync by triggers, plus, when the trigram tokenizer exists (SQLite ≥ 3.34), an FTS5 trigram
 * table `repositories_trgm(full_name)` for substring matches (`usy` finds `busybox`).
 *
 * PostgreSQL: a generated `search_vector` tsvector column (name words weight A, namespace words B,
 * description C) with a GIN index, plus a pg_trgm GIN index on `namespace || '/' || name` when the
 * extension exists or may be created (skipped, not failed, when it may not).
 *
 * src/db/search.ts detects which of these exist, so both variants stay queryable.
 */

function isPg(knex: Knex): boolean {
  return (knex.client as { config?: { client?: unknown } }).config?.client === 'pg';
}

/** `a-b_c.d` → `a b c d`: the words of a repository name (same rule on both engines). */
const SQLITE_NAME_WORDS = (col: string): string => `replace(replace(replace(${col}, '-', ' '), '_', ' '), '.', ' ')`;

function versionAtLeast(version: string, major: number, minor: number): boolean {
  const [a = 0, b = 0] = version.split('.').map(Number);
  return a > major || (a === major && b >= minor);
}

async function sqliteHasModule(knex: Knex, module: 'fts5' | 'fts4', version: string): Promise<boolean> {
  if (versionAtLeast(version, 3, 30)) {
    const rows = (await knex.raw('select name from pragma_module_list where name = ?', [module])) as unknown[];
    if (rows.length > 0) return true;
  }
  const option = module === 'fts5' ? 'ENABLE_FTS5' : 'ENABLE_FTS4';
  const rows = (await knex.raw('select sqlite_compileoption_used(?) as used', [option])) as { used: number }[];
  return rows[0]?.used === 1;
}

async function upSqlite(knex: Knex): Promise<void> {
  const [{ v: version }] = (await knex.raw('select sqlite_version() as v')) as [{ v: string }];
  const fts5 = await sqliteHasModule(knex, 'fts5', version);
  if (fts5) {
    const diacritics = versionAtLeast(version, 3, 27) ? 2 : 1;
    await knex.raw(
      `create virtual table repositories_fts using fts5(full_name, name_words, description,
         tokenize = 'unicode61 remove_diacritics ${diacritics}', prefix = '2 3')`,
    );
  } else if (await sqliteHasModule(knex, 'fts4', version)) {
    await knex.raw(
      `create virtual table repositories_fts using fts4(full_name, name_words, description,
         tokenize=unicode61, prefix="2,3")`,
    );
  } else {
    throw new Error(`SQLite ${version} has neither FTS5 nor FTS4 compiled in; repository search needs one of them`);
  }
  const values = (row: 'new' | 'r'): string =>
    `${row}.id, ${row}.namespace || '/' || ${row}.name, ${SQLITE_NAME_WORDS(`${row}.name`)}, coalesce(${row}.description, '')`;
  await knex.raw(
    `insert into repositories_fts (rowid, full_name, name_words, description) select ${values('r')} from repositories r`,
  );
  await knex.raw(`create trigger repositories_fts_insert after insert on repositories begin
      insert into repositories_fts (rowid, full_name, name_words, description) values (${values('new')});
    end`);
  await knex.raw(`create trigger repositories_fts_update after update of namespace, name, description on repositories begin
      delete from repositories_fts where rowid = old.id;
      insert into repositories_fts (rowid, full_name, name_words, description) values (${values('new')});
    end`);
  await knex.raw(`create trigger repositories_fts_delete after delete on repositories begin
      delete from repositories_fts where rowid = old.id;
    end`);

  if (fts5 && versionAtLeast(version, 3, 34)) {
    await knex.raw(`create virtual table repositories_trgm using fts5(full_name, tokenize = 'trigram')`);
    await knex.raw(
      `insert into repositories_trgm (rowid, full_name) select id, namespace || '/' || name from repositories`,
    );
    await knex.raw(`create trigger repositories_trgm_insert after insert on repositories begin
        insert into repositories_trgm (rowid, full_name) values (new.id, new.namespace || '/' || new.name);
      end`);
    await knex.raw(`create trigger repositories_trgm_update after update of namespace, name on repositories begin
        delete from repositories_trgm where rowid = old.id;
        insert into repositories_trgm (rowid, full_name) values (new.id, new.namespace || '/' || new.name);
      end`);
    await knex.raw(`create trigger repositories_trgm_delete after delete on repositories begin
        delete from repositories_trgm where rowid = old.id;
      end`);
  }
}

/** Errors meaning "you may not / cannot create this extension here" — search then does without trigrams. */
const EXTENSION_UNAVAILABLE = new Set(['42501', '58P01', '0A000', '42704', '2BP01']);

async function pgTrigramSchema(knex: Knex): Promise<string | undefined> {
  const find = async (): Promise<string | undefined> => {
    const res = (await knex.raw(
      `select n.nspname as schema from pg_extension e join pg_namespace n on n.oid = e.extnamespace
        where e.extname = 'pg_trgm'`,
    )) as { rows: { schema: string }[] };
    return res.rows[0]?.schema;
  };
  const existing = await find();
  if (existing !== undefined) return existing;
  try {
    // A savepoint, so a refusal does not abort the migration's transaction.
    await knex.transaction(async (sp) => {
      await sp.raw('create extension if not exists pg_trgm');
    });
  } catch (e) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && EXTENSION_UNAVAILABLE.has(code)) return undefined;
    throw e;
  }
  return find();
}

async function upPg(knex: Knex): Promise<void> {
  const words = (col: string): string => `regexp_replace(${col}, '[^[:alnum:]]+', ' ', 'g')`;
  await knex.raw(`alter table repositories add column search_vector tsvector generated always as (
      setweight(to_tsvector('simple'::regconfig, ${words('name')}), 'A') ||
      setweight(to_tsvector('simple'::regconfig, ${words('namespace')}), 'B') ||
      setweight(to_tsvector('simple'::regconfig, ${words("coalesce(description, '')")}), 'C')
    ) stored`);
  await knex.raw('create index repositories_search_vector_idx on repositories using gin (search_vector)');
  const trgm = await pgTrigramSchema(knex);
  if (trgm !== undefined) {
    // Qualified: the extension may live in a schema that is not on our search_path.
    await knex.raw(
      `create index repositories_full_name_trgm_idx on repositories using gin ((namespace || '/' || name) ??.gin_trgm_ops)`,
      [trgm],
    );
  }
}

export async function up(knex: Knex): Promise<void> {
  await (isPg(knex) ? upPg(knex) : upSqlite(knex));
}

export async function down(knex: Knex): Promise<void> {
  if (isPg(knex)) {
    await knex.raw('drop index if exists repositories_full_name_trgm_idx');
    await knex.raw('drop index if exists repositories_search_vector_idx');
    await knex.raw('alter table repositories drop column if exists search_vector');
    // pg_trgm stays: other objects may use it, and dropping extensions needs rights we may not have.
    return;
  }
  for (const trigger of [
    'repositories_trgm_delete',
    'repositories_trgm_update',
    'repositories_trgm_insert',
    'repositories_fts_delete',
    'repositories_fts_update',
    'repositories_fts_insert',
  ]) {
    await knex.raw(`drop trigger if exists ${trigger}`);
  }
  await knex.raw('drop table if exists repositories_trgm');
  await knex.raw('drop table if exists repositories_fts');
}
