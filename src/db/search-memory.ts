import type { Knex } from 'knex';
import { dbEngine } from './knex.js';
import { rawRows, toBool, toNum } from './rows.js';
import type { ParsedQuery, SearchPage, SearchResult, SearchVisibility } from './search-types.js';

/**
 * Repository search served from memory, for SQLite (spec v1-protocol §3.11 I12; issue 5: p99 ≤ 20 ms
 * at 100,000 repositories). Same tiers and order as the SQL of search.ts:
 *   0 exact name or full name, 1 name or full-name prefix, 2 every word prefixes a word of the name,
 *   3 every word prefixes a word of the namespace, name or description, 4 substring of the full name;
 *   then star_count desc, name, namespace. Candidates are the word matches and the substring matches.
 *
 * Why: a broad query ("re", "base") matches 15k–40k of 100k repositories, and SQLite spends about
 * 0.4 µs per match joining FTS rowids to rows, twice (page and count): 50 ms. Here each tier is a
 * set computed from postings (walked by prefix range), sorted name lists or the trigram index of the
 * names' runs, marked in bit sets; when the first tiers hold the page, the others are only counted
 * against the kept visibility bits. The count stays exact, so the cost follows the matches, at a
 * few ns each (growth 1k → 100k repositories at p50 1.3–1.7× in bench/growth.mjs).
 *
 * The repository rows and their word postings are loaded once; every change to `repositories` (by
 * this process, another one or the CLI) is appended to `repository_changes` by triggers (migration
 * 20261124000000 on SQLite, 20261230000000 on PostgreSQL), and each search first reads the last
 * sequence number and reloads only the changed rows. Who may see a private repository (owner,
 * namespace, collaborators, organizations) is read from the database per account and kept until the
 * log shows a grant changed (repo_id 0, migration 20261230000001) or this process wrote anything.
 */

interface Rec {
  readonly id: number;
  readonly namespace: string;
  readonly name: string;
  readonly full: string;
  readonly description: string;
  /**
   * PostgreSQL: the row's lexemes as its `search_vector` holds them, kept only where they differ from
   * what tokensOf computes (non-ASCII text, whose words depend on the server's locale; words too long
   * to index). For ASCII text the two agree: `regexp_replace(…, '[^[:alnum:]]+', ' ')` then the
   * 'simple' parser yields the lower-cased runs of [a-z0-9].
   */
  readonly tokens?: Tokens;
}

interface Tokens {
  readonly nameWords: string[];
  readonly words: string[];
}

/**
 * The tokens of a row: of the name (tier 2), and of namespace, name and description (tier 3).
 * Computed when a row is indexed or unindexed, not kept (millions of small strings would weigh
 * on every garbage collection).
 */
function tokensOf(r: { namespace: string; name: string; description: string; tokens?: Tokens }): Tokens {
  if (r.tokens) return r.tokens;
  const nameWords = [...new Set(ftsTokens(r.name))];
  return { nameWords, words: [...new Set([...ftsTokens(r.namespace), ...nameWords, ...ftsTokens(r.description)])] };
}

/** How often the change log and grants are read again when this process wrote nothing (ms). */
const RECHECK_MS = 250;
/**
 * PostgreSQL: how long a hole in the change log's sequence is read again (a transaction still running
 * when a higher number was read; a rolled-back one leaves a hole for good). No transaction that writes
 * a repository runs this long; more holes than MAX_GAPS (a burst of rollbacks) reload everything.
 */
const GAP_MS = 60_000;
const MAX_GAPS = 10_000;
/** Statements that change nothing (anything else counts as a write of this process). */
const READ_ONLY_SQL = /^\s*(select|pragma|begin|commit|rollback|savepoint|release|explain)\b/i;

/**
 * matchWords: checking one id's own tokens costs about as much as walking this many posting
 * entries (tokensOf splits namespace, name and description; a posting entry is one typed-array read).
 */
const VERIFY_COST = 200;
/** matchWords orders words by their postings' size counted up to this (beyond it, only "many" matters). */
const SIZE_CAP = VERIFY_COST * 32;

/** Postings: how long changes must pause before the packed copy searches walk is rebuilt. */
const PACK_DELAY_MS = 200;
/** Postings: tokens per slice of a rebuild of the packed copy (one slice per turn of the event loop). */
const PACK_SLICE = 8192;

const PRESENT = 1;
const PRIVATE = 2;
const DELETED = 4;

/**
 * Tokens as FTS5's `unicode61 remove_diacritics 2` makes them: runs of letters, digits and
 * private-use characters, diacritics removed, lower case.
 */
export function ftsTokens(text: string): string[] {
  if (/^[\x00-\x7f]*$/.test(text)) return text.toLowerCase().match(/[a-z0-9]+/g) ?? [];
  const folded = text.normalize('NFD').replace(/\p{M}/gu, '').toLowerCase();
  return folded.match(/[\p{L}\p{N}\p{Co}]+/gu) ?? [];
}

interface RowIn {
  id: unknown;
  namespace: string;
  name: string;
  description: string | null;
  star_count: unknown;
  private: unknown;
  deleted_at: unknown;
  owner_id: unknown;
  /** PostgreSQL: the lexemes of search_vector, all and those of the name (weight A). */
  words?: unknown;
  name_words?: unknown;
}

const COLUMNS = 'id, namespace, name, description, star_count, private, deleted_at, owner_id';
const PG_COLUMNS = `${COLUMNS}, tsvector_to_array(search_vector) as words, tsvector_to_array(ts_filter(search_vector, '{a}')) as name_words`;

/** Two records' kept lexemes (PostgreSQL) are the same: both absent, or the same lists. */
const sameTokens = (a: Tokens | undefined, b: Tokens | undefined): boolean =>
  a === undefined || b === undefined ? a === b : sameSet(a.words, b.words) && sameSet(a.nameWords, b.nameWords);

const sameSet = (a: readonly string[], b: readonly string[]): boolean => {
  if (a.length !== b.length) return false;
  const s = new Set(a);
  return b.every((x) => s.has(x));
};

/** A sorted list of (key, id) with binary-search insert, delete and prefix ranges. */
class SortedKeys {
  private keys: string[] = [];
  private ids: number[] = [];

