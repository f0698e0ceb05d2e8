import { createHash } from 'node:crypto';
import { createSha256, updateBoth, type Sha256 } from './sha256.js';
import { TarParser, type TarHeader } from './tar-parser.js';

/** The tarsums of one layer under one header rule (spec §6.2), each labelled. */
export interface TarSumSet {
  /** `tarsum+sha256:…` with Docker Go's duplicate-path ordering (what the CLI sends, spec §6.3). */
  readonly v0: string;
  /** `tarsum+sha256:…` with a plain sort of the entry sums (the Python registry). */
  readonly v0Plain: string;
  /**
   * `tarsum.v1+sha256:…`. Absent when the tarsum was computed without v1 (`{ v1: false }`: what a
   * v1 push needs, since the Docker CLI sends only v0 in X-Docker-Checksum; spec §6.4).
   */
  readonly v1?: string;
  /** `tarsum.dev+sha256:…`: the v1 value under the dev label; absent exactly when v1 is. */
  readonly dev?: string;
}

export interface TarSumOptions {
  /**
   * Also compute v1/dev (default true). Each label costs a sha256 over every content byte (the
   * header strings differ, so the hash states do): without v1 a layer's content is hashed once for
   * the tarsum (twice for entries with owner names, spec §6.2 Go ≥ 1.10 rule) instead of twice.
   */
  readonly v1?: boolean;
  /**
   * Most entries whose sums are kept (default {@link MAX_TARSUM_ENTRIES}). Each costs ~170 bytes of
   * heap until result() sorts them, and a gzip of identical empty headers packs ~450 000 entries
   * into a MiB: past the cap the sums are dropped and the archive has no tarsum
   * (`tooManyEntries`), though it is still read through and checked.
   */
  readonly maxEntries?: number;
}

/** Entries a tarsum is computed for (far more than any real layer has); see TarSumOptions.maxEntries. */
export const MAX_TARSUM_ENTRIES = 1 << 20;

/**
 * The tarsums of one layer (spec §6.2): the original header rule (Docker 1.x clients) in the
 * top-level fields, and in `go110` the rule of Docker's pkg/tarsum since its 2018 "Fix tarsum for
 * go 1.10" (uname and gname hashed as empty strings), which every client built from that code
 * sends. The two agree when no entry has an owner name.
 */
export interface TarSums extends TarSumSet {
  readonly go110: TarSumSet;
}

/** One entry's sums, in archive order. */
export interface EntrySum {
  /** The entry name as stored (after PAX path / GNU long name). */
  readonly name: string;
  /** sha256 hex of the v0 header string and the content. */
  readonly v0: string;
  /** sha256 hex of the v1 header string (no mtime, xattrs appended) and the content; '' without v1. */
  readonly v1: string;
  /** The v0 sum with uname and gname hashed empty (Go ≥ 1.10 rule); equals v0 when both are empty. */
  readonly v0Go110: string;
  /** The v1 sum with uname and gname hashed empty (Go ≥ 1.10 rule); equals v1 when both are empty. */
  readonly v1Go110: string;
}

interface Sum {
  /** Name for the duplicate-path rule: raw bytes (latin1) minus one leading './' and trailing '/'. */
  readonly key: string;
  readonly pos: number;
  readonly v0: string;
  readonly v1: string;
  /** The Go ≥ 1.10 sums (the same strings as v0/v1 when the entry has no owner names). */
  readonly g0: string;
  readonly g1: string;
}

const ascii = (s: string): Buffer => Buffer.from(s, 'latin1');
const K = {
  name: ascii('name'),
  mode: ascii('mode'),
  uid: ascii('uid'),
  gid: ascii('gid'),
  size: ascii('size'),
  mtime: ascii('mtime'),
  typeflag: ascii('typeflag'),
  linkname: ascii('linkname'),
  uname: ascii('uname'),
  gname: ascii('gname'),
  devmajor: ascii('devmajor'),
  devminor: ascii('devminor'),
};

/** How uname and gname enter the header string (spec §6.2 "Go ≥ 1.10 builds"). */
export type OwnerRule = 'original' | 'go110';

const EMPTY = Buffer.alloc(0);

/**
 * The header strings of spec §6.2 as bytes: `key + value` pairs, no separators. Text fields are the
 * stored bytes and the typeflag the raw byte (Go: `string([]byte{h.Typeflag})`), so names that are
 * not UTF-8 hash exactly as the Go CLI hashes them. Under the `go110` rule uname and gname are
 * hashed as empty strings (the keys stay), as Docker's pkg/tarsum does since 2018.
 */
