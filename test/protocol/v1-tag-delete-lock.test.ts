import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { request, type Response } from '../helpers/http.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { DOCKER_UA, makeImage, pushImage } from '../helpers/v1-client.js';
import { holdLock } from '../helpers/held-lock.js';

const present = (path: string): Promise<boolean> =>
  stat(path).then(
    () => true,
    () => false,
  );

/**
 * R14 DELETE tag against R13 PUT tag. A PUT writes the tag's metadata, then the tag; a DELETE
 * removes the tag, then its metadata. PUT tag (and the v2→v1 bridge) run under the repository's
 * lock, shared by every node on the storage; DELETE tag took none, so the two interleaved: the PUT's
 * metadata written, the old tag removed, the PUT's tag written, its metadata removed — a tag left
 * without its metadata (GET tag json then answered the defaults). The DELETE now takes the same lock.
 *
 * First, deterministically: the repository's lock is held from outside (a lock object in the
 * storage, as another node holds it) while a PUT and a DELETE of one tag are sent; neither may
 * answer before it is let go, and the tag then ends whole. Then the race itself: a DELETE sent a
 * few milliseconds after a PUT, swept over the PUT's writes.
 */
describe('v1 DELETE tag under the repository lock', () => {
  let dir: string;
  let s: TestServer;
  const repo = 'library/racy';
  let ids: string[] = [];
  const tagFile = (name: string, tag: string): string => join(dir, 'v1', 'repositories', name, '_tags', tag);
  const metaFile = (name: string, tag: string): string => join(dir, 'v1', 'repositories', name, '_tagjson', tag);

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'lr-tag-delete-'));
    s = await startTestServer({ standalone: true, metadata_cache_ttl: 0 }, { dataDir: dir });
    ids = [];
    for (let i = 0; i < 2; i++) {
      const img = makeImage();
      const rs = await pushImage(s.url, img);
      assert.equal(rs[3]?.status, 200, rs.map((r) => `${r.status} ${r.text}`).join(' | '));
      ids.push(img.id);
    }
  });
  after(async () => {
    await s?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  const putTag = (name: string, tag: string, id: string): Promise<Response> =>
    request(s.url, `/v1/repositories/${name}/tags/${tag}`, {
      method: 'PUT',
      headers: { 'User-Agent': DOCKER_UA, 'Content-Type': 'application/json' },
      body: JSON.stringify(id),
    });
  const deleteTag = (name: string, tag: string): Promise<Response> => request(s.url, `/v1/repositories/${name}/tags/${tag}`, { method: 'DELETE' });

  /** The tag and its metadata: both stored or both gone. */
  async function assertWhole(tag: string): Promise<'tagged' | 'deleted'> {
    const [hasTag, hasMeta] = [await present(tagFile(repo, tag)), await present(metaFile(repo, tag))];
    assert.equal(hasMeta, hasTag, `tag ${tag}: ${hasTag ? 'stored' : 'gone'}, its metadata ${hasMeta ? 'stored' : 'gone'}`);
    const got = await request(s.url, `/v1/repositories/${repo}/tags/${tag}`);
    assert.equal(got.status, hasTag ? 200 : 404, got.text);
    if (hasTag) {
      const meta = await request(s.url, `/v1/repositories/${repo}/tags/${tag}/json`);
      assert.equal(meta.json<{ docker_version?: string }>().docker_version, '1.5.0', meta.text);
    }
    return hasTag ? 'tagged' : 'deleted';
  }

  it('a DELETE waits for the lock a PUT of the tag waits for; the tag ends whole', { timeout: 120_000 }, async () => {
    for (let i = 0; i < 4; i++) {
      const tag = `t${i}`;
      const before = await putTag(repo, tag, ids[0]!);
      assert.equal(before.status, 200, before.text);
      const release = await holdLock(dir, `repository\n${repo}`);
      const answered: string[] = [];
      let put: Promise<Response>;
      let del: Promise<Response>;
      try {
        put = putTag(repo, tag, ids[1]!).finally(() => answered.push('put'));
        // the DELETE first or second: either may then take the lock first
        if (i % 2 === 1) await sleep(300);
        del = deleteTag(repo, tag).finally(() => answered.push('delete'));
        await sleep(1500);
        assert.deepEqual(answered, [], 'answered while another node held the repository lock');
        assert.equal(await assertWhole(tag), 'tagged');
      } finally {
        await release();
      }
      const [p, d] = await Promise.all([put, del]);
      assert.equal(p.status, 200, p.text);
      assert.equal(d.status, 200, d.text);
      await assertWhole(tag);
    }
  });

  it('a DELETE sent while a PUT of the tag writes leaves it whole', { timeout: 180_000 }, async () => {
    // The DELETE sent 0 to 20 ms after the PUT (the PUT takes the lock, then writes the metadata of
    // `latest`, the repository's, then the tag): without the lock about one in eight ended with the
    // tag stored and its metadata gone.
    const broken: string[] = [];
    for (let round = 0; round < 120; round++) {
      const name = `library/race${round}`;
      assert.equal((await putTag(name, 'latest', ids[0]!)).status, 200);
      const put = putTag(name, 'latest', ids[1]!);
      await sleep((round % 40) / 2);
      const [p, d] = await Promise.all([put, deleteTag(name, 'latest')]);
      assert.equal(p.status, 200, p.text);
      assert.equal(d.status, 200, d.text);
      const [hasTag, hasMeta] = [await present(tagFile(name, 'latest')), await present(metaFile(name, 'latest'))];
      if (hasTag !== hasMeta) broken.push(`${name}: tag ${hasTag ? 'stored' : 'gone'}, metadata ${hasMeta ? 'stored' : 'gone'}`);
    }
    assert.deepEqual(broken, []);
  });
});
