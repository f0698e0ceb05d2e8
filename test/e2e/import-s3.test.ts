import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, readFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { CreateBucketCommand, ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import { request } from '../helpers/http.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { pyImage, sha256, writePythonTree } from '../helpers/python-tree.js';
import { cephMissing, rgwClient, startRgw, type Rgw } from '../helpers/ceph.js';
import { cli, skopeo, startDistribution, toolsMissing } from '../helpers/migrate.js';
import { writeOciLayout } from '../helpers/oci-layout.js';

async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await filesUnder(p)));
    else out.push(p);
  }
  return out;
}

/**
 * A Python docker-registry tree kept in an S3 bucket (its s3 storage, under storage_path), and a
 * tree distribution 2.8.2 wrote with its s3 driver, imported from s3://.
 */
describe(
  'legacy-registry import s3://bucket/prefix (Python tree and distribution tree on Ceph RGW)',
  { skip: cephMissing() ?? toolsMissing(), timeout: 600_000 },
  () => {
    let rgw: Rgw;
    let s: TestServer;
    let work: string;

    before(async () => {
      rgw = await startRgw();
      s = await startTestServer({ v2: true, bcrypt_cost: 4 });
      work = await mkdtemp(join(tmpdir(), 'lr-import-s3-'));
      assert.equal(
        (await request(s.url, '/v1/users/', { method: 'POST', body: JSON.stringify({ username: 'alice', password: 'alicepw', email: 'alice@example.com' }) }))
          .status,
        201,
      );
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
      const client = rgwClient(rgw);
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
      const report = JSON.parse(await readFile(reportFile, 'utf8')) as {
        tags: number;
        images: { imported: number };
        skipped: { what: string; reason: string }[];
      };
      assert.equal(report.tags, 1);
      assert.equal(report.images.imported, 2);
      assert.deepEqual(
        report.skipped.map((x) => x.what),
        ['alice/web:broken'],
      );
      const host = new URL(s.url).host;
      await skopeo(work, 'copy', '--src-tls-verify=false', `docker://${host}/alice/web:latest`, `dir:${join(work, 'out')}`);
      for (const img of [base, top]) assert.ok((await readFile(join(work, 'out', sha256(img.layer).slice(7)))).equals(img.layer));
    });

    it('imports a tree distribution 2.8.2 wrote to the bucket (s3 driver, pushed with skopeo): digests kept, a damaged blob skipped', async () => {
      const bucket = rgw.uniqueBucket('distreg');
      const client = rgwClient(rgw);
      const a = await writeOciLayout(join(work, 'oci-a'), 'v1');
      const b = await writeOciLayout(join(work, 'oci-b'), 'v1');
      try {
        await client.send(new CreateBucketCommand({ Bucket: bucket }));
        const d = await startDistribution(work, 'dist-s3', join(work, 'unused'), undefined, {
          endpoint: rgw.endpoint,
          region: rgw.region,
          bucket,
          accessKey: rgw.accessKey,
          secretKey: rgw.secretKey,
          rootdirectory: '/dist',
        });
        try {
          await skopeo(work, 'copy', '--dest-tls-verify=false', `oci:${a.dir}:v1`, `docker://${d.host}/team/app:1.0`);
          await skopeo(work, 'copy', '--dest-tls-verify=false', '--format', 'v2s2', `oci:${a.dir}:v1`, `docker://${d.host}/team/app:s2`);
          await skopeo(work, 'copy', '--dest-tls-verify=false', `oci:${b.dir}:v1`, `docker://${d.host}/team/broken:1.0`);
        } finally {
          await d.stop();
        }
        // distribution's own layout in the bucket, and b's layer damaged there
        const keys =
          (await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: 'dist/docker/registry/v2/repositories/team/app/_manifests/tags/' })))
            .Contents ?? [];
        assert.ok(
          keys.some((k) => k.Key === 'dist/docker/registry/v2/repositories/team/app/_manifests/tags/s2/current/link'),
          keys.map((k) => k.Key).join(' '),
        );
        const bl = sha256(b.layer).slice(7);
        const damaged = Buffer.from(b.layer);
        damaged[10] = damaged[10]! ^ 0xff;
        await client.send(new PutObjectCommand({ Bucket: bucket, Key: `dist/docker/registry/v2/blobs/sha256/${bl.slice(0, 2)}/${bl}/data`, Body: damaged }));
      } finally {
        client.destroy();
      }
      const reportFile = join(work, 'report-dist.json');
      const env = { AWS_ACCESS_KEY_ID: rgw.accessKey, AWS_SECRET_ACCESS_KEY: rgw.secretKey, AWS_REGION: rgw.region };
      const r = await cli(s.dataDir, ['import', '--owner', 'alice', '--s3-endpoint', rgw.endpoint, '--report', reportFile, `s3://${bucket}/dist`], env);
      assert.equal(r.code, 3, r.stdout + r.stderr);
      const report = JSON.parse(await readFile(reportFile, 'utf8')) as { layout: string; tags: number; skipped: { what: string; reason: string }[] };
      assert.equal(report.layout, 'distribution');
      assert.equal(report.tags, 2);
      assert.ok(
        report.skipped.some((x) => x.what.startsWith('team/broken@') && /hash to/.test(x.reason)),
        JSON.stringify(report.skipped),
      );
      assert.ok(report.skipped.some((x) => x.what === 'team/broken:1.0'));
      const host = new URL(s.url).host;
      const oci = JSON.parse((await skopeo(work, 'inspect', '--tls-verify=false', '--creds', 'alice:alicepw', `docker://${host}/team/app:1.0`)).stdout) as {
        Digest: string;
      };
      assert.equal(oci.Digest, sha256(a.manifest), 'the digest distribution had');
      await skopeo(work, 'copy', '--src-tls-verify=false', '--src-creds', 'alice:alicepw', `docker://${host}/team/app:s2`, `dir:${join(work, 'app')}`);
      assert.ok((await readFile(join(work, 'app', sha256(a.layer).slice(7)))).equals(a.layer));
      // again: nothing new
      const again = await cli(s.dataDir, ['import', '--owner', 'alice', '--s3-endpoint', rgw.endpoint, '--report', reportFile, `s3://${bucket}/dist`], env);
      assert.equal(again.code, 3);
      const r2 = JSON.parse(await readFile(reportFile, 'utf8')) as { manifests: { imported: number }; blobs: { imported: number } };
      assert.equal(r2.manifests.imported, 0);
      assert.equal(r2.blobs.imported, 0);
    });
  },
);