export function headerBytes(h: TarHeader, version: 'v0' | 'v1', owners: OwnerRule = 'original'): Buffer {
  const parts: Buffer[] = [
    K.name,
    h.raw.name,
    K.mode,
    ascii(String(h.mode)),
    K.uid,
    ascii(String(h.uid)),
    K.gid,
    ascii(String(h.gid)),
    K.size,
    ascii(String(h.size)),
  ];
  if (version === 'v0') parts.push(K.mtime, ascii(String(h.mtime)));
  const blank = owners === 'go110';
  parts.push(
    K.typeflag,
    ascii(h.typeflag),
    K.linkname,
    h.raw.linkname,
    K.uname,
    blank ? EMPTY : h.raw.uname,
    K.gname,
    blank ? EMPTY : h.raw.gname,
    K.devmajor,
    ascii(String(h.devmajor)),
    K.devminor,
    ascii(String(h.devminor)),
  );
  if (version === 'v1') for (const [k, v] of h.xattrs) parts.push(Buffer.from(k), v);
  return Buffer.concat(parts);
}

/** Docker's FileInfoSum name: `strings.TrimSuffix(strings.TrimPrefix(name, "./"), "/")`. */
function dupKey(raw: Buffer): string {
  let s = raw.toString('latin1');
  if (s.startsWith('./')) s = s.slice(2);
  if (s.endsWith('/')) s = s.slice(0, -1);
  return s;
}

/**
 * Go's `sort.Sort` as shipped in Go 1.0 … 1.5 (the toolchains of every Docker release that sent
 * tarsums on v1 pushes, 1.3 … 1.11): Bentley–McIlroy quicksort with Tukey's ninther for slices
 * over 40, insertion sort for slices of ≤ 7 elements, heapsort past a depth of 2·⌈lg(n+1)⌉.
 * A line-by-line port (same comparisons, same swaps), so an inconsistent comparator — tarsum's
 * duplicate-path rule — orders exactly as Go did. Go 1.6 changed the small-slice case (a gap-6
 * pass, then insertion sort for ≤ 12) and Go 1.19 moved to pdqsort; those differ only when the
 * comparator is inconsistent.
 */
export function goSort<T>(data: T[], less: (a: T, b: T) => boolean): void {
  const L = (i: number, j: number): boolean => less(data[i]!, data[j]!);
  const swap = (i: number, j: number): void => {
    const t = data[i]!;
    data[i] = data[j]!;
    data[j] = t;
  };
  const insertionSort = (a: number, b: number): void => {
    for (let i = a + 1; i < b; i++) for (let j = i; j > a && L(j, j - 1); j--) swap(j, j - 1);
  };
  const siftDown = (lo: number, hi: number, first: number): void => {
    let root = lo;
    for (;;) {
      let child = 2 * root + 1;
      if (child >= hi) return;
      if (child + 1 < hi && L(first + child, first + child + 1)) child++;
      if (!L(first + root, first + child)) return;
      swap(first + root, first + child);
      root = child;
    }
  };
  const heapSort = (a: number, b: number): void => {
    const first = a;
    const hi = b - a;
    for (let i = Math.trunc((hi - 1) / 2); i >= 0; i--) siftDown(i, hi, first);
    for (let i = hi - 1; i >= 0; i--) {
      swap(first, first + i);
      siftDown(0, i, first);
    }
  };
  // Moves the median of data[a], data[b], data[c] into data[a].
  const medianOfThree = (a: number, b: number, c: number): void => {
    const m0 = b;
    const m1 = a;
    const m2 = c;
    if (L(m1, m0)) swap(m1, m0);
    if (L(m2, m1)) swap(m2, m1);
    if (L(m1, m0)) swap(m1, m0);
  };
  const swapRange = (a: number, b: number, n: number): void => {
    for (let i = 0; i < n; i++) swap(a + i, b + i);
  };
  const doPivot = (lo: number, hi: number): [number, number] => {
    const m = lo + Math.trunc((hi - lo) / 2);
    if (hi - lo > 40) {
      const s = Math.trunc((hi - lo) / 8);
      medianOfThree(lo, lo + s, lo + 2 * s);
      medianOfThree(m, m - s, m + s);
      medianOfThree(hi - 1, hi - 1 - s, hi - 1 - 2 * s);
    }
    medianOfThree(lo, m, hi - 1);
    // data[lo] = pivot; [lo, a) = pivot; [a, b) < pivot; [b, c) unexamined; [c, d) > pivot;
    // [d, hi) = pivot.
    const pivot = lo;
    let a = lo + 1;
    let b = lo + 1;
    let c = hi;
    let d = hi;
    for (;;) {
      while (b < c) {
        if (L(b, pivot)) {
          b++;
        } else if (!L(pivot, b)) {
          swap(a, b);
          a++;
          b++;
        } else {
          break;
        }
      }
      while (b < c) {
        if (L(pivot, c - 1)) {
          c--;
        } else if (!L(c - 1, pivot)) {
          swap(c - 1, d - 1);
          c--;
          d--;
        } else {
          break;
        }
      }
      if (b >= c) break;
      swap(b, c - 1);
      b++;
      c--;
    }
    let n = Math.min(b - a, a - lo);
    swapRange(lo, b - n, n);
    n = Math.min(hi - d, d - c);
    swapRange(c, hi - n, n);
    return [lo + b - a, hi - (d - c)];
  };
  const quickSort = (a: number, b: number, maxDepth: number): void => {
    while (b - a > 7) {
      if (maxDepth === 0) {
        heapSort(a, b);
        return;
      }
      maxDepth--;
      const [mlo, mhi] = doPivot(a, b);
      if (mlo - a < b - mhi) {
        quickSort(a, mlo, maxDepth);
        a = mhi;
      } else {
        quickSort(mhi, b, maxDepth);
        b = mlo;
      }
    }
    if (b - a > 1) insertionSort(a, b);
  };
  let maxDepth = 0;
  for (let i = data.length; i > 0; i >>= 1) maxDepth++;
  quickSort(0, data.length, maxDepth * 2);
}

