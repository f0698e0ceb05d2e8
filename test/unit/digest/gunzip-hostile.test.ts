import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { crc32, deflateRawSync, deflateSync, gunzipSync, gzipSync } from 'node:zlib';
import { nativeGunzip, nativeGunzipReason } from '../../../src/digest/gunzip-native.js';
import { createGunzipInner, type Inner, type InnerResult } from '../../../src/digest/inner.js';
import { MAX_TARSUM_ENTRIES, TarSum } from '../../../src/digest/tarsum.js';
import { request } from '../../helpers/http.js';
import { startTestServer, type TestServer } from '../../helpers/server.js';
import { buildTar, tarHeader } from '../../helpers/tar-build.js';
import { payloadChecksum, pushImage, putTag } from '../../helpers/v1-client.js';
import { json, prandBytes, rng, sha256, split, textBytes } from './support.js';

/*
 * Hostile gzip against native/gunzip.c, driven run by run as src/digest/inner.ts drives it but with
 * any input chunking and any output size (down to one byte each), held to node:zlib's gunzipSync:
 * a valid stream inflates to the same bytes, an invalid one is refused by both. Then the same
 * streams through the layer digester and through a running server (PUT /v1/images/<id>/layer),
 * a gzip bomb (bounded memory), and a tar of identical empty entries (bounded tarsum memory).
 */

const skip = nativeGunzip === undefined ? `native gunzip not loaded: ${nativeGunzipReason}` : false;

/** The outcome of one gunzip: the inflated bytes, or the error. */
type Outcome = { ok: true; out: Buffer } | { ok: false; err: string };

function zlibGunzip(gz: Buffer): Outcome {
  try {
    return { ok: true, out: gunzipSync(gz) };
  } catch (e) {
    return { ok: false, err: (e as Error).message };
  }
}

/**
 * native/gunzip.c over `parts`, in order, each run given what is left of the current part and an
 * output of `outSize` bytes; a run that fills its output is followed by one more with the same
 * input (zlib may hold more), as PoolGunzip does. At the end the stream must be at a member's end.
 */
async function nativeGunzipOf(parts: readonly Buffer[], outSize: number): Promise<Outcome> {
  const g = nativeGunzip!;
  const h = g.create();
  const outs: Buffer[] = [];
  const run = (input: Uint8Array, out: Buffer): Promise<{ err: string | null; consumed: number; produced: number; atEnd: boolean }> =>
    new Promise((resolve) => g.run(h, input, out, (err, consumed, produced, atEnd) => resolve({ err, consumed, produced, atEnd })));
  let atEnd = false;
  try {
    for (const part of [...parts, Buffer.alloc(0)]) {
      let off = 0;
      for (;;) {
        const out = Buffer.alloc(outSize);
        const r = await run(part.subarray(off), out);
        if (r.err !== null) return { ok: false, err: r.err };
        assert.ok(r.consumed <= part.length - off && r.produced <= outSize, 'a run reports more than it was given');
        outs.push(out.subarray(0, r.produced));
        off += r.consumed;
        atEnd = r.atEnd;
        if (off >= part.length && r.produced < outSize) break;
        // a run that neither consumes nor produces would loop forever here, as it would in PoolGunzip
        assert.ok(r.consumed > 0 || r.produced > 0, 'a run made no progress');
      }
    }
    return atEnd ? { ok: true, out: Buffer.concat(outs) } : { ok: false, err: 'unexpected end of file' };
  } finally {
    g.close(h);
  }
}

/** Both engines agree: the same bytes, or both refuse. */
function assertSame(native: Outcome, zlib: Outcome, what: string): void {
  assert.equal(
    native.ok,
    zlib.ok,
    `${what}: zlib ${zlib.ok ? 'accepts' : `refuses (${zlib.err})`}, native ${native.ok ? 'accepts' : `refuses (${native.err})`}`,
  );
  if (native.ok && zlib.ok) assert.ok(native.out.equals(zlib.out), `${what}: other bytes (${native.out.length} against ${zlib.out.length})`);
}

