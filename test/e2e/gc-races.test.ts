import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readdir, stat, utimes } from 'node:fs/promises';
import { join } from 'node:path';
import { request } from '../helpers/http.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { makeImage, putTag } from '../helpers/v1-client.js';
import { assertV1Pulls, assertV2Pulls, gcCli, hooked, pushV1, pushV2Chunked } from '../helpers/gc-push.js';
import { GarbageCollector } from '../../src/content/gc.js';
import { createFilesystemDriver } from '../../src/storage/drivers/index.js';

/**
 * Garbage collection racing requests at exact points of a run (a driver hook runs a request over
 * HTTP just before GC's storage call), and what a run stopped part-way leaves to the next one.
 * Filesystem storage, a server in this process, `legacy-registry gc` as a child process.
 */

const sha = (b: Buffer | string): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const S2 = 'application/vnd.docker.distribution.manifest.v2+json';

/** Make every file and directory below dir (and dir) look written `ageMs` ago. */
async function age(dir: string, ageMs: number): Promise<void> {
  const t = new Date(Date.now() - ageMs);
  const entries = await readdir(dir, { withFileTypes: true, recursive: true });
  // files first, then directories deepest first (touching a child does not move a directory's time, utimes sets it)
  for (const e of entries) if (e.isFile()) await utimes(join(e.parentPath, e.name), t, t);
  const dirs = entries.filter((e) => e.isDirectory()).map((e) => join(e.parentPath, e.name));
  for (const d of dirs.sort((a, b) => b.length - a.length)) await utimes(d, t, t);
  await utimes(dir, t, t);
}

const blobDir = (dataDir: string, digest: string): string => join(dataDir, 'blobs', 'sha256', digest.slice(7, 9), digest.slice(7));

async function exists(p: string): Promise<boolean> {
  return stat(p).then(
    () => true,
    () => false,
  );
}

const cli = (dataDir: string, ...args: string[]): Promise<{ stdout: string; stderr: string }> => gcCli(dataDir, args, 60_000);

const HOUR = 3_600_000;

describe('gc racing pushes at exact points of a run', () => {
  let s: TestServer;
  before(async () => {
    s = await startTestServer({ standalone: true, storage_delete: true, metadata_cache_ttl: 0 });
  });
  after(async () => {
    await s?.stop();
  });

  it('-m: a v1 tag put on an untagged image between the records re-check and its delete keeps the image and its layers', async () => {
    const base = makeImage();
    const chain = [base, makeImage(base.id)];
    const pushed = await pushV1(s.url, 'racev1/retag', 'old', chain);
    assert.equal((await request(s.url, '/v1/repositories/racev1/retag/tags/old', { method: 'DELETE' })).status, 200);
    // the image records and their layers written an hour ago: untagged garbage for a 1-minute grace
    for (const img of chain) {
      await age(join(s.dataDir, 'v1', 'images', img.id), HOUR);
      await age(blobDir(s.dataDir, sha(img.layer)), HOUR);
    }
    // a client pushes the same image again: the json exists (409), the layers are skipped, the tag is put
    const driver = hooked(
      createFilesystemDriver({ root: s.dataDir }),
      'delete',
      (k) => chain.some((i) => k === `v1/images/${i.id}`),
      async () => {
        const t = await putTag(s.url, 'racev1/retag', 'new', chain[1]!.id);
        assert.equal(t.status, 200, t.text);
      },
    );
    await new GarbageCollector(driver).run({ deleteUntagged: true, graceMs: 60_000, settleMs: 200 });
    await assertV1Pulls(s.url, { ...pushed, tag: 'new' });
  });

  it('-m: a v2 manifest pushed again by tag between the records re-check and its delete stays pullable with its blobs', async () => {
    const pushed = await pushV2Chunked(s.url, 'racev2/retag', 'old', 'racev2-retag');
    assert.equal((await request(s.url, '/v2/racev2/retag/manifests/old', { method: 'DELETE' })).status, 202);
    await age(join(s.dataDir, 'v2', 'repositories', 'racev2', 'retag'), HOUR);
    for (const b of [...pushed.blobs, pushed.manifest]) await age(blobDir(s.dataDir, sha(b)), HOUR);
    const hex = pushed.digest.slice(7);
    const driver = hooked(
      createFilesystemDriver({ root: s.dataDir }),
      'delete',
      (k) => k === `v2/repositories/racev2/retag/_manifests/revisions/${hex}`,
      async () => {
        const put = await request(s.url, '/v2/racev2/retag/manifests/new', { method: 'PUT', body: pushed.manifest, headers: { 'Content-Type': S2 } });
        assert.equal(put.status, 201, put.text);
      },
    );
    await new GarbageCollector(driver).run({ deleteUntagged: true, graceMs: 60_000, settleMs: 200 });
    await assertV2Pulls(s.url, { ...pushed, tag: 'new' });
  });

  it('-m: the deleted records kept until the settle are bounded in bytes; past the bound they wait for a later run', async () => {
    const base = makeImage();
    const chain = [base, makeImage(base.id)];
    await pushV1(s.url, 'racebudget/v1', 'old', chain);
    assert.equal((await request(s.url, '/v1/repositories/racebudget/v1/tags/old', { method: 'DELETE' })).status, 200);
    const v2 = await pushV2Chunked(s.url, 'racebudget/v2', 'old', 'racebudget-v2');
    assert.equal((await request(s.url, '/v2/racebudget/v2/manifests/old', { method: 'DELETE' })).status, 202);
    for (const img of chain) await age(join(s.dataDir, 'v1', 'images', img.id), HOUR);
    await age(join(s.dataDir, 'v2', 'repositories', 'racebudget', 'v2'), HOUR);
    const driver = createFilesystemDriver({ root: s.dataDir });
    // a bound smaller than any record: nothing of them is deleted (nor kept in memory)
    const tight = await new GarbageCollector(driver).run({ deleteUntagged: true, graceMs: 60_000, settleMs: 0, savedRecordsMax: 1 });
    assert.equal(tight.v1Images.deleted + tight.v2Manifests.deleted, 0, JSON.stringify(tight));
    for (const img of chain) assert.ok(await exists(join(s.dataDir, 'v1', 'images', img.id, 'json')), 'left for a later run');
    assert.ok(await exists(join(s.dataDir, 'v2', 'repositories', 'racebudget', 'v2', '_manifests', 'revisions', v2.digest.slice(7))));
    // the default bound: deleted
    const next = await new GarbageCollector(driver).run({ deleteUntagged: true, graceMs: 60_000, settleMs: 0 });
    assert.ok(next.v1Images.deleted >= 2 && next.v2Manifests.deleted >= 1, JSON.stringify(next));
    assert.ok(!(await exists(join(s.dataDir, 'v1', 'images', base.id, 'json'))));
  });

  it('a run stopped while a blob pushed again is moved aside leaves it to the next run, which puts it back', async () => {
    const blob = Buffer.from(`stopped ${Math.random()}`);
    assert.equal((await request(s.url, `/v2/racekill/first/blobs/uploads/?digest=${sha(blob)}`, { method: 'POST', body: blob })).status, 201);
    assert.equal((await request(s.url, '/v1/repositories/racekill/first/', { method: 'DELETE' })).status, 200);
    await age(blobDir(s.dataDir, sha(blob)), HOUR);
    const hex = sha(blob).slice(7);
    const key = `blobs/sha256/${hex.slice(0, 2)}/${hex}/data`;
    // the same bytes pushed by another repository just before the sweep reaches them: republished (fresh)
    // and linked; the run moves them aside, finds them newer, and dies before it moves them back
    const pushAgain = hooked(
      createFilesystemDriver({ root: s.dataDir }),
      'move',
      (from) => from === key,
      async () => {
        assert.equal((await request(s.url, `/v2/racekill/second/blobs/uploads/?digest=${sha(blob)}`, { method: 'POST', body: blob })).status, 201);
      },
    );
    const dies = hooked(
      pushAgain,
      'move',
      (from, to) => from.startsWith('_gc/trash/') && to === key,
      async () => undefined,
      new Error('killed'),
    );
    await assert.rejects(new GarbageCollector(dies).run({ graceMs: 60_000, settleMs: 0 }), /killed/);
    // the pushed blob is missing now; the next run (the command) must bring it back, not leave it in the trash
    await cli(s.dataDir, '--grace', '1m');
    const got = await request(s.url, `/v2/racekill/second/blobs/${sha(blob)}`);
    assert.equal(got.status, 200, 'the blob pushed again pulls after the next run');
    assert.deepEqual(got.body, blob);
    assert.ok(!(await exists(join(s.dataDir, '_gc', 'trash', `${hex}`))));
  });
});

