import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { request, type Response } from '../helpers/http.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { cleanup } from '../helpers/counting-proxy.js';
import { layerImage } from '../helpers/v2-client.js';
import { hostile, v1MirrorOfHostile, within, type Handler, type Hostile } from '../helpers/fake-upstream.js';

/**
 * The pull-through mirror (v2 and v1) against a hostile or broken upstream written here (node:http
 * on 127.0.0.1): huge, endless, nested, lying, hanging and redirecting answers, and what a client
 * can make the mirror ask upstream. Invariants: no crash, no 500, nothing unverified cached or
 * served complete, credentials only to the upstream, every wait bounded.
 */

const sha = (b: Buffer | string): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const S2 = 'application/vnd.docker.distribution.manifest.v2+json';
const LIST = 'application/vnd.docker.distribution.manifest.list.v2+json';
const ACCEPT = { Accept: `${S2}, ${LIST}, application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json` };

/** Writes `total` bytes of `fill` in 1 MiB pieces, respecting backpressure, until the peer goes. */
function pour(res: ServerResponse, total: number, fill = 0x20): void {
  const piece = Buffer.alloc(1024 * 1024, fill);
  let sent = 0;
  const go = (): void => {
    while (sent < total && !res.destroyed) {
      const n = Math.min(piece.length, total - sent);
      sent += n;
      if (!res.write(n === piece.length ? piece : piece.subarray(0, n))) {
        res.once('drain', go);
        return;
      }
    }
    if (sent >= total) res.end();
  };
  go();
}

const isServerError = (r: Response | 'timeout' | Error): boolean => typeof r === 'object' && !(r instanceof Error) && r.status === 500;