/** A gzip member with the optional header fields of RFC 1952; `hcrc` a number writes a wrong header CRC. */
function member(
  data: Buffer,
  f: { extra?: Buffer; name?: Buffer | string; comment?: string; hcrc?: boolean | number; flg?: number; method?: number } = {},
): Buffer {
  const deflated = gzipSync(data).subarray(10);
  let flg = f.flg ?? 0;
  const parts: Buffer[] = [];
  if (f.extra) {
    flg |= 4;
    const len = Buffer.alloc(2);
    len.writeUInt16LE(f.extra.length);
    parts.push(len, f.extra);
  }
  if (f.name !== undefined) {
    flg |= 8;
    parts.push(Buffer.concat([Buffer.from(f.name), Buffer.alloc(1)]));
  }
  if (f.comment !== undefined) {
    flg |= 16;
    parts.push(Buffer.from(`${f.comment}\0`, 'latin1'));
  }
  if (f.hcrc !== undefined && f.hcrc !== false) flg |= 2;
  const head = Buffer.concat([Buffer.from([0x1f, 0x8b, f.method ?? 8, flg, 0, 0, 0, 0, 0, 3]), ...parts]);
  const hcrc = Buffer.alloc(flg & 2 ? 2 : 0);
  if (flg & 2) hcrc.writeUInt16LE(typeof f.hcrc === 'number' ? f.hcrc : crc32(head) & 0xffff);
  return Buffer.concat([head, hcrc, deflated]);
}

/** A gzip member around raw deflate bytes, with the given trailer. */
function wrap(deflate: Buffer, crc: number, isize: number): Buffer {
  const t = Buffer.alloc(8);
  t.writeUInt32LE(crc >>> 0, 0);
  t.writeUInt32LE(isize >>> 0, 4);
  return Buffer.concat([Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3]), deflate, t]);
}

/** Pieces of 1 to 64 bytes. */
function tiny(b: Buffer): Buffer[] {
  const r = rng(b.length);
  const out: Buffer[] = [];
  for (let off = 0; off < b.length;) {
    const n = 1 + Math.floor(r() * 64);
    out.push(b.subarray(off, off + n));
    off += n;
  }
  return out;
}

const flip = (b: Buffer, at: number, bit = 0x01): Buffer => {
  const c = Buffer.from(b);
  c[at]! ^= bit;
  return c;
};

const text = textBytes(4000, 1);
const gz = gzipSync(text);
const tar = buildTar([
  { name: 'etc/motd', data: textBytes(300_000, 2) },
  { name: 'bin/blob', data: prandBytes(200_000, 3) },
  { name: 'empty', data: '' },
]);

