import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { request } from '../helpers/http.js';
import { loadConfig } from '../../src/config/load.js';
import { openContent } from '../../src/migrate/services.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { makeImage, pushImage, putTag } from '../helpers/v1-client.js';
import { pushV2 } from '../helpers/v2-client.js';

const sha = (b: Buffer | string): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const S2 = 'application/vnd.docker.distribution.manifest.v2+json';
const LIST = 'application/vnd.docker.distribution.manifest.list.v2+json';
const S1 = 'application/vnd.docker.distribution.manifest.v1+prettyjws';
const ALL = [S2, LIST, 'application/vnd.oci.image.manifest.v1+json', 'application/vnd.oci.image.index.v1+json'].join(', ');

async function v1Push(url: string, repo: string, tag: string): Promise<string> {
  const img = makeImage(undefined, { 'v1.txt': `${repo}:${tag} ${Math.random()}\n` });
  await pushImage(url, img);
  assert.equal((await putTag(url, repo, tag, img.id)).status, 200);
  return img.id;
}

async function v1TagId(url: string, repo: string, tag: string): Promise<string | undefined> {
  const r = await request(url, `/v1/repositories/${repo}/tags/${tag}`);
  return r.status === 200 ? r.json<string>() : undefined;
}

const get = (url: string, path: string, accept = ALL) => request(url, path, { headers: accept ? { Accept: accept } : {} });

describe('bridge consistency between v1 and v2 (spec §3.7)', () => {
  let s: TestServer;
  before(async () => {
    s = await startTestServer({ standalone: true, v2: true, storage_delete: true });
  });
  after(() => s.stop());

  it('a v1-only tag deleted through v2 by tag is gone in v1', async () => {
    await v1Push(s.url, 'cons/one', 'old');
    assert.equal((await get(s.url, '/v2/cons/one/manifests/old')).status, 200);
    const del = await request(s.url, '/v2/cons/one/manifests/old', { method: 'DELETE' });
    assert.equal(del.status, 202, del.text);
    assert.equal(await v1TagId(s.url, 'cons/one', 'old'), undefined);
    assert.equal((await get(s.url, '/v2/cons/one/manifests/old')).status, 404);
  });

  it('a v1-only tag deleted through v2 by the digest of its derived manifest is gone in v1', async () => {
    await v1Push(s.url, 'cons/two', 'a');
    const digest = String((await get(s.url, '/v2/cons/two/manifests/a')).headers['docker-content-digest']);
    assert.equal((await request(s.url, `/v2/cons/two/manifests/${digest}`, { method: 'DELETE' })).status, 202);
    assert.equal(await v1TagId(s.url, 'cons/two', 'a'), undefined);
    assert.equal((await request(s.url, `/v2/cons/two/manifests/${sha('none')}`, { method: 'DELETE' })).status, 404);
  });

  it('a v1 re-push after a v2 push re-derives: /v2/ serves the v1 image', async () => {
    const v2 = await pushV2(s.url, 'cons/three', 'latest');
    assert.equal((await get(s.url, '/v2/cons/three/manifests/latest')).headers['docker-content-digest'], v2.digest);
    const id = await v1Push(s.url, 'cons/three', 'latest');
    const r = await get(s.url, '/v2/cons/three/manifests/latest');
    assert.equal(r.status, 200);
    assert.notEqual(r.headers['docker-content-digest'], v2.digest);
    // the layer served is the v1 image's layer
    const layer = r.json<{ layers: { digest: string }[] }>().layers.at(-1)!.digest;
    const v2Blob = await request(s.url, `/v2/cons/three/blobs/${layer}`);
    const v1Layer = await request(s.url, `/v1/images/${id}/layer`);
    assert.equal(v1Layer.status, 200);
    assert.equal(sha(v2Blob.body), sha(v1Layer.body));
    assert.equal(await v1TagId(s.url, 'cons/three', 'latest'), id);
  });

  it('a v2 push of a v1 tag replaces its v1 view', async () => {
    const old = await v1Push(s.url, 'cons/four', 'latest');
    const v2 = await pushV2(s.url, 'cons/four', 'latest');
    assert.equal((await get(s.url, '/v2/cons/four/manifests/latest')).headers['docker-content-digest'], v2.digest);
    const now = await v1TagId(s.url, 'cons/four', 'latest');
    assert.ok(now && now !== old, 'the v1 tag now points at the derived v1 id');
  });

  it('a v2-pushed tag deleted through v1 is gone in v2 (GET and tags/list)', async () => {
    await pushV2(s.url, 'cons/five', 'keep');
    await pushV2(s.url, 'cons/five', 'drop', {}, 'other');
    assert.equal((await request(s.url, '/v1/repositories/cons/five/tags/drop', { method: 'DELETE' })).status, 200);
    assert.equal((await get(s.url, '/v2/cons/five/manifests/drop')).status, 404);
    assert.deepEqual((await request(s.url, '/v2/cons/five/tags/list')).json<{ tags: string[] }>().tags, ['keep']);
  });
});

