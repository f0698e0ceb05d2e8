import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { gzipSync } from 'node:zlib';
import { TarSum, goSort } from '../../../src/digest/tarsum.js';
import { LayerHasher, type LayerDigests } from '../../../src/digest/layer-hasher.js';
import { TarParser, type TarHeader } from '../../../src/digest/tar-parser.js';
import { DigestWorkers } from '../../../src/digest/worker-inner.js';
import { VECTORS } from '../../helpers/paths.js';

interface LayerVector {
  file_sha256: string;
  size: number;
  checksum_payload: string;
  tarsum_v0_with_json?: string;
  tarsum_v0_with_json_docker_go?: string;
  tarsum_v0_with_json_python_registry_plain_sort?: string;
  tarsum_v1_with_json: string;
  tarsum_dev_with_json: string;
  tarsum_v0_no_json?: string;
  tarsum_v1_no_json?: string;
  tarsum_dev_no_json?: string;
  per_file_sums_v0?: Record<string, string>;
  per_file_sums_v1?: Record<string, string>;
  per_file_sum_v1_etc_hello_txt?: string;
  per_file_sums_v0_archive_order?: string[];
}
interface Expected {
  image_id: string;
  json_sha256_of_file: string;
  layers: Record<string, LayerVector>;
  empty_layer_checksum_payload: string;
}

const expected = JSON.parse(readFileSync(join(VECTORS, 'expected.json'), 'utf8')) as Expected;
const json = readFileSync(join(VECTORS, 'json'));
const file = (name: string): Buffer => readFileSync(join(VECTORS, name));

/** Split a buffer into chunks: whole, 1-byte, or random sizes. */
function chunks(buf: Buffer, mode: 'whole' | 'bytes' | 'random'): Buffer[] {
  if (mode === 'whole') return [buf];
  const out: Buffer[] = [];
  let off = 0;
  while (off < buf.length) {
    const n = mode === 'bytes' ? 1 : 1 + Math.floor(Math.random() * 1500);
    out.push(buf.subarray(off, off + n));
    off += n;
  }
  return out;
}

const workers = new DigestWorkers(2);

async function hashLayer(parts: Buffer[], extra = json, inWorker = false): Promise<{ d: LayerDigests; out: Buffer }> {
  const h = inWorker ? new LayerHasher(extra, (k, e) => workers.create(k, e)) : new LayerHasher(extra);
  const got: Buffer[] = [];
  await pipeline(
    Readable.from(parts),
    h,
    new Writable({
      write(c: Buffer, _e, cb) {
        got.push(c);
        cb();
      },
    }),
  );
  return { d: h.result(), out: Buffer.concat(got) };
}

function tarsumOf(buf: Buffer, extra: Buffer, mode: 'whole' | 'bytes' | 'random' = 'whole'): TarSum {
  const t = new TarSum(extra);
  for (const c of chunks(buf, mode)) t.write(c);
  t.end();
  return t;
}