  private lowerBound(key: string, id: number): number {
    let lo = 0;
    let hi = this.keys.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      const k = this.keys[mid]!;
      if (k < key || (k === key && this.ids[mid]! < id)) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  insert(key: string, id: number): void {
    const i = this.lowerBound(key, id);
    if (this.keys[i] === key && this.ids[i] === id) return;
    this.keys.splice(i, 0, key);
    this.ids.splice(i, 0, id);
  }

  delete(key: string, id: number): void {
    const i = this.lowerBound(key, id);
    if (this.keys[i] === key && this.ids[i] === id) {
      this.keys.splice(i, 1);
      this.ids.splice(i, 1);
    }
  }

  /** Bulk load (unsorted input), replacing everything. */
  load(pairs: [string, number][]): void {
    pairs.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] - b[1]));
    this.keys = pairs.map((p) => p[0]);
    this.ids = pairs.map((p) => p[1]);
  }

  /**
   * The run of entries whose key starts with prefix, as [start, end) positions: its two ends are
   * found by binary search, so a walk between them tests no key (a common word's prefix has
   * thousands of keys).
   */
  range(prefix: string): [number, number] {
    const keys = this.keys;
    const start = this.lowerBound(prefix, -Infinity);
    let lo = start;
    let hi = keys.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (keys[mid]!.startsWith(prefix)) lo = mid + 1;
      else hi = mid;
    }
    return [start, lo];
  }

  get size(): number {
    return this.keys.length;
  }

  /** The id and the key at a position (of a range). */
  idAt(i: number): number {
    return this.ids[i]!;
  }

  keyAt(i: number): string {
    return this.keys[i]!;
  }

  /** Calls fn(id, key) for every key starting with prefix, until fn returns false. */
  eachWithPrefix(prefix: string, fn: (id: number, key: string) => unknown): void {
    const keys = this.keys;
    const ids = this.ids;
    const [start, end] = this.range(prefix);
    for (let i = start; i < end; i++) if (fn(ids[i]!, keys[i]!) === false) return;
  }

  /** Calls fn(id) for every entry whose key is exactly key. */
  eachEqual(key: string, fn: (id: number) => void): void {
    const keys = this.keys;
    for (let i = this.lowerBound(key, -Infinity); i < keys.length && keys[i] === key; i++) fn(this.ids[i]!);
  }
}

/**
 * token → ids, with the sorted token list kept alongside for prefix ranges. The ids of a token are
 * a plain array (small integers: compact, nothing made on a first search), reached by slot from
 * the sorted list (no Map lookup per token).
 *
 * Searches walk a packed copy instead: every token's ids laid end to end in token order, so the ids
 * of all the tokens with a prefix are one contiguous run of an Int32Array. A common word's prefix
 * has thousands of tokens (`redis0` … `redis4999`, one or two ids each): walked through their own
 * small arrays, each costs a few cache misses, which made a search at 100,000 repositories 2.5×
 * slower with varied queries than with one repeated (0.5–0.6 against 0.2 ms). A change drops the
 * copy (searches walk the arrays meanwhile) and it is rebuilt once changes pause for PACK_DELAY_MS.
 */
class Postings {
  private readonly map = new Map<string, number>();
  private readonly tokens = new SortedKeys();
  private slots: number[][] = [];
  private freeSlots: number[] = [];
  /** The packed copy: the ids of the token at sorted position i are ids[offsets[i] … offsets[i + 1]). */
  private packed: { readonly offsets: Int32Array; readonly ids: Int32Array } | undefined;
  private packTimer: NodeJS.Timeout | undefined;
  /** The rebuild under way, a slice at a time (packInSlices). */
  private packing: Generator<void, void> | undefined;
  private changedAt = 0;

  add(token: string, id: number): void {
    let slot = this.map.get(token);
    if (slot === undefined) {
      slot = this.freeSlots.pop() ?? this.slots.length;
      this.slots[slot] = [];
      this.map.set(token, slot);
      this.tokens.insert(token, slot);
    }
    const ids = this.slots[slot]!;
    if (!ids.includes(id)) {
      ids.push(id);
      this.changed();
    }
  }

  delete(token: string, id: number): void {
    const slot = this.map.get(token);
    if (slot === undefined) return;
    const ids = this.slots[slot]!;
    // (order does not matter: results are sorted)
    if (!removeOne(ids, id)) return;
    this.changed();
    if (ids.length === 0) {
      this.map.delete(token);
      this.tokens.delete(token, slot);
      this.slots[slot] = [];
      this.freeSlots.push(slot);
    }
  }

  /** Replace everything at once (the first load, each id once per token): far cheaper than sorted inserts one by one. */
  bulk(entries: Map<string, number[]>): void {
    this.map.clear();
    this.slots = [];
    this.freeSlots = [];
    const keys: [string, number][] = [];
    for (const [k, ids] of entries) {
      const slot = this.slots.length;
      this.slots.push(ids);
      this.map.set(k, slot);
      keys.push([k, slot]);
    }
    this.tokens.load(keys);
    this.pack();
  }

  private changed(): void {
    this.packed = undefined;
    // a rebuild under way is abandoned (it read lists that have changed since)
    this.packing = undefined;
    this.changedAt = Date.now();
    if (this.packTimer) return;
    const wait = (ms: number): void => {
      this.packTimer = setTimeout(() => {
        const quiet = Date.now() - this.changedAt;
        if (quiet < PACK_DELAY_MS) return wait(PACK_DELAY_MS - quiet);
        this.packTimer = undefined;
        this.packInSlices();
      }, ms);
      this.packTimer.unref();
    };
    wait(PACK_DELAY_MS);
  }

  /** Builds the packed copy now (the first load). */
  pack(): void {
    clearTimeout(this.packTimer);
    this.packTimer = undefined;
    this.packing = undefined;
    for (const _ of this.packSteps());
  }

  /**
   * Builds it a slice of PACK_SLICE tokens per turn of the event loop (~2–3 ms each: at 100,000
   * repositories the whole took 22 ms, mostly cache misses on the lists), so requests are served
   * between slices; a change meanwhile abandons it.
   */
  private packInSlices(): void {
    const steps = this.packSteps();
    this.packing = steps;
    const step = (): void => {
      if (this.packing !== steps) return;
      if (steps.next().done) this.packing = undefined;
      else setImmediate(step).unref();
    };
    step();
  }

