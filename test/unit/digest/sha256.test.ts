import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { createSha256, sha256x2, updateBoth } from '../../../src/digest/sha256.js';
import { TarSum } from '../../../src/digest/tarsum.js';
import { buildTar } from '../../helpers/tar-build.js';
import { json, prandBytes, rng, sha256, split, vectorFile } from './support.js';

const hasShaNi = process.platform === 'linux' && process.arch === 'x64' && /\bsha_ni\b/.test(readFileSync('/proc/cpuinfo', 'utf8'));
const MODULE = fileURLToPath(new URL('../../../native/sha256x2.node', import.meta.url));

/** The FIPS 180-2 examples and the empty message. */
const VECTORS: [string | Buffer, string][] = [
  ['', 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'],
  ['abc', 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad'],
  ['abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq', '248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1'],
  [
    'abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu',
    'cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1',
  ],
  [Buffer.alloc(1_000_000, 'a'), 'cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0'],
];

describe('paired SHA-256 (src/digest/sha256.ts, native/sha256x2.c)', () => {
  it('is native wherever the CPU has the SHA extensions (the build makes the module; LR_SHA256X2=0 turns it off)', () => {
    if (process.env.LR_SHA256X2 === '0') return assert.equal(sha256x2.native, false);
    // a CI machine with SHA-NI must exercise the native code, not silently fall back
    assert.equal(sha256x2.native, hasShaNi, sha256x2.reason);
  });

  it('the FIPS 180-2 vectors, whole, byte by byte and paired', () => {
    for (const [msg, hex] of VECTORS) {
      const b = typeof msg === 'string' ? Buffer.from(msg, 'latin1') : msg;
      assert.equal(createSha256().update(b).digest('hex'), hex);
      const x = createSha256();
      const y = createSha256();
      if (b.length < 1000) for (const c of split(b, 'bytes')) updateBoth(x, y, c);
      else for (const c of split(b, 'random', 3)) updateBoth(x, y, c);
      assert.equal(x.digest('hex'), hex);
      assert.equal(y.digest().toString('hex'), hex);
    }
  });

  it('every length around the padding boundaries, after every prefix length of a block, matches node:crypto', () => {
    const data = prandBytes(300, 11);
    for (let pre = 0; pre <= 64; pre++) {
      for (const len of [0, 1, 54, 55, 56, 57, 63, 64, 65, 118, 119, 120, 121, 127, 128, 129, 191, 192, 236]) {
        const a = createSha256();
        const b = createSha256().update(data.subarray(0, pre));
        updateBoth(a, b, data.subarray(pre, pre + len));
        assert.equal(a.digest('hex'), sha256(data.subarray(pre, pre + len)), `a: pre ${pre} len ${len}`);
        assert.equal(b.digest('hex'), sha256(data.subarray(0, pre + len)), `b: pre ${pre} len ${len}`);
      }
    }
  });

  it('random splits, paired and single updates mixed, two streams at different offsets', () => {
    const r = rng(5);
    for (let t = 0; t < 300; t++) {
      const data = prandBytes(Math.floor(r() * (t < 200 ? 2000 : 300_000)), t);
      const prefix = prandBytes(Math.floor(r() * 200), t + 1000);
      const a = createSha256();
      const b = createSha256().update(prefix);
      for (const c of split(data, 'random', t)) {
        if (r() < 0.75) updateBoth(a, b, c);
        else if (r() < 0.5) {
          a.update(c);
          b.update(c);
        } else {
          b.update(c);
          a.update(c);
        }
      }
      assert.equal(a.digest('hex'), sha256(data), `case ${t}`);
      assert.equal(b.digest('hex'), sha256(prefix, data), `case ${t}`);
    }
  });

  it('a string with its encoding, as node:crypto takes it', () => {
    assert.equal(createSha256().update('é\n', 'latin1').digest('hex'), createHash('sha256').update('é\n', 'latin1').digest('hex'));
    assert.equal(createSha256().update('é\n', 'utf8').digest('hex'), createHash('sha256').update('é\n', 'utf8').digest('hex'));
  });

  it('refuses an update or a digest after the digest (as node:crypto does)', () => {
    const a = createSha256().update(Buffer.from('x'));
    a.digest();
    assert.throws(() => a.update(Buffer.from('y')));
    assert.throws(() => a.digest());
    const b = createSha256();
    assert.throws(() => updateBoth(a, b, Buffer.from('z')));
  });

  it('the module refuses what is not its context, and a corrupt one, without touching memory', { skip: !hasShaNi && 'no SHA extensions here' }, () => {
    const m = createRequire(import.meta.url)(MODULE) as {
      contextSize: number;
      init(c: Uint8Array): void;
      update(c: Uint8Array, d: Uint8Array): void;
      update2(a: Uint8Array, b: Uint8Array, d: Uint8Array): void;
      final(c: Uint8Array, out: Uint8Array): void;
    };
    const ctx = new Uint8Array(m.contextSize);
    m.init(ctx);
    const data = Buffer.from('abc');
    assert.throws(() => m.update(new Uint8Array(m.contextSize - 1), data), TypeError);
    assert.throws(() => m.update(ctx, 'abc' as unknown as Uint8Array), TypeError);
    assert.throws(() => m.update(new Uint32Array(28) as unknown as Uint8Array, data), TypeError);
    assert.throws(() => m.update2(ctx, ctx, data), TypeError);
    assert.throws(() => (m.update as (c: Uint8Array) => void)(ctx), TypeError);
    assert.throws(() => (m.init as () => void)(), TypeError);
    assert.throws(() => m.final(ctx, new Uint8Array(31)), TypeError);
    const bad = new Uint8Array(m.contextSize);
    m.init(bad);
    bad[40] = 64; // the partial block's length
    assert.throws(() => m.update(bad, data), TypeError);
    // an empty view, and a view whose buffer was transferred away (no bytes, no pointer): nothing hashed
    m.update(ctx, new Uint8Array(0));
    const gone = new ArrayBuffer(16);
    const view = new Uint8Array(gone);
    structuredClone(gone, { transfer: [gone] });
    m.update(ctx, view);
    const other = new Uint8Array(m.contextSize);
    m.init(other);
    m.update2(ctx, other, view);
    m.update(ctx, data);
    const out = new Uint8Array(32);
    m.final(ctx, out);
    assert.equal(Buffer.from(out).toString('hex'), sha256(data));
  });

  it('gives the same digests through node:crypto (LR_SHA256X2=0), in a process of its own', () => {
    const script = `import { createSha256, sha256x2, updateBoth } from ${JSON.stringify(new URL('../../../src/digest/sha256.js', import.meta.url).href)};
      const a = createSha256(), b = createSha256().update('x', 'latin1');
      updateBoth(a, b, Buffer.alloc(100000, 7));
      console.log(JSON.stringify([sha256x2.native, a.digest('hex'), b.digest('hex')]));`;
    const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], { env: { ...process.env, LR_SHA256X2: '0' }, encoding: 'utf8' });
    const data = Buffer.alloc(100000, 7);
    assert.deepEqual(JSON.parse(out), [false, sha256(data), sha256(Buffer.from('x'), data)]);
  });
});

