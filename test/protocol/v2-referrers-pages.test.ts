import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { request, type Response } from '../helpers/http.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { pushV2 } from '../helpers/v2-client.js';

/**
 * The referrers answer is bounded (OCI distribution 1.1: "A Link header MUST be included in the
 * response when the descriptor list cannot be returned in a single manifest"). Each descriptor
 * carries the referring manifest's annotations, so before 2026-12-07 one anonymous GET built an index
 * of every referrer at once: 60 referrers with 3.8 MiB of annotations each answered 229 MiB in one
 * body and took the server's RSS from 109 to 1267 MiB (8.7 s), and it grows with whatever pushers
 * store. Now a page holds at most 4 MiB (the manifest limit; a single larger descriptor goes alone)
 * and 1000 descriptors, reads at most 1000 manifests or 16 MiB of them, and continues with
 * `Link: <…?last=<digest>>; rel="next"`; every referrer comes exactly once across the pages.
 */
const sha = (b: Buffer | string): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const OCI = 'application/vnd.oci.image.manifest.v1+json';
const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
const MiB = 1024 * 1024;
const PAGE_BYTES = 4 * MiB;
const PAGE_ENTRIES = 1000;

interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  artifactType?: string;
  annotations?: Record<string, string>;
}
interface Page {
  readonly r: Response;
  readonly manifests: Descriptor[];
}

function errorCode(r: Response): string {
  return r.json<{ errors: { code: string }[] }>().errors[0]!.code;
}

/** Every page from `path` on, following Link rel="next" (each one checked as an OCI index). */
async function allPages(url: string, path: string, maxPages = 100): Promise<Page[]> {
  const pages: Page[] = [];
  let next: string | undefined = path;
  while (next !== undefined) {
    assert.ok(pages.length < maxPages, `more than ${maxPages} pages`);
    const r = await request(url, next);
    assert.equal(r.status, 200, r.text.slice(0, 500));
    assert.equal(r.headers['content-type'], OCI_INDEX);
    const body = r.json<{ schemaVersion: number; mediaType: string; manifests: Descriptor[] }>();
    assert.equal(body.schemaVersion, 2);
    assert.equal(body.mediaType, OCI_INDEX);
    pages.push({ r, manifests: body.manifests });
    const link = r.headers.link;
    if (link === undefined) next = undefined;
    else {
      const m = /^<([^>]+)>; rel="next"$/.exec(String(link));
      assert.ok(m, `Link: ${link}`);
      next = m[1]!;
    }
  }
  return pages;
}

/** The digests of all pages, each asserted to come once. */
function onceEach(pages: readonly Page[]): string[] {
  const seen = new Set<string>();
  for (const p of pages) {
    for (const d of p.manifests) {
      assert.ok(!seen.has(d.digest), `${d.digest} listed twice`);
      seen.add(d.digest);
    }
  }
  return [...seen].sort();
}

