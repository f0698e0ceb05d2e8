import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Writable } from 'node:stream';
import { globMatcher, nameFilter } from '../../../src/migrate/import.js';
import { recordedChecksums, unquotePlus, verifyRecorded } from '../../../src/migrate/import-python.js';
import { DigestMismatchError, ExpectSha256 } from '../../../src/migrate/import-distribution.js';
import { parseChallenge } from '../../../src/migrate/registry-client.js';
import type { LayerLink } from '../../../src/content/v1-images.js';

const link = (over: Partial<LayerLink> = {}): LayerLink => ({
  digest: 'sha256:' + 'a'.repeat(64),
  size: 10,
  payload: 'sha256:' + 'b'.repeat(64),
  compression: 'gzip',
  tarsum: { v0: 'tarsum+sha256:' + 'c'.repeat(64), v0Plain: 'tarsum+sha256:' + 'c'.repeat(64), v1: 'tarsum.v1+sha256:' + 'd'.repeat(64), dev: 'tarsum.dev+sha256:' + 'd'.repeat(64) },
  ...over,
});

describe('migrate helpers', () => {
  it('reads _checksum in both forms (JSON list, older bare string), nothing from empty or absent', () => {
    assert.deepEqual(recordedChecksums(Buffer.from('["sha256:x", "tarsum+sha256:y"]')), ['sha256:x', 'tarsum+sha256:y']);
    assert.deepEqual(recordedChecksums(Buffer.from('sha256:abc')), ['sha256:abc']);
    assert.deepEqual(recordedChecksums(Buffer.from('"tarsum+sha256:abc"')), ['tarsum+sha256:abc']);
    assert.deepEqual(recordedChecksums(Buffer.from(' ')), []);
    assert.deepEqual(recordedChecksums(undefined), []);
  });

  it('verifies a layer against what was recorded: every payload must match; a tarsum decides only without a payload', () => {
    const l = link();
    assert.deepEqual(verifyRecorded([l.payload], l), {});
    assert.match(verifyRecorded(['sha256:' + 'e'.repeat(64)], l).bad!, /payload checksum/);
    assert.match(verifyRecorded([l.payload, 'sha256:' + 'e'.repeat(64)], l).bad!, /payload checksum/);
    assert.deepEqual(verifyRecorded([l.tarsum!.v0], l), { tarsum: l.tarsum!.v0 });
    assert.match(verifyRecorded(['tarsum+sha256:' + 'f'.repeat(64)], l).bad!, /tarsum/);
    // Python's tarsum may differ from Go's on odd archives: the payload covers the exact bytes
    assert.deepEqual(verifyRecorded([l.payload, 'tarsum+sha256:' + 'f'.repeat(64)], l), {});
    assert.deepEqual(verifyRecorded([], l), {});
  });

  it('undoes quote_plus', () => {
    assert.equal(unquotePlus('my%2Erepo'), 'my.repo');
    assert.equal(unquotePlus('a+b'), 'a b');
    assert.equal(unquotePlus('bad%zz'), 'bad%zz');
  });

  it('matches repository globs; --namespace and --repo must both pass', () => {
    const g = globMatcher(['alice/*', 'lib/**'])!;
    assert.ok(g('alice/web'));
    assert.ok(!g('alice/web/sub'));
    assert.ok(g('lib/a/b'));
    assert.ok(!g('bob/web'));
    assert.ok(!globMatcher(['a.b'])!('axb'), 'a dot is a dot');
    const f = nameFilter(['alice'], ['*/tool'])!;
    assert.ok(f('alice/tool'));
    assert.ok(!f('alice/web'));
    assert.ok(!f('bob/tool'));
    assert.equal(nameFilter([], []), undefined);
  });

  it('parses auth challenges (quoted values with commas, several parameters)', () => {
    assert.deepEqual(parseChallenge('Bearer realm="https://auth.example/token",service="reg,1",scope="repository:a/b:pull,push"'), {
      scheme: 'bearer',
      params: { realm: 'https://auth.example/token', service: 'reg,1', scope: 'repository:a/b:pull,push' },
    });
    assert.deepEqual(parseChallenge('Basic realm="x"'), { scheme: 'basic', params: { realm: 'x' } });
    assert.equal(parseChallenge(undefined), undefined);
  });

  it('a blob whose bytes do not hash to their digest fails the stream before anything is published', async () => {
    const sink = () => new Writable({ write: (_c, _e, cb) => cb() });
    const good = new ExpectSha256('sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824');
    await pipeline(Readable.from([Buffer.from('hel'), Buffer.from('lo')]), good, sink());
    assert.equal(good.sha256(), 'sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824');
    await assert.rejects(pipeline(Readable.from([Buffer.from('hellO')]), new ExpectSha256('sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824'), sink()), DigestMismatchError);
  });
});
