import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { connect } from 'node:net';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { promisify } from 'node:util';
import {
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  DeleteBucketCommand,
  DeleteObjectsCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  ListPartsCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { cephMissing, rgwClient, startRgw, type Rgw } from '../helpers/ceph.js';
import { spawnServer } from '../helpers/child.js';
import { request } from '../helpers/http.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { makeImage, pushImage, putTag } from '../helpers/v1-client.js';
import { writeOciLayout } from '../helpers/oci-layout.js';
import { podmanArgs } from '../helpers/podman.js';

const run = promisify(execFile);
const require = createRequire(import.meta.url);
const MiB = 1024 * 1024;
const sha = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

const skip = cephMissing();

/**
 * The registry on S3 (Ceph RGW on loopback): two nodes on one bucket, chunked uploads continued on
 * the other node, Range reads, the redirect to pre-signed URLs pulled through by real clients,
 * start-up checks, a bucket that goes away, and the purge of abandoned multipart uploads.
 */
describe('registry on S3 (Ceph RGW)', { skip, timeout: 900_000 }, () => {
  let rgw: Rgw;
  let admin: S3Client;
  let bucket: string;
  const servers: TestServer[] = [];
  let work: string;

  const s3Keys = (b: string, extra: Record<string, unknown> = {}): Record<string, unknown> => ({
    standalone: true,
    v2: true,
    storage: 's3',
    storage_path: 'registry',
    s3_bucket: b,
    s3_endpoint: rgw.endpoint,
    s3_access_key: rgw.accessKey,
    s3_secret_key: rgw.secretKey,
    s3_part_size: 5 * MiB,
    ...extra,
  });
  const node = async (extra: Record<string, unknown> = {}, b = bucket): Promise<TestServer> => {
    const s = await startTestServer(s3Keys(b, extra));
    servers.push(s);
    return s;
  };
  const newBucket = async (): Promise<string> => {
    const b = rgw.uniqueBucket('e2e');
    await admin.send(new CreateBucketCommand({ Bucket: b }));
    return b;
  };
  const dropBucket = async (b: string): Promise<void> => {
    for (;;) {
      const r = await admin.send(new ListObjectsV2Command({ Bucket: b }));
      const keys = (r.Contents ?? []).map((c) => ({ Key: c.Key! }));
      if (keys.length === 0) break;
      await admin.send(new DeleteObjectsCommand({ Bucket: b, Delete: { Objects: keys, Quiet: true } }));
    }
    await admin.send(new DeleteBucketCommand({ Bucket: b }));
  };

  before(async () => {
    rgw = await startRgw();
    admin = rgwClient(rgw);
    bucket = await newBucket();
    work = await mkdtemp(join(tmpdir(), 'lr-s3e2e-'));
  });
  after(async () => {
    for (const s of servers) await s.stop().catch(() => undefined);
    admin?.destroy();
    await rgw?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('a chunked upload with PATCHes smaller than a part goes from node A to node B and back; both serve it, Range included', async () => {
    const a = await node();
    const b = await node();
    const blob = randomBytes(12 * MiB + 12345);
    const digest = sha(blob);
    const start = await request(a.url, '/v2/ns/chunked/blobs/uploads/', { method: 'POST' });
    assert.equal(start.status, 202, start.text);
    let location = String(start.headers.location);
    // 1 MiB and odd sizes, alternating nodes: every PATCH is below the 5 MiB part size
    const sizes = [MiB, 3 * MiB + 7, 1, 2 * MiB - 8, MiB, 4 * MiB];
    let at = 0;
    for (const [i, n] of sizes.entries()) {
      const via = i % 2 === 0 ? b : a;
      const chunk = blob.subarray(at, at + n);
      const r = await request(via.url, new URL(location, via.url).pathname + new URL(location, via.url).search, {
        method: 'PATCH',
        body: chunk,
        headers: { 'Content-Type': 'application/octet-stream', 'Content-Range': `${at}-${at + chunk.length - 1}` },
      });
      assert.equal(r.status, 202, `PATCH ${i} via ${via === a ? 'A' : 'B'}: ${r.text}`);
      at += chunk.length;
      assert.equal(r.headers.range, `0-${at - 1}`);
      location = String(r.headers.location);
    }
    // the last bytes come with the PUT, on node B
    const u = new URL(location, b.url);
    u.searchParams.set('digest', digest);
    const put = await request(b.url, u.pathname + u.search, { method: 'PUT', body: blob.subarray(at) });
    assert.equal(put.status, 201, put.text);
    for (const s of [a, b]) {
      const got = await request(s.url, `/v2/ns/chunked/blobs/${digest}`);
      assert.equal(got.status, 200);
      assert.equal(sha(got.body), digest);
      // across the 5 MiB part boundary
      const r = await request(s.url, `/v2/ns/chunked/blobs/${digest}`, { headers: { Range: 'bytes=5242870-5242889' } });
      assert.equal(r.status, 206);
      assert.equal(r.headers['content-range'], `bytes 5242870-5242889/${blob.length}`);
      assert.ok(r.body.equals(blob.subarray(5242870, 5242890)));
    }
    // nothing of the upload stays behind: no session, no multipart upload
    const mpu = await admin.send(new ListMultipartUploadsCommand({ Bucket: bucket }));
    assert.deepEqual(mpu.Uploads ?? [], []);
  });

  it('PATCHes on one node add parts to one open multipart upload (no copy of the bytes before); a cancel leaves nothing', async () => {
    const a = await node();
    const b = await newBucket();
    const n = await node({}, b);
    // 6 MiB PATCHes are parts of their own; a 2 MiB one is staged, then completes the next part
    const sizes = [6 * MiB, 6 * MiB, 2 * MiB, 4 * MiB, 7 * MiB];
    const blob = randomBytes(sizes.reduce((x, y) => x + y, 0) + 100);
    const digest = sha(blob);
    const partsAfter = [1, 2, 2, 3, 4];
    for (const s of [n, a]) {
      const bkt = s === n ? b : bucket;
      const start = await request(s.url, '/v2/ns/parts/blobs/uploads/', { method: 'POST' });
      assert.equal(start.status, 202, start.text);
      let location = String(start.headers.location);
      const uuid = location.slice(location.lastIndexOf('/') + 1).split('?')[0]!;
      let at = 0;
      for (const [i, size] of sizes.entries()) {
        const r = await request(s.url, location, {
          method: 'PATCH',
          body: blob.subarray(at, at + size),
          headers: { 'Content-Type': 'application/octet-stream' },
        });
        assert.equal(r.status, 202, r.text);
        at += size;
        location = String(r.headers.location);
        if (s !== n) continue;
        // one multipart upload, open, with one more part per 5 MiB sent; no object holds the bytes yet
        const mpu = (await admin.send(new ListMultipartUploadsCommand({ Bucket: bkt }))).Uploads ?? [];
        assert.equal(mpu.length, 1, `PATCH ${i}: one open multipart upload`);
        assert.equal(mpu[0]!.Key, `registry/uploads/${uuid}/blob`);
        const parts = await admin.send(new ListPartsCommand({ Bucket: bkt, Key: mpu[0]!.Key, UploadId: mpu[0]!.UploadId }));
        assert.equal(parts.Parts?.length ?? 0, partsAfter[i], `PATCH ${i}: parts`);
        const objects = ((await admin.send(new ListObjectsV2Command({ Bucket: bkt, Prefix: `registry/uploads/${uuid}/` }))).Contents ?? []).map((c) =>
          c.Key!.slice(`registry/uploads/${uuid}/`.length),
        );
        assert.ok(!objects.includes('blob'), `PATCH ${i}: the bytes were not published at the upload key: ${objects.join(' ')}`);
      }
      if (s === a) {
        // cancelled: the open multipart upload and the staged bytes go with the session
        const del = await request(s.url, location, { method: 'DELETE' });
        assert.equal(del.status, 204, del.text);
        assert.equal((await request(s.url, location)).status, 404);
        break;
      }
      const u = new URL(location, s.url);
      u.searchParams.set('digest', digest);
      const put = await request(s.url, u.pathname + u.search, { method: 'PUT', body: blob.subarray(at) });
      assert.equal(put.status, 201, put.text);
      const got = await request(s.url, `/v2/ns/parts/blobs/${digest}`);
      assert.equal(got.status, 200);
      assert.equal(sha(got.body), digest);
      assert.deepEqual((await admin.send(new ListMultipartUploadsCommand({ Bucket: bkt }))).Uploads ?? [], []);
      const left = ((await admin.send(new ListObjectsV2Command({ Bucket: bkt, Prefix: 'registry/uploads/' }))).Contents ?? []).map((c) => c.Key);
      assert.deepEqual(left, [], 'nothing of the session stays');
    }
    const open = ((await admin.send(new ListMultipartUploadsCommand({ Bucket: bucket }))).Uploads ?? []).filter((x) => x.Key?.includes('/uploads/'));
    assert.deepEqual(open, [], 'the cancelled session left no multipart upload');
    await dropBucket(b);
  });

  it('small pushes go straight to their key and leave nothing; a session serves one request at a time across nodes; wrong digests publish nothing', async () => {
    const a = await node();
    const b = await node();
    const b0 = await newBucket();
    const c = await node({}, b0);
    const objects = async (bkt: string, prefix: string): Promise<string[]> =>
      ((await admin.send(new ListObjectsV2Command({ Bucket: bkt, Prefix: prefix }))).Contents ?? []).map((o) => o.Key!.slice(prefix.length));
    const openUploads = async (bkt: string): Promise<number> => ((await admin.send(new ListMultipartUploadsCommand({ Bucket: bkt }))).Uploads ?? []).length;
    const errCode = (r: { json<T>(): T }): string => r.json<{ errors: { code: string }[] }>().errors[0]!.code;

    // POST + PUT with the body on node C (a bucket of its own): the session holds its state only,
    // the PUT claims it, writes the blob at its key and removes the session
    const small = randomBytes(300_000);
    const start = await request(c.url, '/v2/ns/claims/blobs/uploads/', { method: 'POST' });
    assert.equal(start.status, 202, start.text);
    const path = new URL(String(start.headers.location), c.url).pathname;
    const uuid = path.slice(path.lastIndexOf('/') + 1);
    assert.deepEqual(await objects(b0, `registry/uploads/${uuid}/`), ['state']);
    assert.equal((await request(c.url, `${path}?digest=${sha(small)}`, { method: 'PUT', body: small })).status, 201);
    assert.deepEqual(await objects(b0, 'registry/uploads/'), [], 'nothing of the session stays');
    assert.deepEqual(
      await objects(b0, 'registry/blobs/'),
      [`sha256/${sha(small).slice(7, 9)}/${sha(small).slice(7)}/data`],
      'the blob at its key, nothing else',
    );
    // a monolithic POST keeps no session at all
    const mono = randomBytes(200_000);
    assert.equal((await request(c.url, `/v2/ns/claims/blobs/uploads/?digest=${sha(mono)}`, { method: 'POST', body: mono })).status, 201);
    assert.deepEqual(await objects(b0, 'registry/uploads/'), []);
    assert.ok((await request(c.url, `/v2/ns/claims/blobs/${sha(mono)}`)).body.equals(mono));

    // a PUT with the whole blob held on node A: node B's requests on the session are refused
    const body = randomBytes(100_000);
    const s2 = await request(a.url, '/v2/ns/claims/blobs/uploads/', { method: 'POST' });
    const loc = new URL(String(s2.headers.location), a.url).pathname;
    const id = loc.slice(loc.lastIndexOf('/') + 1);
    const held = await hold(a.url, 'PUT', `${loc}?digest=${sha(body)}`, body.length);
    for (let i = 0; i < 300 && !(await objects(bucket, `registry/uploads/${id}/`)).includes('claim'); i++) await new Promise((r) => setTimeout(r, 10));
    assert.ok((await objects(bucket, `registry/uploads/${id}/`)).includes('claim'), 'the held PUT claimed the session');
    const evil = randomBytes(100_000);
    for (const [what, r] of [
      ['PATCH', await request(b.url, loc, { method: 'PATCH', body: evil })],
      ['PUT', await request(b.url, `${loc}?digest=${sha(evil)}`, { method: 'PUT', body: evil })],
      ['DELETE', await request(b.url, loc, { method: 'DELETE' })],
    ] as const) {
      assert.equal(r.status, 400, `${what} on B: ${r.text}`);
      assert.equal(errCode(r), 'BLOB_UPLOAD_INVALID', what);
    }
    assert.equal((await request(b.url, `/v2/ns/claims/blobs/${sha(evil)}`, { method: 'HEAD' })).status, 404);
    assert.equal(await held.finish(body), 201);
    assert.ok((await request(b.url, `/v2/ns/claims/blobs/${sha(body)}`)).body.equals(body));
    const late = await request(b.url, loc, { method: 'PATCH', body: evil });
    assert.equal(late.status, 404);
    assert.equal(errCode(late), 'BLOB_UPLOAD_UNKNOWN');
    assert.deepEqual(await objects(bucket, `registry/uploads/${id}/`), [], 'the late PATCH left nothing');

    // wrong digests: nothing published, an existing blob keeps its bytes, no multipart upload stays
    for (const size of [50_000, 6 * MiB + 1]) {
      const bytes = randomBytes(size);
      const other = randomBytes(size);
      const r = await request(a.url, `/v2/ns/claims/blobs/uploads/?digest=${sha(other)}`, { method: 'POST', body: bytes });
      assert.equal(r.status, 400, r.text);
      assert.equal(errCode(r), 'DIGEST_INVALID');
      for (const d of [sha(bytes), sha(other)]) assert.equal((await request(a.url, `/v2/ns/claims/blobs/${d}`, { method: 'HEAD' })).status, 404);
      const st = await request(a.url, '/v2/ns/claims/blobs/uploads/', { method: 'POST' });
      const l = new URL(String(st.headers.location), a.url).pathname;
      const put = await request(a.url, `${l}?digest=${sha(body)}`, { method: 'PUT', body: bytes });
      assert.equal(put.status, 400, put.text);
      assert.equal(errCode(put), 'DIGEST_INVALID');
      assert.ok((await request(a.url, `/v2/ns/claims/blobs/${sha(body)}`)).body.equals(body), 'the published blob keeps its bytes');
      assert.equal((await request(a.url, l)).status, 404, 'the session is over');
      assert.equal((await request(a.url, `/v2/ns/claims/blobs/uploads/?digest=${sha(bytes)}`, { method: 'POST', body: bytes })).status, 201);
      assert.ok((await request(b.url, `/v2/ns/claims/blobs/${sha(bytes)}`)).body.equals(bytes));
    }
    assert.equal(await openUploads(bucket), 0, 'no multipart upload stays open');
    assert.deepEqual(await objects(bucket, 'registry/uploads/'), []);
    await dropBucket(b0);
  });

  it('the upload purge removes a session idle past its age under the request holding it: 404, nothing published; a slow monolithic POST is stored', async () => {
    const bkt = await newBucket();
    const s = await node({ upload_purging: true, upload_purge_age: 1, upload_purge_interval: 1 }, bkt);
    const slow = async (method: string, path: string, body: Buffer): Promise<number> => {
      const h = await hold(s.url, method, path, body.length);
      h.send(body.subarray(0, body.length >> 1));
      await new Promise((r) => setTimeout(r, 2500));
      return h.finish(body.subarray(body.length >> 1));
    };
    const body = randomBytes(3 * MiB);
    for (const method of ['PUT', 'PATCH']) {
      const started = await request(s.url, '/v2/purge/slow/blobs/uploads/', { method: 'POST' });
      assert.equal(started.status, 202, started.text);
      const path = new URL(String(started.headers.location), s.url).pathname;
      assert.equal(await slow(method, method === 'PUT' ? `${path}?digest=${sha(body)}` : path, body), 404, `${method} in a purged session`);
      assert.equal((await request(s.url, path)).status, 404, 'the session stays gone');
      assert.equal((await request(s.url, `/v2/purge/slow/blobs/${sha(body)}`, { method: 'HEAD' })).status, 404, 'nothing published');
    }
    // no session to purge: a POST ?digest= that pauses is stored
    assert.equal(await slow('POST', `/v2/purge/slow/blobs/uploads/?digest=${sha(body)}`, body), 201);
    assert.ok((await request(s.url, `/v2/purge/slow/blobs/${sha(body)}`)).body.equals(body));
    await dropBucket(bkt);
  });

  it('a v1 image pushed through node A is pulled through node B', async () => {
    const a = await node();
    const b = await node();
    const img = makeImage();
    await pushImage(a.url, img);
    assert.equal((await putTag(a.url, 'library/s3v1', 'latest', img.id)).status, 200);
    const tags = await request(b.url, '/v1/repositories/library/s3v1/tags');
    assert.equal(tags.status, 200);
    assert.deepEqual(tags.json(), { latest: img.id });
    const layer = await request(b.url, `/v1/images/${img.id}/layer`);
    assert.equal(layer.status, 200);
    assert.ok(layer.body.equals(img.layer));
  });

  describe('redirect to pre-signed URLs (storage_redirect)', () => {
    let r: TestServer;
    let host: string;
    let img: ReturnType<typeof makeImage>;
    before(async () => {
      r = await node({ storage_redirect: true });
      host = new URL(r.url).host;
      img = makeImage();
      await pushImage(r.url, img);
      assert.equal((await putTag(r.url, 'library/redir', 'latest', img.id)).status, 200);
      const put = await request(r.url, '/v1/repositories/library/redir/', { method: 'PUT', body: JSON.stringify([{ id: img.id, Tag: 'latest' }]) });
      assert.ok(put.status < 300, put.text);
    });

    it('answers blob GETs with 307 to a URL that serves the bytes without credentials; HEAD and missing blobs stay here', async () => {
      const blob = randomBytes(300_000);
      const d = sha(blob);
      assert.equal((await request(r.url, `/v2/ns/redir/blobs/uploads/?digest=${d}`, { method: 'POST', body: blob })).status, 201);
      const got = await request(r.url, `/v2/ns/redir/blobs/${d}`);
      assert.equal(got.status, 307);
      assert.equal(got.headers['docker-content-digest'], d);
      const loc = String(got.headers.location);
      assert.ok(loc.startsWith(rgw.endpoint), loc);
      assert.match(loc, /X-Amz-Signature=/);
      const direct = await fetch(loc);
      assert.equal(direct.status, 200);
      assert.ok(Buffer.from(await direct.arrayBuffer()).equals(blob));
      const head = await request(r.url, `/v2/ns/redir/blobs/${d}`, { method: 'HEAD' });
      assert.equal(head.status, 200);
      assert.equal(head.headers['content-length'], String(blob.length));
      // a repository that does not hold the blob gets no URL
      assert.equal((await request(r.url, `/v2/ns/other/blobs/${d}`)).status, 404);
    });

    it("answers v1 layer GETs with 302 to the storage (the Python registry's storage_redirect)", async () => {
      const got = await request(r.url, `/v1/images/${img.id}/layer`);
      assert.equal(got.status, 302);
      const direct = await fetch(String(got.headers.location));
      assert.ok(Buffer.from(await direct.arrayBuffer()).equals(img.layer));
    });

    it('skopeo pulls through the redirect', { skip: toolMissing('/usr/bin/skopeo', 'skopeo') }, async () => {
      const oci = await writeOciLayout(join(work, 'src'), 'v1');
      const skopeo = (...args: string[]) =>
        run('skopeo', ['--insecure-policy', ...args], { timeout: 180_000, env: { PATH: process.env.PATH ?? '', HOME: work } });
      await skopeo('copy', '--dest-tls-verify=false', `oci:${oci.dir}:v1`, `docker://${host}/ns/skopeo:v1`);
      await skopeo('copy', '--src-tls-verify=false', `docker://${host}/ns/skopeo:v1`, `oci:${join(work, 'back')}:v1`);
      const layer = await readFile(join(work, 'back', 'blobs', 'sha256', sha(oci.layer).slice(7)));
      assert.ok(layer.equals(oci.layer));
    });

    it('podman pulls through the redirect', { skip: toolMissing('/usr/bin/podman', 'podman') }, async () => {
      const pw = join(work, 'podman');
      await writeFile(join(work, 'auth.json'), '{"auths":{}}');
      const podman = (...args: string[]) =>
        run('podman', [...podmanArgs(pw), ...args], {
          timeout: 180_000,
          env: { PATH: process.env.PATH ?? '', HOME: work, REGISTRY_AUTH_FILE: join(work, 'auth.json') },
        });
      await podman('pull', '--tls-verify=false', `${host}/ns/skopeo:v1`);
      const { stdout } = await podman('image', 'inspect', '--format', '{{.Digest}}', `${host}/ns/skopeo:v1`);
      assert.match(stdout.trim(), /^sha256:[0-9a-f]{64}$/);
    });

    it('the npm docker-registry-client (v1) reads a layer through the redirect', async () => {
      type Cb<T> = (err: Error | null, res: T) => void;
      const drc = require('docker-registry-client') as {
        createClientV1(o: { name: string; log?: unknown }): { getImgLayerStream(o: { imgId: string }, cb: Cb<Readable>): void; close(): void };
      };
      const bunyan = require('bunyan') as { createLogger(o: { name: string; level: string }): unknown };
      const c = drc.createClientV1({ name: `${host}/library/redir`, log: bunyan.createLogger({ name: 's3-drc', level: 'fatal' }) });
      try {
        const stream = await new Promise<Readable>((resolve, reject) => c.getImgLayerStream({ imgId: img.id }, (e, s) => (e ? reject(e) : resolve(s))));
        const parts: Buffer[] = [];
        for await (const p of stream) parts.push(p as Buffer);
        assert.ok(Buffer.concat(parts).equals(img.layer));
      } finally {
        c.close();
      }
    });
  });

  it('fails at start with a clear message for an unreachable store, a missing bucket and a wrong secret', async () => {
    const cases: Array<[string, Record<string, string>, RegExp]> = [
      ['unreachable', { regionendpoint: 'http://127.0.0.1:9', bucket }, /s3: cannot use bucket/],
      ['no bucket', { regionendpoint: rgw.endpoint, bucket: 'no-such-bucket-here' }, /s3: cannot use bucket "no-such-bucket-here".*the bucket does not exist/],
      ['wrong secret', { regionendpoint: rgw.endpoint, bucket, secretkey: 'wrong' }, /s3: cannot use bucket.*access denied/],
    ];
    for (const [label, s3, expected] of cases) {
      const file = join(work, `bad-${label.replace(/ /g, '-')}.yml`);
      const params = { accesskey: rgw.accessKey, secretkey: rgw.secretKey, region: 'us-east-1', ...s3 };
      await writeFile(
        file,
        `version: 0.1\nstorage:\n  s3:\n${Object.entries(params)
          .map(([k, v]) => `    ${k}: ${JSON.stringify(v)}`)
          .join('\n')}\n`,
      );
      const started = spawnServer({ REGISTRY_CONFIGURATION_PATH: file });
      const err = await started.then(
        (s) => {
          s.proc.kill('SIGKILL');
          return new Error('server started');
        },
        (e: unknown) => e as Error,
      );
      assert.match(err.message, /server exited \(1\)/, `${label}: ${err.message}`);
      assert.match(err.message, expected, label);
    }
  });

  it('REGISTRY_STORAGE_S3_* variables configure the driver (distribution: redirect on by default)', async () => {
    const file = join(work, 'env.yml');
    await writeFile(file, 'version: 0.1\nstorage:\n  s3:\n    bucket: placeholder\n');
    const s = await spawnServer({
      REGISTRY_CONFIGURATION_PATH: file,
      REGISTRY_STORAGE_S3_BUCKET: bucket,
      REGISTRY_STORAGE_S3_REGIONENDPOINT: rgw.endpoint,
      REGISTRY_STORAGE_S3_ACCESSKEY: rgw.accessKey,
      REGISTRY_STORAGE_S3_SECRETKEY: rgw.secretKey,
      REGISTRY_STORAGE_S3_ROOTDIRECTORY: '/dist-env',
    });
    try {
      const blob = randomBytes(1000);
      const d = sha(blob);
      assert.equal((await request(s.url, `/v2/ns/env/blobs/uploads/?digest=${d}`, { method: 'POST', body: blob })).status, 201);
      const got = await request(s.url, `/v2/ns/env/blobs/${d}`);
      assert.equal(got.status, 307, 'distribution redirects by default with s3');
      const listed = await admin.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: 'dist-env/' }));
      assert.ok((listed.KeyCount ?? 0) > 0, 'objects under the root directory');
    } finally {
      s.proc.kill('SIGTERM');
      await s.exited;
    }
  });

  it('storage.swift (distribution block, REGISTRY_STORAGE_SWIFT_* overrides) on the same RGW: push and pull a 12 MiB blob', async () => {
    const auth = await fetch(rgw.swiftAuthUrl, { headers: { 'X-Auth-User': rgw.swiftUser, 'X-Auth-Key': rgw.swiftKey } });
    const container = rgw.uniqueBucket('swe2e');
    const made = await fetch(`${auth.headers.get('x-storage-url')}/${container}`, {
      method: 'PUT',
      headers: { 'X-Auth-Token': auth.headers.get('x-auth-token')! },
    });
    assert.ok(made.status < 300);
    const file = join(work, 'swift.yml');
    await writeFile(
      file,
      `version: 0.1\nstorage:\n  swift:\n    authurl: ${rgw.swiftAuthUrl}\n    username: placeholder\n    password: placeholder\n    container: ${container}\n    chunksize: 5242880\n`,
    );
    const s = await spawnServer({
      REGISTRY_CONFIGURATION_PATH: file,
      REGISTRY_STORAGE_SWIFT_USERNAME: rgw.swiftUser,
      REGISTRY_STORAGE_SWIFT_PASSWORD: rgw.swiftKey,
    });
    try {
      const blob = randomBytes(12 * MiB + 1);
      const d = sha(blob);
      const put = await request(s.url, `/v2/ns/sw/blobs/uploads/?digest=${d}`, { method: 'POST', body: blob });
      assert.equal(put.status, 201, put.text);
      const got = await request(s.url, `/v2/ns/sw/blobs/${d}`);
      assert.equal(got.status, 200, 'no redirect with swift');
      assert.equal(sha(got.body), d);
      const r = await request(s.url, `/v2/ns/sw/blobs/${d}`, { headers: { Range: `bytes=${5 * MiB - 1}-${5 * MiB}` } });
      assert.equal(r.status, 206);
      assert.ok(r.body.equals(blob.subarray(5 * MiB - 1, 5 * MiB + 1)));
    } finally {
      s.proc.kill('SIGTERM');
      await s.exited;
    }
    // a wrong key fails at start, naming the container
    const bad = await spawnServer({
      REGISTRY_CONFIGURATION_PATH: file,
      REGISTRY_STORAGE_SWIFT_USERNAME: rgw.swiftUser,
      REGISTRY_STORAGE_SWIFT_PASSWORD: 'wrong',
    }).then(
      (x) => {
        x.proc.kill('SIGKILL');
        return new Error('started');
      },
      (e: unknown) => e as Error,
    );
    assert.match(bad.message, /swift: cannot use container .*authentication refused/);
  });

  it('a bucket removed while running gives 503 on the requests that need it, and the node keeps serving', async () => {
    const b = await newBucket();
    const s = await node({}, b);
    const blob = randomBytes(2000);
    const d = sha(blob);
    assert.equal((await request(s.url, `/v2/ns/gone/blobs/uploads/?digest=${d}`, { method: 'POST', body: blob })).status, 201);
    await dropBucket(b);
    const got = await request(s.url, `/v2/ns/gone/blobs/${d}`);
    assert.equal(got.status, 503, got.text);
    assert.equal((got.json() as { errors: { code: string }[] }).errors[0]!.code, 'UNAVAILABLE');
    const push = await request(s.url, '/v2/ns/gone/blobs/uploads/', { method: 'POST' });
    assert.equal(push.status, 503);
    const v1 = await request(s.url, '/v1/repositories/library/gone/tags');
    assert.equal(v1.status, 503);
    assert.equal((await request(s.url, '/v2/')).status, 200, 'still up');
    // the bucket comes back: the node serves again
    await admin.send(new CreateBucketCommand({ Bucket: b }));
    assert.equal((await request(s.url, `/v2/ns/gone/blobs/uploads/?digest=${d}`, { method: 'POST', body: blob })).status, 201);
  });

  it('the upload purge aborts abandoned multipart uploads (a killed writer leaves nothing visible)', async () => {
    const b = await newBucket();
    // what a node killed in the middle of a large upload leaves: an incomplete multipart upload
    const mpu = await admin.send(new CreateMultipartUploadCommand({ Bucket: b, Key: 'registry/uploads/x/data' }));
    assert.ok(mpu.UploadId);
    const listed = await admin.send(new ListObjectsV2Command({ Bucket: b }));
    assert.equal(listed.KeyCount ?? 0, 0, 'invisible');
    await new Promise((res) => setTimeout(res, 1100));
    await node({ upload_purge_age: 1, upload_purge_interval: 1 }, b);
    const deadline = Date.now() + 20_000;
    for (;;) {
      const left = await admin.send(new ListMultipartUploadsCommand({ Bucket: b }));
      if ((left.Uploads ?? []).length === 0) break;
      assert.ok(Date.now() < deadline, 'the purge aborted the multipart upload');
      await new Promise((res) => setTimeout(res, 500));
    }
  });
});

