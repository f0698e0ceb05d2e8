import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import type { ServerResponse } from 'node:http';
import { networkInterfaces, tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from '../helpers/http.js';
import { selfSignedCert } from '../helpers/tls.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { cleanup } from '../helpers/counting-proxy.js';
import { layerImage } from '../helpers/v2-client.js';
import { hostile, v1MirrorOfHostile, within, type Hostile } from '../helpers/fake-upstream.js';

/**
 * The pull-through mirror against a hostile or broken upstream, second round (the first is
 * mirror-hostile.test.ts): what the token dance does with odd token answers and realms, and what
 * other upstream answers make the mirror keep or send. Fake upstreams are node servers on 127.0.0.1.
 */

const sha = (b: Buffer | string): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const S2 = 'application/vnd.docker.distribution.manifest.v2+json';
const ACCEPT = { Accept: `${S2}, application/vnd.oci.image.manifest.v1+json` };

const MIRROR = { ttl: 0, negative_ttl: 0, timeout: 1, breaker_failures: 0 };

describe('mirror token dance against a hostile token service', { timeout: 60_000 }, () => {
  let up: Hostile;
  let tok: Hostile;
  let mirror: TestServer;

  before(async () => {
    up = await hostile();
    tok = await hostile();
    mirror = await startTestServer({
      standalone: true,
      v2: true,
      mirror: { upstreams: [{ url: up.url, username: 'mirror', password: 'secret' }], ...MIRROR },
    });
  });
  after(() =>
    cleanup(
      () => mirror?.stop(),
      () => up?.close(),
      () => tok?.close(),
    ),
  );

  it('a token that cannot go into a header (control characters, not a string), kept "forever": refused, not kept; the next good token is used', async () => {
    const m = layerImage(randomBytes(10)).manifest;
    const bad: unknown[] = ['tok\r\nX-Injected: 1', 'tok\u0000nul', { nested: 'object' }, 12345, ''];
    let answer: unknown = bad[0];
    tok.handler = (_req, res) => {
      res.writeHead(200, { 'Content-Type': 'application/json' });
      // an absurd lifetime: a token kept for it would be the only one ever used
      res.end(JSON.stringify({ token: answer, expires_in: 1e300 }));
    };
    up.handler = (req, res) => {
      if (req.headers.authorization !== 'Bearer good-token') {
        res.writeHead(401, { 'WWW-Authenticate': `Bearer realm="${tok.url}/token",service="up"` });
        res.end();
        return;
      }
      res.writeHead(200, { 'Content-Type': S2 });
      res.end(m);
    };
    for (const [i, b] of bad.entries()) {
      answer = b;
      const name = `evil/badtok${i}`;
      const r = await within(10_000, request(mirror.url, `/v2/${name}/manifests/v1`, { headers: ACCEPT }));
      assert.ok(typeof r === 'object' && !(r instanceof Error) && r.status >= 400 && r.status !== 500, `${JSON.stringify(b)}: ${String(r)}`);
      assert.ok(
        up.seen.every((s) => s.auth === undefined || /^Bearer [\x21-\x7e]+$/.test(s.auth)),
        `${JSON.stringify(b)}: no odd Authorization reached the upstream`,
      );
      // the token service now answers a good token: the same repository is served
      answer = 'good-token';
      const ok = await within(10_000, request(mirror.url, `/v2/${name}/manifests/v1`, { headers: ACCEPT }));
      assert.ok(typeof ok === 'object' && !(ok instanceof Error), String(ok));
      assert.equal(ok.status, 200, `${JSON.stringify(b)} was kept: ${ok.text}`);
      assert.ok(ok.body.equals(m));
    }
  });
});

describe('mirror: an https upstream whose token realm is plain http', { timeout: 60_000 }, () => {
  let dir: string;
  let up: Hostile;
  let tok: Hostile;
  let mirror: TestServer;
  let tlsCheck: string | undefined;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'lr-mirror-tls-'));
    const tls = selfSignedCert(dir);
    // the mirror's client is to trust the self-signed upstream (this test process only)
    tlsCheck = process.env.NODE_TLS_REJECT_UNAUTHORIZED;
    process.env.NODE_TLS_REJECT_UNAUTHORIZED = '0';
    up = await hostile({ tls: { key: tls.key, cert: tls.cert } });
    tok = await hostile();
    mirror = await startTestServer({
      standalone: true,
      v2: true,
      mirror: { upstreams: [{ url: up.url, username: 'mirror', password: 'secret' }], ...MIRROR },
    });
  });
  after(async () => {
    await cleanup(
      () => mirror?.stop(),
      () => up?.close(),
      () => tok?.close(),
    );
    if (tlsCheck === undefined) delete process.env.NODE_TLS_REJECT_UNAUTHORIZED;
    else process.env.NODE_TLS_REJECT_UNAUTHORIZED = tlsCheck;
    await rm(dir, { recursive: true, force: true });
  });

  it('the mirror’s password never goes over plain http (a downgrade the upstream’s https was to prevent)', async () => {
    const m = layerImage(randomBytes(10)).manifest;
    tok.handler = (_req, res) => {
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ token: 'anon-token', expires_in: 300 }));
    };
    up.handler = (req, res) => {
      if (req.headers.authorization !== 'Bearer anon-token') {
        res.writeHead(401, { 'WWW-Authenticate': `Bearer realm="${tok.url}/token",service="up"` });
        res.end();
        return;
      }
      res.writeHead(200, { 'Content-Type': S2 });
      res.end(m);
    };
    const r = await within(10_000, request(mirror.url, '/v2/evil/downgrade/manifests/v1', { headers: ACCEPT }));
    assert.ok(typeof r === 'object' && !(r instanceof Error), String(r));
    assert.ok(tok.seen.length > 0, 'the realm was asked');
    assert.deepEqual(
      tok.seen.map((s) => s.auth),
      tok.seen.map(() => undefined),
      'the Basic credentials went to the http realm',
    );
    // an anonymous token is still asked for (a public image needs no password)
    assert.equal(r.status, 200, r.text);
    assert.ok(r.body.equals(m));
  });
});

