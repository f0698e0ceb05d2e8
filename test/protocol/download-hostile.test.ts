import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, truncateSync, unlinkSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import v8 from 'node:v8';
import { runInNewContext } from 'node:vm';
import { request } from '../helpers/http.js';
import { selfSignedCert } from '../helpers/tls.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { makeImage, pushImage } from '../helpers/v1-client.js';
import { sendfileJobs, sendfileStatus, setSendfile } from '../../src/http/sendfile.js';
import { directIoStatus, setDirectIo } from '../../src/storage/direct-io.js';
import { keys } from '../../src/content/keys.js';

/**
 * The download path against hostile and odd clients (blobs and layers, with sendfile and through
 * the buffers): every response carries exactly the bytes its status and headers promise, or the
 * connection is cut; never a byte of another response; and the server neither hangs nor leaks.
 * Responses are read off raw sockets, byte for byte, in order.
 */

const sha = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const openFds = (): number => readdirSync('/proc/self/fd').length;
const MODES = ['sendfile', 'buffers'] as const;
const modeOn = (mode: (typeof MODES)[number]): void => setSendfile(mode === 'sendfile');

interface Resp {
  readonly status: number;
  readonly headers: Record<string, string>;
  readonly body: Buffer;
  /** All of Content-Length arrived. */
  readonly whole: boolean;
}

/**
 * Responses in `bytes`, in order (interim 1xx ones left out); `methods` tells which requests were
 * HEADs. What does not parse as a response ends the list (`rest` says how many bytes were left).
 */
function parseAll(bytes: Buffer, methods: readonly string[]): { responses: Resp[]; rest: number } {
  const responses: Resp[] = [];
  let i = 0;
  while (i < bytes.length) {
    const end = bytes.indexOf('\r\n\r\n', i);
    if (end < 0 || !bytes.subarray(i, i + 9).equals(Buffer.from('HTTP/1.1 '))) break;
    const lines = bytes.subarray(i, end).toString('latin1').split('\r\n');
    const status = Number(lines[0]!.split(' ')[1]);
    const headers: Record<string, string> = {};
    for (const l of lines.slice(1)) headers[l.slice(0, l.indexOf(':')).toLowerCase()] = l.slice(l.indexOf(':') + 1).trim();
    if (status >= 100 && status < 200) {
      i = end + 4;
      continue;
    }
    const len = methods[responses.length] === 'HEAD' ? 0 : Number(headers['content-length'] ?? 0);
    const body = Buffer.from(bytes.subarray(end + 4, end + 4 + len));
    responses.push({ status, headers, body, whole: body.length === len });
    i = end + 4 + len;
  }
  return { responses, rest: bytes.length - i };
}

interface Exchange {
  /** Everything the server sent until it closed the connection (or `ms` passed). */
  readonly bytes: Buffer;
  /** Whether the server closed it (false: the test gave up after `ms` and destroyed it). */
  readonly closed: boolean;
}

/**
 * Writes `first` on a new connection, then runs `then` (more writes while answers are in flight),
 * and collects what comes back until the server closes the connection. `slow`: the client stops
 * reading for that many ms after each chunk it gets (the socket buffers fill meanwhile); `startAfter`:
 * it reads nothing for that long at first.
 */
