import type { Knex } from 'knex';

/**
 * The names of deleted accounts and organizations. A namespace keeps what was stored under it after
 * its account or organization is gone: repositories the index lists (those already keep the name
 * taken), but also content the index has no record of (manifests pushed by digest only, blobs of a
 * push that never tagged), which the index gives to whoever owns the namespace. Signup and
 * organization creation treat a retired name as taken, so nobody inherits that content by taking
 * the name (src/index/service.ts namespaceHeld).
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('retired_namespaces', (t) => {
    t.string('name', 255).primary();
    t.timestamp('retired_at').notNullable();
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTable('retired_namespaces');
}
