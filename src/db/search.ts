import type { Knex } from 'knex';
import { dbEngine } from './knex.js';
import { clampPage, rawRows, toBool, toNum } from './rows.js';

/**
 * Repository search (spec v1-protocol §3.11, I12), served by the indexes of migration
 * 20261123000001_search_index: FTS5/FTS4 (+ trigram) on SQLite, tsvector GIN (+ pg_trgm) on PostgreSQL.
 *
 * Ranking tiers, then star_count desc, then name, then namespace:
 *   0 exact match of the full name `ns/name` or of the name
 *   1 the name or the full name starts with the query
 *   2 every query word prefixes a word of the name
 *   3 every query word prefixes a word of the name, namespace or description
 *   4 the query is a substring of the full name (only when a trigram index exists; ≥ 3 characters)
 * Users' text never reaches SQL or FTS syntax unescaped: words are reduced to letters and digits and bound as
 * parameters, LIKE patterns are escaped, and the substring tier only runs for text a name could contain.
 */

export interface SearchVisibility {
  /** The caller; absent for anonymous searches (public repositories only). */
  readonly userId?: number;
  /** Admins see every repository. */
  readonly admin?: boolean;
}

export interface SearchOptions {
  readonly query?: string;
  /** 1-based, clamped to ≥ 1. */
  readonly page?: number;
  /** Clamped to 1…100 (spec §3.11 `n`), default 25. */
  readonly pageSize?: number;
  readonly visibleTo?: SearchVisibility;
}

export interface SearchResult {
  readonly namespace: string;
  readonly name: string;
  readonly description: string;
  readonly star_count: number;
  readonly private: boolean;
}

export interface SearchPage {
  /** All matches visible to the caller, on every page. */
  readonly total: number;
  readonly page: number;
  readonly pageSize: number;
  readonly results: SearchResult[];
}

/** Longest query text considered; the rest is ignored (no name or word is longer). */
const MAX_QUERY = 256;
const MAX_WORDS = 16;
/** What a repository name or `ns/name` can contain (spec §7.2); other text cannot be a substring of one. */
const NAME_TEXT = /^[a-z0-9_.\-/]+$/;

interface ParsedQuery {
  /** Lower-cased, trimmed query text. */
  readonly text: string;
  /** Letter/digit words, lower-cased. */
  readonly words: string[];
  /** Escaped LIKE pattern `text%`. */
  readonly prefixPattern: string;
  /** The text for the substring tier, if it may match a name. */
  readonly substring: string | undefined;
}

function escapeLike(s: string): string {
  return s.replace(/[\\%_]/g, (c) => `\\${c}`);
}

export function parseSearchQuery(query: string | undefined): ParsedQuery {
  // Control characters (NUL above all: PostgreSQL refuses it in text) separate words like spaces do.
  const text = (query ?? '')
    .slice(0, MAX_QUERY)
    .replace(/\p{Cc}/gu, ' ')
    .normalize('NFKC')
    .trim()
    .toLowerCase();
  const words = [...new Set(text.match(/[\p{L}\p{N}]+/gu) ?? [])].slice(0, MAX_WORDS);
  const substring = text.length >= 3 && NAME_TEXT.test(text) && /[a-z0-9]/.test(text) ? text : undefined;
  return { text, words, prefixPattern: `${escapeLike(text)}%`, substring };
}

// FTS5 strings: each word a quoted phrase (quotes doubled, though words hold none) with prefix `*`.
const fts5Words = (words: readonly string[]): string => words.map((w) => `"${w.replace(/"/g, '""')}"*`).join(' AND ');
// FTS4 has no quoted-prefix form; words are letters/digits only and lower case (so never AND/OR/NOT/NEAR).
const fts4Words = (words: readonly string[], column?: string): string =>
  words.map((w) => `${column ? `${column}:` : ''}${w}*`).join(' ');
// tsquery: each word a quoted lexeme with prefix match, optionally restricted to a weight (A = name words).
const tsWords = (words: readonly string[], weight = ''): string =>
  words.map((w) => `'${w.replace(/\\/g, '\\\\').replace(/'/g, "''")}':*${weight}`).join(' & ');

interface Features {
  readonly fts: 'fts5' | 'fts4' | 'tsvector';
  readonly trigram: boolean;
}

async function detectFeatures(db: Knex): Promise<Features> {
  if (dbEngine(db) === 'pg') {
    const rows = rawRows<{ n: unknown }>(
      db,
      await db.raw(
        `select count(*) as n from pg_indexes
          where schemaname = current_schema() and indexname = 'repositories_full_name_trgm_idx'`,
      ),
    );
    return { fts: 'tsvector', trigram: toNum(rows[0]?.n) > 0 };
  }
  const rows = rawRows<{ name: string; sql: string | null }>(
    db,
    await db.raw(`select name, sql from sqlite_master where name in ('repositories_fts', 'repositories_trgm')`),
  );
  const fts = rows.find((r) => r.name === 'repositories_fts');
  return {
    fts: fts && /fts4/i.test(fts.sql ?? '') ? 'fts4' : 'fts5',
    trigram: rows.some((r) => r.name === 'repositories_trgm'),
  };
}

/** The visibility filter (STYLE: applied in the query). Returns SQL over alias `r` and its bindings. */
function visibility(v: SearchVisibility | undefined): { sql: string; bindings: Knex.RawBinding[] } {
  if (v?.admin) return { sql: 'r.deleted_at is null', bindings: [] };
  if (v?.userId === undefined) return { sql: 'r.deleted_at is null and r.private = ?', bindings: [false] };
  const u = v.userId;
  return {
    sql: `r.deleted_at is null and (
      r.private = ?
      or r.owner_id = ?
      or exists (select 1 from users u where u.id = ? and u.username = r.namespace)
      or exists (select 1 from collaborators c where c.repo_id = r.id and c.user_id = ?)
      or exists (select 1 from organizations o join organization_members m on m.org_id = o.id
                  where o.name = r.namespace and m.user_id = ?))`,
    bindings: [false, u, u, u, u],
  };
}

