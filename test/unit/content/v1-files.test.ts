import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { FILES_MAX_ENTRIES, filesListing, type FilesSource } from '../../../src/content/v1-files.js';
import type { LayerLink } from '../../../src/content/v1-images.js';
import { tarOf } from '../../helpers/v1-client.js';

const LINK = (compression: LayerLink['compression']): LayerLink => ({ digest: 'sha256:x', size: 0, payload: 'sha256:y', compression });

/** A source over bytes in memory, recording what is kept and whether the layer was closed. */
function source(layer: Buffer, opts: { compression?: LayerLink['compression']; cached?: Buffer } = {}) {
  const state = { kept: undefined as Buffer | undefined, opened: 0, closed: 0 };
  const src: FilesSource = {
    cached: () => Promise.resolve(opts.cached),
    layer: () => Promise.resolve(LINK(opts.compression ?? 'gzip')),
    open: () => {
      state.opened++;
      const pieces: Buffer[] = [];
      for (let o = 0; o < layer.length; o += 8192) pieces.push(layer.subarray(o, o + 8192));
      const r = Readable.from(pieces, { objectMode: false });
      r.once('close', () => state.closed++);
      return Promise.resolve(r);
    },
    keep: (json) => {
      state.kept = json;
      return Promise.resolve();
    },
  };
  return { src, state };
}

async function text(r: Readable): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of r) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

const files = (n: number): Record<string, string> => Object.fromEntries(Array.from({ length: n }, (_, i) => [`d/${String(i).padStart(4, '0')}`, '']));

describe('filesListing (R9, streamed)', () => {
  it('lists in the Python format and keeps a small complete listing', async () => {
    const { src, state } = source(gzipSync(tarOf({ 'a/é': 'xy', './.wh.old': '' })));
    const out = await text(await filesListing(src));
    assert.match(out, /^\[\["a\/\\u00e9", "f", false, 2, \d+, 420, 0, 0\], \["\/old", "f", true, 0, \d+, 420, 0, 0\]\]$/);
    assert.equal(state.kept?.toString('utf8'), out);
    assert.equal(state.closed, 1);
  });

  it(`stops at the entry cap (default ${FILES_MAX_ENTRIES}) with a well-formed list, not kept, layer closed`, async () => {
    const { src, state } = source(tarOf(files(50)), { compression: 'none' });
    const list = JSON.parse(await text(await filesListing(src, { maxEntries: 20 }))) as [string][];
    assert.equal(list.length, 20);
    assert.deepEqual(
      list.map((e) => e[0]),
      Object.keys(files(20)),
    );
    assert.equal(state.kept, undefined, 'a cut listing is not kept');
    assert.equal(state.closed, 1);
  });

  it('a listing past the cache limit is complete but not kept', async () => {
    const { src, state } = source(gzipSync(tarOf(files(50))));
    const list = JSON.parse(await text(await filesListing(src, { cacheMax: 1000 }))) as unknown[];
    assert.equal(list.length, 50);
    assert.equal(state.kept, undefined);
  });

  it('a layer that is no tar fails before the answer starts (LAYER_FORMAT)', async () => {
    const { src } = source(gzipSync(Buffer.from('not a tar '.repeat(100))));
    await assert.rejects(filesListing(src), { code: 'LAYER_FORMAT', status: 400 });
    const { src: notGzip } = source(Buffer.from('plain bytes that are no gzip stream'));
    await assert.rejects(filesListing(notGzip), { code: 'LAYER_FORMAT' });
    const { src: bzip } = source(Buffer.alloc(10), { compression: 'bzip2' as LayerLink['compression'] });
    await assert.rejects(filesListing(bzip), { code: 'LAYER_FORMAT' });
  });

  it('a layer damaged after the first piece makes the stream fail, and closes the layer', async () => {
    const good = tarOf(files(2000)); // ~ 120 KB of JSON: more than one piece
    const damaged = Buffer.concat([good.subarray(0, good.length - 1024 - 512 * 200), Buffer.alloc(512, 0x41)]);
    const { src, state } = source(damaged, { compression: 'none' });
    const stream = await filesListing(src);
    await assert.rejects(text(stream), { code: 'LAYER_FORMAT' });
    assert.equal(state.kept, undefined);
    assert.equal(state.closed, 1);
  });

  it('a client that goes away stops the reading (the layer is closed)', async () => {
    const { src, state } = source(tarOf(files(3000)), { compression: 'none' });
    const stream = await filesListing(src);
    for await (const _ of stream) break;
    await new Promise((r) => setImmediate(r));
    assert.equal(state.closed, 1);
    assert.equal(state.kept, undefined);
  });

  it('a kept listing is served from the copy (older compact copies re-rendered); a damaged copy is listed again', async () => {
    const compact = Buffer.from(JSON.stringify([['/a', 'f', false, 1, 2, 420, 0, 0]]));
    const { src, state } = source(Buffer.alloc(0), { cached: compact });
    assert.equal(await text(await filesListing(src)), '[["/a", "f", false, 1, 2, 420, 0, 0]]');
    assert.equal(state.opened, 0);
    const { src: again, state: s2 } = source(gzipSync(tarOf({ b: '' })), { cached: Buffer.from('{"not": "a list"}') });
    assert.match(await text(await filesListing(again)), /^\[\["b", "f"/);
    assert.equal(s2.opened, 1);
  });
});