/** Writes 1 MiB pieces until the peer goes; resolves with whether it went within `ms`. */
function endless(res: ServerResponse, ms: number): Promise<boolean> {
  const piece = Buffer.alloc(1024 * 1024, 0x20);
  const go = (): void => {
    while (!res.destroyed && res.write(piece));
    if (!res.destroyed) res.once('drain', go);
  };
  go();
  return new Promise((r) => {
    const timer = setTimeout(() => r(false), ms);
    res.once('close', () => {
      clearTimeout(timer);
      r(true);
    });
  });
}

describe('mirror: upstream answers it does not use, with endless bodies', { timeout: 90_000 }, () => {
  let up: Hostile;
  let mirror: TestServer;

  before(async () => {
    up = await hostile();
    mirror = await startTestServer({ standalone: true, v2: true, mirror: { upstreams: [{ url: up.url }], ...MIRROR } });
  });
  after(() =>
    cleanup(
      () => mirror?.stop(),
      () => up?.close(),
    ),
  );

  for (const [what, path, status] of [
    ['a manifest 404', '/v2/evil/endless404/manifests/v1', 404],
    ['a manifest 403', '/v2/evil/endless403/manifests/v1', 403],
    ['a tags list 404', '/v2/evil/endless404/tags/list', 404],
    ['a blob 404', `/v2/evil/endless404/blobs/sha256:${'b'.repeat(64)}`, 404],
    ['a blob 401 after credentials (none configured)', `/v2/evil/endless401/blobs/sha256:${'c'.repeat(64)}`, 401],
    ['a blob 302 past the redirect limit', `/v2/evil/endless302/blobs/sha256:${'d'.repeat(64)}`, 302],
  ] as const) {
    it(`${what} whose body never ends: the mirror answers and drops the upstream connection, it does not read on forever`, async () => {
      let closed: Promise<boolean> | undefined;
      up.handler = (req, res) => {
        const headers: Record<string, string> = { 'Content-Type': 'application/json' };
        if (status === 302) headers.Location = req.url!;
        if (status === 401) headers['WWW-Authenticate'] = 'Basic realm="up"';
        res.writeHead(status, headers);
        // (each request of the chain gets the endless body; the last one is the one watched)
        closed = endless(res, 8_000);
      };
      const r = await within(15_000, request(mirror.url, path, { headers: ACCEPT }));
      assert.ok(typeof r === 'object' && !(r instanceof Error) && r.status >= 400 && r.status !== 500, String(r));
      assert.ok(closed, 'the upstream was asked');
      assert.equal(await closed, true, 'the upstream connection was still read 8 s after the answer');
    });
  }
});

describe('v1 mirroring.source: answers it does not use, with endless bodies', { timeout: 60_000 }, () => {
  const m = v1MirrorOfHostile();

  for (const what of ['json', 'layer'] as const) {
    it(`an image ${what} whose source answers json 404 with a body that never ends: the connection is dropped`, async () => {
      let closed: Promise<boolean> | undefined;
      m.up.handler = (_req, res) => {
        res.writeHead(404, { 'Content-Type': 'application/json' });
        closed = endless(res, 8_000);
      };
      const r = await within(15_000, request(m.mirror.url, `/v1/images/${what === 'json' ? 'e' : 'f'}${'0'.repeat(63)}/${what}`));
      assert.ok(typeof r === 'object' && !(r instanceof Error) && r.status === 404, String(r));
      assert.ok(closed, 'the source was asked');
      assert.equal(await closed, true, 'the source connection was still read 8 s after the answer');
    });
  }
});