  private *packSteps(): Generator<void, void> {
    const n = this.tokens.size;
    const offsets = new Int32Array(n + 1);
    const lists: number[][] = new Array<number[]>(n);
    let total = 0;
    for (let i = 0; i < n; i++) {
      const list = this.slots[this.tokens.idAt(i)]!;
      lists[i] = list;
      offsets[i] = total;
      total += list.length;
      if (i % PACK_SLICE === PACK_SLICE - 1) yield;
    }
    offsets[n] = total;
    const ids = new Int32Array(total);
    let at = 0;
    for (let i = 0; i < n; i++) {
      const list = lists[i]!;
      for (let j = 0; j < list.length; j++) ids[at++] = list[j]!;
      if (i % PACK_SLICE === PACK_SLICE - 1) yield;
    }
    this.packed = { offsets, ids };
  }

  /** Whether the packed copy is current (for tests). */
  get isPacked(): boolean {
    return this.packed !== undefined;
  }

  /**
   * How many ids the tokens starting with prefix hold in all (an id may count more than once), or
   * some number above cap: without the packed copy the walk stops there (a common word's prefix
   * has thousands of tokens, and walking them all cost more than the search it was to order).
   */
  sizeWithPrefix(prefix: string, cap: number): number {
    if (this.packed) {
      const [start, end] = this.tokens.range(prefix);
      return this.packed.offsets[end]! - this.packed.offsets[start]!;
    }
    let n = 0;
    const slots = this.slots;
    this.tokens.eachWithPrefix(prefix, (slot) => {
      n += slots[slot]!.length;
      return n <= cap;
    });
    return n;
  }

  /**
   * Calls visit(ids, from, to) for the ids of the tokens starting with prefix: once, over the
   * packed copy, when it is current; else once per token. An id may come more than once.
   */
  eachIds(prefix: string, visit: (ids: ArrayLike<number>, from: number, to: number) => void): void {
    const [start, end] = this.tokens.range(prefix);
    if (start === end) return;
    if (this.packed) return visit(this.packed.ids, this.packed.offsets[start]!, this.packed.offsets[end]!);
    for (let t = start; t < end; t++) {
      const ids = this.slots[this.tokens.idAt(t)]!;
      visit(ids, 0, ids.length);
    }
  }
}

/** A reusable list of ids (no garbage per search: large queries list tens of thousands). */
class IdList {
  arr = new Int32Array(1024);
  length = 0;

  push(id: number): void {
    if (this.length === this.arr.length) {
      const a = new Int32Array(this.arr.length * 2);
      a.set(this.arr);
      this.arr = a;
    }
    this.arr[this.length++] = id;
  }

  clear(): this {
    this.length = 0;
    return this;
  }
}

/**
 * A set of ids as bits, emptied before each use: at 100,000 repositories 12.5 KB, which stays in
 * the processor's cache while a search tests and marks tens of thousands of ids in random order
 * (an Int32Array of stamps per id was 400 KB, and each test a likely cache miss).
 */
class Bits {
  words = new Uint32Array(32);

  /** Empty, for ids below size; the words to test and set. */
  reset(size: number): Uint32Array {
    const need = (size + 31) >>> 5;
    if (this.words.length < need) this.words = new Uint32Array(Math.max(need, this.words.length * 2));
    else this.words.fill(0);
    return this.words;
  }
}

const has = (w: Uint32Array, id: number): boolean => (w[id >>> 5]! & (1 << (id & 31))) !== 0;
const set = (w: Uint32Array, id: number): void => {
  w[id >>> 5] = w[id >>> 5]! | (1 << (id & 31));
};

/** How many bits an int32 holds. */
function popcount(x: number): number {
  x = x - ((x >>> 1) & 0x55555555);
  x = (x & 0x33333333) + ((x >>> 2) & 0x33333333);
  return Math.imul((x + (x >>> 4)) & 0x0f0f0f0f, 0x01010101) >>> 24;
}

/** |(W ∪ S) \ T ∩ V| over the first n words (W absent: no words in the query). */
function countRest(w: Uint32Array | undefined, s: Uint32Array, t: Uint32Array, v: Uint32Array, n: number): number {
  let c = 0;
  for (let k = 0; k < n; k++) c += popcount(((w ? w[k]! : 0) | s[k]!) & ~t[k]! & v[k]!);
  return c;
}

/**
 * The distinct runs of [a-z0-9] of the full names, each with the ids whose full name holds it, and
 * for each trigram the runs that hold it past their first character. It answers the substring tier
 * of a one-word query s of letters and digits: s lies within one run of a name, and where it starts
 * a run that run is a token of the name starting with s, so the name is a word match already (tier
 * 3 or better, in W). What is left are the runs holding s past their first character, all among
 * those holding s's first trigram there. Kept up to date name by name (no rebuild after a change),
 * so a lookup costs the runs it finds, not the number of names.
 */
class RunIndex {
  private readonly runs = new Map<string, RunEntry>();
  /** By trigram key ({@link trigramKey}): 36³ slots, no string made per trigram. */
  private readonly trigrams: (TrigramEntry | undefined)[] = new Array<TrigramEntry | undefined>(TRIGRAM_KEYS).fill(undefined);

  /** fresh: the id is not in the index yet (the first build), so no run of it needs a check. */
  add(full: string, id: number, fresh = false): void {
    for (const run of runsOf(full)) {
      let r = this.runs.get(run);
      let tris: number[] | undefined;
      if (!r) {
        r = { run, ids: [] };
        this.runs.set(run, r);
        tris = innerTrigrams(run);
        for (const t of tris) {
          const e = this.trigrams[t];
          if (e) e.runs.push(r);
          else this.trigrams[t] = { runs: [r], ids: null };
        }
      }
      if (!fresh && r.ids.includes(id)) continue;
      r.ids.push(id);
      if (!fresh) for (const t of tris ?? innerTrigrams(run)) this.trigrams[t]!.ids = null;
    }
  }

  delete(full: string, id: number): void {
    for (const run of runsOf(full)) {
      const r = this.runs.get(run);
      if (!r || !removeOne(r.ids, id)) continue;
      const gone = r.ids.length === 0;
      if (gone) this.runs.delete(run);
      for (const t of innerTrigrams(run)) {
        const e = this.trigrams[t];
        if (!e) continue;
        e.ids = null;
        if (!gone) continue;
        removeOne(e.runs, r);
        if (e.runs.length === 0) this.trigrams[t] = undefined;
      }
    }
  }

