import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { request, type Response } from './http.js';
import { DOCKER_UA, pushImage, putTag, tarOf, type TestImage } from './v1-client.js';
import type { Knex } from 'knex';
import type { V1Access, V1TokenSigner } from '../../src/auth/v1-token.js';
import { credentialOf } from '../../src/db/users.js';

/**
 * A v1 token signed in the test as the index issues one to an account: with the fingerprint of the
 * account's credential (a token without one is refused).
 */
export async function accountToken(db: Knex, signer: V1TokenSigner, repo: string, access: V1Access, userId: number, now = Date.now()): Promise<string> {
  return signer.issue(repo, access, userId, now, signer.credential(await credentialOf(db, userId)));
}

/** Credentials of an account; undefined = anonymous. */
export type Creds = readonly [string, string] | undefined;

export const basic = (u: string, p: string): string => `Basic ${Buffer.from(`${u}:${p}`).toString('base64')}`;
export const sha = (b: Buffer | string): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const auth = (c: Creds): Record<string, string> => (c ? { Authorization: basic(c[0], c[1]) } : {});
export const S2 = 'application/vnd.docker.distribution.manifest.v2+json';

/**
 * The v1 index and registry of a site and the v2 token dance, as a Docker client would drive them.
 * `idx` and `reg` are the same URL when both services run in one process.
 */
export class Site {
  private service: string | undefined;
  constructor(
    readonly idx: string,
    readonly reg: string,
  ) {}

  /** I5: create or claim a repository, declare images; the write token (or the failed response). */
  async claim(repo: string, c: Creds, ids: readonly string[], tagOnLast = 'latest'): Promise<string> {
    const r = await this.claimRaw(repo, c, ids, tagOnLast);
    assert.equal(r.status, 200, `claim ${repo}: ${r.text}`);
    return String(r.headers['x-docker-token']);
  }

  claimRaw(repo: string, c: Creds, ids: readonly string[], tagOnLast = 'latest'): Promise<Response> {
    const body = ids.map((id, i) => (i === ids.length - 1 && tagOnLast ? { id, Tag: tagOnLast } : { id }));
    return request(this.idx, `/v1/repositories/${repo}/`, {
      method: 'PUT',
      headers: { ...auth(c), 'X-Docker-Token': 'true', 'Content-Type': 'application/json', 'User-Agent': DOCKER_UA },
      body: JSON.stringify(body),
    });
  }

  /** I7. */
  async finish(repo: string, c: Creds, entries: unknown[] = []): Promise<Response> {
    return request(this.idx, `/v1/repositories/${repo}/images`, {
      method: 'PUT',
      headers: { ...auth(c), 'X-Docker-Token': 'true', 'Content-Type': 'application/json' },
      body: JSON.stringify(entries),
    });
  }

  /** I8 with X-Docker-Token: true: the read token, or undefined when refused. */
  async readToken(repo: string, c: Creds): Promise<string | undefined> {
    const r = await this.images(repo, c);
    return r.status === 200 ? String(r.headers['x-docker-token']) : undefined;
  }

  images(repo: string, c: Creds): Promise<Response> {
    return request(this.idx, `/v1/repositories/${repo}/images`, { headers: { ...auth(c), 'X-Docker-Token': 'true' } });
  }

  /** I9: a delete token, or undefined. */
  async deleteToken(repo: string, c: Creds): Promise<string | undefined> {
    const r = await request(this.idx, `/v1/repositories/${repo}/images`, { method: 'DELETE', headers: { ...auth(c), 'X-Docker-Token': 'true' } });
    return r.status === 204 ? String(r.headers['x-docker-token']) : undefined;
  }

  /** The Docker 1.x push of a chain (root first) and a tag on its last image, with a write token. */
  async pushV1(repo: string, c: Creds, chain: readonly TestImage[], tag = 'latest'): Promise<void> {
    const token = await this.claim(
      repo,
      c,
      chain.map((i) => i.id),
      tag,
    );
    for (const img of chain) {
      const rs = await pushImage(this.reg, img, token);
      const ok =
        (rs[1]!.status === 200 && rs[2]!.status === 200 && rs[3]!.status === 200) ||
        rs[1]!.text === '{"error": "Image already exists"}' ||
        rs[0]!.status === 200;
      assert.ok(ok, `push ${img.id} to ${repo}: ${rs.map((r) => `${r.status} ${r.text}`).join(' | ')}`);
    }
    const t = await putTag(this.reg, repo, tag, chain[chain.length - 1]!.id, token);
    assert.equal(t.status, 200, t.text);
    assert.equal((await this.finish(repo, c)).status, 204);
  }

