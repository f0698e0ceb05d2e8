import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { TarParser } from '../../../src/digest/tar-parser.js';
import { BLOCK, END, buildTar, extensionBlocks, paxRecords, tarEntry, tarHeader } from '../../helpers/tar-build.js';
import { CHUNK_MODES, parse, prandBytes, split } from './support.js';

describe('TarParser: names and extension headers', () => {
  const longGnu = `gnu/${'a'.repeat(150)}/file`;
  const longGnuLink = `target/${'k'.repeat(120)}`;
  const longPax = `pax/${'b'.repeat(200)}/f.txt`;
  const longPaxLink = `../${'c'.repeat(130)}`;
  const tar = buildTar([
    { name: longGnu.slice(0, 100), gnuLongName: longGnu, data: 'one' },
    { name: 'short-link', type: '2', gnuLongLink: longGnuLink, linkname: longGnuLink.slice(0, 100) },
    { name: 'ignored-name', pax: { path: longPax }, data: 'two' },
    { name: 'paxlink', type: '1', pax: { linkpath: longPaxLink } },
    { name: 'file.txt', prefix: 'usr/share/doc/some-package', data: 'three' },
    { name: 'gnu-format', format: 'gnu', data: 'four' },
  ]);

  for (const mode of CHUNK_MODES) {
    it(`GNU L/K, PAX path/linkpath > 100 chars and the ustar prefix, ${mode} chunks`, () => {
      const r = parse(split(tar, mode, 21));
      assert.equal(r.error, undefined);
      assert.equal(r.ended, true);
      assert.deepEqual(
        r.headers.map((h) => h.name),
        [longGnu, 'short-link', longPax, 'paxlink', 'usr/share/doc/some-package/file.txt', 'gnu-format'],
      );
      assert.equal(r.headers[1]!.linkname, longGnuLink);
      assert.equal(r.headers[3]!.linkname, longPaxLink);
      assert.deepEqual(r.contents.map(String), ['one', '', 'two', '', 'three', 'four']);
      assert.ok(r.headers.every((h) => h.raw.name.equals(Buffer.from(h.name))));
    });
  }

  it('PAX records override header fields: uid, gid, uname, gname, size; mtime keeps its integer part', () => {
    const data = prandBytes(1000);
    const tar = buildTar([
      {
        name: 'f',
        data,
        size: 10, // the PAX size wins
        uid: 1,
        gid: 2,
        pax: { uid: '3000000', gid: '4000000', uname: 'ünïcode', gname: 'grp', size: '1000', mtime: '1420070400.987654321' },
      },
      { name: 'g', pax: { mtime: '1420070401' }, data: 'x' },
    ]);
    const r = parse(split(tar, 'random', 1));
    assert.equal(r.error, undefined);
    const [f, g] = r.headers;
    assert.deepEqual([f!.uid, f!.gid, f!.uname, f!.gname, f!.size, f!.mtime], [3000000, 4000000, 'ünïcode', 'grp', 1000, 1420070400]);
    assert.ok(r.contents[0]!.equals(data));
    assert.equal(g!.mtime, 1420070401);
    assert.equal(g!.uid, 0, 'PAX records apply to one entry only');
  });

  it('PAX global headers are neither entries nor applied', () => {
    const tar = Buffer.concat([...extensionBlocks('g', paxRecords({ path: 'global-name', uid: '99' })), ...tarEntry({ name: 'a', data: 'A' }), END]);
    const r = parse(split(tar, 'bytes'));
    assert.equal(r.error, undefined);
    assert.deepEqual(
      r.headers.map((h) => [h.name, h.uid]),
      [['a', 0]],
    );
  });

  it('SCHILY.xattr records: name without the prefix, raw value bytes, sorted by name', () => {
    const bin = Buffer.from([0x00, 0xff, 0x80, 0x0a, 0x3d]);
    const r = parse([
      buildTar([
        {
          name: 'x',
          data: 'x',
          pax: { 'SCHILY.xattr.user.z': 'last', 'SCHILY.xattr.security.capability': bin, 'SCHILY.xattr.user.a': 'first', 'LIBARCHIVE.x': 'no' },
        },
      ]),
    ]);
    assert.equal(r.error, undefined);
    assert.deepEqual(
      r.headers[0]!.xattrs.map(([k, v]) => [k, v.toString('hex')]),
      [
        ['security.capability', bin.toString('hex')],
        ['user.a', Buffer.from('first').toString('hex')],
        ['user.z', Buffer.from('last').toString('hex')],
      ],
    );
  });

  it('names that are not UTF-8 keep their raw bytes', () => {
    const name = Buffer.from([0x63, 0x61, 0x66, 0xe9, 0x2e, 0x74, 0x78, 0x74]); // "café.txt" in latin1
    const r = parse([buildTar([{ name, data: 'x', uname: Buffer.from([0xff, 0x41]) }])]);
    assert.ok(r.headers[0]!.raw.name.equals(name));
    assert.ok(r.headers[0]!.raw.uname.equals(Buffer.from([0xff, 0x41])));
    assert.equal(r.headers[0]!.name, name.toString('utf8'));
  });
});

