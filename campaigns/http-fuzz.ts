import { connect } from 'node:net';
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Knex } from 'knex';

/**
 * An HTTP fuzzer over every route (issue 17): random methods, paths built from the route table with
 * segments replaced by encoded bytes, control characters, very long or traversal segments, random
 * headers (garbage credentials, ranges, lengths, types) and bodies, sent on raw sockets so nothing
 * is cleaned up on the way. Never a 5xx, never a dead server, never a change of state from a request
 * that was refused.
 */

export interface FuzzReport {
  requests: number;
  statuses: Record<string, number>;
  fiveHundreds: string[];
  stateChanges: string[];
  noAnswer: number;
}

/** mulberry32 */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const ID = 'a'.repeat(64);
const DIGEST = `sha256:${'b'.repeat(64)}`;
/** Route templates: v1 registry and index, v2, the token service, our own JSON routes. */
const ROUTES = [
  '/',
  '/_ping',
  '/v1/_ping',
  '/v1/_status',
  '/v1/search?q=@',
  '/v1/users/',
  '/v1/users/@/',
  `/v1/images/${ID}/json`,
  `/v1/images/${ID}/layer`,
  `/v1/images/${ID}/checksum`,
  `/v1/images/${ID}/ancestry`,
  `/v1/images/${ID}/files`,
  `/v1/images/${ID}/diff`,
  '/v1/repositories/@/@/',
  '/v1/repositories/@/@/images',
  '/v1/repositories/@/@/tags',
  '/v1/repositories/@/@/tags/@',
  '/v1/repositories/@/@/tags/@/json',
  '/v1/repositories/@/@/json',
  '/v1/repositories/@/@/properties',
  '/v1/repositories/@/@/auth',
  `/v1/repositories/@/@/layer/${ID}/access`,
  '/v1/stars/@/@',
  '/v1/comments/@/@',
  '/v2/',
  '/v2/_catalog?n=@&last=@',
  '/v2/@/@/tags/list?n=@&last=@',
  '/v2/@/@/manifests/@',
  `/v2/@/@/blobs/${DIGEST}`,
  '/v2/@/@/blobs/uploads/',
  '/v2/@/@/blobs/uploads/@',
  `/v2/@/@/blobs/uploads/?digest=@&mount=@&from=@`,
  `/v2/@/@/referrers/${DIGEST}?artifactType=@`,
  '/v2/token?service=@&scope=@&account=@',
  '/.well-known/jwks.json',
  '/_index/v2/catalog?limit=@',
  '/_index/v2/pushed',
  '/_index/v2/deleted',
  '/_index/v1/checksums',
];
const METHODS = ['GET', 'HEAD', 'PUT', 'POST', 'PATCH', 'DELETE', 'OPTIONS', 'TRACE', 'BREW', 'get'];

function segment(r: () => number): string {
  const pick = Math.floor(r() * 12);
  const hex = (n: number): string => `%${n.toString(16).padStart(2, '0')}`;
  switch (pick) {
    case 0:
      return hex(Math.floor(r() * 32)); // a control character
    case 1:
      return `x${hex(0x7f + Math.floor(r() * 129))}`; // DEL and bytes above ASCII
    case 2:
      return 'a'.repeat(1 + Math.floor(r() * 3000)); // very long
    case 3:
      return ['..', '.', '%2e%2e', '%2f', '..%2f..%2fetc', '%00'][Math.floor(r() * 6)]!;
    case 4: {
      const cp = 0x80 + Math.floor(r() * 0x2ff80);
      return encodeURIComponent(String.fromCodePoint(cp >= 0xd800 && cp <= 0xdfff ? 0xe9 : cp));
    }
    case 5:
      return ['%', '%zz', '%c3', '%ff%fe'][Math.floor(r() * 4)]!;
    case 6:
      return `${'z'.repeat(Math.floor(r() * 5))}${hex(0x0d)}${hex(0x0a)}Set-Cookie:x`;
    case 7:
      return ['library', 'alice', 'admin', 'v2', '_catalog', 'blobs', 'manifests'][Math.floor(r() * 7)]!;
    case 8:
      return DIGEST.replace('b', ['B', ':', 'g', ''][Math.floor(r() * 4)]!);
    default:
      return Math.random()
        .toString(36)
        .slice(2, 2 + Math.floor(r() * 10));
  }
}

