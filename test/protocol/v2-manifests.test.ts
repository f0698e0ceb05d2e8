import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { request, type Response } from '../helpers/http.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { tarOf } from '../helpers/v1-client.js';

const sha = (b: Buffer | string): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const code = (r: Response): string => r.json<{ errors: { code: string }[] }>().errors[0]!.code;
const S2 = 'application/vnd.docker.distribution.manifest.v2+json';
const OCI = 'application/vnd.oci.image.manifest.v1+json';
const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';

async function pushBlob(reg: string, name: string, blob: Buffer): Promise<void> {
  const r = await request(reg, `/v2/${name}/blobs/uploads/?digest=${sha(blob)}`, { method: 'POST', body: blob });
  assert.equal(r.status, 201);
}

/** A tiny image: config + one gzip layer, and its manifest in the given media type. */
function image(mediaType: string): { config: Buffer; layer: Buffer; manifest: Buffer } {
  const tar = tarOf({ 'hello.txt': `hello ${randomBytes(4).toString('hex')}\n` });
  const layer = gzipSync(tar);
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [sha(tar)] }, config: {} }));
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType,
      config: {
        mediaType: mediaType === S2 ? 'application/vnd.docker.container.image.v1+json' : 'application/vnd.oci.image.config.v1+json',
        size: config.length,
        digest: sha(config),
      },
      layers: [
        {
          mediaType: mediaType === S2 ? 'application/vnd.docker.image.rootfs.diff.tar.gzip' : 'application/vnd.oci.image.layer.v1.tar+gzip',
          size: layer.length,
          digest: sha(layer),
        },
      ],
    }),
  );
  return { config, layer, manifest };
}