describe('TarParser: numeric fields, typeflags, content', () => {
  it('base-256 numbers (GNU binary) for uid, gid, size, mtime; negative mtime', () => {
    const data = prandBytes(3000, 3);
    const r = parse(
      split(
        buildTar([
          { name: 'big-ids', data, uid: 2 ** 40, gid: 70000000, mtime: 2 ** 36, base256: ['uid', 'gid', 'size', 'mtime'] },
          { name: 'old', data: '', mtime: -86400, base256: ['mtime'] },
        ]),
        'random',
        4,
      ),
    );
    assert.equal(r.error, undefined);
    assert.deepEqual([r.headers[0]!.uid, r.headers[0]!.gid, r.headers[0]!.size, r.headers[0]!.mtime], [2 ** 40, 70000000, 3000, 2 ** 36]);
    assert.ok(r.contents[0]!.equals(data));
    assert.equal(r.headers[1]!.mtime, -86400);
  });

  it('mode is the raw field (type bits kept), typeflag the raw byte (NUL stays NUL)', () => {
    const r = parse([
      buildTar([
        { name: 'v7-file', type: '\0', mode: 0o100644, data: 'v7', format: 'v7' },
        { name: 'dev', type: '3', devmajor: 4, devminor: 64 },
      ]),
    ]);
    assert.equal(r.error, undefined);
    assert.equal(r.headers[0]!.typeflag, '\0');
    assert.equal(r.headers[0]!.mode, 0o100644);
    assert.equal(r.headers[0]!.uname, '');
    assert.equal(String(r.contents[0]), 'v7');
    assert.deepEqual([r.headers[1]!.typeflag, r.headers[1]!.devmajor, r.headers[1]!.devminor], ['3', 4, 64]);
  });

  it('links, devices and directories carry no content even with a size field', () => {
    const r = parse([
      buildTar([
        { name: 'd/', type: '5', size: 1024 },
        { name: 'f', data: 'after' },
      ]),
    ]);
    assert.equal(r.error, undefined);
    assert.equal(r.headers[0]!.size, 1024);
    assert.deepEqual(r.contents.map(String), ['', 'after']);
  });

  it('a header with a signed (old Sun tar) checksum is accepted', () => {
    const r = parse([buildTar([{ name: 'x', data: 'x', uname: Buffer.from([0xe9, 0xe9, 0xe9]), signedChecksum: true }])]);
    assert.equal(r.error, undefined);
    assert.equal(r.headers.length, 1);
  });

  it('streams a 3 MiB entry in input-sized pieces, unchanged, never gathered', () => {
    const big = prandBytes(3 * 1024 * 1024 + 17, 9);
    const tar = buildTar([
      { name: 'big', data: big },
      { name: 'small', data: 'tail' },
    ]);
    const parts = split(tar, 'random', 5);
    const r = parse(parts);
    assert.equal(r.error, undefined);
    assert.equal(r.headers[0]!.size, big.length);
    assert.ok(r.contents[0]!.equals(big));
    assert.equal(String(r.contents[1]), 'tail');
    assert.ok(r.maxPiece <= Math.max(...parts.map((p) => p.length)), 'content pieces are views of the input chunks');
    const whole = parse([tar]);
    assert.equal(whole.maxPiece, big.length, 'a whole input gives the content as one view');
  });
});

