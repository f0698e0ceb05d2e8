import type { Knex } from 'knex';

/**
 * The web UI (issue 14): server-side sessions, so every index node sharing the database honours a
 * browser's cookie, and the full (Markdown) description of a repository, kept apart from the short
 * one the v1 API serves. An index on `updated_at` lists recently pushed repositories off the index.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('web_sessions', (t) => {
    // sha256 (hex) of the cookie's value: the database never holds a usable session token
    t.string('id', 64).primary();
    t.integer('user_id').unsigned().notNullable().references('id').inTable('users').onDelete('CASCADE');
    // the form token of this session (CSRF), random
    t.string('csrf', 64).notNullable();
    // a fingerprint of the password hash at sign-in: any password change ends the session
    t.string('cred', 64).notNullable();
    t.timestamp('created_at').notNullable();
    t.timestamp('last_seen_at').notNullable();
    t.timestamp('expires_at').notNullable();
    t.index(['user_id'], 'web_sessions_user_idx');
    t.index(['expires_at'], 'web_sessions_expires_idx');
  });
  await knex.schema.createTable('repository_full_descriptions', (t) => {
    t.integer('repo_id').unsigned().primary().references('id').inTable('repositories').onDelete('CASCADE');
    t.text('body').notNullable();
    t.timestamp('updated_at').notNullable();
  });
  await knex.schema.alterTable('repositories', (t) => {
    t.index(['updated_at'], 'repositories_updated_idx');
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.alterTable('repositories', (t) => {
    t.dropIndex(['updated_at'], 'repositories_updated_idx');
  });
  await knex.schema.dropTable('repository_full_descriptions');
  await knex.schema.dropTable('web_sessions');
}
