// The least an importer that verifies as issue 16 asks can do with a Python docker-registry tree, for
// bench/migrate.ts: for each image, read the layer once, sha256 it (its address) and sha256 the json,
// "\n" and the layer (the payload checksum the tree recorded; the two in one pass where the import
// pairs them), inflate a gzip layer and sha256 the tar
// (the diff_id the bridge serves), write the layer and the json into a new directory; one worker
// thread per core, the images dealt out between them. No other record, no index, no tags, no
// durability until the caller's sync. Timed by the caller beside `cp -r` of the same tree.
// `--no-diff-id`: no inflating and no diff_id (the address and the payload checksum only: what an
// importer that left the bridge's diff_ids for later would still have to do).
//
//   node bench/import-floor.mjs TREE DEST [threads] [--no-diff-id]
import { createHash } from 'node:crypto';
import { closeSync, mkdirSync, openSync, readdirSync, readFileSync, readSync, writeFileSync, writeSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { gunzipSync } from 'node:zlib';

// the address and the payload checksum in one pass, as the import makes them where it can (src/digest/sha256.ts, built)
const paired = await import('../dist/src/digest/sha256.js').catch(() => undefined);
const newHash = () => (paired ? paired.createSha256() : createHash('sha256'));
const hashBoth = (a, b, chunk) => {
  if (paired) paired.updateBoth(a, b, chunk);
  else {
    a.update(chunk);
    b.update(chunk);
  }
};

/** A gzip layer is inflated whole (the bench's layers are a few MiB): larger ones are refused. */
const GZIP_MAX = 512 * 1024 * 1024;

if (isMainThread) {
  const [tree, dest, threadsArg] = process.argv.slice(2).filter((a) => !a.startsWith('--'));
  const diffIds = !process.argv.includes('--no-diff-id');
  if (!tree || !dest || process.argv.includes('--help')) {
    console.log('usage: node bench/import-floor.mjs TREE DEST [threads] [--no-diff-id]');
    process.exit(tree && dest ? 0 : 2);
  }
  const threads = Number(threadsArg ?? cpus().length);
  const ids = readdirSync(join(tree, 'images'));
  const results = await Promise.all(
    Array.from(
      { length: threads },
      (_, k) =>
        new Promise((resolve, reject) => {
          const w = new Worker(new URL(import.meta.url), { workerData: { tree, dest, diffIds, ids: ids.filter((_, i) => i % threads === k) } });
          w.once('message', resolve);
          w.once('error', reject);
        }),
    ),
  );
  const sum = (k) => results.reduce((a, r) => a + r[k], 0);
  console.log(JSON.stringify({ images: sum('images'), bytes: sum('bytes'), inflated: sum('inflated'), threads, diffIds }));
} else {
  const { tree, dest, ids, diffIds } = workerData;
  const buf = Buffer.allocUnsafe(1 << 20);
  let images = 0;
  let bytes = 0;
  let inflated = 0;
  for (const id of ids) {
    let json;
    try {
      json = readFileSync(join(tree, 'images', id, 'json'));
    } catch {
      continue;
    }
    const dir = join(dest, id.slice(0, 2), id);
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'json'), json, { flag: 'wx' });
    const address = newHash();
    const payload = newHash().update(json).update('\n', 'latin1');
    const src = openSync(join(tree, 'images', id, 'layer'), 'r');
    const dst = openSync(join(dir, 'layer'), 'wx');
    const gz = [];
    let gzip;
    let size = 0;
    for (;;) {
      const n = readSync(src, buf, 0, buf.length, null);
      if (n === 0) break;
      const chunk = buf.subarray(0, n);
      gzip ??= diffIds && chunk[0] === 0x1f && chunk[1] === 0x8b;
      hashBoth(address, payload, chunk);
      if (gzip) gz.push(Buffer.from(chunk));
      for (let at = 0; at < n;) at += writeSync(dst, chunk, at, n - at);
      size += n;
      if (gzip && size > GZIP_MAX) throw new Error(`${id}: a gzip layer over ${GZIP_MAX} bytes`);
    }
    closeSync(src);
    closeSync(dst);
    address.digest();
    payload.digest();
    if (gzip) {
      const tar = gunzipSync(Buffer.concat(gz));
      newHash().update(tar).digest();
      inflated += tar.length;
    }
    images++;
    bytes += size;
  }
  parentPort.postMessage({ images, bytes, inflated });
}
