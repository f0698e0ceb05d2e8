import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { filesUnder } from '../helpers/files.js';
import { payloadChecksum, pushImage, tarOf, type TestImage } from '../helpers/v1-client.js';
import { pushV2Image, sha, Site, v2Image, type Creds } from '../helpers/accounts.js';
import { saveUser } from '../../src/db/users.js';

const run = promisify(execFile);
const OWNER: Creds = ['owner', 'ownerpw'];
const root = process.getuid?.() === 0;

/** An image whose layer does not compress (random bytes), of about `size` bytes. */
function bigImage(size: number): TestImage {
  const id = randomBytes(32).toString('hex');
  const json = Buffer.from(JSON.stringify({ id, created: '2015-01-01T00:00:00Z' }));
  const layer = gzipSync(tarOf({ data: randomBytes(size) }), { level: 0 });
  return { id, json, layer, payload: payloadChecksum(json, layer) };
}

/**
 * Disk full (issue 17): storage and the index database each on a small filesystem made by the test
 * (tmpfs). A push that does not fit fails with a clear error (507, never a 200), leaves nothing
 * partial visible, and once space returns the same server takes pushes again by itself.
 */
describe(
  'disk full: storage and index database on small filesystems',
  { skip: !root && !process.env.E2E_REQUIRED ? 'needs root to mount tmpfs' : false },
  () => {
    let dir: string;
    let storage: string;
    let dbDir: string;
    let s: TestServer;
    let site: Site;
    before(async () => {
      dir = await mkdtemp(join(tmpdir(), 'lr-full-'));
      storage = join(dir, 'storage');
      dbDir = join(dir, 'db');
      await mkdir(storage);
      await mkdir(dbDir);
      await run('mount', ['-t', 'tmpfs', '-o', 'size=12m', 'tmpfs', storage]);
      await run('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', dbDir]);
      s = await startTestServer(
        { bcrypt_cost: 4, storage_delete: true, sqlalchemy_index_database: `sqlite:///${join(dbDir, 'index.db')}` },
        { dataDir: storage },
      );
      site = new Site(s.url, s.url);
      await saveUser(s.db!, { username: 'owner', email: 'o@example.com', password: 'ownerpw', active: true }, { cost: 4 });
    });
    after(async () => {
      await s?.stop().catch(() => undefined);
      await run('umount', [storage]).catch(() => undefined);
      await run('umount', [dbDir]).catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
    });

    it('a v1 layer that does not fit: 507, nothing visible; after the filesystem grows the push succeeds', async () => {
      const img = bigImage(20 << 20);
      const token = await site.claim('owner/big', OWNER, [img.id]);
      const rs = await pushImage(s.url, img, token);
      assert.equal(rs[1]!.status, 200, 'the json fits');
      assert.equal(rs[2]!.status, 507, `layer: ${rs[2]!.status} ${rs[2]!.text}`);
      assert.equal(rs[2]!.text, '{"error": "Insufficient storage: the registry\'s storage is full"}');
      assert.notEqual(rs[3]!.status, 200);
      assert.deepEqual(await filesUnder(join(storage, 'blobs')), [], 'no blob was published');
      assert.deepEqual(await filesUnder(join(storage, 'uploads')), [], 'the partial upload was removed');
      const read = await site.readToken('owner/big', OWNER);
      assert.equal((await site.regGet(`/v1/images/${img.id}/layer`, read)).status, 400, 'still being uploaded: never served');
      await run('mount', ['-o', 'remount,size=64m', storage]);
      const again = await pushImage(s.url, img, token);
      assert.deepEqual(
        again.map((r) => r.status),
        [400, 200, 200, 200],
        again.map((r) => r.text).join(' '),
      );
      assert.deepEqual((await site.regGet(`/v1/images/${img.id}/layer`, await site.readToken('owner/big', OWNER))).body, img.layer);
    });

    it('a v2 blob that does not fit: 507 with a v2 error body; nothing visible; works once space returns', async () => {
      await run('mount', ['-o', 'remount,size=40m', storage]);
      const token = await site.bearer(OWNER, 'repository:owner/v2big:pull,push');
      const blob = randomBytes(48 << 20);
      const r = await site.v2(`/v2/owner/v2big/blobs/uploads/?digest=${sha(blob)}`, token, { method: 'POST', body: blob });
      assert.equal(r.status, 507, r.text);
      assert.equal(r.json<{ errors: { code: string; message: string }[] }>().errors[0]!.message, "the registry's storage is full");
      assert.equal((await site.v2(`/v2/owner/v2big/blobs/${sha(blob)}`, token)).status, 404);
      await run('mount', ['-o', 'remount,size=200m', storage]);
      const ok = await site.v2(`/v2/owner/v2big/blobs/uploads/?digest=${sha(blob)}`, token, { method: 'POST', body: blob });
      assert.equal(ok.status, 201, ok.text);
      await pushV2Image(site, 'owner/v2big', 'latest', token, v2Image('after'));
    });

    it('the index database disk full: a new repository is refused with 507, and accepted once space returns', async () => {
      // fill the database's filesystem
      await run('dd', ['if=/dev/zero', `of=${join(dbDir, 'filler')}`, 'bs=64k', 'count=100']).catch(() => undefined);
      let status = 0;
      for (let i = 0; i < 200 && status !== 507; i++) {
        const r = await site.claimRaw(`owner/many${i}`, OWNER, [randomBytes(32).toString('hex')]);
        status = r.status;
        if (status !== 200) assert.equal(status, 507, r.text);
      }
      assert.equal(status, 507, 'the index database filled up');
      await rm(join(dbDir, 'filler'));
      const r = await site.claimRaw('owner/afterfull', OWNER, [randomBytes(32).toString('hex')]);
      assert.equal(r.status, 200, r.text);
    });
  },
);
