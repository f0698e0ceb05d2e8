import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, open, readFile, rm, statfs } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { StorageDriver } from '../../src/storage/driver.js';
import { createFilesystemDriver } from '../../src/storage/drivers/filesystem.js';
import {
  closeDirectFd,
  DIRECT_AFTER,
  DIRECT_BUFFER,
  directIoCounters,
  directIoStatus,
  discardKeptBuffers,
  giveReadBuffer,
  openDirectRead,
  readDirect,
  setDirectIo,
  takeReadBuffer,
} from '../../src/storage/direct-io.js';

/*
 * Big files written by the filesystem driver's writers go past the page cache from DIRECT_AFTER on
 * (src/storage/direct-io.ts, issue 18). Every byte must land where it belongs whatever the sizes of
 * the pieces, the offset a writer starts at (an append after a PATCH of any size) or how it ends.
 */
const MiB = 1024 * 1024;
const TMPFS = 0x01021994;

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** Writes `data` through a writer in pieces of `piece` bytes (the last one shorter) and commits. */
async function writeIn(d: StorageDriver, key: string, data: Buffer, piece: number, append = false): Promise<void> {
  const w = await d.writer(key, { append });
  const pieces: Buffer[] = [];
  for (let at = 0; at < data.length; at += piece) pieces.push(data.subarray(at, Math.min(data.length, at + piece)));
  await pipeline(Readable.from(pieces), w.stream);
  await w.commit();
}

