import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { createServer, request as httpRequest, type Server } from 'node:http';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from '../helpers/http.js';
import { getAndGoAway, openFds, settledFds } from '../helpers/going-away.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { sendfileJobs, sendfileReadsAhead, sendfileStatus, sendfileUncached, sendWithSendfile } from '../../src/http/sendfile.js';

const sha = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const IDLE_S = 2;

/** Bytes of the file in the page cache (util-linux fincore). */
function cachedBytes(path: string): number {
  const r = spawnSync('fincore', ['--bytes', '--noheadings', '--output', 'RES', path], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return Number(r.stdout.trim());
}

/** Drops the file's clean pages from the page cache (GNU dd: posix_fadvise DONTNEED over the whole file). */
function evict(path: string): void {
  const r = spawnSync('dd', [`if=${path}`, 'iflag=nocache', 'count=0', 'status=none'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
}

/** Responses read off a raw socket, in order: status, headers, body (by Content-Length; none for a HEAD). */
function readResponses(sock: Socket, methods: readonly string[]): Promise<{ status: number; headers: Record<string, string>; body: Buffer }[]> {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    const out: { status: number; headers: Record<string, string>; body: Buffer }[] = [];
    const parse = (): void => {
      for (;;) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        const lines = buf.subarray(0, end).toString('latin1').split('\r\n');
        const headers: Record<string, string> = {};
        for (const l of lines.slice(1)) headers[l.slice(0, l.indexOf(':')).toLowerCase()] = l.slice(l.indexOf(':') + 1).trim();
        const len = methods[out.length] === 'HEAD' ? 0 : Number(headers['content-length'] ?? 0);
        if (buf.length < end + 4 + len) return;
        out.push({ status: Number(lines[0]!.split(' ')[1]), headers, body: Buffer.from(buf.subarray(end + 4, end + 4 + len)) });
        buf = buf.subarray(end + 4 + len);
        if (out.length === methods.length) {
          sock.off('data', onData);
          resolve(out);
          return;
        }
      }
    };
    const onData = (c: Buffer): void => {
      buf = Buffer.concat([buf, c]);
      parse();
    };
    sock.on('data', onData);
    sock.on('error', reject);
    sock.on('close', () => reject(new Error(`closed after ${out.length} of ${methods.length} responses (${buf.length} bytes left)`)));
  });
}

/**
 * Blob downloads with sendfile (src/http/sendfile.ts, native/sendfile.c): the kernel writes the
 * body on a duplicate of the socket's descriptor while node's HTTP server still owns the socket.
 * The framing must stay exact (keep-alive, pipelined requests), a client that stalls is cut after
 * the idle timeout, and one that goes away leaves no descriptor behind.
 */