describe('mirror against a hostile upstream (v2)', { timeout: 60_000 }, () => {
  let up: Hostile;
  let other: Hostile;
  let mirror: TestServer;

  before(async () => {
    up = await hostile();
    other = await hostile();
    mirror = await startTestServer({
      standalone: true,
      v2: true,
      mirror: {
        upstreams: [{ url: up.url, username: 'mirror', password: 'secret' }],
        ttl: 0,
        negative_ttl: 0,
        timeout: 1,
        breaker_failures: 0,
      },
    });
  });
  after(() =>
    cleanup(
      () => mirror?.stop(),
      () => up?.close(),
      () => other?.close(),
    ),
  );

  it('a manifest by digest whose bytes hash to another digest: a 5xx-style error (not 200, 400 or 500), nothing cached', async () => {
    const good = layerImage(randomBytes(100)).manifest;
    const wanted = sha(Buffer.concat([good, Buffer.from(' ')]));
    up.handler = (_req, res) => {
      res.writeHead(200, { 'Content-Type': S2, 'Docker-Content-Digest': wanted });
      res.end(good);
    };
    for (let i = 0; i < 2; i++) {
      const r = await request(mirror.url, `/v2/evil/img/manifests/${wanted}`, { headers: ACCEPT });
      assert.ok(r.status === 502 || r.status === 503, `${r.status} ${r.text}`);
    }
    // the bytes were not published under their own digest either through this name
    const own = await request(mirror.url, `/v2/evil/img/manifests/${sha(good)}`, { headers: ACCEPT });
    assert.notEqual(own.status, 500);
  });

  it('a manifest by tag with a lying Docker-Content-Digest: served under the digest its bytes hash to', async () => {
    const m = layerImage(randomBytes(100)).manifest;
    up.handler = (_req, res) => {
      res.writeHead(200, { 'Content-Type': S2, 'Docker-Content-Digest': sha('something else') });
      res.end(m);
    };
    const r = await request(mirror.url, '/v2/evil/liar/manifests/v1', { headers: ACCEPT });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.headers['docker-content-digest'], sha(m));
    assert.ok(r.body.equals(m));
  });

  it('a 1 GB manifest (and a 1 GB tags list) is cut at the cap: an error, the upstream connection dropped', async () => {
    let served = 0;
    up.handler = (req, res) => {
      res.writeHead(200, { 'Content-Type': req.url!.includes('/tags/') ? 'application/json' : S2, 'Content-Length': String(1024 ** 3) });
      res.on('close', () => (served += 1));
      pour(res, 1024 ** 3);
    };
    const r = await within(10_000, request(mirror.url, '/v2/evil/huge/manifests/v1', { headers: ACCEPT }));
    assert.ok(typeof r === 'object' && !(r instanceof Error) && r.status === 503, String(r instanceof Error ? r : typeof r === 'object' ? r.status : r));
    const t = await within(10_000, request(mirror.url, '/v2/evil/huge/tags/list'));
    assert.ok(typeof t === 'object' && !(t instanceof Error) && t.status !== 500 && t.status !== 200, String(typeof t === 'object' ? t : t));
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(served, 2, 'both upstream answers were abandoned');
  });

  it('JSON nested 100,000 deep (manifest, tags list, token): 4xx/5xx errors, never 500 nor a crash', async () => {
    const deep = Buffer.from(`{"schemaVersion":2,"x":${'['.repeat(100_000)}${']'.repeat(100_000)}}`);
    const deepTags = Buffer.from(`{"name":"evil/deep","tags":${'['.repeat(100_000)}${']'.repeat(100_000)}}`);
    up.handler = (req, res) => {
      res.writeHead(200, { 'Content-Type': req.url!.includes('/tags/') ? 'application/json' : S2 });
      res.end(req.url!.includes('/tags/') ? deepTags : deep);
    };
    const m = await request(mirror.url, '/v2/evil/deep/manifests/v1', { headers: ACCEPT });
    assert.ok(m.status >= 400 && m.status !== 500, `${m.status} ${m.text.slice(0, 200)}`);
    const t = await request(mirror.url, '/v2/evil/deep/tags/list');
    assert.notEqual(t.status, 500);
    assert.equal((await request(mirror.url, '/v2/')).status, 200, 'still serving');
  });

  it('huge upstream headers: an error, not a crash', async () => {
    up.handler = (_req, res) => {
      // raw: 1 MiB of headers (node:http would refuse to write them)
      res.socket!.end(`HTTP/1.1 200 OK\r\nX-Pad: ${'a'.repeat(1024 * 1024)}\r\nContent-Length: 2\r\n\r\n{}`);
    };
    const r = await within(10_000, request(mirror.url, '/v2/evil/headers/manifests/v1', { headers: ACCEPT }));
    assert.ok(typeof r === 'object' && !(r instanceof Error) && r.status === 503, String(typeof r === 'object' ? r : r));
    const b = await within(10_000, request(mirror.url, `/v2/evil/headers/blobs/${sha('x')}`));
    assert.ok(typeof b === 'object' && !(b instanceof Error) && b.status === 503, String(typeof b === 'object' ? b : b));
  });

  it('an upstream that sends the headers, then never the body (manifest, tags): answered within a few timeouts', async () => {
    up.handler = (req, res) => {
      res.writeHead(200, { 'Content-Type': req.url!.includes('/tags/') ? 'application/json' : S2, 'Content-Length': '1000' });
      res.write('{"schemaVersion":');
      // and nothing more
    };
    const r = await within(8_000, request(mirror.url, '/v2/evil/hang/manifests/v1', { headers: ACCEPT }));
    assert.notEqual(r, 'timeout', 'the manifest request hangs on a stalled upstream body');
    assert.ok(typeof r === 'object' && !(r instanceof Error) && r.status === 503, String(typeof r === 'object' ? r : r));
    const t = await within(8_000, request(mirror.url, '/v2/evil/hang/tags/list'));
    assert.notEqual(t, 'timeout', 'the tags request hangs on a stalled upstream body');
  });

  it('an upstream that trickles a manifest a byte at a time: cut after the timeout, not held forever', async () => {
    up.handler = (_req, res) => {
      res.writeHead(200, { 'Content-Type': S2, 'Content-Length': String(4 * 1024 * 1024) });
      const t = setInterval(() => (res.destroyed ? clearInterval(t) : res.write(' ')), 200);
    };
    const r = await within(8_000, request(mirror.url, '/v2/evil/trickle/manifests/v1', { headers: ACCEPT }));
    assert.notEqual(r, 'timeout', 'a trickling upstream holds the request');
  });

  it('a blob whose body runs past its Content-Length: only the announced bytes are read (and verified)', async () => {
    const layer = randomBytes(300_000);
    up.handler = (_req, res) => {
      // raw: the blob, then garbage past the Content-Length on the same connection
      res.socket!.end(
        Buffer.concat([
          Buffer.from(`HTTP/1.1 200 OK\r\nContent-Length: ${layer.length}\r\nContent-Type: application/octet-stream\r\n\r\n`),
          layer,
          randomBytes(100_000),
        ]),
      );
    };
    const r = await request(mirror.url, `/v2/evil/long/blobs/${sha(layer)}`);
    assert.equal(r.status, 200);
    assert.ok(r.body.equals(layer));
  });

  it('a blob without Content-Length whose bytes do not match: never complete to the client, nothing cached', async () => {
    const layer = randomBytes(200_000);
    const digest = sha(layer);
    up.handler = (_req, res) => {
      res.writeHead(200, { 'Content-Type': 'application/octet-stream' }); // chunked
      const bad = Buffer.from(layer);
      bad[bad.length - 1] ^= 1;
      res.end(bad);
    };
    const r = await request(mirror.url, `/v2/evil/nolen/blobs/${digest}`).catch((e: unknown) => e as Error);
    if (!(r instanceof Error)) assert.ok(r.status !== 200 || r.body.length < layer.length, 'a complete wrong body was served');
    await new Promise((res) => setTimeout(res, 200));
    const hex = digest.slice(7);
    assert.equal(existsSync(join(mirror.dataDir, 'blobs', 'sha256', hex.slice(0, 2), hex)), false, 'nothing published');
  });

  it('a blob redirected to another host: followed without our credentials; redirect loops are bounded', async () => {
    const layer = randomBytes(50_000);
    // the upstream asks for Basic credentials first
    up.handler = (req, res) => {
      if (!req.headers.authorization) {
        res.writeHead(401, { 'WWW-Authenticate': 'Basic realm="up"' });
        res.end();
        return;
      }
      res.writeHead(307, { Location: `${other.url}/storage/${sha(layer).slice(7)}?sig=1` });
      res.end();
    };
    other.handler = (_req, res) => {
      res.writeHead(200, { 'Content-Length': String(layer.length) });
      res.end(layer);
    };
    const r = await request(mirror.url, `/v2/evil/redir/blobs/${sha(layer)}`);
    assert.equal(r.status, 200, r.text);
    assert.ok(r.body.equals(layer));
    assert.ok(
      up.seen.some((s) => s.auth?.startsWith('Basic ')),
      'the upstream got the credentials',
    );
    const storage = other.seen.filter((s) => s.line.startsWith('GET /storage/'));
    assert.ok(storage.length > 0);
    assert.ok(
      storage.every((s) => s.auth === undefined),
      'credentials went to the redirect target',
    );
    // a loop between the two hosts
    other.handler = (req, res) => {
      res.writeHead(302, { Location: `${up.url}${req.url}` });
      res.end();
    };
    up.handler = (req, res) => {
      res.writeHead(302, { Location: `${other.url}${req.url}` });
      res.end();
    };
    const before = up.seen.length + other.seen.length;
    const loop = await within(10_000, request(mirror.url, `/v2/evil/loop/blobs/${sha('loop')}`));
    assert.ok(typeof loop === 'object' && !(loop instanceof Error) && loop.status === 503, String(typeof loop === 'object' ? loop : loop));
    assert.ok(up.seen.length + other.seen.length - before <= 8, 'redirects are bounded');
  });

  it('a manifest list whose linux/amd64 child has an odd digest: no 500, nothing odd asked upstream', async () => {
    const bad = ['sha256:../../../../etc/passwd', 'sha256:abc?x=1#frag', `sha256:${'a'.repeat(64)}/../../x`];
    for (const [i, d] of bad.entries()) {
      const list = Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: LIST,
          manifests: [{ mediaType: S2, size: 10, digest: d, platform: { os: 'linux', architecture: 'amd64' } }],
        }),
      );
      up.handler = (req, res) => {
        if (req.url!.endsWith('/manifests/v1')) {
          res.writeHead(200, { 'Content-Type': LIST });
          res.end(list);
        } else {
          res.writeHead(404);
          res.end();
        }
      };
      const from = up.seen.length;
      // a client that accepts no lists gets the list's linux/amd64 child
      const r = await request(mirror.url, `/v2/evil/list${i}/manifests/v1`, { headers: { Accept: S2 } });
      assert.ok(r.status >= 400 && r.status !== 500, `${d}: ${r.status} ${r.text}`);
      const asked = up.seen.slice(from).map((s) => s.line);
      assert.ok(
        asked.every((l) => /^GET \/v2\/evil\/list\d\/manifests\/(v1|sha256:[a-f0-9]{64})$/.test(l)),
        `${d}: asked upstream ${JSON.stringify(asked)}`,
      );
    }
  });

  it('odd names, tags and digests from clients never reach the upstream request path', async () => {
    up.handler = (_req, res) => {
      res.writeHead(404);
      res.end();
    };
    const from = up.seen.length;
    const paths = [
      '/v2/evil/a/manifests/..%2F..%2Fx',
      '/v2/evil/a/manifests/x%3Fy',
      '/v2/evil/a/manifests/x%23y',
      '/v2/evil/..%2Fx/manifests/v1',
      '/v2/evil/%2E%2E/manifests/v1',
      '/v2/evil/a/blobs/sha256:..%2F..',
      '/v2/evil/a/blobs/sha256:abc%3F',
      '/v2/evil/a%3Fb/tags/list',
    ];
    for (const p of paths) {
      const r = await request(mirror.url, p, { headers: ACCEPT });
      assert.ok(r.status >= 400 && r.status < 500, `${p}: ${r.status}`);
    }
    const asked = up.seen.slice(from).map((s) => s.line);
    assert.ok(
      asked.every((l) => !/\.\.|%2F|\?|#/i.test(l)),
      JSON.stringify(asked),
    );
  });

  it('an endless token answer (capped) and a token realm on another host (followed, with the Basic credentials as docker does)', async () => {
    let tokenCalls = 0;
    const layer = layerImage(randomBytes(10)).manifest;
    other.handler = (req, res) => {
      tokenCalls++;
      // the token for evil/tok is endless; the one for evil/tok2 is a token
      if (req.url!.includes(encodeURIComponent('evil/tok:'))) {
        res.writeHead(200, { 'Content-Type': 'application/json' });
        pour(res, 1024 ** 3);
        return;
      }
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ token: 'tok-for-mirror', expires_in: 300 }));
    };
    const realm = `${other.url}/token`;
    up.handler = (req, res) => {
      if (req.headers.authorization !== 'Bearer tok-for-mirror') {
        res.writeHead(401, { 'WWW-Authenticate': `Bearer realm="${realm}",service="up"` });
        res.end();
        return;
      }
      res.writeHead(200, { 'Content-Type': S2 });
      res.end(layer);
    };
    const e = await within(10_000, request(mirror.url, '/v2/evil/tok/manifests/v1', { headers: ACCEPT }));
    assert.ok(typeof e === 'object' && !(e instanceof Error) && e.status >= 400 && e.status !== 500, String(typeof e === 'object' ? e : e));
    const ok = await request(mirror.url, '/v2/evil/tok2/manifests/v1', { headers: ACCEPT });
    assert.equal(ok.status, 200, ok.text);
    assert.ok(tokenCalls >= 2);
  });

  it('a token service that moved: the new challenge of the upstream is learnt, not the failing realm kept forever', async () => {
    const m = layerImage(randomBytes(10)).manifest;
    let realm = `${other.url}/token`;
    other.handler = (_req, res) => {
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ token: 'tok-old', expires_in: 300 }));
    };
    up.handler = (req, res) => {
      if (req.url!.startsWith('/newtoken')) {
        res.writeHead(200, { 'Content-Type': 'application/json' });
        res.end(JSON.stringify({ token: 'tok-new', expires_in: 300 }));
        return;
      }
      const want = realm.startsWith(other.url) ? 'Bearer tok-old' : 'Bearer tok-new';
      if (req.headers.authorization !== want) {
        res.writeHead(401, { 'WWW-Authenticate': `Bearer realm="${realm}",service="up"` });
        res.end();
        return;
      }
      res.writeHead(200, { 'Content-Type': S2 });
      res.end(m);
    };
    // the mirror learns the first token service
    const first = await request(mirror.url, '/v2/evil/before-move/manifests/v1', { headers: ACCEPT });
    assert.equal(first.status, 200, first.text);
    // it moves: the old one fails, the upstream names the new one
    other.handler = (_req, res) => {
      res.writeHead(404);
      res.end();
    };
    realm = `${up.url}/newtoken`;
    const r = await request(mirror.url, '/v2/evil/after-move/manifests/v1', { headers: ACCEPT });
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.body, m);
  });
});

