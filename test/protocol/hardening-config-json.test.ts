import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { gzipSync } from 'node:zlib';
import { request } from '../helpers/http.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { tarOf } from '../helpers/v1-client.js';
import { pushV2Image, S2, sha, Site, type Creds, type V2Image } from '../helpers/accounts.js';
import { saveUser } from '../../src/db/users.js';

const ALICE: Creds = ['alice', 'alicepw1'];
const SCHEMA1 = 'application/vnd.docker.distribution.manifest.v1+prettyjws';
const HTML = { Accept: 'text/html' };
const nested = (depth: number): string => '['.repeat(depth) + ']'.repeat(depth);

/** A one-layer schema2 image whose config has a full history (a v1 and schema1 view) plus `extra` as its member "x". */
function imageWith(extra: string): V2Image {
  const tar = tarOf({ 'f.txt': `${extra.length}\n` });
  const layer = gzipSync(tar);
  const config = Buffer.from(
    `{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["${sha(tar)}"]},` +
      `"history":[{"created":"2020-01-01T00:00:00Z","created_by":"ADD f.txt"}],"x":${extra}}`,
  );
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: S2,
      config: { mediaType: 'application/vnd.docker.container.image.v1+json', size: config.length, digest: sha(config) },
      layers: [{ mediaType: 'application/vnd.docker.image.rootfs.diff.tar.gzip', size: layer.length, digest: sha(layer) }],
    }),
  );
  return { config, layers: [layer], tars: [tar], manifest, digest: sha(manifest) };
}

/**
 * The longest the event loop (server and client share this process) went without running a timer
 * while `work` ran: what any other client of the server waited at least.
 */
async function longestStall<T>(work: () => Promise<T>): Promise<{ value: T; stallMs: number }> {
  let last = performance.now();
  let stallMs = 0;
  const t = setInterval(() => {
    const now = performance.now();
    stallMs = Math.max(stallMs, now - last);
    last = now;
  }, 5);
  try {
    const value = await work();
    const now = performance.now();
    stallMs = Math.max(stallMs, now - last);
    return { value, stallMs };
  } finally {
    clearInterval(t);
  }
}

/**
 * v2 image configs (up to max_config_size, 8 MiB) were parsed by the bridge without the depth check
 * every other JSON the server parses has: the v1 view written at the manifest PUT, the signed schema1
 * of every GET by a client that accepts nothing newer (parsed twice) and the web UI's tag page (three
 * times). A config with 4 MiB of nested arrays, pushed once to a public repository, held the event loop
 * ~2 s per anonymous schema1 GET or tag page view. The config is a v2 blob like any other (distribution
 * takes any config), so the push stands and v2 clients get it; only the bridge's views are refused.
 */
describe('hardening: a v2 image config is checked for depth before the bridge parses it', () => {
  let s: TestServer;
  let site: Site;
  const deep = imageWith(nested(2_000_000));
  const ok = imageWith(nested(63));

  before(async () => {
    s = await startTestServer({ bcrypt_cost: 4 });
    await saveUser(s.db!, { username: 'alice', email: 'alice@example.com', password: 'alicepw1', active: true }, { cost: 4 });
    site = new Site(s.url, s.url);
  });
  after(() => s?.stop());

  it('the push of an image with a config nested deeper than 64 levels stands for v2 clients, without a v1 view, and without stalling', async () => {
    const token = await site.bearer(ALICE, 'repository:alice/deep:pull,push');
    const { stallMs } = await longestStall(() => pushV2Image(site, 'alice/deep', 'bad', token, deep));
    assert.ok(stallMs < 500, `the event loop stalled ${Math.round(stallMs)} ms during the push`);
    const m = await site.v2('/v2/alice/deep/manifests/bad', token, { headers: { Accept: S2 } });
    assert.equal(m.status, 200, m.text);
    assert.deepEqual(m.body, deep.manifest);
    const c = await site.v2(`/v2/alice/deep/blobs/${sha(deep.config)}`, token);
    assert.equal(c.status, 200);
    assert.equal(c.body.length, deep.config.length);
    // no v1 view was written (as for any image without one): the v1 registry has no tags for it
    const tags = await site.regGet('/v1/repositories/alice/deep/tags', await site.readToken('alice/deep', undefined));
    assert.equal(tags.status, 404, tags.text);
  });

  it('a schema1 GET of it (anonymous, public repository) is a quick 404 MANIFEST_UNKNOWN saying why', async () => {
    const anonymous = await site.bearer(undefined, 'repository:alice/deep:pull');
    const { value: r, stallMs } = await longestStall(async () => {
      // what a concurrent client waits: the /v2/ ping sent alongside three schema1 GETs
      const pings: Promise<number>[] = [];
      const gets = [0, 1, 2].map(() => {
        const t0 = performance.now();
        pings.push(request(s.url, '/v2/').then(() => performance.now() - t0));
        return site.v2('/v2/alice/deep/manifests/bad', anonymous, { headers: { Accept: SCHEMA1 } });
      });
      const rs = await Promise.all(gets);
      const ping = Math.max(...(await Promise.all(pings)));
      assert.ok(ping < 1000, `/v2/ took ${Math.round(ping)} ms beside the schema1 GETs`);
      return rs[0]!;
    });
    assert.ok(stallMs < 500, `the event loop stalled ${Math.round(stallMs)} ms`);
    assert.equal(r.status, 404, r.text);
    const err = r.json<{ errors: { code: string; message: string }[] }>().errors[0]!;
    assert.equal(err.code, 'MANIFEST_UNKNOWN');
    assert.match(err.message, /nested deeper than 64/);
  });

  it('the web tag page of it answers quickly, with the reason instead of the layers', async () => {
    const { value: r, stallMs } = await longestStall(() => request(s.url, '/u/alice/deep/tags/bad/', { headers: HTML }));
    assert.ok(stallMs < 500, `the event loop stalled ${Math.round(stallMs)} ms`);
    assert.equal(r.status, 200, r.text);
    assert.match(r.text, /nested deeper than 64/);
  });

  it('a config nested 64 levels in all still has its v1 and schema1 views', async () => {
    const token = await site.bearer(ALICE, 'repository:alice/fine:pull,push');
    await pushV2Image(site, 'alice/fine', 'ok', token, ok);
    const r = await site.v2('/v2/alice/fine/manifests/ok', token, { headers: { Accept: SCHEMA1 } });
    assert.equal(r.status, 200, r.text);
    const tags = await site.regGet('/v1/repositories/alice/fine/tags', await site.readToken('alice/fine', undefined));
    assert.equal(Object.keys(tags.json<Record<string, string>>()).length, 1, tags.text);
  });
});
