import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { CreateBucketCommand, ListMultipartUploadsCommand, S3Client } from '@aws-sdk/client-s3';
import { createS3Driver } from '../../src/storage/drivers/s3.js';
import { cephMissing, rgwClient, startRgw, type Rgw } from '../helpers/ceph.js';
import { request } from '../helpers/http.js';
import { head, startFaultProxy, type FaultHandler, type FaultProxy, type S3Exchange } from '../helpers/s3-fault-proxy.js';
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
 * Writes an answer of `total` announced bytes (chunked: not announced), in 1 MiB pieces as fast as
 * the reader takes them; the bytes the reader accepted before it went away.
 */
async function endless(x: S3Exchange, status: number, total: number, piece: Buffer, chunked = false): Promise<number> {
  const s = x.socket;
  s.write(head(status, { 'Content-Type': 'application/xml', ...(chunked ? { 'Transfer-Encoding': 'chunked' } : { 'Content-Length': total }) }));
  let sent = 0;
  while (sent < total && !s.destroyed) {
    const n = Math.min(piece.length, total - sent);
    const bytes = n === piece.length ? piece : piece.subarray(0, n);
    const more = s.write(chunked ? Buffer.concat([Buffer.from(`${n.toString(16)}\r\n`), bytes, Buffer.from('\r\n')]) : bytes);
    sent += n;
    if (!more) {
      await new Promise<void>((r) => {
        const done = (): void => {
          s.off('drain', done);
          s.off('close', done);
          r();
        };
        s.once('drain', done);
        s.once('close', done);
      });
    }
  }
  const accepted = s.destroyed ? sent - s.writableLength : sent;
  s.destroy();
  return accepted;
}

