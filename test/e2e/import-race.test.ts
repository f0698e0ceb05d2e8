import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { cp, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pyImage, writePythonTree, type PyImage } from '../helpers/python-tree.js';
import { cli } from '../helpers/migrate.js';

/**
 * `legacy-registry import` of a local tree that someone with write access to it changes during the
 * import: directories of the tree swapped, again and again, between the real directory and a
 * symbolic link to a directory outside the tree (another tenant's tree: the same image, its layer
 * holding a secret). The check that a path stays inside the tree and the open that follows it are
 * one step (src/util/open-beneath.ts): whatever the timing, nothing outside the tree is read; an
 * image caught mid-swap is skipped, with why.
 *
 * The race is real, not staged: a second process swaps the images' directories while the import
 * runs, and each import is repeated (bounded in time). Before the opens were made beneath the root,
 * the secret was imported in 4 of 4 runs of this suite (11 of its 12 cases, mostly in the first import).
 */
interface Report {
  readonly skipped: { what: string; reason: string }[];
  readonly tags: number;
}

/**
 * Swaps `<images>/<id>` with a link to `<outside>/<id>` and back, for every id at once, until killed:
 * a link for about 1 ms, the directory for about 6 ms (most reads find the tree as it should be).
 */
const SWAPPER = `
const fs = require('node:fs');
const path = require('node:path');
const [dir, outside, ...ids] = process.argv.slice(1);
const at = (p, id) => path.join(dir, p + id);
for (const id of ids) fs.symlinkSync(path.join(outside, id), at('.link-', id));
const pause = new Int32Array(new SharedArrayBuffer(4));
const hold = (ms) => Atomics.wait(pause, 0, 0, ms * (0.5 + Math.random()));
for (;;) {
  for (const id of ids) {
    fs.renameSync(at('', id), at('.real-', id));
    fs.renameSync(at('.link-', id), at('', id));
  }
  hold(1);
  for (const id of ids) {
    fs.renameSync(at('', id), at('.link-', id));
    fs.renameSync(at('.real-', id), at('', id));
  }
  hold(6);
}
`;

/** Whether any file below `dir` holds `bytes`. */
async function holds(dir: string, bytes: Buffer): Promise<string | undefined> {
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (!e.isFile()) continue;
    const p = join(e.parentPath, e.name);
    if ((await readFile(p)).includes(bytes)) return p;
  }
  return undefined;
}

describe('import: a tree whose directories are swapped for links out of it during the import', { timeout: 300_000 }, () => {
  let work = '';
  const secret = Buffer.from(`other-tenant-secret-${process.pid}-${Date.now()}`);
  const images: PyImage[] = [];
  const N = 16;

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'lr-import-race-'));
    for (let i = 0; i < N; i++) images.push(pyImage({ gzip: false, size: 4000 + i, label: `race-${i}` }));
  });
  after(async () => {
    await rm(work, { recursive: true, force: true });
  });

  /** A fresh tree (no _checksum: the attacker writes the tree) and the other tenant's copies of its images. */
  const writeTrees = async (name: string): Promise<{ tree: string; outside: string }> => {
    const tree = join(work, name, 'tree');
    const outside = join(work, name, 'other-tenant');
    await writePythonTree(
      tree,
      images,
      images.map((img, i) => ({ name: `alice/r${i}`, tags: { latest: img.id } })),
      { noChecksum: new Set(images.map((i) => i.id)) },
    );
    await mkdir(outside, { recursive: true });
    for (const img of images) {
      await cp(join(tree, 'images', img.id), join(outside, img.id), { recursive: true });
      // the same tar, the same size: the secret in place of the first bytes of its file's content
      const layer = Buffer.from(img.layer);
      secret.copy(layer, 512);
      await writeFile(join(outside, img.id, 'layer'), layer);
    }
    return { tree, outside };
  };

  for (const [mode, env] of [
    ['openat2', {}],
    ['a walk one component at a time (no openat2)', { LR_BENEATH_WALK: '1' }],
    ['without the native module (/proc/self/fd checked after the open)', { LR_BENEATH: '0' }],
  ] as const) {
    it(`never imports a file outside the tree, and skips what it could not read safely: ${mode}`, async () => {
      const started = Date.now();
      let runs = 0;
      let skipped = 0;
      let imported = 0;
      // several imports, each raced afresh, within a bounded time
      while (runs < 4 && Date.now() - started < 30_000) {
        runs++;
        const name = `${mode.split(' ')[0]}-${runs}`;
        const { tree, outside } = await writeTrees(name);
        const storage = join(work, name, 'storage');
        assert.equal((await cli(storage, ['user', 'add', 'alice', 'alice@example.com', '--password', 'alicepw1'])).code, 0);
        const reportFile = join(work, name, 'report.json');
        let swapper: ChildProcess | undefined;
        const swapperDone = new Promise<void>((resolve) => {
          swapper = spawn(process.execPath, ['-e', SWAPPER, join(tree, 'images'), outside, ...images.map((i) => i.id)], { stdio: 'ignore' });
          swapper.once('exit', () => resolve());
        });
        let r;
        try {
          r = await cli(storage, ['import', '--owner', 'alice', '--no-progress', '--report', reportFile, tree], env);
        } finally {
          swapper!.kill('SIGKILL');
          await swapperDone;
        }
        const out = r.stdout + r.stderr;
        assert.ok(r.code === 0 || r.code === 3, `the import ends with success or skips (${r.code}): ${out}`);
        assert.doesNotMatch(r.stderr, /Warning/, 'no warning of the process (a descriptor closed in the worker)');
        const report = JSON.parse(await readFile(reportFile, 'utf8')) as Report;
        const leak = await holds(storage, secret);
        assert.equal(leak, undefined, `run ${runs}: the other tenant's secret was imported (${leak})`);
        // every image is accounted for: imported from the tree, or its tag skipped with why
        const tagsSkipped = report.skipped.filter((s) => s.what.endsWith(':latest')).length;
        assert.equal(report.tags + tagsSkipped, N, JSON.stringify(report.skipped));
        skipped += tagsSkipped;
        imported += report.tags;
      }
      // the swaps did hit the import (some images skipped) without stopping it (others imported)
      assert.ok(skipped > 0, `${runs} imports: nothing skipped, the race never hit`);
      assert.ok(imported > 0, `${runs} imports: nothing imported`);
    });
  }
});
