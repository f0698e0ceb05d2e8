import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { request } from '../helpers/http.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { fileImage } from '../helpers/v2-client.js';
import { holdLock } from '../helpers/held-lock.js';

const sha = (b: Buffer | string): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const S2 = 'application/vnd.docker.distribution.manifest.v2+json';

async function upload(url: string, name: string, blobs: readonly Buffer[]): Promise<void> {
  for (const b of blobs) {
    const r = await request(url, `/v2/${name}/blobs/uploads/?digest=${sha(b)}`, { method: 'POST', body: b });
    assert.equal(r.status, 201, r.text);
  }
}

const putManifest = (url: string, name: string, tag: string, manifest: Buffer) =>
  request(url, `/v2/${name}/manifests/${tag}`, { method: 'PUT', body: manifest, headers: { 'Content-Type': S2 } });

async function v1Tag(url: string, repo: string, tag: string): Promise<string | undefined> {
  const r = await request(url, `/v1/repositories/${repo}/tags/${tag}`);
  return r.status === 200 ? r.json<string>() : undefined;
}

/**
 * The v2→v1 bridge with two nodes on one storage, each with its metadata cache. A v2 push publishes
 * its v1 view under the repository's storage lock, and only while the v2 tag still names its
 * manifest: a later push of the tag sets the v1 tag itself. That check read the v2 tag through
 * the node's cache: a node that had served the tag (its own push's digest) since writing it still
 * saw that digest after another node's push had replaced it, and moved the v1 tag back to its own,
 * older view over the other push's — v1 and v2 clients then pulled different images for good.
 *
 * Each repository's lock is held from outside (a lock object in the storage) while node A's push
 * waits for it, A serves the tag, and node B's push of the same tag waits too; then it is let go.
 * When B takes the lock first (about one time in two), A's late publish must not win.
 */
describe('v2 pushes of one tag through two nodes sharing the storage', () => {
  let dir: string;
  let a: TestServer;
  let b: TestServer;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'lr-publish-nodes-'));
    const cfg = { standalone: true, v2: true, metadata_cache_ttl: 60 };
    a = await startTestServer(cfg, { dataDir: dir });
    b = await startTestServer(cfg, { dataDir: dir });
  });
  after(async () => {
    await a?.stop();
    await b?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('the v1 tag ends as the view of the push the v2 tag names', { timeout: 120_000 }, async () => {
    const repos = Array.from({ length: 8 }, (_, i) => `nodes/pub${i}`);
    const results = await Promise.all(
      repos.map(async (repo) => {
        const one = fileImage(`${repo} one`);
        const two = fileImage(`${repo} two`);
        // the v1 ids the bridge derives for each image, from uncontested pushes to other tags
        await upload(a.url, repo, [...one.blobs, ...two.blobs]);
        assert.equal((await putManifest(a.url, repo, 'one', one.manifest)).status, 201);
        assert.equal((await putManifest(a.url, repo, 'two', two.manifest)).status, 201);
        const [id1, id2] = [await v1Tag(a.url, repo, 'one'), await v1Tag(a.url, repo, 'two')];
        assert.ok(id1 && id2 && id1 !== id2);

        const release = await holdLock(dir, `repository\n${repo}`);
        const pushA = putManifest(a.url, repo, 't', one.manifest);
        await sleep(1500); // A wrote the v2 tag and waits for the lock
        for (let i = 0; i < 3; i++) {
          const got = await request(a.url, `/v2/${repo}/manifests/t`, { headers: { Accept: S2 } });
          assert.equal(got.headers['docker-content-digest'], sha(one.manifest));
        }
        const pushB = putManifest(b.url, repo, 't', two.manifest);
        await sleep(1500); // B wrote the v2 tag and waits for the lock
        await release();
        const [ra, rb] = await Promise.all([pushA, pushB]);
        assert.equal(ra.status, 201, ra.text);
        assert.equal(rb.status, 201, rb.text);
        const v2 = await request(b.url, `/v2/${repo}/manifests/t`, { headers: { Accept: S2 } });
        assert.equal(v2.headers['docker-content-digest'], sha(two.manifest));
        return { repo, v1: await v1Tag(b.url, repo, 't'), id1, id2 };
      }),
    );
    const wrong = results.filter((r) => r.v1 !== r.id2);
    assert.deepEqual(
      wrong.map((r) => `${r.repo}: ${r.v1 === r.id1 ? 'the first push' : String(r.v1)}`),
      [],
      'v1 tags naming another image than the v2 tag',
    );
  });
});
