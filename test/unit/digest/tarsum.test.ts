import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { TarParser, type TarHeader } from '../../../src/digest/tar-parser.js';
import { TarSum, goSort, headerBytes } from '../../../src/digest/tarsum.js';
import { buildTar, type TarEntrySpec } from '../../helpers/tar-build.js';
import { json, parse, rng, sha256, split, tarsumOf, vectorFile } from './support.js';

function headersOf(tar: Buffer): TarHeader[] {
  const out: TarHeader[] = [];
  const p = new TarParser({ entry: (h) => out.push(h), data: () => undefined, entryEnd: () => undefined });
  p.write(tar);
  p.end();
  assert.equal(p.error, undefined);
  return out;
}

const final = (extra: Buffer, sums: readonly string[]): string => sha256(extra, Buffer.from(sums.join(''), 'latin1'));

/** Plain insertion sort: what Go's sort.Sort does for ≤ 7 elements. */
function insertionSorted<T>(items: readonly T[], less: (a: T, b: T) => boolean): T[] {
  const a = [...items];
  for (let i = 1; i < a.length; i++) {
    for (let j = i; j > 0 && less(a[j]!, a[j - 1]!); j--) [a[j], a[j - 1]] = [a[j - 1]!, a[j]!];
  }
  return a;
}

describe('tarsum header strings (spec §6.2)', () => {
  it('the worked example: etc/hello.txt of layer.tar, v0 and v1, and its entry sum', () => {
    const hello = headersOf(vectorFile('layer.tar'))[1]!;
    const v0 = 'nameetc/hello.txtmode420uid0gid0size12mtime1420070400typeflag0linknameunamerootgnamerootdevmajor0devminor0';
    assert.equal(headerBytes(hello, 'v0').toString('latin1'), v0);
    assert.equal(headerBytes(hello, 'v1').toString('latin1'), v0.replace('mtime1420070400', ''));
    assert.equal(sha256(Buffer.from(v0), Buffer.from('hello world\n')), '37b490177e71039c3d2b80662d3166c99d516453628ecd5fd03ced733d1117e4');
  });

  it('v1 appends the xattrs (name without SCHILY.xattr.) after devminor; v0 ignores them', () => {
    const hello = headersOf(vectorFile('layer-xattr.tar'))[1]!;
    assert.ok(headerBytes(hello, 'v1').toString('latin1').endsWith('devmajor0devminor0user.commenthi'));
    assert.ok(headerBytes(hello, 'v0').toString('latin1').endsWith('devmajor0devminor0'));
  });

  it('hashes the stored bytes: non-UTF-8 names, the NUL typeflag, big numbers', () => {
    const name = Buffer.from([0x6e, 0xe9, 0x2f, 0x66, 0xff]);
    const tar = buildTar([{ name, type: '\0', data: 'abc', uid: 1000, gid: 1001, mode: 0o100755, format: 'v7', mtime: 2 ** 33, base256: ['mtime'] }]);
    const t = tarsumOf(split(tar, 'bytes'), Buffer.alloc(0));
    const head = (mtime: boolean): Buffer =>
      Buffer.concat([
        Buffer.from('name'),
        name,
        Buffer.from(`mode${0o100755}uid1000gid1001size3${mtime ? `mtime${2 ** 33}` : ''}typeflag\0linknameunamegnamedevmajor0devminor0`, 'latin1'),
      ]);
    const [s] = t.entrySums();
    assert.equal(s!.v0, sha256(head(true), Buffer.from('abc')));
    assert.equal(s!.v1, sha256(head(false), Buffer.from('abc')));
    assert.equal(t.result()!.v0, `tarsum+sha256:${sha256(Buffer.from(s!.v0))}`);
  });
});

