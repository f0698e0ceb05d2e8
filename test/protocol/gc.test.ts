import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readdir, stat, truncate, utimes } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { gzipSync } from 'node:zlib';
import { request } from '../helpers/http.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { makeImage, payloadChecksum, tarOf, type TestImage } from '../helpers/v1-client.js';
import { assertV1Pulls, assertV2Pulls, gcCli, hooked, pushV1, pushV2Chunked, type V1Pushed, type V2Pushed } from '../helpers/gc-push.js';
import { GarbageCollector, type GcResult } from '../../src/content/gc.js';
import { createFilesystemDriver } from '../../src/storage/drivers/index.js';
import { saveUser } from '../../src/db/users.js';
import { Site, basic } from '../helpers/accounts.js';
import { schema2Manifest } from '../helpers/v2-client.js';

/** Make every file below dir look written `ageMs` ago. */
async function age(dir: string, ageMs: number): Promise<void> {
  const t = new Date(Date.now() - ageMs);
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile()) await utimes(join(e.parentPath, e.name), t, t);
  }
}

const sha = (b: Buffer | string): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const S2 = 'application/vnd.docker.distribution.manifest.v2+json';
const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';

/** Every file below dir (relative path → size + mtime), to prove a run changed nothing. */
async function snapshot(dir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const walk = async (d: string): Promise<void> => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else {
        const s = await stat(p);
        out.set(relative(dir, p), `${s.size} ${s.mtimeMs}`);
      }
    }
  };
  await walk(dir);
  return out;
}

async function blobExists(dataDir: string, digest: string): Promise<boolean> {
  const hex = digest.slice(7);
  return stat(join(dataDir, 'blobs', 'sha256', hex.slice(0, 2), hex, 'data')).then(
    () => true,
    () => false,
  );
}

const cli = (dataDir: string, ...args: string[]): Promise<{ stdout: string; stderr: string }> => gcCli(dataDir, args, 120_000);

