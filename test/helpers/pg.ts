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

/**
 * A database of its own on the suites' PostgreSQL (named `lr_<prefix>_<pid>_<time>`): its URL for
 * `sqlalchemy_index_database`, and `drop()` to remove it after the suite.
 */
export async function pgDatabase(prefix: string): Promise<{ readonly url: string; drop(): Promise<void> }> {
  const name = `lr_${prefix}_${process.pid}_${Date.now().toString(36)}`;
  const admin = async (sql: string): Promise<void> => {
    const db = createDb(PG_URL, tmpdir(), { poolMax: 1 });
    try {
      await db.raw(sql);
    } finally {
      await db.destroy();
    }
  };
  await admin(`create database ${name}`);
  return { url: PG_URL.replace(/\/[^/?]*(\?.*)?$/, `/${name}`), drop: () => admin(`drop database if exists ${name}`) };
}