describe('TarParser: end of archive and errors', () => {
  it('ignores anything after the end marker, and ends at a single zero block', () => {
    const body = buildTar([{ name: 'a', data: 'A' }], { end: false });
    for (const tail of [Buffer.concat([END, Buffer.from('trailing garbage, not a header')]), Buffer.concat([Buffer.alloc(BLOCK), prandBytes(3000)])]) {
      const r = parse(split(Buffer.concat([body, tail]), 'random', 8));
      assert.equal(r.error, undefined);
      assert.equal(r.ended, true);
      assert.deepEqual(
        r.headers.map((h) => h.name),
        ['a'],
      );
    }
  });

  it('an archive without end marker ending at a block boundary, and an empty input, end cleanly', () => {
    const r = parse([buildTar([{ name: 'a', data: 'A' }], { end: false })]);
    assert.deepEqual([r.error, r.ended, r.headers.length], [undefined, true, 1]);
    const empty = parse([]);
    assert.deepEqual([empty.error, empty.ended, empty.headers.length], [undefined, true, 0]);
  });

  it('garbage is reported as a bad checksum, without throwing', () => {
    const r = parse(split(prandBytes(4096, 1), 'random', 1));
    assert.match(r.error ?? '', /checksum/);
    assert.equal(r.ended, false);
    assert.equal(r.headers.length, 0);
  });

  it('truncation inside a header, inside content, inside padding and after an extension header is an error', () => {
    const full = buildTar([{ name: 'f', data: prandBytes(5000) }]);
    for (const cut of [100, BLOCK + 2000, BLOCK + 5000 + 10]) {
      const r = parse(split(full.subarray(0, cut), 'random', cut));
      assert.match(r.error ?? '', /truncated/, `cut at ${cut}`);
      assert.equal(r.ended, false);
    }
    const paxOnly = Buffer.concat(extensionBlocks('x', paxRecords({ path: 'p' })));
    assert.match(parse([paxOnly]).error ?? '', /truncated/);
    assert.match(parse([Buffer.concat([paxOnly, END])]).error ?? '', /extension/);
  });

  it('bad PAX records, oversized extension payloads and bad numbers are errors', () => {
    const badPax = Buffer.from('99 path=too-long-length\n');
    const cases: [Buffer, RegExp][] = [
      [Buffer.concat([...extensionBlocks('x', badPax), ...tarEntry({ name: 'a' }), END]), /PAX/],
      [Buffer.concat([...extensionBlocks('L', Buffer.alloc((1 << 20) + 1, 0x61)), ...tarEntry({ name: 'a' }), END]), /too large/],
    ];
    const badNum = tarHeader({ name: 'n', data: '' });
    badNum.write('12x4567\0', 108, 'latin1'); // uid
    let sum = 0;
    badNum.fill(0x20, 148, 156);
    for (const b of badNum) sum += b;
    badNum.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
    cases.push([Buffer.concat([badNum, END]), /uid/]);
    for (const [tar, re] of cases) {
      const r = parse(split(tar, 'random', 2));
      assert.match(r.error ?? '', re);
    }
  });

  it('the extension payload cap counts every extension header before an entry, and can be set', () => {
    const rec = paxRecords({ 'LIBARCHIVE.pad': 'p'.repeat(300000) });
    const withRuns = (n: number): Buffer =>
      Buffer.concat([
        ...Array.from({ length: n }, () => extensionBlocks('x', rec)).flat(),
        ...tarEntry({ name: 'a', data: 'A' }),
        ...tarEntry({ name: 'b', pax: { path: 'bb' } }),
        END,
      ]);
    const three = parse([withRuns(3)]);
    assert.equal(three.error, undefined);
    assert.deepEqual(
      three.headers.map((h) => h.name),
      ['a', 'bb'],
    );
    assert.match(parse(split(withRuns(4), 'random', 4)).error ?? '', /too large/);
    const small = new TarParser({ entry: () => undefined, data: () => undefined, entryEnd: () => undefined }, { maxMetaSize: 100 });
    small.write(
      buildTar(
        [
          { name: 'a', gnuLongName: 'x'.repeat(99) },
          { name: 'b', gnuLongName: 'y'.repeat(99) },
        ],
        { end: false },
      ),
    );
    assert.equal(small.error, undefined);
    small.write(buildTar([{ name: 'c', gnuLongName: 'z'.repeat(100) }]));
    assert.match(small.error ?? '', /too large/);
  });

  it('after an error further input is ignored; a throwing handler becomes an error too', () => {
    let entries = 0;
    const p = new TarParser({ entry: () => entries++, data: () => undefined, entryEnd: () => undefined });
    p.write(prandBytes(BLOCK, 2));
    const err = p.error;
    assert.ok(err);
    p.write(buildTar([{ name: 'ok' }]));
    p.end();
    assert.equal(p.error, err);
    assert.equal(entries, 0);

    const q = new TarParser({
      entry: () => {
        throw new Error('handler failed');
      },
      data: () => undefined,
      entryEnd: () => undefined,
    });
    assert.doesNotThrow(() => q.write(buildTar([{ name: 'x' }])));
    assert.equal(q.error, 'handler failed');
  });

  it('counts entries, not extension headers', () => {
    const p = new TarParser({ entry: () => undefined, data: () => undefined, entryEnd: () => undefined });
    p.write(buildTar([{ name: 'a', pax: { path: 'aa' } }, { name: 'b', gnuLongName: 'bb' }, { name: 'c' }]));
    p.end();
    assert.equal(p.entries, 3);
  });
});