describe('legacy-registry gc', () => {
  let s: TestServer;
  before(async () => {
    s = await startTestServer({ standalone: true, storage_delete: true });
  });
  after(async () => {
    await s?.stop();
  });

  it('dry run changes nothing; a run frees the layers of deleted repositories, tags and manifests, keeps shared and tagged ones', async () => {
    const url = s.url;
    // kept: a v1 image (tagged), a v2 image (tagged) sharing a layer with a deleted one
    const base = makeImage();
    const keptV1 = await pushV1(url, 'gcns/keptv1', 'latest', [base, makeImage(base.id)]);
    const shared = gzipSync(tarOf({ 'shared.txt': 'shared layer\n' }));
    const keptV2 = await pushV2Chunked(url, 'gcns/keptv2', 'latest', 'kept', shared);
    // v1-pushed tag pulled through v2: the bridge derives a config and a manifest (derived objects)
    const bridged = await request(url, '/v2/gcns/keptv1/manifests/latest', { headers: { Accept: S2 } });
    assert.equal(bridged.status, 200, bridged.text);
    const bridgedDoc = bridged.json<{ config: { digest: string } }>();
    // garbage: a v1 repository deleted, a v2 manifest deleted by digest (shares `shared`), a v2 repository deleted
    const goneV1 = await pushV1(url, 'gcns/gonev1', 'latest', [makeImage()]);
    assert.equal((await request(url, '/v1/repositories/gcns/gonev1/', { method: 'DELETE' })).status, 200);
    const goneV2 = await pushV2Chunked(url, 'gcns/gonev2', 'latest', 'gone', shared);
    assert.equal((await request(url, `/v2/gcns/gonev2/manifests/${goneV2.digest}`, { method: 'DELETE' })).status, 202);
    const goneRepo = await pushV2Chunked(url, 'gcns/gonerepo', 'latest', 'gonerepo');
    assert.equal((await request(url, '/v1/repositories/gcns/gonerepo/', { method: 'DELETE' })).status, 200);
    // untagged only: deleted with --delete-untagged
    const untaggedV2 = await pushV2Chunked(url, 'gcns/untagged', 'latest', 'untagged');
    assert.equal((await request(url, '/v2/gcns/untagged/manifests/latest', { method: 'DELETE' })).status, 202);
    const untaggedV1 = await pushV1(url, 'gcns/untaggedv1', 'old', [makeImage()]);
    assert.equal((await request(url, '/v1/repositories/gcns/untaggedv1/tags/old', { method: 'DELETE' })).status, 200);

    // standalone: v1 images are registry-wide and stay when their repository goes; untagged, they go with -m
    const garbage = [...goneV2.blobs.filter((b) => b !== shared).map(sha), goneV2.digest, ...goneRepo.blobs.map(sha), goneRepo.digest];
    for (const d of garbage) assert.ok(await blobExists(s.dataDir, d), `${d} stored before gc`);

    // within the grace period (default 1 h) nothing goes
    const young = await new GarbageCollector(createFilesystemDriver({ root: s.dataDir })).run({ dryRun: true, graceMs: 3_600_000, settleMs: 0 });
    assert.equal(young.blobs.deleted, 0);

    await new Promise((r) => setTimeout(r, 1100)); // older than the 1 s margin a zero grace keeps
    const before = await snapshot(s.dataDir);
    const dry = await cli(s.dataDir, '--dry-run', '--grace', '0');
    assert.deepEqual(await snapshot(s.dataDir), before, 'a dry run changes nothing');
    for (const d of garbage) assert.ok(dry.stdout.includes(`blob eligible for deletion: ${d}`), `${d} in the plan:\n${dry.stdout}`);
    for (const d of [...keptV1.chain.map((i) => sha(i.layer)), ...keptV2.blobs.map(sha), keptV2.digest, bridgedDoc.config.digest, sha(bridged.body)]) {
      assert.ok(!dry.stdout.includes(`blob eligible for deletion: ${d}`), `${d} kept`);
    }
    assert.match(dry.stdout, /would delete \d+ of \d+ blobs \(\d/);

    const real = await cli(s.dataDir, '--grace', '0');
    assert.match(real.stdout, new RegExp(`deleted ${garbage.length} of \\d+ blobs`), real.stdout);
    for (const d of garbage) assert.ok(!(await blobExists(s.dataDir, d)), `${d} freed`);
    assert.ok(await blobExists(s.dataDir, sha(shared)), 'a layer shared with a kept image stays');
    await assertV1Pulls(url, keptV1);
    await assertV2Pulls(url, keptV2);
    const again = await request(url, `/v2/gcns/keptv1/manifests/${sha(bridged.body)}`, { headers: { Accept: S2 } });
    assert.equal(again.status, 200, 'the derived manifest is still served by digest');
    assert.equal((await request(url, `/v2/gcns/keptv1/blobs/${bridgedDoc.config.digest}`)).status, 200, 'the derived config stays');
    // untagged content stays without --delete-untagged
    for (const b of untaggedV2.blobs) assert.ok(await blobExists(s.dataDir, sha(b)));
    assert.ok(await blobExists(s.dataDir, sha(untaggedV1.chain[0]!.layer)));
    assert.ok(await blobExists(s.dataDir, sha(goneV1.chain[0]!.layer)));

    const m = await cli(s.dataDir, '--grace', '0', '--delete-untagged');
    assert.match(m.stdout, /deleted 2 of \d+ v1 image records, 1 of \d+ v2 manifests/, m.stdout);
    assert.ok(!(await blobExists(s.dataDir, sha(goneV1.chain[0]!.layer))), "the deleted repository's registry-wide image freed with -m");
    for (const b of untaggedV2.blobs) assert.ok(!(await blobExists(s.dataDir, sha(b))), 'untagged v2 freed with -m');
    assert.ok(!(await blobExists(s.dataDir, sha(untaggedV1.chain[0]!.layer))), 'untagged v1 freed with -m');
    assert.equal((await request(url, `/v2/gcns/untagged/manifests/${untaggedV2.digest}`)).status, 404);
    await assertV1Pulls(url, keptV1);
    await assertV2Pulls(url, keptV2);
    assert.equal((await request(url, `/v2/gcns/keptv1/manifests/${sha(bridged.body)}`, { headers: { Accept: S2 } })).status, 200, 'derived view kept with -m');
    // a second run finds nothing more
    const idle = await new GarbageCollector(createFilesystemDriver({ root: s.dataDir })).run({ deleteUntagged: true, graceMs: 0, settleMs: 0 });
    assert.equal(idle.blobs.deleted + idle.v1Images.deleted + idle.v2Manifests.deleted + idle.links.deleted, 0, JSON.stringify(idle));
  });

  it('--delete-untagged keeps an index with its children and the referrers of a kept subject', async () => {
    const url = s.url;
    const children: V2Pushed[] = [];
    for (const arch of ['amd64', 'arm64']) children.push(await pushV2Chunked(url, 'gcns/multi', `tmp-${arch}`, `multi-${arch}`));
    const index = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: OCI_INDEX,
        manifests: children.map((c, i) => ({
          mediaType: S2,
          digest: c.digest,
          size: c.manifest.length,
          platform: { architecture: ['amd64', 'arm64'][i], os: 'linux' },
        })),
      }),
    );
    assert.equal((await request(url, '/v2/gcns/multi/manifests/latest', { method: 'PUT', body: index, headers: { 'Content-Type': OCI_INDEX } })).status, 201);
    // children lose their own tags: only the index reaches them
    for (const c of children) assert.equal((await request(url, `/v2/gcns/multi/manifests/${c.tag}`, { method: 'DELETE' })).status, 202);
    // an artifact whose subject is the index (a signature): a referrer of a kept subject
    const empty = Buffer.from('{}');
    assert.equal((await request(url, `/v2/gcns/multi/blobs/uploads/?digest=${sha(empty)}`, { method: 'POST', body: empty })).status, 201);
    const sig = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: OCI_MANIFEST,
        artifactType: 'application/vnd.example.signature',
        config: { mediaType: 'application/vnd.oci.empty.v1+json', digest: sha(empty), size: 2 },
        layers: [{ mediaType: 'application/vnd.oci.empty.v1+json', digest: sha(empty), size: 2 }],
        subject: { mediaType: OCI_INDEX, digest: sha(index), size: index.length },
      }),
    );
    assert.equal(
      (await request(url, `/v2/gcns/multi/manifests/${sha(sig)}`, { method: 'PUT', body: sig, headers: { 'Content-Type': OCI_MANIFEST } })).status,
      201,
    );
    const gone: string[] = [];
    const onItem = (kind: string, name: string): void => {
      if (kind === 'v2_manifest' && name.startsWith('gcns/multi@')) gone.push(name);
    };
    // older than the 1 s margin a zero grace keeps
    await new Promise((r) => setTimeout(r, 1100));
    await new GarbageCollector(createFilesystemDriver({ root: s.dataDir })).run({ deleteUntagged: true, graceMs: 0, settleMs: 100, onItem });
    assert.deepEqual(gone, []);
    for (const c of children) {
      const m = await request(url, `/v2/gcns/multi/manifests/${c.digest}`, { headers: { Accept: S2 } });
      assert.equal(m.status, 200);
      for (const b of c.blobs) assert.equal((await request(url, `/v2/gcns/multi/blobs/${sha(b)}`)).status, 200);
    }
    const refs = await request(url, `/v2/gcns/multi/referrers/${sha(index)}`);
    assert.equal(refs.json<{ manifests: { digest: string }[] }>().manifests[0]?.digest, sha(sig));
    // the index untagged: it, its children and its referrer all go
    assert.equal((await request(url, '/v2/gcns/multi/manifests/latest', { method: 'DELETE' })).status, 202);
    await new Promise((r) => setTimeout(r, 1100));
    await new GarbageCollector(createFilesystemDriver({ root: s.dataDir })).run({ deleteUntagged: true, graceMs: 0, settleMs: 100, onItem });
    assert.deepEqual(gone.sort(), [index, sig, ...children.map((c) => c.manifest)].map((b) => `gcns/multi@${sha(b)}`).sort());
    for (const c of children) for (const b of c.blobs) assert.ok(!(await blobExists(s.dataDir, sha(b))));
    assert.equal((await request(url, `/v2/gcns/multi/referrers/${sha(index)}`)).json<{ manifests: unknown[] }>().manifests.length, 0);
  });

  it('a manifest pushed between the mark and the sweep naming old, unreferenced blobs keeps them (the second mark)', async () => {
    const url = s.url;
    const layer = gzipSync(tarOf({ 'late.txt': `late ${Math.random()}\n` }));
    const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] }, late: Math.random() }));
    for (const b of [config, layer])
      assert.equal((await request(url, `/v2/race/late/blobs/uploads/?digest=${sha(b)}`, { method: 'POST', body: b })).status, 201);
    // the blobs and their links are an hour old: garbage for a 1-minute grace, until the manifest comes
    await age(join(s.dataDir, 'v2', 'repositories', 'race', 'late', '_layers'), 3_600_000);
    for (const b of [config, layer]) await age(join(s.dataDir, 'blobs', 'sha256', sha(b).slice(7, 9), sha(b).slice(7)), 3_600_000);
    const manifest = schema2Manifest(config, [layer]);
    // the push lands after the first mark (when GC starts scanning blobs)
    const driver = hooked(
      createFilesystemDriver({ root: s.dataDir }),
      'list',
      (k) => k === 'blobs/sha256',
      async () => {
        const put = await request(url, '/v2/race/late/manifests/latest', { method: 'PUT', body: manifest, headers: { 'Content-Type': S2 } });
        assert.equal(put.status, 201, put.text);
      },
    );
    const r = await new GarbageCollector(driver).run({ graceMs: 60_000, settleMs: 50 });
    assert.ok(r.blobs.candidates >= 2, `the first mark saw them as garbage: ${JSON.stringify(r.blobs)}`);
    await assertV2Pulls(url, { name: 'race/late', tag: 'latest', manifest, digest: sha(manifest), blobs: [config, layer] });
  });

  it('a blob pushed again just before its delete is put back (moved aside, then compared)', async () => {
    const url = s.url;
    const blob = Buffer.from(`again ${Math.random()}`);
    assert.equal((await request(url, `/v2/race/first/blobs/uploads/?digest=${sha(blob)}`, { method: 'POST', body: blob })).status, 201);
    assert.equal((await request(url, `/v1/repositories/race/first/`, { method: 'DELETE' })).status, 200);
    const hex = sha(blob).slice(7);
    await age(join(s.dataDir, 'blobs', 'sha256', hex.slice(0, 2), hex), 3_600_000);
    // the same bytes pushed by another repository at the last moment: published (fresh) and linked
    const driver = hooked(
      createFilesystemDriver({ root: s.dataDir }),
      'move',
      (k) => k === `blobs/sha256/${hex.slice(0, 2)}/${hex}/data`,
      async () => {
        assert.equal((await request(url, `/v2/race/second/blobs/uploads/?digest=${sha(blob)}`, { method: 'POST', body: blob })).status, 201);
      },
    );
    const r = await new GarbageCollector(driver).run({ graceMs: 60_000, settleMs: 0 });
    assert.ok(r.blobs.keptByRecheck >= 1, JSON.stringify(r.blobs));
    const got = await request(url, `/v2/race/second/blobs/${sha(blob)}`);
    assert.equal(got.status, 200);
    assert.deepEqual(got.body, blob);
  });

  it('during concurrent v1 and v2 pushes loses nothing: every pushed image pulls back byte-identical, and garbage is freed', async () => {
    const url = s.url;
    const driver = createFilesystemDriver({ root: s.dataDir });
    const gc = new GarbageCollector(driver);
    const v1: V1Pushed[] = [];
    const v2: V2Pushed[] = [];
    const garbage: string[] = [];
    const shared = gzipSync(tarOf({ 'shared-conc.txt': 'shared by many\n' }));
    let pushing = true;
    const results: GcResult[] = [];
    // GC in a loop, with a short grace (longer than one push's blobs-to-manifest time on a loaded machine) so that what the pushes leave behind is soon a candidate
    const gcLoop = (async () => {
      while (pushing) {
        results.push(await gc.run({ deleteUntagged: true, graceMs: 3000, settleMs: 300 }));
      }
    })();
    const pushers: Promise<void>[] = [];
    for (let w = 0; w < 3; w++) {
      pushers.push(
        (async () => {
          for (let i = 0; i < 5; i++) {
            const base = makeImage();
            const chain = [base, makeImage(base.id)];
            v1.push(await pushV1(url, `conc/v1w${w}`, `t${i}`, chain));
            v2.push(await pushV2Chunked(url, `conc/v2w${w}`, `t${i}`, `w${w}i${i}`, shared));
            // garbage made while gc runs: a pushed-then-deleted repository
            const g = await pushV2Chunked(url, `conc/garbage${w}x${i}`, 'x', `g${w}${i}`, shared);
            assert.equal((await request(url, `/v1/repositories/conc/garbage${w}x${i}/`, { method: 'DELETE' })).status, 200);
            garbage.push(...g.blobs.filter((b) => b !== shared).map(sha), g.digest);
            // the same content pushed again by another repository (republished, re-linked)
            await pushV2Chunked(url, `conc/again${w}`, `t${i}`, `again${w}`, shared);
          }
        })(),
      );
    }
    try {
      await Promise.all(pushers);
    } finally {
      pushing = false;
      await gcLoop;
    }
    assert.ok(results.length >= 2, `gc ran ${results.length} times during the pushes`);
    for (const p of v1) await assertV1Pulls(url, p);
    for (const p of v2) await assertV2Pulls(url, p);
    // once the grace period has passed, the garbage goes and the pushed images stay: the sweep's
    // cutoff is start − grace − 1 s (gc.ts), so the last garbage is a candidate 4 s after it was
    // written (3.1 s flaked on a quiet machine, where the pulls above take no time)
    await new Promise((r) => setTimeout(r, 4300));
    const last = await gc.run({ deleteUntagged: true, graceMs: 3000, settleMs: 100 });
    const freedDuring = results.reduce((a, r) => a + r.blobs.deleted, 0);
    for (const d of garbage) assert.ok(!(await blobExists(s.dataDir, d)), `${d} freed`);
    for (const p of v1) await assertV1Pulls(url, p);
    for (const p of v2) await assertV2Pulls(url, p);
    assert.ok(freedDuring + last.blobs.deleted >= garbage.length, `freed ${freedDuring} during, ${last.blobs.deleted} after`);
  });
});