/** The file of a storage key under a filesystem storage root (the driver may nest it under a prefix). */
async function keyFile(root: string, key: string): Promise<string> {
  const rel = (await readdir(root, { recursive: true })).find((p) => p === key || p.endsWith(`/${key}`));
  assert.ok(rel, `no file for ${key} under ${root}`);
  return join(root, rel);
}

describe('a cut v2 push or delete never brings a tag back as a manifest nobody pushed (issue 17 crash campaign)', () => {
  let s: TestServer;
  before(async () => {
    // no metadata or answer caching: the test changes storage under the server, as a kill does
    s = await startTestServer({ standalone: true, v2: true, storage_delete: true, metadata_cache_ttl: 0 });
  });
  after(() => s.stop());

  it('the v2 tag gone but its v1 view left (a delete cut before the view went, or a push cut before its tag): 404 and not listed over v2', async () => {
    await pushV2(s.url, 'cut/one', 'keep');
    const v2 = await pushV2(s.url, 'cut/one', 'cut', {}, 'second image');
    assert.equal((await get(s.url, '/v2/cut/one/manifests/cut')).headers['docker-content-digest'], v2.digest);
    assert.ok(await v1TagId(s.url, 'cut/one', 'cut'), 'the v2 push has its v1 view');
    // the state a SIGKILL leaves between removing the v2 tag and removing its v1 view
    await rm(await keyFile(s.dataDir, 'v2/repositories/cut/one/_manifests/tags/cut'));
    const r = await get(s.url, '/v2/cut/one/manifests/cut');
    assert.equal(r.status, 404, `served ${String(r.headers['docker-content-digest'])}, pushed ${v2.digest}`);
    assert.equal(r.json<{ errors: { code: string }[] }>().errors[0]!.code, 'MANIFEST_UNKNOWN');
    assert.deepEqual((await request(s.url, '/v2/cut/one/tags/list')).json<{ tags: string[] }>().tags, ['keep']);
    // a v1 push of that tag afterwards is a v1 tag like any other: bridged over v2 again
    const id = await v1Push(s.url, 'cut/one', 'cut');
    assert.equal(await v1TagId(s.url, 'cut/one', 'cut'), id);
    assert.equal((await get(s.url, '/v2/cut/one/manifests/cut')).status, 200);
    assert.deepEqual((await request(s.url, '/v2/cut/one/tags/list')).json<{ tags: string[] }>().tags, ['cut', 'keep']);
  });

  it('a delete through v2 removes the v1 view first: the state a kill leaves between the two steps reads as deleted on both APIs', async () => {
    const v2 = await pushV2(s.url, 'cut/two', 'x');
    assert.equal((await get(s.url, '/v2/cut/two/manifests/x')).headers['docker-content-digest'], v2.digest);
    // the v1 view removed, the v2 tag still stored (the first step of a delete done, not the second)
    await rm(await keyFile(s.dataDir, 'v1/repositories/cut/two/_tags/x'));
    assert.equal((await get(s.url, '/v2/cut/two/manifests/x')).status, 404);
    assert.equal(await v1TagId(s.url, 'cut/two', 'x'), undefined);
    assert.deepEqual((await request(s.url, '/v2/cut/two/tags/list')).json<{ tags: string[] }>().tags, []);
    // the client's retry of the delete completes it
    assert.equal((await request(s.url, '/v2/cut/two/manifests/x', { method: 'DELETE' })).status, 202);
    assert.equal((await get(s.url, '/v2/cut/two/manifests/x')).status, 404);
  });

  it('two v2 publishes of one tag cut in a row (each before its v1 tag moved): the v2 tag still serves what was pushed', async () => {
    const a = await pushV2(s.url, 'cut/four', 'x');
    const idA = await v1TagId(s.url, 'cut/four', 'x');
    assert.ok(idA);
    // a second node on the same storage records derived ids as a publish does before moving the
    // v1 tag, and is killed there twice (the crash campaign, fs seed 45, kills 137–138)
    const config = loadConfig({ env: {}, flavor: 'test', overrides: { storage_path: s.dataDir, standalone: true, v2: true, loglevel: 'silent' } });
    const node = await openContent(config, undefined, { digestWorkers: 0 });
    try {
      const record = (node.toV1 as unknown as { recordDerived(n: string, t: string, id: string): Promise<void> }).recordDerived.bind(node.toV1);
      await record('cut/four', 'x', 'b'.repeat(64));
      assert.equal((await get(s.url, '/v2/cut/four/manifests/x')).headers['docker-content-digest'], a.digest, 'after one cut publish');
      await record('cut/four', 'x', 'c'.repeat(64));
    } finally {
      await node.close();
    }
    const r = await get(s.url, '/v2/cut/four/manifests/x');
    assert.equal(r.status, 200);
    assert.equal(r.headers['docker-content-digest'], a.digest, 'after two cut publishes v2 still serves the pushed manifest, not a bridged one');
    assert.equal(await v1TagId(s.url, 'cut/four', 'x'), idA);
  });

  it('a delete by digest untags every tag on it in v1 and v2', async () => {
    const v2 = await pushV2(s.url, 'cut/three', 'a');
    await pushV2(s.url, 'cut/three', 'b');
    assert.equal((await request(s.url, `/v2/cut/three/manifests/${v2.digest}`, { method: 'DELETE' })).status, 202);
    for (const t of ['a', 'b']) {
      assert.equal((await get(s.url, `/v2/cut/three/manifests/${t}`)).status, 404, t);
      assert.equal(await v1TagId(s.url, 'cut/three', t), undefined, t);
    }
  });
});

