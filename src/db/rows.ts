import type { Knex } from 'knex';
import { dbEngine } from './knex.js';

/**
 * Small conversions shared by the repository modules: the two engines return booleans, counts and
 * timestamps in different shapes (SQLite 0/1 and text, PostgreSQL booleans, bigint strings and Dates).
 */

/** One page of a list. `total` counts every match, not just this page. */
export interface Page<T> {
  readonly total: number;
  readonly items: T[];
}

export interface PageRequest {
  /** 1-based; clamped to ≥ 1. */
  readonly page?: number;
  /** Clamped to 1…maxPageSize. */
  readonly pageSize?: number;
}

/**
 * The last page number a list reads: (page − 1) × size stays a safe integer and a bigint OFFSET.
 * Past it PostgreSQL answered "out of range" (a 500 for /v1/search?page=4e17 on the SQL search),
 * and knex's offset() read 5e+301 as 5 (a wrong page of comments). Any page past the rows is empty.
 */
export const MAX_PAGE = 1_000_000_000;

export function clampPage(req: PageRequest, defaultSize = 25, maxSize = 100): { page: number; pageSize: number } {
  const page = Number.isFinite(req.page) ? Math.min(MAX_PAGE, Math.max(1, Math.floor(req.page as number))) : 1;
  const size = Number.isFinite(req.pageSize) ? Math.floor(req.pageSize as number) : defaultSize;
  return { page, pageSize: Math.min(maxSize, Math.max(1, size)) };
}

export function toBool(v: unknown): boolean {
  return v === true || v === 1 || v === '1' || v === 't' || v === 'true';
}

export function toNum(v: unknown): number {
  return typeof v === 'number' ? v : Number(v ?? 0);
}

/** SQLite's CURRENT_TIMESTAMP form (`2026-11-23 21:00:00`) is UTC without a zone marker. */
const SQLITE_TS = /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)?$/;

export function toDate(v: unknown): Date {
  if (v instanceof Date) return v;
  if (typeof v === 'number') return new Date(v);
  const s = String(v);
  return new Date(SQLITE_TS.test(s) ? `${s.replace(' ', 'T')}Z` : s);
}

export function toDateOrNull(v: unknown): Date | null {
  return v === null || v === undefined ? null : toDate(v);
}

/** A timestamp value to write: a Date for PostgreSQL (timestamptz), ISO-8601 UTC text for SQLite. */
export function tsValue(db: Knex, d: Date): Date | string {
  return dbEngine(db) === 'pg' ? d : d.toISOString();
}

/** A unique or primary-key violation, on either engine. */
export function isUniqueViolation(e: unknown): boolean {
  const err = e as { code?: unknown; message?: unknown };
  if (err.code === '23505') return true;
  return err.code === 'SQLITE_CONSTRAINT' && typeof err.message === 'string' && /UNIQUE|PRIMARY KEY/.test(err.message);
}

/** Lock rows for the rest of the transaction on PostgreSQL; SQLite serializes writers already. */
export function forUpdate<T extends Knex.QueryBuilder>(db: Knex, q: T): T {
  return dbEngine(db) === 'pg' ? (q.forUpdate() as T) : q;
}

/** Serialize writers of one name across tables (users and organizations share the name space). */
export async function lockName(trx: Knex.Transaction, name: string): Promise<void> {
  if (dbEngine(trx) === 'pg') await trx.raw('select pg_advisory_xact_lock(hashtext(?))', [`namespace:${name}`]);
}

/** Rows of a raw query, on either engine (pg wraps them in `{ rows }`). */
export function rawRows<T>(db: Knex, result: unknown): T[] {
  return dbEngine(db) === 'pg' ? (result as { rows: T[] }).rows : (result as T[]);
}
