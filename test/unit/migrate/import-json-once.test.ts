import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../../../src/config/load.js';
import { openContent, type Content } from '../../../src/migrate/services.js';
import { importPython } from '../../../src/migrate/import-python.js';
import { ImportReport } from '../../../src/migrate/report.js';
import { DirectoryTree, type SourceTree } from '../../../src/migrate/source.js';
import { parseRepoName } from '../../../src/content/names.js';
import { pyImage, writePythonTree } from '../../helpers/python-tree.js';

/**
 * The importer reads each image json of a Python tree once: the bytes whose parent the chain was
 * checked against are the bytes imported. It read them twice (the chain check, then the import),
 * and a json changed in between was stored with an ancestry its parent disagrees with.
 */
describe('import: one reading of each image json', () => {
  let work = '';
  let content: Content | undefined;
  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'lr-import-json-once-'));
  });
  after(async () => {
    await content?.close();
    await rm(work, { recursive: true, force: true });
  });

  it('imports the json the chain was checked against, even when the tree changes it afterwards', async () => {
    const base = pyImage({ gzip: false });
    const other = pyImage({ gzip: false });
    const top = pyImage({ gzip: true, parent: base.id });
    const root = join(work, 'tree');
    // no recorded checksum for top: nothing else ties its json to its layer
    await writePythonTree(
      root,
      [base, other, top],
      [
        { name: 'alice/app', tags: { latest: top.id } },
        { name: 'alice/other', tags: { latest: other.id } },
      ],
      {
        noChecksum: new Set([top.id]),
      },
    );
    const dir = new DirectoryTree(root);
    const reads = new Map<string, number>();
    const swapped = Buffer.from(JSON.stringify({ ...(JSON.parse(top.json.toString()) as object), parent: other.id }));
    // a tree that changes under the import: top's json names another parent from its second reading on
    const tree: SourceTree = {
      describe: dir.describe,
      list: (d) => dir.list(d),
      size: (p) => dir.size(p),
      open: (p) => dir.open(p),
      localPath: (p) => dir.localPath(p),
      localFile: (p) => dir.localFile(p),
      read: async (p, max) => {
        const n = (reads.get(p) ?? 0) + 1;
        reads.set(p, n);
        if (p === `images/${top.id}/json` && n > 1) return swapped;
        return dir.read(p, max);
      },
    };
    const storage = join(work, 'storage');
    const config = loadConfig({ env: {}, flavor: 'test', overrides: { storage_path: storage, standalone: true, loglevel: 'silent' } });
    content = await openContent(config, undefined, { digestWorkers: 0 });
    const report = new ImportReport(tree.describe, 'python', false, false);
    await importPython(tree, content, report, { dryRun: false, ownerId: null });
    assert.deepEqual(report.skipped, []);
    assert.equal(report.imagesImported, 3);
    for (const img of [base, other, top]) assert.equal(reads.get(`images/${img.id}/json`), 1, `json of ${img.id} read once`);
    const repo = parseRepoName('alice/app')!;
    const stored = await content.images.readJson(content.images.scopeOf(repo), top.id);
    assert.ok(stored?.equals(top.json), `stored: ${stored?.toString()}`);
  });
});