  /**
   * Ids whose full name has a run holding s (letters and digits only, at least 3 of them) past the
   * run's first character: with the word matches of s, every name that contains s.
   */
  idsWithInner(s: string, out: IdList): void {
    const e = this.trigrams[trigramKey(s, 0)];
    if (!e) return;
    if (s.length === 3) {
      // the trigram is s: every id of its runs, kept as one array until one of them changes (an id
      // twice when two runs of its name hold s: the callers mark ids, they do not count them)
      if (!e.ids) {
        const all = new IdList();
        for (const r of e.runs) for (const id of r.ids) all.push(id);
        e.ids = all.arr.slice(0, all.length);
      }
      const ids = e.ids;
      for (let i = 0; i < ids.length; i++) out.push(ids[i]!);
      return;
    }
    for (const r of e.runs) {
      if (r.run.indexOf(s, 1) < 0) continue;
      const ids = r.ids;
      for (let i = 0; i < ids.length; i++) out.push(ids[i]!);
    }
  }
}

/** A run of [a-z0-9] of the names and the ids whose full name holds it. */
interface RunEntry {
  readonly run: string;
  readonly ids: number[];
}

/** The runs holding a trigram past their first character, and their ids as one array on demand (null: changed since). */
interface TrigramEntry {
  readonly runs: RunEntry[];
  ids: Int32Array | null;
}

const TRIGRAM_KEYS = 36 * 36 * 36;

/** 0–35 for [0-9a-z] (the only characters of a run). */
const code36 = (c: number): number => (c <= 57 ? c - 48 : c - 87);

/** The trigram of s (all [a-z0-9]) at i, as a number below TRIGRAM_KEYS. */
const trigramKey = (s: string, i: number): number => code36(s.charCodeAt(i)) * 1296 + code36(s.charCodeAt(i + 1)) * 36 + code36(s.charCodeAt(i + 2));

/** The distinct runs of [a-z0-9] of a full name. */
function runsOf(full: string): string[] {
  const out: string[] = [];
  let from = -1;
  for (let i = 0; i <= full.length; i++) {
    const c = i < full.length ? full.charCodeAt(i) : 0;
    const inRun = (c >= 48 && c <= 57) || (c >= 97 && c <= 122);
    if (inRun) {
      if (from < 0) from = i;
    } else if (from >= 0) {
      const run = full.slice(from, i);
      if (!out.includes(run)) out.push(run);
      from = -1;
    }
  }
  return out;
}

/** The distinct trigrams of a run past its first character, as keys. */
function innerTrigrams(run: string): number[] {
  const out: number[] = [];
  for (let i = 1; i + 3 <= run.length; i++) {
    const k = trigramKey(run, i);
    if (!out.includes(k)) out.push(k);
  }
  return out;
}

/** Remove x from a list where order does not matter (the last element takes its place); whether it was there. */
function removeOne<T>(list: T[], x: T): boolean {
  const i = list.indexOf(x);
  if (i < 0) return false;
  list[i] = list[list.length - 1]!;
  list.pop();
  return true;
}

class MemoryIndex {
  private recs: (Rec | undefined)[] = [];
  private stars = new Int32Array(1024);
  private flags = new Uint8Array(1024);
  private owner = new Int32Array(1024);
  /** Ids whose flags are PRESENT alone (anonymous callers see them), and PRESENT without DELETED (admins). */
  private publicBits = new Uint32Array(32);
  private liveBits = new Uint32Array(32);
  private all = new Postings();
  private nameTokens = new Postings();
  private names = new SortedKeys();
  private fulls = new SortedKeys();
  private lastSeq = -1;
  /** Sequence numbers below lastSeq not seen yet (PostgreSQL's concurrent writers), with when first missed. */
  private gaps = new Map<number, number>();
  /** More holes than worth tracking were seen: the next update loads everything. */
  private reloadNeeded = false;
  private loaded = false;
  private readonly columns: string;
  /** Refreshes run one after the other (a chain that a failure does not break). */
  private chain: Promise<void> = Promise.resolve();
  private readonly wordBits: readonly [Bits, Bits] = [new Bits(), new Bits()];
  private readonly nameBits: readonly [Bits, Bits] = [new Bits(), new Bits()];
  private readonly subBits = new Bits();
  private readonly tierBits = new Bits();
  private readonly scratchW = new IdList();
  private readonly scratchS = new IdList();
  private readonly scratchN = new IdList();
  /** Candidates between the words of matchWords (two lists, used in turn). */
  private readonly scratchC = new IdList();
  private readonly scratchC2 = new IdList();
  private readonly scratchTiers = [new IdList(), new IdList(), new IdList(), new IdList(), new IdList()];

  /**
   * Writes made through this Knex (this process) are counted as they go by, so a search right after
   * one checks the change log at once; otherwise the log is read at most every RECHECK_MS, which is
   * how soon a change made by another process (the CLI, a second index process) shows. Grants are
   * kept per account until the log shows one changed. A search in steady state thus asks the database nothing:
   * each query through the driver's thread pool costs 0.2–30 ms, which was most of the p99.
   */
  private localWrites = 0;
  private checkedAt = 0;
  private checkedWrites = -1;
  private readonly grantCache = new Map<number, { grants: Grants; epoch: number; writes: number }>();
  /** Bumped when the log shows a grant changed (repo_id 0, migration 20261230000001) and at each full load. */
  private grantEpoch = 0;

  constructor(
    private readonly db: Knex,
    attach = true,
  ) {
    this.columns = dbEngine(db) === 'pg' ? PG_COLUMNS : COLUMNS;
    if (attach) {
      db.on('query', (q: { sql?: unknown }) => {
        if (!READ_ONLY_SQL.test(String(q.sql ?? ''))) this.localWrites++;
      });
    }
  }

  /** Bring the memory up to date with the database: everything at first, then changed rows. */
  refresh(): Promise<void> {
    if (this.loaded && this.localWrites === this.checkedWrites && Date.now() - this.checkedAt < RECHECK_MS) return Promise.resolve();
    const writes = this.localWrites;
    const at = Date.now();
    const run = this.chain
      .then(() => this.update())
      .then(() => {
        // what was written before this check is in; later writes make the next search check again
        this.checkedWrites = writes;
        this.checkedAt = at;
      });
    this.chain = run.catch(() => undefined);
    return run;
  }

