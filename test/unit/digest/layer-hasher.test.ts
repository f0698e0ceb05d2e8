import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { gzipSync } from 'node:zlib';
import { LayerHasher, sniffCompression, type LayerDigests } from '../../../src/digest/layer-hasher.js';
import { DigestWorkers } from '../../../src/digest/worker-inner.js';
import { createInlineInner } from '../../../src/digest/inner.js';
import { LayerHasher as Hasher } from '../../../src/digest/layer-hasher.js';
import { END, buildTar, tarHeader } from '../../helpers/tar-build.js';
import { hashLayer, json, prandBytes, sha256, split, tarsumOf, textBytes, vectorFile } from './support.js';

/** The raw-byte digests must be right whatever happens to the tar side. */
function assertRawDigests(d: LayerDigests, body: Buffer): void {
  assert.equal(d.digest, `sha256:${sha256(body)}`);
  assert.equal(d.size, body.length);
  assert.equal(d.payload, `sha256:${sha256(json, Buffer.from('\n'), body)}`);
}

describe('LayerHasher: compression detection', () => {
  it('sniffCompression reads the magic numbers, short inputs included', () => {
    const cases: [string, string][] = [
      ['1f8b08', 'gzip'],
      ['1f8b', 'gzip'],
      ['425a6839', 'bzip2'],
      ['425a68', 'bzip2'],
      ['fd377a585a00', 'xz'],
      ['fd377a585a', 'none'],
      ['28b52ffd', 'zstd'],
      ['28b52f', 'none'],
      ['1f', 'none'],
      ['', 'none'],
      [Buffer.from('etc/').toString('hex'), 'none'],
    ];
    for (const [hex, kind] of cases) assert.equal(sniffCompression(Buffer.from(hex, 'hex')), kind, hex);
  });

  for (const [magic, kind] of [
    ['425a6839', 'bzip2'],
    ['fd377a585a00', 'xz'],
    ['28b52ffd', 'zstd'],
  ] as const) {
    it(`${kind}: named, stored as is, diffId and tarsum undefined with a reason`, async () => {
      const body = Buffer.concat([Buffer.from(magic, 'hex'), prandBytes(20000, 4)]);
      const { d, out } = await hashLayer(split(body, 'random', 3));
      assert.ok(out.equals(body));
      assertRawDigests(d, body);
      assert.equal(d.compression, kind);
      assert.equal(d.diffId, undefined);
      assert.equal(d.tarsum, undefined);
      assert.match(d.tarError ?? '', new RegExp(kind));
    });
  }

  it('magic split over 1-byte chunks is still recognised', async () => {
    const { d } = await hashLayer(split(vectorFile('layer.tar.gz'), 'bytes'));
    assert.equal(d.compression, 'gzip');
    assert.ok(d.tarsum);
  });
});

describe('LayerHasher: broken input never fails the upload', () => {
  const tar = buildTar([
    { name: 'a', data: prandBytes(100000, 1) },
    { name: 'b/', type: '5' },
  ]);
  const cases: [string, Buffer, RegExp, string][] = [
    ['random bytes', prandBytes(10000, 2), /not a tar.*checksum/, 'none'],
    ['a tar cut in the middle of an entry', tar.subarray(0, 50000), /not a tar.*truncated/, 'none'],
    ['five bytes', Buffer.from('hello'), /not a tar.*truncated/, 'none'],
    ['a gzip cut in half', gzipSync(tar).subarray(0, 30000), /gunzip/, 'gzip'],
    ['only a gzip magic', Buffer.from('1f8b', 'hex'), /gunzip/, 'gzip'],
    ['gzip of something that is not a tar', gzipSync(prandBytes(50000, 3)), /not a tar/, 'gzip'],
    [
      'a corrupted gzip',
      (() => {
        const gz = gzipSync(tar);
        for (let i = 200; i < 260; i++) gz[i] = gz[i]! ^ 0x5a;
        return gz;
      })(),
      /gunzip/,
      'gzip',
    ],
  ];
  for (const [label, body, re, compression] of cases) {
    it(`${label}: sha256 and payload right, bytes passed on, tarError set`, async () => {
      for (const mode of ['whole', 'random'] as const) {
        const { d, out } = await hashLayer(split(body, mode, 17));
        assert.ok(out.equals(body));
        assertRawDigests(d, body);
        assert.equal(d.compression, compression);
        assert.equal(d.tarsum, undefined);
        assert.equal(d.diffId, undefined);
        assert.match(d.tarError ?? '', re);
      }
    });
  }

  it('result() before the stream finished throws', () => {
    assert.throws(() => new LayerHasher(json).result(), /not finished/);
  });
});

