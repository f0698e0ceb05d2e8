import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync, randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { existsSync, readdirSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { request } from '../helpers/http.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { cleanup, startCountingProxy, type CountingProxy } from '../helpers/counting-proxy.js';
import { pushLayerImage, pushV2, schema2Manifest } from '../helpers/v2-client.js';
import { makeImage, pushImage, putTag } from '../helpers/v1-client.js';
import { Site } from '../helpers/accounts.js';
import { saveUser } from '../../src/db/users.js';
import { schema1Payload, signSchema1 } from '../../src/content/schema1.js';

const sha = (b: Buffer | string): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const S2 = 'application/vnd.docker.distribution.manifest.v2+json';
const ACCEPT = { Accept: `${S2}, application/vnd.oci.image.manifest.v1+json` };

/**
 * The v2 pull-through mirror over HTTP (issue 13): upstream = a second legacy-registry behind a
 * counting proxy (the e2e tests use distribution 2.8.2 and real clients).
 */
describe('mirror: v2 pull-through', { timeout: 240_000 }, () => {
  let upstream: TestServer;
  let proxy: CountingProxy;
  let mirror: TestServer;

  before(async () => {
    upstream = await startTestServer({ standalone: true, v2: true });
    proxy = await startCountingProxy(upstream.url);
    mirror = await startTestServer(mirrorConfig());
  });
  const mirrorConfig = (): Record<string, unknown> => ({
    standalone: true,
    v2: true,
    mirror: {
      upstreams: [{ prefix: 'hub/', url: proxy.url, ns: 'upstream.example' }],
      ttl: 3600,
      negative_ttl: 2,
      timeout: 5,
      breaker_failures: 3,
      breaker_seconds: 2,
    },
  });
  let restartedDir: string | undefined;
  after(() =>
    cleanup(
      () => mirror?.stop(),
      () => restartedDir && rm(restartedDir, { recursive: true, force: true }),
      () => proxy?.close(),
      () => upstream?.stop(),
    ),
  );

  it('pulls a manifest by tag and its blobs through the cache; the second pull asks upstream only for the tag', async () => {
    const img = await pushV2(upstream.url, 'lib/alpine', '3.1');
    const m = await request(mirror.url, '/v2/hub/lib/alpine/manifests/3.1', { headers: ACCEPT });
    assert.equal(m.status, 200, m.text);
    assert.ok(m.body.equals(img.manifest));
    assert.equal(m.headers['docker-content-digest'], img.digest);
    const doc = JSON.parse(m.text) as { config: { digest: string }; layers: { digest: string }[] };
    for (const d of [doc.config.digest, ...doc.layers.map((l) => l.digest)]) {
      const b = await request(mirror.url, `/v2/hub/lib/alpine/blobs/${d}`);
      assert.equal(b.status, 200, b.text);
      assert.equal(sha(b.body), d);
    }
    const blobGets = proxy.count(/^GET \/v2\/lib\/alpine\/blobs\//);
    assert.equal(blobGets, 2);
    // warm: the tag is revalidated upstream, the blobs come from the cache
    const m2 = await request(mirror.url, '/v2/hub/lib/alpine/manifests/3.1', { headers: ACCEPT });
    assert.equal(m2.status, 200);
    assert.equal(m2.headers.warning, undefined);
    for (const d of [doc.config.digest, ...doc.layers.map((l) => l.digest)])
      assert.equal((await request(mirror.url, `/v2/hub/lib/alpine/blobs/${d}`)).status, 200);
    assert.equal(proxy.count(/^GET \/v2\/lib\/alpine\/blobs\//), blobGets, 'no blob fetched twice');
    // by digest: from the cache, no upstream request
    const before = proxy.seen.length;
    assert.equal((await request(mirror.url, `/v2/hub/lib/alpine/manifests/${img.digest}`, { headers: ACCEPT })).status, 200);
    assert.equal(proxy.seen.length, before);
    // the catalog of a mirror lists what is cached; the upstream's tags are listed
    const cat = (await request(mirror.url, '/v2/_catalog')).json<{ repositories: string[] }>();
    assert.ok(cat.repositories.includes('hub/lib/alpine'), JSON.stringify(cat));
    assert.deepEqual((await request(mirror.url, '/v2/hub/lib/alpine/tags/list')).json(), { name: 'hub/lib/alpine', tags: ['3.1'] });
  });

  it('eight concurrent cold pulls of one blob fetch it from upstream once, every client gets every byte', async () => {
    const layer = randomBytes(24 * 1024 * 1024);
    await pushLayerImage(upstream.url, 'lib/big', 'v1', layer);
    const d = sha(layer);
    const answers = await Promise.all(Array.from({ length: 8 }, () => request(mirror.url, `/v2/hub/lib/big/blobs/${d}`)));
    for (const a of answers) {
      assert.equal(a.status, 200);
      assert.equal(a.body.length, layer.length);
      assert.equal(sha(a.body), d);
    }
    assert.equal(proxy.count(new RegExp(`^GET /v2/lib/big/blobs/${d}`)), 1);
  });

  it('pushes into a mirrored name answer 405 UNSUPPORTED; other names are local repositories (mixed mode)', async () => {
    const post = await request(mirror.url, '/v2/hub/lib/alpine/blobs/uploads/', { method: 'POST' });
    assert.equal(post.status, 405);
    assert.equal(post.json<{ errors: { code: string }[] }>().errors[0]!.code, 'UNSUPPORTED');
    const put = await request(mirror.url, '/v2/hub/lib/alpine/manifests/x', { method: 'PUT', body: '{}', headers: { 'Content-Type': S2 } });
    assert.equal(put.status, 405);
    const del = await request(mirror.url, '/v2/hub/lib/alpine/manifests/3.1', { method: 'DELETE' });
    assert.equal(del.status, 405);
    const local = await pushV2(mirror.url, 'mine/app', 'v1');
    assert.equal((await request(mirror.url, '/v2/mine/app/manifests/v1', { headers: ACCEPT })).headers['docker-content-digest'], local.digest);
    assert.equal(proxy.count(/mine\/app/), 0, 'a local name never goes upstream');
  });

  it("containerd's ?ns= names the upstream: the name is read under its prefix", async () => {
    const r = await request(mirror.url, '/v2/lib/alpine/manifests/3.1?ns=upstream.example', { headers: ACCEPT });
    assert.equal(r.status, 200, r.text);
  });

  it('an upstream 404 is remembered for negative_ttl, then asked again', async () => {
    const miss = await request(mirror.url, '/v2/hub/lib/late/manifests/v1', { headers: ACCEPT });
    assert.equal(miss.status, 404);
    const asked = proxy.count(/^GET \/v2\/lib\/late\/manifests\/v1/);
    await pushV2(upstream.url, 'lib/late', 'v1');
    assert.equal((await request(mirror.url, '/v2/hub/lib/late/manifests/v1', { headers: ACCEPT })).status, 404, 'still the remembered 404');
    assert.equal(proxy.count(/^GET \/v2\/lib\/late\/manifests\/v1/), asked, 'not asked again within negative_ttl');
    await new Promise((r) => setTimeout(r, 2200));
    assert.equal((await request(mirror.url, '/v2/hub/lib/late/manifests/v1', { headers: ACCEPT })).status, 200);
  });

  it('upstream down: cached tags and blobs are served (Warning), an uncached tag is a clear 503, the breaker stops asking', async () => {
    await proxy.down();
    try {
      const m = await request(mirror.url, '/v2/hub/lib/alpine/manifests/3.1', { headers: ACCEPT });
      assert.equal(m.status, 200, m.text);
      assert.match(String(m.headers.warning), /^110 /);
      const doc = JSON.parse(m.text) as { layers: { digest: string }[] };
      assert.equal((await request(mirror.url, `/v2/hub/lib/alpine/blobs/${doc.layers[0]!.digest}`)).status, 200);
      const miss = await request(mirror.url, '/v2/hub/lib/alpine/manifests/not-cached', { headers: ACCEPT });
      assert.equal(miss.status, 503);
      assert.match(miss.text, /upstream is unavailable.*not cached/);
      // three failures opened the breaker: the next answer does not wait for a connection attempt
      const tl = await request(mirror.url, '/v2/hub/lib/alpine/tags/list');
      assert.equal(tl.status, 200);
      assert.match(String(tl.headers.warning), /Stale/);
      assert.ok(mirror.mirror!.upstreams[0]!.open, 'breaker open');
    } finally {
      await proxy.up();
    }
    await new Promise((r) => setTimeout(r, 2200));
    const back = await request(mirror.url, '/v2/hub/lib/alpine/manifests/3.1', { headers: ACCEPT });
    assert.equal(back.status, 200);
    assert.equal(back.headers.warning, undefined, 'fresh again once the breaker let a trial through');
  });

  it('a tag moved upstream is seen on the next pull (revalidated by tag)', async () => {
    const moved = await pushV2(upstream.url, 'lib/alpine', '3.1', {}, 'moved content');
    const m = await request(mirror.url, '/v2/hub/lib/alpine/manifests/3.1', { headers: ACCEPT });
    assert.equal(m.headers['docker-content-digest'], moved.digest);
  });

  it('a signed schema1 image upstream (nothing newer) is cached as sent, as distribution caches it; by digest it is served without asking upstream', async () => {
    const S1 = 'application/vnd.docker.distribution.manifest.v1+prettyjws';
    const layer = randomBytes(4096);
    const r = await request(upstream.url, `/v2/lib/old/blobs/uploads/?digest=${sha(layer)}`, { method: 'POST', body: layer });
    assert.equal(r.status, 201, r.text);
    const id = 'c'.repeat(64);
    const payload = schema1Payload('lib/old', '1.6', 'amd64', [
      { blobSum: sha(layer), v1Compatibility: JSON.stringify({ id, created: '2015-06-01T00:00:00Z', architecture: 'amd64', os: 'linux' }) },
    ]);
    const signed = signSchema1(payload, generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey);
    const put = await request(upstream.url, '/v2/lib/old/manifests/1.6', { method: 'PUT', body: signed, headers: { 'Content-Type': S1 } });
    assert.equal(put.status, 201, put.text);
    const digest = String(put.headers['docker-content-digest']);
    const m = await request(mirror.url, '/v2/hub/lib/old/manifests/1.6', { headers: { Accept: `${S2}, ${S1}` } });
    assert.equal(m.status, 200, m.text);
    assert.equal(String(m.headers['content-type']).split(';')[0], S1);
    assert.equal(m.headers['docker-content-digest'], digest);
    assert.ok(m.body.equals(Buffer.from(signed)), 'served as the upstream sent it');
    const asked = proxy.count(/^GET \/v2\/lib\/old\/manifests\//);
    const byDigest = await request(mirror.url, `/v2/hub/lib/old/manifests/${digest}`, { headers: { Accept: S1 } });
    assert.equal(byDigest.status, 200, byDigest.text);
    assert.ok(byDigest.body.equals(Buffer.from(signed)));
    assert.equal(proxy.count(/^GET \/v2\/lib\/old\/manifests\//), asked, 'by digest from the cache');
    const b = await request(mirror.url, `/v2/hub/lib/old/blobs/${sha(layer)}`);
    assert.equal(b.status, 200);
    assert.ok(b.body.equals(layer));
    assert.ok(
      (await mirror.mirror!.schedule.entries('manifest')).some((e) => e.name === 'hub/lib/old' && e.digest === digest),
      'it expires like any cached manifest',
    );
    // the blob is published (and scheduled) just after its client's stream ended: wait for it
    for (let i = 0; i < 100 && !(await mirror.mirror!.schedule.entries('blob')).some((e) => e.name === 'hub/lib/old'); i++)
      await new Promise((r) => setTimeout(r, 50));
  });

  it('expiry: the schedule is in storage (kept across a restart); a sweep past the ttl removes the cached manifests and blobs', async () => {
    const before = await mirror.mirror!.schedule.entries('blob');
    // a restart on the same storage: the schedule is still there
    restartedDir = mirror.dataDir;
    await mirror.close();
    mirror = await startTestServer(mirrorConfig(), { dataDir: restartedDir });
    const entries = await mirror.mirror!.schedule.entries('blob');
    assert.deepEqual(entries.map((e) => `${e.name} ${e.digest} ${e.expires}`).sort(), before.map((e) => `${e.name} ${e.digest} ${e.expires}`).sort());
    assert.ok(entries.some((e) => e.name === 'hub/lib/alpine'));
    const m = (await request(mirror.url, '/v2/hub/lib/alpine/manifests/3.1', { headers: ACCEPT })).json<{ layers: { digest: string }[] }>();
    const layer = m.layers[0]!.digest;
    const removed = await mirror.mirror!.sweep(Date.now() + 3601_000);
    assert.ok(removed.manifests >= 2 && removed.blobs >= 3, JSON.stringify(removed));
    assert.equal((await mirror.mirror!.schedule.entries('blob')).length, 0);
    // gone from storage: the next pull fetches again
    const n = proxy.count(new RegExp(`^GET /v2/lib/alpine/blobs/${layer}`));
    assert.equal((await request(mirror.url, `/v2/hub/lib/alpine/blobs/${layer}`)).status, 200);
    assert.equal(proxy.count(new RegExp(`^GET /v2/lib/alpine/blobs/${layer}`)), n + 1);
    // the local repository's content stayed
    assert.equal((await request(mirror.url, '/v2/mine/app/manifests/v1', { headers: ACCEPT })).status, 200);
  });
});

describe('mirror: expiry and local v1 records', { timeout: 120_000 }, () => {
  it('an expired cached blob whose bytes a local v1 image also names is kept: the v1 image still pulls', async () => {
    const upstream = await startTestServer({ standalone: true, v2: true });
    const mirror = await startTestServer({ standalone: true, v2: true, mirror: { upstreams: [{ prefix: 'hub/', url: upstream.url }], ttl: 3600 } });
    try {
      // the same layer bytes pushed over v1 into the mirror (a local name) and over v2 upstream
      const img = makeImage();
      for (const r of (await pushImage(mirror.url, img)).slice(1)) assert.ok(r.status < 300, `${r.status} ${r.text}`);
      assert.equal((await putTag(mirror.url, 'mine/v1app', 'latest', img.id)).status, 200);
      await pushLayerImage(upstream.url, 'lib/shared', 'v1', img.layer);
      const d = sha(img.layer);
      const b = await request(mirror.url, `/v2/hub/lib/shared/blobs/${d}`);
      assert.equal(b.status, 200);
      for (let i = 0; i < 100 && !(await mirror.mirror!.schedule.entries('blob')).some((e) => e.digest === d); i++) await new Promise((r) => setTimeout(r, 50));
      const removed = await mirror.mirror!.sweep(Date.now() + 3601_000);
      assert.equal(removed.blobs, 1);
      const layer = await request(mirror.url, `/v1/images/${img.id}/layer`);
      assert.equal(layer.status, 200, layer.text);
      assert.ok(layer.body.equals(img.layer), 'the v1 image still has its layer');
      // the mirrored repository let go of it: the next pull asks upstream again (and gets it)
      assert.equal((await request(mirror.url, `/v2/hub/lib/shared/blobs/${d}`)).status, 200);
    } finally {
      await cleanup(
        () => mirror.stop(),
        () => upstream.stop(),
      );
    }
  });
});

describe('mirror: /v2/_catalog behind the index (one process)', { timeout: 120_000 }, () => {
  it('lists the cached repositories beside the pushed ones, to those who may read them', async () => {
    const upstream = await startTestServer({ standalone: true, v2: true });
    const mirror = await startTestServer({
      v2: true,
      bcrypt_cost: 4,
      token_cache_ttl: 0,
      mirror: { upstreams: [{ prefix: 'hub/', url: upstream.url }], ttl: 3600 },
    });
    try {
      await pushV2(upstream.url, 'lib/alpine', '3.1');
      for (const [username, admin] of [
        ['root', true],
        ['hub', false],
        ['alice', false],
      ] as const) {
        await saveUser(mirror.db!, { username, email: `${username}@example.com`, password: 'pw12345', active: true, admin }, { cost: 4 });
      }
      const site = new Site(mirror.url, mirror.url);
      const creds = (u: string): readonly [string, string] => [u, 'pw12345'];
      const pull = await site.v2('/v2/hub/lib/alpine/manifests/3.1', await site.bearer(creds('root'), 'repository:hub/lib/alpine:pull'), { headers: ACCEPT });
      assert.equal(pull.status, 200, pull.text);
      const pushed = await pushV2(mirror.url, 'alice/app', 'v1', {
        Authorization: `Bearer ${await site.bearer(creds('alice'), 'repository:alice/app:pull,push')}`,
      });
      assert.ok(pushed.digest);
      const catalog = async (u: string): Promise<string[]> => {
        const r = await site.v2('/v2/_catalog', await site.bearer(creds(u), 'registry:catalog:*'));
        assert.equal(r.status, 200, r.text);
        return r.json<{ repositories: string[] }>().repositories;
      };
      assert.ok((await catalog('root')).includes('hub/lib/alpine'), 'an admin sees the cached repository');
      assert.ok((await catalog('hub')).includes('hub/lib/alpine'), "the namespace's owner may read it");
      const alice = await catalog('alice');
      assert.ok(!alice.includes('hub/lib/alpine'), 'no record in the index: not readable by everyone, not listed');
      assert.ok(alice.includes('alice/app'), 'pushed repositories are still listed');
    } finally {
      await cleanup(
        () => mirror.stop(),
        () => upstream.stop(),
      );
    }
  });
});

/** A tiny fake upstream serving one image whose layer has a wrong byte. */
async function corruptUpstream(): Promise<{ url: string; layerDigest: string; close: () => Promise<void> }> {
  const layer = randomBytes(3 * 1024 * 1024);
  const layerDigest = sha(layer);
  const bad = Buffer.from(layer);
  bad[bad.length - 10] ^= 0xff;
  const config = Buffer.from('{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}');
  const manifest = schema2Manifest(config, [layer]);
  const server: Server = createServer((req, res) => {
    if (req.url === '/v2/bad/img/manifests/v1') {
      res.writeHead(200, { 'Content-Type': S2, 'Content-Length': manifest.length, 'Docker-Content-Digest': sha(manifest) });
      res.end(req.method === 'HEAD' ? undefined : manifest);
    } else if (req.url === `/v2/bad/img/blobs/${sha(config)}`) {
      res.writeHead(200, { 'Content-Length': config.length });
      res.end(config);
    } else if (req.url === `/v2/bad/img/blobs/${layerDigest}`) {
      res.writeHead(200, { 'Content-Length': bad.length });
      res.end(bad);
    } else {
      res.writeHead(404, { 'Content-Type': 'application/json' });
      res.end('{"errors":[{"code":"NOT_FOUND"}]}');
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, layerDigest, close: () => new Promise((r) => server.close(() => r())) };
}

describe('mirror: a corrupt upstream', { timeout: 120_000 }, () => {
  it('a blob that does not hash to its digest fails the client stream and caches nothing', async () => {
    const fake = await corruptUpstream();
    const mirror = await startTestServer({ standalone: true, v2: true, mirror: { upstreams: [{ url: fake.url }] } });
    try {
      assert.equal((await request(mirror.url, '/v2/bad/img/manifests/v1', { headers: ACCEPT })).status, 200);
      for (let i = 0; i < 2; i++) {
        const r = await request(mirror.url, `/v2/bad/img/blobs/${fake.layerDigest}`).then(
          (x) => x,
          (e: unknown) => e as Error,
        );
        // the connection is cut before the last bytes: an error, or a body short of its length
        if (!(r instanceof Error)) assert.ok(r.status !== 200 || r.body.length < 3 * 1024 * 1024, `attempt ${i}: a complete body was served`);
      }
      const hex = fake.layerDigest.slice(7);
      assert.equal(existsSync(join(mirror.dataDir, 'blobs', 'sha256', hex.slice(0, 2), hex)), false, 'nothing published');
      assert.deepEqual(existsSync(join(mirror.dataDir, 'uploads')) ? readdirSync(join(mirror.dataDir, 'uploads')) : [], [], 'no upload left');
      assert.equal((await mirror.mirror!.schedule.entries('blob')).filter((e) => e.digest === fake.layerDigest).length, 0);
    } finally {
      await cleanup(
        () => mirror.stop(),
        () => fake.close(),
      );
    }
  });
});
