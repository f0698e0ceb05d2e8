import type { Knex } from 'knex';

/**
 * Who may read a private repository besides its owner — collaborators, organization members, the
 * account whose name is the namespace — changes rarely and was read from the database by every signed-in
 * search (one round trip, kept at most 250 ms: on PostgreSQL the most of such a search's time). These
 * triggers append repo_id 0 to `repository_changes` (migrations 20261124000000 and 20261230000000) on
 * every change of those grants, so the in-memory search (src/db/search-memory.ts) keeps an account's
 * grants until one changes: at once for this process's writes, within 250 ms for another's.
 */

function isPg(knex: Knex): boolean {
  return (knex.client as { config?: { client?: unknown } }).config?.client === 'pg';
}

/** table → the changes that can change a grant. */
const EVENTS: readonly [string, string][] = [
  ['collaborators', 'insert or update or delete'],
  ['organization_members', 'insert or update or delete'],
  ['organizations', 'update of name or delete'],
  ['users', 'update of username or delete'],
];

export async function up(knex: Knex): Promise<void> {
  if (isPg(knex)) {
    await knex.raw(`create function grant_changes_log() returns trigger language plpgsql as $$
      begin
        insert into repository_changes (repo_id) values (0);
        return null;
      end $$`);
    for (const [table, events] of EVENTS) {
      await knex.raw(`create trigger ${table}_grant_changes after ${events} on ${table} for each statement execute function grant_changes_log()`);
    }
    return;
  }
  for (const [table, events] of EVENTS) {
    // SQLite: one trigger per event, each row (SQLite has no statement triggers)
    for (const event of events.split(' or ')) {
      const name = `${table}_grant_changes_${event.split(' ')[0]}`;
      await knex.raw(`create trigger ${name} after ${event} on ${table} begin insert into repository_changes (repo_id) values (0); end`);
    }
  }
}

export async function down(knex: Knex): Promise<void> {
  if (isPg(knex)) {
    for (const [table] of EVENTS) await knex.raw(`drop trigger if exists ${table}_grant_changes on ${table}`);
    await knex.raw('drop function if exists grant_changes_log()');
    return;
  }
  for (const [table, events] of EVENTS) {
    for (const event of events.split(' or ')) await knex.raw(`drop trigger if exists ${table}_grant_changes_${event.split(' ')[0]}`);
  }
}