async function exchange(
  url: string,
  first: string,
  opts: { slow?: number; startAfter?: number; ms?: number; then?: (s: Socket) => Promise<void>; tls?: boolean } = {},
): Promise<Exchange> {
  const u = new URL(url);
  const sock: Socket = opts.tls ? tlsConnect({ host: u.hostname, port: Number(u.port), rejectUnauthorized: false }) : connect(Number(u.port), u.hostname);
  await new Promise((r) => sock.once(opts.tls ? 'secureConnect' : 'connect', r));
  const chunks: Buffer[] = [];
  let closed = false;
  const done = new Promise<void>((resolve) => {
    sock.on('data', (c: Buffer) => {
      chunks.push(c);
      if (opts.slow) {
        sock.pause();
        setTimeout(() => sock.resume(), opts.slow);
      }
    });
    sock.on('error', () => undefined);
    sock.on('close', () => {
      closed = true;
      resolve();
    });
  });
  if (opts.startAfter) {
    sock.pause();
    setTimeout(() => sock.resume(), opts.startAfter);
  }
  sock.write(first);
  await opts.then?.(sock);
  let gaveUp = false;
  const timer = setTimeout(() => {
    gaveUp = true;
    sock.destroy();
  }, opts.ms ?? 15_000);
  await done;
  clearTimeout(timer);
  return { bytes: Buffer.concat(chunks), closed: closed && !gaveUp };
}

const GET = (path: string, extra = ''): string => `GET ${path} HTTP/1.1\r\nHost: x\r\n${extra}\r\n`;
const LAST = GET('/v2/', 'Connection: close\r\n');