describe('manifest list for a schema1-only client (spec §2.5 step 5)', () => {
  let s: TestServer;
  let amd64: { digest: string; layer: string };
  const list = (entries: { digest: string; size: number; os: string; architecture: string }[]): Buffer =>
    Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: LIST,
        manifests: entries.map((e) => ({ mediaType: S2, digest: e.digest, size: e.size, platform: { os: e.os, architecture: e.architecture } })),
      }),
    );
  before(async () => {
    s = await startTestServer({ standalone: true, v2: true });
    const arm = await pushV2(s.url, 'multi/app', 'arm-only', {}, 'arm');
    const amd = await pushV2(s.url, 'multi/app', 'amd-only', {}, 'amd');
    amd64 = amd;
    const both = list([
      { digest: arm.digest, size: arm.manifest.length, os: 'linux', architecture: 'arm64' },
      { digest: amd.digest, size: amd.manifest.length, os: 'linux', architecture: 'amd64' },
    ]);
    const armOnly = list([{ digest: arm.digest, size: arm.manifest.length, os: 'linux', architecture: 'arm64' }]);
    for (const [tag, body] of [
      ['multi', both],
      ['armlist', armOnly],
    ] as const) {
      const r = await request(s.url, `/v2/multi/app/manifests/${tag}`, { method: 'PUT', body, headers: { 'Content-Type': LIST } });
      assert.equal(r.status, 201, r.text);
    }
  });
  after(() => s.stop());

  it('a client accepting only schema1 (or nothing) gets the linux/amd64 image as signed schema1', async () => {
    for (const accept of [S1, '']) {
      const r = await get(s.url, '/v2/multi/app/manifests/multi', accept);
      assert.equal(r.status, 200, r.text);
      assert.equal(r.headers['content-type'], S1);
      const doc = r.json<{ schemaVersion: number; name: string; tag: string; fsLayers: { blobSum: string }[]; signatures: unknown[] }>();
      assert.equal(doc.schemaVersion, 1);
      assert.equal(doc.name, 'multi/app');
      assert.equal(doc.tag, 'multi');
      assert.deepEqual(
        doc.fsLayers.map((l) => l.blobSum),
        [amd64.layer],
      );
      assert.equal(doc.signatures.length, 1);
    }
  });

  it('a client accepting schema2 but not lists gets the linux/amd64 schema2 with its digest', async () => {
    const r = await get(s.url, '/v2/multi/app/manifests/multi', S2);
    assert.equal(r.status, 200);
    assert.equal(r.headers['content-type'], S2);
    assert.equal(r.headers['docker-content-digest'], amd64.digest);
  });

  it('a list without linux/amd64: 404 MANIFEST_UNKNOWN; clients accepting lists get the list', async () => {
    const r = await get(s.url, '/v2/multi/app/manifests/armlist', S1);
    assert.equal(r.status, 404);
    assert.equal(r.json<{ errors: { code: string }[] }>().errors[0]!.code, 'MANIFEST_UNKNOWN');
    const full = await get(s.url, '/v2/multi/app/manifests/multi');
    assert.equal(full.headers['content-type'], LIST);
  });
});