async function withDriver(fn: (d: StorageDriver, root: string) => Promise<void>, base = tmpdir()): Promise<void> {
  const root = await mkdtemp(join(base, 'direct-io-'));
  try {
    await fn(createFilesystemDriver({ root, blocking: 'metadata' }), root);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

/** Bytes of the file in the page cache (util-linux fincore), or undefined without it. */
function cachedBytes(path: string): number | undefined {
  const r = spawnSync('fincore', ['--bytes', '--noheadings', '--output', 'RES', path], { encoding: 'utf8' });
  return r.status === 0 ? Number(r.stdout.trim()) : undefined;
}

describe('filesystem driver: big files written with O_DIRECT (LR_DIRECT_IO=1)', async () => {
  const onTmpfs = (await statfs(tmpdir())).type === TMPFS;
  const direct = directIoStatus().available && !onTmpfs;
  // off unless LR_DIRECT_IO=1: on for these tests, as it was after them
  const wasOn = directIoStatus().on;
  before(() => setDirectIo(true));
  after(() => setDirectIo(wasOn));

  it('is off by default', { skip: process.env.LR_DIRECT_IO !== undefined && 'LR_DIRECT_IO is set' }, () => {
    assert.equal(wasOn, false);
  });

  it('is available on this machine (Linux, native/directio.c built), as the start line says', { skip: onTmpfs && 'the test directory is on tmpfs' }, () => {
    assert.equal(directIoStatus().available, true, directIoStatus().reason);
  });

  it('keeps every byte, whatever the file size and the sizes of the pieces', async () => {
    await withDriver(async (d) => {
      const sizes = [0, 1, DIRECT_AFTER - 1, DIRECT_AFTER, DIRECT_AFTER + 1, DIRECT_AFTER + 4095, DIRECT_AFTER + 4096, DIRECT_AFTER + 3 * MiB + 123, 33 * MiB];
      const pieces = [64 * 1024, 65_537, 20 * MiB];
      for (const size of sizes)
        for (const piece of pieces) {
          const data = randomBytes(size);
          const key = `f/${size}-${piece}`;
          const before = directIoCounters().written;
          await writeIn(d, key, data, piece);
          const back = await d.getContent(key);
          assert.equal(back.length, size, `${size} in ${piece}`);
          assert.equal(sha(back), sha(data), `${size} in ${piece}`);
          // at least one whole 1 MiB buffer past DIRECT_AFTER went directly
          if (direct && size >= DIRECT_AFTER + 2 * MiB) assert.ok(directIoCounters().written - before >= MiB, `${size} in ${piece}: written directly`);
          if (size <= DIRECT_AFTER) assert.equal(directIoCounters().written, before, `${size}: all through the page cache`);
        }
      assert.equal(directIoCounters().lent, 0, 'every buffer is back in the pool');
    });
  });

  it('appends after a file of any size, as the PATCHes of a chunked upload do', async () => {
    await withDriver(async (d) => {
      const parts = [randomBytes(10 * MiB + 777), randomBytes(12 * MiB + 5), randomBytes(3), randomBytes(9 * MiB)];
      for (const [i, p] of parts.entries()) await writeIn(d, 'chunked', p, 65_536 + i, i > 0);
      assert.equal(sha(await d.getContent('chunked')), sha(Buffer.concat(parts)));
      assert.equal(directIoCounters().lent, 0);
    });
  });

  it('leaves the bulk of a big file out of the page cache', { skip: !direct && 'no direct writes here' }, async () => {
    await withDriver(async (d, root) => {
      const data = randomBytes(64 * MiB);
      await writeIn(d, 'big', data, 64 * 1024);
      const cached = cachedBytes(join(root, 'big'));
      if (cached === undefined) return; // no fincore: the counters above tell
      // the first DIRECT_AFTER bytes and the last block went through it, not the other 56 MiB
      assert.ok(cached <= DIRECT_AFTER + MiB, `${cached} bytes of the file in the page cache`);
      assert.equal(sha(await readFile(join(root, 'big'))), sha(data));
    });
  });

  it('gives its buffers back when a write is cancelled or its stream destroyed', async () => {
    await withDriver(async (d) => {
      const w = await d.writer('cancelled');
      const piece = randomBytes(MiB);
      for (let i = 0; i < 12; i++) if (!w.stream.write(piece)) await new Promise((r) => w.stream.once('drain', r));
      await w.cancel();
      const w2 = await d.writer('destroyed');
      for (let i = 0; i < 12; i++) if (!w2.stream.write(piece)) await new Promise((r) => w2.stream.once('drain', r));
      w2.stream.destroy(new Error('client went away'));
      await new Promise((r) => w2.stream.once('close', r));
      await w2.cancel();
      assert.equal(directIoCounters().lent, 0);
    });
  });

  it('writers destroyed at any moment never touch the buffers or files of the others', async () => {
    await withDriver(async (d) => {
      const kept = Array.from({ length: 4 }, () => randomBytes(DIRECT_AFTER + 7 * MiB + 3));
      const piece = randomBytes(256 * 1024);
      const destroyed = Array.from({ length: 8 }, async (_, i) => {
        const w = await d.writer(`gone/${i}`);
        // each stops at another point: before, at and past DIRECT_AFTER, while its chunks are still
        // being copied into its buffers and a write of one of them is in flight
        const pieces = 28 + i * 5;
        for (let n = 0; n < pieces; n++) w.stream.write(piece);
        await new Promise((r) => setTimeout(r, i * 3));
        w.stream.destroy(new Error('client went away'));
        await new Promise((r) => w.stream.once('close', r));
        await w.cancel();
      });
      await Promise.all([...kept.map((f, i) => writeIn(d, `kept/${i}`, f, 64 * 1024 + i)), ...destroyed]);
      for (const [i, f] of kept.entries()) assert.equal(sha(await d.getContent(`kept/${i}`)), sha(f), `file ${i}`);
      assert.equal(directIoCounters().lent, 0);

      // the next writer takes the buffers a destroyed one gave back (the pool is last in, first out):
      // one appending past DIRECT_AFTER takes them with its first bytes, while the destroyed writer's
      // last chunks may still be on their way
      for (let i = 0; i < 16; i++) {
        const head = randomBytes(DIRECT_AFTER);
        await d.putContent(`next/${i}`, head);
        const w = await d.writer(`gone-again/${i}`);
        const big = randomBytes(4 * MiB);
        for (let n = 0; n < 6; n++) w.stream.write(big);
        await new Promise((r) => setTimeout(r, i % 4));
        w.stream.destroy(new Error('client went away'));
        const tail = randomBytes(5 * MiB + 11);
        await writeIn(d, `next/${i}`, tail, 64 * 1024, true);
        await w.cancel();
        assert.equal(sha(await d.getContent(`next/${i}`)), sha(Buffer.concat([head, tail])), `next ${i}`);
      }
      assert.equal(directIoCounters().lent, 0);
    });
  });

  it('writes many big files at once correctly when the pool runs out (the others use the page cache)', async () => {
    await withDriver(async (d) => {
      const files = Array.from({ length: 12 }, () => randomBytes(DIRECT_AFTER + 5 * MiB + 17));
      let most = 0;
      const watch = setInterval(() => (most = Math.max(most, directIoCounters().lent)), 1);
      try {
        await Promise.all(files.map((f, i) => writeIn(d, `many/${i}`, f, 64 * 1024)));
      } finally {
        clearInterval(watch);
      }
      for (const [i, f] of files.entries()) assert.equal(sha(await d.getContent(`many/${i}`)), sha(f), `file ${i}`);
      assert.ok(most <= 16, `${most} buffers lent at most`);
      assert.equal(directIoCounters().lent, 0);
    });
  });

  it('an idle server gives the kept buffers pages back, and they are used again correctly', { skip: !direct && 'no direct writes here' }, async () => {
    await withDriver(async (d) => {
      await writeIn(d, 'a', randomBytes(DIRECT_AFTER + 4 * MiB), 64 * 1024);
      assert.ok(directIoCounters().kept >= 2);
      assert.equal(discardKeptBuffers(), true);
      const data = randomBytes(DIRECT_AFTER + 4 * MiB + 99);
      await writeIn(d, 'b', data, 64 * 1024);
      assert.equal(sha(await d.getContent('b')), sha(data));
    });
  });

  it('a file system without O_DIRECT gets the bytes through the page cache', { skip: !direct && 'no direct writes here' }, async () => {
    // /dev/shm is tmpfs: it takes O_DIRECT on recent kernels and refuses it on older ones; either way every byte is there
    await withDriver(async (d) => {
      const data = randomBytes(DIRECT_AFTER + 6 * MiB + 1);
      await writeIn(d, 'shm', data, 64 * 1024);
      assert.equal(sha(await d.getContent('shm')), sha(data));
    }, '/dev/shm');
  });

  /*
   * Downloads read what the page cache does not hold with O_DIRECT (src/http/send-file.ts): a big
   * blob written directly gets a direct descriptor and its bytes come back exact from aligned reads;
   * one the page cache holds whole is read through it as before.
   */
  it(
    'a download reads a blob written directly with O_DIRECT, and a cached one through the page cache',
    { skip: !direct && 'no direct writes here' },
    async () => {
      await withDriver(async (d, root) => {
        const data = randomBytes(DIRECT_AFTER + 5 * MiB + 777);
        await writeIn(d, 'big', data, 64 * 1024);
        const path = join(root, 'big');
        const handle = await open(path, 'r');
        try {
          const from = DIRECT_AFTER + 4096;
          const fd = openDirectRead(handle.fd, from, data.length);
          assert.ok(fd !== undefined, 'a direct descriptor for the part written directly');
          try {
            const before = directIoCounters().read;
            const chunks: Buffer[] = [];
            for (let at = from; at < data.length; at += DIRECT_BUFFER) {
              const b = takeReadBuffer();
              const n = await readDirect(fd, b, Math.min(DIRECT_BUFFER, Math.ceil((data.length - at) / 4096) * 4096), at);
              chunks.push(Buffer.from(b.subarray(0, n)));
              giveReadBuffer(b);
            }
            assert.ok(Buffer.concat(chunks).equals(data.subarray(from)), 'the direct reads give the bytes written');
            assert.equal(directIoCounters().read - before, data.length - from);
          } finally {
            closeDirectFd(fd);
          }
        } finally {
          await handle.close();
        }
        // the same bytes read through the page cache once: the whole file is cached, no direct read
        assert.ok((await readFile(path)).equals(data));
        const again = await open(path, 'r');
        try {
          assert.equal(openDirectRead(again.fd, DIRECT_AFTER + 4096, data.length), undefined, 'a file in the page cache is read through it');
        } finally {
          await again.close();
        }
        setDirectIo(false);
        try {
          const off = await open(path, 'r');
          assert.equal(openDirectRead(off.fd, 0, data.length), undefined, 'nothing direct with direct I/O off');
          await off.close();
        } finally {
          setDirectIo(true);
        }
      });
    },
  );
});
