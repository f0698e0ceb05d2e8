/** Every value of test/fixtures/vectors/expected.json (spec §6.5), through each entry point. */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { DigestWorkers } from '../../../src/digest/worker-inner.js';
import { CHUNK_MODES, expected, hashLayer, json, parse, sha256, split, tarsumOf, vectorFile, type LayerVector } from './support.js';

const NONE = Buffer.alloc(0);
const layer = (name: string): LayerVector => {
  const v = expected.layers[name];
  assert.ok(v, `expected.json has ${name}`);
  return v;
};
/** The v0 value the CLI (Go) sends, and the plain-sort (Python registry) one. */
const goV0 = (v: LayerVector): string | undefined => v.tarsum_v0_with_json_docker_go ?? v.tarsum_v0_with_json;
const plainV0 = (v: LayerVector): string | undefined => v.tarsum_v0_with_json_python_registry_plain_sort ?? v.tarsum_v0_with_json;
const TARS = Object.keys(expected.layers).filter((n) => n.endsWith('.tar'));

/**
 * The Go ≥ 1.10 set of a vector (spec §6.2). expected.json gives one v0 per layer: for layer-dup.tar
 * it is the Go ordering (3 entries: insertion sort in every Go release, spec §6.3), and the plain
 * sort is checked separately, from the archive-order sums.
 */
const go110 = (v: LayerVector, withJson = true): { v0: string; v1: string; dev: string } =>
  withJson
    ? { v0: v.go110_tarsum_v0_with_json, v1: v.go110_tarsum_v1_with_json, dev: v.go110_tarsum_dev_with_json }
    : { v0: v.go110_tarsum_v0_no_json, v1: v.go110_tarsum_v1_no_json, dev: v.go110_tarsum_dev_no_json };
/** Every labelled tarsum of a vector layer (json extra), both header rules. */
const allSums = (v: LayerVector, name: string): unknown => ({
  v0: goV0(v),
  v0Plain: plainV0(v),
  v1: v.tarsum_v1_with_json,
  dev: v.tarsum_dev_with_json,
  go110: { ...go110(v), v0Plain: name === 'layer-dup.tar' ? GO110_DUP_PLAIN : go110(v).v0 },
});
/** layer-dup.tar, Go ≥ 1.10 rule, plain sort: recomputed from its archive-order sums in a test below. */
let GO110_DUP_PLAIN = '';
{
  const t = tarsumOf([vectorFile('layer-dup.tar')]);
  GO110_DUP_PLAIN = `tarsum+sha256:${sha256(
    json,
    Buffer.from(
      t
        .entrySums()
        .map((s) => s.v0Go110)
        .sort()
        .join(''),
    ),
  )}`;
}

describe('vector files', () => {
  it('json is the image json of expected.json (sha256 and id)', () => {
    assert.equal(sha256(json), expected.json_sha256_of_file);
    assert.equal((JSON.parse(json.toString('utf8')) as { id: string }).id, expected.image_id);
  });

  it('every layer file has the size and sha256 expected.json gives', () => {
    assert.equal(Object.keys(expected.layers).length, 4);
    for (const [name, v] of Object.entries(expected.layers)) {
      const bytes = vectorFile(name);
      assert.equal(bytes.length, v.size, name);
      assert.equal(sha256(bytes), v.file_sha256, name);
    }
  });
});

