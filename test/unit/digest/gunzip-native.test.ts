import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { crc32, gunzipSync, gzipSync } from 'node:zlib';
import { nativeGunzip, nativeGunzipReason } from '../../../src/digest/gunzip-native.js';
import { createGunzipInner, createInlineInner, type Inner, type InnerResult } from '../../../src/digest/inner.js';
import { buildTar } from '../../helpers/tar-build.js';
import { json, prandBytes, rng, sha256, split, textBytes } from './support.js';

const hasPclmul = process.platform === 'linux' && process.arch === 'x64' && /\bpclmulqdq\b/.test(readFileSync('/proc/cpuinfo', 'utf8'));

/** Feeds `parts` to an Inner as a layer upload does (waiting for each `done`), then ends it. */
async function run(inner: Inner, parts: readonly Buffer[]): Promise<InnerResult> {
  for (const p of parts) await new Promise<void>((resolve) => inner.write(p, resolve));
  return inner.end();
}

/** Both engines over the same bytes, split the same way: their results must be equal. */
async function both(gz: Buffer, seed: number, mode: 'whole' | 'bytes' | 'random' = 'random'): Promise<InnerResult> {
  const parts = split(gz, mode, seed);
  const a = await run(createGunzipInner('zlib', json), parts);
  const b = await run(createGunzipInner('native', json), parts);
  // the messages are zlib's in both, except where node:zlib names the failure itself
  assert.equal(b.tarError === undefined, a.tarError === undefined, `zlib: ${a.tarError}, native: ${b.tarError}`);
  if (a.tarError === undefined) assert.deepEqual(b, a);
  return b;
}

/** A gzip member with the optional header fields of RFC 1952 (FEXTRA, FNAME, FCOMMENT, FHCRC). */
function member(data: Buffer, fields: { extra?: Buffer; name?: string; comment?: string; hcrc?: boolean | number } = {}): Buffer {
  const deflated = gzipSync(data).subarray(10); // zlib's own: 10-byte header, deflate, trailer
  let flg = 0;
  const parts: Buffer[] = [];
  if (fields.extra) {
    flg |= 4;
    const len = Buffer.alloc(2);
    len.writeUInt16LE(fields.extra.length);
    parts.push(len, fields.extra);
  }
  if (fields.name !== undefined) {
    flg |= 8;
    parts.push(Buffer.from(`${fields.name}\0`, 'latin1'));
  }
  if (fields.comment !== undefined) {
    flg |= 16;
    parts.push(Buffer.from(`${fields.comment}\0`, 'latin1'));
  }
  if (fields.hcrc !== undefined && fields.hcrc !== false) flg |= 2;
  const head = Buffer.concat([Buffer.from([0x1f, 0x8b, 8, flg, 0, 0, 0, 0, 0, 3]), ...parts]);
  const hcrc = Buffer.alloc(flg & 2 ? 2 : 0);
  if (flg & 2) hcrc.writeUInt16LE(typeof fields.hcrc === 'number' ? fields.hcrc : crc32(head) & 0xffff);
  return Buffer.concat([head, hcrc, deflated]);
}

/** A tar of a few MiB: text and pseudo-random entries, so inflating it takes several runs. */
function tarOf(seed: number): Buffer {
  return buildTar([
    { name: 'etc/text', data: textBytes(1_500_000, seed) },
    { name: 'bin/blob', data: prandBytes(1_200_000, seed + 1) },
    { name: 'empty', data: '' },
    { name: 'usr/share/doc', data: textBytes(700_000, seed + 2) },
  ]);
}

