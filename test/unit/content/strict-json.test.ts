import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { FieldNames, goFold, MANIFEST_FIELDS, parseStrict, scanJson, StrictJsonError } from '../../../src/content/strict-json.js';

const b = (s: string): Buffer => Buffer.from(s, 'utf8');
const manifest = { fields: MANIFEST_FIELDS };

function refuses(text: string, message: RegExp, opts: Parameters<typeof scanJson>[1] = {}): void {
  assert.throws(
    () => scanJson(b(text), opts),
    (e: unknown) => e instanceof StrictJsonError && message.test(e.message),
    text.slice(0, 200),
  );
}

describe('strict JSON scanner: duplicate keys', () => {
  it('refuses a duplicate key in any object, at any depth', () => {
    refuses('{"a":1,"a":2}', /duplicate key "a"/);
    refuses('{"x":[{"b":1},{"c":{"d":1,"e":2,"d":3}}]}', /duplicate key "d"/);
    refuses('[{"a":1,"a":1}]', /duplicate key "a"/);
  });
  it('compares keys after unescaping: "\\u006cayers" is "layers", "\\/" is "/"', () => {
    refuses('{"layers":[],"\\u006cayers":[]}', /duplicate key "layers"/);
    refuses('{"a/b":1,"a\\/b":2}', /duplicate key "a\/b"/);
    refuses('{"\\ud83d\\ude00":1,"😀":2}', /duplicate key/);
  });
  it('tells apart keys that only look alike', () => {
    assert.doesNotThrow(() => scanJson(b('{"a":1,"a ":2,"A":3,"\\u0061\\u0000":4}')));
  });
  it('allows the same key in sibling and nested objects', () => {
    assert.doesNotThrow(() => scanJson(b('{"a":{"a":{"a":1}},"b":[{"a":1},{"a":2}]}')));
  });
  it('is not fooled by quotes, braces and backslashes inside strings', () => {
    assert.doesNotThrow(() => scanJson(b('{"a":"}{\\"a\\":1,\\"a\\":2","b":"\\\\","c":"[[[[","d":"\\\\\\""}')));
    refuses('{"k":"\\\\","k":1}', /duplicate key "k"/);
    // an escaped quote does not end the string: the second "a" is inside it
    assert.doesNotThrow(() => scanJson(b('{"a":"x\\",\\"a\\":\\"y"}')));
  });
  it('annotations are free-form for the case rule but still may not repeat a key', () => {
    assert.doesNotThrow(() => scanJson(b('{"annotations":{"Layers":"x","MediaType":"y","SIZE":"z"}}'), manifest));
    refuses('{"annotations":{"k":"x","k":"y"}}', /duplicate key "k"/, manifest);
  });
});

describe('strict JSON scanner: Go case folding of manifest field names', () => {
  it('folds as Go does: ASCII case, U+212A (Kelvin) as k, U+017F (long s) as s', () => {
    assert.equal(goFold('MediaType'), 'mediatype');
    assert.equal(goFold('\u212Aey\u017f'), 'keys');
    assert.equal(goFold('ÄÖ'), 'ÄÖ');
    assert.equal(MANIFEST_FIELDS.variantOf('layer\u017f'), 'layers');
    assert.equal(MANIFEST_FIELDS.variantOf('layers'), undefined);
    assert.equal(MANIFEST_FIELDS.variantOf('OS.Version'), 'os.version');
    assert.equal(MANIFEST_FIELDS.variantOf('unknownField'), undefined);
  });
  it('refuses Layers beside layers, only Layers, MediaType, and nested variants', () => {
    refuses('{"layers":[],"Layers":[]}', /"Layers" is a case variant of the field "layers"/, manifest);
    refuses('{"Layers":[]}', /"Layers"/, manifest);
    refuses('{"MediaType":"x"}', /"MediaType"/, manifest);
    refuses('{"config":{"DIGEST":"x"}}', /"DIGEST"/, manifest);
    refuses('{"manifests":[{"platform":{"OS":"linux"}}]}', /"OS"/, manifest);
    refuses('{"signatures":[{"Header":{}}]}', /"Header"/, manifest);
    refuses('{"\\u004cayers":[]}', /"Layers"/, manifest);
    refuses('{"\\u212Aey":1,"\\u017fize":1}', /"ſize" is a case variant of the field "size"/, manifest);
  });
  it('leaves the keys of a JWK alone and applies nothing without field names', () => {
    assert.doesNotThrow(() => scanJson(b('{"signatures":[{"header":{"jwk":{"Alg":"x","KTY":"EC"}}}]}'), manifest));
    assert.doesNotThrow(() => scanJson(b('{"Layers":[],"MediaType":1}')));
  });
  it('takes any list of field names', () => {
    const f = new FieldNames(['Env'], []);
    refuses('{"ENV":1}', /"ENV" is a case variant of the field "Env"/, { fields: f });
    assert.doesNotThrow(() => scanJson(b('{"Env":1,"env2":2}'), { fields: f }));
  });
});