/** The edge cases: [what, gzip stream]. Valid and invalid alike; node:zlib says which is which. */
function edgeCases(): [string, Buffer][] {
  const empty = gzipSync(Buffer.alloc(0));
  // a stored block whose NLEN is not LEN's complement, a block of the reserved type 3, a distance
  // further back than any output, a final block cut short, a non-final block and then nothing
  const stored = Buffer.from([0x01, 0x05, 0x00, 0xfa, 0xff, 104, 101, 108, 108, 111]);
  const storedBad = Buffer.from(stored);
  storedBad[3] = 0x00;
  const nonFinal = deflateRawSync(text).subarray(0, 100);
  return [
    ['zero bytes', Buffer.alloc(0)],
    ['one byte 0x1f', Buffer.from([0x1f])],
    ['the magic alone', Buffer.from([0x1f, 0x8b])],
    ['a 10-byte header alone', gz.subarray(0, 10)],
    ['a whole member', gz],
    ['an empty member', empty],
    ['an empty member twice', Buffer.concat([empty, empty])],
    ['two members', Buffer.concat([gz, gzipSync(textBytes(5000, 9))])],
    ['three members, an empty one between', Buffer.concat([gz, empty, gz])],
    ['0x00 padding after the member', Buffer.concat([gz, Buffer.alloc(100)])],
    ['0x00 then garbage after the member', Buffer.concat([gz, Buffer.from([0, 1, 2, 3, 0x1f, 0x8b])])],
    ['0x00 then a whole member (ignored)', Buffer.concat([gz, Buffer.alloc(1), gz])],
    ['garbage after the member', Buffer.concat([gz, Buffer.from('garbage')])],
    ['0x1f after the member', Buffer.concat([gz, Buffer.from([0x1f])])],
    ['a header alone after the member', Buffer.concat([gz, gz.subarray(0, 10)])],
    ['FEXTRA of 65535 bytes', member(text, { extra: prandBytes(65535, 4) })],
    ['FEXTRA cut short', member(text, { extra: prandBytes(1000, 5) }).subarray(0, 500)],
    ['FNAME of 200 KiB', member(text, { name: Buffer.alloc(200_000, 0x61) })],
    ['FNAME never ended', Buffer.concat([Buffer.from([0x1f, 0x8b, 8, 8, 0, 0, 0, 0, 0, 3]), Buffer.alloc(50_000, 0x61)])],
    ['FCOMMENT and FNAME', member(text, { name: 'layer.tar', comment: 'c'.repeat(3000) })],
    ['FHCRC right', member(text, { name: 'n', hcrc: true })],
    ['FHCRC wrong', member(text, { name: 'n', hcrc: 0x1234 })],
    ['FHCRC wrong in the second member', Buffer.concat([gz, member(text, { extra: Buffer.from('xy'), hcrc: 0x4321 })])],
    ['every field, in the second member', Buffer.concat([gz, member(text, { extra: Buffer.from('ab\x02\0zz'), name: 'x', comment: 'y', hcrc: true })])],
    ['reserved flag bits', member(text, { flg: 0x20 })],
    ['reserved flag bits in the second member', Buffer.concat([gz, member(text, { flg: 0x80 })])],
    ['method 9', member(text, { method: 9 })],
    ['a CRC one bit off', flip(gz, gz.length - 8)],
    ['a CRC one bit off in the second member', Buffer.concat([gz, flip(gz, gz.length - 5, 0x80)])],
    ['ISIZE one off', flip(gz, gz.length - 4)],
    ['ISIZE high bit', flip(gz, gz.length - 1, 0x80)],
    ['cut in the trailer', gz.subarray(0, gz.length - 1)],
    ['cut before the trailer', gz.subarray(0, gz.length - 8)],
    ['cut mid-block', gz.subarray(0, gz.length >> 1)],
    ['a final block cut short', wrap(deflateRawSync(text).subarray(0, 200), 0, 0).subarray(0, 210)],
    ['a non-final block and then a trailer', wrap(nonFinal, crc32(text), text.length)],
    ['a stored block', wrap(stored, crc32(Buffer.from('hello')), 5)],
    ['a stored block with a bad NLEN', wrap(storedBad, crc32(Buffer.from('hello')), 5)],
    ['a block of the reserved type', wrap(Buffer.from([0x07, 0x00]), 0, 0)],
    ['a distance too far back', wrap(Buffer.from([0x63, 0x00, 0x42, 0x00]), 0, 0)],
    ['raw deflate', deflateRawSync(text)],
    ['zlib format', deflateSync(text)],
    ['a bad CRC and the stream cut in ISIZE', flip(gz, gz.length - 8).subarray(0, gz.length - 2)],
  ];
}