describe('downloads against hostile clients', { timeout: 90_000 }, () => {
  let s: TestServer;
  // above SENDFILE_MIN (256 KiB): sendfile when on; below: always the buffers
  const big = randomBytes(6 * 1024 * 1024 + 333);
  const mid = randomBytes(300 * 1024 + 7);
  const small = randomBytes(100 * 1024 + 5);
  const tiny = randomBytes(17);
  const at = (b: Buffer): string => `/v2/dl/hostile/blobs/${sha(b)}`;
  before(async () => {
    s = await startTestServer({ standalone: true, v2: true, idle_timeout: 2, storage_delete: true });
    for (const b of [big, mid, small, tiny]) {
      const r = await request(s.url, `/v2/dl/hostile/blobs/uploads/?digest=${sha(b)}`, { method: 'POST', body: b });
      assert.equal(r.status, 201);
    }
  });
  after(async () => {
    setSendfile(true);
    await s.stop();
  });

  it('pipelined requests are answered in order, byte for byte, fast or slow reader, in one packet or one by one', async () => {
    const missing = `/v2/dl/hostile/blobs/sha256:${'0'.repeat(64)}`;
    const reqs: [string, string, string, Buffer | undefined, number][] = [
      ['GET', at(big), '', big, 200],
      ['GET', at(mid), 'Range: bytes=1000-200000\r\n', mid.subarray(1000, 200001), 206],
      ['HEAD', at(big), '', Buffer.alloc(0), 200],
      ['GET', '/v2/', '', undefined, 200],
      ['GET', missing, '', undefined, 404],
      ['GET', at(small), 'Range: bytes=-100\r\n', small.subarray(small.length - 100), 206],
      ['GET', at(small), '', small, 200],
      ['GET', at(tiny), '', tiny, 200],
      ['GET', at(mid), 'Range: bytes=5-\r\n', mid.subarray(5), 206],
      ['GET', at(big), 'Range: bytes=0-0\r\n', big.subarray(0, 1), 206],
      ['GET', at(big), 'Range: bytes=1048570-5000000\r\n', big.subarray(1048570, 5000001), 206],
      ['GET', at(big), '', big, 200],
    ];
    const texts = reqs.map(([m, p, h]) => `${m} ${p} HTTP/1.1\r\nHost: x\r\n${h}\r\n`);
    for (const mode of MODES)
      for (const slow of [0, 2])
        for (const oneByOne of [false, true]) {
          modeOn(mode);
          const jobs = sendfileJobs();
          const x = oneByOne
            ? await exchange(s.url, texts[0]!, {
                slow,
                then: async (sock) => {
                  // each while the answers before it are in flight
                  for (const t of texts.slice(1)) {
                    await sleep(3);
                    sock.write(t);
                  }
                  sock.write(LAST);
                },
              })
            : await exchange(s.url, texts.join('') + LAST, { slow });
          const what = `${mode}, slow ${slow}, ${oneByOne ? 'one by one' : 'one packet'}`;
          assert.ok(x.closed, what);
          const { responses, rest } = parseAll(x.bytes, [...reqs.map((r) => r[0]), 'GET']);
          assert.equal(rest, 0, what);
          assert.equal(responses.length, reqs.length + 1, what);
          reqs.forEach(([m, p, h, want, status], i) => {
            const r = responses[i]!;
            assert.equal(r.status, status, `${what}: ${m} ${p} ${h}`);
            assert.ok(r.whole, `${what}: ${m} ${p} ${h}`);
            if (want) assert.ok(r.body.equals(want), `${what}: body of ${m} ${p} ${h}`);
          });
          assert.equal(responses[2]!.headers['content-length'], String(big.length));
          if (mode === 'sendfile' && sendfileStatus().on) assert.ok(sendfileJobs() > jobs, what);
          if (mode === 'buffers') assert.equal(sendfileJobs(), jobs, what);
        }
  });

  it('ranges: exact bytes, headers and statuses at the edges, for GET and HEAD', async () => {
    for (const mode of MODES)
      for (const b of [big, small]) {
        modeOn(mode);
        const n = b.length;
        // [Range, status, first byte, last byte] (200 and 416: the whole or nothing)
        const cases: [string, number, number, number][] = [
          ['bytes=0-0', 206, 0, 0],
          [`bytes=${n - 1}-${n - 1}`, 206, n - 1, n - 1],
          [`bytes=${n - 1}-`, 206, n - 1, n - 1],
          ['bytes=-1', 206, n - 1, n - 1],
          [`bytes=-${n}`, 206, 0, n - 1],
          [`bytes=-${n + 5}`, 206, 0, n - 1],
          [`bytes=${n >> 1}-${(n >> 1) + 1}`, 206, n >> 1, (n >> 1) + 1],
          [`bytes=7-${n + 100}`, 206, 7, n - 1],
          ['bytes=0-99999999999999999999999', 206, 0, n - 1],
          ['bytes=-0', 416, 0, -1],
          [`bytes=${n}-`, 416, 0, -1],
          [`bytes=${n}-${n + 5}`, 416, 0, -1],
          ['bytes=99999999999999999999-', 416, 0, -1],
          ['bytes=5-3', 416, 0, -1],
          // several ranges and what does not parse: ignored, the whole body
          ['bytes=0-1,5-6', 200, 0, n - 1],
          ['bytes=abc', 200, 0, n - 1],
          ['items=0-5', 200, 0, n - 1],
          ['bytes=--5', 200, 0, n - 1],
        ];
        for (const [range, status, a, z] of cases) {
          const what = `${mode}, ${n} bytes, ${range}`;
          const r = await request(s.url, at(b), { headers: { Range: range } });
          const h = await request(s.url, at(b), { method: 'HEAD', headers: { Range: range } });
          assert.equal(r.status, status, what);
          assert.equal(h.status, status, what);
          const length = z - a + 1;
          assert.equal(r.headers['content-length'], String(length), what);
          assert.equal(h.headers['content-length'], String(length), what);
          assert.ok(r.body.equals(b.subarray(a, z + 1)), what);
          assert.equal(h.body.length, 0, what);
          const cr = status === 206 ? `bytes ${a}-${z}/${n}` : status === 416 ? `bytes */${n}` : undefined;
          assert.equal(r.headers['content-range'], cr, what);
          assert.equal(h.headers['content-range'], cr, what);
        }
      }
  });

  it('a bad request pipelined behind a download never writes its answer into that body', async () => {
    // the server's clientError handler answered 400 on the socket whatever was in flight: the
    // client read `HTTP/1.1 400 Bad Request…` as bytes of the blob
    for (const mode of MODES)
      for (const garbage of ['BOGUS / HTTP/1.1\r\n\r\n', `GET / HTTP/1.1\r\nHost: x\r\nX: ${'a'.repeat(20_000)}\r\n`]) {
        modeOn(mode);
        const x = await exchange(s.url, GET(at(big)), {
          startAfter: 300,
          then: async (sock) => {
            await sleep(100);
            sock.write(garbage);
          },
        });
        const what = `${mode}, ${garbage.slice(0, 12)}`;
        assert.ok(x.closed, what);
        assert.equal(x.bytes.indexOf('HTTP/1.1 4'), -1, `${what}: an error answer on the wire`);
        const { responses } = parseAll(x.bytes, ['GET']);
        assert.equal(responses[0]!.status, 200, what);
        const body = responses[0]!.body;
        // cut, and what arrived is the blob's
        assert.ok(body.equals(big.subarray(0, body.length)), `${what}: foreign bytes in the body`);
      }
    // with nothing in flight, garbage still gets its 400
    const x = await exchange(s.url, 'BOGUS / HTTP/1.1\r\n\r\n');
    assert.equal(parseAll(x.bytes, ['GET']).responses[0]!.status, 400);
  });

  it('bytes after a Connection: close request are ignored: its answer goes out whole, then the connection closes', async () => {
    for (const mode of MODES)
      for (const b of [big, small]) {
        modeOn(mode);
        const x = await exchange(s.url, GET(at(b), 'Connection: close\r\n') + GET('/v2/'), { startAfter: 200 });
        const what = `${mode}, ${b.length} bytes`;
        assert.ok(x.closed, what);
        const { responses, rest } = parseAll(x.bytes, ['GET']);
        assert.equal(responses.length, 1, what);
        assert.equal(rest, 0, what);
        assert.equal(responses[0]!.status, 200, what);
        assert.ok(responses[0]!.body.equals(b), what);
      }
  });

  it('Expect: 100-continue on pipelined GETs: a 100 never lands inside a body', async () => {
    for (const mode of MODES)
      for (const b of [big, small]) {
        modeOn(mode);
        const expect = 'Expect: 100-continue\r\n';
        const x = await exchange(s.url, GET(at(b), expect) + GET(at(b), expect) + GET(at(b), `${expect}Range: bytes=3-\r\n`) + LAST, { startAfter: 200 });
        const what = `${mode}, ${b.length} bytes`;
        assert.ok(x.closed, what);
        const { responses, rest } = parseAll(x.bytes, ['GET', 'GET', 'GET', 'GET']);
        assert.equal(rest, 0, what);
        // node closes the connection after a response whose 100 was not sent: what came is exact
        assert.ok(responses.length >= 2, `${what}: ${responses.length} responses`);
        for (const [i, r] of responses.entries()) {
          if (i === 3) break;
          assert.ok(r.whole, `${what}: response ${i}`);
          assert.ok(r.body.equals(i === 2 ? b.subarray(3) : b), `${what}: body ${i}`);
        }
      }
  });

  it('HTTP/1.0 and Connection: close requests: the whole body, then the connection closes', async () => {
    for (const mode of MODES)
      for (const b of [big, small])
        for (const req of [`GET ${at(b)} HTTP/1.0\r\n\r\n`, GET(at(b), 'Connection: close\r\n')]) {
          modeOn(mode);
          const x = await exchange(s.url, req, { slow: 1 });
          const what = `${mode}, ${b.length} bytes, ${req.slice(-30)}`;
          assert.ok(x.closed, what);
          const { responses, rest } = parseAll(x.bytes, ['GET']);
          assert.equal(rest, 0, what);
          assert.equal(responses.length, 1, what);
          assert.ok(responses[0]!.body.equals(b), what);
        }
  });

  it('a client that half-closes gets a prefix of the right bytes at most, and the connection closes', async () => {
    // node's HTTP server ends its side when the client's ends (httpAllowHalfOpen false): no answer
    // is owed, only no wrong bytes and no hang
    for (const mode of MODES)
      for (const b of [big, small]) {
        modeOn(mode);
        const x = await exchange(s.url, GET(at(b)), { then: async (sock) => void sock.end(), ms: 5_000 });
        assert.ok(x.closed, `${mode}, ${b.length} bytes`);
        const { responses } = parseAll(x.bytes, ['GET']);
        if (responses[0]) assert.ok(responses[0].body.equals(b.subarray(0, responses[0].body.length)));
      }
    assert.ok((await request(s.url, at(big))).body.equals(big));
  });

  it('200 downloads cut mid-body (close or RST, sendfile and buffers) leave no descriptor and a healthy server', async () => {
    await sleep(100);
    const before = openFds();
    for (let i = 0; i < 200; i++) {
      modeOn(MODES[i % 2]!);
      const b = i % 4 < 2 ? big : small;
      const u = new URL(s.url);
      const sock = connect(Number(u.port), u.hostname);
      await new Promise((r) => sock.once('connect', r));
      sock.on('error', () => undefined);
      const cutAt = (i * 7919) % b.length;
      await new Promise<void>((resolve) => {
        let got = 0;
        sock.on('data', (c: Buffer) => {
          got += c.length;
          if (got <= cutAt) return;
          if (i % 3 === 0) sock.resetAndDestroy();
          else sock.destroy();
          resolve();
        });
        sock.on('close', () => resolve());
        sock.write(GET(at(b), i % 5 === 0 ? 'Range: bytes=11-\r\n' : ''));
      });
    }
    let now = openFds();
    for (let waited = 0; waited < 3000 && now > before; waited += 50) {
      await sleep(50);
      now = openFds();
    }
    assert.ok(now <= before, `open descriptors ${before} → ${now}`);
    setSendfile(true);
    const all = await Promise.all([big, small, big, mid].map((b) => request(s.url, at(b))));
    for (const [i, b] of [big, small, big, mid].entries()) assert.ok(all[i]!.body.equals(b));
  });

  it('a client that stops reading is cut after idle_timeout on either path, with only the blob bytes sent', async () => {
    const huge = randomBytes(48 * 1024 * 1024);
    assert.equal((await request(s.url, `/v2/dl/hostile/blobs/uploads/?digest=${sha(huge)}`, { method: 'POST', body: huge })).status, 201);
    for (const mode of MODES) {
      modeOn(mode);
      const t0 = Date.now();
      // reads nothing for 6 s (idle_timeout 2 s), then all there is
      const x = await exchange(s.url, GET(at(huge)), { startAfter: 6_000 });
      const waited = Date.now() - t0;
      assert.ok(x.closed, mode);
      const { responses } = parseAll(x.bytes, ['GET']);
      const body = responses[0]!.body;
      assert.ok(!responses[0]!.whole && body.length > 0, `${mode}: ${body.length} bytes`);
      assert.ok(body.equals(huge.subarray(0, body.length)), mode);
      assert.ok(waited >= 5_900, `${mode}: ${waited} ms`);
    }
  });

  it('clients that stop reading hold at most a chunk each in the buffered path (reads wait while the socket is backed up)', async () => {
    const huge = randomBytes(48 * 1024 * 1024);
    assert.equal((await request(s.url, `/v2/dl/hostile/blobs/uploads/?digest=${sha(huge)}`, { method: 'POST', body: huge })).status, 201);
    modeOn('buffers');
    // the chunks are external memory: what 40 stuck downloads keep, after a full collection
    v8.setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const held = (): number => {
      gc();
      gc();
      return process.memoryUsage().arrayBuffers / (1024 * 1024);
    };
    const before = held();
    const socks: Socket[] = [];
    try {
      for (let i = 0; i < 40; i++) {
        const c = connect(Number(new URL(s.url).port), '127.0.0.1');
        c.pause();
        c.write(GET(at(huge)));
        socks.push(c);
      }
      await new Promise((r) => setTimeout(r, 1500));
      // up to three 1 MiB chunks in flight each before (72 MiB for 40 here), one now (40 MiB)
      const grew = held() - before;
      assert.ok(grew < 52, `${grew.toFixed(1)} MiB held for 40 clients that stopped reading`);
    } finally {
      for (const c of socks) c.destroy();
      setSendfile(true);
    }
  });

  it('a blob deleted (and its file unlinked) while it downloads is still sent whole', async () => {
    for (const mode of MODES) {
      modeOn(mode);
      const b = randomBytes(12 * 1024 * 1024);
      const d = sha(b);
      assert.equal((await request(s.url, `/v2/dl/gone/blobs/uploads/?digest=${d}`, { method: 'POST', body: b })).status, 201);
      const x = exchange(s.url, GET(`/v2/dl/gone/blobs/${d}`, 'Connection: close\r\n'), { slow: 2 });
      await sleep(100);
      assert.equal((await request(s.url, `/v2/dl/gone/blobs/${d}`, { method: 'DELETE' })).status, 202);
      unlinkSync(join(s.dataDir, 'blobs', 'sha256', d.slice(7, 9), d.slice(7), 'data'));
      const { responses } = parseAll((await x).bytes, ['GET']);
      assert.ok(responses[0]!.body.equals(b), mode);
      assert.equal((await request(s.url, `/v2/dl/gone/blobs/${d}`)).status, 404);
    }
  });

  it('a v1 layer whose stored file is shorter than its recorded size: a 500 before any byte, the next response intact', async () => {
    // the layer's recorded size was promised as Content-Length and the short file sent: the
    // connection stayed open and the next response's bytes were read as the rest of the layer
    for (const mode of MODES)
      for (const size of [600 << 10, 30 << 10]) {
        modeOn(mode);
        const img = makeImage(undefined, { 'f.bin': randomBytes(size).toString('base64') });
        await pushImage(s.url, img);
        const hex = sha(img.layer).slice(7);
        truncateSync(join(s.dataDir, 'blobs', 'sha256', hex.slice(0, 2), hex, 'data'), img.layer.length >> 1);
        for (const range of ['', 'Range: bytes=10-\r\n', `Range: bytes=${img.layer.length - 10}-\r\n`]) {
          const x = await exchange(s.url, GET(`/v1/images/${img.id}/layer`, range) + LAST);
          const what = `${mode}, ${img.layer.length} bytes, ${range}`;
          assert.ok(x.closed, what);
          const { responses, rest } = parseAll(x.bytes, ['GET', 'GET']);
          assert.equal(rest, 0, what);
          assert.deepEqual(
            responses.map((r) => r.status),
            [500, 200],
            what,
          );
        }
        // a range within what the file holds is served
        const part = await request(s.url, `/v1/images/${img.id}/layer`, { headers: { Range: 'bytes=0-99' } });
        assert.equal(part.status, 206);
        assert.ok(part.body.equals(img.layer.subarray(0, 100)));
      }
  });

  it('with direct reads on, a client gone before its body started has nothing read for it', { skip: !directIoStatus().available }, async () => {
    const huge = randomBytes(32 * 1024 * 1024);
    assert.equal((await request(s.url, `/v2/dl/direct/blobs/uploads/?digest=${sha(huge)}`, { method: 'POST', body: huge })).status, 201);
    const rchar = (): number => Number(/rchar: (\d+)/.exec(readFileSync('/proc/self/io', 'utf8'))![1]);
    setDirectIo(true);
    try {
      await sleep(200);
      const r0 = rchar();
      for (let i = 0; i < 4; i++) {
        const u = new URL(s.url);
        const sock = connect(Number(u.port), u.hostname);
        await new Promise((r) => sock.once('connect', r));
        sock.on('error', () => undefined);
        sock.write(GET(`/v2/dl/direct/blobs/${sha(huge)}`));
        sock.resetAndDestroy();
      }
      await sleep(1000);
      // the whole blob was read and thrown away for each (128 MiB)
      const read = rchar() - r0;
      assert.ok(read < 16 * 1024 * 1024, `${read} bytes read for clients that were gone`);
      assert.ok((await request(s.url, `/v2/dl/direct/blobs/${sha(huge)}`)).body.equals(huge));
    } finally {
      setDirectIo(false);
    }
  });
});