interface ResultRow {
  namespace: string;
  name: string;
  description: string | null;
  star_count: unknown;
  private: unknown;
  total: unknown;
}

const toResult = (r: ResultRow): SearchResult => ({
  namespace: r.namespace,
  name: r.name,
  description: r.description ?? '',
  star_count: toNum(r.star_count),
  private: toBool(r.private),
});

const FULL_NAME = `(r.namespace || '/' || r.name)`;

/** Candidate ids and the tier-2/3 tests, per engine. */
function matchSql(
  f: Features,
  q: ParsedQuery,
): { candidates: string[]; candBindings: Knex.RawBinding[]; nameTest: string; anyTest: string; testBindings: Knex.RawBinding[] } {
  const candidates: string[] = [];
  const candBindings: Knex.RawBinding[] = [];
  let nameTest = 'false';
  let anyTest = 'false';
  const testBindings: Knex.RawBinding[] = [];
  if (f.fts === 'tsvector') {
    if (q.words.length > 0) {
      candidates.push(`select id from repositories where search_vector @@ to_tsquery('simple', ?)`);
      candBindings.push(tsWords(q.words));
      nameTest = `r.search_vector @@ to_tsquery('simple', ?)`;
      anyTest = `r.search_vector @@ to_tsquery('simple', ?)`;
      testBindings.push(tsWords(q.words, 'A'), tsWords(q.words));
    }
    if (f.trigram && q.substring !== undefined) {
      candidates.push(`select id from repositories where (namespace || '/' || name) like ? escape '\\'`);
      candBindings.push(`%${escapeLike(q.substring)}%`);
    }
  } else {
    if (q.words.length > 0) {
      const all = f.fts === 'fts5' ? fts5Words(q.words) : fts4Words(q.words);
      const inName = f.fts === 'fts5' ? `name_words : (${fts5Words(q.words)})` : fts4Words(q.words, 'name_words');
      candidates.push('select rowid as id from repositories_fts where repositories_fts match ?');
      candBindings.push(all);
      nameTest = 'r.id in (select rowid from repositories_fts where repositories_fts match ?)';
      anyTest = 'r.id in (select rowid from repositories_fts where repositories_fts match ?)';
      testBindings.push(inName, all);
    }
    if (f.trigram && q.substring !== undefined) {
      candidates.push('select rowid as id from repositories_trgm where repositories_trgm match ?');
      candBindings.push(`"${q.substring.replace(/"/g, '""')}"`);
    }
  }
  return { candidates, candBindings, nameTest, anyTest, testBindings };
}

/**
 * Search repositories visible to the caller. An empty query lists every visible repository by stars.
 * Never throws for any query text.
 */
export async function searchRepositories(db: Knex, opts: SearchOptions): Promise<SearchPage> {
  const { page, pageSize } = clampPage({ page: opts.page, pageSize: opts.pageSize }, 25, 100);
  const offset = (page - 1) * pageSize;
  const vis = visibility(opts.visibleTo);
  const q = parseSearchQuery(opts.query);
  const cols = 'r.namespace, r.name, r.description, r.star_count, r.private';

  let sql: string;
  let bindings: Knex.RawBinding[];
  let countSql: string;
  let countBindings: Knex.RawBinding[];
  if (q.text === '') {
    sql = `select ${cols}, count(*) over () as total from repositories r where ${vis.sql}
           order by r.star_count desc, r.name, r.namespace limit ? offset ?`;
    bindings = [...vis.bindings, pageSize, offset];
    countSql = `select count(*) as total from repositories r where ${vis.sql}`;
    countBindings = vis.bindings;
  } else {
    const m = matchSql(await detectFeatures(db), q);
    if (m.candidates.length === 0) return { total: 0, page, pageSize, results: [] };
    const cand = `with cand as (${m.candidates.join(' union ')})`;
    const from = `from cand join repositories r on r.id = cand.id where ${vis.sql}`;
    const tier = `case
        when r.name = ? or ${FULL_NAME} = ? then 0
        when r.name like ? escape '\\' or ${FULL_NAME} like ? escape '\\' then 1
        when ${m.nameTest} then 2
        when ${m.anyTest} then 3
        else 4 end`;
    sql = `${cand} select ${cols}, ${tier} as tier, count(*) over () as total ${from}
           order by tier, r.star_count desc, r.name, r.namespace limit ? offset ?`;
    bindings = [
      ...m.candBindings,
      q.text,
      q.text,
      q.prefixPattern,
      q.prefixPattern,
      ...m.testBindings,
      ...vis.bindings,
      pageSize,
      offset,
    ];
    countSql = `${cand} select count(*) as total ${from}`;
    countBindings = [...m.candBindings, ...vis.bindings];
  }
  const rows = rawRows<ResultRow>(db, await db.raw(sql, bindings));
  let total = rows[0] === undefined ? 0 : toNum(rows[0].total);
  // Past the last page the window count has no row to ride on: count separately.
  if (rows.length === 0 && offset > 0) {
    total = toNum(rawRows<{ total: unknown }>(db, await db.raw(countSql, countBindings))[0]?.total);
  }
  return { total, page, pageSize, results: rows.map(toResult) };
}