describe('v2 manifests and tags (switch on, standalone)', () => {
  let s: TestServer;
  let reg: string;
  before(async () => {
    s = await startTestServer({ standalone: true, v2: true, storage_delete: true });
    reg = s.url;
  });
  after(() => s.stop());

  it('refuses a manifest whose blobs are not in the repository (MANIFEST_BLOB_UNKNOWN per digest)', async () => {
    const img = image(S2);
    const r = await request(reg, '/v2/ns/app/manifests/v1', { method: 'PUT', body: img.manifest, headers: { 'Content-Type': S2 } });
    assert.equal(r.status, 400);
    const errs = r.json<{ errors: { code: string; detail: unknown }[] }>().errors;
    assert.equal(errs[0]!.code, 'MANIFEST_BLOB_UNKNOWN');
    assert.deepEqual(errs[0]!.detail, [{ digest: sha(img.config) }, { digest: sha(img.layer) }]);
    assert.equal((await request(reg, '/v2/ns/app/manifests/v1')).status, 404);
  });

  it('stores a schema2 manifest by tag: 201, digest of the bytes, GET/HEAD by tag and digest, 304', async () => {
    const img = image(S2);
    await pushBlob(reg, 'ns/app', img.config);
    await pushBlob(reg, 'ns/app', img.layer);
    const put = await request(reg, '/v2/ns/app/manifests/v1', { method: 'PUT', body: img.manifest, headers: { 'Content-Type': S2 } });
    assert.equal(put.status, 201, put.text);
    const digest = sha(img.manifest);
    assert.equal(put.headers['docker-content-digest'], digest);
    assert.equal(put.headers.location, `/v2/ns/app/manifests/${digest}`);
    for (const ref of ['v1', digest]) {
      const get = await request(reg, `/v2/ns/app/manifests/${ref}`, { headers: { Accept: S2 } });
      assert.equal(get.status, 200);
      assert.deepEqual(get.body, img.manifest);
      assert.equal(get.headers['content-type'], S2);
      assert.equal(get.headers['docker-content-digest'], digest);
      const head = await request(reg, `/v2/ns/app/manifests/${ref}`, { method: 'HEAD', headers: { Accept: S2 } });
      assert.equal(head.status, 200);
      assert.equal(head.headers['content-length'], String(img.manifest.length));
    }
    const cached = await request(reg, '/v2/ns/app/manifests/v1', { headers: { 'If-None-Match': `"${digest}"`, Accept: S2 } });
    assert.equal(cached.status, 304);
  });

  it('stores OCI manifests and indexes; hides OCI from clients that do not accept it', async () => {
    const img = image(OCI);
    await pushBlob(reg, 'ns/oci', img.config);
    await pushBlob(reg, 'ns/oci', img.layer);
    const put = await request(reg, `/v2/ns/oci/manifests/${sha(img.manifest)}`, { method: 'PUT', body: img.manifest, headers: { 'Content-Type': OCI } });
    assert.equal(put.status, 201, put.text);
    const index = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: OCI_INDEX,
        manifests: [{ mediaType: OCI, size: img.manifest.length, digest: sha(img.manifest), platform: { architecture: 'amd64', os: 'linux' } }],
      }),
    );
    const pi = await request(reg, '/v2/ns/oci/manifests/multi', { method: 'PUT', body: index, headers: { 'Content-Type': OCI_INDEX } });
    assert.equal(pi.status, 201, pi.text);
    const s2only = await request(reg, '/v2/ns/oci/manifests/multi', { headers: { Accept: S2 } });
    assert.equal(s2only.status, 404);
    assert.equal(code(s2only), 'MANIFEST_UNKNOWN');
    const ok = await request(reg, '/v2/ns/oci/manifests/multi', { headers: { Accept: `${S2}, ${OCI_INDEX}` } });
    assert.deepEqual(ok.body, index);
    const wrongDigest = await request(reg, `/v2/ns/oci/manifests/sha256:${'1'.repeat(64)}`, {
      method: 'PUT',
      body: img.manifest,
      headers: { 'Content-Type': OCI },
    });
    assert.equal(wrongDigest.status, 400);
    assert.equal(code(wrongDigest), 'DIGEST_INVALID');
    const dangling = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: [{ mediaType: OCI, size: 10, digest: sha('nothing') }] }));
    const pd = await request(reg, '/v2/ns/oci/manifests/bad', { method: 'PUT', body: dangling, headers: { 'Content-Type': OCI_INDEX } });
    assert.equal(code(pd), 'MANIFEST_BLOB_UNKNOWN');
  });

  it('refuses malformed manifests with MANIFEST_INVALID and stores nothing', async () => {
    const bad: [string, string][] = [
      [S2, JSON.stringify({ schemaVersion: 2, config: {}, layers: [] })],
      [S2, JSON.stringify({ schemaVersion: 2, mediaType: OCI, config: {}, layers: [] })],
      [OCI, JSON.stringify({ schemaVersion: 1, config: {}, layers: [] })],
      [OCI, JSON.stringify({ schemaVersion: 2, config: { mediaType: 'x', digest: 'sha256:zz', size: 1 }, layers: [] })],
      [OCI_INDEX, JSON.stringify({ schemaVersion: 2, manifests: 'no' })],
      ['application/vnd.docker.distribution.manifest.v1+prettyjws', JSON.stringify({ schemaVersion: 1, name: 'ns/bad', fsLayers: [], history: [] })],
      ['application/x-unknown', '{}'],
    ];
    for (const [ct, body] of bad) {
      const r = await request(reg, '/v2/ns/bad/manifests/x', { method: 'PUT', body, headers: { 'Content-Type': ct } });
      assert.equal(r.status, 400, body);
      assert.equal(code(r), 'MANIFEST_INVALID', body);
    }
    assert.equal((await request(reg, '/v2/ns/bad/tags/list')).status, 404);
    const big = await request(reg, '/v2/ns/bad/manifests/x', { method: 'PUT', body: Buffer.alloc(5 * 1024 * 1024, 32), headers: { 'Content-Type': OCI } });
    assert.equal(big.status, 413);
  });

  it('lists tags in order with n, last and Link', async () => {
    const img = image(S2);
    await pushBlob(reg, 'ns/tags', img.config);
    await pushBlob(reg, 'ns/tags', img.layer);
    for (const t of ['c', 'a', 'b', 'd']) {
      assert.equal((await request(reg, `/v2/ns/tags/manifests/${t}`, { method: 'PUT', body: img.manifest, headers: { 'Content-Type': S2 } })).status, 201);
    }
    assert.deepEqual((await request(reg, '/v2/ns/tags/tags/list')).json(), { name: 'ns/tags', tags: ['a', 'b', 'c', 'd'] });
    const page = await request(reg, '/v2/ns/tags/tags/list?n=2');
    assert.deepEqual(page.json(), { name: 'ns/tags', tags: ['a', 'b'] });
    assert.equal(page.headers.link, '</v2/ns/tags/tags/list?n=2&last=b>; rel="next"');
    const next = await request(reg, '/v2/ns/tags/tags/list?n=2&last=b');
    assert.deepEqual(next.json(), { name: 'ns/tags', tags: ['c', 'd'] });
    assert.equal(next.headers.link, undefined);
    assert.deepEqual((await request(reg, '/v2/ns/tags/tags/list?n=0')).json(), { name: 'ns/tags', tags: [] });
    assert.equal(code(await request(reg, '/v2/ns/tags/tags/list?n=-1')), 'PAGINATION_NUMBER_INVALID');
  });

  it('deletes by tag (only the tag) and by digest (the manifest and its tags)', async () => {
    const delTag = await request(reg, '/v2/ns/tags/manifests/a', { method: 'DELETE' });
    assert.equal(delTag.status, 202);
    assert.deepEqual((await request(reg, '/v2/ns/tags/tags/list')).json<{ tags: string[] }>().tags, ['b', 'c', 'd']);
    const digest = String((await request(reg, '/v2/ns/tags/manifests/b', { method: 'HEAD', headers: { Accept: S2 } })).headers['docker-content-digest']);
    const delDigest = await request(reg, `/v2/ns/tags/manifests/${digest}`, { method: 'DELETE' });
    assert.equal(delDigest.status, 202);
    assert.equal((await request(reg, `/v2/ns/tags/manifests/${digest}`)).status, 404);
    assert.equal((await request(reg, '/v2/ns/tags/manifests/c')).status, 404);
    assert.deepEqual((await request(reg, '/v2/ns/tags/tags/list')).json<{ tags: string[] }>().tags, []);
    assert.equal((await request(reg, `/v2/ns/tags/manifests/${digest}`, { method: 'DELETE' })).status, 404);
  });
});