describe('a layer from a store that is not a file (memory) shorter than its recorded size', () => {
  let s: TestServer;
  before(async () => {
    s = await startTestServer({ standalone: true, v2: true, storage: 'memory' });
  });
  after(() => s.stop());

  it('cuts the connection: never the next response as the rest of the body', async () => {
    const img = makeImage(undefined, { 'f.bin': randomBytes(600 << 10).toString('base64') });
    await pushImage(s.url, img);
    const hex = sha(img.layer).slice(7);
    await s.driver.putContent(keys.blob(hex), img.layer.subarray(0, img.layer.length >> 1));
    const x = await exchange(s.url, GET(`/v1/images/${img.id}/layer`) + LAST, { ms: 5_000 });
    assert.ok(x.closed);
    if (x.bytes.subarray(0, 12).toString('latin1') === 'HTTP/1.1 500') {
      // the store's object is not of the size recorded: a 500 before any byte (reader's size check),
      // the next response intact
      const { responses, rest } = parseAll(x.bytes, ['GET', 'GET']);
      assert.equal(rest, 0);
      assert.deepEqual(
        responses.map((r) => r.status),
        [500, 200],
      );
      return;
    }
    // or else a 200 cut short, never complete
    assert.equal(x.bytes.indexOf('HTTP/1.1', 10), -1, 'a second response inside the first body');
    const { responses } = parseAll(x.bytes, ['GET']);
    assert.equal(responses[0]!.status, 200);
    assert.ok(!responses[0]!.whole);
    assert.ok(responses[0]!.body.equals(img.layer.subarray(0, responses[0]!.body.length)));
  });
});

