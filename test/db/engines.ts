import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe } from 'node:test';
import { closeDb, createDb, migrateLatest, type Knex } from '../../src/db/knex.js';

/**
 * Runs one suite on every engine: SQLite (a temp file) always, PostgreSQL when reachable at TEST_PG_URL
 * (default postgresql://postgres@127.0.0.1:5432/test), each run isolated in a fresh schema dropped after.
 */

export const PG_URL = process.env.TEST_PG_URL || 'postgresql://postgres@127.0.0.1:5432/test';

export type EngineName = 'sqlite' | 'pg';

export interface EngineHandle {
  readonly engine: EngineName;
  /** A fresh, empty database (not migrated). */
  open(): Promise<Knex>;
  /** Close what `open` returned and drop its data. */
  dispose(db: Knex): Promise<void>;
}

const redacted = (url: string): string => url.replace(/\/\/[^@/]*@/, '//***@');

async function probePg(): Promise<string | undefined> {
  const db = createDb(PG_URL, tmpdir(), { poolMax: 1 });
  try {
    const timeout = new Promise<never>((_, reject) => {
      setTimeout(() => reject(new Error('no answer within 3 s')), 3000).unref();
    });
    await Promise.race([db.raw('select 1'), timeout]);
    // Best effort: pg_trgm in public, so a test schema never ends up owning the extension.
    await db.raw('create extension if not exists pg_trgm schema public').catch(() => undefined);
    return undefined;
  } catch (e) {
    // CI sets TEST_PG_REQUIRED: there the PostgreSQL half of the suite must run, not be skipped.
    if (process.env.TEST_PG_REQUIRED)
      throw new Error(`PostgreSQL required (TEST_PG_REQUIRED) but unreachable at ${redacted(PG_URL)}: ${(e as Error).message}`, { cause: e });
    return `PostgreSQL unreachable at ${redacted(PG_URL)} (${(e as Error).message}); set TEST_PG_URL or start it`;
  } finally {
    await db.destroy();
  }
}

const pgSkipReason = await probePg();

function sqliteHandle(): EngineHandle {
  const dirs = new Map<Knex, string>();
  return {
    engine: 'sqlite',
    async open() {
      const dir = await mkdtemp(join(tmpdir(), 'lr-db-'));
      const db = createDb(null, dir);
      dirs.set(db, dir);
      return db;
    },
    async dispose(db) {
      await closeDb(db);
      const dir = dirs.get(db);
      if (dir) await rm(dir, { recursive: true, force: true });
    },
  };
}

function pgHandle(): EngineHandle {
  const schemas = new Map<Knex, string>();
  return {
    engine: 'pg',
    async open() {
      const schema = `lr_test_${randomBytes(6).toString('hex')}`;
      const admin = createDb(PG_URL, tmpdir(), { poolMax: 1 });
      try {
        await admin.raw('create schema ??', [schema]);
      } finally {
        await admin.destroy();
      }
      const db = createDb(PG_URL, tmpdir(), { searchPath: [schema] });
      schemas.set(db, schema);
      return db;
    },
    async dispose(db) {
      await closeDb(db);
      const schema = schemas.get(db);
      if (!schema) return;
      const admin = createDb(PG_URL, tmpdir(), { poolMax: 1 });
      try {
        await admin.raw('drop schema if exists ?? cascade', [schema]);
      } finally {
        await admin.destroy();
      }
    },
  };
}

export const ENGINES: readonly { handle: EngineHandle; skip: string | undefined }[] = [
  { handle: sqliteHandle(), skip: undefined },
  { handle: pgHandle(), skip: pgSkipReason },
];

export interface SuiteContext {
  readonly engine: EngineName;
  /** The migrated database of this suite (valid inside tests). */
  readonly db: Knex;
  readonly handle: EngineHandle;
}

/**
 * `describe(title [engine])` once per engine, with a freshly migrated database shared by the suite's tests.
 * Suites on an unreachable PostgreSQL are skipped with the reason.
 */
export function describeEachEngine(title: string, body: (ctx: SuiteContext) => void): void {
  for (const { handle, skip } of ENGINES) {
    describe(`${title} [${handle.engine}]`, skip === undefined ? {} : { skip }, () => {
      let db: Knex | undefined;
      const ctx: SuiteContext = {
        engine: handle.engine,
        handle,
        get db(): Knex {
          if (!db) throw new Error('database not open yet');
          return db;
        },
      };
      before(async () => {
        db = await handle.open();
        await migrateLatest(db);
      });
      after(async () => {
        if (db) await handle.dispose(db);
      });
      body(ctx);
    });
  }
}

let counter = 0;
/** A unique valid username (`^[a-z0-9_]{4,30}$`). */
export function uniqueName(prefix = 'user'): string {
  counter += 1;
  return `${prefix}_${counter}_${randomBytes(3).toString('hex')}`.slice(0, 30);
}
