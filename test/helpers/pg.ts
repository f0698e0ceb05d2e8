import { tmpdir } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { createDb } from '../../src/db/knex.js';

/** The PostgreSQL the suites use (CI starts one on loopback; .ci/run). */
export const PG_URL = process.env.TEST_PG_URL || 'postgresql://postgres@127.0.0.1:5432/test';

/**
 * Why the PostgreSQL suites are skipped (undefined: PostgreSQL answers). Where it is required
 * (TEST_PG_REQUIRED, or `alsoRequiredBy` names another variable that is set), an unreachable one is
 * a failure instead.
 */
export async function pgMissing(alsoRequiredBy?: string): Promise<string | undefined> {
  const db = createDb(PG_URL, tmpdir(), { poolMax: 1 });
  try {
    await Promise.race([db.raw('select 1'), sleep(3000).then(() => Promise.reject(new Error('no answer in 3 s')))]);
    return undefined;
  } catch (e) {
    if (process.env.TEST_PG_REQUIRED || (alsoRequiredBy && process.env[alsoRequiredBy])) {
      throw new Error(`PostgreSQL required but unreachable: ${(e as Error).message}`, { cause: e });
    }
    return `PostgreSQL unreachable (${(e as Error).message})`;
  } finally {
    await db.destroy();
  }
}
