// A plain upload server for the v2 upload figures (issue 18): what a v2 registry must do to take a
// blob durably, on node's own http server (no framework, no storage layer, no index, no auth, no metrics, no log).
// POST opens a session file; PATCH and PUT append their bodies to it while hashing them (one sha256
// state per session, in memory); PUT checks the digest, fsyncs the file, renames it to its digest's
// name and fsyncs that directory: the durability the issue asks of ours ("fsync before publish").
// bench/compare.ts runs the same uploads against it right after distribution's, in the same
// repetition, to show what those uploads cost on node without a framework, storage layer or index.
//
//   node bench/upload-floor.mjs PORT DIR
import { createHash, randomUUID } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { open, rename } from 'node:fs/promises';
import { createServer } from 'node:http';
import { join } from 'node:path';

const [port, dir] = process.argv.slice(2);
if (!port || !dir || process.argv.includes('--help')) {
  console.log('usage: node bench/upload-floor.mjs PORT DIR');
  process.exit(port && dir ? 0 : 2);
}
mkdirSync(join(dir, 'uploads'), { recursive: true });
mkdirSync(join(dir, 'blobs'), { recursive: true });

/** uuid → { handle, hash, size } */
const sessions = new Map();

/** Append the request's body to the session's file, hashing it; the bytes written so far. */
async function append(req, s) {
  for await (const chunk of req) {
    s.hash.update(chunk);
    let off = 0;
    while (off < chunk.length) {
      const { bytesWritten } = await s.handle.write(chunk, off, chunk.length - off, s.size + off);
      off += bytesWritten;
    }
    s.size += chunk.length;
  }
}

function reply(res, status, headers = {}) {
  res.writeHead(status, { 'Content-Length': '0', ...headers });
  res.end();
}

const server = createServer(async (req, res) => {
  try {
    const url = new URL(req.url, 'http://x');
    if (url.pathname === '/v2/') return reply(res, 200);
    const start = /^\/v2\/(.+)\/blobs\/uploads\/$/.exec(url.pathname);
    if (start && req.method === 'POST') {
      req.resume();
      const id = randomUUID();
      const handle = await open(join(dir, 'uploads', id), 'w');
      sessions.set(id, { handle, hash: createHash('sha256'), size: 0 });
      return reply(res, 202, { Location: `/v2/${start[1]}/blobs/uploads/${id}`, Range: '0-0', 'Docker-Upload-UUID': id });
    }
    const m = /^\/v2\/(.+)\/blobs\/uploads\/([0-9a-f-]+)$/.exec(url.pathname);
    const s = m && sessions.get(m[2]);
    if (!s) return reply(res, 404);
    await append(req, s);
    if (req.method === 'PATCH') return reply(res, 202, { Location: url.pathname, Range: `0-${s.size - 1}` });
    if (req.method !== 'PUT') return reply(res, 405);
    sessions.delete(m[2]);
    const digest = `sha256:${s.hash.digest('hex')}`;
    if (url.searchParams.get('digest') !== digest) {
      await s.handle.close();
      return reply(res, 400);
    }
    await s.handle.sync();
    await s.handle.close();
    await rename(join(dir, 'uploads', m[2]), join(dir, 'blobs', digest.slice(7)));
    const d = await open(join(dir, 'blobs'), 'r');
    await d.sync();
    await d.close();
    return reply(res, 201, { Location: `/v2/${m[1]}/blobs/${digest}`, 'Docker-Content-Digest': digest });
  } catch (e) {
    res.destroy(e);
  }
});
server.keepAliveTimeout = 60_000;
server.listen(Number(port), '127.0.0.1');
process.on('SIGTERM', () => process.exit(0));
