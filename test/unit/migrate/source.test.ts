import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { appendFileSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import type { Readable } from 'node:stream';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DirectoryTree, SourceRefusedError, TooLargeError } from '../../../src/migrate/source.js';
import { MAX_LISTED_CHARS, S3Tree } from '../../../src/migrate/source-s3.js';

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

  it('never reaches outside the tree through a symbolic link, whatever the operation; links inside it work', async () => {
    const outside = mkdtempSync(join(tmpdir(), 'lr-outside-'));
    try {
      writeFileSync(join(outside, 'secret'), 'host file');
      mkdirSync(join(outside, 'dir'));
      writeFileSync(join(outside, 'dir', 'tag_latest'), 'x');
      mkdirSync(join(root, 'links'));
      symlinkSync(join(outside, 'secret'), join(root, 'links', 'out-file'));
      symlinkSync(`../../${outside.split('/').pop()!}/secret`, join(root, 'links', 'out-relative'));
      symlinkSync('../nowhere', join(root, 'links', 'dangling'));
      symlinkSync(join(outside, 'dir'), join(root, 'links', 'out-dir'));
      symlinkSync('../images/abc/json', join(root, 'links', 'in-file'));
      symlinkSync('../images/abc', join(root, 'links', 'in-dir'));
      const refused = (p: string) => (e: unknown) => e instanceof SourceRefusedError && e.message.includes(p) && /outside the tree/.test(e.message);
      for (const p of ['links/out-file', 'links/out-relative', 'links/out-dir/tag_latest']) {
        await assert.rejects(tree.read(p), refused(p));
        await assert.rejects(tree.size(p), refused(p));
        assert.throws(() => tree.localPath(p), refused(p));
        assert.throws(() => tree.open(p), refused(p));
      }
      await assert.rejects(tree.list('links/out-dir'), refused('links/out-dir'));
      assert.equal(await tree.read('links/dangling'), undefined);
      assert.equal(await tree.size('links/dangling'), undefined);
      // inside the tree: followed, and the real path is what the layer worker gets
      assert.equal((await tree.read('links/in-file'))?.toString(), '{"id":"abc"}');
      assert.equal(await tree.size('links/in-file'), 12);
      assert.equal(tree.localPath('links/in-file'), join(root, 'images', 'abc', 'json'));
      assert.ok((await tree.list('links/in-dir')).includes('json'));
      const chunks: Buffer[] = [];
      for await (const c of tree.open('links/in-file') as Readable) chunks.push(c as Buffer);
      assert.equal(Buffer.concat(chunks).toString(), '{"id":"abc"}');
      // a tree reached through a link of its own is read as usual
      const viaLink = join(outside, 'tree-link');
      symlinkSync(root, viaLink);
      assert.equal((await new DirectoryTree(viaLink).read('images/abc/json'))?.toString(), '{"id":"abc"}');
      await assert.rejects(new DirectoryTree(viaLink).read('links/out-file'), SourceRefusedError);
    } finally {
      rmSync(outside, { recursive: true, force: true });
      rmSync(join(root, 'links'), { recursive: true, force: true });
    }
  });

  it('a FIFO is not an object: read and size answer at once (no writer is waited for)', { timeout: 10_000 }, async () => {
    execFileSync('mkfifo', [join(root, 'images', 'abc', 'fifo')]);
    try {
      assert.equal(await tree.read('images/abc/fifo'), undefined);
      assert.equal(await tree.size('images/abc/fifo'), undefined);
    } finally {
      rmSync(join(root, 'images', 'abc', 'fifo'));
    }
  });
});

describe('S3Tree (the import source in a bucket): no path leaves the prefix', () => {
  it("refuses '.' and '..' segments before asking the server", async () => {
    // nothing listens on port 1: a request that went out would fail with a connection error instead
    const tree = new S3Tree({ bucket: 'b', prefix: 'registry', endpoint: 'http://127.0.0.1:1', accessKeyId: 'k', secretAccessKey: 's' });
    try {
      for (const p of ['repositories/../secret', '../x', 'images/./abc/json', '..']) {
        await assert.rejects(tree.read(p), SourceRefusedError, p);
        await assert.rejects(tree.size(p), SourceRefusedError, p);
        await assert.rejects(tree.list(p), SourceRefusedError, p);
        assert.throws(() => tree.open(p), SourceRefusedError, p);
      }
      // an ordinary path goes to the server (and fails to connect here)
      await assert.rejects(tree.size('images/abc/json'), (e: unknown) => !(e instanceof SourceRefusedError));
    } finally {
      tree.close();
    }
  });

  it('reads a small object with a Range of its cap: an object grown since the HEAD is refused, not read whole', async () => {
    const ranges: (string | undefined)[] = [];
    const server = createServer((req, res) => {
      if (req.method === 'HEAD') {
        res.writeHead(200, { 'Content-Length': '10', 'Content-Type': 'application/octet-stream' }).end();
        return;
      }
      ranges.push(req.headers.range);
      // the object is now 1 MiB: a server that honours the Range sends 101 bytes of it
      const body = Buffer.alloc(101, 1);
      res.writeHead(206, { 'Content-Length': String(body.length), 'Content-Range': `bytes 0-100/${1 << 20}` }).end(body);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const { port } = server.address() as AddressInfo;
    const tree = new S3Tree({ bucket: 'b', prefix: 'registry', endpoint: `http://127.0.0.1:${port}`, accessKeyId: 'k', secretAccessKey: 's' });
    try {
      await assert.rejects(tree.read('images/abc/json', 100), TooLargeError);
      assert.deepEqual(ranges, ['bytes=0-100']);
    } finally {
      tree.close();
      server.close();
    }
  });

  it(
    'a listing that pages on with fresh tokens is refused once its names pass MAX_LISTED_CHARS, not held until memory runs out',
    { timeout: 60_000 },
    async () => {
      // each page: 4,000 names of 1,000 characters (~4 MB of XML, under the 16 MiB an answer may have)
      const name = (page: number, i: number): string => `${String(page).padStart(6, '0')}-${String(i).padStart(6, '0')}-${'n'.repeat(986)}`;
      let pages = 0;
      const server = createServer((req, res) => {
        const page = pages++;
        const prefixes = Array.from({ length: 4000 }, (_, i) => `<CommonPrefixes><Prefix>registry/repositories/${name(page, i)}/</Prefix></CommonPrefixes>`);
        // a store that never ends its listing (page 100 would be 400 MB of names); each token new
        res
          .writeHead(200, { 'Content-Type': 'application/xml' })
          .end(
            `<?xml version="1.0" encoding="UTF-8"?><ListBucketResult><Name>b</Name><IsTruncated>${page < 100 ? 'true' : 'false'}</IsTruncated>` +
              `<NextContinuationToken>t${page}</NextContinuationToken>${prefixes.join('')}</ListBucketResult>`,
          );
      });
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      const { port } = server.address() as AddressInfo;
      const tree = new S3Tree({ bucket: 'b', prefix: 'registry', endpoint: `http://127.0.0.1:${port}`, accessKeyId: 'k', secretAccessKey: 's' });
      try {
        await assert.rejects(tree.list('repositories'), (e: unknown) => e instanceof SourceRefusedError && /more than \d+ characters in all/.test(e.message));
        // refused at the first page past the cap
        assert.equal(pages, Math.ceil(MAX_LISTED_CHARS / (4000 * 1000)));
      } finally {
        tree.close();
        server.close();
      }
    },
  );
});