  private async update(): Promise<void> {
    const rows = rawRows<{ s: unknown; m: unknown }>(this.db, await this.db.raw('select max(seq) as s, min(seq) as m from repository_changes'));
    const seq = rows[0]?.s === null || rows[0]?.s === undefined ? 0 : toNum(rows[0].s);
    const min = rows[0]?.m === null || rows[0]?.m === undefined ? 0 : toNum(rows[0].m);
    if (this.loaded && seq === this.lastSeq && this.gaps.size === 0) return;
    // first load, or changes pruned past what we saw, or too many holes: load everything again
    if (!this.loaded || (min > this.lastSeq + 1 && seq > this.lastSeq) || this.reloadNeeded) {
      await this.loadAll(seq);
      return;
    }
    const now = Date.now();
    for (const [g, at] of this.gaps) if (now - at > GAP_MS || g < min) this.gaps.delete(g);
    const holes = [...this.gaps.keys()];
    const logged = rawRows<{ seq: unknown; repo_id: unknown }>(
      this.db,
      await this.db.raw(
        `select seq, repo_id from repository_changes where (seq > ? and seq <= ?)${holes.length > 0 ? ` or seq in (${holes.map(() => '?').join(',')})` : ''}`,
        [this.lastSeq, seq, ...holes],
      ),
    );
    const seen = new Set<number>();
    for (const r of logged) seen.add(toNum(r.seq));
    this.noteGaps(Math.max(this.lastSeq, min - 1), seq, seen, now);
    const changed = [...new Set(logged.map((r) => toNum(r.repo_id)))];
    if (changed.includes(0)) this.grantEpoch++;
    for (let i = 0; i < changed.length; i += 500) {
      const ids = changed.slice(i, i + 500);
      const found = rawRows<RowIn>(this.db, await this.db.raw(`select ${this.columns} from repositories where id in (${ids.map(() => '?').join(',')})`, ids));
      const seen = new Set<number>();
      for (const r of found) {
        seen.add(toNum(r.id));
        this.put(r);
      }
      for (const id of ids) if (!seen.has(id)) this.remove(id);
    }
    this.lastSeq = seq;
  }

  /** Holes of (from, to] not in seen become gaps; gaps now seen are filled. */
  private noteGaps(from: number, to: number, seen: ReadonlySet<number>, now: number): void {
    for (const g of [...this.gaps.keys()]) if (seen.has(g)) this.gaps.delete(g);
    let inRange = 0;
    for (const s of seen) if (s > from && s <= to) inRange++;
    if (inRange === to - from) return;
    for (let s = from + 1; s <= to; s++) if (!seen.has(s)) this.gaps.set(s, now);
    if (this.gaps.size > MAX_GAPS) this.reloadNeeded = true;
  }

  /**
   * Everything, into a fresh instance page by page (the event loop breathes between pages), then
   * swapped in at once: a search never sees half a load.
   */
  private async loadAll(seq: number): Promise<void> {
    const fresh = new MemoryIndex(this.db, false);
    // the recent log first: a change numbered below seq but not visible yet (a transaction still running
    // on PostgreSQL) may be missing from the rows read below; it is read again when it shows
    const recent = rawRows<{ seq: unknown }>(this.db, await this.db.raw('select seq from repository_changes where seq > ? and seq <= ?', [seq - 1000, seq]));
    await fresh.fill();
    this.gaps = new Map();
    this.reloadNeeded = false;
    this.grantEpoch++;
    // below the oldest number read, holes are pruned changes, not pending ones
    const from = Math.max(0, seq - 1000, (recent.length > 0 ? Math.min(...recent.map((r) => toNum(r.seq))) : seq + 1) - 1);
    this.noteGaps(from, seq, new Set(recent.map((r) => toNum(r.seq))), Date.now());
    this.recs = fresh.recs;
    this.stars = fresh.stars;
    this.flags = fresh.flags;
    this.owner = fresh.owner;
    this.publicBits = fresh.publicBits;
    this.liveBits = fresh.liveBits;
    this.all = fresh.all;
    this.nameTokens = fresh.nameTokens;
    this.names = fresh.names;
    this.fulls = fresh.fulls;
    this.joined = undefined;
    this.runIndex = undefined;
    this.lastSeq = seq;
    this.loaded = true;
  }

  private ensure(id: number): void {
    if (id < this.flags.length) return;
    const n = Math.max(id + 1, this.flags.length * 2);
    const s = new Int32Array(n);
    s.set(this.stars);
    this.stars = s;
    const f = new Uint8Array(n);
    f.set(this.flags);
    this.flags = f;
    const o = new Int32Array(n);
    o.set(this.owner);
    this.owner = o;
    const p = new Uint32Array((n + 31) >>> 5);
    p.set(this.publicBits);
    this.publicBits = p;
    const l = new Uint32Array((n + 31) >>> 5);
    l.set(this.liveBits);
    this.liveBits = l;
  }

  /** A row's flags, and the kept bit sets that follow from them. */
  private setFlags(id: number, f: number): void {
    this.flags[id] = f;
    const k = id >>> 5;
    const bit = 1 << (id & 31);
    this.publicBits[k] = f === PRESENT ? this.publicBits[k]! | bit : this.publicBits[k]! & ~bit;
    this.liveBits[k] = (f & (PRESENT | DELETED)) === PRESENT ? this.liveBits[k]! | bit : this.liveBits[k]! & ~bit;
  }

  private static rec(r: RowIn): Rec {
    const namespace = r.namespace;
    const name = r.name;
    const description = r.description ?? '';
    const rec: Rec = {
      id: toNum(r.id),
      namespace,
      name,
      // a flat string (not a rope): compared and searched on every query
      full: `${namespace}/${name}`.split('').join(''),
      description,
    };
    if (!Array.isArray(r.words) || !Array.isArray(r.name_words)) return rec;
    // PostgreSQL: its lexemes are the truth; kept on the record only where tokensOf would differ
    const db: Tokens = { words: (r.words as unknown[]).map(String), nameWords: (r.name_words as unknown[]).map(String) };
    const js = tokensOf(rec);
    return sameSet(js.words, db.words) && sameSet(js.nameWords, db.nameWords) ? rec : { ...rec, tokens: db };
  }