describe('TarSum with the archive hash paired (diff_id and v0 content in one pass)', () => {
  const entries = [
    { name: 'a/', type: '5' },
    { name: 'a/empty', data: '' },
    { name: 'a/one', data: 'x' },
    { name: 'a/block', data: prandBytes(512, 1) },
    { name: 'a/odd', data: prandBytes(70_001, 2) },
    { name: 'a/owned', data: prandBytes(3000, 3), uname: 'root', gname: 'staff' },
    { name: 'a/big', data: prandBytes(400_000, 4) },
  ];
  const tars = [buildTar(entries), vectorFile('layer.tar'), vectorFile('layer-xattr.tar')];

  for (const [i, tar] of tars.entries()) {
    it(`archive ${i}: the same tarsums and the archive's sha256 under every chunking`, () => {
      const plain = new TarSum(json);
      plain.write(tar);
      plain.end();
      const want = plain.result();
      assert.ok(want);
      for (const mode of ['whole', 'bytes', 'random'] as const) {
        for (const seed of mode === 'random' ? [1, 2, 3, 4] : [1]) {
          const t = new TarSum(json);
          const whole = createSha256();
          for (const c of split(tar, mode, seed)) t.write(c, whole);
          t.end();
          assert.deepEqual(t.result(), want, `${mode} ${seed}`);
          assert.deepEqual(t.entrySums(), plain.entrySums(), `${mode} ${seed}`);
          assert.equal(whole.digest('hex'), sha256(tar), `${mode} ${seed}`);
        }
      }
    });
  }

  it('a chunk whose content is a copy (a parser-held buffer) still reaches the archive hash in order', () => {
    // pieces that are subarrays of one big slab, and pieces copied out of it, alternately
    const tar = buildTar(entries);
    const t = new TarSum(json);
    const whole = createSha256();
    for (const [k, c] of split(tar, 'random', 9).entries()) t.write(k % 2 ? Buffer.from(c) : c, whole);
    t.end();
    assert.equal(whole.digest('hex'), sha256(tar));
    const plain = new TarSum(json);
    plain.write(tar);
    plain.end();
    assert.deepEqual(t.result(), plain.result());
  });
});
