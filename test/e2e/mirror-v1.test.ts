import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { promisify } from 'node:util';
import { request } from '../helpers/http.js';
import { freePort } from '../helpers/ports.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { cleanup, startCountingProxy, stopChild, type CountingProxy } from '../helpers/counting-proxy.js';
import { makeImage, pushImage, putTag, DOCKER_UA, type TestImage } from '../helpers/v1-client.js';
import { writeOciLayout } from '../helpers/oci-layout.js';

const run = promisify(execFile);
/* The npm docker-registry-client (v1): a real v1 client, read-only (clients.md §1). */
const require = createRequire(import.meta.url);
type Cb<T> = (err: Error | null, res: T, ...rest: unknown[]) => void;
interface V1Client {
  listRepoImgs(cb: Cb<{ id: string }[]>): void;
  listRepoTags(cb: Cb<Record<string, string>>): void;
  getImgId(opts: { tag: string }, cb: Cb<string>): void;
  getImgAncestry(opts: { imgId: string }, cb: Cb<string[]>): void;
  getImgJson(opts: { imgId: string }, cb: Cb<Record<string, unknown>>): void;
  getImgLayerStream(opts: { imgId: string }, cb: Cb<Readable>): void;
  close(): void;
}
const drc = require('docker-registry-client') as { createClientV1(opts: { name: string; log?: unknown }): V1Client };
const bunyan = require('bunyan') as { createLogger(o: { name: string; level: string }): unknown };
const log = bunyan.createLogger({ name: 'drc-mirror', level: 'fatal' });
const call = <T>(fn: (cb: Cb<T>) => void): Promise<T> => new Promise((resolve, reject) => fn((err, res) => (err ? reject(err) : resolve(res))));
async function readAll(s: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of s) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

/**
 * v1 mirroring (issue 13, spec v1-protocol §9): a second legacy-registry in v1-only mode is the
 * Python-style `mirroring.source`; the requests are the ones a Docker 1.x daemon started with
 * --registry-mirror sends (ancestry, json, layer of an official image), then the npm client.
 */
describe('v1 mirroring: mirroring.source = a v1-only legacy-registry', { timeout: 180_000 }, () => {
  let upstream: TestServer;
  let proxy: CountingProxy;
  let mirror: TestServer;
  let root: TestImage;
  let top: TestImage;

  before(async () => {
    upstream = await startTestServer({ standalone: true, v2: false });
    proxy = await startCountingProxy(upstream.url);
    root = makeImage();
    top = makeImage(root.id);
    for (const img of [root, top]) for (const r of await pushImage(upstream.url, img)) assert.ok(r.status === 200 || r.status === 404, `${r.status} ${r.text}`);
    assert.equal(
      (
        await request(upstream.url, '/v1/repositories/library/busybox/', {
          method: 'PUT',
          body: JSON.stringify([{ id: root.id }, { id: top.id, Tag: 'latest' }]),
        })
      ).status,
      200,
    );
    assert.equal((await putTag(upstream.url, 'library/busybox', 'latest', top.id)).status, 200);
    mirror = await startTestServer({ standalone: true, v2: false, mirroring: { source: proxy.url, source_index: proxy.url, tags_cache_ttl: 2 } });
  });
  after(() =>
    cleanup(
      () => mirror?.stop(),
      () => proxy?.close(),
      () => upstream?.stop(),
    ),
  );

  it('ping says mirror; a 1.x daemon’s ancestry, json and layer requests are answered from upstream and the layers stored', async () => {
    assert.equal((await request(mirror.url, '/v1/_ping')).headers['x-docker-registry-standalone'], 'mirror');
    const h = { 'User-Agent': DOCKER_UA };
    const anc = await request(mirror.url, `/v1/images/${top.id}/ancestry`, { headers: h });
    assert.equal(anc.status, 200, anc.text);
    assert.deepEqual(anc.json(), [top.id, root.id]);
    for (const img of [root, top]) {
      const j = await request(mirror.url, `/v1/images/${img.id}/json`, { headers: h });
      assert.equal(j.status, 200);
      assert.deepEqual(j.json(), JSON.parse(img.json.toString()));
      assert.equal(j.headers['x-docker-checksum-payload'], img.payload);
      const l = await request(mirror.url, `/v1/images/${img.id}/layer`, { headers: h });
      assert.equal(l.status, 200);
      assert.ok(l.body.equals(img.layer));
    }
    // stored: with the upstream gone, the same images are served from the mirror's own records
    await proxy.down();
    try {
      for (const img of [root, top]) {
        const l = await request(mirror.url, `/v1/images/${img.id}/layer`, { headers: h });
        assert.equal(l.status, 200);
        assert.ok(l.body.equals(img.layer));
        const j = await request(mirror.url, `/v1/images/${img.id}/json`, { headers: h });
        assert.equal(j.headers['x-docker-checksum-payload'], img.payload, 'the record is complete (payload known)');
      }
      assert.equal(
        (await request(mirror.url, `/v1/images/${'e'.repeat(64)}/json`, { headers: h })).status,
        404,
        'a miss with the upstream down is the local 404',
      );
    } finally {
      await proxy.up();
    }
  });

  it('npm docker-registry-client pulls over v1 through the mirror (index image list and tags from upstream)', async () => {
    const c = drc.createClientV1({ name: `${new URL(mirror.url).host}/library/busybox`, log });
    try {
      const imgs = await call<{ id: string }[]>((cb) => c.listRepoImgs(cb));
      assert.deepEqual(imgs.map((i) => i.id).sort(), [root.id, top.id].sort());
      assert.equal(await call<string>((cb) => c.getImgId({ tag: 'latest' }, cb)), top.id);
      const stream = await call<Readable>((cb) => c.getImgLayerStream({ imgId: top.id }, cb));
      assert.ok((await readAll(stream)).equals(top.layer));
    } finally {
      c.close();
    }
  });

  it('tags come from upstream and are kept for tags_cache_ttl: a tag moved upstream shows after the ttl', async () => {
    const before = (await request(mirror.url, '/v1/repositories/library/busybox/tags')).json<Record<string, string>>();
    assert.equal(before.latest, top.id);
    assert.equal((await putTag(upstream.url, 'library/busybox', 'latest', root.id)).status, 200);
    assert.equal((await request(mirror.url, '/v1/repositories/library/busybox/tags')).json<Record<string, string>>().latest, top.id, 'cached');
    await new Promise((r) => setTimeout(r, 2200));
    assert.equal((await request(mirror.url, '/v1/repositories/library/busybox/tags')).json<Record<string, string>>().latest, root.id, 'after the ttl');
  });
});

