import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import type { Readable } from 'node:stream';
import { request } from '../helpers/http.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { makeImage, pushImage, putTag, type TestImage } from '../helpers/v1-client.js';

/* The npm docker-registry-client (joyent/MNX 3.4.0): a real v1 client, read-only (clients.md §1). */
const require = createRequire(import.meta.url);
type Cb<T> = (err: Error | null, res: T, ...rest: unknown[]) => void;
interface V1Client {
  ping(cb: Cb<unknown>): void;
  search(opts: { term: string }, cb: Cb<{ num_results: number; results: { name: string }[] }>): void;
  listRepoImgs(cb: Cb<{ id: string }[]>): void;
  listRepoTags(cb: Cb<Record<string, string>>): void;
  getImgId(opts: { tag: string }, cb: Cb<string>): void;
  getImgAncestry(opts: { imgId: string }, cb: Cb<string[]>): void;
  getImgJson(opts: { imgId: string }, cb: Cb<Record<string, unknown>>): void;
  getImgLayerStream(opts: { imgId: string }, cb: Cb<Readable>): void;
  close(): void;
}
interface V2Client {
  getManifest(opts: { ref: string }, cb: Cb<{ schemaVersion: number; fsLayers?: { blobSum: string }[]; layers?: { digest: string }[] }>): void;
  listTags(cb: Cb<{ name: string; tags: string[] }>): void;
  headBlob(opts: { digest: string }, cb: Cb<unknown>): void;
  createBlobReadStream(opts: { digest: string }, cb: Cb<Readable>): void;
  blobUpload(opts: { digest: string; stream: Readable; contentLength: number }, cb: Cb<unknown>): void;
  putManifest(opts: { ref: string; manifest: string }, cb: Cb<unknown>): void;
  close(): void;
}
interface Drc {
  createClientV2(opts: { name: string; maxSchemaVersion?: number; log?: unknown }): V2Client;
  pingIndexV1(opts: { indexName: string }, cb: Cb<unknown>): void;
  loginV1(opts: { index: string; username: string; password: string; email: string }, cb: Cb<unknown>): void;
  createClientV1(opts: { name: string; username?: string; password?: string; log?: unknown }): V1Client;
}
const drc = require('docker-registry-client') as Drc;
const bunyan = require('bunyan') as { createLogger(o: { name: string; level: string }): unknown };
const log = bunyan.createLogger({ name: 'drc-test', level: 'fatal' });

function call<T>(fn: (cb: Cb<T>) => void): Promise<T> {
  return new Promise((resolve, reject) => fn((err, res) => (err ? reject(err) : resolve(res))));
}
async function readAll(s: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of s) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}
const basic = (u: string, p: string): string => `Basic ${Buffer.from(`${u}:${p}`).toString('base64')}`;

describe('npm docker-registry-client (v1) through index → token → registry', () => {
  let s: TestServer;
  let host: string;
  let images: TestImage[];

  before(async () => {
    s = await startTestServer({ bcrypt_cost: 4 });
    host = new URL(s.url).host;
    // an account and a pushed repository, with the 1.x push sequence
    const signup = await request(s.url, '/v1/users/', {
      method: 'POST',
      body: JSON.stringify({ username: 'erin', password: 'erinpw', email: 'erin@example.com' }),
    });
    assert.equal(signup.status, 201);
    const root = makeImage();
    const top = makeImage(root.id);
    images = [root, top];
    for (const [repo, priv] of [
      ['erin/app', false],
      ['erin/hidden', true],
    ] as const) {
      const claim = await request(s.url, `/v1/repositories/${repo}/`, {
        method: 'PUT',
        headers: { Authorization: basic('erin', 'erinpw'), 'X-Docker-Token': 'true' },
        body: JSON.stringify([{ id: root.id }, { id: top.id, Tag: 'latest' }]),
      });
      assert.equal(claim.status, 200);
      const token = String(claim.headers['x-docker-token']);
      for (const img of images) await pushImage(s.url, img, token);
      assert.equal((await putTag(s.url, repo, 'latest', top.id, token)).status, 200);
      assert.equal(
        (await request(s.url, `/v1/repositories/${repo}/images`, { method: 'PUT', headers: { Authorization: basic('erin', 'erinpw') }, body: '[]' })).status,
        204,
      );
      if (priv) {
        const p = await request(s.url, `/v1/repositories/${repo}/properties`, {
          method: 'PUT',
          headers: { Authorization: basic('erin', 'erinpw') },
          body: '{"access": "private"}',
        });
        assert.equal(p.status, 200);
      }
    }
  });
  after(() => s.stop());

  it('pings the index and logs in (signup says exists, then Basic login)', async () => {
    await call((cb) => drc.pingIndexV1({ indexName: `http://${host}` }, cb));
    const res = await call((cb) => drc.loginV1({ index: `http://${host}`, username: 'erin', password: 'erinpw', email: 'erin@example.com' }, cb));
    assert.ok(res);
    await assert.rejects(call((cb) => drc.loginV1({ index: `http://${host}`, username: 'erin', password: 'wrongpw', email: 'erin@example.com' }, cb)));
  });

  it('searches, lists images and tags, reads ancestry, json and layers; bytes match the push', async () => {
    const c = drc.createClientV1({ name: `${host}/erin/app`, username: 'erin', password: 'erinpw', log });
    try {
      const found = await call<{ num_results: number; results: { name: string }[] }>((cb) => c.search({ term: 'app' }, cb));
      assert.deepEqual(
        found.results.map((r) => r.name),
        ['erin/app'],
      );
      const imgs = await call<{ id: string }[]>((cb) => c.listRepoImgs(cb));
      assert.deepEqual(
        imgs.map((i) => i.id),
        images.map((i) => i.id),
      );
      const tags = await call<Record<string, string>>((cb) => c.listRepoTags(cb));
      assert.deepEqual(tags, { latest: images[1]!.id });
      const id = await call<string>((cb) => c.getImgId({ tag: 'latest' }, cb));
      assert.equal(id, images[1]!.id);
      const anc = await call<string[]>((cb) => c.getImgAncestry({ imgId: id }, cb));
      assert.deepEqual(anc, [images[1]!.id, images[0]!.id]);
      for (const img of images) {
        const json = await call<Record<string, unknown>>((cb) => c.getImgJson({ imgId: img.id }, cb));
        assert.deepEqual(json, JSON.parse(img.json.toString()));
        const stream = await call<Readable>((cb) => c.getImgLayerStream({ imgId: img.id }, cb));
        assert.deepEqual(await readAll(stream), img.layer);
      }
    } finally {
      c.close();
    }
  });

  it('reads a public repository anonymously, and cannot see a private one', async () => {
    const anon = drc.createClientV1({ name: `${host}/erin/app`, log });
    try {
      assert.deepEqual(await call<Record<string, string>>((cb) => anon.listRepoTags(cb)), { latest: images[1]!.id });
    } finally {
      anon.close();
    }
    const hidden = drc.createClientV1({ name: `${host}/erin/hidden`, log });
    try {
      await assert.rejects(call((cb) => hidden.listRepoTags(cb)));
      const found = await call<{ results: { name: string }[] }>((cb) => hidden.search({ term: 'hidden' }, cb));
      assert.deepEqual(found.results, []);
    } finally {
      hidden.close();
    }
    const owner = drc.createClientV1({ name: `${host}/erin/hidden`, username: 'erin', password: 'erinpw', log });
    try {
      assert.deepEqual(await call<Record<string, string>>((cb) => owner.listRepoTags(cb)), { latest: images[1]!.id });
    } finally {
      owner.close();
    }
  });
});