/**
 * A request on a raw socket whose headers (with Content-Length) go out at once while the body is
 * held back until finish(): the server is inside the request meanwhile.
 */
async function hold(base: string, method: string, path: string, length: number): Promise<{ send(part: Buffer): void; finish(body: Buffer): Promise<number> }> {
  const u = new URL(base);
  const sock = connect(Number(u.port), u.hostname);
  await once(sock, 'connect');
  const chunks: Buffer[] = [];
  sock.on('data', (c: Buffer) => chunks.push(c));
  const answered = new Promise<number>((resolve, reject) => {
    sock.on('error', reject);
    sock.on('close', () => resolve(Number(/^HTTP\/1\.1 (\d{3})/.exec(Buffer.concat(chunks).toString('latin1'))?.[1] ?? 0)));
  });
  sock.write([`${method} ${path} HTTP/1.1`, `Host: ${u.host}`, 'Connection: close', `Content-Length: ${length}`, '', ''].join('\r\n'));
  return {
    send(part: Buffer) {
      sock.write(part);
    },
    finish(body: Buffer) {
      sock.write(body);
      return answered;
    },
  };
}

function toolMissing(path: string, name: string): string | undefined {
  const ok = existsSync(path) && (name !== 'podman' || process.getuid?.() === 0);
  if (ok) return undefined;
  if (process.env.E2E_REQUIRED) throw new Error(`E2E_REQUIRED: ${name} is not installed (apt-get install ${name})`);
  return `${name} is not installed`;
}
