import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { request } from '../helpers/http.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { VECTORS } from '../helpers/paths.js';
import { tarOf } from '../helpers/v1-client.js';
import { GZIPPED_EMPTY_TAR, GZIPPED_EMPTY_TAR_DIGEST, v1ViewFromConfig } from '../../src/content/bridge.js';
import { findUserByName, saveUser } from '../../src/db/users.js';
import { saveRepository } from '../../src/db/repositories.js';

interface S1Case {
  config: string;
  layers: { digest: string }[];
  expected_canonical_payload: string;
  expected_v1_ids_top_first: string[];
}
const cases = (JSON.parse(readFileSync(join(VECTORS, 'bridge', 'schema2-to-schema1.json'), 'utf8')) as { cases: S1Case[] }).cases;
const sha = (b: Buffer | string): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const S2 = 'application/vnd.docker.distribution.manifest.v2+json';

describe('bridge: v2 image → v1 view (vectors/bridge/schema2-to-schema1.json)', () => {
  for (const [i, c] of cases.entries()) {
    it(`case ${i + 1}: the v1 ids and v1Compatibility JSON distribution produced`, () => {
      const view = v1ViewFromConfig(
        Buffer.from(c.config),
        c.layers.map((l) => l.digest),
      );
      assert.deepEqual(view.map((v) => v.id).reverse(), c.expected_v1_ids_top_first);
      const compat = (JSON.parse(c.expected_canonical_payload) as { history: { v1Compatibility: string }[] }).history.map((h) => h.v1Compatibility);
      assert.deepEqual(view.map((v) => v.json.toString()).reverse(), compat);
    });
  }
  it('the gzipped empty tar constant is what its digest says', () => {
    assert.equal(sha(GZIPPED_EMPTY_TAR), GZIPPED_EMPTY_TAR_DIGEST);
  });
});