describe('LayerHasher: gzip layers', () => {
  it('a multi-member gzip is read through: diffId and tarsum of the whole tar', async () => {
    const tar = buildTar([
      { name: 'x', data: prandBytes(70000, 5) },
      { name: 'y', data: 'why' },
    ]);
    const gz = Buffer.concat([gzipSync(tar.subarray(0, 40000)), gzipSync(tar.subarray(40000))]);
    const { d } = await hashLayer(split(gz, 'random', 6));
    assert.equal(d.tarError, undefined);
    assert.equal(d.diffId, `sha256:${sha256(tar)}`);
    assert.deepEqual(d.tarsum, tarsumOf([tar]).result());
  });

  it('a 3 MiB entry through gzip in random chunks: same tarsum as the plain tar', async () => {
    const tar = buildTar([
      { name: 'big', data: prandBytes(3 << 20, 6) },
      { name: 'small', data: 's' },
    ]);
    const gz = gzipSync(tar, { level: 1 });
    const [viaGz, viaTar] = await Promise.all([hashLayer(split(gz, 'random', 8)), hashLayer(split(tar, 'random', 9))]);
    assert.equal(viaGz.d.diffId, viaTar.d.digest);
    assert.ok(viaGz.d.tarsum);
    assert.deepEqual(viaGz.d.tarsum, viaTar.d.tarsum);
    assert.deepEqual(viaGz.d.tarsum, tarsumOf([tar]).result());
  });

  it('with an empty json: payload is sha256("\\n" + body), tarsum without extra', async () => {
    const body = vectorFile('layer.tar.gz');
    const { d } = await hashLayer([body], Buffer.alloc(0));
    assert.equal(d.payload, `sha256:${sha256(Buffer.from('\n'), body)}`);
    assert.deepEqual(d.tarsum, tarsumOf([vectorFile('layer.tar')], Buffer.alloc(0)).result());
  });

  it('streams a ~48 MiB gzip layer with bounded memory: input waits while zlib is busy', async () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    // Text-like data (~3.7:1): inflating and hashing take far longer than reading the input, so
    // input accepted without waiting for zlib would pile up in memory. The layer is a multi-member
    // gzip of one 1 MiB unit repeated, so building it costs one small compression.
    const unit = textBytes(1 << 20, 10);
    const unitGz = gzipSync(unit, { level: 6 });
    const members = Math.ceil((48 << 20) / unitGz.length);
    const size = members * unit.length;
    const gz = Buffer.concat([gzipSync(tarHeader({ name: 'big', size })), ...Array.from({ length: members }, () => unitGz), gzipSync(END)]);
    assert.ok(gz.length > 46 << 20 && size > 3 * gz.length);
    gc();
    gc();
    const before = process.memoryUsage();
    let peakBuffers = before.arrayBuffers;
    let peakRss = before.rss;
    let sinceGc = 0;
    const sample = (): void => {
      // Twice: array buffers freed by one collection are only swept (and uncounted) by the next.
      gc();
      gc();
      const m = process.memoryUsage();
      peakBuffers = Math.max(peakBuffers, m.arrayBuffers);
      peakRss = Math.max(peakRss, m.rss);
    };
    async function* source(): AsyncGenerator<Buffer> {
      // Fresh 64 KiB copies, as a socket delivers them: only what is retained stays alive.
      for (let off = 0; off < gz.length; off += 65536) {
        sinceGc += 65536;
        if (sinceGc >= 4 << 20) {
          sinceGc = 0;
          sample();
        }
        yield Buffer.from(gz.subarray(off, off + 65536));
      }
    }
    const h = new LayerHasher(json);
    await pipeline(source(), h, new Writable({ write: (_c, _e, cb) => cb() }));
    const d = h.result();
    assert.equal(d.tarError, undefined);
    assert.equal(d.digest, `sha256:${sha256(gz)}`);
    assert.ok(d.tarsum);
    const grewBuffers = (peakBuffers - before.arrayBuffers) / 2 ** 20;
    const grewRss = (peakRss - before.rss) / 2 ** 20;
    assert.ok(grewBuffers < 8, `retained buffers grew by ${grewBuffers.toFixed(1)} MiB`);
    assert.ok(grewRss < 48, `rss grew by ${grewRss.toFixed(1)} MiB`);
  });
});