  private setScalars(id: number, r: RowIn): void {
    this.ensure(id);
    this.stars[id] = toNum(r.star_count);
    this.setFlags(id, PRESENT | (toBool(r.private) ? PRIVATE : 0) | (r.deleted_at !== null && r.deleted_at !== undefined ? DELETED : 0));
    this.owner[id] = r.owner_id === null || r.owner_id === undefined ? 0 : toNum(r.owner_id);
  }

  private async fill(): Promise<void> {
    const all = new Map<string, number[]>();
    const nameTok = new Map<string, number[]>();
    const names: [string, number][] = [];
    const fulls: [string, number][] = [];
    // (tokensOf lists each token once, and each row comes once)
    const add = (m: Map<string, number[]>, k: string, id: number): void => {
      const ids = m.get(k);
      if (ids) ids.push(id);
      else m.set(k, [id]);
    };
    let after = 0;
    for (;;) {
      const page = rawRows<RowIn>(this.db, await this.db.raw(`select ${this.columns} from repositories where id > ? order by id limit 5000`, [after]));
      for (const r of page) {
        const rec = MemoryIndex.rec(r);
        this.recs[rec.id] = rec;
        this.setScalars(rec.id, r);
        const t = tokensOf(rec);
        for (const w of t.words) add(all, w, rec.id);
        for (const w of t.nameWords) add(nameTok, w, rec.id);
        names.push([rec.name, rec.id]);
        fulls.push([rec.full, rec.id]);
      }
      if (page.length < 5000) break;
      after = toNum(page[page.length - 1]!.id);
    }
    this.all.bulk(all);
    this.nameTokens.bulk(nameTok);
    this.names.load(names);
    this.fulls.load(fulls);
  }

  private put(r: RowIn): void {
    const rec = MemoryIndex.rec(r);
    const old = this.recs[rec.id];
    if (old && old.full === rec.full && old.name === rec.name && old.description === rec.description && sameTokens(old.tokens, rec.tokens)) {
      // the same text (a push, a star, a flag changed): the word lists and name lists stay as they
      // are, and so does the packed copy of Postings
      this.recs[rec.id] = rec;
      this.setScalars(rec.id, r);
      return;
    }
    this.remove(rec.id);
    this.recs[rec.id] = rec;
    this.setScalars(rec.id, r);
    const t = tokensOf(rec);
    for (const w of t.words) this.all.add(w, rec.id);
    for (const w of t.nameWords) this.nameTokens.add(w, rec.id);
    this.names.insert(rec.name, rec.id);
    this.fulls.insert(rec.full, rec.id);
    this.runIndex?.add(rec.full, rec.id);
    this.joined = undefined;
  }

  private remove(id: number): void {
    const old = this.recs[id];
    if (!old) return;
    const t = tokensOf(old);
    for (const w of t.words) this.all.delete(w, id);
    for (const w of t.nameWords) this.nameTokens.delete(w, id);
    this.names.delete(old.name, id);
    this.fulls.delete(old.full, id);
    this.runIndex?.delete(old.full, id);
    this.recs[id] = undefined;
    this.setFlags(id, 0);
    this.joined = undefined;
  }

  /**
   * Texts for substring scans with indexOf, each made on first use after a change: the `\n`-joined
   * full names and where each starts; the same for the names that hold a '/' (v2 names deeper than
   * `ns/name`), which are few. Only queries with '-', '_', '.' or '/' scan them.
   */
  private joined: { all?: JoinedNames; slashed?: JoinedNames } | undefined;

  private joinedNames(): { all: JoinedNames; slashed: JoinedNames } {
    const j = (this.joined ??= {});
    if (!j.all || !j.slashed) {
      const all = new JoinedBuilder();
      const slashed = new JoinedBuilder();
      for (const r of this.recs) {
        if (!r) continue;
        all.add(r.full, r.id);
        if (r.name.includes('/')) slashed.add(r.name, r.id);
      }
      j.all = all.done();
      j.slashed = slashed.done();
    }
    return { all: j.all, slashed: j.slashed };
  }

  /** Made on the first substring query, then kept up to date by put and remove. */
  private runIndex: RunIndex | undefined;

  private runsIndex(): RunIndex {
    if (this.runIndex) return this.runIndex;
    const idx = new RunIndex();
    for (const r of this.recs) if (r) idx.add(r.full, r.id, true);
    this.runIndex = idx;
    return idx;
  }

  /**
   * Ids whose full name contains s (s holds no newline: it is name text), or for a one-word query
   * of letters and digits (words [s]) those that are not word matches of s already (RunIndex). A
   * namespace holds no '/', so when s does, either its first '/' is the one after the namespace (the
   * namespace ends with what comes before it, the name starts with the rest: a range of the sorted
   * names) or s lies within a name that holds a '/'. Either way no scan of every name (a full name
   * as the query, at 100,000 repositories: 2 MB of text).
   */
  private substringIds(s: string, words: readonly string[], out: IdList): void {
    if (ALNUM.test(s) && words.length === 1 && words[0] === s) {
      this.runsIndex().idsWithInner(s, out);
      return;
    }
    const slash = s.indexOf('/');
    if (slash < 0) {
      scanJoined(this.joinedNames().all, s, (id) => out.push(id));
      return;
    }
    const nsEnd = s.slice(0, slash);
    const nameStart = s.slice(slash + 1);
    const recs = this.recs;
    const seen = new Set<number>();
    this.names.eachWithPrefix(nameStart, (id) => {
      if (recs[id]!.namespace.endsWith(nsEnd) && !seen.has(id)) {
        seen.add(id);
        out.push(id);
      }
    });
    scanJoined(this.joinedNames().slashed, s, (id) => {
      if (!seen.has(id)) {
        seen.add(id);
        out.push(id);
      }
    });
  }