describe('checksum vectors (spec §6.5, expected.json)', () => {
  it('the json vector is the file we think it is', () => {
    assert.equal(createHash('sha256').update(json).digest('hex'), expected.json_sha256_of_file);
    assert.equal((JSON.parse(json.toString()) as { id: string }).id, expected.image_id);
  });

  for (const [name, v] of Object.entries(expected.layers)) {
    for (const mode of ['whole', 'bytes', 'random'] as const) {
      it(`${name} (${mode} chunks): sha256, payload, tarsum v0/v1/dev, bytes passed through unchanged`, async () => {
        const bytes = file(name);
        assert.equal(bytes.length, v.size);
        const { d, out } = await hashLayer(chunks(bytes, mode));
        assert.deepEqual(out, bytes);
        assert.equal(d.digest, `sha256:${v.file_sha256}`);
        assert.equal(d.size, v.size);
        assert.equal(d.payload, v.checksum_payload);
        assert.equal(d.tarError, undefined);
        assert.ok(d.tarsum);
        assert.equal(d.tarsum.v0, v.tarsum_v0_with_json ?? v.tarsum_v0_with_json_docker_go);
        assert.equal(d.tarsum.v0Plain, v.tarsum_v0_with_json_python_registry_plain_sort ?? v.tarsum_v0_with_json);
        assert.equal(d.tarsum.v1, v.tarsum_v1_with_json);
        assert.equal(d.tarsum.dev, v.tarsum_dev_with_json);
        assert.equal(d.compression, name.endsWith('.gz') ? 'gzip' : 'none');
        // diff_id: sha256 of the uncompressed tar
        const tarName = name.replace(/\.gz$/, '');
        assert.equal(d.diffId, `sha256:${expected.layers[tarName]!.file_sha256}`);
      });
    }
  }

  for (const [name, v] of Object.entries(expected.layers)) {
    it(`${name} through a worker thread gives the same digests`, async () => {
      const { d, out } = await hashLayer(chunks(file(name), 'random'), json, true);
      assert.deepEqual(out, file(name));
      assert.equal(d.digest, `sha256:${v.file_sha256}`);
      assert.equal(d.payload, v.checksum_payload);
      assert.equal(d.tarsum?.v0, v.tarsum_v0_with_json ?? v.tarsum_v0_with_json_docker_go);
      assert.equal(d.tarsum?.v1, v.tarsum_v1_with_json);
      assert.equal(d.diffId, `sha256:${expected.layers[name.replace(/\.gz$/, '')]!.file_sha256}`);
    });
  }

  it('corrupt gzip through a worker: raw digests right, tarsum undefined, worker usable after', async () => {
    const gz = gzipSync(Buffer.concat([...entry('x', randomBytes(200000)), Buffer.alloc(1024)]));
    gz[300] = gz[300]! ^ 0xff;
    const { d } = await hashLayer(chunks(gz, 'random'), json, true);
    assert.equal(d.digest, `sha256:${createHash('sha256').update(gz).digest('hex')}`);
    assert.equal(d.tarsum, undefined);
    const again = await hashLayer([file('layer.tar.gz')], json, true);
    assert.equal(again.d.payload, expected.layers['layer.tar.gz']!.checksum_payload);
    await workers.close();
  });

  it('layer.tar without the json extra', () => {
    const v = expected.layers['layer.tar']!;
    const r = tarsumOf(file('layer.tar'), Buffer.alloc(0)).result();
    assert.equal(r?.v0, v.tarsum_v0_no_json);
    assert.equal(r?.v1, v.tarsum_v1_no_json);
    assert.equal(r?.dev, v.tarsum_dev_no_json);
  });

  it('per-entry sums of layer.tar, v0 and v1, in archive order', () => {
    const v = expected.layers['layer.tar']!;
    const sums = tarsumOf(file('layer.tar'), json, 'random').entrySums();
    assert.deepEqual(sums.map((s) => s.name), Object.keys(v.per_file_sums_v0!));
    for (const s of sums) {
      assert.equal(s.v0, v.per_file_sums_v0![s.name]);
      assert.equal(s.v1, v.per_file_sums_v1![s.name]);
    }
  });

  it('the xattr is part of the v1 sum of etc/hello.txt, not of v0', () => {
    const v = expected.layers['layer-xattr.tar']!;
    const sums = tarsumOf(file('layer-xattr.tar'), json).entrySums();
    const hello = sums.find((s) => s.name === 'etc/hello.txt');
    assert.equal(hello?.v1, v.per_file_sum_v1_etc_hello_txt);
    assert.equal(hello?.v0, expected.layers['layer.tar']!.per_file_sums_v0!['etc/hello.txt']);
  });

  it('duplicate paths: per-entry v0 sums in archive order, Go and Python orderings differ', () => {
    const v = expected.layers['layer-dup.tar']!;
    const t = tarsumOf(file('layer-dup.tar'), json, 'bytes');
    assert.deepEqual(t.entrySums().map((s) => s.v0), v.per_file_sums_v0_archive_order);
    const r = t.result()!;
    assert.notEqual(r.v0, r.v0Plain);
    assert.equal(r.v0, v.tarsum_v0_with_json_docker_go);
    assert.equal(r.v0Plain, v.tarsum_v0_with_json_python_registry_plain_sort);
  });

  it('an empty layer body: payload vector, tarsum = sha256(extra)', async () => {
    const { d } = await hashLayer([]);
    assert.equal(d.payload, expected.empty_layer_checksum_payload);
    assert.equal(d.tarsum?.v0, `tarsum+sha256:${createHash('sha256').update(json).digest('hex')}`);
  });
});