/** A v1 upstream (Python's mirroring.source) that answers as told. */
describe('mirror against a hostile upstream (v1 mirroring.source)', { timeout: 60_000 }, () => {
  const m = v1MirrorOfHostile();
  const id = (c: string): string => c.repeat(64);

  const v1Upstream =
    (img: string, json: unknown, ancestry: unknown, layer: Buffer): Handler =>
    (req, res) => {
      if (req.url === `/v1/images/${img}/json`) {
        res.writeHead(200, { 'Content-Type': 'application/json' });
        res.end(typeof json === 'string' ? json : JSON.stringify(json));
      } else if (req.url === `/v1/images/${img}/ancestry`) {
        res.writeHead(200, { 'Content-Type': 'application/json' });
        res.end(typeof ancestry === 'string' ? ancestry : JSON.stringify(ancestry));
      } else if (req.url === `/v1/images/${img}/layer`) {
        res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': String(layer.length) });
        res.end(layer);
      } else {
        res.writeHead(404);
        res.end();
      }
    };

  it('an image whose json/ancestry are inconsistent or malformed is not stored as a local record', async () => {
    const layer = randomBytes(1000);
    const cases: [string, unknown, unknown][] = [
      [id('1'), { id: id('2') }, [id('1')]], // json of another image
      [id('3'), { id: id('3') }, [id('4'), id('3')]], // ancestry not starting with the id
      [id('5'), { id: id('5'), parent: id('6') }, [id('5'), '../../../../x']], // an invalid id
      [id('7'), { id: id('7') }, { not: 'a list' }],
      [id('8'), { id: id('8') }, `${'['.repeat(100_000)}${']'.repeat(100_000)}`],
      [id('9'), 'not json', [id('9')]],
    ];
    for (const [img, json, anc] of cases) {
      m.up.handler = v1Upstream(img, json, anc, layer);
      const r = await request(m.mirror.url, `/v1/images/${img}/layer`);
      assert.notEqual(r.status, 500, `${img}: ${r.text}`);
      await new Promise((res) => setTimeout(res, 100));
      // the upstream gone, the image must not be there locally
      m.up.handler = (_req, res) => {
        res.writeHead(404);
        res.end();
      };
      const local = await request(m.mirror.url, `/v1/images/${img}/json`);
      assert.equal(local.status, 404, `${img}: stored from an inconsistent upstream answer: ${local.text.slice(0, 200)}`);
      const anc2 = await request(m.mirror.url, `/v1/images/${img}/ancestry`);
      assert.notEqual(anc2.status, 500);
    }
  });

  it('a consistent image is stored (the baseline of the test above)', async () => {
    const layer = randomBytes(1000);
    const img = id('b');
    m.up.handler = v1Upstream(img, { id: img }, [img], layer);
    const r = await request(m.mirror.url, `/v1/images/${img}/layer`);
    assert.equal(r.status, 200);
    assert.ok(r.body.equals(layer));
    await new Promise((res) => setTimeout(res, 100));
    m.up.handler = (_req, res) => {
      res.writeHead(404);
      res.end();
    };
    assert.equal((await request(m.mirror.url, `/v1/images/${img}/json`)).status, 200);
  });

  it('a client that goes away during a layer: the upstream connection is released', async () => {
    const img = id('c');
    m.up.handler = (req, res) => {
      if (req.url === `/v1/images/${img}/json`) {
        res.writeHead(200, { 'Content-Type': 'application/json' });
        res.end(JSON.stringify({ id: img }));
      } else if (req.url === `/v1/images/${img}/ancestry`) {
        res.writeHead(200, { 'Content-Type': 'application/json' });
        res.end(JSON.stringify([img]));
      } else if (req.url === `/v1/images/${img}/layer`) {
        res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': String(64 * 1024 * 1024) });
        pour(res, 64 * 1024 * 1024);
      } else {
        res.writeHead(404);
        res.end();
      }
    };
    await new Promise<void>((resolve, reject) => {
      const u = new URL(m.mirror.url);
      const req = httpRequest({ host: u.hostname, port: u.port, path: `/v1/images/${img}/layer`, agent: false }, (res) => {
        let got = 0;
        res.on('data', (c: Buffer) => {
          got += c.length;
          if (got > 2 * 1024 * 1024) {
            res.pause();
            // reads a little, stops reading, then goes
            setTimeout(() => {
              req.destroy();
              resolve();
            }, 300);
          }
        });
        res.on('error', () => undefined);
      });
      req.on('error', (e) => (e.message.includes('socket hang up') || e.message.includes('aborted') ? resolve() : reject(e)));
      req.end();
    });
    let open = m.up.open();
    for (let i = 0; i < 80 && open > 0; i++) {
      await new Promise((r) => setTimeout(r, 100));
      open = m.up.open();
    }
    assert.equal(open, 0, 'the upstream layer download goes on (or hangs) after the client left');
  });

  it('an upstream that sends the json headers, then nothing: answered within a few timeouts', async () => {
    const img = id('d');
    m.up.handler = (_req, res) => {
      res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': '100' });
      res.write('{');
    };
    const r = await within(8_000, request(m.mirror.url, `/v1/images/${img}/json`));
    assert.notEqual(r, 'timeout', 'the v1 json request hangs on a stalled upstream body');
    assert.ok(!isServerError(r));
  });
});

