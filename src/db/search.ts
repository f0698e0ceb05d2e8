import type { Knex } from 'knex';
import { dbEngine } from './knex.js';
import { clampPage, rawRows, toBool, toNum } from './rows.js';
import { memoryIndex } from './search-memory.js';
import { searchDuration } from '../metrics/registry.js';
import type { ParsedQuery, SearchPage, SearchResult, SearchVisibility } from './search-types.js';

export type { ParsedQuery, SearchPage, SearchResult, SearchVisibility } from './search-types.js';

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

export interface SearchOptions {
  readonly query?: string;
  /** 1-based, clamped to ≥ 1. */
  readonly page?: number;
  /** Clamped to 1…100 (spec §3.11 `n`), default 25. */
  readonly pageSize?: number;
  readonly visibleTo?: SearchVisibility;
}

/** Longest query text considered; the rest is ignored (no name or word is longer). */
const MAX_QUERY = 256;
const MAX_WORDS = 16;
/** What a repository name or `ns/name` can contain (spec §7.2); other text cannot be a substring of one. */
const NAME_TEXT = /^[a-z0-9_.\-/]+$/;

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
const fts4Words = (words: readonly string[], column?: string): string => words.map((w) => `${column ? `${column}:` : ''}${w}*`).join(' ');
// tsquery: each word a quoted lexeme with prefix match, optionally restricted to a weight (A = name words).
const tsWords = (words: readonly string[], weight = ''): string => words.map((w) => `'${w.replace(/\\/g, '\\\\').replace(/'/g, "''")}':*${weight}`).join(' & ');

interface Features {
  readonly fts: 'fts5' | 'fts4' | 'tsvector';
  readonly trigram: boolean;
}

const featureCache = new WeakMap<Knex, Features>();
const memoryCache = new WeakMap<Knex, boolean>();

/** Code-point order, as SQLite's BINARY collation and PostgreSQL's C collations sort. */
const PROBES = ['a', 'B', 'b', 'Z', '_', '-', '.', '0', '9', 'a-b', 'a_b', 'a.b', 'ab', 'a b', 'aB', 'é', 'e', 'f', 'ß', 'я'];

/**
 * Whether the search may be served from memory (search-memory.ts): the repository change log exists
 * (migration 20261124000000 on SQLite, 20261230000000 on PostgreSQL) and, on PostgreSQL, names sort in
 * code-point order as the memory sorts them (a C collation: a site whose database sorts by a language's
 * rules keeps the SQL search, so the order never depends on where a search was served).
 */
async function memoryServes(db: Knex): Promise<boolean> {
  const cached = memoryCache.get(db);
  if (cached !== undefined) return cached;
  let v: boolean;
  let log: unknown[];
  if (dbEngine(db) === 'pg') {
    log = rawRows(db, await db.raw(`select 1 as x from pg_tables where schemaname = current_schema() and tablename = 'repository_changes'`));
    const cols = rawRows<{ c: string | null }>(
      db,
      await db.raw(
        `select collation_name as c from information_schema.columns
          where table_schema = current_schema() and table_name = 'repositories' and column_name in ('namespace', 'name')`,
      ),
    );
    const sorted = rawRows<{ a: string[] }>(db, await db.raw(`select array_agg(s order by s) as a from unnest(?::text[]) as s`, [PROBES]))[0]?.a;
    const binary = [...PROBES].sort((x, y) => (x < y ? -1 : x > y ? 1 : 0));
    v = log.length > 0 && cols.every((c) => c.c === null || /^(C|POSIX|ucs_basic)$/i.test(c.c)) && JSON.stringify(sorted) === JSON.stringify(binary);
  } else {
    log = rawRows(db, await db.raw(`select 1 as x from sqlite_master where type = 'table' and name = 'repository_changes'`));
    v = log.length > 0;
  }
  // a database not migrated yet is asked again (migrations run before serving)
  if (log.length > 0) memoryCache.set(db, v);
  return v;
}

/**
 * PostgreSQL's 'simple' parser and lower-casing of non-ASCII words depend on the server's locale; the
 * memory knows the rows' lexemes (read from search_vector) but not how the server would parse such a
 * query word, so those few queries run in SQL.
 */
const memoryParses = (db: Knex, q: ParsedQuery): boolean => dbEngine(db) !== 'pg' || q.words.every((w) => /^[a-z0-9]+$/.test(w));

/** The search indexes present; looked up once per database (migrations run before serving). */
async function detectFeatures(db: Knex): Promise<Features> {
  const cached = featureCache.get(db);
  if (cached) return cached;
  const f = await probeFeatures(db);
  if (f.fts !== 'fts5' || f.trigram || dbEngine(db) === 'pg') featureCache.set(db, f);
  return f;
}

