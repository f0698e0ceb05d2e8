import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { makeImage, pushImage, putTag, type TestImage } from '../helpers/v1-client.js';
import { basic, pushV2Image, S2, sha, Site, v2Image, type Creds } from '../helpers/accounts.js';
import { request } from '../helpers/http.js';
import { filesUnder } from '../helpers/files.js';
import { join } from 'node:path';
import { saveUser } from '../../src/db/users.js';

const OWNER: Creds = ['owner', 'ownerpw'];

/**
 * Concurrency (issue 17): operations that race on one tag, one blob or one repository end in one
 * consistent result, never in a corrupt image.
 */
describe('concurrency: one consistent result per race', () => {
  let s: TestServer;
  let site: Site;
  before(async () => {
    s = await startTestServer({ bcrypt_cost: 4, storage_delete: true, metadata_cache_ttl: 0 });
    site = new Site(s.url, s.url);
    await saveUser(s.db!, { username: 'owner', email: 'o@example.com', password: 'ownerpw', active: true }, { cost: 4 });
  });
  after(() => s?.stop());

  /** What the tag is on each API: the v1 image id and the v2 manifest (bytes). */
  async function both(repo: string, tag: string): Promise<{ v1: string | undefined; v2: Buffer | undefined }> {
    const t = await site.readToken(repo, OWNER);
    const v1 = await site.regGet(`/v1/repositories/${repo}/tags/${tag}`, t);
    const bearer = await site.bearer(OWNER, `repository:${repo}:pull`);
    const v2 = await site.v2(`/v2/${repo}/manifests/${tag}`, bearer, { headers: { Accept: S2 } });
    return { v1: v1.status === 200 ? v1.json<string>() : undefined, v2: v2.status === 200 ? v2.body : undefined };
  }

  it('the same tag pushed at once through v1 and v2, 10 times: both APIs name the same image, whole', async () => {
    for (let round = 0; round < 10; round++) {
      const repo = `owner/race${round}`;
      const v1img = makeImage();
      const v2img = v2Image(`race${round}`, 1);
      const bearer = await site.bearer(OWNER, `repository:${repo}:pull,push`);
      const token = await site.claim(repo, OWNER, [v1img.id], 'latest');
      const v1push = (async () => {
        const rs = await pushImage(s.url, v1img, token);
        assert.deepEqual(
          rs.slice(1).map((r) => r.status),
          [200, 200, 200],
        );
        assert.equal((await putTag(s.url, repo, 'latest', v1img.id, token)).status, 200);
      })();
      const v2push = pushV2Image(site, repo, 'latest', bearer, v2img);
      await Promise.all([v1push, v2push]);
      const seen = await both(repo, 'latest');
      assert.ok(seen.v1 && seen.v2, `round ${round}: the tag exists on both APIs`);
      if (seen.v2.equals(v2img.manifest)) {
        // v2 won: the v1 tag is the bridge's view of the v2 image, which pulls whole
        assert.notEqual(seen.v1, v1img.id, `round ${round}: v2 manifest served but v1 names the v1 push`);
        const t = await site.readToken(repo, OWNER);
        const anc = (await site.regGet(`/v1/images/${seen.v1}/ancestry`, t)).json<string[]>();
        const layer = await site.regGet(`/v1/images/${anc[anc.length - 1]}/layer`, t);
        assert.deepEqual(layer.body, v2img.layers[0]);
      } else {
        // v1 won: the v2 manifest is the bridge's view of the v1 image (its one layer)
        assert.equal(seen.v1, v1img.id, `round ${round}: a bridged manifest but v1 does not name the v1 push`);
        const m = JSON.parse(seen.v2.toString('utf8')) as { layers: { digest: string }[] };
        assert.deepEqual(
          m.layers.map((l) => l.digest),
          [sha(v1img.layer)],
        );
      }
    }
  });

  it('the same blob uploaded by 8 clients at once (single POST and chunked): all succeed, one copy, right bytes', async () => {
    const blob = randomBytes(3 << 20);
    const digest = sha(blob);
    const bearer = await site.bearer(OWNER, 'repository:owner/blob8:pull,push');
    const upload = async (i: number): Promise<number> => {
      if (i % 2 === 0) return (await site.v2(`/v2/owner/blob8/blobs/uploads/?digest=${digest}`, bearer, { method: 'POST', body: blob })).status;
      const p = await site.v2('/v2/owner/blob8/blobs/uploads/', bearer, { method: 'POST' });
      const loc = new URL(String(p.headers.location), s.url).pathname;
      const half = blob.length >> 1;
      await site.v2(loc, bearer, { method: 'PATCH', body: blob.subarray(0, half), headers: { 'Content-Range': `0-${half - 1}` } });
      await site.v2(loc, bearer, { method: 'PATCH', body: blob.subarray(half), headers: { 'Content-Range': `${half}-${blob.length - 1}` } });
      return (await site.v2(`${loc}?digest=${digest}`, bearer, { method: 'PUT' })).status;
    };
    const statuses = await Promise.all(Array.from({ length: 8 }, (_, i) => upload(i)));
    assert.deepEqual(statuses, Array(8).fill(201));
    const r = await site.v2(`/v2/owner/blob8/blobs/${digest}`, bearer);
    assert.deepEqual(r.body, blob);
    const copies = (await filesUnder(join(s.dataDir, 'blobs'))).filter((f) => f.includes(digest.slice(7)));
    assert.equal(copies.length, 1);
    assert.deepEqual(await filesUnder(join(s.dataDir, 'uploads')), [], 'no upload left behind');
  });

  it('a tag deleted during pulls: each pull gets the whole image or 404, never other bytes', async () => {
    for (let round = 0; round < 5; round++) {
      const repo = `owner/pulldel${round}`;
      const img = v2Image(`pulldel${round}`, 2);
      const bearer = await site.bearer(OWNER, `repository:${repo}:pull,push,delete`);
      await pushV2Image(site, repo, 'latest', bearer, img);
      const pull = async (): Promise<string> => {
        const m = await site.v2(`/v2/${repo}/manifests/latest`, bearer, { headers: { Accept: S2 } });
        if (m.status === 404) return 'gone';
        assert.equal(m.status, 200);
        assert.deepEqual(m.body, img.manifest);
        for (const b of [img.config, ...img.layers]) {
          const r = await site.v2(`/v2/${repo}/blobs/${sha(b)}`, bearer);
          // blobs stay linked after a tag delete (the manifest was pulled, its blobs come whole)
          assert.equal(r.status, 200);
          assert.deepEqual(r.body, b);
        }
        return 'whole';
      };
      const del = site.v2(`/v2/${repo}/manifests/latest`, bearer, { method: 'DELETE' });
      const results = await Promise.all([pull(), pull(), pull(), del.then((r) => String(r.status)), pull(), pull()]);
      assert.equal(results[3], '202');
      assert.equal((await site.v2(`/v2/${repo}/manifests/latest`, bearer, { headers: { Accept: S2 } })).status, 404);
    }
  });

  it('a repository deleted during a v1 push: afterwards it is gone on every API, or whole if the push came after', async () => {
    for (let round = 0; round < 5; round++) {
      const repo = `owner/repodel${round}`;
      const first = makeImage();
      await site.pushV1(repo, OWNER, [first]);
      const next = makeImage(first.id);
      const token = await site.claim(repo, OWNER, [first.id, next.id]);
      const push = (async () => {
        const rs = await pushImage(s.url, next, token);
        const tag = await putTag(s.url, repo, 'next', next.id, token);
        return [...rs.map((r) => r.status), tag.status];
      })();
      const del = request(s.url, `/v1/repositories/${repo}/`, { method: 'DELETE', headers: { Authorization: basic('owner', 'ownerpw') } });
      const [statuses, d] = await Promise.all([push, del]);
      assert.equal(d.status, 202, d.text);
      const t = await site.readToken(repo, OWNER);
      if (t === undefined) {
        // gone from the index: nothing of it on v2 either
        const bearer = await site.bearer(OWNER, `repository:${repo}:pull`);
        const tags = await site.v2(`/v2/${repo}/tags/list`, bearer);
        assert.equal(tags.status, 404, `round ${round}: ${tags.text} after ${statuses.join(',')}`);
      } else {
        const tags = await site.regGet(`/v1/repositories/${repo}/tags`, t);
        for (const id of Object.values(tags.status === 200 ? tags.json<Record<string, string>>() : {})) {
          const anc = await site.regGet(`/v1/images/${id}/ancestry`, t);
          assert.equal(anc.status, 200);
          for (const a of anc.json<string[]>())
            assert.equal((await site.regGet(`/v1/images/${a}/layer`, t)).status, 200, `round ${round}: a tag names an image that is not whole`);
        }
      }
    }
  });
});

export type { TestImage };
