import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { loadConfig } from '../../src/config/load.js';
import { createLogger } from '../../src/log/logger.js';
import { startServer, type RunningServer } from '../../src/main.js';
import type { StorageDriver } from '../../src/storage/driver.js';
import { createDriver } from '../../src/storage/drivers/index.js';
import { request } from '../helpers/http.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { payloadChecksum, pushImage, putTag, sha256hex, tarOf, type TestImage } from '../helpers/v1-client.js';
import { pushV2 } from '../helpers/v2-client.js';

const S2 = 'application/vnd.docker.distribution.manifest.v2+json';
const S1 = 'application/vnd.docker.distribution.manifest.v1+prettyjws';
const code = (r: { json<T>(): T }): string | undefined => r.json<{ errors?: { code: string }[] }>().errors?.[0]?.code;

/** A v1 image whose container_config.Cmd is `cmd` (what the derived config's history copies, Go-escaped). */
function imageWithCmd(cmd: string, parent?: string): TestImage {
  const id = sha256hex(Buffer.from(`hostile-${Math.random()}-${Date.now()}`));
  const json = Buffer.from(JSON.stringify({ id, ...(parent ? { parent } : {}), created: '2015-01-01T00:00:00Z', container_config: { Cmd: [cmd] } }));
  const layer = gzipSync(tarOf({ [`${id.slice(0, 8)}.txt`]: id }));
  return { id, ...(parent ? { parent } : {}), json, layer, payload: payloadChecksum(json, layer) };
}

/**
 * The bridge's forms of a v1 chain are built from every image's JSON: the config takes a history entry
 * of each (Cmd, comment, author, Go-escaped: `<` is six bytes) and the top image's JSON whole. Nothing
 * bounded them: 25 images of 4 MiB JSON (each under max_json_size) made one GET of the tag build a
 * 600 MB config (9 s of the event loop, RSS over 1 GB, then 500 at V8's string limit); the schema1
 * form likewise (2 GB RSS). Both are now bounded by max_config_size, as a v2-pushed config is.
 */
describe('hostile v1 JSON seen through /v2/: the derived config and schema1 are bounded by max_config_size', () => {
  const LIMIT = 64 * 1024;
  let s: TestServer;
  const pushChain = async (repo: string, chain: TestImage[]): Promise<void> => {
    for (const img of chain) {
      const rs = await pushImage(s.url, img);
      assert.deepEqual(
        rs.slice(1).map((r) => r.status),
        [200, 200, 200],
        rs.map((r) => r.text).join(' | '),
      );
    }
    assert.equal((await putTag(s.url, repo, 'latest', chain[chain.length - 1]!.id)).status, 200);
  };
  before(async () => {
    s = await startTestServer({ standalone: true, v2: true, max_config_size: LIMIT });
  });
  after(() => s.stop());

  it('a chain holding more JSON than max_config_size: 404 MANIFEST_UNKNOWN for schema2 and schema1; v1 pulls it as pushed', async () => {
    const chain: TestImage[] = [];
    for (let i = 0; i < 3; i++) chain.push(imageWithCmd('x'.repeat(30 * 1024), chain.at(-1)?.id));
    await pushChain('hostile/many', chain);
    const v2 = await request(s.url, '/v2/hostile/many/manifests/latest', { headers: { Accept: S2 } });
    assert.equal(v2.status, 404, `${v2.status} ${v2.text.slice(0, 300)}`);
    assert.equal(code(v2), 'MANIFEST_UNKNOWN');
    const s1 = await request(s.url, '/v2/hostile/many/manifests/latest', { headers: { Accept: S1 } });
    assert.equal(s1.status, 404, `${s1.status} ${s1.text.slice(0, 300)}`);
    assert.equal(code(s1), 'MANIFEST_UNKNOWN');
    // the v1 view is untouched
    assert.deepEqual((await request(s.url, `/v1/images/${chain[2]!.id}/json`)).body, chain[2]!.json);
  });

  it('one image whose JSON is under the limit but whose config is over it (six bytes per `<`): 404', async () => {
    const img = imageWithCmd('<'.repeat(20 * 1024));
    await pushChain('hostile/escaped', [img]);
    const v2 = await request(s.url, '/v2/hostile/escaped/manifests/latest', { headers: { Accept: S2 } });
    assert.equal(v2.status, 404, `${v2.status} ${v2.text.slice(0, 300)}`);
    assert.equal(code(v2), 'MANIFEST_UNKNOWN');
  });

  it('a chain within the limit still has its v2 form, its config within the limit', async () => {
    const chain: TestImage[] = [];
    for (let i = 0; i < 3; i++) chain.push(imageWithCmd(`step ${i} <ok>`, chain.at(-1)?.id));
    await pushChain('hostile/fine', chain);
    const v2 = await request(s.url, '/v2/hostile/fine/manifests/latest', { headers: { Accept: S2 } });
    assert.equal(v2.status, 200, v2.text);
    const m = v2.json<{ config: { size: number; digest: string }; layers: unknown[] }>();
    assert.equal(m.layers.length, 3);
    assert.ok(m.config.size <= LIMIT);
    const cfg = await request(s.url, `/v2/hostile/fine/blobs/${m.config.digest}`);
    assert.equal(cfg.status, 200);
    assert.equal(cfg.body.length, m.config.size);
    assert.equal((await request(s.url, '/v2/hostile/fine/manifests/latest', { headers: { Accept: S1 } })).status, 200);
  });
});