  /**
   * Ids where every word prefixes some token of `p` (FTS `"w1"* AND "w2"* …`), listed in `out`, and
   * the bits that hold them (one of `bits`), or undefined for no words. The rarest word goes first;
   * once the ids left are few against the next word's postings, the remaining words are checked on
   * those ids' own tokens instead of walking the postings (a full name as the query: its namespace
   * word matches a handful of repositories, its name words thousands each; measured at 100,000
   * repositories).
   */
  private matchWords(
    p: Postings,
    bits: readonly [Bits, Bits],
    words: readonly string[],
    out: IdList,
    own: (t: Tokens) => readonly string[],
  ): Uint32Array | undefined {
    const n = words.length;
    if (n === 0) return undefined;
    // (one word: nothing to order, and counting its postings would walk its tokens twice)
    const order = n === 1 ? [{ w: words[0]!, size: 0 }] : words.map((w) => ({ w, size: p.sizeWithPrefix(w, SIZE_CAP) })).sort((a, b) => a.size - b.size);
    const size = this.flags.length;
    let cands = this.scratchC.clear();
    let prev: Uint32Array | undefined;
    for (let i = 0; i < n; i++) {
      // word i: the ids matched go to bits[i % 2]; those of word i - 1 are in the other (prev)
      const cur = bits[i % 2]!.reset(size);
      if (i > 0 && cands.length * VERIFY_COST < order[i]!.size) {
        // few ids left: check the remaining words against each one's tokens
        const rest = order.slice(i).map((o) => o.w);
        for (let j = 0; j < cands.length; j++) {
          const id = cands.arr[j]!;
          const toks = own(tokensOf(this.recs[id]!));
          if (rest.every((w) => toks.some((t) => t.startsWith(w)))) {
            set(cur, id);
            out.push(id);
          }
        }
        return cur;
      }
      const found = i === n - 1 ? out : i % 2 === 0 ? this.scratchC2.clear() : this.scratchC.clear();
      const before = prev;
      p.eachIds(order[i]!.w, (ids, from, to) => {
        for (let j = from; j < to; j++) {
          const id = ids[j]!;
          const k = id >>> 5;
          const bit = 1 << (id & 31);
          // not yet found for this word (an id has several tokens with the prefix), and, past the
          // first word, found for the one before
          if ((cur[k]! & bit) === 0 && (before === undefined || (before[k]! & bit) !== 0)) {
            cur[k] = cur[k]! | bit;
            found.push(id);
          }
        }
      });
      cands = found;
      prev = cur;
    }
    return prev;
  }

  /** Whether searches walk the packed copies of the word lists now (for tests). */
  get packed(): boolean {
    return this.all.isPacked && this.nameTokens.isPacked;
  }

  /** Same contract as searchRepositories for a non-empty query. */
  async search(q: ParsedQuery, vis: SearchVisibility | undefined, page: number, pageSize: number, substringTier: boolean): Promise<SearchPage> {
    // the refresh first (it tells whether grants changed), then the grants; from here on everything is
    // synchronous (one consistent state)
    await this.refresh();
    const grants = await this.grants(vis);
    const { canSee, bits: visible } = this.visibility(vis, grants);
    const text = q.text;
    const words = q.words.flatMap((w) => ftsTokens(w));
    const size = this.flags.length;

    // the candidates: word matches (W) and substring matches (S)
    const W = this.scratchW.clear();
    const wBits = this.matchWords(this.all, this.wordBits, words, W, (t) => t.words);
    const S = this.scratchS.clear();
    if (substringTier && q.substring !== undefined) this.substringIds(q.substring, words, S);
    const sBits = this.subBits.reset(size);
    for (let i = 0; i < S.length; i++) set(sBits, S.arr[i]!);
    const isCand = wBits ? (id: number): boolean => has(wBits, id) || has(sBits, id) : (id: number): boolean => has(sBits, id);

    // name-word matches (tier 2) are word matches too
    const N = this.scratchN.clear();
    if (words.length > 0) this.matchWords(this.nameTokens, this.nameBits, words, N, (t) => t.nameWords);

    // each candidate goes to the first tier it qualifies for
    const tBits = this.tierBits.reset(size);
    const tiers = this.scratchTiers.map((t) => t.clear());
    const assign = (id: number, tier: number): void => {
      if (has(tBits, id) || !isCand(id)) return;
      set(tBits, id);
      if (canSee(id)) tiers[tier]!.push(id);
    };
    /** Visible candidates counted but not listed (tiers 3 and 4, when the page lies before them). */
    let counted = 0;
    if (text === '') {
      // no query: every visible repository, by stars
      const flags = this.flags;
      for (let id = 0; id < flags.length; id++) if (flags[id] !== 0 && canSee(id)) tiers[0]!.push(id);
    } else {
      this.assignTiers(text, assign, N);
      // tiers 3 and 4 (word and substring matches not in tiers 0-2) are the largest: when tiers 0-2
      // hold the page, and the caller's visibility is one of the kept bit sets, they are only
      // counted, a word of ids at a time
      const listed = tiers[0]!.length + tiers[1]!.length + tiers[2]!.length;
      if (visible && listed >= page * pageSize) {
        counted = countRest(wBits, sBits, tBits, visible, (size + 31) >>> 5);
      } else {
        for (let j = 0; j < W.length; j++) assign(W.arr[j]!, 3);
        for (let j = 0; j < S.length; j++) assign(S.arr[j]!, 4);
      }
    }

    const stars = this.stars;
    const recs = this.recs;
    const order = (a: number, b: number): number => {
      const d = stars[b]! - stars[a]!;
      if (d !== 0) return d;
      const ra = recs[a]!;
      const rb = recs[b]!;
      return ra.name < rb.name ? -1 : ra.name > rb.name ? 1 : ra.namespace < rb.namespace ? -1 : ra.namespace > rb.namespace ? 1 : 0;
    };
    const total = tiers.reduce((n, t) => n + t.length, counted);
    const results: SearchResult[] = [];
    let skip = (page - 1) * pageSize;
    for (const t of tiers) {
      if (results.length === pageSize) break;
      if (skip >= t.length) {
        skip -= t.length;
        continue;
      }
      const need = skip + (pageSize - results.length);
      const ids = t.arr.subarray(0, t.length);
      const best = need * 4 < t.length ? topK(ids, need, order) : Array.from(ids).sort(order);
      for (const id of best.slice(skip, need)) {
        const r = recs[id]!;
        results.push({ namespace: r.namespace, name: r.name, description: r.description, star_count: stars[id]!, private: (this.flags[id]! & PRIVATE) !== 0 });
      }
      skip = 0;
    }
    return { total, page, pageSize, results };
  }