/** A schema2 image of two gzipped layers (a.txt, b.txt) with the given config fields. */
function twoLayerImage(a: string, b: string, fields: Record<string, unknown>): { layers: Buffer[]; config: Buffer; manifest: Buffer } {
  const tar1 = tarOf({ 'a.txt': a });
  const tar2 = tarOf({ 'b.txt': b });
  const layers = [gzipSync(tar1), gzipSync(tar2)];
  const { created, ...rest } = fields;
  const config = Buffer.from(
    JSON.stringify({
      architecture: 'amd64',
      os: 'linux',
      ...(created !== undefined ? { created } : {}),
      config: { Cmd: ['/bin/sh'] },
      rootfs: { type: 'layers', diff_ids: [sha(tar1), sha(tar2)] },
      ...rest,
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
  return { layers, config, manifest };
}

describe('bridge: a v2-pushed tag pulled with the v1 protocol', () => {
  let s: TestServer;
  const { layers, config, manifest } = twoLayerImage('first layer\n', 'second <layer> & more\n', {
    created: '2020-01-02T03:04:05.5Z',
    history: [
      { created: '2020-01-01T00:00:00Z', created_by: '/bin/sh -c #(nop) ADD a.txt' },
      { created: '2020-01-01T00:00:01Z', created_by: '/bin/sh -c #(nop) ENV X=1', empty_layer: true },
      { created: '2020-01-02T03:04:05.500Z', created_by: '/bin/sh -c #(nop) ADD b.txt', comment: 'top' },
    ],
  });
  const view = v1ViewFromConfig(
    config,
    layers.map((l) => sha(l)),
  );

  before(async () => {
    s = await startTestServer({ standalone: true, v2: true });
    for (const b of [config, ...layers]) {
      assert.equal((await request(s.url, `/v2/modern/app/blobs/uploads/?digest=${sha(b)}`, { method: 'POST', body: b })).status, 201);
    }
    const put = await request(s.url, '/v2/modern/app/manifests/stable', { method: 'PUT', body: manifest, headers: { 'Content-Type': S2 } });
    assert.equal(put.status, 201, put.text);
  });
  after(() => s.stop());

  it('serves the 1.x pull sequence: images, tags, ancestry, json, layers (with the empty layer)', async () => {
    const top = view[view.length - 1]!.id;
    const list = await request(s.url, '/v1/repositories/modern/app/images', { headers: { 'X-Docker-Token': 'true' } });
    assert.equal(list.status, 200);
    assert.deepEqual(
      list
        .json<{ id: string }[]>()
        .map((e) => e.id)
        .sort(),
      view.map((v) => v.id).sort(),
    );
    const tags = await request(s.url, '/v1/repositories/modern/app/tags');
    assert.deepEqual(tags.json(), { stable: top });
    const anc = await request(s.url, `/v1/images/${top}/ancestry`);
    assert.deepEqual(anc.json(), view.map((v) => v.id).reverse());
    const blobs = [layers[0]!, GZIPPED_EMPTY_TAR, layers[1]!];
    for (const [i, v] of view.entries()) {
      const json = await request(s.url, `/v1/images/${v.id}/json`);
      assert.equal(json.status, 200);
      assert.deepEqual(json.body, v.json);
      assert.equal(json.headers['x-docker-size'], String(blobs[i]!.length));
      const layer = await request(s.url, `/v1/images/${v.id}/layer`);
      assert.deepEqual(layer.body, blobs[i]);
    }
    const topJson = JSON.parse(view[2]!.json.toString()) as Record<string, unknown>;
    assert.equal(topJson.id, top);
    assert.equal(topJson.parent, view[1]!.id);
    assert.equal(topJson.rootfs, undefined);
    assert.equal(topJson.history, undefined);
  });

  it('serves the same image back on /v2/ unchanged (the v2 tag wins over the derived v1 one)', async () => {
    const r = await request(s.url, '/v2/modern/app/manifests/stable', { headers: { Accept: S2 } });
    assert.deepEqual(r.body, manifest);
  });
});

describe('bridge: signed schema1 for clients that accept nothing newer', () => {
  let s: TestServer;
  before(async () => {
    s = await startTestServer({ standalone: true, v2: true });
  });
  after(() => s.stop());

  it('builds the canonical payload distribution signs (vector digests)', async () => {
    const { schema1Payload } = await import('../../src/content/schema1.js');
    for (const c of cases as (S1Case & { name: string; tag: string; expected_digest: string })[]) {
      const view = v1ViewFromConfig(
        Buffer.from(c.config),
        c.layers.map((l) => l.digest),
      );
      const arch = (JSON.parse(c.config) as { architecture: string }).architecture;
      const payload = schema1Payload(
        c.name,
        c.tag,
        arch,
        [...view].reverse().map((v) => ({ blobSum: v.blob, v1Compatibility: v.json.toString() })),
      );
      assert.equal(payload, c.expected_canonical_payload);
      assert.equal(sha(payload), c.expected_digest);
    }
  });

  it('serves a v2-pushed schema2 tag as signed schema1 (ES256 verifies, digest = canonical payload), stable by digest', async () => {
    const { canonicalOf } = await import('../../src/content/schema1.js');
    const { createPublicKey, verify } = await import('node:crypto');
    const tar = tarOf({ 'x.txt': 'x\n' });
    const layer = gzipSync(tar);
    const config = Buffer.from(
      JSON.stringify({
        architecture: 'arm64',
        os: 'linux',
        rootfs: { type: 'layers', diff_ids: [sha(tar)] },
        history: [{ created: '2021-01-01T00:00:00Z', created_by: 'ADD x' }],
      }),
    );
    for (const b of [config, layer]) await request(s.url, `/v2/old/client/blobs/uploads/?digest=${sha(b)}`, { method: 'POST', body: b });
    const manifest = JSON.stringify({
      schemaVersion: 2,
      mediaType: S2,
      config: { mediaType: 'application/vnd.docker.container.image.v1+json', size: config.length, digest: sha(config) },
      layers: [{ mediaType: 'application/vnd.docker.image.rootfs.diff.tar.gzip', size: layer.length, digest: sha(layer) }],
    });
    assert.equal((await request(s.url, '/v2/old/client/manifests/t', { method: 'PUT', body: manifest, headers: { 'Content-Type': S2 } })).status, 201);
    const r = await request(s.url, '/v2/old/client/manifests/t', { headers: { Accept: 'application/vnd.docker.distribution.manifest.v1+prettyjws' } });
    assert.equal(r.status, 200);
    assert.equal(r.headers['content-type'], 'application/vnd.docker.distribution.manifest.v1+prettyjws');
    const doc = r.json<{
      schemaVersion: number;
      name: string;
      tag: string;
      architecture: string;
      fsLayers: { blobSum: string }[];
      history: { v1Compatibility: string }[];
      signatures: { header: { jwk: Record<string, string>; alg: string }; signature: string; protected: string }[];
    }>();
    assert.equal(doc.schemaVersion, 1);
    assert.equal(doc.name, 'old/client');
    assert.equal(doc.architecture, 'arm64');
    assert.deepEqual(doc.fsLayers, [{ blobSum: sha(layer) }]);
    const canonical = canonicalOf(r.body);
    assert.equal(r.headers['docker-content-digest'], sha(canonical));
    const sig = doc.signatures[0]!;
    assert.equal(sig.header.alg, 'ES256');
    assert.match(sig.header.jwk.kid!, /^([A-Z2-7]{4}:){11}[A-Z2-7]{4}$/);
    const key = createPublicKey({ key: { kty: 'EC', crv: sig.header.jwk.crv, x: sig.header.jwk.x, y: sig.header.jwk.y }, format: 'jwk' });
    const ok = verify(
      'sha256',
      Buffer.from(`${sig.protected}.${Buffer.from(canonical).toString('base64url')}`),
      { key, dsaEncoding: 'ieee-p1363' },
      Buffer.from(sig.signature, 'base64url'),
    );
    assert.ok(ok, 'the signature verifies over the canonical payload');
    const again = await request(s.url, '/v2/old/client/manifests/t', {});
    assert.deepEqual(again.body, r.body, 'no Accept: the same signed document');
    const byDigest = await request(s.url, `/v2/old/client/manifests/${sha(canonical)}`);
    assert.deepEqual(byDigest.body, r.body);
    const modern = await request(s.url, '/v2/old/client/manifests/t', { headers: { Accept: S2 } });
    assert.equal(modern.text, manifest);

    // the same signed document pushed back as schema1 is accepted; a tampered one is refused
    const S1 = 'application/vnd.docker.distribution.manifest.v1+prettyjws';
    const back = await request(s.url, '/v2/old/client/manifests/again', { method: 'PUT', body: r.body, headers: { 'Content-Type': S1 } });
    assert.equal(back.status, 201, back.text);
    assert.equal(back.headers['docker-content-digest'], sha(canonical));
    const tampered = Buffer.from(r.body.toString().replace('"architecture": "arm64"', '"architecture": "amd64"'));
    const bad = await request(s.url, '/v2/old/client/manifests/evil', { method: 'PUT', body: tampered, headers: { 'Content-Type': S1 } });
    assert.equal(bad.status, 400);
    assert.equal(bad.json<{ errors: { code: string }[] }>().errors[0]!.code, 'MANIFEST_UNVERIFIED');
    const unsigned = JSON.stringify({
      schemaVersion: 1,
      name: 'old/client',
      tag: 'u',
      architecture: 'amd64',
      fsLayers: [{ blobSum: sha(layer) }],
      history: [{ v1Compatibility: JSON.stringify({ id: 'c'.repeat(64) }) }],
    });
    const u = await request(s.url, '/v2/old/client/manifests/u', {
      method: 'PUT',
      body: unsigned,
      headers: { 'Content-Type': 'application/vnd.docker.distribution.manifest.v1+json' },
    });
    assert.equal(u.status, 201, u.text);
    assert.equal(u.headers['docker-content-digest'], sha(unsigned));
    const missing = unsigned.replace(sha(layer), `sha256:${'9'.repeat(64)}`);
    const m = await request(s.url, '/v2/old/client/manifests/m', {
      method: 'PUT',
      body: missing,
      headers: { 'Content-Type': 'application/vnd.docker.distribution.manifest.v1+json' },
    });
    assert.equal(m.json<{ errors: { code: string }[] }>().errors[0]!.code, 'MANIFEST_BLOB_UNKNOWN');
    assert.equal((await request(s.url, '/v2/old/client/manifests/evil')).status, 404);
  });
});

describe('bridge: a v2-pushed tag pulled by a v1 client through the index token flow', () => {
  const { layers, config, manifest } = twoLayerImage('indexed first layer\n', 'indexed second layer\n', {
    history: [
      { created: '2021-01-01T00:00:00Z', created_by: 'ADD a.txt' },
      { created: '2021-01-01T00:00:01Z', created_by: 'ENV X=1', empty_layer: true },
      { created: '2021-01-01T00:00:02Z', created_by: 'ADD b.txt' },
    ],
  });
  const view = v1ViewFromConfig(
    config,
    layers.map((l) => sha(l)),
  );
  const blobsOf = [layers[0]!, GZIPPED_EMPTY_TAR, layers[1]!];
  const basic = (u: string, p: string): string => `Basic ${Buffer.from(`${u}:${p}`).toString('base64')}`;

  for (const mode of ['one process', 'index and registry split'] as const) {
    it(`${mode}: the index lists the whole chain with payload checksums; the 1.x pull sequence works with its token`, async () => {
      const servers: TestServer[] = [];
      try {
        // split: one configured service name (the token audience) for index and registry
        const service = mode === 'one process' ? {} : { token_service: 'split-registry' };
        const idx = await startTestServer({ v2: mode === 'one process', bcrypt_cost: 4, ...service }, { role: mode === 'one process' ? 'all' : 'index' });
        servers.push(idx);
        const reg =
          mode === 'one process' ? idx : await startTestServer({ v2: true, standalone: false, index_endpoint: idx.url, ...service }, { role: 'registry' });
        if (reg !== idx) servers.push(reg);
        await saveUser(idx.db!, { username: 'alice', email: 'a@example.com', password: 'alicepw', active: true }, { cost: 4 });
        await saveUser(idx.db!, { username: 'bobby', email: 'b@example.com', password: 'bobbypw', active: true }, { cost: 4 });
        const q = new URLSearchParams({ service: mode === 'one process' ? new URL(reg.url).host : 'split-registry', scope: 'repository:alice/app:pull,push' });
        const t = await request(idx.url, `/v2/token?${q}`, { headers: { Authorization: basic('alice', 'alicepw') } });
        assert.equal(t.status, 200, t.text);
        const bearer = { Authorization: `Bearer ${t.json<{ token: string }>().token}` };
        for (const b of [config, ...layers]) {
          assert.equal((await request(reg.url, `/v2/alice/app/blobs/uploads/?digest=${sha(b)}`, { method: 'POST', body: b, headers: bearer })).status, 201);
        }
        const put = await request(reg.url, '/v2/alice/app/manifests/stable', { method: 'PUT', body: manifest, headers: { ...bearer, 'Content-Type': S2 } });
        assert.equal(put.status, 201, put.text);

        // the index: every id of the chain, root first, each with the payload checksum, the tag on the top
        const expected = view.map((v, i) => ({ id: v.id, checksum: sha(Buffer.concat([v.json, Buffer.from('\n'), blobsOf[i]!])) }));
        const rows = (await idx.db!('repository_images as i')
          .join('repositories as r', 'r.id', 'i.repo_id')
          .where({ 'r.namespace': 'alice', 'r.name': 'app' })
          .orderBy('i.position')
          .select('i.image_id', 'i.checksum', 'i.tag')) as { image_id: string; checksum: string; tag: string | null }[];
        assert.deepEqual(
          rows.map((r) => ({ id: r.image_id, checksum: r.checksum, tag: r.tag })),
          expected.map((e, i) => ({ ...e, tag: i === expected.length - 1 ? 'stable' : null })),
        );

        // Docker 1.x pull: images at the index (Basic, X-Docker-Token: true), then the registry with the token
        const list = await request(idx.url, '/v1/repositories/alice/app/images', {
          headers: { Authorization: basic('bobby', 'bobbypw'), 'X-Docker-Token': 'true' },
        });
        assert.equal(list.status, 200, list.text);
        const token = String(list.headers['x-docker-token']);
        assert.match(token, /^signature=/);
        assert.deepEqual(
          list
            .json<{ id: string; checksum?: string }[]>()
            .map((e) => ({ id: e.id, checksum: e.checksum }))
            .sort((a, b) => a.id.localeCompare(b.id)),
          [...expected].sort((a, b) => a.id.localeCompare(b.id)),
        );
        const auth = { Authorization: `Token ${token}` };
        const tags = await request(reg.url, '/v1/repositories/alice/app/tags', { headers: auth });
        assert.equal(tags.status, 200, tags.text);
        const top = view[view.length - 1]!.id;
        assert.deepEqual(tags.json(), { stable: top });
        const anc = await request(reg.url, `/v1/images/${top}/ancestry`, { headers: auth });
        assert.deepEqual(anc.json(), view.map((v) => v.id).reverse());
        for (const [i, v] of view.entries()) {
          const json = await request(reg.url, `/v1/images/${v.id}/json`, { headers: auth });
          assert.equal(json.status, 200, `${v.id}: ${json.text}`);
          assert.deepEqual(json.body, v.json);
          assert.equal(json.headers['x-docker-checksum-payload'], expected[i]!.checksum);
          const layer = await request(reg.url, `/v1/images/${v.id}/layer`, { headers: auth });
          assert.equal(layer.status, 200);
          assert.deepEqual(layer.body, blobsOf[i]);
        }
        // a token for another repository opens none of these images once alice/app is private
        await idx.db!('repositories').where({ namespace: 'alice', name: 'app' }).update({ private: true });
        await saveRepository(idx.db!, { namespace: 'bobby', name: 'mine', ownerId: (await findUserByName(idx.db!, 'bobby'))!.id });
        const other = await request(idx.url, '/v1/repositories/bobby/mine/images', {
          headers: { Authorization: basic('bobby', 'bobbypw'), 'X-Docker-Token': 'true' },
        });
        const otherAuth = { Authorization: `Token ${String(other.headers['x-docker-token'])}` };
        assert.equal(
          (await request(reg.url, '/v1/repositories/alice/app/tags', { headers: otherAuth })).status,
          401,
          'spec §4.2: not valid for this repository',
        );
        assert.equal(
          (await request(reg.url, `/v1/images/${view[0]!.id}/json`, { headers: otherAuth })).status,
          404,
          'a private image is not opened by another repository token (as if absent)',
        );
      } finally {
        for (const s of servers.reverse()) await s.stop();
      }
    });
  }
});