describe('tarsum of clients built with Go ≥ 1.10 (spec §6.2): uname and gname hashed empty', () => {
  const v0 = 'nameetc/hello.txtmode420uid0gid0size12mtime1420070400typeflag0linknameunamegnamedevmajor0devminor0';

  it('the worked example under the Go ≥ 1.10 rule: the keys stay, the values go', () => {
    const hello = headersOf(vectorFile('layer.tar'))[1]!;
    assert.equal(headerBytes(hello, 'v0', 'go110').toString('latin1'), v0);
    assert.equal(headerBytes(hello, 'v1', 'go110').toString('latin1'), v0.replace('mtime1420070400', ''));
    assert.equal(headerBytes(hello, 'v0', 'original').toString('latin1'), v0.replace('unamegname', 'unamerootgnameroot'));
    const xhello = headersOf(vectorFile('layer-xattr.tar'))[1]!;
    assert.ok(headerBytes(xhello, 'v1', 'go110').toString('latin1').endsWith('unamegnamedevmajor0devminor0user.commenthi'));
  });

  it('entry sums of every vector tar, recomputed from the header rule by hand', () => {
    for (const name of ['layer.tar', 'layer-xattr.tar', 'layer-dup.tar']) {
      const tar = vectorFile(name);
      const sums = tarsumOf(split(tar, 'random', 17)).entrySums();
      const parsed = parse([tar]);
      parsed.headers.forEach((h, i) => {
        const common = `name${h.name}mode${h.mode}uid${h.uid}gid${h.gid}size${h.size}`;
        const tail = `typeflag${h.typeflag}linkname${h.linkname}unamegnamedevmajor${h.devmajor}devminor${h.devminor}`;
        const xattrs = h.xattrs.map(([k, v]) => `${k}${v.toString('latin1')}`).join('');
        const content = parsed.contents[i]!;
        assert.equal(sums[i]!.v0Go110, sha256(Buffer.from(`${common}mtime${h.mtime}${tail}`, 'latin1'), content), `${name} #${i} v0`);
        assert.equal(sums[i]!.v1Go110, sha256(Buffer.from(`${common}${tail}${xattrs}`, 'latin1'), content), `${name} #${i} v1`);
        assert.notEqual(sums[i]!.v0Go110, sums[i]!.v0, 'the vectors are owned by root: the rules differ');
      });
    }
  });

  it('layer-dup.tar: Go order and plain sort under the Go ≥ 1.10 rule', () => {
    const t = tarsumOf([vectorFile('layer-dup.tar')]);
    const [d1, a, d2] = t.entrySums().map((s) => s.v0Go110);
    const r = t.result()!;
    // dup #1 before dup #2 whatever their sums (3 entries: insertion sort in every Go release)
    const goOrder = insertionSorted(
      [
        { k: 'dup', p: 0, s: d1! },
        { k: 'a', p: 1, s: a! },
        { k: 'dup', p: 2, s: d2! },
      ],
      (x, y) => (x.k === y.k ? x.p < y.p : x.s < y.s),
    ).map((x) => x.s);
    assert.equal(r.go110.v0, `tarsum+sha256:${final(json, goOrder)}`);
    assert.equal(r.go110.v0Plain, `tarsum+sha256:${final(json, [d1!, a!, d2!].sort())}`);
  });

  it('a tar without owner names: both rules give the same sums, and no extra hashing happens', () => {
    const none = { uname: '', gname: '' };
    const tar = buildTar([
      { name: 'a', data: 'a'.repeat(3000), ...none },
      { name: 'b/', type: '5', ...none },
      { name: 'c', data: 'c', format: 'v7' },
    ]);
    const t = tarsumOf(split(tar, 'random', 3));
    for (const s of t.entrySums()) {
      assert.equal(s.v0Go110, s.v0);
      assert.equal(s.v1Go110, s.v1);
    }
    const r = t.result()!;
    assert.deepEqual(r.go110, { v0: r.v0, v0Plain: r.v0Plain, v1: r.v1, dev: r.dev });
  });

  it('only entries with an owner name differ; uname alone or gname alone is enough', () => {
    const tar = buildTar([
      { name: 'plain', data: 'x', uname: '', gname: '' },
      { name: 'user', data: 'y', uname: 'alice', gname: '' },
      { name: 'group', data: 'z', uname: '', gname: 'staff' },
    ]);
    const t = tarsumOf([tar], Buffer.alloc(0));
    const [plain, user, group] = t.entrySums();
    assert.equal(plain!.v0Go110, plain!.v0);
    assert.notEqual(user!.v0Go110, user!.v0);
    assert.notEqual(group!.v1Go110, group!.v1);
    const r = t.result()!;
    assert.notEqual(r.go110.v0, r.v0);
    assert.equal(r.go110.v0, `tarsum+sha256:${final(Buffer.alloc(0), [plain!.v0Go110, user!.v0Go110, group!.v0Go110].sort())}`);
    assert.equal(r.go110.dev, r.go110.v1!.replace('tarsum.v1+', 'tarsum.dev+'));
  });
});

