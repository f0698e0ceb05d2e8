import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { request } from '../helpers/http.js';
import { getAndGoAway, openFds, settledFds } from '../helpers/going-away.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { makeImage, pushImage } from '../helpers/v1-client.js';
import { sendfileJobs, sendfileStatus, setSendfile } from '../../src/http/sendfile.js';

const sha = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/**
 * Large bodies go out with sendfile (src/http/sendfile.ts) or through pooled buffers
 * (src/http/send-file.ts): either way the bytes, lengths and ranges must be exact across chunk
 * boundaries, for v2 blobs and v1 layers alike, and a client that goes away mid-body must leave no
 * open file behind.
 */
for (const mode of ['sendfile', 'buffers'] as const)
  describe(`downloads of multi-chunk blobs and layers (${mode})`, () => {
    let s: TestServer;
    let jobsBefore = 0;
    const blob = randomBytes(3 * 1024 * 1024 + 12345); // three 1 MiB chunks and a tail
    const digest = sha(blob);
    before(async () => {
      setSendfile(mode === 'sendfile');
      s = await startTestServer({ standalone: true, v2: true });
      const r = await request(s.url, `/v2/big/blob/blobs/uploads/?digest=${digest}`, { method: 'POST', body: blob });
      assert.equal(r.status, 201);
      jobsBefore = sendfileJobs();
    });
    after(async () => {
      await s.stop();
      // every download of this suite above 256 KiB went the way it names
      if (mode === 'sendfile') assert.ok(sendfileJobs() - jobsBefore >= 15, `${sendfileJobs() - jobsBefore} sendfile jobs`);
      else assert.equal(sendfileJobs(), jobsBefore);
      setSendfile(true);
    });

    it('is the path this suite names', () => {
      // CI builds the module (native/sendfile.c): a machine without it would test the buffers twice
      assert.equal(sendfileStatus().on, mode === 'sendfile', sendfileStatus().reason);
    });

    it('serves the whole blob and any range, with exact lengths and headers', async () => {
      const full = await request(s.url, `/v2/big/blob/blobs/${digest}`);
      assert.equal(full.status, 200);
      assert.equal(full.headers['content-length'], String(blob.length));
      assert.equal(full.headers['docker-content-digest'], digest);
      assert.equal(full.headers['docker-distribution-api-version'], 'registry/2.0');
      assert.ok(full.body.equals(blob));
      const M = 1024 * 1024;
      for (const [a, b] of [
        [0, 0],
        [M - 1, M],
        [M - 10, 3 * M + 10],
        [3 * M, blob.length - 1],
        [blob.length - 1, blob.length - 1],
        [5, 2 * M],
      ] as const) {
        const r = await request(s.url, `/v2/big/blob/blobs/${digest}`, { headers: { Range: `bytes=${a}-${b}` } });
        assert.equal(r.status, 206, `${a}-${b}`);
        assert.equal(r.headers['content-range'], `bytes ${a}-${b}/${blob.length}`);
        assert.equal(r.headers['content-length'], String(b - a + 1));
        assert.ok(r.body.equals(blob.subarray(a, b + 1)), `${a}-${b}`);
      }
      const open = await request(s.url, `/v2/big/blob/blobs/${digest}`, { headers: { Range: `bytes=${blob.length - 7}-` } });
      assert.ok(open.body.equals(blob.subarray(blob.length - 7)));
    });

    it('serves eight at once, each complete', async () => {
      const all = await Promise.all(Array.from({ length: 8 }, () => request(s.url, `/v2/big/blob/blobs/${digest}`)));
      for (const r of all) assert.ok(r.body.equals(blob));
    });

    it('serves v1 layers the same way', async () => {
      const img = makeImage(undefined, { 'big.bin': randomBytes(2 * 1024 * 1024 + 3).toString('base64') });
      await pushImage(s.url, img);
      const r = await request(s.url, `/v1/images/${img.id}/layer`);
      assert.equal(r.status, 200);
      assert.ok(r.body.equals(img.layer));
      const part = await request(s.url, `/v1/images/${img.id}/layer`, { headers: { Range: 'bytes=1048570-1048600' } });
      assert.equal(part.status, 206);
      assert.ok(part.body.equals(img.layer.subarray(1048570, 1048601)));
    });

    it('holds a few chunks per response for a client that stops reading, whatever the blob size', async () => {
      // src/http/send-file.ts reads ahead while the socket sends, at most IN_FLIGHT (3) chunks of 1 MiB
      const big = randomBytes(48 * 1024 * 1024);
      const d = sha(big);
      assert.equal((await request(s.url, `/v2/big/stall/blobs/uploads/?digest=${d}`, { method: 'POST', body: big })).status, 201);
      const settle = (): Promise<void> => new Promise((r) => setTimeout(r, 300));
      await settle();
      const base = process.memoryUsage().arrayBuffers;
      let got = 0;
      const u = new URL(s.url);
      const req = httpRequest({ host: u.hostname, port: u.port, path: `/v2/big/stall/blobs/${d}`, agent: false });
      const res = await new Promise<import('node:http').IncomingMessage>((resolve, reject) => {
        req.on('response', resolve);
        req.on('error', reject);
        req.end();
      });
      res.on('data', (c: Buffer) => {
        got += c.length;
        // the first chunk, then nothing more: the socket's buffers fill and the server must wait
        if (got >= 1024 * 1024) res.pause();
      });
      res.on('error', () => undefined);
      await settle();
      await settle();
      const held = (process.memoryUsage().arrayBuffers - base) / (1024 * 1024);
      req.destroy();
      assert.ok(got < 16 * 1024 * 1024, `the client read ${got} bytes`);
      // this process is client and server: the server's chunks plus what the client's stream buffered
      assert.ok(held < 12, `${held.toFixed(1)} MiB of buffers held for a stalled 48 MiB download`);
    });

    it('closes the file when the client goes away mid-body, and keeps serving', async () => {
      // settle: earlier responses' files are closed
      await new Promise((r) => setTimeout(r, 100));
      const before = openFds();
      for (let i = 0; i < 5; i++) await getAndGoAway(s.url, `/v2/big/blob/blobs/${digest}`, 1024 * 1024);
      const now = await settledFds(before, 1000);
      assert.ok(now <= before, `open descriptors ${before} → ${now}`);
      const again = await request(s.url, `/v2/big/blob/blobs/${digest}`);
      assert.ok(again.body.equals(blob));
    });
  });
