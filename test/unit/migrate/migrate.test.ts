import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Writable } from 'node:stream';
import { globMatcher, nameFilter } from '../../../src/migrate/import.js';
import { needsTarsums, recordedChecksums, unquotePlus, verifyRecorded } from '../../../src/migrate/import-python.js';
import { sanitizeTagMetadata } from '../../../src/content/v1-repositories.js';
import { DigestMismatchError, ExpectSha256 } from '../../../src/migrate/import-distribution.js';
import { parseChallenge } from '../../../src/migrate/registry-client.js';
import type { LayerLink } from '../../../src/content/v1-images.js';

const link = (over: Partial<LayerLink> = {}): LayerLink => ({
  digest: 'sha256:' + 'a'.repeat(64),
  size: 10,
  payload: 'sha256:' + 'b'.repeat(64),
  compression: 'gzip',
  tarsum: {
    v0: 'tarsum+sha256:' + 'c'.repeat(64),
    v0Plain: 'tarsum+sha256:' + 'c'.repeat(64),
    v1: 'tarsum.v1+sha256:' + 'd'.repeat(64),
    dev: 'tarsum.dev+sha256:' + 'd'.repeat(64),
  },
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

  it('a checksum in a form the Python registry never wrote vouches for nothing: refused unless a payload or tarsum verified', () => {
    const l = link();
    for (const odd of ['md5:' + 'a'.repeat(32), 'sha512:' + 'b'.repeat(128), 'tarsum.v9+sha256:' + 'c'.repeat(64), 'tarsumsha256:x', 'garbage']) {
      assert.match(verifyRecorded([odd], l).bad ?? '', /form the Python registry never wrote/, odd);
      assert.equal(needsTarsums([odd]), false, odd);
      // beside a payload or tarsum that verified, it changes nothing
      assert.deepEqual(verifyRecorded([l.payload, odd], l), {}, odd);
      assert.deepEqual(verifyRecorded([l.tarsum!.v0, odd], l), { tarsum: l.tarsum!.v0 }, odd);
    }
  });

  it('computes tarsums only when a recorded tarsum is all there is to check; one that cannot be computed is no match', () => {
    assert.equal(needsTarsums(['sha256:x']), false);
    assert.equal(needsTarsums(['sha256:x', 'tarsum+sha256:y']), false);
    assert.equal(needsTarsums([]), false);
    assert.equal(needsTarsums(['tarsum+sha256:y']), true);
    assert.equal(needsTarsums(['tarsum.dev+sha256:y']), true);
    const noTar = link({ tarsum: undefined, compression: 'xz' });
    assert.match(verifyRecorded(['tarsum+sha256:' + 'c'.repeat(64)], noTar).bad!, /not a tar archive/);
    assert.deepEqual(verifyRecorded([noTar.payload], noTar), {});
  });

  it('keeps the tag metadata fields R13 writes, of the right types and sizes', () => {
    assert.deepEqual(
      sanitizeTagMetadata(Buffer.from('{"last_update":1400000000,"docker_version":"1.3.2","os":"linux","arch":"amd64","kernel":null,"evil":{"a":1}}')),
      {
        last_update: 1400000000,
        docker_version: '1.3.2',
        os: 'linux',
        arch: 'amd64',
        kernel: null,
      },
    );
    assert.deepEqual(sanitizeTagMetadata(Buffer.from(`{"last_update":"soon","docker_version":"${'x'.repeat(300)}","os":7}`)), {});
    assert.equal(sanitizeTagMetadata(Buffer.from('[1]')), undefined);
    assert.equal(sanitizeTagMetadata(Buffer.from('not json')), undefined);
    assert.equal(sanitizeTagMetadata(Buffer.from('null')), undefined);
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
    await assert.rejects(
      pipeline(Readable.from([Buffer.from('hellO')]), new ExpectSha256('sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824'), sink()),
      DigestMismatchError,
    );
  });
});