/** An IPv4 address of this machine other than loopback: an upstream "on the network" without leaving the host. */
const ownAddress = Object.values(networkInterfaces())
  .flat()
  .find((a) => a?.family === 'IPv4' && !a.internal)?.address;

describe(
  'mirror: where an upstream may redirect the mirror',
  { timeout: 60_000, skip: ownAddress ? undefined : 'no IPv4 address on this machine but loopback' },
  () => {
    let up: Hostile;
    let sameNet: Hostile;
    let local: Hostile;
    let mirror: TestServer;
    const layer = randomBytes(3 * 1024 * 1024 + 7);

    before(async () => {
      // the upstream is on the network (this machine's address there, not loopback); the operator chose it
      up = await hostile({ host: ownAddress });
      sameNet = await hostile({ host: ownAddress });
      // a service on the mirror's own loopback (an admin port, a metadata proxy, a database)
      local = await hostile();
      local.handler = (_req, res) => {
        res.writeHead(200, { 'Content-Length': String(layer.length) });
        res.end(layer);
      };
      sameNet.handler = local.handler;
      mirror = await startTestServer({ standalone: true, v2: true, mirror: { upstreams: [{ url: up.url }], ...MIRROR } });
    });
    after(() =>
      cleanup(
        () => mirror?.stop(),
        () => up?.close(),
        () => sameNet?.close(),
        () => local?.close(),
      ),
    );

    it('a blob redirected to storage on the upstream’s own network is followed (the baseline)', async () => {
      up.handler = (_req, res) => {
        res.writeHead(307, { Location: `${sameNet.url}/storage/x` });
        res.end();
      };
      const r = await request(mirror.url, `/v2/evil/samenet/blobs/${sha(layer)}`);
      assert.equal(r.status, 200, r.text);
      assert.ok(r.body.equals(layer));
    });

    it('a Bearer realm on the mirror’s loopback: not asked (neither with the credentials nor without), and nothing of it shown', async () => {
      const before = local.seen.length;
      local.handler = (_req, res) => {
        res.writeHead(200, { 'Content-Type': 'application/json' });
        res.end('internal-secret-of-the-loopback-service');
      };
      up.handler = (_req, res) => {
        res.writeHead(401, { 'WWW-Authenticate': `Bearer realm="${local.url}/token",service="up"` });
        res.end();
      };
      const r = await within(10_000, request(mirror.url, '/v2/evil/realm/manifests/v1', { headers: ACCEPT }));
      assert.ok(typeof r === 'object' && !(r instanceof Error) && r.status >= 400 && r.status !== 500, String(r));
      assert.doesNotMatch(r.text, /internal-secret/);
      assert.equal(local.seen.length, before, `the mirror asked ${local.seen.at(-1)?.line} (${local.seen.at(-1)?.auth})`);
      // (back to serving the layer for the tests below)
      local.handler = sameNet.handler;
    });

    for (const [what, to] of [
      ['the mirror’s loopback', () => `${local.url}/secret`],
      ['a name resolving to loopback', () => `${local.url.replace('127.0.0.1', 'localhost')}/secret`],
      ['the mirror’s loopback as an IPv4-mapped IPv6 address', () => `${local.url.replace('127.0.0.1', '[::ffff:127.0.0.1]')}/secret`],
      ['a file: URL', () => 'file:///etc/passwd'],
    ] as const) {
      it(`a blob redirected to ${what}: not followed, 503, nothing read there`, async () => {
        const before = local.seen.length;
        up.handler = (_req, res) => {
          res.writeHead(307, { Location: to() });
          res.end();
        };
        const digest = sha(randomBytes(8));
        const r = await within(10_000, request(mirror.url, `/v2/evil/ssrf/blobs/${digest}`));
        assert.equal(local.seen.length, before, `${what}: the mirror asked ${local.seen.at(-1)?.line}`);
        assert.ok(typeof r === 'object' && !(r instanceof Error) && r.status === 503, String(r instanceof Error ? r : typeof r === 'object' ? r.status : r));
        // a manifest redirected there (request()): the same
        up.handler = (_req, res) => {
          res.writeHead(302, { Location: to() });
          res.end();
        };
        const m = await within(10_000, request(mirror.url, '/v2/evil/ssrf/manifests/v1', { headers: ACCEPT }));
        assert.equal(local.seen.length, before, `${what}: the mirror asked ${local.seen.at(-1)?.line}`);
        assert.ok(typeof m === 'object' && !(m instanceof Error) && m.status >= 400 && m.status !== 500, String(m));
      });
    }
  },
);