/** A tar writer for tests: ustar headers, GNU long names (L) and PAX records (x). */
function header(name: string, size: number, type = '0', extra: Partial<{ mode: number; linkname: string }> = {}): Buffer {
  const h = Buffer.alloc(512);
  h.write(name.slice(0, 100), 0);
  h.write((extra.mode ?? 0o644).toString(8).padStart(7, '0') + '\0', 100);
  h.write('0000000\0', 108);
  h.write('0000000\0', 116);
  h.write(size.toString(8).padStart(11, '0') + '\0', 124);
  h.write('14440100400\0', 136);
  h.write('        ', 148);
  h.write(type, 156);
  if (extra.linkname) h.write(extra.linkname, 157);
  h.write('ustar\0', 257);
  h.write('00', 263);
  h.write('root', 265);
  h.write('root', 297);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148);
  return h;
}
const pad = (n: number): Buffer => Buffer.alloc((512 - (n % 512)) % 512);
function entry(name: string, data: Buffer, type = '0'): Buffer[] {
  return [header(name, data.length, type), data, pad(data.length)];
}
function paxRecord(key: string, value: string): string {
  const body = ` ${key}=${value}\n`;
  let len = body.length + 1;
  while (String(len).length + body.length !== len) len = String(len).length + body.length;
  return `${len}${body}`;
}

function collect(buf: Buffer, mode: 'whole' | 'bytes' | 'random' = 'random'): { headers: TarHeader[]; contents: Buffer[]; error?: string } {
  const headers: TarHeader[] = [];
  const contents: Buffer[] = [];
  let cur: Buffer[] = [];
  const p = new TarParser({
    entry: (h) => {
      headers.push(h);
      cur = [];
    },
    data: (c) => cur.push(Buffer.from(c)),
    entryEnd: () => contents.push(Buffer.concat(cur)),
  });
  for (const c of chunks(buf, mode)) p.write(c);
  p.end();
  return { headers, contents, ...(p.error ? { error: p.error } : {}) };
}

describe('TarParser', () => {
  it('reads a GNU long name and a PAX path longer than 100 characters', () => {
    const long1 = `dir/${'a'.repeat(150)}`;
    const long2 = `pax/${'b'.repeat(200)}`;
    const pax = Buffer.from(paxRecord('path', long2) + paxRecord('mtime', '1420070400.75'));
    const tar = Buffer.concat([
      ...entry('././@LongLink', Buffer.from(long1 + '\0'), 'L'),
      ...entry('ignored', Buffer.from('one')),
      ...entry('PaxHeader', pax, 'x'),
      ...entry('ignored-too', Buffer.from('two')),
      Buffer.alloc(1024),
    ]);
    const r = collect(tar, 'bytes');
    assert.equal(r.error, undefined);
    assert.deepEqual(r.headers.map((h) => h.name), [long1, long2]);
    assert.equal(r.headers[1]!.mtime, 1420070400);
    assert.deepEqual(r.contents.map(String), ['one', 'two']);
  });

  it('streams an entry larger than many chunks without changing it', () => {
    const big = randomBytes(3 * 1024 * 1024 + 17);
    const r = collect(Buffer.concat([...entry('big', big), Buffer.alloc(1024)]));
    assert.equal(r.headers[0]!.size, big.length);
    assert.ok(r.contents[0]!.equals(big));
  });

  it('reports garbage and truncation as errors instead of throwing', () => {
    assert.match(collect(randomBytes(4096)).error ?? '', /checksum/);
    const full = Buffer.concat([...entry('f', Buffer.alloc(5000, 1)), Buffer.alloc(1024)]);
    assert.match(collect(full.subarray(0, 2000)).error ?? '', /truncated/);
  });
});