describe('legacy-registry gc with accounts (images belong to repositories)', () => {
  let s: TestServer;
  const owner = ['gcowner', 'gcownerpw'] as const;
  before(async () => {
    s = await startTestServer({ bcrypt_cost: 4 });
    await saveUser(s.db!, { username: owner[0], email: 'gc@example.com', password: owner[1], active: true, admin: false }, { cost: 4 });
  });
  after(async () => {
    await s?.stop();
  });

  it('a repository deleted through the index frees its unshared layers without --delete-untagged', async () => {
    const site = new Site(s.url, s.url);
    const sharedFiles = { 'shared-base.txt': 'the same base layer in two repositories\n' };
    const keepChain = [makeImage(undefined, sharedFiles)];
    keepChain.push(makeImage(keepChain[0]!.id));
    const goneChain = [makeImage(undefined, sharedFiles)];
    goneChain.push(makeImage(goneChain[0]!.id));
    assert.equal(sha(keepChain[0]!.layer), sha(goneChain[0]!.layer), 'the base layers are the same bytes');
    await site.pushV1(`${owner[0]}/keep`, owner, keepChain);
    await site.pushV1(`${owner[0]}/gone`, owner, goneChain);
    const del = await request(s.url, `/v1/repositories/${owner[0]}/gone/`, { method: 'DELETE', headers: { Authorization: basic(owner[0], owner[1]) } });
    assert.ok(del.status === 200 || del.status === 202 || del.status === 204, `${del.status} ${del.text}`);
    await new Promise((r) => setTimeout(r, 1100));
    const r = await new GarbageCollector(createFilesystemDriver({ root: s.dataDir })).run({ graceMs: 0, settleMs: 100 });
    assert.equal(r.blobs.deleted, 1, JSON.stringify(r.blobs));
    assert.ok(!(await blobExists(s.dataDir, sha(goneChain[1]!.layer))), 'the unshared layer is freed');
    assert.ok(await blobExists(s.dataDir, sha(keepChain[0]!.layer)), 'the shared one stays');
    const token = await site.readToken(`${owner[0]}/keep`, owner);
    for (const img of keepChain) {
      const l = await site.regGet(`/v1/images/${img.id}/layer`, token);
      assert.equal(l.status, 200);
      assert.ok(l.body.equals(img.layer));
    }
  });
});

