import type { Knex } from 'knex';

/**
 * SQLite: a log of changed repositories for the in-memory search (src/db/search-memory.ts). Every
 * insert, update and delete of a `repositories` row appends its id, whoever makes it (an index
 * process, another one on the same file, the CLI); a search reads the last sequence number and
 * reloads only the rows changed since. The log keeps the last 20,000 changes; a reader that fell
 * further behind reloads everything. PostgreSQL searches with its GIN indexes and needs no log.
 */

function isPg(knex: Knex): boolean {
  return (knex.client as { config?: { client?: unknown } }).config?.client === 'pg';
}

export async function up(knex: Knex): Promise<void> {
  if (isPg(knex)) return;
  await knex.raw('create table repository_changes (seq integer primary key autoincrement, repo_id integer not null)');
  await knex.raw(`create trigger repository_changes_insert after insert on repositories begin
      insert into repository_changes (repo_id) values (new.id);
    end`);
  await knex.raw(`create trigger repository_changes_update after update on repositories begin
      insert into repository_changes (repo_id) values (new.id);
      insert into repository_changes (repo_id) select old.id where old.id <> new.id;
    end`);
  await knex.raw(`create trigger repository_changes_delete after delete on repositories begin
      insert into repository_changes (repo_id) values (old.id);
    end`);
  await knex.raw(`create trigger repository_changes_prune after insert on repository_changes when new.seq % 1000 = 0 begin
      delete from repository_changes where seq <= new.seq - 20000;
    end`);
}

export async function down(knex: Knex): Promise<void> {
  if (isPg(knex)) return;
  for (const t of ['repository_changes_insert', 'repository_changes_update', 'repository_changes_delete']) await knex.raw(`drop trigger if exists ${t}`);
  await knex.raw('drop table if exists repository_changes');
}