describe('LayerHasher on the vector layers', () => {
  for (const name of Object.keys(expected.layers)) {
    for (const mode of CHUNK_MODES) {
      it(`${name}, ${mode} chunks: digest, size, payload, compression, diffId, tarsums; bytes unchanged`, async () => {
        const v = layer(name);
        const bytes = vectorFile(name);
        const { d, out } = await hashLayer(split(bytes, mode, 11));
        assert.ok(out.equals(bytes), 'the stream passes the bytes through unchanged');
        assert.equal(d.digest, `sha256:${v.file_sha256}`);
        assert.equal(d.size, v.size);
        assert.equal(d.payload, v.checksum_payload);
        assert.equal(d.compression, name.endsWith('.gz') ? 'gzip' : 'none');
        assert.equal(d.tarError, undefined);
        assert.equal(d.diffId, `sha256:${layer(name.replace(/\.gz$/, '')).file_sha256}`);
        assert.deepEqual(d.tarsum, allSums(v, name));
      });
    }
  }

  it('layer.tar.gz: the Go ≥ 1.10 sums of expected.json, without extra too', async () => {
    const v = layer('layer.tar.gz');
    const { d } = await hashLayer(split(vectorFile('layer.tar.gz'), 'random', 7), NONE);
    assert.deepEqual(d.tarsum?.go110, { ...go110(v, false), v0Plain: v.go110_tarsum_v0_no_json });
  });

  it('layer.tar.gz gives the same tarsums as layer.tar (computed on the decompressed tar)', async () => {
    const gz = await hashLayer([vectorFile('layer.tar.gz')]);
    const tar = await hashLayer([vectorFile('layer.tar')]);
    assert.ok(gz.d.tarsum);
    assert.deepEqual(gz.d.tarsum, tar.d.tarsum);
    assert.equal(gz.d.diffId, tar.d.digest);
    assert.notEqual(gz.d.payload, tar.d.payload);
  });

  it('an empty body: the empty-layer payload vector; tarsum of an empty archive is sha256(extra)', async () => {
    for (const mode of CHUNK_MODES) {
      const { d, out } = await hashLayer(split(Buffer.alloc(0), mode));
      assert.equal(out.length, 0);
      assert.equal(d.payload, expected.empty_layer_checksum_payload);
      assert.equal(d.digest, `sha256:${sha256(Buffer.alloc(0))}`);
      assert.equal(d.size, 0);
      assert.equal(d.compression, 'none');
      assert.equal(d.tarsum?.v0, `tarsum+sha256:${sha256(json)}`);
      assert.equal(d.tarsum?.v1, `tarsum.v1+sha256:${sha256(json)}`);
      assert.equal(d.tarsum?.dev, `tarsum.dev+sha256:${sha256(json)}`);
    }
  });

  describe('in a worker thread (DigestWorkers)', () => {
    const workers = new DigestWorkers(2);
    after(() => workers.close());
    for (const name of Object.keys(expected.layers)) {
      it(`${name}, no extra: the Go ≥ 1.10 sums of expected.json`, async () => {
        const v = layer(name);
        const { d } = await hashLayer(split(vectorFile(name), 'random', 9), NONE, (k, e) => workers.create(k, e));
        assert.equal(d.tarsum?.go110.v0, v.go110_tarsum_v0_no_json);
        assert.equal(d.tarsum?.go110.v1, v.go110_tarsum_v1_no_json);
        assert.equal(d.tarsum?.go110.dev, v.go110_tarsum_dev_no_json);
      });
    }
    for (const name of Object.keys(expected.layers)) {
      it(`${name}: the same digests as inline`, async () => {
        const v = layer(name);
        const bytes = vectorFile(name);
        const { d, out } = await hashLayer(split(bytes, 'random', 5), json, (k, e) => workers.create(k, e));
        assert.ok(out.equals(bytes));
        assert.equal(d.digest, `sha256:${v.file_sha256}`);
        assert.equal(d.payload, v.checksum_payload);
        assert.equal(d.diffId, `sha256:${layer(name.replace(/\.gz$/, '')).file_sha256}`);
        assert.deepEqual(d.tarsum, allSums(v, name));
      });
    }
  });
});

