import type { Knex } from 'knex';

/**
 * An account's credential epoch: counted up each time the account is deactivated. The fingerprints
 * its v1 tokens and v2 refresh tokens carry are made from its password hash and, once it is not 0,
 * this number (db/users.ts credentialOf), so deactivating an account ends them for good: activated
 * again, it does not bring them back (a password change ends them the same way).
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable('users', (t) => {
    t.integer('credential_epoch').notNullable().defaultTo(0);
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.alterTable('users', (t) => {
    t.dropColumn('credential_epoch');
  });
}
