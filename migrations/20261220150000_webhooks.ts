import type { Knex } from 'knex';

/**
 * Webhooks (issue 15): per-repository hooks and their deliveries. `webhook_deliveries` is the
 * outbox every index node sharing the database reads: a delivery is claimed by one node at a time
 * (a lease in `claimed_until`), retried with backoff, then marked failed; it is also the history
 * the owner reads, with one `webhook_attempts` row per HTTP attempt. Times are epoch milliseconds
 * (bigint) so both engines compare them the same way.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('webhooks', (t) => {
    t.increments('id').primary();
    t.integer('repo_id').unsigned().notNullable().references('id').inTable('repositories').onDelete('CASCADE');
    t.string('name', 100).notNullable();
    t.string('url', 2048).notNullable();
    // HMAC-SHA256 key of the signature header; null: unsigned, as Docker Hub sent them
    t.string('secret', 200).nullable();
    // Hub's chains: this hook fires only after the previous one (by id) got a `success` callback
    t.boolean('chained').notNullable().defaultTo(false);
    t.bigInteger('created_at').notNullable();
    t.unique(['repo_id', 'name'], { indexName: 'webhooks_repo_name_unique' });
  });
  await knex.schema.createTable('webhook_deliveries', (t) => {
    // random (uuid): sent as the delivery id header
    t.string('id', 36).primary();
    t.integer('webhook_id').unsigned().notNullable().references('id').inTable('webhooks').onDelete('CASCADE');
    t.string('event', 16).notNullable(); // push | test
    t.string('tag', 128).nullable();
    t.text('payload').notNullable();
    // waiting (chain: for the previous hook's callback) | pending | sending | delivered | failed | skipped
    t.string('state', 16).notNullable();
    // the delivery of the previous hook of the chain this one waits for
    t.string('after_id', 36).nullable();
    t.integer('attempts').notNullable().defaultTo(0);
    t.bigInteger('next_at').notNullable();
    t.string('claimed_by', 64).nullable();
    t.bigInteger('claimed_until').nullable();
    t.integer('last_status').nullable();
    t.text('last_error').nullable();
    // the random part of callback_url (sha256 hex of it is not needed: it grants nothing but a state)
    t.string('callback_token', 64).notNullable().unique('webhook_deliveries_callback_unique');
    t.string('callback_state', 16).nullable();
    t.text('callback_description').nullable();
    t.text('callback_context').nullable();
    t.text('callback_target_url').nullable();
    t.bigInteger('callback_at').nullable();
    t.bigInteger('created_at').notNullable();
    t.bigInteger('finished_at').nullable();
    t.index(['state', 'next_at'], 'webhook_deliveries_due_idx');
    t.index(['webhook_id', 'created_at'], 'webhook_deliveries_hook_idx');
    t.index(['after_id'], 'webhook_deliveries_after_idx');
  });
  await knex.schema.createTable('webhook_attempts', (t) => {
    t.increments('id').primary();
    t.string('delivery_id', 36).notNullable().references('id').inTable('webhook_deliveries').onDelete('CASCADE');
    t.bigInteger('at').notNullable();
    t.integer('status').nullable();
    t.integer('duration_ms').notNullable();
    t.text('error').nullable();
    t.text('response_excerpt').nullable();
    t.string('node', 64).nullable();
    t.index(['delivery_id'], 'webhook_attempts_delivery_idx');
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTable('webhook_attempts');
  await knex.schema.dropTable('webhook_deliveries');
  await knex.schema.dropTable('webhooks');
}