  /** A registry GET with a v1 token. */
  regGet(path: string, token: string | undefined): Promise<Response> {
    return request(this.reg, path, { headers: token ? { Authorization: `Token ${token}` } : {} });
  }

  /** Set a repository private or public (index properties, Basic). */
  async setAccess(repo: string, c: Creds, access: 'private' | 'public'): Promise<void> {
    const r = await request(this.idx, `/v1/repositories/${repo}/properties`, { method: 'PUT', headers: auth(c), body: JSON.stringify({ access }) });
    assert.equal(r.status, 200, r.text);
  }

  /** The service the registry's /v2/ challenge names (what a client sends back to the realm). */
  async v2Service(): Promise<string> {
    if (this.service) return this.service;
    const r = await request(this.reg, '/v2/');
    const m = /service="([^"]*)"/.exec(String(r.headers['www-authenticate'] ?? ''));
    assert.ok(m, `no Bearer challenge on /v2/: ${r.status} ${String(r.headers['www-authenticate'])}`);
    this.service = m[1]!;
    return this.service;
  }

  /** A v2 Bearer token for these scopes (what the index grants of them). */
  async bearer(c: Creds, ...scopes: string[]): Promise<string> {
    const q = new URLSearchParams({ service: await this.v2Service() });
    for (const s of scopes) q.append('scope', s);
    const r = await request(this.idx, `/v2/token?${q}`, { headers: auth(c) });
    assert.equal(r.status, 200, r.text);
    return r.json<{ token: string }>().token;
  }

  v2(path: string, token: string | undefined, opts: { method?: string; headers?: Record<string, string>; body?: Buffer | string } = {}): Promise<Response> {
    return request(this.reg, path, {
      method: opts.method ?? 'GET',
      headers: { ...(token ? { Authorization: `Bearer ${token}` } : {}), ...(opts.headers ?? {}) },
      ...(opts.body !== undefined ? { body: opts.body } : {}),
    });
  }
}

export interface V2Image {
  readonly config: Buffer;
  readonly layers: readonly Buffer[];
  readonly tars: readonly Buffer[];
  readonly manifest: Buffer;
  readonly digest: string;
}

/** A schema2 image of `n` layers with a full history (so the bridge gives it a v1 view). */
export function v2Image(label: string, n = 2): V2Image {
  const tars = Array.from({ length: n }, (_, i) => tarOf({ [`layer${i}.txt`]: `${label} ${i} ${Math.random()}\n` }));
  const layers = tars.map((t) => gzipSync(t));
  const config = Buffer.from(
    JSON.stringify({
      architecture: 'amd64',
      os: 'linux',
      config: { Env: [`SECRET=${label}`] },
      rootfs: { type: 'layers', diff_ids: tars.map((t) => sha(t)) },
      history: tars.map((_, i) => ({ created: '2020-01-01T00:00:00Z', created_by: `step ${i}` })),
    }),
  );
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: S2,
      config: { mediaType: 'application/vnd.docker.container.image.v1+json', size: config.length, digest: sha(config) },
      layers: layers.map((l) => ({ mediaType: 'application/vnd.docker.image.rootfs.diff.tar.gzip', size: l.length, digest: sha(l) })),
    }),
  );
  return { config, layers, tars, manifest, digest: sha(manifest) };
}

/** Push a v2 image (blobs in single POSTs, then the manifest by tag) with a Bearer token. */
export async function pushV2Image(site: Site, name: string, tag: string, token: string, img: V2Image): Promise<void> {
  for (const b of [img.config, ...img.layers]) {
    const r = await site.v2(`/v2/${name}/blobs/uploads/?digest=${sha(b)}`, token, {
      method: 'POST',
      body: b,
      headers: { 'Content-Type': 'application/octet-stream' },
    });
    assert.equal(r.status, 201, `blob: ${r.text}`);
  }
  const put = await site.v2(`/v2/${name}/manifests/${tag}`, token, { method: 'PUT', body: img.manifest, headers: { 'Content-Type': S2 } });
  assert.equal(put.status, 201, `manifest: ${put.text}`);
}

/** The v1 ids the bridge derives for a v2 image's layers (v2-bridge §3.6): root first, all but the top. */
export function derivedBaseId(layer: Buffer): string {
  const hex = sha(layer).slice(7);
  return createHash('sha256').update(`${hex} `).digest('hex');
}