function headers(r: () => number): string[] {
  const out: string[] = [];
  const n = Math.floor(r() * 5);
  const auth = [
    'Basic !!!!',
    `Basic ${Buffer.from('alice:wrong').toString('base64')}`,
    'Basic Og==',
    'Token signature=1.2.3.4,repository="a/b",access=write',
    'Token Token repository="%00",access=read',
    'Bearer x.y.z',
    'Bearer eyJhbGciOiJub25lIn0.eyJhY2Nlc3MiOltdfQ.',
    'Bearer ' + 'A'.repeat(5000),
    'Digest x',
  ];
  for (let i = 0; i < n; i++) {
    const k = Math.floor(r() * 9);
    if (k === 0) out.push(`Authorization: ${auth[Math.floor(r() * auth.length)]}`);
    else if (k === 1)
      out.push(`Range: ${['bytes=-1', 'bytes=5-2', 'bytes=0-', 'bytes=99999999999999999999-', 'bytes=1-2,3-4', 'items=0-1'][Math.floor(r() * 6)]}`);
    else if (k === 2)
      out.push(
        `Content-Type: ${['application/json', 'application/vnd.docker.distribution.manifest.v2+json', 'text/plain', 'application/x-www-form-urlencoded', '\u00ff'][Math.floor(r() * 5)]}`,
      );
    else if (k === 3)
      out.push(
        `Accept: ${['*/*', 'application/vnd.docker.distribution.manifest.v1+prettyjws', 'application/vnd.oci.image.index.v1+json', ''][Math.floor(r() * 4)]}`,
      );
    else if (k === 4) out.push(`Content-Range: ${['0-0', '5-1', 'bytes 0-9/10', 'x'][Math.floor(r() * 4)]}`);
    else if (k === 5) out.push('X-Docker-Token: true');
    else if (k === 6) out.push(`X-Docker-Checksum-Payload: sha256:${'c'.repeat(64)}`);
    else if (k === 7) out.push(`If-None-Match: "${'d'.repeat(Math.floor(r() * 100))}"`);
    else out.push(`X-Junk-${Math.floor(r() * 100)}: ${'j'.repeat(Math.floor(r() * 200))}`);
  }
  return out;
}

function body(r: () => number): Buffer {
  const k = Math.floor(r() * 6);
  if (k === 0) return Buffer.alloc(0);
  if (k === 1) return Buffer.from('['.repeat(Math.floor(r() * 5000)));
  if (k === 2)
    return Buffer.from(
      JSON.stringify({ username: 'x'.repeat(Math.floor(r() * 50)), password: 1, schemaVersion: 2, layers: [{ digest: DIGEST, size: -1 }], config: null }),
    );
  if (k === 3) return Buffer.from(Array.from({ length: Math.floor(r() * 2000) }, () => Math.floor(r() * 256)));
  if (k === 4) return Buffer.from('"' + 'a'.repeat(Math.floor(r() * 500)) + '"');
  return Buffer.from('grant_type=password&username=alice&password=x&client_id=fuzz&scope=' + 'repository:a/b:pull '.repeat(Math.floor(r() * 50)));
}

/** One raw exchange: the status code, 0 when the server closed without answering. */
function exchange(host: string, port: number, raw: Buffer, timeoutMs = 10_000): Promise<number> {
  return new Promise((resolve) => {
    const sock = connect({ host, port });
    let got = '';
    const done = (status: number): void => {
      sock.destroy();
      resolve(status);
    };
    sock.setTimeout(timeoutMs, () => done(-1));
    sock.on('data', (d) => {
      got += d.toString('latin1');
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(got);
      if (m) done(Number(m[1]));
      else if (got.length > 64) done(0);
    });
    sock.on('error', () => done(got ? 0 : 0));
    sock.on('close', () => done(0));
    sock.write(raw);
  });
}

