import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { Readable, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  ContentTooLargeError,
  InvalidOffsetError,
  InvalidPathError,
  PathNotFoundError,
  SizeMismatchError,
  type StorageDriver,
} from '../../src/storage/driver.js';

/** What a driver test file hands the suite: a fresh, empty driver and how to dispose of it. */
export interface DriverHarness {
  readonly driver: StorageDriver;
  cleanup(): Promise<void>;
}

const MiB = 1024 * 1024;

/** Keys every method must refuse with InvalidPathError ('' only where a key is required). */
export const INVALID_KEYS: readonly string[] = [
  '..',
  '.',
  '/abs',
  '/',
  'a/',
  'a//b',
  'a/./b',
  'a/../b',
  '../a',
  'a\\b',
  '%2e%2e',
  'a b',
  'a\0b',
  'caf\u00e9',
  'a/b~c',
  'x'.repeat(256),
  `${'abcdefgh/'.repeat(114)}abcdefgh`.slice(0, 1025),
  'a/'.repeat(600) + 'a',
];

/**
 * The behaviour every StorageDriver must show, registered as node:test cases. Each test gets a
 * fresh driver from makeDriver and disposes of it afterwards. Run it unchanged for every driver.
 */
export function runDriverConformance(name: string, makeDriver: () => Promise<DriverHarness>): void {
  const withDriver = async (fn: (d: StorageDriver) => Promise<void>): Promise<void> => {
    const h = await makeDriver();
    try {
      await fn(h.driver);
    } finally {
      await h.driver.close?.();
      await h.cleanup();
    }
  };

  describe(`storage driver conformance: ${name}`, () => {
    describe('putContent and getContent', () => {
      it('returns exactly the bytes put, for empty, small and 3 MiB content', () =>
        withDriver(async (d) => {
          const small = Buffer.from('{"id":"abc"}\n');
          const big = randomBytes(3 * MiB);
          await d.putContent('pc/empty', Buffer.alloc(0));
          await d.putContent('pc/small', small);
          await d.putContent('pc/deep/er/big', big);
          const empty = await d.getContent('pc/empty');
          assert.equal(empty.length, 0);
          assert.deepEqual(await d.getContent('pc/small'), small);
          const back = await d.getContent('pc/deep/er/big');
          assert.equal(back.length, big.length);
          assert.equal(sha256(back), sha256(big));
        }));

      it('replaces the whole content when a key is overwritten with shorter bytes', () =>
        withDriver(async (d) => {
          await d.putContent('ow/key', Buffer.alloc(5000, 'a'));
          await d.putContent('ow/key', Buffer.from('bbb'));
          assert.equal((await d.getContent('ow/key')).toString(), 'bbb');
          assert.equal((await d.stat('ow/key')).size, 3);
        }));

      it('writes a fresh key (the fresh option) as putContent does, and replaces a key that exists all the same', () =>
        withDriver(async (d) => {
          const state = Buffer.from('{"name":"a/b","offset":0}');
          await d.putContent('fr/u1/data', Buffer.alloc(0), { durable: false, fresh: true });
          await d.putContent('fr/u1/state', state, { durable: false, fresh: true });
          await d.putContent('fr/u2/durable', state, { fresh: true });
          assert.equal((await d.getContent('fr/u1/data')).length, 0);
          assert.ok((await d.getContent('fr/u1/state')).equals(state));
          assert.ok((await d.getContent('fr/u2/durable')).equals(state));
          assert.deepEqual(await d.list('fr/u1'), ['fr/u1/data', 'fr/u1/state']);
          // not fresh after all: replaced whole, as without the option
          await d.putContent('fr/u1/state', Buffer.from('x'), { durable: false, fresh: true });
          assert.equal((await d.getContent('fr/u1/state')).toString(), 'x');
          assert.deepEqual(await d.list('fr/u1'), ['fr/u1/data', 'fr/u1/state']);
        }));

      it('keeps its own copy of the bytes put', () =>
        withDriver(async (d) => {
          const data = Buffer.from('original');
          await d.putContent('copy', data);
          data.fill('x');
          assert.equal((await d.getContent('copy')).toString(), 'original');
          const got = await d.getContent('copy');
          got.fill('y');
          assert.equal((await d.getContent('copy')).toString(), 'original');
        }));

      it('with maxSize: the content when within it, ContentTooLargeError past it; missing keys and prefixes as without', () =>
        withDriver(async (d) => {
          const rec = randomBytes(1000);
          const big = randomBytes(3 * MiB);
          await d.putContent('mx/rec', rec);
          await d.putContent('mx/big', big);
          await d.putContent('mx/empty', Buffer.alloc(0));
          await d.putContent('mx/dir/child', Buffer.from('x'));
          assert.ok((await d.getContent('mx/rec', { maxSize: 1000 })).equals(rec));
          assert.ok((await d.getContent('mx/rec', { maxSize: 4096 })).equals(rec));
          assert.equal((await d.getContent('mx/empty', { maxSize: 0 })).length, 0);
          await expectRejects(() => d.getContent('mx/rec', { maxSize: 999 }), ContentTooLargeError, 'one byte over');
          await expectRejects(() => d.getContent('mx/big', { maxSize: 1024 }), ContentTooLargeError, '3 MiB over 1 KiB');
          await expectRejects(() => d.getContent('mx/missing', { maxSize: 1024 }), PathNotFoundError, 'missing');
          await expectRejects(() => d.getContent('mx/dir', { maxSize: 1024 }), PathNotFoundError, 'prefix');
          // the object is still there, whole
          assert.ok((await d.getContent('mx/big')).equals(big));
        }));

      it('throws PathNotFoundError for a missing key, a prefix and a path below an object', () =>
        withDriver(async (d) => {
          await d.putContent('nf/file', Buffer.from('x'));
          await d.putContent('nf/dir/child', Buffer.from('y'));
          for (const key of ['missing', 'nf/missing', 'nf/dir', 'nf/file/below', 'other/deep/key']) {
            await expectRejects(() => d.getContent(key), PathNotFoundError, `getContent(${key})`);
          }
        }));
    });

    describe('key validation', () => {
      it('rejects invalid keys with InvalidPathError in every method and stores nothing', () =>
        withDriver(async (d) => {
          await d.putContent('ok', Buffer.from('fine'));
          const data = Buffer.from('data');
          for (const key of [...INVALID_KEYS, '']) {
            const label = JSON.stringify(key.length > 40 ? `${key.slice(0, 40)}…(${key.length})` : key);
            await expectRejects(() => d.getContent(key), InvalidPathError, `getContent ${label}`);
            await expectRejects(() => d.putContent(key, data), InvalidPathError, `putContent ${label}`);
            await expectRejects(() => d.reader(key), InvalidPathError, `reader ${label}`);
            await expectRejects(() => d.reader(key, 2, 1), InvalidPathError, `reader+offset ${label}`);
            await expectRejects(() => d.writer(key), InvalidPathError, `writer ${label}`);
            await expectRejects(() => d.writer(key, { append: true }), InvalidPathError, `writer append ${label}`);
            await expectRejects(() => d.stat(key), InvalidPathError, `stat ${label}`);
            await expectRejects(() => d.move(key, 'dst'), InvalidPathError, `move from ${label}`);
            await expectRejects(() => d.move('ok', key), InvalidPathError, `move to ${label}`);
            await expectRejects(() => d.delete(key), InvalidPathError, `delete ${label}`);
            if (key !== '') await expectRejects(() => d.list(key), InvalidPathError, `list ${label}`);
          }
          assert.deepEqual(await d.list(''), ['ok']);
          assert.equal((await d.getContent('ok')).toString(), 'fine');
        }));

      it('names the offending key in the error', () =>
        withDriver(async (d) => {
          const err = await d.getContent('a//b').then(
            () => assert.fail('getContent resolved'),
            (e: unknown) => e,
          );
          assert.ok(err instanceof InvalidPathError);
          assert.equal(err.key, 'a//b');
          const missing = await d.stat('no/such').then(
            () => assert.fail('stat resolved'),
            (e: unknown) => e,
          );
          assert.ok(missing instanceof PathNotFoundError);
          assert.equal(missing.key, 'no/such');
        }));
    });

    describe('writer', () => {
      it('streams 20 MiB in odd-sized chunks and reads back the same bytes', () =>
        withDriver(async (d) => {
          const data = randomBytes(20 * MiB);
          const w = await d.writer('uploads/u1/data');
          assert.equal(w.size, 0);
          await pipeline(Readable.from(oddChunks(data)), w.stream);
          assert.equal(w.size, data.length);
          await w.commit();
          assert.equal((await d.stat('uploads/u1/data')).size, data.length);
          const back = await readAll(await d.reader('uploads/u1/data'));
          assert.equal(back.length, data.length);
          assert.equal(sha256(back), sha256(data));
        }));

      it('appends to a committed key, starting at its size', () =>
        withDriver(async (d) => {
          const a = randomBytes(100_003);
          const b = randomBytes(77_777);
          const w1 = await d.writer('ap/data');
          await pipeline(Readable.from([a]), w1.stream);
          await w1.commit();
          const w2 = await d.writer('ap/data', { append: true });
          assert.equal(w2.size, a.length);
          await pipeline(Readable.from(oddChunks(b)), w2.stream);
          assert.equal(w2.size, a.length + b.length);
          await w2.commit();
          const back = await d.getContent('ap/data');
          assert.equal(back.length, a.length + b.length);
          assert.ok(back.equals(Buffer.concat([a, b])), 'appended content differs');
        }));

      it('commits without fsync when asked (durable: false), then appends after it with fsync', () =>
        withDriver(async (d) => {
          const a = randomBytes(65_537);
          const b = randomBytes(1_000);
          const w1 = await d.writer('nd/data');
          await pipeline(Readable.from([a]), w1.stream);
          await w1.commit({ durable: false });
          assert.ok((await d.getContent('nd/data')).equals(a), 'bytes of a non-durable commit are readable');
          const w2 = await d.writer('nd/data', { append: true });
          assert.equal(w2.size, a.length);
          await pipeline(Readable.from([b]), w2.stream);
          await w2.commit();
          assert.ok((await d.getContent('nd/data')).equals(Buffer.concat([a, b])));
          await assert.rejects(w1.commit(), 'a committed writer cannot commit again');
        }));

      it("commits the bytes alone (durable: 'bytes') for a move that follows: same bytes at the key, then at dst", () =>
        withDriver(async (d) => {
          const a = randomBytes(2 * MiB + 3);
          const w = await d.writer('db/u/claim');
          await pipeline(Readable.from(oddChunks(a)), w.stream);
          await w.commit({ durable: 'bytes' });
          assert.ok((await d.getContent('db/u/claim')).equals(a));
          await d.move('db/u/claim', 'db/blob/data');
          assert.ok((await d.getContent('db/blob/data')).equals(a));
          assert.deepEqual(await d.list('db'), ['db/blob']);
        }));

      it('starts empty when appending to a missing key', () =>
        withDriver(async (d) => {
          const w = await d.writer('ap/new', { append: true });
          assert.equal(w.size, 0);
          await pipeline(Readable.from([Buffer.from('hello')]), w.stream);
          await w.commit();
          assert.equal((await d.getContent('ap/new')).toString(), 'hello');
        }));

      it('truncates an existing key when not appending', () =>
        withDriver(async (d) => {
          await d.putContent('tr/data', Buffer.alloc(10_000, 'z'));
          const w = await d.writer('tr/data');
          assert.equal(w.size, 0);
          await pipeline(Readable.from([Buffer.from('short')]), w.stream);
          await w.commit();
          assert.equal((await d.getContent('tr/data')).toString(), 'short');
        }));

      it('ends a stream the caller left open when committing', () =>
        withDriver(async (d) => {
          const w = await d.writer('open/data');
          await writeChunk(w.stream, Buffer.from('part one,'));
          await writeChunk(w.stream, Buffer.from(' part two'));
          await w.commit();
          assert.equal(w.stream.writableFinished, true);
          assert.equal((await d.getContent('open/data')).toString(), 'part one, part two');
        }));

      it('leaves no key and no prefix after cancel, ended or not', () =>
        withDriver(async (d) => {
          await d.putContent('keep', Buffer.from('k'));
          const ended = await d.writer('c1/u/data');
          await pipeline(Readable.from([randomBytes(300_000)]), ended.stream);
          await ended.cancel();
          const open = await d.writer('c2/u/data');
          await writeChunk(open.stream, randomBytes(1000));
          await open.cancel();
          for (const key of ['c1/u/data', 'c2/u/data']) {
            await expectRejects(() => d.getContent(key), PathNotFoundError, `getContent ${key}`);
            await expectRejects(() => d.stat(key), PathNotFoundError, `stat ${key}`);
          }
          await expectRejects(() => d.list('c1'), PathNotFoundError, 'list c1');
          await expectRejects(() => d.list('c2/u'), PathNotFoundError, 'list c2/u');
          assert.deepEqual(await d.list(''), ['keep']);
          await open.cancel(); // a second cancel is a no-op
        }));

      it('rejects commit after the stream failed, and cancel then removes the key', () =>
        withDriver(async (d) => {
          const w = await d.writer('fail/data');
          await writeChunk(w.stream, Buffer.from('some bytes'));
          w.stream.destroy(new Error('client went away'));
          await assert.rejects(w.commit(), /client went away/);
          await w.cancel();
          await expectRejects(() => d.getContent('fail/data'), PathNotFoundError, 'getContent');
          await expectRejects(() => d.list('fail'), PathNotFoundError, 'list');
        }));

      it('removes the key, earlier bytes included, when an append writer is cancelled', () =>
        withDriver(async (d) => {
          await d.putContent('ca/data', Buffer.from('before'));
          const w = await d.writer('ca/data', { append: true });
          await writeChunk(w.stream, Buffer.from('after'));
          await w.cancel();
          await expectRejects(() => d.getContent('ca/data'), PathNotFoundError, 'getContent');
        }));

      it('refuses a second commit and a cancel after commit, keeping the data', () =>
        withDriver(async (d) => {
          const w = await d.writer('twice/data');
          await pipeline(Readable.from([Buffer.from('done')]), w.stream);
          await w.commit();
          await assert.rejects(w.commit());
          await assert.rejects(w.cancel());
          assert.equal((await d.getContent('twice/data')).toString(), 'done');
        }));
    });

    describe('reader', () => {
      it('reads from offsets 0, middle, size-1 and size (empty)', () =>
        withDriver(async (d) => {
          const data = randomBytes(MiB + 123);
          await d.putContent('rd/data', data);
          const mid = Math.floor(data.length / 2) + 1;
          for (const offset of [0, 1, mid, data.length - 1, data.length]) {
            const back = await readAll(await d.reader('rd/data', offset));
            assert.equal(back.length, data.length - offset, `length at offset ${offset}`);
            assert.ok(back.equals(data.subarray(offset)), `bytes at offset ${offset}`);
          }
        }));

      it('rejects an offset past the end, negative or fractional with InvalidOffsetError', () =>
        withDriver(async (d) => {
          await d.putContent('rd/data', Buffer.alloc(1000, 1));
          await d.putContent('rd/empty', Buffer.alloc(0));
          for (const offset of [1001, 5000, -1, 1.5, Number.NaN]) {
            await expectRejects(() => d.reader('rd/data', offset), InvalidOffsetError, `offset ${offset}`);
          }
          await expectRejects(() => d.reader('rd/empty', 1), InvalidOffsetError, 'offset 1 of empty');
          assert.equal((await readAll(await d.reader('rd/empty', 0))).length, 0);
          const err = await d.reader('rd/data', 1001).then(
            () => assert.fail('reader resolved'),
            (e: unknown) => e,
          );
          assert.ok(err instanceof InvalidOffsetError);
          assert.equal(err.offset, 1001);
        }));

      it('honours length and stops at the end', () =>
        withDriver(async (d) => {
          const data = randomBytes(2 * MiB + 5);
          await d.putContent('rd/data', data);
          const cases: Array<[number, number, number]> = [
            [0, 10, 10],
            [MiB, 100, 100],
            [1, 2 * MiB, 2 * MiB],
            [data.length - 5, 100, 5],
            [MiB, 0, 0],
            [data.length, 10, 0],
          ];
          for (const [offset, length, expected] of cases) {
            const back = await readAll(await d.reader('rd/data', offset, length));
            assert.equal(back.length, expected, `reader(${offset}, ${length}) length`);
            assert.ok(back.equals(data.subarray(offset, offset + expected)), `reader(${offset}, ${length}) bytes`);
          }
          await expectRejects(() => d.reader('rd/data', 0, -1), InvalidOffsetError, 'length -1');
        }));

      it('with the size the caller knows (options.size): reads reaching that end reject before any byte when the object holds another', () =>
        withDriver(async (d) => {
          const data = randomBytes(MiB + 3);
          await d.putContent('rd/sized', data);
          const n = data.length;
          assert.ok((await readAll(await d.reader('rd/sized', 0, n, { size: n }))).equals(data));
          assert.ok((await readAll(await d.reader('rd/sized', 0, undefined, { size: n }))).equals(data));
          assert.ok((await readAll(await d.reader('rd/sized', n - 5, 5, { size: n }))).equals(data.subarray(n - 5)));
          assert.equal((await readAll(await d.reader('rd/sized', n, 0, { size: n }))).length, 0);
          for (const size of [n - 1000, n + 1000]) {
            const cases: Array<[number, number | undefined]> = [
              [0, undefined],
              [0, size],
              [100, undefined],
              [size - 10, 10],
              [size, 0],
            ];
            for (const [offset, length] of cases) {
              await expectRejects(() => d.reader('rd/sized', offset, length, { size }), SizeMismatchError, `size ${size}, reader(${offset}, ${length})`);
            }
            // a read that stops short of the end the caller knows of: the object's bytes
            assert.ok((await readAll(await d.reader('rd/sized', 100, 50, { size }))).equals(data.subarray(100, 150)), `size ${size}: a read within`);
          }
        }));

      it('throws PathNotFoundError for a missing key or a prefix, whatever the offset', () =>
        withDriver(async (d) => {
          await d.putContent('rd/dir/child', Buffer.from('x'));
          await expectRejects(() => d.reader('missing'), PathNotFoundError, 'missing');
          await expectRejects(() => d.reader('missing', 5), PathNotFoundError, 'missing at 5');
          await expectRejects(() => d.reader('rd/dir'), PathNotFoundError, 'prefix');
        }));
    });

    describe('stat', () => {
      it('reports the size and a current modification time', () =>
        withDriver(async (d) => {
          const before = Date.now();
          await d.putContent('st/data', randomBytes(12_345));
          await d.putContent('st/empty', Buffer.alloc(0));
          const after = Date.now();
          const info = await d.stat('st/data');
          assert.equal(info.size, 12_345);
          assert.ok(info.modTime instanceof Date);
          // Filesystems and object stores round times (to 1 s at worst).
          assert.ok(info.modTime.getTime() >= before - 2000, `modTime ${info.modTime.toISOString()} too old`);
          assert.ok(info.modTime.getTime() <= after + 2000, `modTime ${info.modTime.toISOString()} in the future`);
          assert.equal((await d.stat('st/empty')).size, 0);
        }));

      it('reports a prefix with size 0 and a missing key as PathNotFoundError', () =>
        withDriver(async (d) => {
          await d.putContent('st/dir/child', Buffer.from('12345'));
          const info = await d.stat('st/dir');
          assert.equal(info.size, 0);
          assert.ok(info.modTime instanceof Date && !Number.isNaN(info.modTime.getTime()));
          await expectRejects(() => d.stat('st/missing'), PathNotFoundError, 'missing');
          await expectRejects(() => d.stat('st/dir/child/below'), PathNotFoundError, 'below an object');
        }));

      it('follows a writer: size after commit equals the bytes written', () =>
        withDriver(async (d) => {
          const w = await d.writer('st/w');
          await pipeline(Readable.from(oddChunks(randomBytes(333_333))), w.stream);
          await w.commit();
          assert.equal((await d.stat('st/w')).size, 333_333);
        }));
    });

    describe('list', () => {
      it('lists direct children as sorted full keys, objects and prefixes alike', () =>
        withDriver(async (d) => {
          for (const key of ['l/b', 'l/a', 'l/c/d', 'l/c/e/f', 'l/A', 'l/a-1', 'l/a.b', 'l/_x', 'm']) {
            await d.putContent(key, Buffer.from(key));
          }
          assert.deepEqual(await d.list('l'), ['l/A', 'l/_x', 'l/a', 'l/a-1', 'l/a.b', 'l/b', 'l/c']);
          assert.deepEqual(await d.list('l/c'), ['l/c/d', 'l/c/e']);
          assert.deepEqual(await d.list('l/c/e'), ['l/c/e/f']);
          assert.deepEqual(await d.list(''), ['l', 'm']);
        }));

      it('lists an empty root as []', () =>
        withDriver(async (d) => {
          assert.deepEqual(await d.list(''), []);
        }));

      it('throws PathNotFoundError for a missing prefix, an object, and a prefix whose keys are gone', () =>
        withDriver(async (d) => {
          await d.putContent('lp/x/only', Buffer.from('1'));
          await d.putContent('lp/file', Buffer.from('2'));
          await expectRejects(() => d.list('nothing'), PathNotFoundError, 'missing');
          await expectRejects(() => d.list('lp/file'), PathNotFoundError, 'object');
          await d.delete('lp/x/only');
          await expectRejects(() => d.list('lp/x'), PathNotFoundError, 'emptied prefix');
          assert.deepEqual(await d.list('lp'), ['lp/file']);
          await d.delete('lp/file');
          await expectRejects(() => d.list('lp'), PathNotFoundError, 'emptied parent');
          assert.deepEqual(await d.list(''), []);
        }));

      it('never lists temporary objects while putContent calls are running', () =>
        withDriver(async (d) => {
          const keys = Array.from({ length: 24 }, (_, i) => `tmp/k${String(i).padStart(2, '0')}`);
          await d.putContent(keys[0]!, Buffer.from('seed'));
          const allowed = new Set(keys);
          let done = false;
          const writes = Promise.all(keys.map((k) => d.putContent(k, randomBytes(256 * 1024)))).finally(() => {
            done = true;
          });
          let listings = 0;
          while (!done) {
            for (const k of await d.list('tmp')) assert.ok(allowed.has(k), `listed ${k}`);
            listings++;
          }
          await writes;
          assert.ok(listings > 0);
          assert.deepEqual(await d.list('tmp'), keys);
        }));
    });

    describe('move', () => {
      it('publishes src at dst, creating prefixes, and removes src and its emptied prefix', () =>
        withDriver(async (d) => {
          const data = randomBytes(3 * MiB + 1);
          const w = await d.writer('uploads/u1/data');
          await pipeline(Readable.from(oddChunks(data)), w.stream);
          await w.commit();
          await d.move('uploads/u1/data', 'blobs/sha256/ab/abcdef/data');
          const back = await d.getContent('blobs/sha256/ab/abcdef/data');
          assert.equal(sha256(back), sha256(data));
          assert.equal((await d.stat('blobs/sha256/ab/abcdef/data')).size, data.length);
          await expectRejects(() => d.getContent('uploads/u1/data'), PathNotFoundError, 'src content');
          await expectRejects(() => d.stat('uploads/u1/data'), PathNotFoundError, 'src stat');
          await expectRejects(() => d.list('uploads'), PathNotFoundError, 'src prefix');
          assert.deepEqual(await d.list(''), ['blobs']);
        }));

      it('replaces an existing dst', () =>
        withDriver(async (d) => {
          await d.putContent('mv/dst', Buffer.alloc(4096, 'o'));
          await d.putContent('mv/src', Buffer.from('new'));
          await d.move('mv/src', 'mv/dst');
          assert.equal((await d.getContent('mv/dst')).toString(), 'new');
          assert.deepEqual(await d.list('mv'), ['mv/dst']);
        }));

      it('lets exactly one of several concurrent moves of one src win; the others reject with PathNotFoundError', () =>
        withDriver(async (d) => {
          for (let round = 0; round < 20; round++) {
            const data = randomBytes(1000 + round);
            await d.putContent('claim/data', data);
            // durable or not makes no difference to who wins or to what is visible
            const results = await Promise.allSettled(Array.from({ length: 8 }, (_, i) => d.move('claim/data', `claim/by-${i}`, { durable: i % 2 === 0 })));
            const won = results.flatMap((r, i) => (r.status === 'fulfilled' ? [i] : []));
            assert.equal(won.length, 1, `round ${round}: one winner`);
            for (const r of results) if (r.status === 'rejected') assert.ok(r.reason instanceof PathNotFoundError, `round ${round}: ${String(r.reason)}`);
            assert.deepEqual(await d.list('claim'), [`claim/by-${won[0]}`]);
            assert.equal(sha256(await d.getContent(`claim/by-${won[0]}`)), sha256(data));
            await d.delete('claim');
          }
        }));

      it('throws PathNotFoundError for a missing src, leaving dst and its prefix untouched', () =>
        withDriver(async (d) => {
          await d.putContent('mv/dst', Buffer.from('old'));
          await expectRejects(() => d.move('mv/missing', 'mv/dst'), PathNotFoundError, 'over existing');
          await expectRejects(() => d.move('missing', 'fresh/prefix/dst'), PathNotFoundError, 'to new prefix');
          assert.equal((await d.getContent('mv/dst')).toString(), 'old');
          assert.deepEqual(await d.list(''), ['mv']);
        }));
    });

    describe('putContentIfAbsent (optional: the storage-level locks of many nodes)', () => {
      it('of 8 concurrent creates of one key exactly one wins with all its bytes; an existing key is left as it is', (t) =>
        withDriver(async (d) => {
          if (!d.putContentIfAbsent) {
            t.skip(`${d.name} has no exclusive create (locks hold within one process)`);
            return;
          }
          const values = Array.from({ length: 8 }, (_, i) => Buffer.from(`owner-${i}-`.repeat(100)));
          const won = await Promise.all(values.map((v) => d.putContentIfAbsent!('locks/x/a', v)));
          assert.equal(won.filter(Boolean).length, 1, `winners: ${won.join(',')}`);
          const winner = won.indexOf(true);
          assert.deepEqual(await d.getContent('locks/x/a'), values[winner]);
          assert.equal(await d.putContentIfAbsent('locks/x/a', Buffer.from('late')), false);
          assert.deepEqual(await d.getContent('locks/x/a'), values[winner]);
          await d.delete('locks/x/a');
          assert.equal(await d.putContentIfAbsent('locks/x/a', Buffer.from('again')), true);
          assert.equal((await d.getContent('locks/x/a')).toString(), 'again');
        }));
    });

    describe('atomicWriter (optional: object stores publish a checked upload at its key)', () => {
      it('shows nothing before commit, replaces the key at once on commit (one part and several)', (t) =>
        withDriver(async (d) => {
          if (!d.atomicWriter) {
            t.skip(`${d.name} has no atomic writer (uploads go to a private key and move)`);
            return;
          }
          await d.putContent('aw/k', Buffer.from('old'));
          for (const size of [3, MiB + 5, 11 * MiB + 3]) {
            const data = randomBytes(size);
            const w = await d.atomicWriter('aw/k');
            await pipeline(Readable.from(oddChunks(data)), w.stream);
            assert.equal(w.size, size);
            assert.equal((await d.getContent('aw/k')).toString(), 'old', 'the old bytes until commit');
            await w.commit();
            assert.ok((await d.getContent('aw/k')).equals(data), `${size} bytes after commit`);
            assert.equal((await d.stat('aw/k')).size, size);
            await d.putContent('aw/k', Buffer.from('old'));
          }
          assert.deepEqual(await d.list('aw'), ['aw/k'], 'nothing else is listed');
        }));

      it('leaves the key as it was on cancel, after a failed stream, and a missing key missing', (t) =>
        withDriver(async (d) => {
          if (!d.atomicWriter) {
            t.skip(`${d.name} has no atomic writer`);
            return;
          }
          await d.putContent('aw/k', Buffer.from('published'));
          for (const size of [10, 7 * MiB]) {
            const w = await d.atomicWriter('aw/k');
            await writeChunk(w.stream, randomBytes(size));
            await w.cancel();
            assert.equal((await d.getContent('aw/k')).toString(), 'published', `cancel after ${size} bytes`);
          }
          const failed = await d.atomicWriter('aw/k');
          failed.stream.destroy(new Error('client went away'));
          await assert.rejects(failed.commit(), /client went away/);
          await failed.cancel();
          assert.equal((await d.getContent('aw/k')).toString(), 'published');
          const fresh = await d.atomicWriter('aw/new/k');
          fresh.stream.write(randomBytes(1000));
          await fresh.cancel();
          await assert.rejects(d.stat('aw/new/k'), PathNotFoundError);
          await assert.rejects(d.list('aw/new'), PathNotFoundError);
          assert.deepEqual(await d.list('aw'), ['aw/k']);
        }));
    });

    describe('removeObject (optional: one request for a known object)', () => {
      it('removes an object, is silent for a missing key, and leaves keys below a prefix alone', (t) =>
        withDriver(async (d) => {
          if (!d.removeObject) {
            t.skip(`${d.name} has no removeObject (callers use delete)`);
            return;
          }
          await d.putContent('ro/a', Buffer.from('1'));
          await d.putContent('ro/p/b', Buffer.from('2'));
          await d.removeObject('ro/a');
          await assert.rejects(d.stat('ro/a'), PathNotFoundError);
          await d.removeObject('ro/a');
          await d.removeObject('ro/missing');
          await d.removeObject('ro/p');
          assert.equal((await d.getContent('ro/p/b')).toString(), '2');
          assert.deepEqual(await d.list('ro'), ['ro/p']);
          await assert.rejects(d.removeObject('ro/../x'), InvalidPathError);
        }));
    });

    describe('delete', () => {
      it('removes a key and everything below it, and nothing beside it', () =>
        withDriver(async (d) => {
          for (const key of ['a/b/c', 'a/b/d/e', 'a/bc', 'a/b-', 'a/f', 'ab']) await d.putContent(key, Buffer.from(key));
          await d.delete('a/b');
          assert.deepEqual(await d.list('a'), ['a/b-', 'a/bc', 'a/f']);
          assert.deepEqual(await d.list(''), ['a', 'ab']);
          for (const key of ['a/b/c', 'a/b/d/e']) {
            await expectRejects(() => d.getContent(key), PathNotFoundError, key);
          }
          await expectRejects(() => d.stat('a/b'), PathNotFoundError, 'stat a/b');
          assert.equal((await d.getContent('a/bc')).toString(), 'a/bc');
          assert.equal((await d.getContent('ab')).toString(), 'ab');
        }));

      it('removes a single object and the prefixes it leaves empty', () =>
        withDriver(async (d) => {
          await d.putContent('x/y/z', Buffer.from('1'));
          await d.delete('x/y/z');
          await expectRejects(() => d.stat('x/y'), PathNotFoundError, 'stat x/y');
          await expectRejects(() => d.stat('x'), PathNotFoundError, 'stat x');
          assert.deepEqual(await d.list(''), []);
        }));

      it('throws PathNotFoundError for a missing key, also on a second delete', () =>
        withDriver(async (d) => {
          await d.putContent('del/k', Buffer.from('1'));
          await expectRejects(() => d.delete('nope'), PathNotFoundError, 'nope');
          await expectRejects(() => d.delete('del/nope'), PathNotFoundError, 'del/nope');
          await expectRejects(() => d.delete('del/k/below'), PathNotFoundError, 'below an object');
          await d.delete('del/k');
          await expectRejects(() => d.delete('del/k'), PathNotFoundError, 'second delete');
        }));
    });

    describe('concurrency', () => {
      it('serves many concurrent readers of one key', () =>
        withDriver(async (d) => {
          const data = randomBytes(4 * MiB + 3);
          await d.putContent('cc/data', data);
          const offsets = Array.from({ length: 16 }, (_, i) => i * 262_147);
          const results = await Promise.all(offsets.map(async (o) => readAll(await d.reader('cc/data', o))));
          results.forEach((r, i) => {
            assert.ok(r.equals(data.subarray(offsets[i])), `reader at ${offsets[i]}`);
          });
        }));

      it('ends concurrent putContent of one key with one complete value, and readers never see a mix', () =>
        withDriver(async (d) => {
          const values = Array.from({ length: 24 }, (_, i) => Buffer.alloc(512 * 1024 + i, i + 1));
          await d.putContent('race/key', Buffer.alloc(1000, 0));
          const check = (got: Buffer, when: string): void => {
            const fill = got[0]!;
            const expectedLength = fill === 0 ? 1000 : 512 * 1024 + fill - 1;
            assert.equal(got.length, expectedLength, `${when}: length ${got.length} for fill ${fill}`);
            assert.ok(
              got.every((b) => b === fill),
              `${when}: mixed bytes`,
            );
          };
          let done = false;
          const writes = Promise.all(values.map((v) => d.putContent('race/key', v))).finally(() => {
            done = true;
          });
          let reads = 0;
          while (!done) {
            check(await d.getContent('race/key'), `read ${reads}`);
            reads++;
          }
          await writes;
          const final = await d.getContent('race/key');
          check(final, 'final');
          assert.notEqual(final[0], 0, 'no writer won');
          assert.equal((await d.stat('race/key')).size, final.length);
          assert.deepEqual(await d.list('race'), ['race/key']);
        }));

      it('keeps a reader opened before a putContent replacement on complete old or new bytes', () =>
        withDriver(async (d) => {
          const old = randomBytes(3 * MiB);
          const replacement = randomBytes(3 * MiB + 7);
          await d.putContent('rep/key', old);
          const untouched = await d.reader('rep/key');
          const started = await d.reader('rep/key');
          const iter = started[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
          const first = await iter.next();
          assert.equal(first.done, false);
          await d.putContent('rep/key', replacement);
          const parts: Buffer[] = [first.value as Buffer];
          for (let r = await iter.next(); r.done !== true; r = await iter.next()) parts.push(r.value);
          assertOneOf(Buffer.concat(parts), [old, replacement], 'reader already reading');
          assertOneOf(await readAll(untouched), [old, replacement], 'reader not yet reading');
          assert.equal(sha256(await d.getContent('rep/key')), sha256(replacement));
        }));

      it('keeps a reader opened before a move over the key on complete old or new bytes', () =>
        withDriver(async (d) => {
          const old = randomBytes(3 * MiB);
          const replacement = randomBytes(2 * MiB + 11);
          await d.putContent('mvr/key', old);
          const w = await d.writer('mvr/upload');
          await pipeline(Readable.from(oddChunks(replacement)), w.stream);
          await w.commit();
          const started = await d.reader('mvr/key');
          const iter = started[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
          const first = await iter.next();
          assert.equal(first.done, false);
          await d.move('mvr/upload', 'mvr/key');
          const parts: Buffer[] = [first.value as Buffer];
          for (let r = await iter.next(); r.done !== true; r = await iter.next()) parts.push(r.value);
          assertOneOf(Buffer.concat(parts), [old, replacement], 'reader across move');
          assert.equal(sha256(await d.getContent('mvr/key')), sha256(replacement));
        }));
    });
  });
}

/** Awaits fn() and asserts it rejects with an instance of cls; a synchronous throw fails the test. */
export async function expectRejects(fn: () => Promise<unknown>, cls: abstract new (...args: never[]) => Error, label: string): Promise<void> {
  let pending: Promise<unknown>;
  try {
    pending = fn();
  } catch (e) {
    assert.fail(`${label}: threw synchronously instead of rejecting: ${String(e)}`);
  }
  await pending.then(
    () => assert.fail(`${label}: resolved, expected ${cls.name}`),
    (e: unknown) => {
      if (!(e instanceof cls)) assert.fail(`${label}: expected ${cls.name}, got ${String(e)}`);
    },
  );
}

export async function readAll(stream: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const chunk of stream) parts.push(chunk as Buffer);
  return Buffer.concat(parts);
}

export function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Slices of data in a repeating pattern of awkward sizes (1 byte up to just over 1 MiB). */
function* oddChunks(data: Buffer): Generator<Buffer> {
  const sizes = [1, 7, 4093, 65_537, 13, 1_048_583, 333_331, 2, 131_071];
  let at = 0;
  for (let i = 0; at < data.length; i++) {
    const n = sizes[i % sizes.length]!;
    yield data.subarray(at, at + n);
    at += n;
  }
}

function writeChunk(stream: Writable, chunk: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    stream.write(chunk, (err?: Error | null) => (err ? reject(err) : resolve()));
  });
}

function assertOneOf(got: Buffer, candidates: Buffer[], label: string): void {
  const h = sha256(got);
  assert.ok(
    candidates.some((c) => sha256(c) === h),
    `${label}: read ${got.length} bytes matching neither the old (${candidates[0]!.length}) nor the new (${candidates[1]!.length}) content`,
  );
}