describe('TarSum ordering and duplicate paths (spec §6.3)', () => {
  /** Find a content for the third entry such that its v0 sum sorts before the first entry's. */
  function withInvertedSums(first: string, middle: string, third: string): { tar: Buffer; specs: TarEntrySpec[] } {
    for (let i = 0; i < 1000; i++) {
      const specs: TarEntrySpec[] = [
        { name: first, data: 'first\n' },
        { name: middle, data: 'middle\n' },
        { name: third, data: `third ${i}\n` },
      ];
      const tar = buildTar(specs);
      const [a, , c] = tarsumOf([tar]).entrySums();
      if (c!.v0 < a!.v0 && c!.v1 < a!.v1) return { tar, specs };
    }
    throw new Error('no content found');
  }

  for (const [first, third] of [
    ['dup', 'dup'],
    ['./dup', 'dup/'],
    ['dup/', './dup/'],
  ] as const) {
    it(`'${first}' and '${third}' are the same path: Go keeps archive order for them, v0Plain sorts`, () => {
      const { tar } = withInvertedSums(first, 'other', third);
      const t = tarsumOf(split(tar, 'random', 13));
      const sums = t.entrySums();
      const r = t.result()!;
      const items = sums.map((s, pos) => ({ ...s, pos, key: pos === 1 ? 'other' : 'dup' }));
      const goOrder = (pick: (s: (typeof items)[number]) => string): string[] =>
        insertionSorted(items, (a, b) => (a.key === b.key ? a.pos < b.pos : pick(a) < pick(b))).map(pick);
      assert.equal(
        r.v0,
        `tarsum+sha256:${final(
          json,
          goOrder((s) => s.v0),
        )}`,
      );
      assert.equal(r.v0Plain, `tarsum+sha256:${final(json, sums.map((s) => s.v0).sort())}`);
      assert.notEqual(r.v0, r.v0Plain);
      assert.equal(
        r.v1,
        `tarsum.v1+sha256:${final(
          json,
          goOrder((s) => s.v1),
        )}`,
      );
      assert.notEqual(r.v1, `tarsum.v1+sha256:${final(json, sums.map((s) => s.v1).sort())}`);
      assert.equal(r.dev, r.v1.replace('tarsum.v1+', 'tarsum.dev+'));
    });
  }

  it("only one './' and one trailing '/' are stripped: 'x//' and 'x' are different paths", () => {
    const { tar } = withInvertedSums('x', 'other', 'x//');
    const t = tarsumOf([tar]);
    const r = t.result()!;
    assert.equal(r.v0, r.v0Plain);
    assert.equal(
      r.v0,
      `tarsum+sha256:${final(
        json,
        t
          .entrySums()
          .map((s) => s.v0)
          .sort(),
      )}`,
    );
    assert.equal(
      r.v1,
      `tarsum.v1+sha256:${final(
        json,
        t
          .entrySums()
          .map((s) => s.v1)
          .sort(),
      )}`,
    );
  });

  it('without duplicates every label is over the plain sorted sums', () => {
    const t = tarsumOf(
      [
        buildTar([
          { name: 'b', data: 'b' },
          { name: 'a', data: 'a' },
          { name: 'c/', type: '5' },
        ]),
      ],
      Buffer.alloc(0),
    );
    const s = t.entrySums();
    const r = t.result()!;
    assert.equal(r.v0, `tarsum+sha256:${final(Buffer.alloc(0), s.map((x) => x.v0).sort())}`);
    assert.equal(r.v0Plain, r.v0);
    assert.equal(r.v1, `tarsum.v1+sha256:${final(Buffer.alloc(0), s.map((x) => x.v1).sort())}`);
  });

  it('no result for input that is not a complete tar; entry sums so far stay readable', () => {
    const tar = buildTar([
      { name: 'a', data: 'a' },
      { name: 'b', data: 'b'.repeat(2000) },
    ]);
    const cut = tarsumOf([tar.subarray(0, 1024 + 1000)]);
    assert.equal(cut.result(), undefined);
    assert.match(cut.error ?? '', /truncated/);
    assert.equal(cut.entrySums().length, 1);
    const junk = tarsumOf([Buffer.from('this is not a tar archive at all'.repeat(40))]);
    assert.equal(junk.result(), undefined);
    assert.match(junk.error ?? '', /checksum/);
    const notEnded = new TarSum();
    notEnded.write(buildTar([{ name: 'a', data: 'a' }], { end: false }));
    assert.equal(notEnded.result(), undefined, 'no result before end()');
    notEnded.end();
    assert.ok(notEnded.result());
  });
});

