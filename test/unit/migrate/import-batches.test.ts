import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { openRoot } from '../../../src/util/open-beneath.js';
import { gzipSync } from 'node:zlib';
import { Readable } from 'node:stream';
import { createMemoryDriver } from '../../../src/storage/drivers/memory.js';
import { createFilesystemDriver } from '../../../src/storage/drivers/filesystem.js';
import { LayerFiles } from '../../../src/digest/layer-files.js';
import { isNotFound, type PutOptions, type StorageDriver, type Writer, type WriterOptions } from '../../../src/storage/driver.js';
import { BlobStore } from '../../../src/content/blob-store.js';
import { V1Images, type StagedImage } from '../../../src/content/v1-images.js';
import { keys } from '../../../src/content/keys.js';
import { parseRepoName } from '../../../src/content/names.js';
import { ImportBatches } from '../../../src/migrate/import-batches.js';
import { StorageLock } from '../../../src/content/storage-lock.js';
import { RegistryError } from '../../../src/errors/index.js';

/**
 * A storage that remembers what a crash could leave behind: for every key, the value it had when
 * it was last made durable (a durable write, or syncKeys) and the value it has now. After a crash,
 * each key that changed since independently keeps its durable value or its new one — and a new
 * value written without a flush may also come back empty (a file created and renamed without
 * fsync, after a power cut) — in any combination: no order between unflushed writes is assumed.
 */
class CrashDriver {
  readonly inner = createMemoryDriver();
  readonly durable = new Map<string, Buffer>();
  /** Keys changed since their last flush: true when the change may come back torn (empty). */
  readonly pending = new Map<string, boolean>();
  readonly states: { durable: Map<string, Buffer>; now: Map<string, Buffer>; pending: Map<string, boolean> }[] = [];
  private readonly now = new Map<string, Buffer>();

  private snapshot(): void {
    this.states.push({ durable: new Map(this.durable), now: new Map(this.now), pending: new Map(this.pending) });
  }

  private changed(key: string, value: Buffer | undefined, flushed: boolean, torn: boolean): void {
    if (value === undefined) this.now.delete(key);
    else this.now.set(key, value);
    if (flushed) {
      if (value === undefined) this.durable.delete(key);
      else this.durable.set(key, value);
      this.pending.delete(key);
    } else this.pending.set(key, torn);
    this.snapshot();
  }

  driver(): StorageDriver {
    const inner = this.inner;
    const read = async (key: string): Promise<Buffer | undefined> =>
      inner.getContent(key).catch((e: unknown) => (isNotFound(e) ? undefined : Promise.reject(e)));
    const d: StorageDriver = {
      name: 'crash',
      getContent: (key) => inner.getContent(key),
      putContent: async (key: string, data: Buffer, o?: PutOptions) => {
        await inner.putContent(key, data);
        this.changed(key, data, o?.durable !== false, true);
      },
      reader: (key, offset, length) => inner.reader(key, offset, length),
      writer: async (key: string, o?: WriterOptions): Promise<Writer> => {
        const w = await inner.writer(key, o);
        return {
          get size() {
            return w.size;
          },
          stream: w.stream,
          commit: async (c) => {
            await w.commit(c);
            this.changed(key, await read(key), c?.durable !== false, true);
          },
          cancel: async () => {
            await w.cancel();
            this.changed(key, undefined, false, false);
          },
        };
      },
      stat: (key) => inner.stat(key),
      list: (prefix) => inner.list(prefix),
      move: async (src: string, dst: string, o?: PutOptions) => {
        const value = await read(src);
        await inner.move(src, dst);
        // a rename: the bytes moved are those already there (never torn), src goes at once
        this.changed(dst, value, o?.durable !== false, false);
        this.changed(src, undefined, false, false);
      },
      delete: async (key: string) => {
        const below = [...this.now.keys()].filter((k) => k === key || k.startsWith(`${key}/`));
        await inner.delete(key);
        for (const k of below) this.changed(k, undefined, false, false);
      },
      syncKeys: async (list: readonly string[]) => {
        for (const k of list) this.changed(k, await read(k), true, false);
      },
    };
    return d;
  }
}