  /** What a signed-in caller may see of private repositories besides its own: read on each search. */
  private async grants(v: SearchVisibility | undefined): Promise<Grants | undefined> {
    if (v?.admin || v?.userId === undefined) return undefined;
    const u = v.userId;
    const cached = this.grantCache.get(u);
    if (cached && cached.writes === this.localWrites && cached.epoch === this.grantEpoch) return cached.grants;
    const writes = this.localWrites;
    const epoch = this.grantEpoch;
    // one round trip: the account's name, its organizations, the repositories shared with it
    const rows = rawRows<{ k: string; v: unknown }>(
      this.db,
      await this.db.raw(
        `select 'u' as k, username as v from users where id = ?
         union all select 'o', o.name from organizations o join organization_members m on m.org_id = o.id where m.user_id = ?
         union all select 'c', cast(repo_id as varchar(20)) from collaborators where user_id = ?`,
        [u, u, u],
      ),
    );
    const grants: Grants = {
      username: rows.find((r) => r.k === 'u')?.v as string | undefined,
      orgNames: new Set(rows.filter((r) => r.k === 'o').map((r) => String(r.v))),
      shared: new Set(rows.filter((r) => r.k === 'c').map((r) => toNum(r.v))),
    };
    this.grantCache.set(u, { grants, epoch, writes });
    if (this.grantCache.size > 10_000) this.grantCache.delete(this.grantCache.keys().next().value!);
    return grants;
  }

  /**
   * Each candidate to the first tier it qualifies for: exact (0), prefix (1), name words (2); the
   * word (3) and substring (4) matches are the caller's.
   */
  private assignTiers(text: string, assign: (id: number, tier: number) => void, N: IdList): void {
    // exact matches first (tier 0), from the sorted name lists, then the prefixes (tier 1)
    this.fulls.eachEqual(text, (id) => assign(id, 0));
    // (the names equal to text come first in the range of those it prefixes: no test of the others)
    const names = this.names;
    const [start, end] = names.range(text);
    let i = start;
    for (; i < end && names.keyAt(i) === text; i++) assign(names.idAt(i), 0);
    for (; i < end; i++) assign(names.idAt(i), 1);
    this.fulls.eachWithPrefix(text, (id) => assign(id, 1));
    for (let j = 0; j < N.length; j++) assign(N.arr[j]!, 2);
  }

  /**
   * Who sees what: the SQL `visibility` of search.ts. Anonymous callers and admins see what a kept
   * bit set holds (setFlags), which the search also counts with; signed-in callers get a test only.
   */
  private visibility(v: SearchVisibility | undefined, g: Grants | undefined): { readonly canSee: (id: number) => boolean; readonly bits?: Uint32Array } {
    if (v?.admin || v?.userId === undefined || !g) {
      const bits = v?.admin ? this.liveBits : this.publicBits;
      return { canSee: (id) => has(bits, id), bits };
    }
    const flags = this.flags;
    const recs = this.recs;
    return {
      canSee: (id) => {
        const f = flags[id]!;
        if (f === PRESENT) return true;
        if (f !== (PRESENT | PRIVATE)) return false;
        // as rightsOn (src/index/access.ts): not the creator (owner_id), nothing private of library
        const ns = recs[id]!.namespace;
        if (ns === g.username) return true;
        return ns !== 'library' && (g.shared.has(id) || g.orgNames.has(ns));
      },
    };
  }
}

/** Text made only of [a-z0-9]. */
const ALNUM = /^[a-z0-9]+$/;

interface JoinedNames {
  readonly text: string;
  readonly starts: Int32Array;
  readonly ids: Int32Array;
}

class JoinedBuilder {
  private readonly parts: string[] = [];
  private readonly starts: number[] = [];
  private readonly ids: number[] = [];
  private at = 1;

  add(text: string, id: number): void {
    this.parts.push(text);
    this.starts.push(this.at);
    this.ids.push(id);
    this.at += text.length + 1;
  }

  done(): JoinedNames {
    return { text: `\n${this.parts.join('\n')}\n`, starts: Int32Array.from(this.starts), ids: Int32Array.from(this.ids) };
  }
}

/** Calls fn once for each id whose text contains s (s holds no newline). */
function scanJoined({ text, starts, ids }: JoinedNames, s: string, fn: (id: number) => void): void {
  let from = 0;
  for (;;) {
    const i = text.indexOf(s, from);
    if (i < 0) return;
    // the text holding position i: the last start <= i
    let lo = 0;
    let hi = starts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (starts[mid]! <= i) lo = mid;
      else hi = mid - 1;
    }
    fn(ids[lo]!);
    from = Math.max(i + 1, lo + 1 < starts.length ? starts[lo + 1]! : text.length);
  }
}

interface Grants {
  readonly username: string | undefined;
  readonly orgNames: ReadonlySet<string>;
  readonly shared: ReadonlySet<number>;
}

/** Bounded "best k" selection: the k smallest by cmp, in order. */
function topK(items: Int32Array, k: number, cmp: (a: number, b: number) => number): number[] {
  if (k <= 0) return [];
  // a max-heap of the best k seen so far: the root is the worst of them
  const heap: number[] = [];
  const up = (i: number): void => {
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (cmp(heap[i]!, heap[p]!) <= 0) return;
      [heap[i], heap[p]] = [heap[p]!, heap[i]!];
      i = p;
    }
  };
  const down = (i: number): void => {
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < heap.length && cmp(heap[l]!, heap[m]!) > 0) m = l;
      if (r < heap.length && cmp(heap[r]!, heap[m]!) > 0) m = r;
      if (m === i) return;
      [heap[i], heap[m]] = [heap[m]!, heap[i]!];
      i = m;
    }
  };
  for (let i = 0; i < items.length; i++) {
    const x = items[i]!;
    if (heap.length < k) {
      heap.push(x);
      up(heap.length - 1);
    } else if (cmp(x, heap[0]!) < 0) {
      heap[0] = x;
      down(0);
    }
  }
  return heap.sort(cmp);
}

const indexes = new WeakMap<Knex, MemoryIndex>();

/** The memory index of this database (one per Knex instance). */
export function memoryIndex(db: Knex): MemoryIndex {
  let m = indexes.get(db);
  if (!m) {
    m = new MemoryIndex(db);
    indexes.set(db, m);
  }
  return m;
}

export type { MemoryIndex };