describe('goSort: Go 1.0–1.5 sort.Sort, comparison for comparison', () => {
  it('sorts like Array.prototype.sort with a consistent comparator, at every size', () => {
    const r = rng(99);
    for (const n of [0, 1, 2, 7, 8, 12, 13, 40, 41, 100, 1000]) {
      const data = Array.from({ length: n }, () => Math.floor(r() * 50));
      const a = [...data];
      goSort(a, (x, y) => x < y);
      assert.deepEqual(
        a,
        [...data].sort((x, y) => x - y),
        `n=${n}`,
      );
    }
  });

  // Orders pinned from an independent transliteration of Go 1.4's src/sort/sort.go; the inputs are
  // tarsum's inconsistent duplicate-path comparator over generated (name, position, sum) triples.
  const tarsumCase = (n: number, keys: number, sums: number, seed: number): { key: string; pos: number; sum: string }[] => {
    const r = rng(seed);
    return Array.from({ length: n }, (_, pos) => ({
      key: `k${Math.floor(r() * keys)}`,
      pos,
      sum: Math.floor(r() * sums)
        .toString(16)
        .padStart(4, '0'),
    }));
  };
  const orderHash = (order: readonly number[]): string => createHash('sha256').update(order.join(',')).digest('hex');
  const pinned: [number, number, number, number, number[] | string][] = [
    [7, 3, 65536, 1, [0, 2, 6, 1, 3, 4, 5]],
    [9, 3, 65536, 2, [0, 2, 4, 5, 3, 1, 6, 7, 8]],
    [12, 4, 65536, 3, [0, 1, 5, 3, 6, 2, 4, 8, 9, 10, 11, 7]],
    [60, 10, 65536, 4, '2d7a2aa1a28df7eb697b1fda4bd113e36552dcaab130ab96fc9ffeadde5a2c80'],
    [500, 3, 3, 5, 'ae91d1d23b0911b87904bf722447b52a76010607c3867013da12dfa0bb253acf'],
    [1000, 2, 2, 6, 'f4e6f868126c80a6658bc2f846e1869bc213eaa428b553134da80c06c6a479f9'],
    [2000, 1000, 4, 7, '0ee2d1c828befeb6526a53b8f9a2bd9a1145a3fc7d9698d0b0fceab9ac9ab9bc'],
  ];
  for (const [n, keys, sums, seed, want] of pinned) {
    it(`duplicate-path comparator, ${n} entries: the order Go 1.4 gives`, () => {
      const items = tarsumCase(n, keys, sums, seed);
      goSort(items, (a, b) => (a.key === b.key ? a.pos < b.pos : a.sum < b.sum));
      const order = items.map((x) => x.pos);
      if (typeof want === 'string') assert.equal(orderHash(order), want);
      else assert.deepEqual(order, want);
    });
  }

  it('for 8–12 elements Go 1.4 partitions first: not the same as a plain insertion sort', () => {
    const items = tarsumCase(9, 3, 65536, 2);
    const less = (a: (typeof items)[number], b: (typeof items)[number]): boolean => (a.key === b.key ? a.pos < b.pos : a.sum < b.sum);
    const ins = insertionSorted(items, less).map((x) => x.pos);
    goSort(items, less);
    assert.notDeepEqual(
      items.map((x) => x.pos),
      ins,
    );
  });

  // A comparator drawing from a MINSTD generator: the result depends on the exact sequence of
  // Less calls and swaps, including the heapsort fallback (taken for the 100 and 1000 cases).
  const randomLess = (seed: number, mod: number): (() => boolean) => {
    let st = seed;
    return () => {
      st = (st * 48271) % 2147483647;
      return Math.floor(st / 256) % mod !== 0;
    };
  };
  const callPinned: [number, number, number, number[] | string][] = [
    [10, 1, 1000, [6, 9, 7, 3, 2, 1, 8, 4, 5, 0]],
    [100, 2, 1000, '92bb8982edcd6a468fc79343b1bd400a777855a1f68cf1516b51925bd27fa29f'],
    [1000, 3, 1000, '44b3b269c2d590626923f6478cd195e8b2496d185dd25cc71e9d637a5b9cd5a1'],
    [300, 4, 50, '6b64f302159e67ac91961c3b5caccd031a762c61ddc249ac9fd7e4a2adc30a37'],
  ];
  for (const [n, seed, mod, want] of callPinned) {
    it(`the same Less/Swap sequence as Go for ${n} elements (random comparator, seed ${seed})`, () => {
      const data = Array.from({ length: n }, (_, i) => i);
      goSort(data, randomLess(seed, mod));
      if (typeof want === 'string') assert.equal(orderHash(data), want);
      else assert.deepEqual(data, want);
    });
  }
});