describe('mirror: many distinct blobs at once (client-driven memory)', { timeout: 60_000 }, () => {
  it('the bytes fills retain for late joiners are bounded across all fills, and given back', async () => {
    const { blobFillRetain } = await import('../../src/mirror/blob-fill.js');
    const up = await hostile();
    const mirror = await startTestServer({ standalone: true, v2: true, mirror: { upstreams: [{ url: up.url }], ttl: 0, timeout: 2, breaker_failures: 0 } });
    const saved = blobFillRetain.limit;
    blobFillRetain.limit = 4 * 1024 * 1024;
    try {
      // each blob: 3 MiB, then the upstream stalls (the fill holds what it retained meanwhile)
      up.handler = (_req, res) => {
        res.writeHead(200, { 'Content-Length': String(8 * 1024 * 1024) });
        res.write(Buffer.alloc(3 * 1024 * 1024, 1));
      };
      const pulls = [1, 2, 3, 4].map((i) => request(mirror.url, `/v2/many/img/blobs/${sha(`blob ${i}`)}`).catch((e: unknown) => e as Error));
      let peak = 0;
      for (let i = 0; i < 15; i++) {
        await new Promise((r) => setTimeout(r, 100));
        peak = Math.max(peak, blobFillRetain.used);
      }
      assert.ok(peak > 0, 'the fills retained something');
      assert.ok(peak <= 4 * 1024 * 1024, `retained ${peak} bytes across fills`);
      await Promise.all(pulls);
      await new Promise((r) => setTimeout(r, 200));
      assert.equal(blobFillRetain.used, 0, 'failed fills gave their retained bytes back');
    } finally {
      blobFillRetain.limit = saved;
      await cleanup(
        () => mirror.stop(),
        () => up.close(),
      );
    }
  });
});

