import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { request } from '../helpers/http.js';
import { v1MirrorOfHostile } from '../helpers/fake-upstream.js';

/**
 * The v1 mirror's in-memory caches (src/mirror/v1-mirror.ts: image json and ancestry answers, 32 MiB;
 * tag answers, 16 MiB) keep the upstream headers they pass on with each answer. An upstream that
 * sends ~15 KiB of such headers on every small answer must not make them hold more than their byte
 * bounds: the headers are weighed with the body.
 */
describe('v1 mirror caches: upstream headers kept with small answers count against the byte bounds', { timeout: 120_000 }, () => {
  const m = v1MirrorOfHostile();
  // three headers the mirror keeps and passes on, 5000 bytes each (Node reads up to 16 KiB of headers)
  const FILLER = 5000;
  const HEADERS = { 'Cache-Control': `max-age=1, ${'x'.repeat(FILLER - 11)}`, ETag: `"${'e'.repeat(FILLER - 2)}"`, 'X-Docker-Checksum': 'c'.repeat(FILLER) };
  const HEADER_BYTES = 3 * FILLER;
  const idOf = (i: number): string => i.toString(16).padStart(64, '0');

  /** Requests `paths` of the mirror, `width` at a time; every answer must be 200 with the upstream's headers. */
  const pull = async (paths: string[], width = 8): Promise<void> => {
    let next = 0;
    await Promise.all(
      Array.from({ length: width }, async () => {
        while (next < paths.length) {
          const p = paths[next++]!;
          const r = await request(m.mirror.url, p);
          assert.equal(r.status, 200, `${p}: ${r.text.slice(0, 200)}`);
          assert.equal(r.headers.etag, HEADERS.ETag, `${p}: the upstream's headers are passed on`);
        }
      }),
    );
  };

  it('image json/ancestry and tags with ~15 KiB of headers each: what the caches hold stays within their bounds', async () => {
    m.up.handler = (req, res) => {
      const img = /^\/v1\/images\/([0-9a-f]{64})\/(json|ancestry)$/.exec(req.url ?? '');
      const tags = /^\/v1\/repositories\/library\/([a-z0-9]+)\/tags$/.exec(req.url ?? '');
      if (!img && !tags) {
        res.writeHead(404);
        res.end();
        return;
      }
      res.writeHead(200, { 'Content-Type': 'application/json', ...HEADERS });
      if (img) res.end(JSON.stringify(img[2] === 'json' ? { id: img[1] } : [img[1]]));
      else res.end(JSON.stringify({ latest: idOf(Number.parseInt(tags![1]!.slice(1), 10)) }));
    };
    // 1300 images: 2600 answers with 39 MB of headers, more than the 32 MiB the cache may hold
    const IMAGES = 1300;
    await pull(Array.from({ length: IMAGES }, (_, i) => [`/v1/images/${idOf(i)}/json`, `/v1/images/${idOf(i)}/ancestry`]).flat());
    // 1300 repositories' tags: 19.5 MB of headers, more than the 16 MiB of the tag cache
    const REPOS = 1300;
    await pull(Array.from({ length: REPOS }, (_, i) => `/v1/repositories/library/r${i}/tags`));

    const usage = m.mirror.v1Mirror!.usage();
    for (const [name, c] of Object.entries(usage)) {
      // the cache is full (the test is not vacuous): it holds all it may, within 1 MiB
      assert.ok(c.entries * (HEADER_BYTES + 1024) >= c.maxBytes - 1024 * 1024, `${name}: only ${c.entries} entries kept`);
      assert.ok(c.bytes <= c.maxBytes, `${name}: ${c.bytes} bytes counted, over its ${c.maxBytes}`);
      // what the entries hold in headers alone is counted, and within the bound
      assert.ok(
        c.entries * HEADER_BYTES <= c.bytes,
        `${name}: ${c.entries} entries hold ${c.entries * HEADER_BYTES} bytes of upstream headers, but ${c.bytes} bytes are counted`,
      );
      assert.ok(c.entries * HEADER_BYTES <= c.maxBytes, `${name}: ${c.entries * HEADER_BYTES} bytes of upstream headers held, over its ${c.maxBytes}`);
    }

    // the latest answers are still served from the cache (the upstream is not asked again)
    const asked = m.up.seen.length;
    await pull([`/v1/images/${idOf(IMAGES - 1)}/json`, `/v1/repositories/library/r${REPOS - 1}/tags`], 1);
    assert.equal(
      m.up.seen.length,
      asked,
      `asked again: ${m.up.seen
        .slice(asked)
        .map((s) => s.line)
        .join(', ')}`,
    );
  });
});