/**
 * Docker's `FileInfoSums.SortBySums` (spec §6.3): with any duplicate name, "same name ⇒ archive
 * order, else ⇒ sum order" through Go's sort.Sort; without, a plain sort by sum.
 */
function dockerOrder(sums: readonly Sum[], pick: (s: Sum) => string, dups: boolean): string[] {
  if (!dups) return sums.map(pick).sort();
  const items = [...sums];
  goSort(items, (a, b) => (a.key === b.key ? a.pos < b.pos : pick(a) < pick(b)));
  return items.map(pick);
}

/**
 * TarSum v0, v1 and dev in one pass over an uncompressed tar (spec §6.2, §6.3), under both owner
 * rules. Each entry's content goes to its v0 and v1 hash as it streams by, and, when the entry has
 * an owner name (only then do the rules differ), to its two Go ≥ 1.10 hashes as well; nothing is
 * buffered. Feed it with write()/end(); result() is undefined when the input was not a complete
 * tar archive.
 */
export class TarSum {
  private readonly parser: TarParser;
  private readonly sums: Sum[] = [];
  private readonly names: string[] = [];
  private h0: Sha256 | undefined;
  private h1: Sha256 | undefined;
  /** The Go ≥ 1.10 hashes of the current entry, when its owner names are not empty. */
  private g0: Sha256 | undefined;
  private g1: Sha256 | undefined;
  private key = '';

  private readonly withV1: boolean;
  private readonly maxEntries: number;
  private overflow = false;

  /** extra: bytes hashed before the sorted sums (the image json, spec §6.2 step 3); may be empty. */
  constructor(
    private readonly extra: Buffer = Buffer.alloc(0),
    opts: TarSumOptions = {},
  ) {
    this.withV1 = opts.v1 ?? true;
    this.maxEntries = opts.maxEntries ?? MAX_TARSUM_ENTRIES;
    this.parser = new TarParser({
      entry: (h) => {
        if (this.overflow || this.sums.length >= this.maxEntries) {
          // no tarsum past the cap: the sums kept so far are freed, no entry is hashed any more
          this.overflow = true;
          this.sums.length = 0;
          this.names.length = 0;
          return;
        }
        this.h0 = createSha256().update(headerBytes(h, 'v0'));
        if (this.withV1) this.h1 = createSha256().update(headerBytes(h, 'v1'));
        if (h.raw.uname.length > 0 || h.raw.gname.length > 0) {
          this.g0 = createSha256().update(headerBytes(h, 'v0', 'go110'));
          if (this.withV1) this.g1 = createSha256().update(headerBytes(h, 'v1', 'go110'));
        }
        this.key = dupKey(h.raw.name);
        this.names.push(h.name);
      },
      data: (c) => {
        if (!this.h0) return; // past the cap
        this.content(c);
        this.h1?.update(c);
        if (this.g0) {
          this.g0.update(c);
          this.g1?.update(c);
        }
      },
      entryEnd: () => {
        if (!this.h0) return; // past the cap
        const v0 = this.h0!.digest('hex');
        const v1 = this.h1 ? this.h1.digest('hex') : '';
        const g0 = this.g0 ? this.g0.digest('hex') : v0;
        const g1 = this.g1 ? this.g1.digest('hex') : v1;
        this.sums.push({ key: this.key, pos: this.sums.length, v0, v1, g0, g1 });
        this.h0 = undefined;
        this.h1 = undefined;
        this.g0 = undefined;
        this.g1 = undefined;
      },
    });
  }

