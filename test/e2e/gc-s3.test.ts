import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { CreateBucketCommand, DeleteBucketCommand, DeleteObjectsCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { cephMissing, rgwClient, startRgw, type Rgw } from '../helpers/ceph.js';
import { request } from '../helpers/http.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { makeImage, tarOf } from '../helpers/v1-client.js';
import { assertV1Pulls, assertV2Pulls, pushV1, pushV2Chunked, type V1Pushed, type V2Pushed } from '../helpers/gc-push.js';
import { GarbageCollector, type GcResult } from '../../src/content/gc.js';
import { keys } from '../../src/content/keys.js';
import { createDriver } from '../../src/storage/drivers/index.js';
import { isNotFound, type StorageDriver } from '../../src/storage/driver.js';

const sha = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const skip = cephMissing();

async function blobExists(driver: StorageDriver, digest: string): Promise<boolean> {
  try {
    await driver.stat(keys.blob(digest.slice(7)));
    return true;
  } catch (e) {
    if (isNotFound(e)) return false;
    throw e;
  }
}

/** Garbage collection on S3 (Ceph RGW): where a move is a copy, blobs are checked again just before their delete. */
describe('legacy-registry gc on S3 (Ceph RGW)', { skip, timeout: 900_000 }, () => {
  let rgw: Rgw;
  let admin: S3Client;
  let bucket: string;
  let s: TestServer;
  let driver: StorageDriver;
  before(async () => {
    rgw = await startRgw();
    admin = rgwClient(rgw);
    bucket = rgw.uniqueBucket('gc');
    await admin.send(new CreateBucketCommand({ Bucket: bucket }));
    s = await startTestServer({
      standalone: true,
      v2: true,
      storage_delete: true,
      storage: 's3',
      storage_path: 'registry',
      s3_bucket: bucket,
      s3_endpoint: rgw.endpoint,
      s3_access_key: rgw.accessKey,
      s3_secret_key: rgw.secretKey,
    });
    // GC reads the storage itself, as the CLI does: its own driver, no metadata cache
    driver = await createDriver(s.config);
  });
  after(async () => {
    await s?.stop().catch(() => undefined);
    await driver?.close?.();
    if (admin && bucket) {
      for (;;) {
        const r = await admin.send(new ListObjectsV2Command({ Bucket: bucket }));
        const objects = (r.Contents ?? []).map((c) => ({ Key: c.Key! }));
        if (objects.length === 0) break;
        await admin.send(new DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: objects, Quiet: true } }));
      }
      await admin.send(new DeleteBucketCommand({ Bucket: bucket })).catch(() => undefined);
    }
    admin?.destroy();
    await rgw?.stop();
  });

  it('during concurrent v1 and v2 pushes loses nothing, and frees the garbage', async () => {
    const url = s.url;
    const gc = new GarbageCollector(driver);
    const v1: V1Pushed[] = [];
    const v2: V2Pushed[] = [];
    const garbage: string[] = [];
    const shared = gzipSync(tarOf({ 's3-shared.txt': 'shared on s3\n' }));
    let pushing = true;
    const results: GcResult[] = [];
    const loop = (async () => {
      while (pushing) results.push(await gc.run({ deleteUntagged: true, graceMs: 5000, settleMs: 300 }));
    })();
    try {
      await Promise.all(
        [0, 1].map(async (w) => {
          for (let i = 0; i < 3; i++) {
            const base = makeImage();
            v1.push(await pushV1(url, `s3gc/v1w${w}`, `t${i}`, [base, makeImage(base.id)]));
            v2.push(await pushV2Chunked(url, `s3gc/v2w${w}`, `t${i}`, `s3w${w}i${i}`, shared));
            const g = await pushV2Chunked(url, `s3gc/garbage${w}x${i}`, 'x', `s3g${w}${i}`, shared);
            assert.equal((await request(url, `/v1/repositories/s3gc/garbage${w}x${i}/`, { method: 'DELETE' })).status, 200);
            garbage.push(...g.blobs.filter((b) => b !== shared).map(sha), g.digest);
            await pushV2Chunked(url, `s3gc/again${w}`, `t${i}`, `s3again${w}`, shared);
          }
        }),
      );
    } finally {
      pushing = false;
      await loop;
    }
    assert.ok(results.length >= 1, `gc ran ${results.length} times during the pushes`);
    for (const p of v1) await assertV1Pulls(url, p);
    for (const p of v2) await assertV2Pulls(url, p);
    await new Promise((r) => setTimeout(r, 6600)); // past the grace period + the sweep cutoff's 1 s slack (longer than a push's blobs-to-manifest time on RGW) and the metadata cache
    await gc.run({ deleteUntagged: true, graceMs: 5000, settleMs: 100 });
    for (const d of garbage) assert.ok(!(await blobExists(driver, d)), `${d} freed`);
    assert.ok(await blobExists(driver, sha(shared)), 'the shared layer stays');
    for (const p of v1) await assertV1Pulls(url, p);
    for (const p of v2) await assertV2Pulls(url, p);
  });
});
