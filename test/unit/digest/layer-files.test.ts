import { after, before, describe, it } from 'node:test';
import { execFileSync } from 'node:child_process';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { LayerFileError, LayerFiles, type LayerFileJob } from '../../../src/digest/layer-files.js';
import { openRoot, type BeneathRoot } from '../../../src/util/open-beneath.js';
import { buildTar } from '../../helpers/tar-build.js';
import { hashLayer, json, prandBytes, sha256, textBytes, vectorFile } from './support.js';

const MiB = 1024 * 1024;

/** Whether the file system under `dir` takes O_DIRECT writes (dd's own aligned buffers). */
function directWorks(dir: string): boolean {
  try {
    execFileSync('dd', ['if=/dev/zero', `of=${join(dir, 'direct-probe')}`, 'bs=4096', 'count=1', 'oflag=direct', 'status=none'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Bytes of `path` the page cache holds (util-linux's fincore). */
const resident = (path: string): number => Number(execFileSync('fincore', ['--bytes', '--noheadings', '--output', 'RES', path], { encoding: 'utf8' }).trim());

const roots = new Map<string, BeneathRoot>();
/** A file as the worker is given one: its name below its directory, the directory held open (once). */
const at = (p: string): LayerFileJob['src'] => {
  const d = dirname(p);
  let root = roots.get(d);
  if (!root) roots.set(d, (root = openRoot(d)));
  return { root, path: basename(p) };
};

for (const direct of [false, true])
  describe(
    `LayerFiles: a layer file copied and hashed in a worker thread (the importer), ${direct ? 'whole chunks written with O_DIRECT' : 'through the page cache'}`,
    { timeout: 120_000 },
    () => {
      let dir = '';
      const files = new LayerFiles({ direct });
      let n = 0;
      before(async () => {
        dir = await mkdtemp(join(tmpdir(), 'layer-files-'));
      });
      after(async () => {
        await files.close();
        await rm(dir, { recursive: true, force: true });
      });

      /** Write body as a source file; copy it through the worker; the job's result and the copy's bytes. */
      const copy = async (body: Buffer, opts: Partial<LayerFileJob> = {}): Promise<{ d: Awaited<ReturnType<LayerFiles['copy']>>; out: Buffer }> => {
        const src = join(dir, `src-${++n}`);
        const dst = join(dir, `dst-${n}`);
        await writeFile(src, body);
        const d = await files.copy({ src: at(src), dst, extra: json, innerOpts: { tarsums: false }, maxSize: 0, expectedSize: body.length, ...opts });
        return { d, out: await readFile(dst) };
      };

      // a tar bigger than one worker buffer (1 MiB), with a file spanning the buffer boundary
      const bigTar = buildTar([
        { name: 'a.txt', data: textBytes(700_000, 3) },
        { name: 'b.bin', data: prandBytes(2 * MiB + 12_345, 5) },
        { name: 'c.txt', data: 'end\n' },
      ]);
      const cases: [string, Buffer][] = [
        ['the vector layer (gzip)', vectorFile('layer.tar.gz')],
        ['the vector layer (plain tar)', vectorFile('layer.tar')],
        ['a 2.7 MiB plain tar (several buffers)', bigTar],
        ['the same tar gzipped', gzipSync(bigTar)],
        ['a tar of exactly one buffer (1 MiB)', Buffer.concat([buildTar([{ name: 'x', data: prandBytes(MiB - 2048, 9) }])]).subarray(0, MiB)],
        ['random bytes (not a tar)', prandBytes(3 * MiB + 17, 11)],
        ['gzip of something that is not a tar', gzipSync(textBytes(200_000, 2))],
        ['a broken gzip stream', Buffer.concat([gzipSync(bigTar).subarray(0, 50_000), Buffer.alloc(10_000, 7)])],
        ['five bytes', Buffer.from('hello')],
        ['an empty file', Buffer.alloc(0)],
        ['bzip2 magic', Buffer.concat([Buffer.from('425a6839', 'hex'), prandBytes(5000, 4)])],
      ];
      for (const [name, body] of cases) {
        it(`${name}: the digests LayerHasher gives, and the copy holds the same bytes`, async () => {
          const { d, out } = await copy(body);
          const want = (await hashLayer([body], json, undefined, { tarsums: false })).d;
          assert.deepEqual(d, want);
          assert.equal(d.digest, `sha256:${sha256(body)}`);
          assert.ok(out.equals(body));
        });
      }

      it('computes the tarsums when asked (the vector layer, gzip and plain)', async () => {
        for (const f of ['layer.tar.gz', 'layer.tar']) {
          const body = vectorFile(f);
          const { d } = await copy(body, { innerOpts: { tarsums: true, tarsumV1: true } });
          const want = (await hashLayer([body], json, undefined, { tarsums: true })).d;
          assert.ok(d.tarsum, f);
          assert.deepEqual(d, want, f);
        }
      });

      it('runs many jobs at once, each with its own result', async () => {
        const bodies = Array.from({ length: 12 }, (_, i) =>
          i % 2 ? gzipSync(buildTar([{ name: `f${i}`, data: prandBytes(300_000 + i * 99_999, i) }])) : prandBytes(MiB + i * 1000, 50 + i),
        );
        const results = await Promise.all(bodies.map((b) => copy(b)));
        for (const [i, r] of results.entries()) {
          assert.equal(r.d.digest, `sha256:${sha256(bodies[i]!)}`, `job ${i}`);
          assert.ok(r.out.equals(bodies[i]!), `job ${i}`);
        }
      });

      it('fails a layer of another size than listed (short), and one past maxSize (too-large)', async () => {
        const body = prandBytes(3 * MiB, 21);
        await assert.rejects(copy(body, { expectedSize: body.length + 1 }), (e: unknown) => e instanceof LayerFileError && e.failure.kind === 'short');
        await assert.rejects(copy(body, { expectedSize: body.length - 1 }), (e: unknown) => e instanceof LayerFileError && e.failure.kind === 'short');
        await assert.rejects(copy(body, { maxSize: 2 * MiB }), (e: unknown) => e instanceof LayerFileError && e.failure.kind === 'too-large');
        // exactly at the limit is fine
        assert.equal((await copy(body, { maxSize: body.length })).d.size, body.length);
      });

      it('reads no further than one byte past the size listed: a layer that grew fails at once', async () => {
        const src = join(dir, 'grown');
        await writeFile(src, prandBytes(5 * MiB, 9));
        const job = { extra: json, innerOpts: {}, maxSize: 0, expectedSize: 3 * MiB };
        await assert.rejects(
          files.copy({ ...job, src: at(src), dst: join(dir, 'grown-dst') }),
          (e: unknown) => e instanceof LayerFileError && e.failure.kind === 'short' && /grown past/.test(e.message),
        );
        assert.equal((await readFile(join(dir, 'grown-dst'))).length, 3 * MiB, 'what was written stops at the size listed');
      });

      it('refuses a source that is a symbolic link, a FIFO or a device: never followed, waited for or read', async () => {
        const job = { extra: json, innerOpts: {}, maxSize: 0, expectedSize: 4 };
        const target = join(dir, 'link-target');
        await writeFile(target, 'data');
        await symlink(target, join(dir, 'link-src'));
        const fifo = join(dir, 'fifo-src');
        execFileSync('mkfifo', [fifo]);
        for (const [src, why] of [
          [join(dir, 'link-src'), /symbolic link/],
          [fifo, /not a regular file/],
          ['/dev/zero', /not a regular file/],
        ] as const) {
          const dst = join(dir, `refused-${n++}`);
          // a FIFO without a writer would block an open without O_NONBLOCK for good: the test's timeout catches that
          await assert.rejects(
            files.copy({ ...job, src: at(src), dst }),
            (e: unknown) => e instanceof LayerFileError && e.failure.kind === 'refused' && why.test(e.message),
            src,
          );
          await assert.rejects(readFile(dst), { code: 'ENOENT' }, 'nothing is created for a refused source');
        }
      });

      it('never writes through an existing file or symlink at the destination, and refuses a missing source', async () => {
        const src = join(dir, 'exists-src');
        await writeFile(src, 'data');
        const victim = join(dir, 'victim');
        await writeFile(victim, 'keep');
        const link = join(dir, 'link-dst');
        await symlink(victim, link);
        const job = { extra: json, innerOpts: {}, maxSize: 0, expectedSize: 4 };
        await assert.rejects(files.copy({ ...job, src: at(src), dst: victim }), (e: unknown) => e instanceof LayerFileError && e.code === 'EEXIST');
        await assert.rejects(files.copy({ ...job, src: at(src), dst: link }), (e: unknown) => e instanceof LayerFileError && e.code === 'EEXIST');
        assert.equal(await readFile(victim, 'utf8'), 'keep');
        await assert.rejects(
          files.copy({ ...job, src: at(join(dir, 'nope')), dst: join(dir, 'nope-dst') }),
          // gone since the importer listed it: the tree changed, the layer is refused (skipped)
          (e: unknown) => e instanceof LayerFileError && e.failure.kind === 'refused' && /gone since it was listed/.test(e.message),
        );
        // the worker is still there for the next job
        assert.equal((await copy(Buffer.from('after'))).d.size, 5);
      });

      it(direct ? 'writes the whole 1 MiB chunks around the page cache, the last partial one through it' : 'leaves the copy in the page cache', async (t) => {
        if (direct && !directWorks(dir)) return t.skip(`the file system under ${dir} refuses O_DIRECT`);
        const body = prandBytes(3 * MiB + 5000, 31);
        const src = join(dir, 'resident-src');
        const dst = join(dir, 'resident-dst');
        await writeFile(src, body);
        const d = await files.copy({ src: at(src), dst, extra: json, innerOpts: {}, maxSize: 0, expectedSize: body.length });
        // looked at before anything reads the copy (a read brings it into the page cache)
        const res = resident(dst);
        if (direct) assert.ok(res < MiB, `${res} bytes of the copy cached: the three whole chunks must have gone around the page cache`);
        else assert.ok(res >= 3 * MiB, `${res} bytes of the copy cached`);
        assert.equal(d.digest, `sha256:${sha256(body)}`);
        assert.ok((await readFile(dst)).equals(body));
      });
    },
  );