describe('periodic gc inside the server (gc_interval)', () => {
  it("frees a deleted manifest's blobs by itself and keeps the tagged image", async () => {
    const s = await startTestServer({ standalone: true, storage_delete: true, gc_interval: 1, gc_grace: 0, metadata_cache_ttl: 0 });
    try {
      const kept = await pushV2Chunked(s.url, 'periodic/kept', 'latest', 'periodic-kept');
      const gone = await pushV2Chunked(s.url, 'periodic/gone', 'latest', 'periodic-gone');
      assert.equal((await request(s.url, `/v2/periodic/gone/manifests/${gone.digest}`, { method: 'DELETE' })).status, 202);
      const deadline = Date.now() + 60_000;
      // every blob of the deleted manifest, not just one: a run deletes its candidates in parallel,
      // so one may be gone while the sweep is still on the others (a flake at load 20+)
      const anyLeft = async (): Promise<boolean> => (await Promise.all(gone.blobs.map((b) => blobExists(s.dataDir, sha(b))))).some(Boolean);
      while ((await anyLeft()) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 250));
      for (const b of gone.blobs) assert.ok(!(await blobExists(s.dataDir, sha(b))), `${sha(b)} freed by the server`);
      await assertV2Pulls(s.url, kept);
    } finally {
      await s.stop();
    }
  });
});