describe('mirror: many distinct uncached blobs at once (upstream connections)', { timeout: 60_000 }, () => {
  it('the connections opened upstream for blob bodies are bounded; the rest wait, then fail as unavailable, and the server goes on', async () => {
    const { BLOB_SOCKETS } = await import('../../src/mirror/upstream.js');
    const up = await hostile();
    const mirror = await startTestServer({ standalone: true, v2: true, mirror: { upstreams: [{ url: up.url }], ttl: 0, timeout: 2, breaker_failures: 0 } });
    try {
      // every blob: headers and a first piece, then the upstream stalls (each holds its connection)
      up.handler = (req, res) => {
        if (req.method !== 'GET' || !req.url?.includes('/blobs/')) {
          res.statusCode = 404;
          res.end();
          return;
        }
        res.writeHead(200, { 'Content-Length': String(4 * 1024 * 1024) });
        res.write(Buffer.alloc(64 * 1024, 1));
      };
      const n = BLOB_SOCKETS + 24;
      const pulls = Array.from({ length: n }, (_, i) => within(15_000, request(mirror.url, `/v2/many/conns/blobs/${sha(`conn blob ${i}`)}`)));
      let peak = 0;
      for (let i = 0; i < 20; i++) {
        await new Promise((r) => setTimeout(r, 50));
        peak = Math.max(peak, up.open());
      }
      assert.ok(peak >= BLOB_SOCKETS / 2, `${peak} upstream connections at the peak`);
      assert.ok(peak <= BLOB_SOCKETS + 2, `${peak} upstream connections at once, the bound is ${BLOB_SOCKETS}`);
      const answers = await Promise.all(pulls);
      for (const a of answers) {
        assert.notEqual(a, 'timeout', 'every client got an answer or a cut connection');
        if (typeof a === 'object' && !(a instanceof Error)) assert.notEqual(a.status, 500);
      }
      // the slots came back: a blob the upstream serves whole now goes through
      const good = Buffer.alloc(70_000, 7);
      up.handler = (_req, res) => {
        res.writeHead(200, { 'Content-Length': String(good.length) });
        res.end(good);
      };
      const r = await request(mirror.url, `/v2/many/conns/blobs/${sha(good)}`);
      assert.equal(r.status, 200);
      assert.ok(r.body.equals(good));
    } finally {
      await cleanup(
        () => mirror.stop(),
        () => up.close(),
      );
    }
  });
});

