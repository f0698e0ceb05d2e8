import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import { ROOT } from './paths.js';
import { request } from './http.js';
import { DOCKER_UA, pushImage, putTag, tarOf, type TestImage } from './v1-client.js';
import { schema2Manifest } from './v2-client.js';
import type { StorageDriver } from '../../src/storage/driver.js';

/** Pushes and byte-for-byte pull checks shared by the garbage collection tests (filesystem and S3). */
const sha = (b: Buffer | string): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const S2 = 'application/vnd.docker.distribution.manifest.v2+json';

export interface V2Pushed {
  readonly name: string;
  readonly tag: string;
  readonly manifest: Buffer;
  readonly digest: string;
  readonly blobs: readonly Buffer[];
}

/** A v2 image whose layer is sent in PATCH chunks (an upload session in flight), config monolithic. */
export async function pushV2Chunked(url: string, name: string, tag: string, label: string, shared?: Buffer): Promise<V2Pushed> {
  const tar = tarOf({ [`${label}.txt`]: `${label} ${Math.random()}\n`.repeat(200) });
  const layer = gzipSync(tar);
  const layers = shared ? [shared, layer] : [layer];
  const config = Buffer.from(
    JSON.stringify({ architecture: 'amd64', os: 'linux', config: {}, rootfs: { type: 'layers', diff_ids: layers.map(() => sha(tar)) }, label }),
  );
  const c = await request(url, `/v2/${name}/blobs/uploads/?digest=${sha(config)}`, { method: 'POST', body: config });
  assert.equal(c.status, 201, c.text);
  for (const l of layers) {
    const open = await request(url, `/v2/${name}/blobs/uploads/`, { method: 'POST' });
    assert.equal(open.status, 202, open.text);
    let loc = String(open.headers.location);
    const half = Math.floor(l.length / 2);
    for (const [from, to] of [
      [0, half],
      [half, l.length],
    ] as const) {
      const p = await request(url, loc, {
        method: 'PATCH',
        body: l.subarray(from, to),
        headers: { 'Content-Range': `${from}-${to - 1}`, 'Content-Type': 'application/octet-stream' },
      });
      assert.equal(p.status, 202, p.text);
      loc = String(p.headers.location);
      await new Promise((r) => setTimeout(r, 5));
    }
    const done = await request(url, `${loc}${loc.includes('?') ? '&' : '?'}digest=${sha(l)}`, { method: 'PUT' });
    assert.equal(done.status, 201, done.text);
  }
  const manifest = schema2Manifest(config, layers);
  const put = await request(url, `/v2/${name}/manifests/${tag}`, { method: 'PUT', body: manifest, headers: { 'Content-Type': S2 } });
  assert.equal(put.status, 201, put.text);
  return { name, tag, manifest, digest: sha(manifest), blobs: [config, ...layers] };
}

export async function assertV2Pulls(url: string, p: V2Pushed): Promise<void> {
  const m = await request(url, `/v2/${p.name}/manifests/${p.tag}`, { headers: { Accept: S2 } });
  assert.equal(m.status, 200, `${p.name}:${p.tag} ${m.text}`);
  assert.deepEqual(m.body, p.manifest, `${p.name}:${p.tag} manifest bytes`);
  for (const b of p.blobs) {
    const r = await request(url, `/v2/${p.name}/blobs/${sha(b)}`);
    assert.equal(r.status, 200, `${p.name} blob ${sha(b)}: ${r.status}`);
    assert.ok(r.body.equals(b), `${p.name} blob ${sha(b)} bytes`);
  }
}

export interface V1Pushed {
  readonly repo: string;
  readonly tag: string;
  readonly chain: readonly TestImage[];
}

export async function pushV1(url: string, repo: string, tag: string, chain: readonly TestImage[]): Promise<V1Pushed> {
  for (const img of chain) {
    const rs = await pushImage(url, img);
    const ok = rs[0]!.status === 200 || (rs[1]!.status === 200 && rs[2]!.status === 200 && rs[3]!.status === 200);
    assert.ok(ok, `push ${img.id}: ${rs.map((r) => `${r.status} ${r.text}`).join(' | ')}`);
  }
  const t = await putTag(url, repo, tag, chain[chain.length - 1]!.id);
  assert.equal(t.status, 200, t.text);
  return { repo, tag, chain };
}

export async function assertV1Pulls(url: string, p: V1Pushed): Promise<void> {
  const h = { 'User-Agent': DOCKER_UA };
  const t = await request(url, `/v1/repositories/${p.repo}/tags/${p.tag}`, { headers: h });
  assert.equal(t.status, 200, `${p.repo}:${p.tag} ${t.text}`);
  const top = p.chain[p.chain.length - 1]!;
  assert.equal(t.json(), top.id);
  const anc = await request(url, `/v1/images/${top.id}/ancestry`, { headers: h });
  assert.equal(anc.status, 200, anc.text);
  assert.deepEqual(
    anc.json(),
    [...p.chain].reverse().map((i) => i.id),
  );
  for (const img of p.chain) {
    const j = await request(url, `/v1/images/${img.id}/json`, { headers: h });
    assert.equal(j.status, 200, `${img.id} json ${j.text}`);
    assert.deepEqual(j.body, img.json);
    const l = await request(url, `/v1/images/${img.id}/layer`, { headers: h });
    assert.equal(l.status, 200, `${p.repo} ${img.id} layer: ${l.status} ${l.text}`);
    assert.ok(l.body.equals(img.layer), `${img.id} layer bytes`);
  }
}

/** `legacy-registry gc` on a filesystem store, with a short settle (tests); `env`: configuration (MAX_JSON_SIZE…). */
export function gcCli(
  dataDir: string,
  args: readonly string[],
  timeoutMs = 120_000,
  env: Record<string, string> = {},
): Promise<{ stdout: string; stderr: string }> {
  return promisify(execFile)(
    process.execPath,
    [join(ROOT, 'bin', 'legacy-registry.cjs'), 'gc', '--flavor', 'test', '--storage-path', dataDir, '--settle', '0.2s', ...args],
    { env: { PATH: process.env.PATH ?? '', ...env }, timeout: timeoutMs },
  );
}

/**
 * A driver that runs `hook` once, before the first call of `method` whose first key (and, for
 * move, destination) matches: a request at an exact point of a GC run. With `fail`, that call
 * throws `fail` instead of running (a run stopped there).
 */
export function hooked(
  inner: StorageDriver,
  method: 'delete' | 'list' | 'move',
  match: (key: string, to?: string) => boolean,
  hook: () => Promise<void>,
  fail?: Error,
): StorageDriver {
  let fired = false;
  return new Proxy(inner, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver) as unknown;
      if (typeof v !== 'function') return v;
      const f = (v as (...a: unknown[]) => Promise<unknown>).bind(target);
      if (prop !== method) return f;
      return async (...a: unknown[]) => {
        if (!fired && match(String(a[0]), a[1] === undefined ? undefined : String(a[1]))) {
          fired = true;
          await hook();
          if (fail) throw fail;
        }
        return f(...a);
      };
    },
  });
}
