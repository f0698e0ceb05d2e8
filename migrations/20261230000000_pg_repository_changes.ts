import type { Knex } from 'knex';

/**
 * PostgreSQL: the log of changed repositories that SQLite got in migration 20261124000000, so the
 * in-memory search (src/db/search-memory.ts) serves PostgreSQL too (issue 18: p99 ≤ 20 ms at 100,000
 * repositories; the GIN-indexed SQL took 67 ms). Every insert, update and delete of a `repositories`
 * row appends its id, whichever index node makes it; each node reads the last sequence number and
 * reloads only the changed rows. The log keeps the last 20,000 changes.
 *
 * Unlike SQLite's, PostgreSQL's writers run concurrently: a sequence number may become visible after
 * a higher one has been read. The reader keeps such holes and reads them again (search-memory.ts).
 */

function isPg(knex: Knex): boolean {
  return (knex.client as { config?: { client?: unknown } }).config?.client === 'pg';
}

export async function up(knex: Knex): Promise<void> {
  if (!isPg(knex)) return;
  await knex.raw('create table repository_changes (seq bigserial primary key, repo_id integer not null)');
  await knex.raw(`create function repository_changes_log() returns trigger language plpgsql as $$
    begin
      if tg_op = 'DELETE' then
        insert into repository_changes (repo_id) values (old.id);
      else
        insert into repository_changes (repo_id) values (new.id);
        if tg_op = 'UPDATE' and old.id <> new.id then
          insert into repository_changes (repo_id) values (old.id);
        end if;
      end if;
      return null;
    end $$`);
  await knex.raw(`create trigger repository_changes_log after insert or update or delete on repositories
    for each row execute function repository_changes_log()`);
  await knex.raw(`create function repository_changes_prune() returns trigger language plpgsql as $$
    begin
      if new.seq % 1000 = 0 then
        delete from repository_changes where seq <= new.seq - 20000;
      end if;
      return null;
    end $$`);
  await knex.raw(`create trigger repository_changes_prune after insert on repository_changes
    for each row execute function repository_changes_prune()`);
}

export async function down(knex: Knex): Promise<void> {
  if (!isPg(knex)) return;
  await knex.raw('drop table if exists repository_changes');
  await knex.raw('drop trigger if exists repository_changes_log on repositories');
  await knex.raw('drop function if exists repository_changes_log()');
  await knex.raw('drop function if exists repository_changes_prune()');
}
