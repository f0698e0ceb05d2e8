import type { Knex } from 'knex';

/**
 * Issue 15, "never lost": the ids of the v1 push notices a split registry sent (journalled in its
 * storage, replayed until the index answers). The id is recorded in the transaction that queues the
 * push's deliveries, so a replay after a lost answer queues nothing a second time. Pruned with the
 * webhook history.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('v1_push_notices', (t) => {
    // `<repository id>/<notice id>`
    t.string('id', 80).primary();
    t.bigInteger('created_at').notNullable();
    t.index(['created_at'], 'v1_push_notices_created_idx');
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTable('v1_push_notices');
}