describe('native gunzip against hostile input (native/gunzip.c)', () => {
  it('every edge case: as node:zlib, in one piece, a byte at a time, and into a one-byte output', { skip }, async () => {
    for (const [what, bytes] of edgeCases()) {
      const zlib = zlibGunzip(bytes);
      assertSame(await nativeGunzipOf([bytes], 512 << 10), zlib, `${what} (whole)`);
      // a byte at a time (a few bytes at a time for the long headers: each piece is a thread-pool run)
      const small = bytes.length <= 25_000 ? split(bytes, 'bytes') : tiny(bytes);
      assertSame(await nativeGunzipOf(small, 64 << 10), zlib, `${what} (1-byte input)`);
      // one byte of output per run too: only where that stays a few thousand runs
      if ((zlib.ok ? zlib.out.length : 0) <= 25_000 && bytes.length <= 25_000)
        assertSame(await nativeGunzipOf(small, 1), zlib, `${what} (1-byte input and output)`);
    }
  });

  it('random streams (members, header fields, damage) split at random: the bytes of node:zlib, or refused by both', { skip }, async () => {
    const r = rng(77);
    const ri = (n: number): number => Math.floor(r() * n);
    let refused = 0;
    for (let i = 0; i < 80; i++) {
      const members: Buffer[] = [];
      for (let k = 1 + ri(3); k > 0; k--) {
        const n = ri(4) === 0 ? ri(200) : ri(150_000);
        const data = [Buffer.alloc(n), textBytes(n, i), prandBytes(n, i)][ri(3)]!;
        const f = {
          ...(ri(3) === 0 ? { extra: prandBytes(ri(300), i) } : {}),
          ...(ri(3) === 0 ? { name: 'n'.repeat(ri(40)) } : {}),
          ...(ri(3) === 0 ? { comment: 'c'.repeat(ri(40)) } : {}),
          ...(ri(3) === 0 ? { hcrc: true } : {}),
        };
        members.push(member(data, f));
      }
      let bytes: Buffer = Buffer.concat(members);
      const damage = ri(6);
      if (damage === 1) bytes = flip(bytes, ri(bytes.length), 1 << ri(8));
      else if (damage === 2) bytes = bytes.subarray(0, ri(bytes.length));
      else if (damage === 3) bytes = Buffer.concat([bytes, Buffer.from([ri(2) ? 0 : ri(256), ri(256)])]);
      else if (damage === 4) {
        const at = ri(bytes.length);
        bytes = Buffer.concat([bytes.subarray(0, at), bytes.subarray(at + 1 + ri(4))]);
      }
      const zlib = zlibGunzip(bytes);
      if (!zlib.ok) refused++;
      const outSize = zlib.ok && zlib.out.length < 20_000 ? 7 : [4096, 65536, 512 << 10][ri(3)]!;
      assertSame(await nativeGunzipOf(split(bytes, 'random', i), outSize), zlib, `stream ${i} (damage ${damage}, output ${outSize})`);
    }
    assert.ok(refused > 10 && refused < 70, `${refused} of 80 refused`);
  });

  it('a broken stream stays broken; a run while one is pending, a run after close and wrong arguments throw', { skip }, async () => {
    const g = nativeGunzip!;
    const h = g.create();
    const out = Buffer.alloc(1024);
    const run = (input: Uint8Array): Promise<string | null> => new Promise((resolve) => g.run(h, input, out, (err) => resolve(err)));
    assert.equal(await run(Buffer.from('not gzip')), 'incorrect header check');
    // the same error again, even for a valid stream: nothing is inflated after a failure
    assert.equal(await run(gz), 'incorrect header check');
    const h2 = g.create();
    const pending = new Promise<string | null>((resolve) => g.run(h2, gz, Buffer.alloc(1 << 20), (err) => resolve(err)));
    assert.throws(() => g.run(h2, gz, out, () => undefined), /a run is pending/);
    g.close(h2); // with a run pending: kept until it is over
    assert.equal(await pending, null);
    g.close(h2);
    assert.throws(() => g.run(h2, gz, out, () => undefined), /closed/);
    assert.throws(() => g.run({}, gz, out, () => undefined), TypeError);
    assert.throws(() => g.run(h, 'gz' as unknown as Uint8Array, out, () => undefined), TypeError);
    assert.throws(() => g.run(h, gz, new Uint16Array(4) as unknown as Uint8Array, () => undefined), TypeError);
    assert.throws(() => g.run(h, gz, out, undefined as unknown as () => void), TypeError);
    g.close(h);
  });
});

/** Feeds `parts` to an Inner as a layer upload does (waiting for each `done`), then ends it. */
async function feed(inner: Inner, parts: Iterable<Buffer>): Promise<InnerResult> {
  for (const p of parts) await new Promise<void>((resolve) => inner.write(p, resolve));
  return inner.end();
}