describe('LayerHasher on broken or other input', () => {
  it('keeps sha256 and payload right when the data is not a tar, and says why', async () => {
    const junk = randomBytes(10000);
    const { d } = await hashLayer(chunks(junk, 'random'));
    assert.equal(d.digest, `sha256:${createHash('sha256').update(junk).digest('hex')}`);
    assert.equal(d.payload, `sha256:${createHash('sha256').update(json).update('\n').update(junk).digest('hex')}`);
    assert.equal(d.tarsum, undefined);
    assert.equal(d.diffId, undefined);
    assert.match(d.tarError ?? '', /not a tar/);
  });

  it('keeps sha256 and payload right on a corrupt gzip stream', async () => {
    const gz = gzipSync(Buffer.concat([...entry('x', randomBytes(100000)), Buffer.alloc(1024)]));
    gz[200] = gz[200]! ^ 0xff;
    gz[201] = gz[201]! ^ 0xff;
    const { d } = await hashLayer(chunks(gz, 'random'));
    assert.equal(d.digest, `sha256:${createHash('sha256').update(gz).digest('hex')}`);
    assert.equal(d.compression, 'gzip');
    assert.equal(d.tarsum, undefined);
    assert.ok(d.tarError);
  });

  it('names bzip2, xz and zstd layers and leaves their tarsum undefined', async () => {
    for (const [magic, kind] of [['425a6839', 'bzip2'], ['fd377a585a00', 'xz'], ['28b52ffd', 'zstd']] as const) {
      const { d } = await hashLayer([Buffer.concat([Buffer.from(magic, 'hex'), randomBytes(100)])]);
      assert.equal(d.compression, kind);
      assert.equal(d.tarsum, undefined);
    }
  });

  it('streams a 48 MiB gzip layer with bounded memory', async () => {
    const block = randomBytes(1 << 20);
    const parts: Buffer[] = [header('big', 48 << 20)];
    for (let i = 0; i < 48; i++) parts.push(block);
    parts.push(Buffer.alloc(1024));
    const gz = gzipSync(Buffer.concat(parts), { level: 1 });
    parts.length = 0;
    global.gc?.();
    const before = process.memoryUsage().rss;
    let peak = before;
    const h = new LayerHasher(json);
    const src = Readable.from(chunks(gz, 'whole').flatMap((b) => {
      const out: Buffer[] = [];
      for (let o = 0; o < b.length; o += 65536) out.push(b.subarray(o, o + 65536));
      return out;
    }));
    await pipeline(src, h, new Writable({
      write(_c, _e, cb) {
        peak = Math.max(peak, process.memoryUsage().rss);
        cb();
      },
    }));
    assert.ok(h.result().tarsum, h.result().tarError);
    assert.ok(peak - before < 40 * 1024 * 1024, `rss grew by ${(peak - before) >> 20} MiB`);
  });
});

describe('goSort (the order Go sort.Sort gives)', () => {
  it('sorts consistently-ordered data like Array.sort', () => {
    const data = Array.from({ length: 500 }, () => Math.floor(Math.random() * 1000));
    const a = [...data];
    goSort(a, (x, y) => x < y);
    assert.deepEqual(a, [...data].sort((x, y) => x - y));
  });
});