/** Every state a crash could leave at one point (all of them when few keys are pending, else a sample). */
function* outcomes(s: CrashDriver['states'][number], rnd: () => number): Generator<Map<string, Buffer>> {
  const pending = [...s.pending.entries()];
  const choices = pending.map(([, torn]) => (torn ? 3 : 2));
  const total = choices.reduce((a, b) => a * b, 1);
  const pick = (n: number[]): Map<string, Buffer> => {
    const m = new Map(s.durable);
    pending.forEach(([key], i) => {
      const now = s.now.get(key);
      if (n[i] === 0) return; // the flushed value stays
      if (now === undefined) m.delete(key);
      else m.set(key, n[i] === 2 ? Buffer.alloc(0) : now);
    });
    return m;
  };
  if (total <= 256) {
    for (let i = 0; i < total; i++) {
      let r = i;
      yield pick(
        choices.map((c) => {
          const v = r % c;
          r = Math.floor(r / c);
          return v;
        }),
      );
    }
  } else for (let i = 0; i < 256; i++) yield pick(choices.map((c) => Math.floor(rnd() * c)));
}

const repo = parseRepoName('acme/app')!;
function chain(n: number): { id: string; json: Buffer; layer: Buffer; ancestry: string[] }[] {
  const out: { id: string; json: Buffer; layer: Buffer; ancestry: string[] }[] = [];
  for (let i = 0; i < n; i++) {
    const id = createHash('sha256').update(`img${i}`).digest('hex');
    const parent = out[i - 1];
    out.push({
      id,
      json: Buffer.from(JSON.stringify({ id, ...(parent ? { parent: parent.id } : {}) })),
      layer: Buffer.from(`layer ${i} bytes`.repeat(50)),
      ancestry: [id, ...(parent ? parent.ancestry : [])],
    });
  }
  return out;
}

