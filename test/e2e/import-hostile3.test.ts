import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pyImage, writePythonTree } from '../helpers/python-tree.js';
import { cli, type CliResult } from '../helpers/migrate.js';
import { distributionTree } from '../helpers/distribution-tree.js';

/**
 * `legacy-registry import` of hostile trees, beyond import-hostile.test.ts and
 * import-hostile2.test.ts (the third adversarial review of the importer).
 */
interface Report {
  readonly skipped: { what: string; reason: string }[];
  readonly tags: number;
  readonly peakRssMiB: number;
}

/** JSON text of about `bytes` bytes: `{"id": id, "x": [[[…]]]}`, nested bytes / 2 deep. */
const deepJson = (id: string, bytes: number): Buffer => {
  const n = Math.floor((bytes - 100) / 2);
  return Buffer.from(`{"id":"${id}","x":${'['.repeat(n)}${']'.repeat(n)}}`);
};

const v1Tag = (storage: string, repo: string, tag: string): string => join(storage, 'v1', 'repositories', repo, '_tags', tag);
const v2Tag = (storage: string, name: string, tag: string): string => join(storage, 'v2', 'repositories', name, '_manifests', 'tags', tag);

describe('import: hostile trees (3)', { timeout: 120_000 }, () => {
  let work = '';
  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'lr-import-hostile3-'));
  });
  after(async () => {
    // rm -rf: node's rm stops at paths past PATH_MAX (the deep tree below)
    execFileSync('rm', ['-rf', work]);
  });

  const users = new Set<string>();
  const runImport = async (tree: string, storage: string, args: readonly string[] = []): Promise<{ r: CliResult; report: Report | undefined; out: string }> => {
    if (!users.has(storage)) {
      assert.equal((await cli(storage, ['user', 'add', 'alice', 'alice@example.com', '--password', 'alicepw1'])).code, 0);
      users.add(storage);
    }
    const reportFile = join(work, `report-${Date.now()}-${Math.random()}.json`);
    let timer: NodeJS.Timeout | undefined;
    const r = await cli(storage, ['import', '--owner', 'alice', '--no-progress', '--report', reportFile, ...args, tree], {}, (p) => {
      timer = setTimeout(() => p.kill('SIGKILL'), 40_000);
    });
    clearTimeout(timer);
    const report = existsSync(reportFile) ? (JSON.parse(await readFile(reportFile, 'utf8')) as Report) : undefined;
    return { r, report, out: r.stdout + r.stderr };
  };
  const reasonOf = (report: Report | undefined, what: string | RegExp): string | undefined =>
    report?.skipped.find((s) => (typeof what === 'string' ? s.what === what : what.test(s.what)))?.reason;

  it('Python tree: links that lead to each other (a layer, a repository directory) are skipped with why, not the end of the import', async () => {
    const tree = join(work, 'py-loops');
    const ok = pyImage({ gzip: true, label: 'ok' });
    const looped = pyImage({ gzip: true, label: 'looped' });
    await writePythonTree(
      tree,
      [ok, looped],
      [
        { name: 'alice/ok', tags: { v1: ok.id } },
        { name: 'alice/looped', tags: { v1: looped.id } },
      ],
    );
    // `layer -> layer`, and a repository directory that is a link to itself
    await rm(join(tree, 'images', looped.id, 'layer'));
    await symlink('layer', join(tree, 'images', looped.id, 'layer'));
    await symlink('self', join(tree, 'repositories', 'alice', 'self'));
    const storage = join(work, 'storage-py-loops');
    const { r, report, out } = await runImport(tree, storage);
    assert.equal(r.code, 3, out);
    assert.match(reasonOf(report, 'alice/looped:v1') ?? '', /layer: symbolic links that lead to each other/, JSON.stringify(report?.skipped));
    assert.match(reasonOf(report, 'alice/self') ?? '', /symbolic links that lead to each other/, JSON.stringify(report?.skipped));
    assert.equal(report?.tags, 1);
    assert.ok(existsSync(v1Tag(storage, 'alice/ok', 'v1')), 'the rest of the tree is imported');
  });

  it('distribution tree: a blob that is a link to itself and directories nested past PATH_MAX are skipped, the rest imported', async () => {
    const tree = join(work, 'dist-deep');
    const d = distributionTree(tree);
    const ok = await d.image('ok');
    await d.repo('team/ok', ok.manifest, ['latest']);
    const looped = await d.image('looped');
    await d.repo('team/looped', looped.manifest, ['latest']);
    await rm(d.blobData(looped.layerDigest));
    await symlink('data', d.blobData(looped.layerDigest));
    // 250 levels of 30 characters: ~7,750 bytes of path, past Linux's PATH_MAX of 4,096 (made by
    // mkdir -p, which goes down one directory at a time, as tar extracts)
    const base = join(d.v2, 'repositories', 'deep');
    await mkdir(base, { recursive: true });
    execFileSync('mkdir', ['-p', Array.from({ length: 250 }, () => 'a'.repeat(30)).join('/')], { cwd: base });
    const storage = join(work, 'storage-dist-deep');
    const { r, report, out } = await runImport(tree, storage);
    assert.equal(r.code, 3, out);
    assert.match(reasonOf(report, /^team\/looped@/) ?? '', /symbolic links that lead to each other/, JSON.stringify(report?.skipped));
    assert.match(reasonOf(report, /^deep\/a{30}\/a{30}/) ?? '', /nested deeper than a repository name can be/, JSON.stringify(report?.skipped));
    assert.equal(report?.tags, 1);
    assert.ok(existsSync(v2Tag(storage, 'team/ok', 'latest')), 'the rest of the tree is imported');
    assert.ok(!existsSync(v2Tag(storage, 'team/looped', 'latest')));
  });

  it('Python tree: an image json past max_json_size, and json, _checksum and _index_images nested past any list, are refused before they are parsed', async () => {
    const tree = join(work, 'py-json');
    const ok = pyImage({ gzip: true, label: 'ok' });
    const big = pyImage({ gzip: true, label: 'big' });
    const deep = pyImage({ gzip: true, label: 'deep' });
    const deepSum = pyImage({ gzip: true, label: 'deep-sum' });
    await writePythonTree(tree, [ok, big, deep, deepSum], [{ name: 'alice/json', tags: { ok: ok.id, big: big.id, deep: deep.id, sum: deepSum.id } }], {
      noChecksum: new Set([big.id, deep.id]),
    });
    // a json a push would be refused (413: more than max_json_size, 4 MiB)
    const bigJson = JSON.parse(big.json.toString()) as Record<string, unknown>;
    bigJson.comment = 'x'.repeat(5 * 1024 * 1024);
    await writeFile(join(tree, 'images', big.id, 'json'), JSON.stringify(bigJson));
    // within the caps, but nested millions deep: JSON.parse of 8 MiB of brackets takes ~1 s and
    // ~300 MiB (measured); a push's body is refused for depth before it is parsed
    await writeFile(join(tree, 'images', deep.id, 'json'), deepJson(deep.id, 4 * 1024 * 1024 - 1024));
    await writeFile(join(tree, 'images', deepSum.id, '_checksum'), deepJson(deepSum.id, 8 * 1024 * 1024 - 1024));
    await writeFile(join(tree, 'repositories', 'alice', 'json', '_index_images'), deepJson(ok.id, 8 * 1024 * 1024 - 1024));
    const storage = join(work, 'storage-py-json');
    const { r, report, out } = await runImport(tree, storage);
    assert.equal(r.code, 3, out);
    const skipped = JSON.stringify(report?.skipped);
    assert.match(reasonOf(report, 'alice/json:big') ?? '', /more than the 4194304/, skipped);
    assert.match(reasonOf(report, 'alice/json:deep') ?? '', /INVALID_JSON|not valid JSON|invalid json/i, skipped);
    assert.match(reasonOf(report, 'alice/json:sum') ?? '', /in a form the Python registry never wrote/, skipped);
    assert.match(reasonOf(report, 'alice/json _index_images') ?? '', /not a JSON list of images/, skipped);
    assert.equal(report?.tags, 1);
    assert.ok(existsSync(v1Tag(storage, 'alice/json', 'ok')));
    // nothing of those files was parsed: the import's memory stays that of a small tree
    assert.ok((report?.peakRssMiB ?? 0) < 160, `peak RSS ${report?.peakRssMiB} MiB`);
  });

  it('distribution tree: a manifest nested past 64 levels is skipped before it is parsed', async () => {
    const tree = join(work, 'dist-deep-manifest');
    const d = distributionTree(tree);
    const ok = await d.image('ok');
    await d.repo('team/ok', ok.manifest, ['latest']);
    // a revision whose blob is 4 MiB of brackets (within the 4 MiB a manifest may have), hashing to its digest
    const deep = await d.putBlob(deepJson('x', 4 * 1024 * 1024 - 1024));
    await d.repo('team/deep', deep, ['latest']);
    const storage = join(work, 'storage-dist-deep-manifest');
    const { r, report, out } = await runImport(tree, storage);
    assert.equal(r.code, 3, out);
    assert.match(reasonOf(report, `team/deep@${deep}`) ?? '', /nested deeper than 64 levels/, JSON.stringify(report?.skipped));
    assert.ok(existsSync(v2Tag(storage, 'team/ok', 'latest')));
    assert.ok((report?.peakRssMiB ?? 0) < 160, `peak RSS ${report?.peakRssMiB} MiB`);
  });
});