  /**
   * Feed the next bytes of the tar. `whole`: a hash of every byte of the archive (the diff_id),
   * given this chunk too, in order: an entry's content it shares with the entry's v0 hash is
   * hashed into both in one pass (updateBoth), the rest of the chunk into `whole` alone.
   */
  write(chunk: Buffer, whole?: Sha256): void {
    if (!whole) {
      this.parser.write(chunk);
      return;
    }
    this.cur = chunk;
    this.curFed = 0;
    this.whole = whole;
    try {
      this.parser.write(chunk);
    } finally {
      this.cur = undefined;
      this.whole = undefined;
      if (this.curFed < chunk.length) whole.update(chunk.subarray(this.curFed));
    }
  }

  /** The chunk being written with a `whole` hash, and how much of it that hash has taken. */
  private cur: Buffer | undefined;
  private curFed = 0;
  private whole: Sha256 | undefined;

  /** Content of the current entry, `c` as the parser gives it (a part of the chunk being written, or a copy). */
  private content(c: Buffer): void {
    const cur = this.cur;
    const whole = this.whole;
    // paired only when c lies in the chunk at or past what `whole` has taken (then it is those
    // very bytes): `whole` first takes the chunk's bytes before it, so it sees every byte in order
    if (cur && whole && c.buffer === cur.buffer && c.byteOffset >= cur.byteOffset + this.curFed && c.byteOffset + c.length <= cur.byteOffset + cur.length) {
      const off = c.byteOffset - cur.byteOffset;
      if (off > this.curFed) whole.update(cur.subarray(this.curFed, off));
      updateBoth(this.h0!, whole, c);
      this.curFed = off + c.length;
    } else this.h0!.update(c);
  }

  end(): void {
    this.parser.end();
  }

  /** Why the input is not a readable tar, once that is known. */
  get error(): string | undefined {
    return this.parser.error;
  }

  /** The archive had more entries than maxEntries: result() gives no tarsum for it. */
  get tooManyEntries(): boolean {
    return this.overflow;
  }

  /** The input was a complete tar archive (call end() first), whether or not it has a tarsum. */
  get complete(): boolean {
    return this.parser.error === undefined && this.parser.ended;
  }

  /** Per-entry sums of the entries completed so far, in archive order. */
  entrySums(): EntrySum[] {
    return this.sums.map((s, i) => ({ name: this.names[i]!, v0: s.v0, v1: s.v1, v0Go110: s.g0, v1Go110: s.g1 }));
  }

  /** The labelled tarsums, or undefined unless the input was a complete tar (call end() first) within maxEntries. */
  result(): TarSums | undefined {
    if (!this.complete || this.overflow) return undefined;
    const seen = new Set<string>();
    let dups = false;
    for (const s of this.sums) {
      if (seen.has(s.key)) {
        dups = true;
        break;
      }
      seen.add(s.key);
    }
    const original = this.set(
      dups,
      (s) => s.v0,
      (s) => s.v1,
    );
    const owned = this.sums.some((s) => s.g0 !== s.v0);
    return {
      ...original,
      go110: owned
        ? this.set(
            dups,
            (s) => s.g0,
            (s) => s.g1,
          )
        : original,
    };
  }

  private set(dups: boolean, v0: (s: Sum) => string, v1: (s: Sum) => string): TarSumSet {
    const set: TarSumSet = {
      v0: `tarsum+sha256:${this.final(dockerOrder(this.sums, v0, dups))}`,
      v0Plain: `tarsum+sha256:${this.final(this.sums.map(v0).sort())}`,
    };
    if (!this.withV1) return set;
    const v1Hex = this.final(dockerOrder(this.sums, v1, dups));
    return { ...set, v1: `tarsum.v1+sha256:${v1Hex}`, dev: `tarsum.dev+sha256:${v1Hex}` };
  }

  private final(sorted: readonly string[]): string {
    const h = createHash('sha256').update(this.extra);
    for (const s of sorted) h.update(s, 'latin1');
    return h.digest('hex');
  }
}