describe('import batches (issue 16: durable in batches, never visible half written)', () => {
  it('after a crash at any point, an image is either not served or served complete and durable', async () => {
    const crash = new CrashDriver();
    const driver = crash.driver();
    const images = new V1Images(driver, new BlobStore(driver), { scoped: true, maxLayerSize: 0, verifyTarsum: false });
    const batches = new ImportBatches(driver, images, 2); // 3 images: a full batch, then the rest
    const imgs = chain(3);
    for (const img of imgs) {
      const r = await images.stageImport(repo, img.id, img.json, img.ancestry, Readable.from([img.layer]), img.layer.length, {
        tarsums: false,
        tarsumV1: false,
        verify: () => ({}),
      });
      assert.ok('staged' in r);
      batches.add(r.staged);
      // staged: not served, and its bytes not at their digest yet
      assert.equal(await images.isComplete(repo, img.id), false);
    }
    await batches.flush();
    for (const img of imgs) assert.equal(await images.isComplete(repo, img.id), true, 'complete after the flush');
    assert.equal(batches.flushes, 2);

    let seed = 7;
    const rnd = (): number => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    let checked = 0;
    let served = 0;
    for (const state of crash.states) {
      for (const disk of outcomes(state, rnd)) {
        for (const img of imgs) {
          const json = disk.get(keys.imageJson(repo, img.id));
          if (json === undefined || disk.has(keys.inProgress(repo, img.id))) continue; // not served
          served++;
          // served (json, no mark): every record and the layer's bytes must be there, whole
          assert.deepEqual(json, img.json, 'json');
          assert.deepEqual(JSON.parse(disk.get(keys.ancestry(repo, img.id))!.toString()), img.ancestry, 'ancestry');
          const link = JSON.parse(disk.get(keys.layerLink(repo, img.id))!.toString()) as { digest: string; payload: string };
          const blob = disk.get(keys.blob(link.digest.slice(7)));
          assert.ok(blob, 'blob');
          assert.equal(`sha256:${createHash('sha256').update(blob).digest('hex')}`, link.digest, 'blob bytes');
          assert.equal((JSON.parse(disk.get(keys.clientChecksum(repo, img.id))!.toString()) as { payload: string }).payload, link.payload);
          checked++;
        }
      }
    }
    assert.ok(served > 0 && checked === served, `crash states where an image is served: ${served}`);
  });

  it('a staged image whose layer fails verification leaves nothing, and its bytes are not published', async () => {
    const crash = new CrashDriver();
    const driver = crash.driver();
    const images = new V1Images(driver, new BlobStore(driver), { scoped: true, maxLayerSize: 0, verifyTarsum: false });
    const [img] = chain(1);
    const r = await images.stageImport(repo, img!.id, img!.json, img!.ancestry, Readable.from([img!.layer]), img!.layer.length, {
      tarsums: false,
      tarsumV1: false,
      verify: () => ({ bad: 'payload checksum mismatch' }),
    });
    assert.deepEqual(r, { bad: 'payload checksum mismatch' });
    assert.deepEqual(await crash.inner.list(''), [], 'no record, no upload, no blob');
  });

  it('on a driver without syncKeys (object stores) every write is durable and the images complete at the flush', async () => {
    const inner = createMemoryDriver();
    const writes: { key: string; durable: boolean }[] = [];
    const driver: StorageDriver = {
      ...inner,
      name: inner.name,
      getContent: (k) => inner.getContent(k),
      reader: (k, o, l) => inner.reader(k, o, l),
      stat: (k) => inner.stat(k),
      list: (p) => inner.list(p),
      delete: (k) => inner.delete(k),
      putContent: async (key, data, o) => {
        writes.push({ key, durable: o?.durable !== false });
        await inner.putContent(key, data, o);
      },
      writer: async (key, o) => {
        const w = await inner.writer(key, o);
        return {
          get size() {
            return w.size;
          },
          stream: w.stream,
          commit: async (c) => {
            writes.push({ key, durable: c?.durable !== false });
            await w.commit(c);
          },
          cancel: () => w.cancel(),
        };
      },
      move: async (src, dst, o) => {
        writes.push({ key: dst, durable: o?.durable !== false });
        await inner.move(src, dst, o);
      },
    };
    delete (driver as { syncKeys?: unknown }).syncKeys;
    const images = new V1Images(driver, new BlobStore(driver), { scoped: true, maxLayerSize: 0, verifyTarsum: false });
    const batches = new ImportBatches(driver, images);
    const imgs = chain(2);
    for (const img of imgs) {
      const r = await images.stageImport(repo, img.id, img.json, img.ancestry, Readable.from([img.layer]), img.layer.length, {
        tarsums: false,
        tarsumV1: false,
        verify: () => ({}),
      });
      assert.ok('staged' in r);
      batches.add(r.staged);
    }
    await batches.flush();
    for (const img of imgs) assert.equal(await images.isComplete(repo, img.id), true);
    assert.ok(writes.length > 10);
    assert.deepEqual(
      writes.filter((w) => !w.durable),
      [],
      'no write without a flush',
    );
  });

  it('refuses a json whose parent is not the ancestry given', async () => {
    const driver = createMemoryDriver();
    const images = new V1Images(driver, new BlobStore(driver), { scoped: true, maxLayerSize: 0, verifyTarsum: false });
    const [a, b] = chain(2);
    await assert.rejects(
      images.stageImport(repo, b!.id, b!.json, [b!.id], Readable.from([b!.layer]), b!.layer.length, { tarsums: false, tarsumV1: false, verify: () => ({}) }),
      /parent/,
    );
    assert.equal(await images.hasJson(repo, a!.id), false);
  });
});

