import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DirectoryTree, TooLargeError } from '../../../src/migrate/source.js';

describe('DirectoryTree (the import source on a disk): small objects read with their cap', () => {
  let root = '';
  let tree: DirectoryTree;
  before(() => {
    root = mkdtempSync(join(tmpdir(), 'lr-source-'));
    mkdirSync(join(root, 'images', 'abc'), { recursive: true });
    writeFileSync(join(root, 'images', 'abc', 'json'), '{"id":"abc"}');
    writeFileSync(join(root, 'images', 'abc', 'empty'), '');
    writeFileSync(join(root, 'images', 'abc', 'big'), Buffer.alloc(100_000, 7));
    tree = new DirectoryTree(root);
  });
  after(() => rmSync(root, { recursive: true, force: true }));

  it('reads a file whole; a missing path, a directory and a path under a file are undefined', async () => {
    assert.equal((await tree.read('images/abc/json'))?.toString(), '{"id":"abc"}');
    assert.equal((await tree.read('images/abc/empty'))?.length, 0);
    assert.equal(await tree.read('images/abc/none'), undefined);
    assert.equal(await tree.read('images/abc'), undefined);
    assert.equal(await tree.read('images/abc/json/x'), undefined);
    assert.equal((await tree.read('images/abc/big'))?.length, 100_000);
  });

  it('refuses a file past the cap, and reads one exactly at it', async () => {
    await assert.rejects(tree.read('images/abc/big', 99_999), TooLargeError);
    const exact = await tree.read('images/abc/big', 100_000);
    assert.equal(exact?.length, 100_000);
    assert.ok(exact?.every((b) => b === 7));
  });

  it('reads what a file holds now: after an append, its new length is checked against the cap', async () => {
    const p = join(root, 'images', 'abc', 'growing');
    writeFileSync(p, 'x'.repeat(10));
    assert.equal((await tree.read('images/abc/growing', 20))?.length, 10);
    appendFileSync(p, 'y'.repeat(15));
    await assert.rejects(tree.read('images/abc/growing', 20), TooLargeError);
    assert.equal((await tree.read('images/abc/growing', 25))?.toString(), 'x'.repeat(10) + 'y'.repeat(15));
  });

  it('lists and sizes; nothing outside the tree is reached by ..', async () => {
    assert.deepEqual(await tree.list('images/abc'), ['big', 'empty', 'growing', 'json']);
    assert.deepEqual(await tree.list('nothing/here'), []);
    assert.equal(await tree.size('images/abc/json'), 12);
    assert.equal(await tree.size('images/abc'), undefined);
    assert.equal(await tree.size('images/none'), undefined);
    await assert.rejects(tree.read('../etc/passwd'), /outside the tree/);
  });
});
