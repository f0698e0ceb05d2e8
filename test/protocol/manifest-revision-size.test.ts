import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { GarbageCollector } from '../../src/content/gc.js';
import { createFilesystemDriver } from '../../src/storage/drivers/filesystem.js';
import { request } from '../helpers/http.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

const sha = (b: Buffer | string): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const OCI = 'application/vnd.oci.image.manifest.v1+json';

/**
 * A manifest's revision record keeps its `artifactType`, which the manifest (up to 4 MiB) names as it
 * likes. Read back within 64 KiB (the bound on stored records, for a few hours on 2026-12-07), a
 * manifest with a longer artifactType answered 500 for good, and every gc run failed on it (so one
 * push stopped collection for the whole registry). Revisions are read within the manifest's bound.
 */
describe('a manifest whose revision record is larger than a small record', () => {
  let s: TestServer;
  before(async () => {
    s = await startTestServer({ standalone: true, v2: true, metadata_cache_ttl: 0 });
  });
  after(() => s?.stop());

  it('an artifactType of 100 KB: pulled by tag and digest, listed as a referrer, and gc runs', async () => {
    const config = Buffer.from('{}');
    const layer = Buffer.from('layer bytes');
    for (const b of [config, layer]) {
      const r = await request(s.url, `/v2/odd/art/blobs/uploads/?digest=${sha(b)}`, { method: 'POST', body: b });
      assert.equal(r.status, 201, r.text);
    }
    const artifactType = `application/vnd.example.${'x'.repeat(100_000)}+json`;
    const manifest = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: OCI,
        artifactType,
        config: { mediaType: 'application/vnd.oci.empty.v1+json', digest: sha(config), size: config.length },
        layers: [{ mediaType: 'application/octet-stream', digest: sha(layer), size: layer.length }],
      }),
    );
    const put = await request(s.url, '/v2/odd/art/manifests/v1', { method: 'PUT', body: manifest, headers: { 'Content-Type': OCI } });
    assert.equal(put.status, 201, put.text.slice(0, 300));
    for (const ref of ['v1', sha(manifest)]) {
      const got = await request(s.url, `/v2/odd/art/manifests/${ref}`, { headers: { Accept: OCI } });
      assert.equal(got.status, 200, `${ref}: ${got.text.slice(0, 300)}`);
      assert.ok(got.body.equals(manifest));
    }
    const r = await new GarbageCollector(createFilesystemDriver({ root: s.dataDir })).run({ deleteUntagged: true, graceMs: 0, settleMs: 0 });
    assert.ok(r, 'gc ran');
    assert.equal((await request(s.url, `/v2/odd/art/blobs/${sha(layer)}`)).status, 200, 'the tagged manifest keeps its blobs');
  });
});
