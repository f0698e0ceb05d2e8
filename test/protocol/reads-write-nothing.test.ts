import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { request } from '../helpers/http.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { fileStates } from '../helpers/files.js';
import { pushV1 } from '../helpers/gc-push.js';
import { makeChain, type TestImage } from '../helpers/v1-client.js';
import { pushV2 } from '../helpers/v2-client.js';

const sha = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/** The Accept headers of the clients that pull through /v2/: docker 20+, OCI clients, docker 1.6–1.9, curl. */
const ACCEPTS = [
  'application/vnd.docker.distribution.manifest.v2+json',
  'application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json',
  'application/vnd.docker.distribution.manifest.v1+prettyjws',
  '*/*',
  '',
];

/**
 * A read is a read: no GET or HEAD, on any route, v1 or v2, writes to the storage once what it
 * derives is stored (found in 2026-12: every v2 GET of a v1 tag rewrote the bridge's manifest,
 * config and links with fsyncs, and so also emptied the node's answer cache at every request).
 */
describe('reads write nothing: every GET and HEAD route leaves the storage as it was', () => {
  let s: TestServer;
  let chain: TestImage[];
  let v2: { digest: string; layer: string };
  let paths: string[];
  before(async () => {
    // no metadata cache: every read reaches the storage
    s = await startTestServer({ standalone: true, v2: true, metadata_cache_ttl: 0 });
    chain = makeChain(3);
    await pushV1(s.url, 'legacy/reads', 'latest', chain);
    v2 = await pushV2(s.url, 'modern/reads', 'latest');
    const top = chain[2]!.id;
    const bridged = await request(s.url, '/v2/legacy/reads/manifests/latest', { headers: { Accept: ACCEPTS[0]! } });
    assert.equal(bridged.status, 200, bridged.text);
    const bridgedConfig = bridged.json<{ config: { digest: string } }>().config.digest;
    const v2Tags = await request(s.url, '/v1/repositories/modern/reads/tags');
    assert.equal(v2Tags.status, 200, v2Tags.text);
    const v2AsV1 = Object.values(v2Tags.json<Record<string, string>>())[0]!;
    paths = [
      '/_ping',
      '/v1/_ping',
      '/v1/search?q=reads',
      '/v1/repositories/legacy/reads/tags',
      '/v1/repositories/legacy/reads/tags/latest',
      '/v1/repositories/legacy/reads/json',
      '/v1/repositories/legacy/reads/images',
      '/v1/repositories/modern/reads/tags',
      ...[top, chain[0]!.id, v2AsV1].flatMap((id) => [
        `/v1/images/${id}/json`,
        `/v1/images/${id}/ancestry`,
        `/v1/images/${id}/layer`,
        `/v1/images/${id}/files`,
      ]),
      '/v2/',
      '/v2/_catalog',
      '/v2/legacy/reads/tags/list',
      '/v2/modern/reads/tags/list',
      '/v2/legacy/reads/manifests/latest',
      `/v2/legacy/reads/manifests/${sha(bridged.body)}`,
      `/v2/legacy/reads/blobs/${bridgedConfig}`,
      `/v2/legacy/reads/blobs/${sha(chain[1]!.layer)}`,
      '/v2/modern/reads/manifests/latest',
      `/v2/modern/reads/manifests/${v2.digest}`,
      `/v2/modern/reads/blobs/${v2.layer}`,
      `/v2/modern/reads/referrers/${v2.digest}`,
      '/v2/legacy/reads/manifests/absent',
      '/v2/nobody/here/manifests/latest',
    ];
  });
  after(() => s?.stop());

  async function readAll(): Promise<number[]> {
    const statuses: number[] = [];
    for (const path of paths)
      for (const accept of ACCEPTS)
        for (const method of ['GET', 'HEAD'] as const) {
          const r = await request(s.url, path, { method, headers: accept ? { Accept: accept } : {} });
          statuses.push(r.status);
        }
    return statuses;
  }

  it('after a first round (which may store what it derives once: the bridge\u2019s v2 form, a layer\u2019s file list), two more rounds change no file', async () => {
    const first = await readAll();
    assert.ok(first.filter((x) => x === 200).length > paths.length, 'most reads answer 200');
    const before = await fileStates(s.dataDir);
    assert.deepEqual(await readAll(), first, 'the same answers');
    assert.deepEqual(await readAll(), first);
    const after = await fileStates(s.dataDir);
    const changed = [...new Set([...before.keys(), ...after.keys()])].filter((k) => before.get(k) !== after.get(k));
    assert.deepEqual(changed, [], 'files written, removed or replaced by reads');
  });
});