/** A GET whose answer is not read until `resume` is called: the response and a promise of its whole body. */
function pausedGet(base: string, path: string): Promise<{ res: IncomingMessage; body: () => Promise<Buffer> }> {
  const u = new URL(base);
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: u.hostname, port: u.port, path, agent: false }, (res) => {
      res.pause();
      resolve({
        res,
        body: () =>
          new Promise<Buffer>((ok, fail) => {
            const parts: Buffer[] = [];
            res.on('data', (c: Buffer) => parts.push(c));
            res.once('end', () => ok(Buffer.concat(parts)));
            res.once('error', fail);
            res.once('aborted', () => fail(new Error('aborted')));
            res.resume();
          }),
      });
    });
    req.once('error', reject);
    req.end();
  });
}

describe('mirror: a client that stops reading a shared blob download', { timeout: 90_000 }, () => {
  let up: Hostile;
  let mirror: TestServer;
  // far more than a client's queue, the sockets' buffers and the start kept for late clients together
  const blob = randomBytes(96 * 1024 * 1024);
  const digest = sha(blob);
  let upstreamDone: Promise<void>;

  before(async () => {
    up = await hostile();
    mirror = await startTestServer({
      standalone: true,
      v2: true,
      mirror: { upstreams: [{ url: up.url }], ttl: 0, negative_ttl: 0, timeout: 1, breaker_failures: 0 },
    });
  });
  after(() =>
    cleanup(
      () => mirror?.stop(),
      () => up?.close(),
    ),
  );

  /** The upstream serves the blob at full speed; `upstreamDone` resolves when all of it was taken. */
  const serve = (): void => {
    let finished!: () => void;
    upstreamDone = new Promise((r) => (finished = r));
    up.handler = (req, res) => {
      if (req.method !== 'GET' || req.url !== `/v2/slow/client/blobs/${digest}`) {
        res.statusCode = 404;
        res.end();
        return;
      }
      res.writeHead(200, { 'Content-Length': String(blob.length) });
      res.once('finish', finished);
      let off = 0;
      const go = (): void => {
        while (off < blob.length) {
          const piece = blob.subarray(off, off + 1024 * 1024);
          off += piece.length;
          if (!res.write(piece)) return void res.once('drain', go);
        }
        res.end();
      };
      go();
    };
  };

  it('does not pace or stall the download for a client that reads; it gets its bytes later, whole', async () => {
    serve();
    const path = `/v2/slow/client/blobs/${digest}`;
    const stuck = await pausedGet(mirror.url, path);
    assert.equal(stuck.res.statusCode, 200);
    // a second client of the same fill, reading at once: neither paced by the stuck one nor cut when
    // the download waits past the mirror's 1 s stall time
    const started = Date.now();
    const reader = await within(20_000, request(mirror.url, path));
    assert.ok(typeof reader === 'object' && !(reader instanceof Error), `the reading client got ${String(reader)}`);
    assert.equal(reader.status, 200);
    assert.equal(reader.body.length, blob.length, 'the reading client got the whole blob');
    assert.equal(sha(reader.body), digest);
    const took = Date.now() - started;
    await within(
      5_000,
      upstreamDone.then(() => ({ status: 0 }) as unknown as Response),
    );
    assert.equal(up.seen.filter((s) => s.line === `GET ${path}`).length, 1, 'one upstream download for both clients');
    // the stuck client, after all that time: the rest of its bytes come from the cached blob
    await new Promise((r) => setTimeout(r, 1_500));
    const rest = await stuck.body();
    assert.equal(rest.length, blob.length, `the slow client got ${rest.length} of ${blob.length} bytes (the reader took ${took} ms)`);
    assert.equal(sha(rest), digest);
  });

  it('a client alone that stops reading for longer than the stall time: the download goes on, the client gets every byte', async () => {
    // a new name: not the blob the first case cached
    const path = `/v2/slow/alone/blobs/${digest}`;
    let finished!: () => void;
    const done = new Promise<void>((r) => (finished = r));
    const inner = up.handler;
    up.handler = (req, res) => {
      if (req.url === path) {
        res.writeHead(200, { 'Content-Length': String(blob.length) });
        res.once('finish', finished);
        res.end(blob);
        return;
      }
      inner(req, res);
    };
    const stuck = await pausedGet(mirror.url, path);
    assert.equal(stuck.res.statusCode, 200);
    let timer: NodeJS.Timeout | undefined;
    const taken = await Promise.race([done.then(() => true), new Promise<boolean>((r) => (timer = setTimeout(() => r(false), 8_000)))]);
    clearTimeout(timer);
    assert.ok(taken, 'the upstream download finished while the client was not reading');
    const rest = await stuck.body();
    assert.equal(rest.length, blob.length);
    assert.equal(sha(rest), digest);
    const again = await request(mirror.url, path);
    assert.equal(again.status, 200);
    assert.equal(sha(again.body), digest, 'cached');
  });
});

