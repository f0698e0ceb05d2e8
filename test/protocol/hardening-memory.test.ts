import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { request } from '../helpers/http.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { pushV2 } from '../helpers/v2-client.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

/** Heap and buffer memory still reachable after full collections. */
async function liveBytes(): Promise<number> {
  for (let i = 0; i < 3; i++) {
    gc();
    await new Promise((r) => setImmediate(r));
  }
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
}

const MB = 1024 * 1024;
const hex = (s: string): string => createHash('sha256').update(s).digest('hex');

/**
 * Security issue 10, finding 7: every cache of the process is bounded by entries and by bytes.
 * The servers run in this process, so what their caches keep shows in this process's memory.
 */
describe('hardening: caches are bounded by bytes, not only by entries', () => {
  describe('registry token validations (src/auth/registry-token.ts)', () => {
    let s: TestServer;
    let index: Server;
    let validations = 0;
    let endlessSent = 0;
    let endlessClosed = false;
    before(async () => {
      // a stand-in index vouching for every token of memtest/big, a repository with 25,000 images:
      // each validation answer is ~1.7 MB of JSON (the real index takes ~0.4 s to build it)
      const list = Buffer.from(JSON.stringify(Array.from({ length: 25_000 }, (_, i) => ({ id: hex(`image-${i}`) }))));
      index = createServer((req, res) => {
        if (req.url === '/v1/repositories/memtest/endless/images') {
          // an index answering a validation with a list that never ends
          res.writeHead(200, { 'Content-Type': 'application/json' });
          const entry = Buffer.from(`{"id":"${hex('endless')}"},`.repeat(4096));
          res.write('[');
          const more = (): void => {
            while (!res.destroyed && endlessSent < 4096 * MB) {
              endlessSent += entry.length;
              if (!res.write(entry)) return void res.once('drain', more);
            }
            res.end(']');
          };
          res.on('close', () => (endlessClosed = true));
          more();
          return;
        }
        validations++;
        const ok = /^\/v1\/repositories\/memtest\/(big|many-\d+)\/images$/.test(req.url ?? '') && /^Token /.test(req.headers.authorization ?? '');
        res.writeHead(ok ? 200 : 401, { 'Content-Type': 'application/json' });
        res.end(ok ? list : '{}');
      });
      await new Promise<void>((r) => index.listen(0, '127.0.0.1', () => r()));
      const indexUrl = `http://127.0.0.1:${(index.address() as AddressInfo).port}`;
      s = await startTestServer({ standalone: false, index_endpoint: indexUrl, token_cache_ttl: 60 }, { role: 'registry' });
    });
    after(async () => {
      await s?.stop();
      await new Promise<void>((r) => index.close(() => r()));
    });

    const run = Date.now();
    const token = (i: number): string => `Token signature=t${i}-${run},repository="memtest/big",access=read`;

    it('a hundred tokens of a repository with 25,000 images keep at most ~32 MiB of ids', async () => {
      const warm = await request(s.url, '/v1/repositories/memtest/big/tags', { headers: { Authorization: token(-1) } });
      assert.equal(warm.status, 404, warm.text);
      const start = await liveBytes();
      for (let i = 0; i < 100; i++) {
        // each token is validated once; the answer (25,000 ids) is kept for token_cache_ttl, which
        // before was until 10,000 of them had piled up
        const r = await request(s.url, '/v1/repositories/memtest/big/tags', { headers: { Authorization: token(i) } });
        assert.equal(r.status, 404);
        assert.equal(r.text, '{"error": "Repository not found"}');
      }
      assert.equal(validations, 101);
      const grown = (await liveBytes()) - start;
      if (process.env.SHOW_MEM) console.log(`memory grew by ${(grown / MB).toFixed(1)} MB`);
      // 100 × 25,000 ids is ~250 MB of heap when all are kept; the bound is 32 MiB (plus noise)
      assert.ok(grown < 80 * MB, `memory grew by ${(grown / MB).toFixed(0)} MB`);
      // a kept validation is still used: the last token is not validated again
      assert.equal((await request(s.url, '/v1/repositories/memtest/big/tags', { headers: { Authorization: token(99) } })).status, 404);
      assert.equal(validations, 101);
    });

    it('tokens of a hundred repositories with 25,000 images each keep at most ~32 MiB of ids (the lists shared between tokens too)', async () => {
      const before = validations;
      const start = await liveBytes();
      for (let i = 0; i < 100; i++) {
        // one token per repository: each id list is the last one of its repository, kept to be shared
        // with the repository's next tokens (src/auth/registry-token.ts, TokenAuth.shared), which
        // before kept 1,000 repositories' lists whatever their size
        const r = await request(s.url, `/v1/repositories/memtest/many-${i}/tags`, {
          headers: { Authorization: `Token signature=m${i}-${run},repository="memtest/many-${i}",access=read` },
        });
        assert.equal(r.status, 404, r.text);
      }
      assert.equal(validations - before, 100);
      const grown = (await liveBytes()) - start;
      if (process.env.SHOW_MEM) console.log(`memory grew by ${(grown / MB).toFixed(1)} MB`);
      // 100 × 25,000 ids is ~250 MB of heap when all are kept; the bound is 32 MiB each for the
      // validations and the shared lists, which are mostly the same sets (plus noise)
      assert.ok(grown < 100 * MB, `memory grew by ${(grown / MB).toFixed(0)} MB`);
    });

    it('an index answering a validation without end is read up to 64 MiB, then the token is refused: the registry neither waits for the end nor keeps it', async () => {
      const started = Date.now();
      const r = await request(s.url, '/v1/repositories/memtest/endless/tags', {
        headers: { Authorization: `Token signature=endless-${run},repository="memtest/endless",access=read` },
      });
      const took = Date.now() - started;
      assert.equal(r.status, 401, r.text);
      assert.ok(took < 10_000, `answered after ${took} ms`);
      for (let i = 0; i < 50 && !endlessClosed; i++) await new Promise((res) => setTimeout(res, 100));
      assert.ok(endlessClosed, `the registry closed the connection (${took} ms, ${(endlessSent / MB).toFixed(0)} MiB sent)`);
      assert.ok(endlessSent < 200 * MB, `${(endlessSent / MB).toFixed(0)} MiB sent before the registry stopped reading`);
    });
  });

  describe('v2 manifest answers (AnswerCache in src/v2/routes.ts)', () => {
    let s: TestServer;
    const OCI = 'application/vnd.oci.image.manifest.v1+json';
    let size = 0;
    before(async () => {
      s = await startTestServer({ standalone: true, v2: true, metadata_cache_ttl: 60 });
      const base = await pushV2(s.url, 'mem/big', 'base');
      const m = JSON.parse(base.manifest.toString('utf8')) as Record<string, unknown>;
      // the same image as an OCI manifest carrying ~3.9 MiB of annotations (manifests may be 4 MiB)
      const manifest = Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: OCI,
          config: { ...(m.config as object), mediaType: 'application/vnd.oci.image.config.v1+json' },
          layers: (m.layers as object[]).map((l) => ({ ...l, mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip' })),
          annotations: { padding: 'x'.repeat(3.9 * MB) },
        }),
      );
      size = manifest.length;
      const put = await request(s.url, '/v2/mem/big/manifests/big', { method: 'PUT', body: manifest, headers: { 'Content-Type': OCI } });
      assert.equal(put.status, 201, put.text);
    });
    after(() => s?.stop());

    it('sixty Accept variants of a 4 MiB manifest keep at most ~32 MiB', async () => {
      const start = await liveBytes();
      for (let i = 0; i < 60; i++) {
        // the answer is kept per Accept header: each variant is an entry of its own
        const r = await request(s.url, '/v2/mem/big/manifests/big', { headers: { Accept: `${OCI}, application/x-variant-${i}` } });
        assert.equal(r.status, 200);
        assert.equal(r.body.length, size);
      }
      const grown = (await liveBytes()) - start;
      // 60 × 4 MiB is ~240 MB when all are kept; the bound is 32 MiB (plus noise)
      if (process.env.SHOW_MEM) console.log(`memory grew by ${(grown / MB).toFixed(1)} MB`);
      assert.ok(grown < 80 * MB, `memory grew by ${(grown / MB).toFixed(0)} MB`);
    });
  });
});