describe('native gunzip (native/gunzip.c, src/digest/gunzip-native.ts)', () => {
  it('is loaded wherever the CPU has PCLMULQDQ (the build makes the module; LR_NATIVE_GUNZIP=0 turns it off)', () => {
    if (process.env.LR_NATIVE_GUNZIP === '0') return assert.equal(nativeGunzip, undefined);
    assert.equal(nativeGunzip !== undefined, hasPclmul, nativeGunzipReason);
  });

  // The rest holds the native engine to node:zlib's results; without the module there is nothing to hold.
  const skip = nativeGunzip === undefined ? `native gunzip not loaded: ${nativeGunzipReason}` : false;

  it('its CRC-32 is zlib crc32() for every length and start, from 0 to 300 bytes and at random up to 70 KiB', { skip }, () => {
    const r = rng(5);
    const buf = prandBytes(80_000, 3);
    for (let i = 0; i < 3000; i++) {
      const n = i <= 300 ? i : Math.floor(r() * 70_000);
      const off = Math.floor(r() * 17);
      const seed = i % 2 ? (r() * 2 ** 32) >>> 0 : 0;
      const b = buf.subarray(off, off + n);
      assert.equal(nativeGunzip!.crc32(seed, b), crc32(b, seed), `length ${n} at ${off}, crc ${seed}`);
    }
  });

  it('gives the diff_id and tarsums of node:zlib, one member, however the layer is split', { skip }, async () => {
    const tar = tarOf(1);
    const gz = gzipSync(tar, { level: 6 });
    for (const [mode, seed] of [
      ['whole', 1],
      ['random', 2],
      ['random', 3],
    ] as const) {
      const r = await both(gz, seed, mode);
      assert.equal(r.diffId, `sha256:${sha256(tar)}`);
      assert.ok(r.tarsum);
    }
    // one byte at a time, on a smaller layer
    const small = buildTar([{ name: 'a', data: textBytes(40_000, 9) }]);
    assert.equal((await both(gzipSync(small), 1, 'bytes')).diffId, `sha256:${sha256(small)}`);
  });

  it('reads members through, with every optional header field, and ignores 0x00 padding after a member', { skip }, async () => {
    const tar = tarOf(2);
    const a = tar.subarray(0, 1_000_000);
    const b = tar.subarray(1_000_000, 2_500_000);
    const c = tar.subarray(2_500_000);
    const cases: [string, Buffer][] = [
      ['three members', Buffer.concat([gzipSync(a), gzipSync(b), gzipSync(c)])],
      ['an empty member between', Buffer.concat([gzipSync(a), gzipSync(Buffer.alloc(0)), gzipSync(b), gzipSync(c)])],
      [
        'FEXTRA, FNAME, FCOMMENT, FHCRC',
        Buffer.concat([
          member(a, { extra: Buffer.from('ab\x04\0data'), name: 'layer.tar' }),
          member(b, { comment: 'x', hcrc: true }),
          member(c, { hcrc: true, name: '' }),
        ]),
      ],
      ['zero padding after the last member', Buffer.concat([gzipSync(tar), Buffer.alloc(5000)])],
    ];
    for (const [what, gz] of cases) {
      for (const seed of [1, 2]) {
        const r = await both(gz, seed);
        assert.equal(r.diffId, `sha256:${sha256(tar)}`, what);
      }
    }
  });

  it('refuses what node:zlib refuses: a bad CRC or length, a bad header CRC, truncation, garbage, corrupt data', { skip }, async () => {
    const tar = tarOf(3);
    const gz = gzipSync(tar);
    const flip = (b: Buffer, at: number): Buffer => {
      const c = Buffer.from(b);
      c[at] ^= 0x40;
      return c;
    };
    const cases: [string, Buffer][] = [
      ['CRC-32 of the trailer', flip(gz, gz.length - 6)],
      ['length of the trailer', flip(gz, gz.length - 2)],
      [
        'CRC of the second of two members',
        Buffer.concat([gzipSync(tar.subarray(0, 9000)), flip(gzipSync(tar.subarray(9000)), gzipSync(tar.subarray(9000)).length - 8)]),
      ],
      ['header CRC', member(tar, { name: 'n', hcrc: 0x1234 })],
      ['truncated in the trailer', gz.subarray(0, gz.length - 3)],
      ['truncated in the data', gz.subarray(0, gz.length >> 1)],
      ['truncated in the header', gz.subarray(0, 6)],
      ['garbage after the member', Buffer.concat([gz, Buffer.from('garbage')])],
      ['an unknown method in the second member', Buffer.concat([gz, Buffer.from([0x1f, 0x8b, 9, 0, 0, 0, 0, 0, 0, 3, 1, 2, 3])])],
      ['unknown header flags', Buffer.concat([Buffer.from([0x1f, 0x8b, 8, 0x20]), gz.subarray(4)])],
    ];
    for (const [what, bad] of cases) {
      assert.throws(() => gunzipSync(bad), Error, `node:zlib accepted: ${what}`);
      for (const seed of [1, 4]) {
        const r = await both(bad, seed);
        assert.ok(r.tarError?.startsWith('gunzip: '), `${what}: ${JSON.stringify(r)}`);
      }
    }
  });

  it('agrees with node:zlib on corrupt deflate data, wherever the damage lies', { skip }, async () => {
    const tar = tarOf(7);
    const gz = gzipSync(tar);
    const r = rng(11);
    let refused = 0;
    for (let i = 0; i < 40; i++) {
      const c = Buffer.from(gz);
      const at = 10 + Math.floor(r() * (gz.length - 18));
      c[at] ^= 1 << Math.floor(r() * 8);
      // a flip can leave a valid stream (even the same output): then both must give the same digests
      if ((await both(c, i)).tarError) refused++;
    }
    assert.ok(refused > 30, `only ${refused} of 40 refused`);
  });

  it('is what createInlineInner uses for gzip, and an empty or non-tar stream ends as with node:zlib', { skip }, async () => {
    const tar = tarOf(4);
    const gz = gzipSync(tar);
    const r = await run(createInlineInner('gzip', json), split(gz, 'random', 7));
    assert.equal(r.diffId, `sha256:${sha256(tar)}`);
    assert.deepEqual(gunzipSync(gz), tar);
    // not a tar: the gunzip is fine, the tar check says why
    const notTar = await both(gzipSync(Buffer.from('hello world\n'.repeat(100))), 1);
    assert.match(notTar.tarError ?? '', /^not a tar archive/);
    // a bare gzip header and nothing else
    assert.ok((await both(Buffer.from([0x1f, 0x8b]), 1)).tarError?.startsWith('gunzip: '));
  });

  it('a layer abandoned mid-stream frees its state and leaves no run behind (destroy)', { skip }, async () => {
    const gz = gzipSync(tarOf(5));
    for (let i = 0; i < 20; i++) {
      const inner = createGunzipInner('native', json);
      for (const p of split(gz.subarray(0, gz.length >> 1), 'random', i)) await new Promise<void>((resolve) => inner.write(p, resolve));
      inner.destroy();
    }
    // still usable after that
    const tar = tarOf(6);
    assert.equal((await both(gzipSync(tar), 3)).diffId, `sha256:${sha256(tar)}`);
  });
});