describe('mirror: a client that stops reading does not hold up clients that come later', { timeout: 90_000 }, () => {
  let up: Hostile;
  let mirror: TestServer;
  const blob = randomBytes(24 * 1024 * 1024);
  const digest = sha(blob);

  before(async () => {
    up = await hostile();
    // a stall time far longer than the deadlines below: a wait for the stuck client shows as a timeout
    mirror = await startTestServer({
      standalone: true,
      v2: true,
      mirror: { upstreams: [{ url: up.url }], ttl: 0, negative_ttl: 0, timeout: 30, breaker_failures: 0 },
    });
    up.handler = (_req, res) => {
      res.writeHead(200, { 'Content-Length': String(blob.length) });
      res.end(blob);
    };
  });
  after(() =>
    cleanup(
      () => mirror?.stop(),
      () => up?.close(),
    ),
  );

  /** A first client that stops reading, alone on the download long enough to be past its 4 MiB. */
  const stuckAlone = async (path: string): Promise<Awaited<ReturnType<typeof pausedGet>>> => {
    const stuck = await pausedGet(mirror.url, path);
    assert.equal(stuck.res.statusCode, 200);
    await new Promise((r) => setTimeout(r, 500));
    return stuck;
  };

  it('one that joins the live download gets the blob without waiting out the stall time', async () => {
    const path = `/v2/later/live/blobs/${digest}`;
    const stuck = await stuckAlone(path);
    try {
      const reader = await within(10_000, request(mirror.url, path));
      assert.ok(typeof reader === 'object' && !(reader instanceof Error), `the joining client got ${String(reader)}`);
      assert.equal(reader.status, 200);
      assert.equal(sha(reader.body), digest);
      const rest = await stuck.body();
      assert.equal(rest.length, blob.length);
      assert.equal(sha(rest), digest, 'the stuck client got every byte, from the cache');
    } finally {
      stuck.res.destroy();
    }
  });

  it('one that waits for the cached blob (no start kept to replay) is not held up either', async () => {
    const { blobFillRetain } = await import('../../src/mirror/blob-fill.js');
    const saved = blobFillRetain.limit;
    // nothing retained: a client that comes after the first waits for the cached blob
    blobFillRetain.limit = 0;
    const path = `/v2/later/cached/blobs/${digest}`;
    let stuck: Awaited<ReturnType<typeof pausedGet>> | undefined;
    try {
      stuck = await stuckAlone(path);
      const reader = await within(10_000, request(mirror.url, path));
      assert.ok(typeof reader === 'object' && !(reader instanceof Error), `the waiting client got ${String(reader)}`);
      assert.equal(reader.status, 200);
      assert.equal(sha(reader.body), digest);
      const rest = await stuck.body();
      assert.equal(rest.length, blob.length);
      assert.equal(sha(rest), digest, 'the stuck client got every byte, from the cache');
    } finally {
      blobFillRetain.limit = saved;
      stuck?.res.destroy();
    }
  });
});