describe('import: a local layer file copied and hashed by the worker (LayerFiles) instead of streamed', () => {
  it('stages the same image as the stream does, never opens the stream, and leaves nothing of a refused layer', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'import-local-'));
    const files = new LayerFiles();
    try {
      const img = chain(1)[0]!;
      const layer = gzipSync(Buffer.concat([Buffer.alloc(512, 0), Buffer.alloc(512, 0)])); // an empty tar, gzipped
      const src = join(dir, 'layer');
      await writeFile(src, layer);
      const stage = async (root: string, file: boolean, over: { size?: number; maxLayerSize?: number; bad?: string } = {}) => {
        const driver = createFilesystemDriver({ root: join(dir, root), blocking: true });
        const images = new V1Images(driver, new BlobStore(driver), { scoped: true, maxLayerSize: over.maxLayerSize ?? 0, verifyTarsum: false });
        let opened = 0;
        const r = await images
          .stageImport(
            repo,
            img.id,
            img.json,
            img.ancestry,
            () => {
              opened++;
              return Readable.from([layer]);
            },
            over.size ?? layer.length,
            {
              tarsums: false,
              tarsumV1: false,
              verify: () => (over.bad ? { bad: over.bad } : {}),
              ...(file ? { file: { src: { root: openRoot(dirname(src)), path: basename(src) }, workers: files } } : {}),
            },
          )
          .catch((e: unknown) => e);
        return { r, opened, driver };
      };
      const streamed = await stage('a', false);
      const copied = await stage('b', true);
      assert.equal(streamed.opened, 1);
      assert.equal(copied.opened, 0, 'the worker read the file; the stream was never opened');
      const a = (streamed.r as { staged: StagedImage }).staged;
      const b = (copied.r as { staged: StagedImage }).staged;
      assert.ok(a && b, 'both staged');
      assert.deepEqual(b.link, a.link);
      assert.equal(b.link.diffId !== undefined && b.link.compression === 'gzip', true);
      assert.ok((await copied.driver.getContent(b.blob!.uploadKey)).equals(layer), 'the staged bytes are the layer');
      // refused layers: nothing left in the uploads
      for (const [root, over, want] of [
        ['c', { size: layer.length + 1 }, 'UPLOAD_INCOMPLETE'],
        ['d', { maxLayerSize: 10 }, 'LAYER_TOO_LARGE'],
        ['e', { bad: 'payload checksum mismatch' }, undefined],
      ] as const) {
        const { r, driver } = await stage(root, true, over);
        if (want) assert.equal((r as { code?: string }).code, want, root);
        else assert.deepEqual(r, { bad: 'payload checksum mismatch' });
        assert.deepEqual(await driver.list('uploads').catch(() => []), [], `${root}: no upload left`);
        assert.equal(await driver.list(keys.imageJson(repo, img.id)).catch(() => 'none'), 'none');
      }
    } finally {
      await files.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

/**
 * An import beside a live server (issue 16): the importer and a server's v1 push of the same id into
 * the same repository, two processes on one storage directory, each with its own V1Images and its
 * own StorageLock (the lock objects in the storage are what they share).
 */
describe('import beside a live server: a client pushing the same image id into the same repository', () => {
  const setup = async () => {
    const dir = await mkdtemp(join(tmpdir(), 'import-live-'));
    const open = (): V1Images => {
      const driver = createFilesystemDriver({ root: dir, blocking: true });
      return new V1Images(driver, new BlobStore(driver), { scoped: true, maxLayerSize: 0, verifyTarsum: false, locks: new StorageLock(driver) });
    };
    const importer = open();
    const server = open();
    const driver = createFilesystemDriver({ root: dir, blocking: true });
    const batches = new ImportBatches(driver, importer, 64);
    const img = chain(1)[0]!;
    // the client's image: the same id, other json and other layer bytes
    const theirs = { json: Buffer.from(JSON.stringify({ id: img.id, comment: 'pushed by a client' })), layer: Buffer.from('the client layer'.repeat(40)) };
    const payloadOf = (json: Buffer, layer: Buffer): string => `sha256:${createHash('sha256').update(json).update('\n').update(layer).digest('hex')}`;
    const stage = async (): Promise<StagedImage> => {
      const r = await importer.stageImport(repo, img.id, img.json, img.ancestry, Readable.from([img.layer]), img.layer.length, {
        tarsums: false,
        tarsumV1: false,
        verify: () => ({}),
      });
      assert.ok('staged' in r);
      return r.staged;
    };
    /** What a reader is served for the id: nothing, or one image whose json, link and bytes agree. */
    const served = async (): Promise<'none' | 'ours' | 'theirs'> => {
      const c = await server.complete(repo, img.id);
      if (!c) return 'none';
      assert.ok(c.link, 'a served image has its layer');
      const bytes = await driver.getContent(keys.blob(c.link.digest.slice(7)));
      assert.equal(c.link.payload, payloadOf(c.json, bytes), 'the served json and layer are one image');
      return c.json.equals(img.json) ? 'ours' : 'theirs';
    };
    const pushTheirs = async (step: 'json' | 'layer' | 'all'): Promise<void> => {
      if (step === 'json' || step === 'all') await server.putJson(repo, img.id, theirs.json);
      if (step === 'layer' || step === 'all') await server.putLayer(repo, img.id, Readable.from([theirs.layer]), theirs.layer.length);
      if (step === 'all') await server.putChecksum(repo, img.id, payloadOf(theirs.json, theirs.layer), undefined);
    };
    return { dir, importer, server, batches, img, theirs, stage, served, pushTheirs, payloadOf };
  };
  /** A test on its own storage directory, removed afterwards. */
  const live = (fn: (t: Awaited<ReturnType<typeof setup>>) => Promise<void>) => async (): Promise<void> => {
    const t = await setup();
    try {
      await fn(t);
    } finally {
      await rm(t.dir, { recursive: true, force: true });
    }
  };

  it(
    'a push that starts after the image was staged takes it over: the import neither publishes nor completes it',
    live(async (t) => {
      t.batches.add(await t.stage());
      await t.pushTheirs('json'); // the client's PUT json, before the import's flush
      await t.batches.flush();
      assert.equal(t.batches.isOvertaken(repo.full, t.img.id), true, 'reported as taken over');
      assert.equal(await t.served(), 'none', 'nothing served half');
      await t.pushTheirs('layer');
      await t.server.putChecksum(repo, t.img.id, t.payloadOf(t.theirs.json, t.theirs.layer), undefined);
      assert.equal(await t.served(), 'theirs', "the client's push completes as its own");
    }),
  );

  it(
    'a push that starts while the import makes the image visible waits for it, then finds the image there',
    live(async (t) => {
      const s = await t.stage();
      let push: Promise<unknown> | undefined;
      let flushed = false;
      const visible = await t.importer.publishImported(s, async () => {
        // the json is written, the mark still there: the client's PUT json now waits for the lock
        push = t.server.putJson(repo, t.img.id, t.theirs.json).then(
          () => 'stored',
          (e: unknown) => e,
        );
        await new Promise((r) => setTimeout(r, 200));
        flushed = true;
      });
      assert.equal(visible, true);
      const outcome = await push;
      assert.ok(flushed);
      assert.ok(outcome instanceof RegistryError && outcome.code === 'IMAGE_EXISTS', `the push got ${String(outcome)}`);
      assert.equal(await t.served(), 'ours', "the import's image, whole");
    }),
  );

  it(
    "a push's layer landing after the import staged the image: the import writes nothing",
    live(async (t) => {
      // the client pushed the json the tree has, then its own layer bytes, while the image was staged
      const s = await t.stage();
      await t.server.putJson(repo, t.img.id, t.img.json).catch(() => undefined);
      await t.server.putLayer(repo, t.img.id, Readable.from([t.theirs.layer]), t.theirs.layer.length);
      let flushed = false;
      assert.equal(
        await t.importer.publishImported(s, async () => {
          flushed = true;
        }),
        false,
      );
      assert.equal(flushed, false, 'nothing of the import to flush');
      assert.equal(await t.served(), 'none');
      // the client's push completes as its own
      await t.server.putChecksum(repo, t.img.id, t.payloadOf(t.img.json, t.theirs.layer), undefined);
      assert.equal(await t.served(), 'ours', "the tree's json (the client pushed the same) with the client's layer");
    }),
  );

  it(
    "an import of an image whose push is in progress (or was abandoned) makes it the tree's, whole",
    live(async (t) => {
      await t.pushTheirs('json');
      await t.pushTheirs('layer'); // PUT checksum never came
      t.batches.add(await t.stage());
      await t.batches.flush();
      assert.equal(t.batches.isOvertaken(repo.full, t.img.id), false);
      assert.equal(await t.served(), 'ours');
      // the client's late PUT checksum does not change what is served
      await t.server.putChecksum(repo, t.img.id, t.payloadOf(t.theirs.json, t.theirs.layer), undefined).catch(() => undefined);
      assert.equal(await t.served(), 'ours');
    }),
  );

  it(
    'a failed verification removes only what the import staged, never a push in progress',
    live(async (t) => {
      const r = await t.importer.stageImport(repo, t.img.id, t.img.json, t.img.ancestry, Readable.from([t.img.layer]), t.img.layer.length, {
        tarsums: false,
        tarsumV1: false,
        verify: () => {
          return { bad: 'payload checksum mismatch' };
        },
      });
      assert.deepEqual(r, { bad: 'payload checksum mismatch' });
      // a push started meanwhile keeps its records: discarding with the import's mark leaves them
      await t.pushTheirs('json');
      assert.equal(await t.importer.discardIncomplete(repo, t.img.id, Buffer.from('import 000')), false);
      assert.ok(await t.server.inProgress(repo, t.img.id));
      assert.ok(await t.server.hasJson(repo, t.img.id));
    }),
  );
});