describe('LayerHasher with DigestWorkers', () => {
  const workers = new DigestWorkers(1);
  after(() => workers.close());

  it('a corrupt gzip in a worker: raw digests right, tarError set, the worker is reused after', async () => {
    const tar = buildTar([{ name: 'x', data: prandBytes(200000, 12) }]);
    const gz = gzipSync(tar);
    for (let i = 300; i < 340; i++) gz[i] = gz[i]! ^ 0xff;
    const { d, out } = await hashLayer(split(gz, 'random', 2), json, (k, e) => workers.create(k, e));
    assert.ok(out.equals(gz));
    assertRawDigests(d, gz);
    assert.equal(d.tarsum, undefined);
    assert.match(d.tarError ?? '', /gunzip/);
    const again = await hashLayer([vectorFile('layer.tar.gz')], json, (k, e) => workers.create(k, e));
    assert.deepEqual(again.d.tarsum, tarsumOf([vectorFile('layer.tar')]).result());
  });

  it('a plain tar larger than the in-flight window goes through a worker unchanged', async () => {
    const tar = buildTar([{ name: 'big', data: prandBytes(12 << 20, 13) }]);
    const { d, out } = await hashLayer(split(tar, 'random', 3), json, (k, e) => workers.create(k, e));
    assert.ok(out.equals(tar));
    assert.equal(d.diffId, `sha256:${sha256(tar)}`);
    assert.deepEqual(d.tarsum, tarsumOf([tar]).result());
  });

  it('without tarsums (the importer): same digests, payload and diff_id, no tarsum; a non-tar still has no diff_id', async () => {
    const gz = vectorFile('layer.tar.gz');
    const tar = vectorFile('layer.tar');
    for (const inner of [undefined, (k: Parameters<typeof workers.create>[0], e: Buffer, o?: { tarsums?: boolean }) => workers.create(k, e, o)]) {
      for (const body of [gz, tar]) {
        const full = await hashLayer(split(body, 'random', 5), json, inner);
        const lean = await hashLayer(split(body, 'random', 5), json, inner, { tarsums: false });
        assert.ok(lean.out.equals(body));
        assertRawDigests(lean.d, body);
        assert.equal(lean.d.diffId, full.d.diffId);
        assert.ok(lean.d.diffId, 'a readable tar has a diff_id');
        assert.equal(lean.d.tarsum, undefined);
        assert.ok(full.d.tarsum, 'with tarsums (the default) they are there');
      }
      // not a tar: no diff_id (the bridge does not serve it), with or without tarsums
      const junk = gzipSync(prandBytes(5000, 21));
      const lean = await hashLayer([junk], json, inner, { tarsums: false });
      assert.equal(lean.d.diffId, undefined);
      assert.match(lean.d.tarError ?? '', /not a tar/);
      const truncated = await hashLayer([tar.subarray(0, 700)], json, inner, { tarsums: false });
      assert.equal(truncated.d.diffId, undefined);
    }
  });
});

describe('the uncompressed side: flow control and what is computed (issue 18)', () => {
  it('gzip: every write gets its `done`, however many arrive while zlib is busy', async () => {
    // 17 writes of 1 MiB back to back: before, a write arriving while zlib was full replaced the
    // callback of the one waiting (2 of 17 came back), and a worker upload then stalled for good.
    const gz = gzipSync(prandBytes(16 << 20, 21), { level: 1 });
    const inner = createInlineInner('gzip', Buffer.alloc(0));
    let writes = 0;
    let dones = 0;
    for (let off = 0; off < gz.length; off += 1 << 20) {
      writes++;
      inner.write(gz.subarray(off, off + (1 << 20)), () => dones++);
    }
    const r = await inner.end();
    assert.equal(dones, writes);
    assert.match(r.tarError ?? '', /not a tar/);
  });

  it('a gzip layer of many slabs through a worker: the tarsum and diff_id of the inline path', async () => {
    const workers = new DigestWorkers(1);
    try {
      const tar = buildTar([
        { name: 'a', data: prandBytes(9 << 20, 31) },
        { name: 'b', data: textBytes(7 << 20, 32) },
      ]);
      const gz = gzipSync(tar, { level: 1 });
      assert.ok(gz.length > 10 << 20); // more than the worker's 8 slabs of 1 MiB
      const [viaWorker, inline] = await Promise.all([hashLayer(split(gz, 'random', 4), json, workers.factory), hashLayer(split(gz, 'random', 5))]);
      assert.ok(viaWorker.out.equals(gz));
      assert.equal(viaWorker.d.diffId, `sha256:${sha256(tar)}`);
      assert.deepEqual(viaWorker.d.tarsum, inline.d.tarsum);
      assert.deepEqual(viaWorker.d.tarsum, tarsumOf([tar]).result());
    } finally {
      await workers.close();
    }
  });

  it('{ tarsumV1: false }: the same v0 sums under both owner rules, no v1/dev (inline and worker)', async () => {
    const workers = new DigestWorkers(1);
    try {
      const body = vectorFile('layer.tar.gz'); // entries owned by root: the two rules differ
      const full = tarsumOf([vectorFile('layer.tar')]).result()!;
      for (const factory of [undefined, workers.factory]) {
        const h = new Hasher(json, factory, { tarsumV1: false });
        await pipeline(Readable.from(split(body, 'random', 6)), h, new Writable({ write: (_c, _e, cb) => cb() }));
        const t = h.result().tarsum!;
        assert.deepEqual(t, { v0: full.v0, v0Plain: full.v0Plain, go110: { v0: full.go110.v0, v0Plain: full.go110.v0Plain } });
      }
    } finally {
      await workers.close();
    }
  });
});