/** Files of the storage tree (path and size), except the upload area and the index's own files. */
async function storageState(root: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (dir: string): Promise<void> => {
    let entries;
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      const p = join(dir, e.name);
      if (e.isDirectory()) await walk(p);
      else if (!/index\.db/.test(e.name)) out.push(`${p.slice(root.length)} ${(await stat(p)).size}`);
    }
  };
  await walk(root);
  return out.sort();
}

/** Row counts of the index tables a refused request must not change (login throttling may). */
async function dbState(db: Knex): Promise<string[]> {
  const out: string[] = [];
  for (const t of ['users', 'organizations', 'repositories', 'repository_images', 'collaborators', 'stars', 'comments']) {
    const [row] = (await db(t).count({ n: '*' })) as { n: unknown }[];
    out.push(`${t}=${String(row?.n)}`);
  }
  return out;
}

export async function runHttpFuzz(opts: {
  url: string;
  dataDir: string;
  db: Knex;
  requests: number;
  seed: number;
  log?: (l: string) => void;
}): Promise<FuzzReport> {
  const r = rng(opts.seed);
  const u = new URL(opts.url);
  const report: FuzzReport = { requests: 0, statuses: {}, fiveHundreds: [], stateChanges: [], noAnswer: 0 };
  const before = [...(await storageState(opts.dataDir)), ...(await dbState(opts.db))];
  let refusedSince = 0;
  for (let i = 0; i < opts.requests; i++) {
    const method = METHODS[Math.floor(r() * METHODS.length)]!;
    const path = ROUTES[Math.floor(r() * ROUTES.length)]!.replace(/@/g, () => segment(r));
    const b = method === 'GET' || method === 'HEAD' ? (r() < 0.1 ? body(r) : Buffer.alloc(0)) : body(r);
    const lines = [`${method} ${path} HTTP/1.1`, `Host: ${u.host}`, ...headers(r)];
    if (r() < 0.1) lines.push('Transfer-Encoding: chunked');
    const chunked = lines.some((l) => l.startsWith('Transfer-Encoding'));
    if (!chunked) lines.push(`Content-Length: ${r() < 0.05 ? b.length + 10 : b.length}`);
    lines.push('Connection: close');
    const payload = chunked ? Buffer.concat([Buffer.from(`${b.length.toString(16)}\r\n`), b, Buffer.from('\r\n0\r\n\r\n')]) : b;
    const raw = Buffer.concat([Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1'), payload]);
    // a declared length longer than the body: the server waits for the rest; a short timeout
    const status = await exchange(
      u.hostname,
      Number(u.port),
      raw,
      lines.some((l) => l.startsWith('Content-Length') && Number(l.slice(16)) > b.length) ? 300 : 10_000,
    );
    report.requests++;
    report.statuses[String(status)] = (report.statuses[String(status)] ?? 0) + 1;
    if (status >= 500) report.fiveHundreds.push(`${status} ${method} ${path.slice(0, 200)} [${lines.slice(2).join(' | ').slice(0, 200)}]`);
    if (status === 0) report.noAnswer++;
    if (status >= 400 || status <= 0) refusedSince++;
    if ((i + 1) % 500 === 0 || i === opts.requests - 1) {
      const now = [...(await storageState(opts.dataDir)), ...(await dbState(opts.db))];
      const gone = before.filter((x) => !now.includes(x));
      const added = now.filter((x) => !before.includes(x) && !x.startsWith('/uploads/'));
      if (gone.length + added.length > 0) report.stateChanges.push(`after ${i + 1} requests: -${gone.join(',')} +${added.join(',')}`);
      opts.log?.(`${i + 1} requests, ${report.fiveHundreds.length} 5xx, ${report.stateChanges.length} state changes`);
    }
  }
  void refusedSince;
  return report;
}