describe('downloads with sendfile', { skip: sendfileStatus().on ? false : `sendfile is off here: ${sendfileStatus().reason}` }, () => {
  let s: TestServer;
  const blob = randomBytes(5 * 1024 * 1024 + 777);
  const digest = sha(blob);
  const path = `/v2/sf/blob/blobs/${digest}`;
  before(async () => {
    s = await startTestServer({ standalone: true, v2: true, idle_timeout: IDLE_S });
    const r = await request(s.url, `/v2/sf/blob/blobs/uploads/?digest=${digest}`, { method: 'POST', body: blob });
    assert.equal(r.status, 201);
  });
  after(() => s.stop());

  it('keeps the framing on one connection: pipelined GETs, a range and a small request, in order', async () => {
    const u = new URL(s.url);
    const sock = connect(Number(u.port), u.hostname);
    await new Promise((r) => sock.once('connect', r));
    const before = sendfileJobs();
    const got = readResponses(sock, ['GET', 'GET', 'GET', 'HEAD', 'GET']);
    // all five in one write: the server answers them in order on the same socket
    sock.write(
      `GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n` +
        `GET ${path} HTTP/1.1\r\nHost: x\r\nRange: bytes=1000-3000000\r\n\r\n` +
        `GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n` +
        `HEAD ${path} HTTP/1.1\r\nHost: x\r\n\r\n` +
        `GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`,
    );
    const [full, part, ping, head, again] = await got;
    sock.destroy();
    assert.equal(full!.status, 200);
    assert.ok(full!.body.equals(blob), 'first whole body');
    assert.equal(part!.status, 206);
    assert.equal(part!.headers['content-range'], `bytes 1000-3000000/${blob.length}`);
    assert.ok(part!.body.equals(blob.subarray(1000, 3000001)), 'range body');
    assert.equal(ping!.status, 200);
    assert.equal(head!.status, 200);
    assert.equal(head!.headers['content-length'], String(blob.length));
    assert.ok(again!.body.equals(blob), 'last whole body');
    assert.ok(sendfileJobs() - before >= 1, 'at least the first download went through sendfile');
  });

  it('cuts a client that stops reading after the idle timeout, and closes everything', async () => {
    const u = new URL(s.url);
    const big = randomBytes(64 * 1024 * 1024);
    const d = sha(big);
    assert.equal((await request(s.url, `/v2/sf/stall/blobs/uploads/?digest=${d}`, { method: 'POST', body: big })).status, 201);
    await sleep(100);
    const fds = openFds();
    const sock = connect(Number(u.port), u.hostname);
    await new Promise((r) => sock.once('connect', r));
    // the client reads nothing: the socket buffers fill and the server's sends stop at EAGAIN. A
    // paused socket does not see the server's close either: the server side is watched, by this
    // process's descriptors (the client's socket, the server's, the blob's file and sendfile's
    // duplicate of the server's socket)
    sock.pause();
    const t0 = Date.now();
    sock.write(`GET /v2/sf/stall/blobs/${d} HTTP/1.1\r\nHost: x\r\n\r\n`);
    await sleep(500);
    assert.ok(openFds() >= fds + 3, `descriptors while stalled: ${fds} → ${openFds()}`);
    while (openFds() > fds + 1 && Date.now() - t0 < (IDLE_S * 3 + 2) * 1000) await sleep(50);
    const waited = (Date.now() - t0) / 1000;
    assert.ok(openFds() <= fds + 1, `descriptors ${fds} → ${openFds()} after ${waited.toFixed(1)} s`);
    assert.ok(waited >= IDLE_S * 0.9, `cut after ${waited.toFixed(1)} s (idle timeout ${IDLE_S} s)`);
    // what the kernel held is delivered, then the end: never the whole blob
    let got = 0;
    const ended = new Promise<void>((r) => sock.once('close', () => r()));
    sock.on('data', (c: Buffer) => (got += c.length));
    sock.on('error', () => undefined);
    sock.resume();
    await ended;
    assert.ok(got > 0 && got < big.length, `the stalled client got ${got} bytes`);
    // the server goes on
    const r = await request(s.url, path);
    assert.ok(r.body.equals(blob));
  });

  it('reads bytes the page cache does not hold in the thread pool before sending them, and the body stays exact', async () => {
    // sendfile would read them from the disk on the event loop's thread
    const file = join(s.dataDir, 'blobs', 'sha256', digest.slice(7, 9), digest.slice(7), 'data');
    spawnSync('sync');
    evict(file);
    assert.ok(cachedBytes(file) < blob.length / 2, `${cachedBytes(file)} bytes still cached`);
    const ahead = sendfileReadsAhead();
    const fallbacks = sendfileUncached();
    const cold = await request(s.url, path);
    assert.ok(cold.body.equals(blob), 'body read from the disk');
    // 5 MiB in windows of 8 MiB: one read-ahead, and nothing left to the buffered reads
    assert.ok(sendfileReadsAhead() - ahead >= 1, `${sendfileReadsAhead() - ahead} windows read ahead`);
    assert.equal(sendfileUncached(), fallbacks);
    // the same with a part cached: the first MiB read, the rest evicted
    evict(file);
    const head = await request(s.url, path, { headers: { Range: 'bytes=0-1048575' } });
    assert.ok(head.body.equals(blob.subarray(0, 1048576)));
    const mixed = await request(s.url, path);
    assert.ok(mixed.body.equals(blob), 'body partly from the page cache, partly from the disk');
    // and ranges of a cold file that start and end off page boundaries
    evict(file);
    const part = await request(s.url, path, { headers: { Range: 'bytes=4097-5000000' } });
    assert.ok(part.body.equals(blob.subarray(4097, 5000001)), 'range of a cold file');
    // read whole once more, it is all cached: sendfile sends it with no read-ahead
    assert.ok((await request(s.url, path)).body.equals(blob));
    const again = sendfileReadsAhead();
    const warm = await request(s.url, path);
    assert.ok(warm.body.equals(blob));
    assert.equal(sendfileReadsAhead(), again, 'a cached blob is sent with no read-ahead');
  });

  it('reads a large cold blob ahead window by window while it sends', async () => {
    const big = randomBytes(40 * 1024 * 1024 + 4321);
    const d = sha(big);
    assert.equal((await request(s.url, `/v2/sf/cold/blobs/uploads/?digest=${d}`, { method: 'POST', body: big })).status, 201);
    const file = join(s.dataDir, 'blobs', 'sha256', d.slice(7, 9), d.slice(7), 'data');
    spawnSync('sync');
    evict(file);
    const ahead = sendfileReadsAhead();
    const r = await request(s.url, `/v2/sf/cold/blobs/${d}`);
    assert.ok(r.body.equals(big));
    // 40 MiB in 8 MiB windows: 5 on a quiet machine; a window is read only where the page cache
    // lacks it, and on a busy machine the kernel's own read-ahead fills some (3 seen once in CI with
    // other suites running): more than one window shows the blob was read window by window
    assert.ok(sendfileReadsAhead() - ahead >= 2, `${sendfileReadsAhead() - ahead} windows read ahead`);
  });

  it('leaves no descriptor behind for clients that go away mid-body, and keeps serving', async () => {
    await sleep(100);
    const before = openFds();
    // each at another point of the body
    for (let i = 0; i < 8; i++) await getAndGoAway(s.url, path, (i + 1) * 300_000);
    const now = await settledFds(before, 2000);
    assert.ok(now <= before, `open descriptors ${before} → ${now}`);
    const all = await Promise.all(Array.from({ length: 6 }, () => request(s.url, path)));
    for (const r of all) assert.ok(r.body.equals(blob));
  });
});

