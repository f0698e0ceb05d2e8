import { mkdirSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import knex, { type Knex } from 'knex';
import { DbUrlError } from './errors.js';

export type { Knex };

/** Which engine a URL selects, and how to open it. */
export type DbTarget = { readonly client: 'sqlite3'; readonly filename: string } | { readonly client: 'pg'; readonly connectionString: string };

export interface DbOptions {
  /** PostgreSQL only: schemas to put on search_path (first one receives the tables). */
  readonly searchPath?: readonly string[];
  /** PostgreSQL only: pool size (default 2…10). */
  readonly poolMax?: number;
  /** SQLite only: how long a statement waits for a lock before failing (default 5000 ms). */
  readonly busyTimeoutMs?: number;
}

const MEMORY = ':memory:';

/**
 * Interpret the index database URL (config `sqlalchemy_index_database`).
 * - empty / null: SQLite file `<dataDir>/index.db`
 * - `sqlite::memory:` (also `sqlite://:memory:`, `sqlite:///:memory:`): in-memory SQLite
 * - `sqlite:////tmp/x.db` (SQLAlchemy absolute form) and `sqlite:///abs/path`: absolute file
 * - `sqlite://relative/x.db`: file relative to the working directory
 * - `postgresql://…` / `postgres://…`: PostgreSQL
 */
export function parseDbUrl(url: string | null | undefined, dataDir: string): DbTarget {
  const u = (url ?? '').trim();
  if (u === '') return { client: 'sqlite3', filename: join(dataDir, 'index.db') };
  if (/^postgres(ql)?:\/\//i.test(u)) return { client: 'pg', connectionString: u };
  const m = /^sqlite3?:(.*)$/i.exec(u);
  if (!m) throw new DbUrlError(u);
  let rest = m[1] ?? '';
  if (rest.startsWith('//')) rest = rest.slice(2); // scheme authority separator
  rest = rest.replace(/\?.*$/, '');
  if (rest === MEMORY || rest === `/${MEMORY}`) return { client: 'sqlite3', filename: MEMORY };
  if (rest === '' || rest === '/') throw new DbUrlError(u);
  // `sqlite:////tmp/x.db` leaves `//tmp/x.db`: collapse the doubled slash into one absolute path.
  const path = rest.replace(/^\/+/, '/');
  return { client: 'sqlite3', filename: isAbsolute(path) ? path : resolve(path) };
}

/** The engine behind a Knex instance (or transaction). */
export function dbEngine(db: Knex): 'sqlite' | 'pg' {
  const name = (db.client as { config?: { client?: unknown } }).config?.client;
  return name === 'pg' ? 'pg' : 'sqlite';
}

interface SqliteConnection {
  run(sql: string, cb: (err: Error | null) => void): unknown;
}

function runPragmas(conn: SqliteConnection, pragmas: readonly string[], done: (err: Error | null) => void): void {
  const [first, ...more] = pragmas;
  if (first === undefined) {
    done(null);
    return;
  }
  conn.run(first, (err) => (err ? done(err) : runPragmas(conn, more, done)));
}

/**
 * Open the index database. Nothing is created or migrated here except the SQLite file's directory; call
 * `migrateLatest` to bring the schema up to date.
 */
export function createDb(url: string | null, dataDir: string, options: DbOptions = {}): Knex {
  const target = parseDbUrl(url, dataDir);
  if (target.client === 'pg') {
    return knex({
      client: 'pg',
      connection: target.connectionString,
      pool: { min: 0, max: options.poolMax ?? 10 },
      ...(options.searchPath ? { searchPath: [...options.searchPath] } : {}),
    });
  }
  if (target.filename !== MEMORY) mkdirSync(resolve(target.filename, '..'), { recursive: true });
  const busy = options.busyTimeoutMs ?? 5000;
  const memory = target.filename === MEMORY;
  return knex({
    client: 'sqlite3',
    connection: { filename: target.filename },
    useNullAsDefault: true,
    pool: {
      // One connection: SQLite has one writer anyway, and an in-memory database lives and dies with its
      // connection, so it must never be reaped.
      min: 1,
      max: 1,
      ...(memory ? { idleTimeoutMillis: Number.MAX_SAFE_INTEGER } : {}),
      afterCreate: (conn: SqliteConnection, done: (err: Error | null, conn: SqliteConnection) => void) => {
        runPragmas(conn, ['PRAGMA foreign_keys = ON', `PRAGMA busy_timeout = ${Math.max(0, Math.floor(busy))}`, 'PRAGMA journal_mode = WAL'], (err) =>
          done(err, conn),
        );
      },
    },
  });
}

/** Compiled migrations live in `dist/migrations/`, two levels up from this file (`dist/src/db/`). */
export function migrationsDirectory(): string {
  return fileURLToPath(new URL('../../migrations/', import.meta.url));
}

function migratorConfig(): Knex.MigratorConfig {
  return { directory: migrationsDirectory(), loadExtensions: ['.js'], tableName: 'knex_migrations' };
}

/** Apply every pending migration from the top-level `migrations/` folder. Returns the names applied. */
export async function migrateLatest(db: Knex): Promise<string[]> {
  const [, applied] = (await db.migrate.latest(migratorConfig())) as [number, string[]];
  return applied;
}

/** Undo every applied migration (tests and `db-migrate --down`). Returns the names rolled back. */
export async function migrateRollbackAll(db: Knex): Promise<string[]> {
  const [, undone] = (await db.migrate.rollback(migratorConfig(), true)) as [number, string[]];
  return undone;
}

/** Release every connection. */
export async function closeDb(db: Knex): Promise<void> {
  await db.destroy();
}
