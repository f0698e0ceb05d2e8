import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createSwiftDriver, swiftOptions } from '../../src/storage/drivers/swift.js';
import { cephMissing, startRgw, type Rgw } from '../helpers/ceph.js';
import { runDriverConformance, readAll, sha256 } from './conformance.js';

const skip = cephMissing();
let rgw: Rgw | undefined;

/** A Swift session for the test's own container operations. */
async function swiftAuth(): Promise<{ url: string; token: string }> {
  const r = await fetch(rgw!.swiftAuthUrl, { headers: { 'X-Auth-User': rgw!.swiftUser, 'X-Auth-Key': rgw!.swiftKey } });
  return { url: r.headers.get('x-storage-url')!, token: r.headers.get('x-auth-token')! };
}
async function freshContainer(): Promise<string> {
  const name = rgw!.uniqueBucket('sw');
  const { url, token } = await swiftAuth();
  const r = await fetch(`${url}/${name}`, { method: 'PUT', headers: { 'X-Auth-Token': token } });
  assert.ok(r.status === 201 || r.status === 202, `container PUT ${r.status}`);
  return name;
}
async function listAll(container: string): Promise<string[]> {
  const { url, token } = await swiftAuth();
  const r = await fetch(`${url}/${container}?format=json`, { headers: { 'X-Auth-Token': token } });
  if (r.status === 204) return [];
  return ((await r.json()) as { name: string }[]).map((e) => e.name);
}
async function dropContainer(container: string): Promise<void> {
  const { url, token } = await swiftAuth();
  for (const name of await listAll(container)) await fetch(`${url}/${container}/${name}`, { method: 'DELETE', headers: { 'X-Auth-Token': token } });
  await fetch(`${url}/${container}`, { method: 'DELETE', headers: { 'X-Auth-Token': token } });
}
const MiB = 1024 * 1024;
const make = (container: string, segmentSize = MiB) =>
  createSwiftDriver({ authUrl: rgw!.swiftAuthUrl, user: rgw!.swiftUser, key: rgw!.swiftKey, container, prefix: 'registry', segmentSize });

describe('swift driver on Ceph RGW (Swift API, auth v1)', { skip, timeout: 600_000 }, () => {
  before(async () => {
    rgw = await startRgw();
  });
  after(async () => {
    await rgw?.stop();
  });

  // 1 MiB segments: the suite's writers of 3–20 MiB become Static Large Objects
  runDriverConformance('swift (Ceph RGW)', async () => {
    const container = await freshContainer();
    return { driver: make(container), cleanup: () => dropContainer(container) };
  });

  it('stores a large writer as segments + manifest, moves it by manifest, and the purge removes replaced segments', async () => {
    const container = await freshContainer();
    const d = make(container);
    try {
      const data = randomBytes(5 * MiB + 3);
      const w = await d.writer('up/data');
      await pipeline(Readable.from([data]), w.stream);
      await w.commit();
      const names = await listAll(container);
      assert.equal(names.filter((n) => n.startsWith('registry/~lr/segments/')).length, 6, 'six 1 MiB segments');
      assert.deepEqual(
        names.filter((n) => n.startsWith('registry/~lr/pending/')),
        [],
        'committed: no marker',
      );
      await d.move('up/data', 'blob/data');
      assert.equal(sha256(await readAll(await d.reader('blob/data'))), sha256(data));
      const part = await readAll(await d.reader('blob/data', MiB - 2, 4));
      assert.ok(part.equals(data.subarray(MiB - 2, MiB + 2)), 'a range across segments');
      // replaced: its segments are marked, and purged once old enough
      await d.putContent('blob/data', Buffer.from('small'));
      await d.delete('blob/data').catch(() => undefined);
      assert.equal(await d.purgeAbandonedWrites(60_000), 0, 'not old enough');
      assert.ok((await d.purgeAbandonedWrites(0)) >= 1);
      assert.deepEqual(
        (await listAll(container)).filter((n) => n.includes('~lr/segments/')),
        [],
      );
      assert.deepEqual(await d.list(''), []);
    } finally {
      await d.close();
      await dropContainer(container);
    }
  });

  it('putContentIfAbsent: of concurrent creates of one key exactly one wins; an existing key is left alone', async () => {
    const container = await freshContainer();
    const d = make(container);
    try {
      for (let round = 0; round < 3; round++) {
        const results = await Promise.all(Array.from({ length: 6 }, (_, i) => d.putContentIfAbsent(`locks/l${round}`, Buffer.from(`owner-${i}`))));
        assert.equal(results.filter(Boolean).length, 1, `round ${round}`);
        assert.equal((await d.getContent(`locks/l${round}`)).toString(), `owner-${results.indexOf(true)}`);
      }
      assert.equal(await d.putContentIfAbsent('locks/l0', Buffer.from('late')), false);
      assert.deepEqual(await d.list(''), ['locks'], 'tickets are gone and hidden');
    } finally {
      await d.close();
      await dropContainer(container);
    }
  });

  it("reads the Python registry's swift_* keys", () => {
    const o = swiftOptions({
      storage_path: '/registry',
      swift_authurl: 'http://h/auth/v1.0',
      swift_container: 'c',
      swift_user: 'u',
      swift_password: 'p',
      swift_tenant_name: 't',
    });
    assert.equal(o.user, 'u');
    assert.equal(o.tenant, 't'); // auth v1 logs in as t:u
    assert.equal(o.authVersion, 1);
    assert.equal(o.prefix, 'registry');
    // Keystone: the version from the URL (as ncw/swift), else the Python registry's default, 2
    const base = { storage_path: '/r', swift_container: 'c', swift_user: 'u', swift_password: 'p' };
    assert.equal(swiftOptions({ ...base, swift_authurl: 'http://h/v3' }).authVersion, 3);
    assert.equal(swiftOptions({ ...base, swift_authurl: 'https://identity.example/v2.0/' }).authVersion, 2);
    assert.equal(swiftOptions({ ...base, swift_authurl: 'https://identity.example/' }).authVersion, 2);
    assert.equal(swiftOptions({ ...base, swift_authurl: 'https://identity.example/v3', swift_auth_version: 2 }).authVersion, 2);
    assert.equal(swiftOptions({ ...base, swift_authurl: 'http://h/v3', swift_endpoint_type: 'internalURL' }).endpointType, 'internal');
    assert.throws(() => swiftOptions({ ...base, swift_authurl: 'http://h/v3', swift_endpoint_type: 'private' }), /public, internal or admin/);
    assert.throws(() => swiftOptions({ ...base, swift_authurl: 'ftp://h/v3' }), /not an http\(s\) URL/);
  });
});
