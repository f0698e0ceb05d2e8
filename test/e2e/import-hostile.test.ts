import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pyImage, sha256, writePythonTree } from '../helpers/python-tree.js';
import { cli } from '../helpers/migrate.js';
import { distributionTree, writeRepoLinks } from '../helpers/distribution-tree.js';

/**
 * `legacy-registry import` of trees that someone else wrote (issue 16, security issue's invariants):
 * symbolic links leading out of the tree, FIFOs and oversized small objects. Nothing outside the
 * tree is read or imported, the import never hangs or stops half way, and each refused object is
 * reported as skipped with why. Everything else in the tree is imported.
 */
interface Report {
  readonly skipped: { what: string; reason: string }[];
  readonly tags: number;
}

const blobFile = (storage: string, digest: string): string => join(storage, 'blobs', 'sha256', digest.slice(7, 9), digest.slice(7), 'data');

describe('import: a hostile source tree reaches nothing outside it and stops nothing', { timeout: 180_000 }, () => {
  let work = '';
  let outside = '';
  const secret = Buffer.from('root:$6$host-secret:19000:0:99999:7:::\n');

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'lr-import-hostile-'));
    outside = join(work, 'outside');
    await mkdir(outside);
    await writeFile(join(outside, 'shadow'), secret);
  });
  after(async () => {
    await rm(work, { recursive: true, force: true });
  });

  const importTree = async (tree: string, storage: string): Promise<{ code: number; report: Report; out: string }> => {
    assert.equal((await cli(storage, ['user', 'add', 'alice', 'alice@example.com', '--password', 'alicepw1'])).code, 0);
    const reportFile = join(work, `report-${Date.now()}.json`);
    const r = await cli(storage, ['import', '--owner', 'alice', '--no-progress', '--report', reportFile, tree]);
    return { code: r.code, report: JSON.parse(await readFile(reportFile, 'utf8')) as Report, out: r.stdout + r.stderr };
  };
  const reasonOf = (report: Report, what: string | RegExp): string | undefined =>
    report.skipped.find((s) => (typeof what === 'string' ? s.what === what : what.test(s.what)))?.reason;

  it('Python tree: links out of the tree, a FIFO json, an oversized tag file; the rest is imported', async () => {
    const tree = join(work, 'python');
    const base = pyImage({ gzip: false, label: 'base' });
    const fine = pyImage({ gzip: true, parent: base.id, size: 3000 });
    const linked = pyImage({ gzip: true, parent: base.id, size: 100 });
    const jsonOut = pyImage({ gzip: true, parent: base.id, size: 200 });
    const inside = pyImage({ gzip: false, parent: base.id, size: 300 });
    const fifo = pyImage({ gzip: true, parent: base.id, size: 400 });
    await writePythonTree(
      tree,
      [base, fine, linked, jsonOut, inside, fifo],
      [
        { name: 'alice/fine', tags: { latest: fine.id } },
        { name: 'alice/linked', tags: { latest: linked.id } },
        { name: 'alice/jsonout', tags: { latest: jsonOut.id } },
        { name: 'alice/inside', tags: { latest: inside.id } },
        { name: 'alice/fifo', tags: { latest: fifo.id } },
      ],
      // no checksum recorded for the linked layer: only the link check keeps the host file out
      { noChecksum: new Set([linked.id]) },
    );
    const img = (id: string, f: string): string => join(tree, 'images', id, f);
    // the layer: a link to a host file (absolute); the json: a link out to a copy of itself
    await rm(img(linked.id, 'layer'));
    await symlink(join(outside, 'shadow'), img(linked.id, 'layer'));
    await writeFile(join(outside, 'json-copy'), jsonOut.json);
    await rm(img(jsonOut.id, 'json'));
    await symlink('../../../outside/json-copy', img(jsonOut.id, 'json'));
    // a link that stays inside the tree is followed
    await mkdir(join(tree, 'shared'));
    await rename(img(inside.id, 'layer'), join(tree, 'shared', 'layer'));
    await symlink('../../shared/layer', img(inside.id, 'layer'));
    // a FIFO in place of a json: nobody will ever write to it (a blocking open would wait for good)
    await rm(img(fifo.id, 'json'));
    execFileSync('mkfifo', [img(fifo.id, 'json')]);
    // a repository directory and a tag file that are links out of the tree; a tag file past its cap
    await mkdir(join(outside, 'repo'));
    await writeFile(join(outside, 'repo', 'tag_latest'), linked.id);
    await writeFile(join(outside, 'tag-file'), fine.id);
    await symlink(join(outside, 'repo'), join(tree, 'repositories', 'alice', 'evil'));
    await symlink(join(outside, 'tag-file'), join(tree, 'repositories', 'alice', 'fine', 'tag_out'));
    await writeFile(join(tree, 'repositories', 'alice', 'fine', 'tag_big'), fine.id + ' '.repeat(5000));

    const storage = join(work, 'storage-python');
    const { code, report, out } = await importTree(tree, storage);
    assert.equal(code, 3, out);
    assert.match(reasonOf(report, 'alice/linked:latest') ?? '', new RegExp(`${linked.id}/layer: a symbolic link to .*outside/shadow, outside the tree`));
    assert.match(reasonOf(report, 'alice/jsonout:latest') ?? '', /\/json: a symbolic link to .*outside\/json-copy, outside the tree/);
    assert.match(reasonOf(report, 'alice/evil') ?? '', /repositories\/alice\/evil: a symbolic link to .*outside\/repo, outside the tree/);
    assert.match(reasonOf(report, 'alice/fine:out') ?? '', /tag_out: a symbolic link to .*outside\/tag-file, outside the tree/);
    assert.match(reasonOf(report, 'alice/fine:big') ?? '', /more than the 4096/);
    assert.match(reasonOf(report, 'alice/fifo:latest') ?? '', /no json in the source tree/);
    assert.equal(report.skipped.length, 6, JSON.stringify(report.skipped));
    // the rest went in: the tag through an inner link too, its layer's bytes as in the tree
    assert.equal(report.tags, 2);
    for (const repo of ['fine', 'inside']) assert.ok(existsSync(join(storage, 'v1', 'repositories', 'alice', repo, '_tags', 'latest')), repo);
    assert.ok(!existsSync(join(storage, 'v1', 'repositories', 'alice', 'linked', '_tags', 'latest')));
    assert.deepEqual(await readFile(blobFile(storage, sha256(inside.layer))), inside.layer);
    // the host file was never stored
    assert.ok(!existsSync(blobFile(storage, sha256(secret))));
  });

  it("Python tree: a repository's _index_images and json that are links out of the tree are refused, its tag imported", async () => {
    const tree = join(work, 'python-meta');
    const img = pyImage({ gzip: true, label: 'meta' });
    const other = pyImage({ gzip: false, label: 'outside-listed' });
    await writePythonTree(tree, [img, other], [{ name: 'alice/meta', tags: { latest: img.id } }]);
    const repoDir = join(tree, 'repositories', 'alice', 'meta');
    // outside: a list naming an image of the tree, and a repository json that would set metadata
    await writeFile(join(outside, 'index-images'), JSON.stringify([{ id: img.id }, { id: other.id }]));
    await writeFile(join(outside, 'repo-json'), JSON.stringify({ description: 'from outside the tree' }));
    await rm(join(repoDir, '_index_images'), { force: true });
    await symlink(join(outside, 'index-images'), join(repoDir, '_index_images'));
    await rm(join(repoDir, 'json'), { force: true });
    await symlink(join(outside, 'repo-json'), join(repoDir, 'json'));

    const storage = join(work, 'storage-python-meta');
    const { code, report, out } = await importTree(tree, storage);
    assert.equal(code, 3, out);
    assert.match(reasonOf(report, 'alice/meta _index_images') ?? '', /_index_images: a symbolic link to .*outside\/index-images, outside the tree/);
    assert.match(reasonOf(report, 'alice/meta json') ?? '', /not a JSON object/);
    assert.equal(report.skipped.length, 2, JSON.stringify(report.skipped));
    assert.equal(report.tags, 1);
    assert.ok(existsSync(join(storage, 'v1', 'repositories', 'alice', 'meta', '_tags', 'latest')));
    // the image only the outside list named was not brought in
    assert.ok(!existsSync(blobFile(storage, sha256(other.layer))));
  });

  it('distribution tree: a blob, a repository and a tag link out of the tree; the rest is imported', async () => {
    const tree = join(work, 'distribution');
    const d = distributionTree(tree);
    const v2 = d.v2;
    const good = await d.image('good');
    const bad = await d.image('bad');
    await d.repo('team/good', good.manifest, ['latest']);
    await d.repo('team/bad', bad.manifest, ['latest']);
    // the bad image's layer blob: a link to a copy outside (the same bytes: only the link is wrong)
    const badData = blobFile(v2, bad.layerDigest);
    await writeFile(join(outside, 'blob-copy'), bad.layer);
    await rm(badData);
    await symlink(join(outside, 'blob-copy'), badData);
    // a tag whose current link is a link out of the tree; a repository directory out of the tree
    await mkdir(join(outside, 'tag'), { recursive: true });
    await writeFile(join(outside, 'tag', 'link'), good.manifest);
    await mkdir(join(v2, 'repositories', 'team', 'good', '_manifests', 'tags', 'out'));
    await symlink(join(outside, 'tag'), join(v2, 'repositories', 'team', 'good', '_manifests', 'tags', 'out', 'current'));
    await mkdir(join(outside, 'v2repo'));
    await writeRepoLinks(join(outside, 'v2repo'), good.manifest, ['latest']);
    await symlink(join(outside, 'v2repo'), join(v2, 'repositories', 'team', 'evil'));

    const storage = join(work, 'storage-distribution');
    const { code, report, out } = await importTree(tree, storage);
    assert.equal(code, 3, out);
    assert.match(reasonOf(report, /^team\/bad@/) ?? '', new RegExp(`blob ${bad.layerDigest}: .*a symbolic link to .*outside/blob-copy, outside the tree`));
    assert.match(reasonOf(report, 'team/good:out') ?? '', /a symbolic link to .*outside\/tag\/link, outside the tree/);
    assert.match(reasonOf(report, /team\/evil/) ?? '', /a symbolic link to .*outside\/v2repo, outside the tree/);
    assert.equal(report.tags, 1, JSON.stringify(report.skipped));
    assert.deepEqual(await readFile(blobFile(storage, good.layerDigest)), good.layer);
    assert.ok(!existsSync(blobFile(storage, bad.layerDigest)));
  });
});
