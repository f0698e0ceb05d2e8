import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readlinkSync } from 'node:fs';
import { mkdtemp, readFile, rm, symlink, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { gzipSync } from 'node:zlib';
import { pyImage, sha256, writePythonTree, type PyImage } from '../helpers/python-tree.js';
import { cli, type CliResult } from '../helpers/migrate.js';
import { tarOf } from '../helpers/v1-client.js';
import { distributionTree } from '../helpers/distribution-tree.js';
import { createDb } from '../../src/db/knex.js';
import { createFilesystemDriver } from '../../src/storage/drivers/filesystem.js';
import { StorageLock } from '../../src/content/storage-lock.js';
import { schema1Payload } from '../../src/content/schema1.js';
import { MAX_ANCESTRY } from '../../src/content/v1-images.js';

/**
 * `legacy-registry import` of damaged or hostile trees, beyond import-hostile.test.ts: an ancestry
 * file that disagrees with the images' json, a distribution blob that names bytes this registry
 * already holds (in another repository) without having them, a blob past max_layer_size or one that
 * shrinks while it is copied, and a repositories/ directory that links back to itself.
 */
interface Report {
  readonly skipped: { what: string; reason: string }[];
  readonly tags: number;
}

const v1Image = (storage: string, repo: string, id: string, f: string): string => join(storage, 'v1', 'repositories', repo, '_images', id, f);
const layerLink = (storage: string, name: string, digest: string): string => join(storage, 'v2', 'repositories', name, '_layers', digest.slice(7));

describe('import: damaged and hostile trees (2)', { timeout: 120_000 }, () => {
  let work = '';
  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'lr-import-hostile2-'));
  });
  after(async () => {
    await rm(work, { recursive: true, force: true });
  });

  const users = new Set<string>();
  /** One import run; the CLI is killed after `killMs` (a hang fails the test instead of the suite). */
  const runImport = async (
    tree: string,
    storage: string,
    opts: { env?: Record<string, string>; killMs?: number; onPid?: (pid: number) => void } = {},
  ): Promise<{ r: CliResult; report: Report | undefined; out: string }> => {
    if (!users.has(storage)) {
      assert.equal((await cli(storage, ['user', 'add', 'alice', 'alice@example.com', '--password', 'alicepw1'])).code, 0);
      users.add(storage);
    }
    const reportFile = join(work, `report-${Date.now()}-${Math.random()}.json`);
    let timer: NodeJS.Timeout | undefined;
    const r = await cli(storage, ['import', '--owner', 'alice', '--no-progress', '--report', reportFile, tree], opts.env ?? {}, (p) => {
      timer = setTimeout(() => p.kill('SIGKILL'), opts.killMs ?? 40_000);
      if (p.pid) opts.onPid?.(p.pid);
    });
    clearTimeout(timer);
    const report = existsSync(reportFile) ? (JSON.parse(await readFile(reportFile, 'utf8')) as Report) : undefined;
    return { r, report, out: r.stdout + r.stderr };
  };
  const reasonOf = (report: Report | undefined, what: string | RegExp): string | undefined =>
    report?.skipped.find((s) => (typeof what === 'string' ? s.what === what : what.test(s.what)))?.reason;

  it('Python tree: an ancestry file naming another parent than the json is refused, never stored as the chain', async () => {
    const tree = join(work, 'py-ancestry');
    const x = pyImage({ gzip: true, label: 'x' });
    const y = pyImage({ gzip: true, label: 'y' });
    const b = pyImage({ gzip: true, parent: x.id, label: 'b' });
    const a = pyImage({ gzip: true, parent: b.id, label: 'a' });
    await writePythonTree(tree, [x, y, b, a], [{ name: 'alice/anc', tags: { t1: b.id, t2: a.id } }]);
    // a's ancestry says b's parent is y; b's json (and b's own ancestry) say x
    await writeFile(join(tree, 'images', a.id, 'ancestry'), JSON.stringify([a.id, b.id, y.id]));
    const storage = join(work, 'storage-py-ancestry');
    const { r, report, out } = await runImport(tree, storage);
    assert.equal(r.code, 3, out);
    assert.match(reasonOf(report, 'alice/anc:t2') ?? '', new RegExp(`${b.id}.*parent`), JSON.stringify(report?.skipped));
    assert.equal(report?.tags, 1);
    // whatever happened to a, no stored ancestry of it leaves x out (the layers a client would fetch)
    const stored = v1Image(storage, 'alice/anc', a.id, 'ancestry');
    if (existsSync(stored)) assert.deepEqual(JSON.parse(await readFile(stored, 'utf8')), [a.id, b.id, x.id]);
    assert.ok(!existsSync(join(storage, 'v1', 'repositories', 'alice', 'anc', '_tags', 't2')));
  });

  it(`Python tree: an image whose ancestry lists more than MAX_ANCESTRY (${MAX_ANCESTRY}) images is skipped with why, as a push is refused`, async () => {
    const tree = join(work, 'py-long-chain');
    const ok = pyImage({ gzip: true, label: 'ok' });
    const long = pyImage({ gzip: true, label: 'long' });
    await writePythonTree(tree, [ok, long], [{ name: 'alice/long', tags: { ok: ok.id, long: long.id } }]);
    // each image's ancestry record repeats all below it (O(n²) bytes): the chain is not imported
    const below = Array.from({ length: MAX_ANCESTRY }, () => pyImage({ gzip: true }).id);
    await writeFile(join(tree, 'images', long.id, 'ancestry'), JSON.stringify([long.id, ...below]));
    const storage = join(work, 'storage-py-long-chain');
    const { r, report, out } = await runImport(tree, storage);
    assert.equal(r.code, 3, out);
    assert.match(
      reasonOf(report, 'alice/long:long') ?? '',
      new RegExp(`${long.id}: an ancestry of ${MAX_ANCESTRY + 1} images, more than the ${MAX_ANCESTRY}`),
      JSON.stringify(report?.skipped),
    );
    assert.equal(report?.tags, 1);
    assert.ok(!existsSync(v1Image(storage, 'alice/long', long.id, 'ancestry')));
  });

  it('Python tree: a repository private here stays private when a tree names it public (storage and index)', async () => {
    const storage = join(work, 'storage-py-private');
    const first = join(work, 'py-private-1');
    const one = pyImage({ gzip: true, label: 'one' });
    await writePythonTree(first, [one], [{ name: 'alice/sec', tags: { v1: one.id }, private: true }]);
    const r1 = await runImport(first, storage);
    assert.equal(r1.r.code, 0, r1.out);
    const marker = join(storage, 'v1', 'repositories', 'alice', 'sec', '_private');
    assert.ok(existsSync(marker));
    // another tree (an older copy of the registry, say) has the repository public, with another tag
    const second = join(work, 'py-private-2');
    const two = pyImage({ gzip: true, label: 'two' });
    await writePythonTree(second, [two], [{ name: 'alice/sec', tags: { v2: two.id } }]);
    const r2 = await runImport(second, storage);
    assert.equal(r2.r.code, 3, r2.out);
    assert.match(reasonOf(r2.report, 'alice/sec (public in the source)') ?? '', /private here/, JSON.stringify(r2.report?.skipped));
    assert.equal(r2.report?.tags, 1, 'the tag itself is imported');
    assert.ok(existsSync(marker), 'the storage marker stays');
    const db = createDb(null, storage);
    try {
      const row = (await db('repositories').where({ namespace: 'alice', name: 'sec' }).first()) as { private: number | boolean } | undefined;
      assert.ok(row && Boolean(row.private), `the index record stays private: ${JSON.stringify(row)}`);
    } finally {
      await db.destroy();
    }
  });

  it('distribution tree: a blob stored here for another repository is not linked on the strength of a file of the right size', async () => {
    const storage = join(work, 'storage-dist-known');
    // first, a repository holding the layer (imported: verified then)
    const tree1 = join(work, 'dist-known-1');
    const d1 = distributionTree(tree1);
    const secretLayer = gzipSync(tarOf({ 'secret.txt': randomBytes(2000) }));
    const secret = await d1.image('secret', secretLayer);
    await d1.repo('private/secret', secret.manifest, ['latest']);
    const first = await runImport(tree1, storage);
    assert.equal(first.r.code, 0, first.out);
    assert.ok(existsSync(layerLink(storage, 'private/secret', secret.layerDigest)));
    // then a tree that knows only the layer's digest and size: its "data" is zeros
    const tree2 = join(work, 'dist-known-2');
    const d2 = distributionTree(tree2);
    const thief = await d2.image('thief', secretLayer);
    await writeFile(d2.blobData(thief.layerDigest), Buffer.alloc(secretLayer.length));
    await d2.repo('team/thief', thief.manifest, ['latest']);
    const second = await runImport(tree2, storage);
    assert.equal(second.r.code, 3, second.out);
    assert.match(reasonOf(second.report, /^team\/thief@/) ?? '', new RegExp(`blob ${thief.layerDigest}: the bytes hash to`));
    assert.ok(!existsSync(layerLink(storage, 'team/thief', thief.layerDigest)), 'the layer was linked into team/thief');
    assert.ok(!existsSync(join(storage, 'v2', 'repositories', 'team', 'thief', '_manifests', 'tags', 'latest')));
  });

  it('distribution tree: a blob past max_layer_size is skipped, not the end of the import', async () => {
    const tree = join(work, 'dist-big');
    const d = distributionTree(tree);
    const big = await d.image('big', gzipSync(randomBytes(6000), { level: 0 }));
    const small = await d.image('small');
    await d.repo('team/big', big.manifest, ['latest']);
    await d.repo('team/small', small.manifest, ['latest']);
    const storage = join(work, 'storage-dist-big');
    const { r, report, out } = await runImport(tree, storage, { env: { MAX_LAYER_SIZE: '4000' } });
    assert.equal(r.code, 3, out);
    assert.match(reasonOf(report, /^team\/big@/) ?? '', new RegExp(`blob ${big.layerDigest}: .*4000`), JSON.stringify(report?.skipped));
    assert.equal(report?.tags, 1);
  });

  it('distribution tree: a blob that shrinks while it is copied is skipped, the rest imported', async () => {
    const tree = join(work, 'dist-shrink');
    const d = distributionTree(tree);
    const shrink = await d.image('shrink', Buffer.from('placeholder'));
    const small = await d.image('small2');
    await d.repo('team/shrink', shrink.manifest, ['latest']);
    await d.repo('team/small', small.manifest, ['latest']);
    // 1 GiB, sparse: the copy takes a while, and the file is cut to 1 byte as soon as it is open
    const data = d.blobData(shrink.layerDigest);
    await truncate(data, 1 << 30);
    let pid = 0;
    let cut = false;
    const watcher = (async () => {
      for (let i = 0; i < 2000 && !cut; i++) {
        await sleep(5);
        if (!pid) continue;
        try {
          for (const fd of readdirSync(`/proc/${pid}/fd`)) {
            if (readlinkSync(`/proc/${pid}/fd/${fd}`) === data) {
              await truncate(data, 1);
              cut = true;
              break;
            }
          }
        } catch {
          // the process has not started, or has ended
        }
      }
    })();
    const storage = join(work, 'storage-dist-shrink');
    const { r, report, out } = await runImport(tree, storage, { onPid: (p) => (pid = p) });
    await watcher;
    assert.equal(r.code, 3, out);
    assert.ok(cut, 'the blob was not cut while it was read');
    assert.match(reasonOf(report, /^team\/shrink@/) ?? '', /the bytes hash to/, JSON.stringify(report?.skipped));
    assert.equal(report?.tags, 1);
    assert.ok(!existsSync(layerLink(storage, 'team/shrink', shrink.layerDigest)));
  });

  /** Every visible image (json, no mark) of the repositories is whole; how many there are. */
  const wholeImages = async (storage: string, images: readonly PyImage[], repos: readonly { name: string }[]): Promise<number> => {
    const byId = new Map(images.map((i) => [i.id, i]));
    let visible = 0;
    for (const { name } of repos) {
      const dir = join(storage, 'v1', 'repositories', name, '_images');
      for (const id of existsSync(dir) ? readdirSync(dir) : []) {
        const f = (x: string): string => v1Image(storage, name, id, x);
        if (!existsSync(f('json')) || existsSync(f('_inprogress'))) continue;
        visible++;
        assert.ok(existsSync(f('layer')), `${name} ${id}: visible without its layer link`);
        assert.ok(existsSync(f('ancestry')), `${name} ${id}: visible without its ancestry`);
        const link = JSON.parse(await readFile(f('layer'), 'utf8')) as { digest: string };
        assert.equal(link.digest, sha256(byId.get(id)!.layer));
        const blob = join(storage, 'blobs', 'sha256', link.digest.slice(7, 9), link.digest.slice(7), 'data');
        assert.deepEqual(await readFile(blob), byId.get(id)!.layer, `${id}: its blob`);
      }
    }
    return visible;
  };

  /** Python repositories of `n` chains of `depth` images each, layers of `size` bytes. */
  const chains = (prefix: string, n: number, depth: number, size: number): { images: PyImage[]; repos: { name: string; tags: Record<string, string> }[] } => {
    const images: PyImage[] = [];
    const repos = [];
    for (let r = 0; r < n; r++) {
      let parent: string | undefined;
      const tags: Record<string, string> = {};
      for (let i = 0; i < depth; i++) {
        const img = pyImage({ gzip: true, size, ...(parent ? { parent } : {}) });
        images.push(img);
        parent = img.id;
        tags[`t${i}`] = img.id;
      }
      repos.push({ name: `alice/${prefix}${r}`, tags });
    }
    return { images, repos };
  };

  it('Python tree: an import SIGKILLed half way shows nothing half, the next run completes it, a third imports nothing', async () => {
    const tree = join(work, 'py-killed');
    const { images, repos } = chains('killed', 4, 12, 150_000);
    await writePythonTree(tree, images, repos);
    const storage = join(work, 'storage-py-killed');
    let pid = 0;
    const killer = (async () => {
      // killed once some images are visible (a flush of 64 at most: some, not all, are)
      for (let i = 0; i < 4000; i++) {
        await sleep(5);
        if (!pid) continue;
        const blobs = join(storage, 'blobs', 'sha256');
        if (existsSync(blobs) && readdirSync(blobs).length >= 3) {
          process.kill(pid, 'SIGKILL');
          return true;
        }
      }
      return false;
    })();
    const first = await runImport(tree, storage, { onPid: (p) => (pid = p) });
    assert.ok(await killer, first.out);
    assert.equal(first.r.code, 128, first.out);
    await wholeImages(storage, images, repos);
    // the lock of the killed run is broken at once (its process is gone), the run completes it all
    const second = await runImport(tree, storage);
    assert.equal(second.r.code, 0, second.out);
    assert.equal(second.report?.tags, 48);
    assert.equal(await wholeImages(storage, images, repos), 48);
    const third = await runImport(tree, storage);
    assert.equal(third.r.code, 0, third.out);
    assert.deepEqual((third.report as unknown as { images: { imported: number } }).images.imported, 0);
  });

  it('Python tree: two imports of it at once leave every image whole (json, ancestry, layer link, bytes)', async () => {
    const tree = join(work, 'py-twice');
    const { images, repos } = chains('twice', 4, 8, 20_000);
    await writePythonTree(tree, images, repos);
    const storage = join(work, 'storage-py-twice');
    assert.equal((await cli(storage, ['user', 'add', 'alice', 'alice@example.com', '--password', 'alicepw1'])).code, 0);
    users.add(storage);
    const [one, two] = await Promise.all([runImport(tree, storage), runImport(tree, storage)]);
    // whatever each run reported, every image that is visible (json, no mark) is whole
    const visible = await wholeImages(storage, images, repos);
    // one run imports; the other one either ran after it or was refused at once (the storage's
    // import lock), changing nothing: neither stopped half way on the other's images
    const done = [one, two].filter((run) => run.r.code === 0);
    assert.ok(done.length >= 1, one.out + two.out);
    for (const run of [one, two]) if (run.r.code !== 0) assert.match(run.r.stderr, /another import is running on this storage \(host .*pid \d+/, run.out);
    // and a third run completes what the two left
    const third = await runImport(tree, storage);
    assert.equal(third.r.code, 0, third.out);
    assert.equal(third.report?.tags, 32);
    assert.ok(visible > 0);
  });

  it('distribution tree: repositories/ directories that link back to themselves end neither in a crash nor a hang', async () => {
    const tree = join(work, 'dist-loop');
    const d = distributionTree(tree);
    const good = await d.image('loopgood');
    await d.repo('team/good', good.manifest, ['latest']);
    // team/self is team, team/up is repositories: every level holds both again
    await symlink('.', join(d.v2, 'repositories', 'team', 'self'));
    await symlink('..', join(d.v2, 'repositories', 'team', 'up'));
    const storage = join(work, 'storage-dist-loop');
    const { r, report, out } = await runImport(tree, storage, { killMs: 30_000 });
    assert.equal(r.code, 3, out);
    assert.equal(report?.tags, 1, JSON.stringify(report?.skipped));
    assert.match(reasonOf(report, /team\/self|team\/up/) ?? '', /the same directory as/);
    assert.ok(existsSync(join(storage, 'v2', 'repositories', 'team', 'good', '_manifests', 'tags', 'latest')));
  });

  it('distribution tree: schema1 revisions named otherwise than their repository are imported, as 2.8.2 stored them; a name it refuses is reported', async () => {
    // distribution 2.8.2 keeps a schema1 push as its payload (no signatures) under the payload's
    // digest, whatever the document's name and tag: it compares neither with the URL
    const tree = join(work, 'dist-s1-names');
    const d = distributionTree(tree);
    const layer = gzipSync(tarOf({ 's1.txt': 's1\n' }));
    const layerDigest = await d.putBlob(layer);
    const v1 = JSON.stringify({ id: '8'.repeat(64), created: '2024-01-01T00:00:00Z' });
    const s1 = async (name: string, tag: string): Promise<string> =>
      d.putBlob(Buffer.from(schema1Payload(name, tag, 'amd64', [{ blobSum: layerDigest, v1Compatibility: v1 }])));
    await d.repo('team/old', await s1('other/app', 'other'), ['other']);
    await d.repo('team/old', await s1('localhost:5000/team/old', 'elsewhere'), ['host']);
    const bad = await s1('!!!', 'bad');
    await d.repo('team/old', bad, ['bad']);
    const storage = join(work, 'storage-dist-s1-names');
    const { r, report, out } = await runImport(tree, storage);
    assert.equal(r.code, 3, out);
    assert.equal(report?.tags, 2, JSON.stringify(report?.skipped));
    assert.match(reasonOf(report, `team/old@${bad}`) ?? '', /refused as a push would be: invalid repository name/, JSON.stringify(report?.skipped));
    assert.match(reasonOf(report, 'team/old:bad') ?? '', /was not imported/);
    for (const t of ['other', 'host']) assert.ok(existsSync(join(storage, 'v2', 'repositories', 'team', 'old', '_manifests', 'tags', t)), t);
  });
  it('Python tree: a _checksum in a form the Python registry never wrote is no verification: the image is refused', async () => {
    const tree = join(work, 'py-odd-checksum');
    const ok = pyImage({ gzip: true, label: 'ok' });
    const odd = pyImage({ gzip: true, parent: ok.id, label: 'odd' });
    await writePythonTree(tree, [ok, odd], [{ name: 'alice/odd', tags: { good: ok.id, bad: odd.id } }]);
    // odd's layer bytes replaced, and its checksum record in a form nothing computes
    await writeFile(join(tree, 'images', odd.id, 'layer'), gzipSync(tarOf({ 'other.txt': 'not what was pushed\n' })));
    await writeFile(join(tree, 'images', odd.id, '_checksum'), JSON.stringify([`md5:${'0'.repeat(32)}`]));
    const storage = join(work, 'storage-py-odd-checksum');
    const { r, report, out } = await runImport(tree, storage);
    assert.equal(r.code, 3, out);
    assert.match(reasonOf(report, 'alice/odd:bad') ?? '', /form the Python registry never wrote/, JSON.stringify(report?.skipped));
    assert.equal(report?.tags, 1);
    assert.ok(!existsSync(v1Image(storage, 'alice/odd', odd.id, 'json')), 'the unverified image is not stored');
    assert.ok(existsSync(v1Image(storage, 'alice/odd', ok.id, 'json')));
  });

  // a server on the same storage holds its locks (src/content/storage-lock.ts) while it writes a v1
  // image or a repository's tags: the import waits for them as a second node would
  for (const [what, lockName] of [
    ['an image', (id: string) => `image\nalice/held\n${id}`],
    ['the repository', () => 'repository\nalice/held'],
  ] as const) {
    it(`Python tree: the import waits for the lock a live server holds on ${what}`, async () => {
      const tree = join(work, `py-held-${what.replace(/ /g, '-')}`);
      const img = pyImage({ gzip: true, label: 'held' });
      await writePythonTree(tree, [img], [{ name: 'alice/held', tags: { v1: img.id } }]);
      const storage = join(work, `storage-held-${what.replace(/ /g, '-')}`);
      // the user first (runImport adds it once per storage), so that the lock is held during the import itself
      await runImport(join(work, 'no-such-tree'), storage).catch(() => undefined);
      const driver = createFilesystemDriver({ root: storage });
      let released = 0;
      let started!: () => void;
      const taken = new Promise<void>((resolve) => (started = resolve));
      const held = new StorageLock(driver).run(lockName(img.id), async () => {
        started();
        await sleep(4000);
        released = Date.now();
      });
      await taken;
      const { r, report, out } = await runImport(tree, storage);
      const ended = Date.now();
      await held;
      assert.equal(r.code, 0, out);
      assert.equal(report?.tags, 1);
      assert.ok(released > 0 && ended >= released, `the import ended ${released - ended} ms before the lock was released`);
      assert.ok(existsSync(join(storage, 'v1', 'repositories', 'alice', 'held', '_tags', 'v1')));
    });
  }
});
