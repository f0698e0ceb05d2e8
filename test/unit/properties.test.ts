import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { TarSum } from '../../src/digest/tarsum.js';
import { TarParser } from '../../src/digest/tar-parser.js';
import { parseStrict, StrictJsonError } from '../../src/content/strict-json.js';
import { jsonDepthExceeds } from '../../src/http/body.js';
import { parseRepoName, parseTag } from '../../src/content/names.js';
import { checkDigest, parseV2Name } from '../../src/content/v2-names.js';
import { parseRange } from '../../src/http/respond.js';
import { ConfigError, loadConfig } from '../../src/config/load.js';
import { expected, json, vectorFile } from './digest/support.js';
import { tarOf } from '../helpers/v1-client.js';

/**
 * Property tests (issue 17): the parsers and checks that take client bytes, under generated inputs.
 * Each property states what must hold for every input, not for a chosen example. Run counts are
 * fast-check's defaults (100) unless a property is cheap (then more); FC_RUNS raises all of them.
 */
const runs = (n = 100): { numRuns: number } => ({ numRuns: Number(process.env.FC_RUNS ?? n) });

/** Split a buffer at the given points (sorted, deduplicated, inside the buffer). */
function cut(buf: Buffer, points: number[]): Buffer[] {
  const at = [...new Set(points.map((p) => p % (buf.length + 1)))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let prev = 0;
  for (const p of at) {
    out.push(buf.subarray(prev, p));
    prev = p;
  }
  out.push(buf.subarray(prev));
  return out;
}

function tarsum(parts: readonly Buffer[], extra: Buffer): ReturnType<TarSum['result']> {
  const t = new TarSum(extra);
  for (const p of parts) t.write(p);
  t.end();
  return t.result();
}

describe('properties: tar reader and tarsum', () => {
  it('every spec vector gives its expected tarsums however the bytes are cut into chunks', () => {
    const names = Object.keys(expected.layers).filter((n) => n.endsWith('.tar'));
    fc.assert(
      fc.property(fc.constantFrom(...names), fc.array(fc.nat(), { maxLength: 40 }), (name, points) => {
        const v = expected.layers[name]!;
        const r = tarsum(cut(vectorFile(name), points), json);
        assert.ok(r, name);
        assert.equal(r.v1, v.tarsum_v1_with_json);
        assert.equal(r.dev, v.tarsum_dev_with_json);
      }),
      runs(200),
    );
  });

  it('a generated archive: the same tarsum and the same entries for any chunking', () => {
    const file = fc.record({ name: fc.stringMatching(/^[a-z][a-z0-9._-]{0,40}$/), body: fc.uint8Array({ maxLength: 3000 }) });
    fc.assert(
      fc.property(fc.uniqueArray(file, { selector: (f) => f.name, minLength: 1, maxLength: 8 }), fc.array(fc.nat(), { maxLength: 30 }), (files, points) => {
        const tar = tarOf(Object.fromEntries(files.map((f) => [f.name, Buffer.from(f.body)])));
        const whole = tarsum([tar], Buffer.alloc(0));
        const cutUp = tarsum(cut(tar, points), Buffer.alloc(0));
        assert.ok(whole);
        assert.deepEqual(cutUp, whole);
        const names: string[] = [];
        const p = new TarParser({ entry: (h) => names.push(h.name), data: () => undefined, entryEnd: () => undefined });
        for (const c of cut(tar, points)) p.write(c);
        p.end();
        assert.equal(p.error, undefined);
        assert.deepEqual(
          names,
          files.map((f) => f.name),
        );
      }),
      runs(),
    );
  });

  it('random bytes and damaged archives: the reader reports an error or a result, never throws', () => {
    const base = vectorFile('layer.tar');
    fc.assert(
      fc.property(
        fc.oneof(
          fc.uint8Array({ maxLength: 4096 }).map((a) => Buffer.from(a)),
          fc.tuple(fc.nat(base.length - 1), fc.integer({ min: 0, max: 255 })).map(([i, b]) => {
            const c = Buffer.from(base);
            c[i] = b;
            return c;
          }),
          fc.nat(base.length).map((n) => base.subarray(0, n)),
        ),
        fc.array(fc.nat(), { maxLength: 10 }),
        (bytes, points) => {
          // the property is that none of these calls throws (a throw fails fast-check's run)
          const t = new TarSum(json);
          for (const p of cut(bytes, points)) t.write(p);
          t.end();
          const r = t.result();
          // a result only for a complete archive, whose entries all ended
          if (r !== undefined) assert.equal(t.error, undefined);
        },
      ),
      runs(300),
    );
  });
});

describe('properties: JSON bodies', () => {
  it('the strict reader agrees with JSON.parse on every JSON value without duplicate keys', () => {
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 6 }), (v) => {
        const text = Buffer.from(JSON.stringify(v));
        assert.deepEqual(parseStrict(text, { maxDepth: 64 }), JSON.parse(text.toString('utf8')));
      }),
      runs(300),
    );
  });

  it('random text: the strict reader returns a value or throws its own error, never anything else', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string({ maxLength: 200 }),
          fc.json().map((j) => j.replace(/,/, ',,')),
          fc.json().map((j) => `${j}}`),
        ),
        (s) => {
          try {
            parseStrict(Buffer.from(s));
          } catch (e) {
            assert.ok(e instanceof StrictJsonError, `${String(e)} for ${JSON.stringify(s)}`);
          }
        },
      ),
      runs(500),
    );
  });

  it('a duplicate key anywhere is refused', () => {
    fc.assert(
      fc.property(fc.dictionary(fc.string({ maxLength: 8 }), fc.jsonValue({ maxDepth: 2 }), { minKeys: 1, maxKeys: 5 }), fc.nat(), (obj, i) => {
        const keys = Object.keys(obj);
        const k = keys[i % keys.length]!;
        const text = `${JSON.stringify(obj).slice(0, -1)},${JSON.stringify(k)}:1}`;
        assert.throws(() => parseStrict(Buffer.from(text)), StrictJsonError);
      }),
      runs(),
    );
  });

  it('the depth pre-scan matches the real nesting depth', () => {
    const nest = (d: number): string => (d === 0 ? '1' : fc.sample(fc.boolean(), 1)[0] ? `[${nest(d - 1)}]` : `{"a":${nest(d - 1)}}`);
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 100 }), fc.integer({ min: 1, max: 100 }), (depth, max) => {
        assert.equal(jsonDepthExceeds(Buffer.from(nest(depth)), max), depth > max);
      }),
      runs(),
    );
  });
});

