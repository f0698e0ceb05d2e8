import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { request } from '../helpers/http.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

const sha = (b: Buffer | string): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/** A raw connection to the server; `closed` resolves with the time it was closed and what it received. */
function raw(url: string): { socket: Socket; closed: Promise<{ afterMs: number; text: string }> } {
  const u = new URL(url);
  const t0 = performance.now();
  const socket = connect(Number(u.port), u.hostname);
  let text = '';
  socket.on('data', (d: Buffer) => (text += d.toString('latin1')));
  socket.on('error', () => {});
  const closed = new Promise<{ afterMs: number; text: string }>((resolve) => socket.once('close', () => resolve({ afterMs: performance.now() - t0, text })));
  return { socket, closed };
}

/**
 * Slow and oversized clients (issue 17, security matrix): a client that trickles its headers is cut
 * off by headers_timeout, one that stops mid-body by idle_timeout, and neither changes anything nor
 * slows the others; oversized headers and bodies are refused before they are read. And the other side
 * of the idle timeout: a request the server is still working on (here a mirror waiting on a slow
 * upstream) is not cut by it — under overload that cut used to end queued pushes with "socket hang up".
 */
describe('slow and oversized clients', { timeout: 120_000 }, () => {
  let s: TestServer;
  let upstream: Server;
  let upstreamUrl = '';
  const IDLE_S = 1;
  const HEADERS_S = 2;
  before(async () => {
    // an upstream registry that answers manifests after 3 s (slower than the idle timeout, faster than the mirror's upstream timeout)
    upstream = createServer((req, res) => {
      if (req.url === '/v2/' || req.url === '/v2') {
        res.writeHead(200, { 'Content-Type': 'application/json', 'Docker-Distribution-API-Version': 'registry/2.0' }).end('{}');
        return;
      }
      const m = /^\/v2\/(.+)\/manifests\/([^/]+)$/.exec(req.url ?? '');
      if (!m) {
        res.writeHead(404).end();
        return;
      }
      const config = Buffer.from('{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}');
      const body = Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: 'application/vnd.docker.distribution.manifest.v2+json',
          config: { mediaType: 'application/vnd.docker.container.image.v1+json', size: config.length, digest: sha(config) },
          layers: [],
        }),
      );
      setTimeout(() => {
        res.writeHead(200, {
          'Content-Type': 'application/vnd.docker.distribution.manifest.v2+json',
          'Content-Length': body.length,
          'Docker-Content-Digest': sha(body),
        });
        res.end(req.method === 'HEAD' ? undefined : body);
      }, 3000);
    });
    await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
    upstreamUrl = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;
    s = await startTestServer({
      standalone: true,
      v2: true,
      idle_timeout: IDLE_S,
      headers_timeout: HEADERS_S,
      mirror: { upstreams: [{ prefix: 'slow/', url: upstreamUrl }], ttl: 3600, negative_ttl: 2, timeout: 10, breaker_failures: 3, breaker_seconds: 2 },
    });
  });
  after(async () => {
    await s?.stop();
    await new Promise<void>((r) => upstream.close(() => r()));
  });

  it('a client trickling its headers is cut off by headers_timeout (408), though it never goes idle', async () => {
    const c = raw(s.url);
    c.socket.write('GET /v2/ HTTP/1.1\r\nHost: x\r\n');
    const drip = setInterval(() => c.socket.writable && c.socket.write('X-Drip: 1\r\n'), 300);
    const { afterMs, text } = await c.closed;
    clearInterval(drip);
    assert.ok(afterMs >= HEADERS_S * 1000 - 100 && afterMs < HEADERS_S * 1000 * 1.25 + 1500, `closed after ${Math.round(afterMs)} ms`);
    assert.match(text, /^HTTP\/1\.1 408 /, 'a 408 before the close');
  });

  it('a client that stops mid-body is closed after idle_timeout and leaves nothing (the blob is not there)', async () => {
    const body = randomBytes(256 * 1024);
    const start = await request(s.url, '/v2/alice/stall/blobs/uploads/', { method: 'POST' });
    assert.equal(start.status, 202, start.text);
    const loc = new URL(String(start.headers.location), s.url);
    loc.searchParams.set('digest', sha(body));
    const c = raw(s.url);
    c.socket.write(`PUT ${loc.pathname}${loc.search} HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: ${body.length}\r\n\r\n`);
    c.socket.write(body.subarray(0, 1000));
    const { afterMs, text } = await c.closed;
    assert.ok(afterMs >= IDLE_S * 1000 - 100 && afterMs < IDLE_S * 1000 + 2000, `closed after ${Math.round(afterMs)} ms`);
    assert.equal(text, '', 'no answer: the request never completed');
    const head = await request(s.url, `/v2/alice/stall/blobs/${sha(body)}`, { method: 'HEAD' });
    assert.equal(head.status, 404);
  });

  it('forty stalled clients do not slow the others: every normal request answers within 500 ms meanwhile', async () => {
    const stalled = Array.from({ length: 40 }, (_, i) => {
      const c = raw(s.url);
      c.socket.write(
        i % 2 === 0
          ? 'GET /v2/ HTTP/1.1\r\nHost: x\r\n'
          : 'POST /v1/users/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"user',
      );
      return c;
    });
    const times: number[] = [];
    for (let i = 0; i < 20; i++) {
      const t0 = performance.now();
      const r = await request(s.url, '/v2/');
      times.push(performance.now() - t0);
      assert.equal(r.status, 200);
    }
    assert.ok(Math.max(...times) < 500, `slowest ${Math.round(Math.max(...times))} ms`);
    // and the stalled ones are gone within the timeouts
    const ends = await Promise.all(stalled.map((c) => c.closed));
    assert.ok(
      Math.max(...ends.map((e) => e.afterMs)) < HEADERS_S * 1000 * 1.25 + 2000,
      `last closed after ${Math.round(Math.max(...ends.map((e) => e.afterMs)))} ms`,
    );
  });

  it('oversized headers are refused with 431 before anything else is read', async () => {
    const c = raw(s.url);
    c.socket.write(`GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(64 * 1024)}\r\n\r\n`);
    const { afterMs, text } = await c.closed;
    assert.match(text, /^HTTP\/1\.1 431 /);
    assert.ok(afterMs < 1000, `closed after ${Math.round(afterMs)} ms`);
  });

  it('a JSON body announced larger than max_json_size is refused (413) without waiting for it', async () => {
    const c = raw(s.url);
    c.socket.write('POST /v1/users/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 104857600\r\n\r\n{"username":"big","password":"x');
    const t0 = performance.now();
    // an answer arrives while the client sends nothing more (or the wait ends after 1.5 s)
    await new Promise<void>((r) => {
      const t = setTimeout(r, 1500);
      c.socket.once('data', () => {
        clearTimeout(t);
        setTimeout(r, 50);
      });
    });
    const waited = performance.now() - t0;
    c.socket.destroy();
    const { text } = await c.closed;
    assert.match(text, /^HTTP\/1\.1 413 /, `answer: ${text.slice(0, 80)}`);
    assert.ok(waited < 1500, `answered after ${Math.round(waited)} ms`);
  });

  it('a request waiting on the server longer than idle_timeout is answered, not cut (a mirror on a 3-s upstream)', async () => {
    const t0 = performance.now();
    const r = await request(s.url, '/v2/slow/lib/app/manifests/latest', { headers: { Accept: 'application/vnd.docker.distribution.manifest.v2+json' } });
    const ms = performance.now() - t0;
    assert.equal(r.status, 200, r.text);
    assert.ok(ms >= 2900, `answered after ${Math.round(ms)} ms`);
    assert.equal(JSON.parse(r.text).schemaVersion, 2);
  });
});
