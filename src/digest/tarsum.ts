import { createHash, type Hash } from 'node:crypto';
import { TarParser, type TarHeader } from './tar-parser.js';

export interface TarSums {
  /** tarsum+sha256 with Docker Go's duplicate-path ordering (what the CLI sends). */
  readonly v0: string;
  /** tarsum+sha256 with a plain sort (the Python registry). */
  readonly v0Plain: string;
  readonly v1: string;
  readonly dev: string;
}

interface EntrySum {
  readonly name: string;
  readonly v0: string;
  readonly v1: string;
}

function headerV0(h: TarHeader): string {
  return (
    `name${h.name}mode${h.mode}uid${h.uid}gid${h.gid}size${h.size}mtime${h.mtime}typeflag${h.typeflag}` +
    `linkname${h.linkname}uname${h.uname}gname${h.gname}devmajor${h.devmajor}devminor${h.devminor}`
  );
}

function headerV1(h: TarHeader): Buffer {
  const base = Buffer.from(
    `name${h.name}mode${h.mode}uid${h.uid}gid${h.gid}size${h.size}typeflag${h.typeflag}` +
      `linkname${h.linkname}uname${h.uname}gname${h.gname}devmajor${h.devmajor}devminor${h.devminor}`,
  );
  if (h.xattrs.length === 0) return base;
  return Buffer.concat([base, ...h.xattrs.flatMap(([k, v]) => [Buffer.from(k), v])]);
}

const cleanName = (n: string): string => n.replace(/^\.\//, '').replace(/\/+$/, '');

/**
 * Go's sort.Sort as of Go 1.6+ for the duplicate-path case (spec §6.3): slices of ≤ 12 elements get
 * a gap-6 pass then an insertion sort; larger ones a median-of-three quicksort (heapsort when too
 * deep). Only inputs with duplicate paths and an inconsistent comparator can tell the variants apart.
 */
export function goSort<T>(data: T[], less: (a: T, b: T) => boolean): void {
  const swap = (i: number, j: number): void => {
    const t = data[i]!;
    data[i] = data[j]!;
    data[j] = t;
  };
  const L = (i: number, j: number): boolean => less(data[i]!, data[j]!);
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
    for (let i = Math.floor((hi - 1) / 2); i >= 0; i--) siftDown(i, hi, first);
    for (let i = hi - 1; i >= 0; i--) {
      swap(first, first + i);
      siftDown(0, i, first);
    }
  };
  const medianOfThree = (a: number, b: number, c: number): void => {
    const m0 = b, m1 = a, m2 = c;
    if (L(m1, m0)) swap(m1, m0);
    if (L(m2, m1)) swap(m2, m1);
    if (L(m1, m0)) swap(m1, m0);
  };
  const swapRange = (a: number, b: number, n: number): void => {
    for (let i = 0; i < n; i++) swap(a + i, b + i);
  };
  const doPivot = (lo: number, hi: number): [number, number] => {
    const m = lo + Math.floor((hi - lo) / 2);
    if (hi - lo > 40) {
      const s = Math.floor((hi - lo) / 8);
      medianOfThree(lo, lo + s, lo + 2 * s);
      medianOfThree(m, m - s, m + s);
      medianOfThree(hi - 1, hi - 1 - s, hi - 1 - 2 * s);
    }
    medianOfThree(lo, m, hi - 1);
    const pivot = lo;
    let a = lo + 1, b = lo + 1, c = hi, d = hi;
    for (;;) {
      for (; b < c; b++) {
        if (L(b, pivot)) continue;
        else if (!L(pivot, b)) { swap(a, b); a++; }
        else break;
      }
      for (; b < c; c--) {
        if (L(pivot, c - 1)) continue;
        else if (!L(c - 1, pivot)) { swap(c - 1, d - 1); d--; }
        else break;
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
    while (b - a > 12) {
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
    if (b - a > 1) {
      for (let i = a + 6; i < b; i++) if (L(i, i - 6)) swap(i, i - 6);
      insertionSort(a, b);
    }
  };
  let depth = 0;
  for (let i = data.length; i > 0; i >>= 1) depth++;
  quickSort(0, data.length, depth * 2);
}

/**
 * TarSum v0, v1 and dev in one pass over an uncompressed tar (spec §6.2, §6.3). Content bytes are
 * fed to both per-entry hashes as they stream; nothing is buffered.
 */
export class TarSum {
  private readonly parser: TarParser;
  private readonly sums: EntrySum[] = [];
  private cur: { name: string; h0: Hash; h1: Hash } | undefined;

  constructor(private readonly extra: Buffer) {
    this.parser = new TarParser({
      entry: (h) => {
        const h0 = createHash('sha256').update(headerV0(h));
        const h1 = createHash('sha256').update(headerV1(h));
        this.cur = { name: h.name, h0, h1 };
      },
      data: (c) => {
        this.cur!.h0.update(c);
        this.cur!.h1.update(c);
      },
      entryEnd: () => {
        const c = this.cur!;
        this.sums.push({ name: c.name, v0: c.h0.digest('hex'), v1: c.h1.digest('hex') });
        this.cur = undefined;
      },
    });
  }

  write(chunk: Buffer): void {
    this.parser.write(chunk);
  }

  end(): void {
    this.parser.end();
  }

  get error(): string | undefined {
    return this.parser.error;
  }

  /** Per-entry sums in archive order (for tests and diagnostics). */
  entrySums(): readonly EntrySum[] {
    return this.sums;
  }

  private final(label: string, sums: string[]): string {
    const h = createHash('sha256').update(this.extra);
    for (const s of sums) h.update(s);
    return `${label}:${h.digest('hex')}`;
  }

  result(): TarSums | undefined {
    if (this.parser.error !== undefined || !this.parser.ended) return undefined;
    const plain = this.sums.map((s) => s.v0).sort();
    const names = new Set<string>();
    let dup = false;
    for (const s of this.sums) {
      const n = cleanName(s.name);
      if (names.has(n)) dup = true;
      names.add(n);
    }
    let go = plain;
    if (dup) {
      // Docker's tarsum: same name ⇒ archive order, else ⇒ sum order, through Go's sort.Sort.
      const items = this.sums.map((s, i) => ({ name: cleanName(s.name), sum: s.v0, pos: i }));
      goSort(items, (a, b) => (a.name === b.name ? a.pos < b.pos : a.sum < b.sum));
      go = items.map((x) => x.sum);
    }
    const v1sums = this.sums.map((s) => s.v1);
    // v1/dev ordering follows the same rule in Go; v1 sums differ, so sort them the same way.
    let v1sorted = [...v1sums].sort();
    if (dup) {
      const items = this.sums.map((s, i) => ({ name: cleanName(s.name), sum: s.v1, pos: i }));
      goSort(items, (a, b) => (a.name === b.name ? a.pos < b.pos : a.sum < b.sum));
      v1sorted = items.map((x) => x.sum);
    }
    const v1 = this.final('tarsum.v1+sha256', v1sorted);
    return {
      v0: this.final('tarsum+sha256', go),
      v0Plain: this.final('tarsum+sha256', plain),
      v1,
      dev: v1.replace('tarsum.v1+', 'tarsum.dev+'),
    };
  }
}