describe('sendWithSendfile on its own', { skip: sendfileStatus().on ? false : `sendfile is off here: ${sendfileStatus().reason}` }, () => {
  let dir: string;
  let server: Server;
  let port = 0;
  let outcome: Promise<unknown> = Promise.resolve();
  const data = randomBytes(1024 * 1024);
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'lr-sendfile-'));
    writeFileSync(join(dir, 'f'), data);
    server = createServer((req, res) => {
      const promised = Number(new URL(req.url!, 'http://x').searchParams.get('length'));
      outcome = (async () => {
        const fh = await open(join(dir, 'f'), 'r');
        try {
          res.statusCode = 200;
          res.setHeader('Content-Length', promised);
          const r = await sendWithSendfile(res, fh.fd, 0, promised);
          // what send-file.ts does next: reads the rest (here: none) and cuts a short file's response
          if (!r.over) res.destroy();
          return r;
        } finally {
          await fh.close();
        }
      })();
      outcome.catch(() => undefined);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.address() as AddressInfo).port;
  });
  after(async () => {
    await new Promise((r) => server.close(r));
    await rm(dir, { recursive: true, force: true });
  });

  it('sends the file exactly', async () => {
    const r = await request(`http://127.0.0.1:${port}`, `/?length=${data.length}`);
    assert.equal(r.status, 200);
    assert.ok(r.body.equals(data));
    assert.deepEqual(await outcome, { over: true, sent: data.length });
  });

  it('stops at the end of a file shorter than promised: nothing beyond it is sent, the rest is left to the caller', async () => {
    const got = await new Promise<{ bytes: number; aborted: boolean }>((resolve) => {
      const req = httpRequest({ host: '127.0.0.1', port, path: `/?length=${2 * data.length}`, agent: false }, (res) => {
        let bytes = 0;
        res.on('data', (c: Buffer) => (bytes += c.length));
        res.on('aborted', () => resolve({ bytes, aborted: true }));
        res.on('error', () => resolve({ bytes, aborted: true }));
        res.on('end', () => resolve({ bytes, aborted: false }));
      });
      req.on('error', () => resolve({ bytes: -1, aborted: true }));
      req.end();
    });
    assert.equal(got.aborted, true);
    const r = (await outcome) as { over: boolean; sent: number };
    assert.equal(r.over, false);
    assert.ok(r.sent <= data.length && got.bytes === r.sent, `sent ${r.sent}, the client got ${got.bytes}`);
  });
});