/**
 * A delete by digest through v2 looks for the v1 tags whose derived manifest has the digest
 * (V1ToV2.tagsWithDigest). A v1 tag with no v2 form threw out of that search, so one bzip2 layer
 * pushed by Docker 1.x made every delete by digest in its repository, of v2 pushes too, 404
 * MANIFEST_UNKNOWN ("this v1 layer has no v2 media type").
 */
describe('a v1 tag without a v2 form does not stop deletes by digest in its repository', () => {
  let s: TestServer;
  before(async () => {
    s = await startTestServer({ standalone: true, v2: true, storage_delete: true });
  });
  after(() => s.stop());

  it('a bzip2 v1 tag beside a v2 push: the v2 manifest is deleted by digest (202) in v2 and v1; the v1 tag stays', async () => {
    const id = sha256hex(Buffer.from(`bzip2-${Math.random()}`));
    const json = Buffer.from(JSON.stringify({ id, created: '2015-01-01T00:00:00Z' }));
    const layer = Buffer.concat([Buffer.from('BZh91AY&SY'), Buffer.alloc(64, 1)]);
    const rs = await pushImage(s.url, { id, json, layer, payload: payloadChecksum(json, layer) });
    assert.deepEqual(
      rs.slice(1).map((r) => r.status),
      [200, 200, 200],
    );
    assert.equal((await putTag(s.url, 'mixed/repo', 'old', id)).status, 200);
    assert.equal((await request(s.url, '/v2/mixed/repo/manifests/old', { headers: { Accept: S2 } })).status, 404, 'no v2 form');
    const { digest } = await pushV2(s.url, 'mixed/repo', 'new');
    assert.ok('new' in (await request(s.url, '/v1/repositories/mixed/repo/tags')).json<Record<string, string>>());

    const del = await request(s.url, `/v2/mixed/repo/manifests/${digest}`, { method: 'DELETE' });
    assert.equal(del.status, 202, del.text);
    assert.equal((await request(s.url, '/v2/mixed/repo/manifests/new', { headers: { Accept: S2 } })).status, 404);
    assert.deepEqual((await request(s.url, '/v1/repositories/mixed/repo/tags')).json(), { old: id });
  });
});

/**
 * A delete by digest through v2 reads the tags on the digest, removes their v1 views, then deletes the
 * manifest and every tag on it, under the lock the bridge moves v1 tags under. A PUT of a tag to the
 * same digest writes its v2 tag without that lock: landing between the two, its tag was untagged in
 * v2 but its v1 tag, still the tag's previous image, stayed. v1 clients pulled the old image under a
 * tag v2 said did not exist, for good.
 */
describe('a tag put on a digest while that digest is deleted through v2 goes in v1 too', () => {
  let s: RunningServer;
  let dataDir: string;
  /** Run once before the next delete of a key reaches the storage. */
  let beforeDelete: ((key: string) => Promise<void>) | undefined;
  /** Told of every putContent once it is done. */
  let afterPut: ((key: string) => void) | undefined;
  before(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'lr-test-'));
    const config = loadConfig({
      env: {},
      flavor: 'test',
      overrides: { host: '127.0.0.1', port: 0, storage_path: dataDir, loglevel: 'silent', standalone: true, v2: true, storage_delete: true },
    });
    const base = await createDriver(config);
    const driver = new Proxy(base, {
      get(target, prop) {
        const v = Reflect.get(target, prop, target) as unknown;
        if (prop === 'delete')
          return async (key: string) => {
            const hook = beforeDelete;
            beforeDelete = undefined;
            if (hook) await hook(key);
            return base.delete(key);
          };
        if (prop === 'putContent')
          return async (...args: Parameters<StorageDriver['putContent']>) => {
            await base.putContent(...args);
            afterPut?.(args[0]);
          };
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    });
    s = await startServer(config, { role: 'all', logger: createLogger('silent'), driver });
  });
  after(async () => {
    await s.close();
    await rm(dataDir, { recursive: true, force: true });
  });

  it('PUT t (on image E) → D lands inside DELETE D: both answer, and t is gone in v2 and in v1', async () => {
    await pushV2(s.url, 'race/app', 't', {}, 'image E');
    const d = await pushV2(s.url, 'race/app', 'd', {}, 'image D');
    const before = (await request(s.url, '/v1/repositories/race/app/tags')).json<Record<string, string>>();
    assert.deepEqual(Object.keys(before).sort(), ['d', 't']);

    let put: Promise<Awaited<ReturnType<typeof request>>> | undefined;
    // the delete's first storage delete (the v1 view of `d`) comes after it read the tags on D
    beforeDelete = async () => {
      const written = new Promise<void>((resolve) => {
        afterPut = (key) => {
          if (key.endsWith('/_manifests/tags/t')) resolve();
        };
      });
      put = request(s.url, '/v2/race/app/manifests/t', { method: 'PUT', body: d.manifest, headers: { 'Content-Type': S2 } });
      await written;
    };
    const del = await request(s.url, `/v2/race/app/manifests/${d.digest}`, { method: 'DELETE' });
    afterPut = undefined;
    assert.equal(del.status, 202, del.text);
    assert.ok(put, 'the PUT ran inside the delete');
    assert.equal((await put).status, 201);

    assert.equal((await request(s.url, '/v2/race/app/manifests/t', { headers: { Accept: S2 } })).status, 404);
    assert.deepEqual((await request(s.url, '/v2/race/app/tags/list')).json<{ tags: string[] }>().tags, []);
    assert.deepEqual((await request(s.url, '/v1/repositories/race/app/tags')).json(), {}, 'no v1 tag v2 does not have');
  });
});
