import type { Knex } from 'knex';

/**
 * Login throttling per (account, client address) (security issue 10, finding 10). `login_failures`
 * keeps counting per account, across addresses, against a much higher ceiling; this table counts
 * the failures of one account from one address, so an attacker locks out its own address only.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('login_address_failures', (t) => {
    t.string('username', 255).notNullable();
    // an IPv6 address with a zone fits in 64 characters
    t.string('address', 64).notNullable();
    t.integer('failures').notNullable().defaultTo(0);
    t.timestamp('window_start').notNullable();
    t.timestamp('locked_until').nullable();
    t.primary(['username', 'address']);
    t.index(['window_start'], 'login_address_failures_window_idx');
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTable('login_address_failures');
}
