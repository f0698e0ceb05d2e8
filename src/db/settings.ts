import { randomBytes } from 'node:crypto';
import type { Knex } from 'knex';

/**
 * The secret that signs v1 tokens: the configured one, else one generated once and kept in the
 * database, so every index node sharing the database signs and verifies alike.
 */
export async function tokenSecret(db: Knex, configured: string | null): Promise<Buffer> {
  if (configured) return Buffer.from(configured, 'utf8');
  const row = (await db('settings').where({ key: 'token_secret' }).first('value')) as { value: string } | undefined;
  if (row) return Buffer.from(row.value, 'base64');
  const fresh = randomBytes(32).toString('base64');
  // Two nodes starting at once: the first insert wins, both then read the same value.
  await db('settings').insert({ key: 'token_secret', value: fresh }).onConflict('key').ignore();
  const again = (await db('settings').where({ key: 'token_secret' }).first('value')) as { value: string };
  return Buffer.from(again.value, 'base64');
}