describe('the layer digester (src/digest/inner.ts) against hostile gzip', () => {
  it('gives node:zlib engine results with the native engine for every edge case, wrapped around a tar', { skip }, async () => {
    const gzTar = gzipSync(tar);
    const cases: [string, Buffer][] = [
      ['two members', Buffer.concat([gzipSync(tar.subarray(0, 100_000)), gzipSync(tar.subarray(100_000))])],
      ['padding', Buffer.concat([gzTar, Buffer.alloc(3)])],
      ['FEXTRA FNAME FCOMMENT FHCRC', member(tar, { extra: Buffer.from('zz'), name: 'l', comment: 'c', hcrc: true })],
      ...edgeCases(),
    ];
    for (const [what, bytes] of cases) {
      for (const seed of [1, 2]) {
        const parts = split(bytes, seed === 1 ? 'whole' : 'random', seed);
        const a = await feed(createGunzipInner('zlib', json), parts);
        const b = await feed(createGunzipInner('native', json), parts);
        assert.equal(b.tarError === undefined, a.tarError === undefined, `${what}: zlib ${a.tarError}, native ${b.tarError}`);
        assert.equal(b.tarError?.startsWith('gunzip: '), a.tarError?.startsWith('gunzip: '), `${what}: zlib ${a.tarError}, native ${b.tarError}`);
        if (a.tarError === undefined) assert.deepEqual(b, a, what);
      }
    }
  });

  it('inflates a gzip bomb (1 MiB in, 1 GiB of zeros out) in bounded memory, to the right diff_id', { skip, timeout: 120_000 }, async () => {
    const zeros = Buffer.alloc(64 << 20);
    const one = gzipSync(zeros, { level: 9 });
    const copies = 16;
    const bomb = Buffer.concat(Array.from({ length: copies }, () => one));
    assert.ok(bomb.length < 2 << 20, `${bomb.length} bytes`);
    const h = createHash('sha256');
    for (let i = 0; i < copies; i++) h.update(zeros);
    const expected = `sha256:${h.digest('hex')}`;
    global.gc?.();
    const base = process.memoryUsage().rss;
    let peak = base;
    const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 5);
    try {
      const r = await feed(createGunzipInner('native', json, { tarsums: false }), split(bomb, 'random', 3));
      // all zeros: an empty tar (its end marker first), every byte of it in the diff_id
      assert.deepEqual(r, { diffId: expected, tar: true });
    } finally {
      clearInterval(sampler);
    }
    // the run's two 512 KiB outputs and zlib's window; nothing grows with the inflated size
    assert.ok(peak - base < 96 << 20, `RSS grew by ${(peak - base) >> 20} MiB inflating 1 GiB`);
  });
});

/** A tar of `n` identical empty entries (a duplicate path each time), and its end marker. */
function sameEntryTar(n: number): Buffer {
  const h = tarHeader({ name: 'a', data: '' });
  return Buffer.concat([...Array.from({ length: n }, () => h), Buffer.alloc(1024)]);
}

describe('tarsum of a tar with more entries than any layer (src/digest/tarsum.ts)', () => {
  it('keeps at most maxEntries sums: past them no tarsum, the archive still read and checked', () => {
    assert.ok(MAX_TARSUM_ENTRIES >= 1 << 20 && MAX_TARSUM_ENTRIES <= 1 << 22, `cap ${MAX_TARSUM_ENTRIES}`);
    const within = new TarSum(json, { v1: false, maxEntries: 1000 });
    within.write(sameEntryTar(1000));
    within.end();
    assert.ok(within.result()?.v0.startsWith('tarsum+sha256:'));
    const past = new TarSum(json, { v1: false, maxEntries: 1000 });
    for (let i = 0; i < 50; i++) past.write(sameEntryTar(1000).subarray(0, 1000 * 512));
    past.write(Buffer.alloc(1024));
    past.end();
    assert.equal(past.result(), undefined);
    assert.ok(past.tooManyEntries && past.complete);
    assert.equal(past.entrySums().length, 0, 'the sums kept before the cap are freed');
  });

  it('through the layer digester: past the cap the layer keeps its diff_id, with no tarsum; a broken tar still fails', async () => {
    const many = sameEntryTar(3000);
    const gzMany = gzipSync(many);
    for (const engine of nativeGunzip ? (['zlib', 'native'] as const) : (['zlib'] as const)) {
      const r = await feed(createGunzipInner(engine, json, { tarsumV1: false, tarsumMaxEntries: 1000 }), split(gzMany, 'random', 5));
      assert.deepEqual(r, { diffId: `sha256:${sha256(many)}`, tar: true }, engine);
      const ok = await feed(createGunzipInner(engine, json, { tarsumV1: false, tarsumMaxEntries: 3000 }), [gzMany]);
      assert.ok(ok.tarsum?.v0, engine);
      const cut = await feed(createGunzipInner(engine, json, { tarsumV1: false, tarsumMaxEntries: 1000 }), [
        gzipSync(many.subarray(0, many.length - 1024 - 100)),
      ]);
      assert.match(cut.tarError ?? '', /^not a tar archive/, engine);
    }
  });
});