describe('properties: names, tags, digests, ranges', () => {
  const V1_NAME = /^(?:[a-z0-9_](?:[a-z0-9_-]{0,253}[a-z0-9_])?\/)?[a-z0-9_.-]{1,64}$/;
  const V2_COMPONENT = '[a-z0-9]+(?:(?:\\.|_|__|-+)[a-z0-9]+)*';
  const V2_NAME = new RegExp(`^${V2_COMPONENT}(?:/${V2_COMPONENT})*$`);
  const TAG = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;
  const text = fc.oneof(fc.string({ maxLength: 80 }), fc.stringMatching(/^[a-z0-9._/-]{0,40}$/), fc.string({ unit: 'binary', maxLength: 40 }));

  it('repository names, v2 names and tags: accepted exactly when they match the grammar, never a throw', () => {
    fc.assert(
      fc.property(text, (s) => {
        const v1 = parseRepoName(s.replace(/\/+$/, ''));
        if (v1) assert.ok(V1_NAME.test(v1.full.startsWith('library/') && !s.includes('/') ? v1.repository : s.replace(/\/+$/, '')), s);
        assert.equal(parseV2Name(s) !== undefined, s.length <= 255 && V2_NAME.test(s), s);
        assert.equal(parseTag(s) !== undefined, TAG.test(s), s);
        // nothing accepted may carry a byte that could reach a header
        for (const ok of [v1?.full, parseV2Name(s), parseTag(s)]) if (ok) assert.doesNotMatch(ok, /[\u0000-\u001f\u007f-\uffff]/);
      }),
      runs(1000),
    );
  });

  it('digests: sha256 digests of 64 lower-case hex are ok, anything else is not', () => {
    fc.assert(
      fc.property(fc.oneof(text, fc.stringMatching(/^sha256:[a-f0-9]{64}$/), fc.stringMatching(/^sha256:[a-fA-F0-9]{60,70}$/)), (s) => {
        const c = checkDigest(s);
        assert.equal(c === 'ok', /^sha256:[a-f0-9]{64}$/.test(s), s);
      }),
      runs(1000),
    );
  });

  it('Range headers: a range inside the size, 416, or ignored; never outside the object', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string({ maxLength: 30 }),
          fc.tuple(fc.nat(2000), fc.option(fc.nat(2000))).map(([a, b]) => `bytes=${a}-${b ?? ''}`),
          fc.nat(3000).map((n) => `bytes=-${n}`),
        ),
        fc.nat(2000),
        (h, size) => {
          const r = parseRange(h, size);
          if (r === undefined || r === 'unsatisfiable') return;
          assert.ok(r.start >= 0 && r.start <= r.end && r.end < size, `${h} on ${size}: ${JSON.stringify(r)}`);
        },
      ),
      runs(1000),
    );
  });
});

describe('properties: configuration', () => {
  it('arbitrary values for known keys: a typed config or a ConfigError, never another failure', () => {
    const keys = [
      'port',
      'storage_path',
      'standalone',
      'token_ttl',
      'max_layer_size',
      'v2',
      'loglevel',
      'catalog_max_entries',
      'http_addr',
      'search_backend',
      'cors',
      'token_service',
    ];
    fc.assert(
      fc.property(fc.dictionary(fc.constantFrom(...keys), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 4 }), (overrides) => {
        try {
          loadConfig({ env: {}, flavor: 'test', overrides });
        } catch (e) {
          assert.ok(e instanceof ConfigError, `${String(e)} for ${JSON.stringify(overrides)}`);
        }
      }),
      runs(300),
    );
  });
});