describe('mirror expiry racing a local push of the same bytes', { timeout: 60_000 }, () => {
  it('a v1 image pushed with the layer of an expiring cached blob during the sweep keeps its layer', async () => {
    const upstream = await startTestServer({ standalone: true, v2: true });
    const mirror = await startTestServer({
      standalone: true,
      v2: true,
      metadata_cache_ttl: 0,
      mirror: { upstreams: [{ prefix: 'hub/', url: upstream.url }], ttl: 3600 },
    });
    try {
      // two cached blobs expire in one sweep; the second one's bytes are pushed over v1 while the sweep runs
      const img = makeImage();
      // entries are swept in digest order: the first must come before the image's layer
      let first = Buffer.from(`first ${Math.random()}`);
      while (sha(first) > sha(img.layer)) first = Buffer.from(`first ${Math.random()}`);
      for (const b of [first, img.layer]) {
        assert.equal((await request(upstream.url, `/v2/lib/shared/blobs/uploads/?digest=${sha(b)}`, { method: 'POST', body: b })).status, 201);
        assert.equal((await request(mirror.url, `/v2/hub/lib/shared/blobs/${sha(b)}`)).status, 200);
      }
      const m = mirror.mirror!;
      const cached = async (): Promise<number> => (await m.schedule.entries('blob')).length;
      for (let i = 0; i < 100 && (await cached()) < 2; i++) await new Promise((r) => setTimeout(r, 50));
      assert.equal(await cached(), 2);
      const elsewhere = m.schedule.blobElsewhere.bind(m.schedule);
      let seen = 0;
      m.schedule.blobElsewhere = async (digest, name) => {
        // the second entry: the v1 layers the sweep reads once were read for the first
        if (++seen === 2 && digest === sha(img.layer)) await pushV1(mirror.url, 'mine/v1app', 'latest', [img]);
        return elsewhere(digest, name);
      };
      const removed = await m.sweep(Date.now() + 3601_000);
      assert.equal(removed.blobs, 2);
      assert.equal(seen, 2);
      await assertV1Pulls(mirror.url, { repo: 'mine/v1app', tag: 'latest', chain: [img] });
    } finally {
      await mirror.stop();
      await upstream.stop();
    }
  });
});
