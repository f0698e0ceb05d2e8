import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import {
  CreateBucketCommand,
  DeleteBucketCommand,
  DeleteObjectsCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { createS3Driver } from '../../src/storage/drivers/s3.js';
import { cephMissing, rgwClient, startRgw, type Rgw } from '../helpers/ceph.js';
import { runDriverConformance } from './conformance.js';

const skip = cephMissing();

let rgw: Rgw | undefined;
let admin: S3Client | undefined;

/** An empty bucket of its own for each test; emptied and removed afterwards. */
async function freshBucket(): Promise<string> {
  const bucket = rgw!.uniqueBucket('s3c');
  await admin!.send(new CreateBucketCommand({ Bucket: bucket }));
  return bucket;
}
async function dropBucket(bucket: string): Promise<void> {
  for (;;) {
    const r = await admin!.send(new ListObjectsV2Command({ Bucket: bucket }));
    const keys = (r.Contents ?? []).map((c) => ({ Key: c.Key! }));
    if (keys.length === 0) break;
    await admin!.send(new DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: keys, Quiet: true } }));
  }
  await admin!.send(new DeleteBucketCommand({ Bucket: bucket })).catch(() => undefined);
}

describe('s3 driver on Ceph RGW', { skip, timeout: 600_000 }, () => {
  before(async () => {
    rgw = await startRgw();
    admin = rgwClient(rgw);
  });
  after(async () => {
    admin?.destroy();
    await rgw?.stop();
  });

  // A root directory, as users configure it, so that the prefix handling is part of every test.
  runDriverConformance('s3 (Ceph RGW)', async () => {
    const bucket = await freshBucket();
    const driver = createS3Driver({
      bucket,
      endpoint: rgw!.endpoint,
      region: rgw!.region,
      accessKeyId: rgw!.accessKey,
      secretAccessKey: rgw!.secretKey,
      rootDirectory: '/registry/root/',
      partSize: 5 * 1024 * 1024,
    });
    return { driver, cleanup: () => dropBucket(bucket) };
  });

  it('keeps to its root directory, hides its move locks, and aborts abandoned multipart uploads', async () => {
    const bucket = await freshBucket();
    const d = createS3Driver({
      bucket,
      endpoint: rgw!.endpoint,
      accessKeyId: rgw!.accessKey,
      secretAccessKey: rgw!.secretKey,
      rootDirectory: 'reg',
      partSize: 5 * 1024 * 1024,
    });
    try {
      await admin!.send(new PutObjectCommand({ Bucket: bucket, Key: 'outside', Body: 'x' }));
      await d.putContent('a/b', Buffer.from('1'));
      await d.move('a/b', 'a/c');
      assert.deepEqual(await d.list(''), ['a']);
      const keys = (await admin!.send(new ListObjectsV2Command({ Bucket: bucket }))).Contents!.map((c) => c.Key);
      assert.deepEqual(keys, ['outside', 'reg/a/c'], 'the move lock is gone, nothing outside the root was touched');
      // a writer that never commits (a killed node): a multipart upload nobody sees
      const w = await d.writer('up/data');
      w.stream.write(randomBytes(6 * 1024 * 1024));
      await new Promise((r) => setTimeout(r, 1500));
      assert.equal((await admin!.send(new ListMultipartUploadsCommand({ Bucket: bucket }))).Uploads?.length, 1);
      await assert.rejects(d.stat('up/data'));
      assert.equal(await d.purgeAbandonedWrites(60_000), 0, 'too young');
      assert.equal(await d.purgeAbandonedWrites(0), 1);
      assert.equal((await admin!.send(new ListMultipartUploadsCommand({ Bucket: bucket }))).Uploads?.length ?? 0, 0);
    } finally {
      await d.close();
      await dropBucket(bucket);
    }
  });

  it('putContentIfAbsent: of concurrent creates of one key exactly one wins; an existing key is left alone', async () => {
    const bucket = await freshBucket();
    const d = createS3Driver({ bucket, endpoint: rgw!.endpoint, accessKeyId: rgw!.accessKey, secretAccessKey: rgw!.secretKey, rootDirectory: 'reg' });
    try {
      for (let round = 0; round < 5; round++) {
        const results = await Promise.all(Array.from({ length: 8 }, (_, i) => d.putContentIfAbsent(`locks/l${round}`, Buffer.from(`owner-${i}`))));
        assert.equal(results.filter(Boolean).length, 1, `round ${round}`);
        const winner = results.indexOf(true);
        assert.equal((await d.getContent(`locks/l${round}`)).toString(), `owner-${winner}`);
      }
      assert.equal(await d.putContentIfAbsent('locks/l0', Buffer.from('late')), false);
      assert.equal((await d.getContent('locks/l0')).toString().startsWith('owner-'), true);
    } finally {
      await d.close();
      await dropBucket(bucket);
    }
  });

  it('a writer of 64 MiB holds at most two parts in memory', async () => {
    const bucket = await freshBucket();
    const d = createS3Driver({ bucket, endpoint: rgw!.endpoint, accessKeyId: rgw!.accessKey, secretAccessKey: rgw!.secretKey, partSize: 5 * 1024 * 1024 });
    try {
      const chunk = randomBytes(1024 * 1024);
      // live buffers only: collect garbage before each sample
      setFlagsFromString('--expose_gc');
      const gc = runInNewContext('gc') as () => void;
      gc();
      const base = process.memoryUsage().arrayBuffers;
      let peak = 0;
      const w = await d.writer('big');
      for (let i = 0; i < 64; i++) {
        if (!w.stream.write(chunk)) await new Promise((r) => w.stream.once('drain', r));
        gc();
        peak = Math.max(peak, process.memoryUsage().arrayBuffers - base);
      }
      await w.commit();
      assert.equal((await d.stat('big')).size, 64 * 1024 * 1024);
      // two 5 MiB parts, the 1 MiB stream buffer and the chunk being concatenated; far below 64 MiB
      assert.ok(peak < 24 * 1024 * 1024, `peak ${peak} bytes`);
    } finally {
      await d.close();
      await dropBucket(bucket);
    }
  });

  it('answers the same on its own requests and bare GETs as with every call on the SDK; errors mapped on both', async () => {
    const bucket = await freshBucket();
    const base = { bucket, endpoint: rgw!.endpoint, region: rgw!.region, accessKeyId: rgw!.accessKey, secretAccessKey: rgw!.secretKey, rootDirectory: 'm' };
    const own = createS3Driver(base);
    const sdk = createS3Driver({ ...base, sdkOnly: true });
    try {
      const blob = randomBytes(3 * 1024 * 1024 + 12345);
      await own.putContent('x/blob', blob);
      for (const d of [own, sdk]) {
        assert.deepEqual(await d.getContent('x/blob'), blob);
        assert.equal((await d.stat('x/blob')).size, blob.length);
        // ranges starting and ending inside the 1 MiB pieces the bare GET hands on, and past the end
        const ranges: Array<[number, number | undefined]> = [
          [0, undefined],
          [1, 2 * 1024 * 1024],
          [1024 * 1024 - 1, 3],
          [blob.length - 5, 100],
        ];
        for (const [off, len] of ranges) {
          const got = Buffer.concat((await (await d.reader('x/blob', off, len)).toArray()) as Buffer[]);
          assert.ok(got.equals(blob.subarray(off, len === undefined ? undefined : off + len)), `range ${off}+${len}`);
        }
        await assert.rejects(d.getContent('x/none'), { name: 'PathNotFoundError' });
        await assert.rejects(d.reader('x/none'), { name: 'PathNotFoundError' });
        await assert.rejects(d.stat('x/none'), { name: 'PathNotFoundError' });
        await assert.rejects(d.move('x/none', 'x/other'), { name: 'PathNotFoundError' });
      }
      await sdk.move('x/blob', 'x/moved');
      assert.ok((await own.getContent('x/moved')).equals(blob));
      await own.move('x/moved', 'x/blob');
      await sdk.delete('x/blob');
      await assert.rejects(own.stat('x/blob'), { name: 'PathNotFoundError' });
      // refused credentials, an endpoint nobody listens on: unavailable (503), never "not found"
      for (const sdkOnly of [false, true]) {
        const wrong = createS3Driver({ ...base, secretAccessKey: 'wrong', sdkOnly });
        await assert.rejects(wrong.getContent('x/y'), { name: 'StorageUnavailableError' });
        await assert.rejects(wrong.reader('x/y'), { name: 'StorageUnavailableError' });
        await assert.rejects(wrong.putContent('x/y', Buffer.from('1')), { name: 'StorageUnavailableError' });
        await wrong.close();
        const gone = createS3Driver({ ...base, endpoint: 'http://127.0.0.1:9', sdkOnly });
        await assert.rejects(gone.reader('x/y'), { name: 'StorageUnavailableError' });
        await assert.rejects(gone.stat('x/y'), { name: 'StorageUnavailableError' });
        await gone.close();
      }
    } finally {
      await own.close();
      await sdk.close();
      await dropBucket(bucket);
    }
  });
});
