import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import { join } from 'node:path';
import { selfSignedCert } from '../helpers/tls.js';
import { cli, hostileMigrateSuite, type CliResult } from '../helpers/migrate.js';
import { answered, honest, listen, target, type Handler, type Hostile } from '../helpers/fake-v2-target.js';

/**
 * `legacy-registry migrate --to <url>` and `import s3://…` against servers on 127.0.0.1 that lie,
 * stall and flood: every read is capped, every wait ends, credentials stay on the target's origin,
 * the operator gets one clear line (never a stack trace), and nothing the target did not do is
 * reported as moved.
 */
const noStack = (r: CliResult): void => assert.doesNotMatch(r.stderr, /\n\s+at /, `no stack trace:\n${r.stderr}`);

describe('migrate / import s3: hostile servers on 127.0.0.1', { timeout: 120_000 }, () => {
  const h = hostileMigrateSuite('lr-migrate-hostile-', ({ top }) => ({ latest: top }));

  it('an honest target gets the tag (the harness itself works)', async () => {
    const t = await h.serve(target(() => false));
    const r = await h.migrate(t.url);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.deepEqual(
      r.report!.moved.map((m) => m.target),
      ['alice/web:latest'],
    );
  });

  it('an endless body on GET /v2/ is cut at the cap with a clear error', async () => {
    const t = await h.serve(
      target((req, res) => {
        if (req.url !== '/v2/') return false;
        res.writeHead(200);
        const chunk = Buffer.alloc(1 << 20, 0x7b);
        const pump = (): void => {
          while (!res.destroyed && res.write(chunk));
        };
        res.on('drain', pump);
        pump();
        return true;
      }),
    );
    const r = await h.migrate(t.url);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /GET http:\/\/127\.0\.0\.1:\d+\/v2\/: answer larger than 8388608 bytes/);
    noStack(r);
  });

  it('a huge response header is a clear error, not a crash', async () => {
    const t = await h.serve(target((req, res) => (req.url === '/v2/' ? answered(res.writeHead(200, { 'X-Junk': 'a'.repeat(100_000) }).end()) : false)));
    const r = await h.migrate(t.url);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /legacy-registry: GET http:\/\/127\.0\.0\.1:\d+\/v2\/: Parse Error: Header overflow/);
    noStack(r);
  });

  it('a target that accepts and never answers, or trickles a byte at a time, times out', async () => {
    const silent = await h.serve(target((req) => req.url === '/v2/'));
    const r1 = await h.migrate(silent.url);
    assert.equal(r1.code, 1, r1.stderr);
    assert.match(r1.stderr, /GET http:\/\/127\.0\.0\.1:\d+\/v2\/: (no data for|no complete answer within) 2 s/);
    const trickle = await h.serve(
      target((req, res) => {
        if (req.url !== '/v2/') return false;
        res.writeHead(200);
        const t = setInterval(() => (res.destroyed ? clearInterval(t) : res.write(' ')), 300);
        res.on('close', () => clearInterval(t));
        return true;
      }),
    );
    const r2 = await h.migrate(trickle.url);
    assert.equal(r2.code, 1, r2.stderr);
    assert.match(r2.stderr, /no complete answer within 2 s/);
    noStack(r2);
  });

  it('a blob HEAD that never answers fails that tag, and the run ends with the report', async () => {
    const t = await h.serve(target((req) => req.method === 'HEAD' && req.url!.includes('/blobs/')));
    const r = await h.migrate(t.url);
    assert.equal(r.code, 3, r.stdout + r.stderr);
    assert.match(
      r.report!.failed[0]!.reason,
      /HEAD http:\/\/127\.0\.0\.1:\d+\/v2\/alice\/web\/blobs\/sha256:[a-f0-9]+: (no data for|no complete answer within) 2 s/,
    );
  });

  describe('the token service', () => {
    const bearerTarget = (realm: () => string, opts: { tls?: boolean } = {}): Promise<Hostile> =>
      target(
        (req, res) => {
          if (req.headers.authorization?.startsWith('Bearer ')) return false;
          res.writeHead(401, { 'WWW-Authenticate': `Bearer realm="${realm()}",service="t"` }).end();
          return true;
        },
        opts.tls ? https.createServer(tlsCert(h.work)) : http.createServer(),
      );

    it('a 50 MB answer is cut at the cap; HTML and 100,000-deep JSON are refused with a clear error', async () => {
      for (const [answer, expected] of [
        [(res: http.ServerResponse) => res.end(Buffer.alloc(50 << 20, 0x20)), /answer larger than 8388608 bytes/],
        [
          (res: http.ServerResponse) => res.end('<html><body>log in first</body></html>'),
          /token service http:\/\/127\.0\.0\.1:\d+\/token answered 200 without JSON: <html>/,
        ],
        [(res: http.ServerResponse) => res.end(`{"token":${'['.repeat(100_000)}${']'.repeat(100_000)}}`), /answered JSON nested deeper than 64/],
        [(res: http.ServerResponse) => res.end('{"token":"a\\r\\nX-Injected: 1"}'), /answered without a usable token/],
      ] as const) {
        const token = await h.serve(listen(http.createServer(), (req, res) => answered(answer(res))));
        const t2 = await h.serve(bearerTarget(() => `${token.url}/token`));
        const r2 = await h.migrate(t2.url, ['--username', 'bob'], { MIGRATE_PASSWORD: 'bobpw' });
        assert.equal(r2.code, 1, r2.stderr);
        assert.match(r2.stderr, expected);
        noStack(r2);
      }
    });

    it('with an https target, the account is never sent to a plain-http realm (another port here)', async () => {
      const token = await h.serve(listen(http.createServer(), (req, res) => answered(res.end('{"token":"t"}'))));
      const t = await h.serve(bearerTarget(() => `${token.url}/token`, { tls: true }));
      const r = await h.migrate(t.url, ['--username', 'bob', '--insecure'], { MIGRATE_PASSWORD: 'bobpw' });
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, /sends for tokens to http:\/\/127\.0\.0\.1:\d+, plain http: the credentials are not sent there in the clear/);
      assert.deepEqual(token.seen, [], 'nothing reached the plain-http realm');
      noStack(r);
    });

    it('with an https target and an https realm elsewhere, the account goes to the realm (as docker does) and the migration works', async () => {
      const token = await h.serve(listen(https.createServer(tlsCert(h.work)), (req, res) => answered(res.end('{"token":"tok-1","expires_in":300}'))));
      const t = await h.serve(bearerTarget(() => `${token.url}/token`, { tls: true }));
      const r = await h.migrate(t.url, ['--username', 'bob', '--insecure'], { MIGRATE_PASSWORD: 'bobpw' });
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.equal(token.seen[0]!.authorization, `Basic ${Buffer.from('bob:bobpw').toString('base64')}`);
      assert.ok(t.seen.some((s) => s.authorization === 'Bearer tok-1'));
    });
  });

  describe('upload Locations and redirects', () => {
    const basic = `Basic ${Buffer.from('bob:bobpw').toString('base64')}`;
    /** Basic auth on the target (every request without it gets the challenge). */
    const basicTarget = (handler: Handler): Promise<Hostile> =>
      target((req, res, body) => {
        if (req.headers.authorization !== basic) return answered(res.writeHead(401, { 'WWW-Authenticate': 'Basic realm="t"' }).end());
        return handler(req, res, body);
      });

    it('a Location on another origin gets the blob without the credentials', async () => {
      const elsewhere = await h.serve(listen(http.createServer(), () => false, honest()));
      const t = await h.serve(
        basicTarget((req, res) => {
          if (req.method === 'POST' && req.url!.endsWith('/blobs/uploads/'))
            return answered(res.writeHead(202, { Location: `${elsewhere.url}/v2/up/blobs/uploads/x` }).end());
          return false;
        }),
      );
      const r = await h.migrate(t.url, ['--username', 'bob'], { MIGRATE_PASSWORD: 'bobpw' });
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.ok(
        elsewhere.seen.some((s) => s.method === 'PUT'),
        'the uploads went there',
      );
      assert.deepEqual(
        elsewhere.seen.filter((s) => s.authorization),
        [],
        'no credentials left the target',
      );
    });

    it('a Location with another scheme, a 202 without Location: the tag fails with a clear reason', async () => {
      for (const [location, expected] of [
        ['file:///etc/passwd', /PUT file:\/\/: not an http\(s\) URL \(file:\)|not an http\(s\) URL/],
        [undefined, /the target answered 202 without a Location to upload to/],
      ] as const) {
        const t = await h.serve(
          target((req, res) => {
            if (req.method === 'POST' && req.url!.endsWith('/blobs/uploads/'))
              return answered(res.writeHead(202, location ? { Location: location } : {}).end());
            return false;
          }),
        );
        const r = await h.migrate(t.url);
        assert.equal(r.code, 3, r.stdout + r.stderr);
        assert.match(r.report!.failed[0]!.reason, expected);
        assert.deepEqual(r.report!.moved, []);
      }
    });

    it('a HEAD of a blob redirected to another origin (distribution on object storage) is followed there without credentials', async () => {
      const store = await h.serve(listen(http.createServer(), (req, res) => answered(res.writeHead(200, { 'Content-Length': 0 }).end())));
      // the target holds the blobs and redirects their HEADs to its store, as distribution on S3 does
      const known = new Map<string, number>();
      const t = await h.serve(
        basicTarget((req, res, body) => {
          const m = /\/blobs\/(sha256:[a-f0-9]{64})$/.exec(req.url!);
          if (req.method === 'HEAD' && m && known.has(m[1]!)) {
            res.writeHead(307, { Location: `${store.url}/bucket/${m[1]}?X-Amz-Signature=x` }).end();
            return true;
          }
          if (req.method === 'PUT' && req.url!.includes('/blobs/uploads/')) known.set(new URL(req.url!, 'http://x').searchParams.get('digest')!, body.length);
          return false;
        }),
      );
      const first = await h.migrate(t.url, ['--username', 'bob'], { MIGRATE_PASSWORD: 'bobpw' });
      assert.equal(first.code, 0, first.stdout + first.stderr);
      // the store answers Content-Length 0: only a blob of that size would be accepted as present,
      // so answer with the real sizes from now on
      store.seen.length = 0;
      const sized = await h.serve(
        listen(http.createServer(), (req, res) => {
          const d = /(sha256:[a-f0-9]{64})/.exec(req.url!)![1]!;
          res.writeHead(200, { 'Content-Length': known.get(d) }).end();
          return true;
        }),
      );
      const t2 = await h.serve(
        basicTarget((req, res) => {
          const m = /\/blobs\/(sha256:[a-f0-9]{64})$/.exec(req.url!);
          if (req.method === 'HEAD' && m) return answered(res.writeHead(307, { Location: `${sized.url}/bucket/${m[1]}` }).end());
          return false;
        }),
      );
      const second = await h.migrate(t2.url, ['--username', 'bob'], { MIGRATE_PASSWORD: 'bobpw' });
      assert.equal(second.code, 0, second.stdout + second.stderr);
      assert.ok(sized.seen.length > 0 && sized.seen.every((s) => s.method === 'HEAD' && !s.authorization), JSON.stringify(sized.seen));
      assert.ok(
        t2.seen.every((s) => !(s.method === 'PUT' && s.url.includes('/blobs/uploads/'))),
        'nothing uploaded: the redirect said present',
      );
    });
  });

  describe('lying targets', () => {
    it('a HEAD claiming a blob of another size, a manifest PUT answering another digest: the tag fails, nothing reported moved', async () => {
      const liars: Handler[] = [
        (req, res) => {
          if (req.method !== 'HEAD' || !req.url!.includes('/blobs/')) return false;
          res.writeHead(200, { 'Content-Length': 1 }).end();
          return true;
        },
        (req, res) => {
          if (req.method !== 'PUT' || !req.url!.includes('/manifests/')) return false;
          res.writeHead(201, { 'Docker-Content-Digest': `sha256:${'0'.repeat(64)}` }).end();
          return true;
        },
        (req, res) => {
          // accepts the manifest, then reads back another one
          if (req.method !== 'HEAD' || !req.url!.includes('/manifests/')) return false;
          res.writeHead(200, { 'Docker-Content-Digest': `sha256:${'1'.repeat(64)}` }).end();
          return true;
        },
      ];
      const expected = [
        /the target says it holds blob sha256:[a-f0-9]{64} but describes it as sha256:[a-f0-9]{64}, 1 bytes \(not \d+\)/,
        /the target answered digest sha256:0{64} for manifest/,
        /after the push, alice\/web:latest reads back as sha256:1{64}, not sha256:/,
      ];
      for (const [i, liar] of liars.entries()) {
        const t = await h.serve(target(liar));
        const r = await h.migrate(t.url);
        assert.equal(r.code, 3, r.stdout + r.stderr);
        assert.deepEqual(r.report!.moved, []);
        assert.match(r.report!.failed[0]!.reason, expected[i]!);
      }
    });

    it("the target's error text reaches the operator without terminal escapes, and bounded", async () => {
      const t = await h.serve(
        target((req, res) => {
          if (req.method !== 'PUT' || !req.url!.includes('/manifests/')) return false;
          res.writeHead(400).end(JSON.stringify({ errors: [{ code: 'DENIED\u001b[2J', message: `\u001b]0;owned\u0007${'x'.repeat(10_000)}` }] }));
          return true;
        }),
      );
      const r = await h.migrate(t.url);
      assert.equal(r.code, 3);
      assert.doesNotMatch(r.stdout, /[\u0000-\u0008\u000b-\u001f]/);
      assert.ok(r.report!.failed[0]!.reason.length < 500, r.report!.failed[0]!.reason);
    });
  });

  describe('the state file', () => {
    it('a corrupt state file (null, arrays, bad digests) does not stop the run; one for another target is refused', async () => {
      const t = await h.serve(target(() => false));
      const state = join(h.work, 'corrupt.state');
      await writeFile(state, 'null\n[1,2]\n"x"\n{"blob":"sha256:../../x","repo":"alice/web"}\n{"tag":"alice/web:latest","digest":"nope"}\n{"blob":');
      const r = await h.migrate(t.url, ['--state', state]);
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.equal(r.report!.moved[0]!.resumed, undefined, 'pushed, not taken as done');
      // the file now names its target: another target does not take its records as its own
      const other = await h.serve(target(() => false));
      const r2 = await h.migrate(other.url, ['--state', state]);
      assert.equal(r2.code, 1, r2.stderr);
      assert.match(
        r2.stderr,
        /the state file .* records a migration to http:\/\/127\.0\.0\.1:\d+\/, not to http:\/\/127\.0\.0\.1:\d+\/: give another --state file/,
      );
      assert.ok(!other.seen.some((s) => s.method === 'PUT'), 'nothing pushed');
      // the same target: every tag resumed
      const r3 = await h.migrate(t.url, ['--state', state]);
      assert.equal(r3.code, 0, r3.stderr);
      assert.equal(r3.report!.moved[0]!.resumed, true);
    });
  });

  describe('import s3:// from a hostile store', () => {
    /** storages of the import runs, one each */
    let s3Runs = 0;
    const s3env = { AWS_ACCESS_KEY_ID: 'k', AWS_SECRET_ACCESS_KEY: 's', AWS_REGION: 'us-east-1' };
    const importS3 = async (endpoint: string): Promise<CliResult> => {
      const started = Date.now();
      const r = await cli(
        join(h.work, `s3-storage-${++s3Runs}`),
        ['import', '--no-progress', '--timeout', '2', '--s3-endpoint', endpoint, 's3://bucket/tree'],
        s3env,
      );
      assert.ok(Date.now() - started < 30_000, 'the import ended in time');
      return r;
    };
    const listing = (prefixes: string[], token?: string): string =>
      `<?xml version="1.0" encoding="UTF-8"?><ListBucketResult><Name>bucket</Name><IsTruncated>${token ? 'true' : 'false'}</IsTruncated>${
        token ? `<NextContinuationToken>${token}</NextContinuationToken>` : ''
      }${prefixes.map((p) => `<CommonPrefixes><Prefix>${p}</Prefix></CommonPrefixes>`).join('')}</ListBucketResult>`;

    it('a listing that pages in a circle ends with an error', async () => {
      const s3 = await h.serve(
        listen(http.createServer(), (req, res) => {
          res.writeHead(200, { 'Content-Type': 'application/xml' }).end(listing(['tree/images/'], 'same-token'));
          return true;
        }),
      );
      const r = await importS3(s3.url);
      assert.notEqual(r.code, 0);
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, /legacy-registry: s3:\/\/bucket\/tree: \/: the store's listing goes round in a circle/);
      noStack(r);
    });

    it('an endless listing answer is cut at the cap; a store that never answers times out', async () => {
      const endless = await h.serve(
        listen(http.createServer(), (req, res) => {
          res.writeHead(200, { 'Content-Type': 'application/xml' });
          res.write('<?xml version="1.0" encoding="UTF-8"?><ListBucketResult><Name>');
          const chunk = Buffer.alloc(1 << 20, 0x61);
          const pump = (): void => {
            while (!res.destroyed && res.write(chunk));
          };
          res.on('drain', pump);
          pump();
          return true;
        }),
      );
      const r = await importS3(endless.url);
      assert.notEqual(r.code, 0);
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, /legacy-registry: s3:\/\/bucket\/tree: s3: an answer to ListObjectsV2Command larger than 16777216 bytes/);
      noStack(r);
      const silent = await h.serve(listen(http.createServer(), () => true));
      const r2 = await importS3(silent.url);
      assert.notEqual(r2.code, 0);
      assert.equal(r2.code, 1, r2.stderr);
      assert.match(r2.stderr, /legacy-registry: s3:\/\/bucket\/tree: no complete answer from the store within 2 s/);
      noStack(r2);
    });
  });
});

let cert: { key: Buffer; cert: Buffer } | undefined;
/** A self-signed certificate for 127.0.0.1 (openssl), made once. */
function tlsCert(work: string): { key: Buffer; cert: Buffer } {
  cert ??= selfSignedCert(work);
  return cert;
}