async function probeFeatures(db: Knex): Promise<Features> {
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
export function visibility(v: SearchVisibility | undefined): { sql: string; bindings: Knex.RawBinding[] } {
  if (v?.admin) return { sql: 'r.deleted_at is null', bindings: [] };
  if (v?.userId === undefined) return { sql: 'r.deleted_at is null and r.private = ?', bindings: [false] };
  const u = v.userId;
  // exactly who may read (src/index/access.ts rightsOn): the namespace's user, members of its
  // organization, collaborators; not whoever created the repository (owner_id: a member who left the
  // organization), and private `library` repositories are the admins' alone.
  // Uncorrelated IN-subqueries: each is computed once (a hashed set), where correlated EXISTS ran per row
  // and, on PostgreSQL, inflated the cost estimate past the JIT threshold (measured 441 ms vs 47 ms).
  return {
    sql: `r.deleted_at is null and (
      r.private = ?
      or r.namespace in (select u.username from users u where u.id = ?)
      or (r.namespace <> 'library' and (
        r.id in (select c.repo_id from collaborators c where c.user_id = ?)
        or r.namespace in (select o.name from organizations o join organization_members m on m.org_id = o.id
                            where m.user_id = ?))))`,
    bindings: [false, u, u, u],
  };
}

interface ResultRow {
  namespace: string;
  name: string;
  description: string | null;
  star_count: unknown;
  private: unknown;
}

const toResult = (r: ResultRow): SearchResult => ({
  namespace: r.namespace,
  name: r.name,
  description: r.description ?? '',
  star_count: toNum(r.star_count),
  private: toBool(r.private),
});

const FULL_NAME = `(r.namespace || '/' || r.name)`;

/** SQL fragments with their bindings, in the order they appear. */
interface Fragment {
  readonly sql: string;
  readonly bindings: Knex.RawBinding[];
}

interface MatchPlan {
  /** `with …` prefix (may be empty). */
  readonly with: Fragment;
  /** `from … where <match>`; the visibility filter is and-ed after it. */
  readonly from: Fragment;
  /** Tier 2: every word prefixes a word of the name. */
  readonly nameTest: Fragment;
  /** Tier 3 (else 4): the row matched on words, not only as a substring. */
  readonly wordTest: Fragment;
}

const FALSE: Fragment = { sql: 'false', bindings: [] };

/**
 * How to find the candidates on each engine. PostgreSQL: one scan of `repositories` where the tsvector GIN
 * index and the trigram index are OR-ed into one bitmap (no self-join). SQLite: the FTS tables are separate,
 * so candidate rowids (tagged word/substring) are joined to `repositories`.
 */
function matchPlan(f: Features, q: ParsedQuery): MatchPlan | undefined {
  const words = q.words.length > 0;
  const substring = f.trigram && q.substring !== undefined ? `%${escapeLike(q.substring)}%` : undefined;
  if (!words && substring === undefined) return undefined;
  if (f.fts === 'tsvector') {
    const conds: Fragment[] = [];
    if (words) conds.push({ sql: `r.search_vector @@ to_tsquery('simple', ?)`, bindings: [tsWords(q.words)] });
    // Same expression as repositories_full_name_trgm_idx, so the index serves it.
    if (substring !== undefined) conds.push({ sql: `${FULL_NAME} like ? escape '\\'`, bindings: [substring] });
    return {
      with: { sql: '', bindings: [] },
      from: {
        sql: `from repositories r where (${conds.map((c) => c.sql).join(' or ')})`,
        bindings: conds.flatMap((c) => c.bindings),
      },
      nameTest: words ? { sql: `r.search_vector @@ to_tsquery('simple', ?)`, bindings: [tsWords(q.words, 'A')] } : FALSE,
      wordTest: words ? { sql: `r.search_vector @@ to_tsquery('simple', ?)`, bindings: [tsWords(q.words)] } : FALSE,
    };
  }
  const parts: Fragment[] = [];
  if (words) {
    parts.push({
      sql: 'select rowid as id, 0 as src from repositories_fts where repositories_fts match ?',
      bindings: [f.fts === 'fts5' ? fts5Words(q.words) : fts4Words(q.words)],
    });
  }
  if (substring !== undefined && q.substring !== undefined) {
    parts.push({
      sql: 'select rowid as id, 1 as src from repositories_trgm where repositories_trgm match ?',
      bindings: [`"${q.substring.replace(/"/g, '""')}"`],
    });
  }
  const cand =
    parts.length === 1 ? (parts[0] as Fragment).sql : `select id, min(src) as src from (${parts.map((p) => p.sql).join(' union all ')}) u group by id`;
  return {
    with: { sql: `with cand as (${cand})`, bindings: parts.flatMap((p) => p.bindings) },
    from: { sql: 'from cand join repositories r on r.id = cand.id where true', bindings: [] },
    nameTest: words
      ? {
          sql: 'r.id in (select rowid from repositories_fts where repositories_fts match ?)',
          bindings: [f.fts === 'fts5' ? `name_words : (${fts5Words(q.words)})` : fts4Words(q.words, 'name_words')],
        }
      : FALSE,
    wordTest: { sql: 'cand.src = 0', bindings: [] },
  };
}

/**
 * Search repositories visible to the caller. An empty query lists every visible repository by stars.
 * Never throws for any query text.
 */
export async function searchRepositories(db: Knex, opts: SearchOptions): Promise<SearchPage> {
  const end = searchDuration.startTimer();
  try {
    return await searchTimed(db, opts);
  } finally {
    end();
  }
}

async function searchTimed(db: Knex, opts: SearchOptions): Promise<SearchPage> {
  const { page, pageSize } = clampPage({ page: opts.page, pageSize: opts.pageSize }, 25, 100);
  const q = parseSearchQuery(opts.query);

  // From memory, kept current through repository_changes (search-memory.ts). The SQL paid per match
  // (SQLite's FTS join 0.4 µs, PostgreSQL's recheck of the tsvector and the count): 50–67 ms p99 at 100k.
  if (memoryParses(db, q) && (await memoryServes(db))) {
    const features = await detectFeatures(db);
    if (q.text !== '' && q.words.length === 0 && !(features.trigram && q.substring !== undefined)) return { total: 0, page, pageSize, results: [] };
    return memoryIndex(db).search(q, opts.visibleTo, page, pageSize, features.trigram);
  }
  return searchWithSql(db, opts);
}

/** The same search in SQL (the reference the memory search is tested against; PostgreSQL's path for non-ASCII words). */
export async function searchWithSql(db: Knex, opts: SearchOptions): Promise<SearchPage> {
  const { page, pageSize } = clampPage({ page: opts.page, pageSize: opts.pageSize }, 25, 100);
  const offset = (page - 1) * pageSize;
  const vis = visibility(opts.visibleTo);
  const q = parseSearchQuery(opts.query);
  const cols = 'r.namespace, r.name, r.description, r.star_count, r.private';
  let pageQuery: Fragment;
  let countQuery: Fragment;
  if (q.text === '') {
    // Ordered like repositories_stars_idx, so the page comes off the index.
    pageQuery = {
      sql: `select ${cols} from repositories r where ${vis.sql}
            order by r.star_count desc, r.name, r.namespace limit ? offset ?`,
      bindings: [...vis.bindings, pageSize, offset],
    };
    countQuery = { sql: `select count(*) as total from repositories r where ${vis.sql}`, bindings: vis.bindings };
  } else {
    const m = matchPlan(await detectFeatures(db), q);
    if (m === undefined) return { total: 0, page, pageSize, results: [] };
    const tier = `case
        when r.name = ? or ${FULL_NAME} = ? then 0
        when r.name like ? escape '\\' or ${FULL_NAME} like ? escape '\\' then 1
        when ${m.nameTest.sql} then 2
        when ${m.wordTest.sql} then 3
        else 4 end`;
    const where = `${m.from.sql} and ${vis.sql}`;
    pageQuery = {
      sql: `${m.with.sql} select ${cols}, ${tier} as tier ${where}
            order by tier, r.star_count desc, r.name, r.namespace limit ? offset ?`,
      bindings: [
        ...m.with.bindings,
        q.text,
        q.text,
        q.prefixPattern,
        q.prefixPattern,
        ...m.nameTest.bindings,
        ...m.wordTest.bindings,
        ...m.from.bindings,
        ...vis.bindings,
        pageSize,
        offset,
      ],
    };
    countQuery = {
      sql: `${m.with.sql} select count(*) as total ${where}`,
      bindings: [...m.with.bindings, ...m.from.bindings, ...vis.bindings],
    };
  }
  // Two statements (concurrent on PostgreSQL) rather than count(*) over (): a window over every match costs
  // more than counting them again.
  const [pageResult, countResult] = await Promise.all([db.raw(pageQuery.sql, pageQuery.bindings), db.raw(countQuery.sql, countQuery.bindings)]);
  const rows = rawRows<ResultRow>(db, pageResult);
  const total = toNum(rawRows<{ total: unknown }>(db, countResult)[0]?.total);
  return { total, page, pageSize, results: rows.map(toResult) };
}

/**
 * Load the in-memory search of the index database now (seconds per 100,000 repositories) rather than
 * on the first search. Resolves false where it does not apply (a PostgreSQL database not sorting in C order).
 */
export async function warmSearch(db: Knex): Promise<boolean> {
  if (!(await memoryServes(db))) return false;
  await memoryIndex(db).refresh();
  return true;
}
