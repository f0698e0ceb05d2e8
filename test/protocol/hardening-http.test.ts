import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from '../helpers/http.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { makeImage, pushImage } from '../helpers/v1-client.js';
import { loadConfig } from '../../src/config/load.js';
import { createLogger } from '../../src/log/logger.js';
import { startServer, type RunningServer } from '../../src/main.js';
import { saveRepository } from '../../src/db/repositories.js';

const sha = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Security issue 10, findings 12 and 18: the smaller things. */
describe('hardening: headers, suffix ranges, aborted uploads (standalone registry, v2 on)', () => {
  let dir: string;
  let s: RunningServer;
  const lines: string[] = [];
  const blob = Buffer.from(Array.from({ length: 1000 }, (_, i) => i % 251));
  const img = makeImage();
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'lr-http-'));
    const config = loadConfig({ env: {}, flavor: 'test', overrides: { host: '127.0.0.1', port: 0, storage_path: dir, standalone: true, v2: true } });
    s = await startServer(config, { logger: createLogger('debug', {}, (l) => lines.push(l)) });
    assert.equal((await request(s.url, `/v2/ranges/blob/blobs/uploads/?digest=${sha(blob)}`, { method: 'POST', body: blob })).status, 201);
    assert.deepEqual(
      (await pushImage(s.url, img)).map((r) => r.status),
      [404, 200, 200, 200],
    );
  });
  after(async () => {
    await s?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('every response carries X-Content-Type-Options: nosniff (answers, errors, 404s, HEAD)', async () => {
    for (const [method, path] of [
      ['GET', '/v1/_ping'],
      ['GET', `/v1/images/${img.id}/json`],
      ['GET', `/v1/images/${'0'.repeat(64)}/json`],
      ['GET', '/nowhere'],
      ['GET', '/v2/'],
      ['HEAD', `/v2/ranges/blob/blobs/${sha(blob)}`],
      ['GET', '/v2/NOT_A_NAME/tags/list'],
      ['GET', `/v1/images/${img.id}/layer`],
    ] as const) {
      const r = await request(s.url, path, { method });
      assert.equal(r.headers['x-content-type-options'], 'nosniff', `${method} ${path} → ${r.status}`);
    }
  });

  it('also the answers made outside the app: a bad request target, garbage on the socket', async () => {
    const { connect } = await import('node:net');
    const u = new URL(s.url);
    for (const raw of ['GET http://[bad HTTP/1.1\r\nHost: x\r\n\r\n', 'NOT-HTTP\r\n\r\n']) {
      const text = await new Promise<string>((resolve, reject) => {
        const sock = connect(Number(u.port), u.hostname, () => sock.write(raw));
        let out = '';
        sock.on('data', (d: Buffer) => (out += d.toString('latin1')));
        sock.on('end', () => resolve(out));
        sock.on('error', reject);
      });
      assert.match(text, /^HTTP\/1\.1 400 /, raw);
      assert.match(text, /\r\nX-Content-Type-Options: nosniff\r\n/i, raw);
    }
  });

  it('a client that half-closes after its request (shutdown of its write side) is answered, as distribution 2.8.2 answers it', async () => {
    const { connect } = await import('node:net');
    const u = new URL(s.url);
    const ask = (raw: string): Promise<string> =>
      new Promise<string>((resolve, reject) => {
        const sock = connect(Number(u.port), u.hostname, () => {
          sock.write(raw);
          sock.end(); // FIN: nothing more from the client, the answer still wanted
        });
        let out = '';
        const timer = setTimeout(() => {
          sock.destroy();
          resolve(out);
        }, 5000);
        sock.on('data', (d: Buffer) => (out += d.toString('latin1')));
        sock.on('close', () => {
          clearTimeout(timer);
          resolve(out);
        });
        sock.on('error', reject);
      });
    // routes that answer after storage or index I/O (node's default dropped the request at the FIN)
    for (const path of ['/v2/_catalog', `/v1/images/${img.id}/json`, `/v2/ranges/blob/blobs/${sha(blob)}`, '/v1/search?q=a']) {
      const text = await ask(`GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`);
      assert.match(text, /^HTTP\/1\.1 200 /, `${path}: ${JSON.stringify(text.slice(0, 60))}`);
    }
    // two pipelined requests, then the FIN: both answered, in order, then the connection ends
    const two = await ask(`GET /v1/_ping HTTP/1.1\r\nHost: x\r\n\r\nGET /v2/ranges/blob/blobs/${sha(blob)} HTTP/1.1\r\nHost: x\r\n\r\n`);
    assert.equal(two.match(/HTTP\/1\.1 200 /g)?.length, 2, JSON.stringify(two.slice(0, 200)));
    assert.ok(two.endsWith(blob.toString('latin1')), 'the second answer whole, last');
    // a body cut by the FIN is no request: nothing stored
    const cut = await ask(
      `POST /v2/ranges/cut/blobs/uploads/?digest=${sha(blob)} HTTP/1.1\r\nHost: x\r\nContent-Length: ${blob.length}\r\n\r\n${blob.subarray(0, 100).toString('latin1')}`,
    );
    assert.doesNotMatch(cut, /^HTTP\/1\.1 201 /);
    assert.equal((await request(s.url, `/v2/ranges/cut/blobs/${sha(blob)}`, { method: 'HEAD' })).status, 404);
  });

  it('Range: bytes=-N on a v2 blob: 206 with the last N bytes (RFC 7233 suffix range)', async () => {
    const path = `/v2/ranges/blob/blobs/${sha(blob)}`;
    const r = await request(s.url, path, { headers: { Range: 'bytes=-5' } });
    assert.equal(r.status, 206);
    assert.equal(r.headers['content-range'], 'bytes 995-999/1000');
    assert.equal(r.headers['content-length'], '5');
    assert.deepEqual(r.body, blob.subarray(995));
    // a suffix longer than the blob is the whole blob, as a 206
    const all = await request(s.url, path, { headers: { Range: 'bytes=-5000' } });
    assert.equal(all.status, 206);
    assert.equal(all.headers['content-range'], 'bytes 0-999/1000');
    assert.deepEqual(all.body, blob);
    // a zero-length suffix selects nothing: 416
    const none = await request(s.url, path, { headers: { Range: 'bytes=-0' } });
    assert.equal(none.status, 416);
    assert.equal(none.headers['content-range'], 'bytes */1000');
    // HEAD gets the headers of the same answer
    const head = await request(s.url, path, { method: 'HEAD', headers: { Range: 'bytes=-5' } });
    assert.equal(head.status, 206);
    assert.equal(head.headers['content-length'], '5');
  });

  it('Range: bytes=-N on a v1 layer: 206 with the last N bytes; bytes=a-b and a- as before', async () => {
    const path = `/v1/images/${img.id}/layer`;
    const size = img.layer.length;
    const r = await request(s.url, path, { headers: { Range: 'bytes=-7' } });
    assert.equal(r.status, 206);
    assert.equal(r.headers['content-range'], `bytes ${size - 7}-${size - 1}/${size}`);
    assert.deepEqual(r.body, img.layer.subarray(size - 7));
    const ab = await request(s.url, path, { headers: { Range: `bytes=2-${size}` } });
    assert.equal(ab.status, 206);
    assert.equal(ab.headers['content-range'], `bytes 2-${size - 1}/${size}`, 'the CLI asks one past the end: clamped (spec §2.6 REC)');
    const from = await request(s.url, path, { headers: { Range: 'bytes=3-' } });
    assert.equal(from.status, 206);
    assert.deepEqual(from.body, img.layer.subarray(3));
    const other = await request(s.url, path, { headers: { Range: 'bytes=0-1,4-5' } });
    assert.equal(other.status, 200, 'anything else is ignored (spec §2.6)');
    assert.equal(other.body.length, size);
  });

  it('a client aborting an upload is logged as a client abort (info), not as an ERROR with a stack', async () => {
    const before = lines.length;
    const start = await request(s.url, '/v2/ranges/aborted/blobs/uploads/', { method: 'POST' });
    assert.equal(start.status, 202);
    const location = String(start.headers.location);
    const u = new URL(s.url);
    await new Promise<void>((resolve) => {
      const req = httpRequest({
        host: u.hostname,
        port: u.port,
        method: 'PATCH',
        path: location,
        agent: false,
        headers: { 'Content-Type': 'application/octet-stream', 'Content-Length': String(1024 * 1024) },
      });
      req.on('error', () => resolve());
      req.write(Buffer.alloc(64 * 1024));
      setTimeout(() => {
        req.destroy();
        resolve();
      }, 200);
    });
    // and a v1 layer upload cut off the same way
    const v1 = makeImage();
    assert.equal((await request(s.url, `/v1/images/${v1.id}/json`, { method: 'PUT', body: v1.json })).status, 200);
    await new Promise<void>((resolve) => {
      const req = httpRequest({
        host: u.hostname,
        port: u.port,
        method: 'PUT',
        path: `/v1/images/${v1.id}/layer`,
        agent: false,
        headers: { 'Transfer-Encoding': 'chunked' },
      });
      req.on('error', () => resolve());
      req.write(Buffer.alloc(64 * 1024));
      setTimeout(() => {
        req.destroy();
        resolve();
      }, 200);
    });
    await sleep(300);
    const logged = lines.slice(before);
    assert.deepEqual(
      logged.filter((l) => / ERROR /.test(l)),
      [],
    );
    const aborts = logged.filter((l) => / INFO {2}client aborted the request /.test(l));
    assert.equal(aborts.length, 2, logged.join(''));
    assert.match(aborts[0]!, /method=PATCH path=\/v2\/ranges\/aborted\/blobs\/uploads\//);
    assert.match(aborts[1]!, /method=PUT path=\/v1\/images\/[0-9a-f]{64}\/layer/);
    for (const l of aborts) assert.doesNotMatch(l, /\\n +at /, 'no stack');
    // the server is fine afterwards
    assert.equal((await request(s.url, '/v1/_ping')).status, 200);
  });
});

/** /v1/search of the index. */
describe('hardening: /v1/search with control characters in q', () => {
  let s: TestServer;
  before(async () => {
    s = await startTestServer();
    for (const name of ['alpha', 'beta']) await saveRepository(s.db!, { namespace: 'library', name, description: `the ${name} image` });
  });
  after(() => s?.stop());

  it('matches nothing (200, no results), where it used to list every visible repository', async () => {
    const all = await request(s.url, '/v1/search?q=');
    assert.equal(all.status, 200);
    assert.equal(all.json<{ num_results: number }>().num_results, 2);
    for (const q of ['%00', '%01', 'al%00', '%7f', '%0d%0a', '%1b[31m']) {
      const r = await request(s.url, `/v1/search?q=${q}`);
      assert.equal(r.status, 200, q);
      assert.deepEqual(r.json(), { num_pages: 0, num_results: 0, page: 1, page_size: 25, query: decodeURIComponent(q), results: [] }, q);
    }
    const alpha = await request(s.url, '/v1/search?q=alpha');
    assert.equal(alpha.json<{ num_results: number }>().num_results, 1);
  });
});