describe('strict JSON scanner: limits and syntax', () => {
  it('checks the nesting depth (default 64, the outermost counting 1)', () => {
    assert.doesNotThrow(() => scanJson(b(`${'['.repeat(64)}${']'.repeat(64)}`)));
    refuses(`${'['.repeat(65)}${']'.repeat(65)}`, /nested deeper than 64 levels/);
    refuses(`{"a":${'{"a":'.repeat(10)}1${'}'.repeat(10)}}`, /nested deeper than 5 levels/, { maxDepth: 5 });
    // a very deep document fails at the limit without recursion
    refuses('['.repeat(1_000_000), /nested deeper than 64 levels/);
  });
  it('checks the total size', () => {
    refuses(`"${'x'.repeat(100)}"`, /larger than 50 bytes/, { maxBytes: 50 });
    assert.doesNotThrow(() => scanJson(b(`"${'x'.repeat(48)}"`), { maxBytes: 50 }));
  });
  it('refuses broken structure: trailing commas, missing colons, unterminated strings, data after the document', () => {
    for (const bad of ['{"a":1,}', '[1,]', '{"a" 1}', '{"a":1', '["abc', '{"a":1}x', '{}{}', '{1:2}', '', '   ', '{"a":1]', '[1}', '\ufeff{}']) {
      assert.throws(() => scanJson(b(bad)), StrictJsonError, JSON.stringify(bad));
    }
  });
  it('hands literals to JSON.parse (parseStrict) for the final word', () => {
    assert.throws(() => parseStrict(b('[tru]')), StrictJsonError);
    assert.deepEqual(parseStrict(b(' {"a":[1,-2.5e3,true,false,null,"\\u00e9"]} ')), { a: [1, -2500, true, false, null, 'é'] });
  });
  it('reports the top-level members with byte offsets (multi-byte text before them)', () => {
    const text = '{ "é" : "ü" , "b":[1,{"c":2}] ,"s":{}}';
    const buf = b(text);
    const members = scanJson(buf);
    assert.deepEqual(
      members.map((m) => m.key),
      ['é', 'b', 's'],
    );
    assert.deepEqual(
      members.map((m) => buf.toString('utf8', m.valueStart, m.valueEnd)),
      ['"ü"', '[1,{"c":2}]', '{}'],
    );
    assert.deepEqual(
      members.map((m) => buf.toString('utf8', m.keyStart, m.keyStart + 1)),
      ['"', '"', '"'],
    );
    assert.deepEqual(scanJson(b('[{"a":1}]')), []);
  });
  it('reads a 4 MiB manifest in one pass (a few ms; see the commit for figures)', () => {
    const layer = (i: number): string =>
      `{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:${i.toString(16).padStart(64, '0')}","size":${i},"annotations":{"org.example.k${i}":"v<&>\\"${i}"}}`;
    const parts: string[] = [];
    let size = 100;
    for (let i = 0; size < 4 * 1024 * 1024 - 300; i++) {
      const l = layer(i);
      parts.push(l);
      size += l.length + 1;
    }
    const buf = b(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","layers":[${parts.join(',')}]}`);
    assert.ok(buf.length <= 4 * 1024 * 1024);
    assert.deepEqual(
      scanJson(buf, manifest).map((m) => m.key),
      ['schemaVersion', 'mediaType', 'layers'],
    );
  });
});