/** An image whose json is `bytes` long (a `comment` of padding), as a push under max_json_size may send. */
function imageWithJson(bytes: number): TestImage {
  const img = makeImage();
  const obj = { ...(JSON.parse(img.json.toString('utf8')) as Record<string, unknown>), comment: '' };
  const pad = bytes - Buffer.byteLength(JSON.stringify(obj));
  const json = Buffer.from(JSON.stringify({ ...obj, comment: 'x'.repeat(pad) }));
  return { ...img, json, payload: payloadChecksum(json, img.layer) };
}

describe('legacy-registry gc with max_json_size above the default', () => {
  const MAX_JSON = 12 * 1024 * 1024;
  let s: TestServer;
  before(async () => {
    s = await startTestServer({ standalone: true, storage_delete: true, max_json_size: MAX_JSON });
  });
  after(async () => {
    await s?.stop();
  });

  it('a tagged image with a 9 MiB json pushed under max_json_size 12 MiB is read and kept; a json far past the bound still fails the run, deleting nothing', async () => {
    const big = imageWithJson(9 * 1024 * 1024);
    assert.ok(big.json.length > 9 * 1024 * 1024 - 1 && big.json.length < MAX_JSON);
    const kept = await pushV1(s.url, 'gcbig/app', 'latest', [big]);
    const untagged = await pushV1(s.url, 'gcbig/old', 'old', [makeImage()]);
    assert.equal((await request(s.url, '/v1/repositories/gcbig/old/tags/old', { method: 'DELETE' })).status, 200);
    await new Promise((r) => setTimeout(r, 1100)); // older than the 1 s margin a zero grace keeps
    const env = { MAX_JSON_SIZE: String(MAX_JSON) };

    // the run reads the big json (the bridge's view of the tag) within max_json_size, not the default's bound
    const run = await gcCli(s.dataDir, ['--grace', '0', '--delete-untagged', '--quiet'], 120_000, env).catch((e: { stderr?: string }) =>
      assert.fail(`gc failed: ${e.stderr ?? String(e)}`),
    );
    assert.match(run.stdout, /deleted 1 of 2 v1 image records/, run.stdout);
    assert.ok(!(await blobExists(s.dataDir, sha(untagged.chain[0]!.layer))), 'the untagged image is collected');
    assert.ok(await blobExists(s.dataDir, sha(big.layer)), "the big image's layer stays");
    await assertV1Pulls(s.url, kept);

    // a json record far past max(max_json_size, max_config_size): not read, the run fails before it deletes anything
    const garbage = await pushV1(s.url, 'gcbig/old', 'old', [makeImage()]);
    assert.equal((await request(s.url, '/v1/repositories/gcbig/old/tags/old', { method: 'DELETE' })).status, 200);
    const jsonFile = join(s.dataDir, 'v1', 'images', big.id, 'json');
    await truncate(jsonFile, 64 * 1024 * 1024);
    await new Promise((r) => setTimeout(r, 1100));
    const failed = await gcCli(s.dataDir, ['--grace', '0', '--delete-untagged', '--quiet'], 120_000, env).then(
      (r) => assert.fail(`gc succeeded: ${r.stdout}`),
      (e: { code?: number; stderr?: string }) => e,
    );
    assert.notEqual(failed.code, 0);
    assert.match(String(failed.stderr), /holds more than the \d+ bytes expected/);
    assert.ok(await blobExists(s.dataDir, sha(garbage.chain[0]!.layer)), 'nothing deleted by the failed run');
  });
});