describe('hostile gzip layers pushed to a running server (PUT /v1/images/<id>/layer)', { timeout: 300_000 }, () => {
  let s: TestServer;
  before(async () => {
    s = await startTestServer({ standalone: true, v2: true });
  });
  after(async () => {
    await s?.stop();
  });

  const S2 = 'application/vnd.docker.distribution.manifest.v2+json';
  let n = 0;
  /** Pushes `layer` as a new image, tags it, and returns the v2 manifest answer and the config's diff_ids. */
  async function push(layer: Buffer): Promise<{ status: number; diffIds?: string[] }> {
    const id = createHash('sha256').update(`hostile-${n++}-${Math.random()}`).digest('hex');
    const body = Buffer.from(JSON.stringify({ id, created: '2015-01-01T00:00:00Z', architecture: 'amd64', os: 'linux' }));
    const rs = await pushImage(s.url, { id, json: body, layer, payload: payloadChecksum(body, layer) });
    // a v1 layer is whatever bytes the client sends: taken, checksummed, never a 5xx
    assert.deepEqual(
      rs.map((r) => r.status),
      [404, 200, 200, 200],
      rs.map((r) => `${r.status} ${r.text}`).join(' | '),
    );
    assert.equal((await putTag(s.url, 'hostile/gz', `t${n}`, id)).status, 200);
    const m = await request(s.url, `/v2/hostile/gz/manifests/t${n}`, { headers: { Accept: S2 } });
    if (m.status !== 200) return { status: m.status };
    const digest = m.json<{ config: { digest: string } }>().config.digest;
    return { status: 200, diffIds: (await request(s.url, `/v2/hostile/gz/blobs/${digest}`)).json<{ rootfs: { diff_ids: string[] } }>().rootfs.diff_ids };
  }

  it('a layer node:zlib refuses has no v2 form (a 4xx); one it reads has the diff_id of its tar', async () => {
    const gzTar = gzipSync(tar);
    const wrapped: [string, Buffer][] = [
      ['two members', Buffer.concat([gzipSync(tar.subarray(0, 100_000)), gzipSync(tar.subarray(100_000))])],
      ['0x00 padding', Buffer.concat([gzTar, Buffer.alloc(10)])],
      ['every header field', member(tar, { extra: Buffer.from('zz'), name: 'l', comment: 'c', hcrc: true })],
      ['a CRC one bit off', flip(gzTar, gzTar.length - 8)],
      ['ISIZE one off', flip(gzTar, gzTar.length - 4)],
      ['garbage after the member', Buffer.concat([gzTar, Buffer.from('garbage')])],
      ['cut in the trailer', gzTar.subarray(0, gzTar.length - 3)],
      ['cut mid-block', gzTar.subarray(0, gzTar.length >> 1)],
      ['FHCRC wrong', member(tar, { hcrc: 0x1234 })],
      ['the magic alone', Buffer.from([0x1f, 0x8b])],
    ];
    for (const [what, layer] of wrapped) {
      const r = await push(layer);
      if (zlibGunzip(layer).ok) assert.deepEqual(r, { status: 200, diffIds: [`sha256:${sha256(tar)}`] }, what);
      else assert.ok(r.status >= 400 && r.status < 500, `${what}: ${r.status}`);
    }
  });

  it('a gzip bomb (1 MiB in, 1 GiB out) is read through and the server keeps answering', async () => {
    const one = gzipSync(Buffer.alloc(64 << 20), { level: 9 });
    const bomb = Buffer.concat(Array.from({ length: 16 }, () => one));
    const r = await push(bomb);
    const h = createHash('sha256');
    const zeros = Buffer.alloc(64 << 20);
    for (let i = 0; i < 16; i++) h.update(zeros);
    assert.deepEqual(r, { status: 200, diffIds: [`sha256:${h.digest('hex')}`] });
    assert.equal((await request(s.url, '/v1/_ping')).status, 200);
  });
});