describe('downloads over TLS', () => {
  let s: TestServer;
  let dir: string;
  const blob = randomBytes(3 * 1024 * 1024 + 5);
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'lr-dl-tls-'));
    const { keyPath: key, certPath: cert } = selfSignedCert(dir);
    s = await startTestServer({ standalone: true, v2: true, tls_certificate: cert, tls_key: key });
    assert.ok(s.url.startsWith('https:'));
    const up = await exchange(
      s.url,
      `POST /v2/dl/tls/blobs/uploads/?digest=${sha(blob)} HTTP/1.1\r\nHost: x\r\nContent-Length: ${blob.length}\r\nConnection: close\r\n\r\n`,
      {
        tls: true,
        then: async (sock) => void sock.write(blob),
      },
    );
    assert.equal(parseAll(up.bytes, ['POST']).responses[0]!.status, 201);
  });
  after(async () => {
    await s.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('does not use sendfile, and pipelined bodies are exact', async () => {
    setSendfile(true);
    const jobs = sendfileJobs();
    const p = `/v2/dl/tls/blobs/${sha(blob)}`;
    const x = await exchange(s.url, GET(p) + GET(p, 'Range: bytes=1000-2000000\r\n') + GET(p, 'Connection: close\r\n'), { tls: true, slow: 1 });
    assert.ok(x.closed);
    const { responses, rest } = parseAll(x.bytes, ['GET', 'GET', 'GET']);
    assert.equal(rest, 0);
    assert.ok(responses[0]!.body.equals(blob));
    assert.equal(responses[1]!.status, 206);
    assert.ok(responses[1]!.body.equals(blob.subarray(1000, 2000001)));
    assert.ok(responses[2]!.body.equals(blob));
    assert.equal(sendfileJobs(), jobs);
  });
});