describe('npm docker-registry-client (v2) against the v2 API (standalone, switch on)', () => {
  let s: TestServer;
  let host: string;
  before(async () => {
    s = await startTestServer({ standalone: true, v2: true });
    host = new URL(s.url).host;
  });
  after(() => s.stop());

  it('uploads blobs (POST, then PUT to the Location), puts a schema2 manifest, reads it as schema2 and as signed schema1', async () => {
    const { createHash } = await import('node:crypto');
    const { Readable: R } = await import('node:stream');
    const { gzipSync } = await import('node:zlib');
    const { tarOf } = await import('../helpers/v1-client.js');
    const sha = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;
    const tar = tarOf({ 'f.txt': 'drc\n' });
    const layer = gzipSync(tar);
    const config = Buffer.from(
      JSON.stringify({
        architecture: 'amd64',
        os: 'linux',
        rootfs: { type: 'layers', diff_ids: [sha(tar)] },
        history: [{ created: '2021-01-01T00:00:00Z', created_by: 'ADD f.txt' }],
      }),
    );
    const c2 = drc.createClientV2({ name: `${host}/ns/drc`, maxSchemaVersion: 2, log });
    try {
      for (const b of [config, layer]) await call((cb) => c2.blobUpload({ digest: sha(b), stream: R.from([b]), contentLength: b.length }, cb));
      const manifest = JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.docker.distribution.manifest.v2+json',
        config: { mediaType: 'application/vnd.docker.container.image.v1+json', size: config.length, digest: sha(config) },
        layers: [{ mediaType: 'application/vnd.docker.image.rootfs.diff.tar.gzip', size: layer.length, digest: sha(layer) }],
      });
      await call((cb) => c2.putManifest({ ref: 'v1', manifest }, cb));
      const m2 = await call<{ schemaVersion: number; layers?: { digest: string }[] }>((cb) => c2.getManifest({ ref: 'v1' }, cb));
      assert.equal(m2.schemaVersion, 2);
      assert.deepEqual(
        m2.layers!.map((l) => l.digest),
        [sha(layer)],
      );
      const tags = await call<{ tags: string[] }>((cb) => c2.listTags(cb));
      assert.deepEqual(tags.tags, ['v1']);
      await call((cb) => c2.headBlob({ digest: sha(layer) }, cb));
      const stream = await call<Readable>((cb) => c2.createBlobReadStream({ digest: sha(layer) }, cb));
      assert.deepEqual(await readAll(stream), layer);
    } finally {
      c2.close();
    }
    const c1 = drc.createClientV2({ name: `${host}/ns/drc`, log });
    try {
      const m1 = await call<{ schemaVersion: number; fsLayers?: { blobSum: string }[] }>((cb) => c1.getManifest({ ref: 'v1' }, cb));
      assert.equal(m1.schemaVersion, 1);
      assert.deepEqual(m1.fsLayers, [{ blobSum: sha(layer) }]);
    } finally {
      c1.close();
    }
  });
});