describe('referrers answers are paginated (spec §1.4 end-12: Link when large)', { timeout: 180_000 }, () => {
  let s: TestServer;
  let subject: string;
  const empty = Buffer.from('{}');
  /** An OCI artifact manifest referring to `subj`. */
  const artifact = (subj: string, artifactType: string, annotations: Record<string, string>, nonce = ''): Buffer =>
    Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: OCI,
        artifactType,
        config: { mediaType: 'application/vnd.oci.empty.v1+json', size: 2, digest: sha(empty) },
        layers: [],
        subject: { mediaType: OCI, digest: subj, size: 100 },
        annotations: nonce ? { ...annotations, 'org.example.nonce': nonce } : annotations,
      }),
    );
  const put = async (b: Buffer): Promise<string> => {
    const r = await request(s.url, `/v2/pages/app/manifests/${sha(b)}`, { method: 'PUT', body: b, headers: { 'Content-Type': OCI } });
    assert.equal(r.status, 201, r.text);
    return sha(b);
  };

  before(async () => {
    s = await startTestServer({ standalone: true, v2: true });
    subject = (await pushV2(s.url, 'pages/app', 'latest')).digest;
    assert.equal((await request(s.url, `/v2/pages/app/blobs/uploads/?digest=${sha(empty)}`, { method: 'POST', body: empty })).status, 201);
  });
  after(() => s.stop());

  describe('large annotations', () => {
    const big = sha('subject with large referrers');
    const bigDigests: string[] = [];
    let note: string;
    before(async () => {
      // six referrers of 3.5 MiB each (21 MiB in all; one unpaginated answer would hold all of it)
      for (let i = 0; i < 6; i++) {
        bigDigests.push(await put(artifact(big, 'application/vnd.example.big', { i: String(i), 'org.example.blob': 'x'.repeat(3.5 * MiB) })));
      }
      // and a small one of another type whose digest sorts after them all: a filter for its type
      // reads the six big ones first
      const last = bigDigests.slice().sort().at(-1)!;
      let n = 0;
      let b: Buffer;
      do b = artifact(big, 'application/vnd.example.note', { 'org.example.kind': 'note' }, String(n++));
      while (sha(b) < last);
      note = await put(b);
    });

    it('no page is larger than 4 MiB; every referrer comes exactly once across the pages', async () => {
      const first = await request(s.url, `/v2/pages/app/referrers/${big}`);
      assert.equal(first.status, 200);
      assert.ok(first.body.length <= PAGE_BYTES, `one answer of ${(first.body.length / MiB).toFixed(1)} MiB (cap 4 MiB)`);
      assert.match(String(first.headers.link), /^<\/v2\/pages\/app\/referrers\/sha256:[0-9a-f]{64}\?last=sha256%3A[0-9a-f]{64}>; rel="next"$/);
      const pages = await allPages(s.url, `/v2/pages/app/referrers/${big}`);
      for (const p of pages) assert.ok(p.r.body.length <= PAGE_BYTES, `page of ${p.r.body.length} bytes`);
      assert.ok(pages.length >= 6, `${pages.length} pages`);
      assert.deepEqual(onceEach(pages), [...bigDigests, note].sort());
      // the annotations are those of each manifest, whole
      const byDigest = new Map(pages.flatMap((p) => p.manifests).map((d) => [d.digest, d]));
      assert.equal(byDigest.get(bigDigests[3]!)?.annotations?.i, '3');
      assert.equal(byDigest.get(bigDigests[3]!)?.annotations?.['org.example.blob']?.length, 3.5 * MiB);
      assert.equal(byDigest.get(bigDigests[3]!)?.artifactType, 'application/vnd.example.big');
    });

    it('a filter that skips large referrers still answers in bounded pages, OCI-Filters-Applied on each', async () => {
      const pages = await allPages(s.url, `/v2/pages/app/referrers/${big}?artifactType=${encodeURIComponent('application/vnd.example.note')}`);
      for (const p of pages) assert.equal(p.r.headers['oci-filters-applied'], 'artifactType');
      // 21 MiB of other referrers come first: the first page stops reading them at 16 MiB
      assert.ok(pages.length >= 2, `${pages.length} pages`);
      assert.deepEqual(pages[0]!.manifests, []);
      assert.match(String(pages[0]!.r.headers.link), /\?artifactType=application%2Fvnd\.example\.note&last=sha256%3A/);
      assert.deepEqual(onceEach(pages), [note]);
      assert.equal(pages.at(-1)!.manifests[0]!.artifactType, 'application/vnd.example.note');
    });
  });

  describe('many referrers', () => {
    const sigs: string[] = [];
    const sboms: string[] = [];
    before(async () => {
      for (let i = 0; i < PAGE_ENTRIES + 50; i++) {
        const sbom = i % 3 === 0;
        const d = await put(artifact(subject, sbom ? 'application/vnd.example.sbom' : 'application/vnd.example.sig', { i: String(i) }));
        (sbom ? sboms : sigs).push(d);
      }
    });

    it('at most 1000 descriptors a page, then a Link; each referrer exactly once', async () => {
      const pages = await allPages(s.url, `/v2/pages/app/referrers/${subject}`);
      assert.equal(pages[0]!.manifests.length, PAGE_ENTRIES, `first page: ${pages[0]!.manifests.length} descriptors`);
      assert.equal(pages.length, 2);
      assert.equal(pages[1]!.manifests.length, 50);
      assert.equal(pages[1]!.r.headers.link, undefined);
      assert.deepEqual(onceEach(pages), [...sigs, ...sboms].sort());
    });

    it('?n= asks for smaller pages (the Link keeps n and the filter); n over 1000 or not a number: 400', async () => {
      const pages = await allPages(s.url, `/v2/pages/app/referrers/${subject}?n=400`);
      assert.deepEqual(
        pages.map((p) => p.manifests.length),
        [400, 400, 250],
      );
      assert.match(String(pages[0]!.r.headers.link), /^<\/v2\/pages\/app\/referrers\/sha256:[0-9a-f]{64}\?last=sha256%3A[0-9a-f]{64}&n=400>; rel="next"$/);
      assert.deepEqual(onceEach(pages), [...sigs, ...sboms].sort());

      const filtered = await allPages(s.url, `/v2/pages/app/referrers/${subject}?artifactType=application/vnd.example.sbom&n=100`);
      for (const p of filtered) {
        assert.equal(p.r.headers['oci-filters-applied'], 'artifactType');
        assert.ok(p.manifests.length <= 100);
        for (const d of p.manifests) assert.equal(d.artifactType, 'application/vnd.example.sbom');
      }
      assert.deepEqual(onceEach(filtered), sboms.slice().sort());

      const zero = await request(s.url, `/v2/pages/app/referrers/${subject}?n=0`);
      assert.equal(zero.status, 200);
      assert.deepEqual(zero.json<{ manifests: unknown[] }>().manifests, []);
      assert.equal(zero.headers.link, undefined);
      for (const q of ['n=1001', 'n=-1', 'n=abc', 'n=1&n=2']) {
        const r = await request(s.url, `/v2/pages/app/referrers/${subject}?${q}`);
        assert.equal(r.status, 400, q);
        assert.equal(errorCode(r), 'PAGINATION_NUMBER_INVALID', q);
      }
    });

    it('last past every referrer: an empty index; HEAD answers as GET without the body', async () => {
      const r = await request(s.url, `/v2/pages/app/referrers/${subject}?last=sha256:${'f'.repeat(64)}`);
      assert.equal(r.status, 200);
      assert.deepEqual(r.json<{ manifests: unknown[] }>().manifests, []);
      assert.equal(r.headers.link, undefined);
      const get = await request(s.url, `/v2/pages/app/referrers/${subject}?n=10`);
      const head = await request(s.url, `/v2/pages/app/referrers/${subject}?n=10`, { method: 'HEAD' });
      assert.equal(head.status, 200);
      assert.equal(head.headers['content-length'], String(get.body.length));
      assert.equal(head.headers.link, get.headers.link);
    });
  });
});