describe('mirror against a hostile upstream: blobs past max_layer_size', { timeout: 60_000 }, () => {
  let up: Hostile;
  let mirror: TestServer;
  const MAX = 1024 * 1024;

  before(async () => {
    up = await hostile();
    mirror = await startTestServer({
      standalone: true,
      v2: true,
      max_layer_size: MAX,
      mirror: { upstreams: [{ url: up.url }], ttl: 0, negative_ttl: 0, timeout: 2, breaker_failures: 0 },
    });
  });
  after(() =>
    cleanup(
      () => mirror?.stop(),
      () => up?.close(),
    ),
  );

  const uploadsLeft = (): number => {
    const dir = join(mirror.dataDir, 'uploads');
    return existsSync(dir) ? readdirSync(dir).length : 0;
  };

  it('an endless body without Content-Length is cut at max_layer_size: not complete to the client, nothing cached or left behind', async () => {
    const digest = sha(randomBytes(32));
    let poured = 0;
    up.handler = (_req, res) => {
      res.writeHead(200, { 'Content-Type': 'application/octet-stream' }); // chunked, no length
      pour(res, Number.POSITIVE_INFINITY);
      res.on('close', () => (poured = 1));
    };
    const r = await within(20_000, request(mirror.url, `/v2/evil/endless/blobs/${digest}`));
    assert.notEqual(r, 'timeout', 'the mirror kept reading an endless body');
    if (typeof r === 'object' && !(r instanceof Error)) assert.ok(r.status !== 200 || r.body.length <= MAX, `${r.status}: ${r.body.length} bytes`);
    for (let i = 0; i < 50 && (poured === 0 || uploadsLeft() > 0); i++) await new Promise((res) => setTimeout(res, 100));
    assert.equal(poured, 1, 'the upstream connection was not dropped');
    assert.equal(uploadsLeft(), 0, 'the partial copy was left in uploads/');
    const hex = digest.slice(7);
    assert.equal(existsSync(join(mirror.dataDir, 'blobs', 'sha256', hex.slice(0, 2), hex)), false, 'nothing published');
  });

  it('an announced Content-Length past max_layer_size: refused before the body is read', async () => {
    const digest = sha(randomBytes(32));
    up.handler = (req, res) => {
      res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': String(64 * MAX) });
      if (req.method === 'GET') pour(res, 64 * MAX);
      else res.end();
    };
    const r = await within(10_000, request(mirror.url, `/v2/evil/big/blobs/${digest}`));
    assert.ok(typeof r === 'object' && !(r instanceof Error), String(r));
    assert.ok(r.status >= 500 && r.status !== 500, `status ${r.status}`);
    assert.equal(uploadsLeft(), 0);
    // a blob within the cap is still fetched, verified and cached
    const small = randomBytes(100_000);
    up.handler = (_req, res) => {
      res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': String(small.length) });
      res.end(small);
    };
    const ok = await request(mirror.url, `/v2/evil/small/blobs/${sha(small)}`);
    assert.equal(ok.status, 200);
    assert.deepEqual(ok.body, small);
  });
});