describe('TarSum on the vector tars', () => {
  for (const name of TARS) {
    for (const mode of CHUNK_MODES) {
      it(`${name}, ${mode} chunks, json extra: v0 (Go and plain), v1, dev, under both owner rules`, () => {
        const v = layer(name);
        const r = tarsumOf(split(vectorFile(name), mode, 3)).result();
        assert.deepEqual(r, allSums(v, name));
      });

      it(`${name}, ${mode} chunks, no extra: the Go ≥ 1.10 v0, v1, dev`, () => {
        const v = layer(name);
        const r = tarsumOf(split(vectorFile(name), mode, 5), NONE).result();
        assert.equal(r?.go110.v0, v.go110_tarsum_v0_no_json);
        assert.equal(r?.go110.v1, v.go110_tarsum_v1_no_json);
        assert.equal(r?.go110.dev, v.go110_tarsum_dev_no_json);
      });
    }
  }

  for (const mode of CHUNK_MODES) {
    it(`layer.tar without extra, ${mode} chunks`, () => {
      const v = layer('layer.tar');
      const r = tarsumOf(split(vectorFile('layer.tar'), mode, 4), NONE).result();
      assert.equal(r?.v0, v.tarsum_v0_no_json);
      assert.equal(r?.v0Plain, v.tarsum_v0_no_json);
      assert.equal(r?.v1, v.tarsum_v1_no_json);
      assert.equal(r?.dev, v.tarsum_dev_no_json);
    });

    it(`layer.tar per-entry sums, v0 and v1, in archive order, ${mode} chunks`, () => {
      const v = layer('layer.tar');
      const sums = tarsumOf(split(vectorFile('layer.tar'), mode, 6)).entrySums();
      assert.deepEqual(
        sums.map((s) => s.name),
        Object.keys(v.per_file_sums_v0!),
      );
      assert.deepEqual(
        sums.map((s) => s.v0),
        Object.values(v.per_file_sums_v0!),
      );
      assert.deepEqual(
        sums.map((s) => s.v1),
        Object.keys(v.per_file_sums_v0!).map((n) => v.per_file_sums_v1![n]),
      );
    });
  }

  it('layer-xattr.tar: the xattr changes the v1 sum of etc/hello.txt only; v0 sums equal layer.tar', () => {
    const v = layer('layer-xattr.tar');
    const plain = layer('layer.tar');
    const sums = tarsumOf(split(vectorFile('layer-xattr.tar'), 'random', 8)).entrySums();
    assert.deepEqual(
      sums.map((s) => [s.name, s.v0]),
      Object.entries(plain.per_file_sums_v0!),
    );
    for (const s of sums) {
      const want = s.name === 'etc/hello.txt' ? v.per_file_sum_v1_etc_hello_txt : plain.per_file_sums_v1![s.name];
      assert.equal(s.v1, want, s.name);
    }
    assert.notEqual(v.per_file_sum_v1_etc_hello_txt, plain.per_file_sums_v1!['etc/hello.txt']);
  });

  for (const mode of CHUNK_MODES) {
    it(`layer-dup.tar, ${mode} chunks: archive-order sums; Go order and plain sort give the two vectors`, () => {
      const v = layer('layer-dup.tar');
      const t = tarsumOf(split(vectorFile('layer-dup.tar'), mode, 9));
      assert.deepEqual(
        t.entrySums().map((s) => s.name),
        ['dup', 'a', 'dup'],
      );
      assert.deepEqual(
        t.entrySums().map((s) => s.v0),
        v.per_file_sums_v0_archive_order,
      );
      const r = t.result();
      assert.equal(r?.v0, v.tarsum_v0_with_json_docker_go);
      assert.equal(r?.v0Plain, v.tarsum_v0_with_json_python_registry_plain_sort);
      assert.notEqual(r?.v0, r?.v0Plain);
      // Recompute both finals from the archive-order sums: Go keeps 'dup' #1 before 'dup' #2.
      const [d1, a, d2] = v.per_file_sums_v0_archive_order!;
      const plainOrder = [d1!, a!, d2!].sort();
      assert.equal(r?.v0Plain, `tarsum+sha256:${sha256(json, Buffer.from(plainOrder.join('')))}`);
    });
  }
});

describe('R9 files body of layer.tar (expected.json files_endpoint_body)', () => {
  for (const name of ['layer.tar', 'layer-xattr.tar']) {
    it(`${name}: the raw header fields the listing is built from`, () => {
      const body = JSON.parse(layer('layer.tar').files_endpoint_body!) as [string, string, boolean, number, number, number, number, number][];
      const r = parse(split(vectorFile(name), 'random', 2));
      assert.equal(r.error, undefined);
      assert.equal(r.headers.length, body.length);
      const kind: Record<string, string> = { '0': 'f', '5': 'd', '2': 's' };
      r.headers.forEach((h, i) => {
        const [path, type, deleted, size, mtime, mode, uid, gid] = body[i]!;
        assert.equal(h.name.replace(/\/$/, ''), path);
        assert.equal(kind[h.typeflag], type);
        assert.equal(deleted, false);
        assert.deepEqual([h.size, h.mtime, h.mode, h.uid, h.gid], [size, mtime, mode, uid, gid]);
      });
      assert.equal(r.headers[3]!.linkname, 'hello.txt');
      assert.deepEqual(r.contents.map(String), ['', 'hello world\n', '', '']);
    });
  }
});
