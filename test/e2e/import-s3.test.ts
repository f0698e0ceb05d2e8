import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, readFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { CreateBucketCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { request } from '../helpers/http.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { pyImage, sha256, writePythonTree } from '../helpers/python-tree.js';
import { cephMissing, startRgw, type Rgw } from '../helpers/ceph.js';
import { cli, skopeo, toolsMissing } from '../helpers/migrate.js';

async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await filesUnder(p)));
    else out.push(p);
  }
  return out;
}

/** A Python docker-registry tree kept in an S3 bucket (its s3 storage, under storage_path), imported from s3://. */
describe('legacy-registry import s3://bucket/prefix (Python tree on Ceph RGW)', { skip: cephMissing() ?? toolsMissing(), timeout: 600_000 }, () => {
  let rgw: Rgw;
  let s: TestServer;
  let work: string;

  before(async () => {
    rgw = await startRgw();
    s = await startTestServer({ v2: true, bcrypt_cost: 4 });
    work = await mkdtemp(join(tmpdir(), 'lr-import-s3-'));
    assert.equal((await request(s.url, '/v1/users/', { method: 'POST', body: JSON.stringify({ username: 'alice', password: 'alicepw', email: 'alice@example.com' }) })).status, 201);
  });
  after(async () => {
    await s?.stop();
    await rgw?.stop();
    await rm(work, { recursive: true, force: true });
  });

  it('imports every image and tag, verified, and skopeo pulls the layers back byte-identical', async () => {
    const base = pyImage({ gzip: false });
    const top = pyImage({ gzip: true, parent: base.id, size: 100_000 });
    const bad = pyImage({ gzip: true, parent: base.id, size: 4000 });
    const tree = join(work, 'tree');
    await writePythonTree(tree, [base, top, bad], [{ name: 'alice/web', tags: { latest: top.id, broken: bad.id } }], { corrupt: new Set([bad.id]) });
    const bucket = rgw.uniqueBucket('pyreg');
    const client = new S3Client({ endpoint: rgw.endpoint, region: rgw.region, forcePathStyle: true, credentials: { accessKeyId: rgw.accessKey, secretAccessKey: rgw.secretKey } });
    try {
      await client.send(new CreateBucketCommand({ Bucket: bucket }));
      for (const f of await filesUnder(tree)) {
        await client.send(new PutObjectCommand({ Bucket: bucket, Key: `registry/${relative(tree, f)}`, Body: await readFile(f) }));
      }
    } finally {
      client.destroy();
    }
    const reportFile = join(work, 'report.json');
    const r = await cli(s.dataDir, ['import', '--owner', 'alice', '--s3-endpoint', rgw.endpoint, '--report', reportFile, `s3://${bucket}/registry`], {
      AWS_ACCESS_KEY_ID: rgw.accessKey,
      AWS_SECRET_ACCESS_KEY: rgw.secretKey,
      AWS_REGION: rgw.region,
    });
    assert.equal(r.code, 3, r.stdout + r.stderr);
    const report = JSON.parse(await readFile(reportFile, 'utf8')) as { tags: number; images: { imported: number }; skipped: { what: string; reason: string }[] };
    assert.equal(report.tags, 1);
    assert.equal(report.images.imported, 2);
    assert.deepEqual(report.skipped.map((x) => x.what), ['alice/web:broken']);
    const host = new URL(s.url).host;
    await skopeo(work, 'copy', '--src-tls-verify=false', `docker://${host}/alice/web:latest`, `dir:${join(work, 'out')}`);
    for (const img of [base, top]) assert.ok((await readFile(join(work, 'out', sha256(img.layer).slice(7)))).equals(img.layer));
  });
});