describe('periodic gc inside the server with max_json_size above the default', () => {
  it('reads a tagged 9 MiB image json (max_json_size 12 MiB) and goes on collecting', async () => {
    const s = await startTestServer({
      standalone: true,
      storage_delete: true,
      max_json_size: 12 * 1024 * 1024,
      gc_interval: 1,
      gc_grace: 0,
      metadata_cache_ttl: 0,
    });
    try {
      const big = await pushV1(s.url, 'periodicbig/app', 'latest', [imageWithJson(9 * 1024 * 1024)]);
      const gone = await pushV2Chunked(s.url, 'periodicbig/gone', 'latest', 'periodicbig-gone');
      assert.equal((await request(s.url, `/v2/periodicbig/gone/manifests/${gone.digest}`, { method: 'DELETE' })).status, 202);
      const deadline = Date.now() + 30_000;
      const anyLeft = async (): Promise<boolean> => (await Promise.all(gone.blobs.map((b) => blobExists(s.dataDir, sha(b))))).some(Boolean);
      while ((await anyLeft()) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 250));
      for (const b of gone.blobs) assert.ok(!(await blobExists(s.dataDir, sha(b))), `${sha(b)} freed by the server`);
      await assertV1Pulls(s.url, big);
    } finally {
      await s.stop();
    }
  });
});