/** Answers with a status line, then one byte of headers every 100 ms, never ending them (each byte well within any idle timeout). */
function trickleHeaders(x: S3Exchange): Promise<void> {
  const s = x.socket;
  s.write('HTTP/1.1 200 OK\r\n');
  const line = 'X-Slow: a\r\n';
  let i = 0;
  return new Promise((resolve) => {
    const t = setInterval(() => {
      if (s.destroyed) return;
      s.write(line[i++ % line.length]!);
    }, 100);
    s.once('close', () => {
      clearInterval(t);
      resolve();
    });
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
    admin = rgwClient(rgw);
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
    await proxy.withFault(
      (x) =>
        isBlobGet(x) && x.headers.range
          ? async (x) => {
              const a = await x.forward({ headers: { range: undefined } });
              x.socket.end(Buffer.concat([Buffer.from(head(a.status, { 'Content-Length': a.body.length })), a.body]));
            }
          : undefined,
      async () => {
        const got = await fetchOutcome(s.url, `/v2/ns/range/blobs/${sha(blob)}`, { Range: `bytes=${MiB}-${3 * MiB - 1}` });
        if ('status' in got && got.status === 206) assert.ok(got.body.equals(blob.subarray(MiB)), 'a complete 206 of other bytes than those asked');
      },
    );
  });

  it('a 206 for other bytes than asked (a wrong Content-Range) is not served as the range asked', async () => {
    const blob = randomBytes(3 * MiB);
    assert.equal(await pushBlob('ns/crange', blob), 201);
    await proxy.withFault(
      (x) =>
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
          : undefined,
      async () => {
        for (const range of [`bytes=${MiB}-${2 * MiB - 1}`, `bytes=${MiB}-`]) {
          const got = await fetchOutcome(s.url, `/v2/ns/crange/blobs/${sha(blob)}`, { Range: range });
          if ('status' in got && got.status === 206)
            assert.ok(got.body.equals(blob.subarray(MiB, MiB + got.body.length)), `${range}: a complete 206 of other bytes`);
        }
        // a whole-blob GET asks the store for bytes 0-(size-1) too
        const whole = await fetchOutcome(s.url, `/v2/ns/crange/blobs/${sha(blob)}`);
        if ('status' in whole) assert.notEqual(whole.status, 200, 'a complete 200 of a store answer for other bytes');
      },
    );
  });

  it('a body the store cuts short, or sends chunked and cuts, never ends a client answer cleanly', async () => {
    const blob = randomBytes(3 * MiB + 17);
    assert.equal(await pushBlob('ns/cut', blob), 201);
    for (const mode of ['plain', 'chunked'] as const) {
      await proxy.withFault(
        (x) =>
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
            : undefined,
        async () => {
          for (const range of [undefined, `bytes=1000-${3 * MiB}`]) {
            const got = await fetchOutcome(s.url, `/v2/ns/cut/blobs/${sha(blob)}`, range ? { Range: range } : {});
            if ('status' in got) assert.ok(got.status >= 500, `${mode} ${range ?? 'whole'}: a complete ${got.status} of ${got.body.length} bytes`);
          }
        },
      );
    }
  });

  it('a HEAD that says fewer (or more) bytes than the object holds: no answer cut or padded to it, a 5xx before the headers', async () => {
    const blob = randomBytes(3 * MiB + 17);
    assert.equal(await pushBlob('ns/headsize', blob), 201);
    const isBlobHead = (x: S3Exchange): boolean => x.method === 'HEAD' && /\/registry\/blobs\/sha256\/[0-9a-f]{2}\/[0-9a-f]{64}\/data$/.test(x.url.pathname);
    for (const delta of [-1000, 1000]) {
      await proxy.withFault(
        (x) =>
          isBlobHead(x)
            ? async (x) => {
                const a = await x.forward();
                const h: Record<string, string | number> = { 'Content-Length': Number(a.headers['content-length']) + delta };
                for (const k of ['etag', 'last-modified']) if (a.headers[k]) h[k] = String(a.headers[k]);
                x.socket.end(head(a.status, h));
              }
            : undefined,
        async () => {
          for (const range of [undefined, `bytes=${MiB}-${2 * MiB - 1}`, `bytes=${MiB}-`]) {
            const got = await fetchOutcome(s.url, `/v2/ns/headsize/blobs/${sha(blob)}`, range ? { Range: range } : {});
            const what = `HEAD ${delta > 0 ? 'larger' : 'smaller'}, ${range ?? 'whole'}`;
            assert.ok('status' in got, `${what}: ${'error' in got ? got.error : ''}`);
            // a range that stops short of the end: the object's own bytes may be served
            if (got.status === 206 && range === `bytes=${MiB}-${2 * MiB - 1}`) assert.ok(got.body.equals(blob.subarray(MiB, 2 * MiB)), what);
            else assert.ok(got.status >= 500, `${what}: a complete ${got.status} of ${got.body.length} bytes`);
          }
        },
      );
    }
    // the store's HEAD telling the truth again: served whole
    const whole = await fetchOutcome(s.url, `/v2/ns/headsize/blobs/${sha(blob)}`);
    assert.ok('status' in whole && whole.status === 200 && whole.body.equals(blob));
  });

  const pushManifest = async (repo: string, tag: string): Promise<Buffer> => {
    const config = Buffer.from(
      JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] }, n: randomBytes(8).toString('hex') }),
    );
    assert.equal(await pushBlob(repo, config), 201);
    const manifest = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha(config), size: config.length },
        layers: [],
      }),
    );
    const r = await request(s.url, `/v2/${repo}/manifests/${tag}`, {
      method: 'PUT',
      body: manifest,
      headers: { 'Content-Type': 'application/vnd.oci.image.manifest.v1+json' },
    });
    assert.equal(r.status, 201, r.text);
    return manifest;
  };

  it('an endless error document on a small request (signed GET) is not read whole', async () => {
    await pushManifest('ns/errdoc', 'v1');
    const accepted: number[] = [];
    const junk = Buffer.alloc(MiB, 'x');
    await proxy.withFault(
      (x) =>
        x.method === 'GET' && x.url.pathname.includes('/_manifests/tags/')
          ? async (x) => {
              accepted.push(await endless(x, 500, 64 * MiB, junk));
            }
          : undefined,
      async () => {
        const got = await fetchOutcome(s.url, `/v2/ns/errdoc/manifests/v1`, { Accept: 'application/vnd.oci.image.manifest.v1+json' });
        assert.ok('error' in got || got.status >= 500, `an error: ${JSON.stringify('status' in got ? got.status : got)}`);
      },
    );
    assert.ok(accepted.length > 0, 'the GET was made');
    for (const n of accepted) assert.ok(n < 16 * MiB, `the registry read ${n} bytes of an error document`);
  });
  it('a small record (a tag link) answered 200 with an endless body is not read past its bound', async () => {
    await pushManifest('ns/bigsmall', 'v1');
    const junk = Buffer.alloc(MiB, 'x');
    const cases: Array<[string, (x: S3Exchange) => boolean, string, Record<string, string>]> = [
      [
        'tag link',
        (x) => x.method === 'GET' && /\/ns\/bigsmall\/_manifests\/tags\/v1$/.test(x.url.pathname),
        '/v2/ns/bigsmall/manifests/v1',
        { Accept: 'application/vnd.oci.image.manifest.v1+json' },
      ],
    ];
    for (const [what, chunked, match, path, headers] of cases.flatMap(([w, ...rest]) =>
      [false, true].map((c) => [`${w}${c ? ', chunked' : ''}`, c, ...rest] as const),
    )) {
      // the store's side of each exchange (it may end after the registry answered the client)
      const runs: Array<Promise<number>> = [];
      await proxy.withFault(
        (x) =>
          match(x)
            ? async (x) => {
                const run = endless(x, 200, 64 * MiB, junk, chunked);
                runs.push(run);
                await run;
              }
            : undefined,
        async () => {
          const got = await fetchOutcome(s.url, path, headers);
          assert.ok('error' in got || got.status >= 500, `${what}: an error: ${JSON.stringify('status' in got ? got.status : got)}`);
        },
      );
      assert.ok(runs.length > 0, `${what}: the GET was made`);
      const accepted = await Promise.all(runs);
      for (const n of accepted) assert.ok(n < 8 * MiB, `${what}: the registry read ${n} bytes of a small record`);
    }
  });

  it('an endless error document on a blob GET, or on a listing through the SDK, is not read whole', async () => {
    const blob = randomBytes(2000);
    assert.equal(await pushBlob('ns/errdoc2', blob), 201);
    await pushManifest('ns/errdoc2', 'v1');
    const junk = Buffer.alloc(MiB, 'x');
    const cases: Array<[string, (x: S3Exchange) => boolean, string]> = [
      ['blob GET', isBlobGet, `/v2/ns/errdoc2/blobs/${sha(blob)}`],
      [
        'ListObjectsV2',
        (x) => x.method === 'GET' && x.url.searchParams.get('list-type') === '2' && x.url.searchParams.get('delimiter') === '/',
        '/v2/ns/errdoc2/tags/list',
      ],
    ];
    for (const [what, match, path] of cases) {
      const accepted: number[] = [];
      await proxy.withFault(
        (x) =>
          match(x)
            ? async (x) => {
                accepted.push(await endless(x, 500, 64 * MiB, junk));
              }
            : undefined,
        async () => {
          const got = await fetchOutcome(s.url, path);
          assert.ok('error' in got || got.status >= 500, `${what}: an error: ${JSON.stringify('status' in got ? got.status : got)}`);
        },
      );
      assert.ok(accepted.length > 0, `${what}: the request was made`);
      for (const n of accepted) assert.ok(n < 16 * MiB, `${what}: the registry read ${n} bytes of an error document`);
    }
  });
  /** After a push answered `status`: the blob is served whole, or (a failed push) not at all; no multipart upload is left open. */
  const assertPushHonest = async (repo: string, blob: Buffer, status: number, what: string): Promise<void> => {
    const got = await request(s.url, `/v2/${repo}/blobs/${sha(blob)}`);
    if (status === 201) {
      assert.equal(got.status, 200, `${what}: the push was acknowledged but the blob is not there`);
      assert.equal(sha(got.body), sha(blob), `${what}: other bytes`);
    } else {
      assert.ok(status >= 500, `${what}: push answered ${status}`);
      assert.ok(got.status === 404 || (got.status === 200 && got.body.equals(blob)), `${what}: after a failed push the blob answers ${got.status}`);
    }
    const open = ((await admin.send(new ListMultipartUploadsCommand({ Bucket: bucket }))).Uploads ?? []).filter((u) => u.Key?.includes(sha(blob).slice(7)));
    assert.deepEqual(
      open.map((u) => u.Key),
      [],
      `${what}: multipart uploads left open`,
    );
  };

  it('a CompleteMultipartUpload answered 200 with an <Error> document is no acknowledged push', async () => {
    for (const tail of ['', '\n', '\n\n  ']) {
      const blob = randomBytes(11 * MiB);
      const status = await proxy.withFault(
        (x) =>
          x.method === 'POST' && x.url.searchParams.has('uploadId')
            ? (x) => {
                const doc = Buffer.from(
                  `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>InternalError</Code><Message>We encountered an internal error. Please try again.</Message></Error>${tail}`,
                );
                x.socket.end(Buffer.concat([Buffer.from(head(200, { 'Content-Type': 'application/xml', 'Content-Length': doc.length })), doc]));
              }
            : undefined,
        () => pushBlob('ns/complete', blob),
      );
      await assertPushHonest('ns/complete', blob, status, `tail ${JSON.stringify(tail)}`);
    }
  });

  it('503 SlowDown storms during a multipart upload: the push succeeds whole or fails leaving nothing', async () => {
    const slowDown = (x: S3Exchange): void => {
      const doc = Buffer.from('<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>');
      x.socket.end(Buffer.concat([Buffer.from(head(503, { 'Content-Type': 'application/xml', 'Content-Length': doc.length })), doc]));
    };
    for (const every of [2, 1]) {
      const blob = randomBytes(16 * MiB + 5);
      let n = 0;
      const status = await proxy.withFault(
        (x) =>
          (x.method === 'PUT' && x.url.searchParams.has('partNumber')) || (x.method === 'POST' && x.url.search.includes('uploadId'))
            ? ++n % every === 0
              ? slowDown
              : undefined
            : undefined,
        () => pushBlob('ns/slowdown', blob),
      );
      await assertPushHonest('ns/slowdown', blob, status, `SlowDown on every ${every}`);
    }
  });

  it('a listing that pages forever over the same keys ends in an error, not a request that never ends', async () => {
    await pushManifest('ns/loop', 'a');
    await pushManifest('ns/loop', 'b');
    for (const [what, token] of [
      ['the same token', () => 'again'],
      ['a fresh token each page', () => `t${randomBytes(6).toString('hex')}`],
    ] as const) {
      let pages = 0;
      let first: { status: number; body: Buffer } | undefined;
      await proxy.withFault(
        (x) =>
          x.method === 'GET' && x.url.searchParams.get('list-type') === '2' && (x.url.searchParams.get('prefix') ?? '').includes('/ns/loop/')
            ? async (x) => {
                pages++;
                // the first page again, each time, said to be truncated
                const a = x.url.searchParams.has('continuation-token') && first ? first : (first = await x.forward());
                const xml = a.body
                  .toString('utf8')
                  .replace(/<IsTruncated>false<\/IsTruncated>/, `<IsTruncated>true</IsTruncated><NextContinuationToken>${token()}</NextContinuationToken>`);
                const b = Buffer.from(xml);
                x.socket.end(Buffer.concat([Buffer.from(head(a.status, { 'Content-Type': 'application/xml', 'Content-Length': b.length })), b]));
              }
            : undefined,
        async () => {
          const got = await fetchOutcome(s.url, '/v2/ns/loop/tags/list', {}, 20_000);
          assert.ok('status' in got, `${what}: ${'error' in got ? got.error : ''} after ${pages} pages`);
          assert.ok(got.status >= 500, `${what}: ${got.status}`);
        },
      );
    }
  });

  it('a store that trickles its answer headers fails the request at the headers deadline, instead of holding it for ever', async () => {
    // (a variable: no excess-property check, so that the test also builds against a driver without the option)
    const base = { bucket, endpoint: proxy.url, accessKeyId: rgw.accessKey, secretAccessKey: rgw.secretKey, rootDirectory: 'deadline', headersTimeoutMs: 500 };
    for (const sdkOnly of [false, true]) {
      const d = createS3Driver({ ...base, sdkOnly });
      try {
        await d.putContent('k/obj', Buffer.from('hello'));
        const calls: Array<[string, () => Promise<unknown>]> = [
          ['getContent', () => d.getContent('k/obj')],
          ['stat', () => d.stat('k/obj')],
          [
            'reader',
            async () => {
              for await (const _ of await d.reader('k/obj'));
            },
          ],
          ['list', () => d.list('k')],
        ];
        for (const [name, call] of calls) {
          const what = `${sdkOnly ? 'SDK only' : 'default'}: ${name}`;
          const fault = (x: S3Exchange): FaultHandler | undefined =>
            x.url.pathname.includes('/deadline/') || (x.url.searchParams.get('prefix') ?? '').startsWith('deadline/') ? trickleHeaders : undefined;
          const started = Date.now();
          await proxy.withFault(fault, async () => {
            const outcome = await Promise.race([
              call().then(
                () => 'resolved',
                (e: unknown) => e,
              ),
              new Promise((r) => setTimeout(() => r('still waiting after 15 s'), 15_000)),
            ]);
            assert.ok(outcome instanceof Error, `${what}: ${String(outcome)}`);
            assert.match(outcome.message, /headers/, what);
            assert.ok(Date.now() - started < 12_000, `${what}: failed after ${Date.now() - started} ms`);
          });
        }
        // the store answering again: the driver works as before
        assert.equal((await d.getContent('k/obj')).toString(), 'hello');
      } finally {
        await d.close();
      }
    }
  });

  it('a key under 5 MiB appended to is read back as the size its HEAD gave, or the writer fails: never other bytes kept as its start', async () => {
    const d = createS3Driver({ bucket, endpoint: proxy.url, accessKeyId: rgw.accessKey, secretAccessKey: rgw.secretKey, rootDirectory: 'append' });
    try {
      const start = randomBytes(1024);
      await d.putContent('k/obj', start);
      // the object changes between the writer's HEAD and its GET (another writer, or a store that
      // answers stale metadata): the GET brings 2 KiB where the HEAD said 1 KiB
      const more = randomBytes(1024);
      const opened = await proxy.withFault(
        (x) =>
          x.method === 'GET' && x.url.pathname.endsWith('/append/k/obj')
            ? async (x) => {
                const a = await x.forward();
                const body = Buffer.concat([a.body, more]);
                x.socket.end(Buffer.concat([Buffer.from(head(200, { 'Content-Length': body.length, ETag: String(a.headers.etag ?? '"x"') })), body]));
              }
            : undefined,
        () =>
          d.writer('k/obj', { append: true }).then(
            (w) => w,
            (e: unknown) => e as Error,
          ),
      );
      if (opened instanceof Error) return; // refused: nothing written
      const tail = Buffer.from('appended');
      await new Promise<void>((resolve, reject) => opened.stream.end(tail, () => resolve()).once('error', reject));
      await opened.commit();
      const now = await d.getContent('k/obj');
      assert.equal(now.length, opened.size, `the writer says ${opened.size} bytes, the object holds ${now.length}`);
      assert.ok(now.equals(Buffer.concat([start, tail])), 'the object is its bytes before and the ones appended');
    } finally {
      await d.close();
    }
  });

  it('a listing said to be truncated but without a continuation token is no complete listing', async () => {
    await pushManifest('ns/cut-list', 'a');
    await pushManifest('ns/cut-list', 'b');
    await proxy.withFault(
      (x) =>
        x.method === 'GET' && x.url.searchParams.get('list-type') === '2' && (x.url.searchParams.get('prefix') ?? '').includes('/ns/cut-list/')
          ? async (x) => {
              // the first entry only, truncated, and no token to go on with
              const a = await x.forward();
              const xml = a.body
                .toString('utf8')
                .replace(/(<(Contents|CommonPrefixes)>[\s\S]*?<\/\2>)[\s\S]*(<\/ListBucketResult>)/, '$1$3')
                .replace(/<IsTruncated>false<\/IsTruncated>/, '<IsTruncated>true</IsTruncated>');
              const b = Buffer.from(xml);
              x.socket.end(Buffer.concat([Buffer.from(head(a.status, { 'Content-Type': 'application/xml', 'Content-Length': b.length })), b]));
            }
          : undefined,
      async () => {
        const got = await fetchOutcome(s.url, '/v2/ns/cut-list/tags/list', {}, 20_000);
        assert.ok('status' in got, 'an answer');
        if (got.status === 200) assert.deepEqual(JSON.parse(got.body.toString('utf8')).tags, ['a', 'b'], 'a part of the tags, as if it were all');
        else assert.ok(got.status >= 500, String(got.status));
      },
    );
  });
});
