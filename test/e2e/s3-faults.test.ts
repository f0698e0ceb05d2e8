import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { cephMissing, startRgw, type Rgw } from '../helpers/ceph.js';
import { request } from '../helpers/http.js';
import { head, startFaultProxy, type FaultProxy, type S3Exchange } from '../helpers/s3-fault-proxy.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

const MiB = 1024 * 1024;
const sha = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const skip = cephMissing();

/** What a client got: a complete answer, or an error (the connection cut, or no answer in time). */
type Outcome = { status: number; headers: Record<string, unknown>; body: Buffer } | { error: string };
function fetchOutcome(base: string, path: string, headers: Record<string, string> = {}, timeoutMs = 30_000): Promise<Outcome> {
  const u = new URL(base);
  return new Promise((resolve) => {
    const req = httpRequest({ host: u.hostname, port: u.port, path, headers, agent: false }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => parts.push(c));
      res.once('error', (e) => resolve({ error: e.message }));
      res.once('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(parts) }));
    });
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.once('error', (e) => resolve({ error: e.message }));
    req.end();
  });
}

/**
 * The registry on S3 behind a store that misbehaves (a fault-injecting proxy in front of Ceph RGW):
 * never wrong bytes served as a complete answer, nothing unbounded read from the store.
 */
describe('registry on S3 behind a faulty store', { skip, timeout: 600_000 }, () => {
  let rgw: Rgw;
  let admin: S3Client;
  let proxy: FaultProxy;
  let bucket: string;
  let s: TestServer;

  before(async () => {
    rgw = await startRgw();
    admin = new S3Client({
      endpoint: rgw.endpoint,
      region: rgw.region,
      forcePathStyle: true,
      credentials: { accessKeyId: rgw.accessKey, secretAccessKey: rgw.secretKey },
    });
    bucket = rgw.uniqueBucket('flt');
    await admin.send(new CreateBucketCommand({ Bucket: bucket }));
    proxy = await startFaultProxy(rgw.endpoint);
    s = await startTestServer({
      standalone: true,
      v2: true,
      storage: 's3',
      storage_path: 'registry',
      s3_bucket: bucket,
      s3_endpoint: proxy.url,
      s3_access_key: rgw.accessKey,
      s3_secret_key: rgw.secretKey,
      s3_part_size: 5 * MiB,
      metadata_cache_ttl: 0,
    });
  });
  after(async () => {
    await s?.stop().catch(() => undefined);
    await proxy?.close();
    admin?.destroy();
    await rgw?.stop();
  });

  const pushBlob = async (repo: string, blob: Buffer): Promise<number> => {
    const r = await request(s.url, `/v2/${repo}/blobs/uploads/?digest=${sha(blob)}`, {
      method: 'POST',
      body: blob,
      headers: { 'Content-Type': 'application/octet-stream' },
    });
    return r.status;
  };
  const isBlobGet = (x: S3Exchange): boolean => x.method === 'GET' && /\/registry\/blobs\/sha256\/[0-9a-f]{2}\/[0-9a-f]{64}\/data$/.test(x.url.pathname);

  it('a Range the store ignores (200, the whole object) is not served as the range asked', async () => {
    const blob = randomBytes(3 * MiB);
    assert.equal(await pushBlob('ns/range', blob), 201);
    proxy.fault = (x) =>
      isBlobGet(x) && x.headers.range
        ? async (x) => {
            const a = await x.forward({ headers: { range: undefined } });
            x.socket.end(Buffer.concat([Buffer.from(head(a.status, { 'Content-Length': a.body.length })), a.body]));
          }
        : undefined;
    try {
      const got = await fetchOutcome(s.url, `/v2/ns/range/blobs/${sha(blob)}`, { Range: `bytes=${MiB}-${3 * MiB - 1}` });
      if ('status' in got && got.status === 206) assert.ok(got.body.equals(blob.subarray(MiB)), 'a complete 206 of other bytes than those asked');
    } finally {
      proxy.fault = undefined;
    }
  });

  it('a 206 for other bytes than asked (a wrong Content-Range) is not served as the range asked', async () => {
    const blob = randomBytes(3 * MiB);
    assert.equal(await pushBlob('ns/crange', blob), 201);
    proxy.fault = (x) =>
      isBlobGet(x) && x.headers.range
        ? async (x) => {
            // one byte earlier than asked, as much
            const m = /^bytes=(\d+)-(\d*)$/.exec(String(x.headers.range))!;
            const start = Math.max(0, Number(m[1]) - 1);
            const end = m[2] === '' ? '' : String(Number(m[2]) - 1);
            const a = await x.forward({ headers: { range: `bytes=${start}-${end}` } });
            const h: Record<string, string | number> = { 'Content-Length': a.body.length };
            if (a.headers['content-range']) h['Content-Range'] = String(a.headers['content-range']);
            x.socket.end(Buffer.concat([Buffer.from(head(a.status, h)), a.body]));
          }
        : undefined;
    try {
      for (const range of [`bytes=${MiB}-${2 * MiB - 1}`, `bytes=${MiB}-`]) {
        const got = await fetchOutcome(s.url, `/v2/ns/crange/blobs/${sha(blob)}`, { Range: range });
        if ('status' in got && got.status === 206)
          assert.ok(got.body.equals(blob.subarray(MiB, MiB + got.body.length)), `${range}: a complete 206 of other bytes`);
      }
      // a whole-blob GET asks the store for bytes 0-(size-1) too
      const whole = await fetchOutcome(s.url, `/v2/ns/crange/blobs/${sha(blob)}`);
      if ('status' in whole) assert.notEqual(whole.status, 200, 'a complete 200 of a store answer for other bytes');
    } finally {
      proxy.fault = undefined;
    }
  });

  it('a body the store cuts short, or sends chunked and cuts, never ends a client answer cleanly', async () => {
    const blob = randomBytes(3 * MiB + 17);
    assert.equal(await pushBlob('ns/cut', blob), 201);
    for (const mode of ['plain', 'chunked'] as const) {
      proxy.fault = (x) =>
        isBlobGet(x)
          ? async (x) => {
              const a = await x.forward();
              const h: Record<string, string | number> = mode === 'plain' ? { 'Content-Length': a.body.length } : { 'Transfer-Encoding': 'chunked' };
              if (a.headers['content-range']) h['Content-Range'] = String(a.headers['content-range']);
              const half = a.body.subarray(0, a.body.length >> 1);
              const body = mode === 'plain' ? half : Buffer.concat([Buffer.from(`${half.length.toString(16)}\r\n`), half, Buffer.from('\r\n')]);
              x.socket.write(Buffer.concat([Buffer.from(head(a.status, h)), body]));
              setTimeout(() => x.socket.destroy(), 50);
            }
          : undefined;
      try {
        for (const range of [undefined, `bytes=1000-${3 * MiB}`]) {
          const got = await fetchOutcome(s.url, `/v2/ns/cut/blobs/${sha(blob)}`, range ? { Range: range } : {});
          if ('status' in got) assert.ok(got.status >= 500, `${mode} ${range ?? 'whole'}: a complete ${got.status} of ${got.body.length} bytes`);
        }
      } finally {
        proxy.fault = undefined;
      }
    }
  });
});