function distributionMissing(): string | undefined {
  if (existsSync('/usr/bin/docker-registry') && existsSync('/usr/bin/skopeo')) return undefined;
  if (process.env.E2E_REQUIRED) throw new Error('E2E_REQUIRED: docker-registry or skopeo is not installed');
  return 'docker-registry or skopeo is not installed';
}

/**
 * The bridge on top: an image that exists only on a v2 upstream (distribution 2.8.2), pulled over v1
 * through the mirror by the npm v1 client — the v1 view of the cached v2 image.
 */
describe('v1 client, v2-only upstream: the v1 view of a pulled-through image', { skip: distributionMissing(), timeout: 180_000 }, () => {
  let work: string;
  let proc: ChildProcess;
  let mirror: TestServer;
  let distHost: string;

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'lr-mirror-v1v2-'));
    const port = await freePort();
    distHost = `127.0.0.1:${port}`;
    const cfg = join(work, 'config.yml');
    await writeFile(
      cfg,
      [
        'version: 0.1',
        'log:',
        '  level: warn',
        'storage:',
        '  filesystem:',
        `    rootdirectory: ${join(work, 'dist')}`,
        'http:',
        `  addr: ${distHost}`,
        '',
      ].join('\n'),
    );
    proc = spawn('/usr/bin/docker-registry', ['serve', cfg], { stdio: 'ignore' });
    for (let i = 0; ; i++) {
      try {
        if ((await request(`http://${distHost}`, '/v2/')).status === 200) break;
      } catch {
        // starting
      }
      if (i > 150) throw new Error('docker-registry did not start');
      await new Promise((r) => setTimeout(r, 100));
    }
    mirror = await startTestServer({ standalone: true, v2: true, mirror: { upstreams: [{ url: `http://${distHost}` }] } });
  });
  after(() =>
    cleanup(
      () => mirror?.stop(),
      () => stopChild(proc),
      () => rm(work, { recursive: true, force: true }),
    ),
  );

  it('npm docker-registry-client lists, resolves and downloads over v1 what only the v2 upstream has', async () => {
    const img = await writeOciLayout(join(work, 'img'), 'v1');
    await run(
      'skopeo',
      ['--insecure-policy', 'copy', '--dest-tls-verify=false', '--format', 'v2s2', `oci:${img.dir}:v1`, `docker://${distHost}/library/onlyv2:latest`],
      { timeout: 120_000, env: { PATH: process.env.PATH ?? '', HOME: work } },
    );
    const c = drc.createClientV1({ name: `${new URL(mirror.url).host}/library/onlyv2`, log });
    try {
      const imgs = await call<{ id: string }[]>((cb) => c.listRepoImgs(cb));
      assert.equal(imgs.length, 1);
      const id = await call<string>((cb) => c.getImgId({ tag: 'latest' }, cb));
      assert.equal(id, imgs[0]!.id);
      assert.deepEqual(await call<string[]>((cb) => c.getImgAncestry({ imgId: id }, cb)), [id]);
      const json = await call<Record<string, unknown>>((cb) => c.getImgJson({ imgId: id }, cb));
      assert.equal(json.id, id);
      const layer = await readAll(await call<Readable>((cb) => c.getImgLayerStream({ imgId: id }, cb)));
      assert.ok(layer.equals(img.layer), 'the v1 layer is the v2 blob, byte for byte');
    } finally {
      c.close();
    }
  });
});
