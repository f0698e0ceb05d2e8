import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { request, type Response } from '../helpers/http.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { makeImage, payloadChecksum, pushImage, putTag, tarOf, type TestImage } from '../helpers/v1-client.js';
import { basic, pushV2Image, S2, sha, Site, v2Image, type Creds, type V2Image } from '../helpers/accounts.js';
import { findUserByName, saveUser, setActive } from '../../src/db/users.js';
import { addCollaborator, findRepository, removeCollaborator } from '../../src/db/repositories.js';
import { gzipSync } from 'node:zlib';

/**
 * The in-memory caches in front of storage and the database (src/storage/drivers/caching.ts, the
 * answer caches of src/v2/, the v1 image records of src/content/v1-images.ts, the small-blob cache,
 * the token validation cache, the grant cache of the in-memory search, the web UI's derived
 * manifests, the v1 mirror's answers) against the first invariant: reading needs read access to a
 * repository that truly holds the content, now, not when the cache was filled.
 *
 * Every cache is warmed first by an account allowed to read, then the repository's state changes,
 * then every account reads again with credentials it asks for afresh (a client gets a new token per
 * pull). The TTLs are long (30 s) so that an answer kept past a change it should have dropped shows.
 */

type Actor = 'owner' | 'collab' | 'other' | 'anonymous';
const ACTORS: readonly Actor[] = ['owner', 'collab', 'other', 'anonymous'];
const CREDS: Record<Actor, Creds> = {
  owner: ['alice', 'alicepw'],
  collab: ['carl', 'carlpw'],
  other: ['otto', 'ottopw'],
  anonymous: undefined,
};

/** What one repository holds: a v1 chain tagged `v1`, a v2 image tagged `v2` (small config blob). */
interface Content {
  readonly chain: readonly TestImage[];
  readonly v2: V2Image;
}

type Row = Record<string, string>;

const auth = (c: Creds): Record<string, string> => (c ? { Authorization: basic(c[0], c[1]) } : {});

/** An image with the id of `img` but other bytes (a client chooses v1 ids). */
function sameIdOtherBytes(img: TestImage): TestImage {
  const json = Buffer.from(JSON.stringify({ ...(JSON.parse(img.json.toString('utf8')) as object), comment: `other bytes ${Math.random()}` }));
  const layer = gzipSync(tarOf({ 'other.txt': `other ${Math.random()}\n` }));
  return { id: img.id, ...(img.parent ? { parent: img.parent } : {}), json, layer, payload: payloadChecksum(json, layer) };
}

describe('caches on read paths: accounts × repository states × routes, warm first', () => {
  let s: TestServer;
  let site: Site;
  const content = new Map<string, Content>();
  /** What each repository held before its change (the re-created one: its first life). */
  const before0 = new Map<string, Content>();

  async function pushAll(name: string, c: Content): Promise<void> {
    await site.pushV1(name, CREDS.owner, c.chain, 'v1');
    const token = await site.bearer(CREDS.owner, `repository:${name}:pull,push`);
    await pushV2Image(site, name, 'v2', token, c.v2);
  }

  before(async () => {
    s = await startTestServer({ v2: true, storage_delete: true, bcrypt_cost: 4, metadata_cache_ttl: 30, token_cache_ttl: 30 });
    site = new Site(s.url, s.url);
    const db = s.db!;
    for (const c of Object.values(CREDS))
      if (c) await saveUser(db, { username: c[0], email: `${c[0]}@example.com`, password: c[1], active: true }, { cost: 4 });
    // where refused actors' own v1 tokens come from (a public repository anyone may read)
    await site.pushV1('otto/own', CREDS.other, [makeImage()]);
  });
  after(async () => {
    await s?.stop();
  });

  async function setup(name: string, state: 'public' | 'private'): Promise<Content> {
    const root = makeImage();
    const c: Content = { chain: [root, makeImage(root.id)], v2: v2Image(name) };
    await pushAll(name, c);
    content.set(name, c);
    const [ns, repo] = name.split('/') as [string, string];
    const record = (await findRepository(s.db!, ns, repo))!;
    await addCollaborator(s.db!, record.id, (await findUserByName(s.db!, 'carl'))!.id, 'read');
    if (state === 'private') await site.setAccess(name, CREDS.owner, 'private');
    return c;
  }

  const status = (r: Response): string => String(r.status);

  /** Every read route as one actor sees one repository, with credentials asked for now. */
  async function observe(actor: Actor, name: string, c: Content, at: Site = site): Promise<Row> {
    const site = at;
    const url = at.reg;
    const cr = CREDS[actor];
    const [root, top] = c.chain as [TestImage, TestImage];
    const row: Row = {};
    const i8 = await site.images(name, cr);
    row.i8 = status(i8);
    const token = i8.status === 200 ? String(i8.headers['x-docker-token']) : await site.readToken('otto/own', cr);
    const tags = await site.regGet(`/v1/repositories/${name}/tags`, token);
    row.v1tags = status(tags);
    if (tags.status === 200) assert.deepEqual(tags.json(), { v1: top.id, v2: tags.json<Record<string, string>>().v2 }, `${actor} ${name}: v1 tags`);
    for (const [k, path, want] of [
      ['json', `/v1/images/${top.id}/json`, top.json],
      ['ancestry', `/v1/images/${top.id}/ancestry`, Buffer.from(JSON.stringify([top.id, root.id]))],
      ['layer', `/v1/images/${root.id}/layer`, root.layer],
    ] as const) {
      const r = await site.regGet(path, token);
      row[k] = status(r);
      // a v1 image URL names no repository: an answer to a request with credentials must not be
      // kept by a shared cache in front (a proxy, a CDN) for whoever asks for the same URL
      if (r.status === 200) assert.equal(r.headers['cache-control'], 'private, max-age=31536000', `${actor} ${name}: ${k} Cache-Control`);
      if (r.status === 200) {
        if (k === 'ancestry') assert.deepEqual(r.json(), JSON.parse(want.toString('utf8')), `${actor} ${name}: ${k}`);
        else assert.deepEqual(r.body, want, `${actor} ${name}: ${k} bytes`);
      }
    }
    const bearer = await site.bearer(cr, `repository:${name}:pull`);
    const img = c.v2;
    const configDigest = sha(img.config);
    const layerDigest = sha(img.layers[0]!);
    const v2 = async (k: string, path: string, want: Buffer | undefined, opts: { method?: string; headers?: Record<string, string> } = {}) => {
      const r = await site.v2(path, bearer, opts);
      row[k] = status(r);
      if (r.status === 200 && want && opts.method !== 'HEAD') assert.deepEqual(r.body, want, `${actor} ${name}: ${k} bytes`);
      return r;
    };
    await v2('manifestTag', `/v2/${name}/manifests/v2`, img.manifest, { headers: { Accept: S2 } });
    await v2('manifestDigest', `/v2/${name}/manifests/${img.digest}`, img.manifest, { headers: { Accept: S2 } });
    const bridge = await v2('bridge', `/v2/${name}/manifests/v1`, undefined, { headers: { Accept: S2 } });
    if (bridge.status === 200) {
      // the bridge's view is of the current v1 chain: its layers are the chain's
      const layers = bridge.json<{ layers: { digest: string }[] }>().layers.map((l) => l.digest);
      assert.deepEqual(layers, [sha(root.layer), sha(top.layer)], `${actor} ${name}: bridge layers`);
    }
    await v2('configGet', `/v2/${name}/blobs/${configDigest}`, img.config);
    await v2('configHead', `/v2/${name}/blobs/${configDigest}`, undefined, { method: 'HEAD' });
    await v2('blobGet', `/v2/${name}/blobs/${layerDigest}`, img.layers[0]);
    await v2('blobHead', `/v2/${name}/blobs/${layerDigest}`, undefined, { method: 'HEAD' });
    const tl = await v2('tagsList', `/v2/${name}/tags/list`, undefined);
    if (tl.status === 200) assert.deepEqual(tl.json(), { name, tags: ['v1', 'v2'] });
    const cat = await site.v2('/v2/_catalog?n=1000', await site.bearer(cr, 'registry:catalog:*'));
    row.catalog = cat.status !== 200 ? status(cat) : cat.json<{ repositories: string[] }>().repositories.includes(name) ? 'listed' : 'absent';
    const search = await request(url, `/v1/search?q=${name.split('/')[1]}&n=100`, { headers: auth(cr) });
    row.search = search.json<{ results: { name: string }[] }>().results.some((x) => x.name === name) ? 'listed' : 'absent';
    row.web = actor === 'anonymous' ? status(await request(url, `/u/${name}/`, { headers: { Accept: 'text/html' } })) : '-';
    return row;
  }

  /** The row a reader (true) or a refused caller (false) gets. */
  function expected(actor: Actor, readable: boolean): Row {
    const anon = actor === 'anonymous';
    const v1 = (ok: string, no: string): string => (readable ? ok : no);
    const row: Row = {
      i8: v1('200', anon ? '401' : '404'),
      v1tags: v1('200', '401'),
      json: v1('200', '404'),
      ancestry: v1('200', '404'),
      layer: v1('200', '404'),
    };
    for (const k of ['manifestTag', 'manifestDigest', 'bridge', 'configGet', 'configHead', 'blobGet', 'blobHead', 'tagsList']) row[k] = v1('200', '401');
    row.catalog = anon ? '401' : v1('listed', 'absent');
    row.search = v1('listed', 'absent');
    row.web = anon ? v1('200', '404') : '-';
    return row;
  }

  async function table(name: string, readers: readonly Actor[], c = content.get(name)!, at: Site = site): Promise<void> {
    const got: Record<string, Row> = {};
    const want: Record<string, Row> = {};
    for (const a of ACTORS) {
      got[a] = await observe(a, name, c, at);
      want[a] = expected(a, readers.includes(a));
    }
    assert.deepEqual(got, want);
  }

  it('public and private repositories, each read twice (cold, then from every cache)', async () => {
    await setup('alice/pub', 'public');
    await setup('alice/priv', 'private');
    for (let i = 0; i < 2; i++) {
      await table('alice/pub', ACTORS);
      await table('alice/priv', ['owner', 'collab']);
    }
  });

  it('made private after everyone read it: only the owner and the collaborator read it now', async () => {
    await setup('alice/turned', 'public');
    await table('alice/turned', ACTORS);
    await site.setAccess('alice/turned', CREDS.owner, 'private');
    await table('alice/turned', ['owner', 'collab']);
    // and public again
    await site.setAccess('alice/turned', CREDS.owner, 'public');
    await table('alice/turned', ACTORS);
  });

  it("a collaborator's access revoked after it read: refused at once, the owner unaffected", async () => {
    await setup('alice/revoked', 'private');
    await table('alice/revoked', ['owner', 'collab']);
    const record = (await findRepository(s.db!, 'alice', 'revoked'))!;
    const carl = (await findUserByName(s.db!, 'carl'))!;
    assert.ok(await removeCollaborator(s.db!, record.id, carl.id));
    await table('alice/revoked', ['owner']);
    await addCollaborator(s.db!, record.id, carl.id, 'read');
    await table('alice/revoked', ['owner', 'collab']);
  });

  it('an account deactivated after it read: refused at once', async () => {
    await setup('alice/inactive', 'private');
    await table('alice/inactive', ['owner', 'collab']);
    const carl = (await findUserByName(s.db!, 'carl'))!;
    await setActive(s.db!, carl.id, false);
    try {
      // a deactivated account is refused its credentials: 403 from the index, no token
      assert.equal((await site.images('alice/inactive', CREDS.collab)).status, 403);
      const tok = await request(s.url, `/v2/token?service=${await site.v2Service()}&scope=repository:alice/inactive:pull`, { headers: auth(CREDS.collab) });
      assert.notEqual(tok.status, 200, 'no v2 token for a deactivated account');
    } finally {
      await setActive(s.db!, carl.id, true);
    }
  });

  it('deleted and re-created under the same name with other content (same v1 ids): nothing of the first life is served', async () => {
    const first = await setup('alice/again', 'private');
    before0.set('alice/again', first);
    await table('alice/again', ['owner', 'collab']);
    const del = await request(s.url, '/v1/repositories/alice/again/', { method: 'DELETE', headers: auth(CREDS.owner) });
    assert.equal(del.status, 202, del.text);
    const purge = await request(s.url, '/v1/repositories/alice/again/', { method: 'DELETE', headers: auth(CREDS.owner) });
    assert.equal(purge.status, 200, purge.text);
    // gone for everyone, the owner included, with warm caches
    for (const a of ACTORS) {
      const row = await observe(a, 'alice/again', first);
      for (const k of ['json', 'ancestry', 'layer', 'manifestDigest', 'configGet', 'blobGet', 'manifestTag', 'bridge', 'tagsList']) {
        assert.ok(['401', '404'].includes(row[k]!), `${a} ${k} after delete: ${row[k]}`);
      }
    }
    // the name again, public this time (so every caller could read what a cache kept), the same v1
    // ids with other bytes, another v2 image
    const [root0, top0] = first.chain as [TestImage, TestImage];
    const root = sameIdOtherBytes(root0);
    const top = sameIdOtherBytes({ ...top0, parent: root.id });
    const second: Content = { chain: [root, top], v2: v2Image('alice/again second') };
    await pushAll('alice/again', second);
    content.set('alice/again', second);
    await table('alice/again', ACTORS, second);
    // nothing of the first life: its v2 digests are unknown, whoever asks
    for (const a of ACTORS) {
      const bearer = await site.bearer(CREDS[a], 'repository:alice/again:pull');
      for (const path of [
        `/v2/alice/again/manifests/${first.v2.digest}`,
        `/v2/alice/again/blobs/${sha(first.v2.config)}`,
        `/v2/alice/again/blobs/${sha(first.v2.layers[0]!)}`,
      ]) {
        assert.equal((await site.v2(path, bearer, { headers: { Accept: S2 } })).status, 404, `${a} ${path}`);
      }
    }
  });

  it('the web UI after a re-creation with the same v1 ids: the digest the bridge serves now, not the first life’s', async () => {
    const first = await setup('alice/webagain', 'public');
    const digestOnPage = async (): Promise<string | undefined> => {
      const page = await request(s.url, '/u/alice/webagain/', { headers: { Accept: 'text/html' } });
      assert.equal(page.status, 200);
      return /<tr data-tag="v1">[\s\S]*?data-digest="([^"]*)"/.exec(page.text)?.[1];
    };
    const bridged = async (): Promise<string> => {
      const r = await site.v2('/v2/alice/webagain/manifests/v1', await site.bearer(undefined, 'repository:alice/webagain:pull'), { headers: { Accept: S2 } });
      assert.equal(r.status, 200);
      return String(r.headers['docker-content-digest']);
    };
    assert.equal(await digestOnPage(), await bridged());
    for (const status of [202, 200]) {
      assert.equal((await request(s.url, '/v1/repositories/alice/webagain/', { method: 'DELETE', headers: auth(CREDS.owner) })).status, status);
    }
    const [root0, top0] = first.chain as [TestImage, TestImage];
    const root = sameIdOtherBytes(root0);
    const top = sameIdOtherBytes({ ...top0, parent: root.id });
    await pushAll('alice/webagain', { chain: [root, top], v2: v2Image('alice/webagain second') });
    await site.setAccess('alice/webagain', CREDS.owner, 'public');
    const now = await bridged();
    assert.notEqual(now, sha(Buffer.alloc(0)));
    assert.equal(await digestOnPage(), now, 'the web UI shows the digest a pull of the tag gets now');
  });

  it('the same image in a private and a public repository, deleted from the public one: nobody reads it through the public one', async () => {
    const img = v2Image('shared');
    const chain = [makeImage()];
    // alice's private copy and otto's public one: same v1 id and bytes, same v2 digests
    await site.pushV1('alice/secret', CREDS.owner, chain, 'v1');
    await pushV2Image(site, 'alice/secret', 'v2', await site.bearer(CREDS.owner, 'repository:alice/secret:pull,push'), img);
    await site.setAccess('alice/secret', CREDS.owner, 'private');
    await site.pushV1('otto/shared', CREDS.other, chain, 'v1');
    const ottoPush = await site.bearer(CREDS.other, 'repository:otto/shared:pull,push,delete');
    await pushV2Image(site, 'otto/shared', 'v2', ottoPush, img);
    const paths = [
      `/v2/otto/shared/manifests/v2`,
      `/v2/otto/shared/manifests/${img.digest}`,
      `/v2/otto/shared/blobs/${sha(img.config)}`,
      `/v2/otto/shared/blobs/${sha(img.layers[0]!)}`,
    ];
    // anonymous warms every cache through the public copy
    const anonPull = await site.bearer(undefined, 'repository:otto/shared:pull');
    for (const p of paths) assert.equal((await site.v2(p, anonPull, { headers: { Accept: S2 } })).status, 200, p);
    const anonV1 = (await site.readToken('otto/shared', undefined))!;
    assert.equal((await site.regGet(`/v1/images/${chain[0]!.id}/json`, anonV1)).status, 200);
    // otto deletes the v2 image (manifest, blob links) and then the whole repository
    assert.equal((await site.v2(`/v2/otto/shared/manifests/${img.digest}`, ottoPush, { method: 'DELETE' })).status, 202);
    for (const b of [img.config, ...img.layers]) assert.equal((await site.v2(`/v2/otto/shared/blobs/${sha(b)}`, ottoPush, { method: 'DELETE' })).status, 202);
    for (const p of paths) {
      const r = await site.v2(p, await site.bearer(undefined, 'repository:otto/shared:pull'), { headers: { Accept: S2 } });
      assert.equal(r.status, 404, `${p} after delete: ${r.status}`);
    }
    for (const status of [202, 200]) {
      assert.equal((await request(s.url, '/v1/repositories/otto/shared/', { method: 'DELETE', headers: auth(CREDS.other) })).status, status);
    }
    // the id through any token anonymous can get: not found; the private copy: refused
    const other = (await site.readToken('otto/own', undefined))!;
    assert.equal((await site.regGet(`/v1/images/${chain[0]!.id}/json`, other)).status, 404);
    // the token of the deleted repository may still pass the registry's token cache (token_cache_ttl):
    // then the image is not found in its scope; either way nothing is served
    assert.ok([401, 404].includes((await site.regGet(`/v1/images/${chain[0]!.id}/json`, anonV1)).status), 'the token of the deleted repository');
    const anonSecret = await site.bearer(undefined, 'repository:alice/secret:pull');
    for (const p of paths) assert.equal((await site.v2(p.replace('otto/shared', 'alice/secret'), anonSecret, { headers: { Accept: S2 } })).status, 401);
    // the owner still reads its own copy, bytes intact
    const own = await site.bearer(CREDS.owner, 'repository:alice/secret:pull');
    const cfg = await site.v2(`/v2/alice/secret/blobs/${sha(img.config)}`, own);
    assert.equal(cfg.status, 200);
    assert.deepEqual(cfg.body, img.config);
  });

  it('two nodes on one storage and database: a change made through node B, read on node A whose caches are warm', async () => {
    const b = await startTestServer({ v2: true, storage_delete: true, bcrypt_cost: 4, metadata_cache_ttl: 30, token_cache_ttl: 30 }, { dataDir: s.dataDir });
    try {
      const onB = new Site(b.url, b.url);
      await setup('alice/multi', 'public');
      await table('alice/multi', ACTORS);
      // made private through node B's index
      await onB.setAccess('alice/multi', CREDS.owner, 'private');
      // (node A's search learns of another process's change within 250 ms: RECHECK_MS)
      await new Promise((r) => setTimeout(r, 400));
      await table('alice/multi', ['owner', 'collab']);
      // the collaborator removed by another process
      const record = (await findRepository(b.db!, 'alice', 'multi'))!;
      assert.ok(await removeCollaborator(b.db!, record.id, (await findUserByName(b.db!, 'carl'))!.id));
      await new Promise((r) => setTimeout(r, 400));
      await table('alice/multi', ['owner']);
      // deleted through node B: on node A nobody but the namespace's owner is let in, and the owner
      // may see node A's kept answers for at most metadata_cache_ttl (docs/scale-out.md)
      for (const st of [202, 200])
        assert.equal((await request(b.url, '/v1/repositories/alice/multi/', { method: 'DELETE', headers: auth(CREDS.owner) })).status, st);
      await new Promise((r) => setTimeout(r, 400));
      for (const a of ACTORS.filter((x) => x !== 'owner')) {
        const row = await observe(a, 'alice/multi', content.get('alice/multi')!);
        for (const [k, v] of Object.entries(row)) assert.ok(!['200', 'listed'].includes(v), `${a} ${k} on node A after B deleted: ${v}`);
      }
    } finally {
      await b.stop();
    }
  });

  it('a v1 token the index issued before a change: kept no longer than token_cache_ttl (documented), refused after', async () => {
    // a separate node with a short token cache on the same storage and database
    const short = await startTestServer({ v2: true, bcrypt_cost: 4, metadata_cache_ttl: 30, token_cache_ttl: 1 }, { dataDir: s.dataDir });
    try {
      const shortSite = new Site(short.url, short.url);
      const c = await setup('alice/lapse', 'private');
      const top = c.chain[1]!;
      const token = (await shortSite.readToken('alice/lapse', CREDS.collab))!;
      assert.equal((await shortSite.regGet(`/v1/images/${top.id}/json`, token)).status, 200);
      const record = (await findRepository(s.db!, 'alice', 'lapse'))!;
      await removeCollaborator(s.db!, record.id, (await findUserByName(s.db!, 'carl'))!.id);
      await new Promise((r) => setTimeout(r, 1300));
      assert.equal((await shortSite.regGet(`/v1/images/${top.id}/json`, token)).status, 401, 'the old token, after token_cache_ttl');
      assert.equal((await shortSite.regGet(`/v1/repositories/alice/lapse/tags`, token)).status, 401);
    } finally {
      await short.stop();
    }
  });

  it('tags moved and deleted after a warm read: the current answer at once', async () => {
    const c = await setup('alice/moving', 'public');
    await table('alice/moving', ACTORS);
    // v1: the tag moves to a new image, then v2: the tag moves to another manifest
    const next = makeImage(c.chain[1]!.id);
    const wtoken = await site.claim('alice/moving', CREDS.owner, [next.id], '');
    const pushed = await pushImage(s.url, next, wtoken);
    assert.equal(pushed.at(-1)!.status, 200);
    assert.equal((await putTag(s.url, 'alice/moving', 'v1', next.id, wtoken)).status, 200);
    const img2 = v2Image('alice/moving 2');
    const push = await site.bearer(CREDS.owner, 'repository:alice/moving:pull,push,delete');
    await pushV2Image(site, 'alice/moving', 'v2', push, img2);
    const anonV1 = (await site.readToken('alice/moving', undefined))!;
    assert.equal((await site.regGet('/v1/repositories/alice/moving/tags/v1', anonV1)).json(), next.id);
    const anon = await site.bearer(undefined, 'repository:alice/moving:pull');
    const byTag = await site.v2('/v2/alice/moving/manifests/v2', anon, { headers: { Accept: S2 } });
    assert.equal(byTag.headers['docker-content-digest'], img2.digest);
    const bridged = await site.v2('/v2/alice/moving/manifests/v1', anon, { headers: { Accept: S2 } });
    assert.equal(bridged.json<{ layers: unknown[] }>().layers.length, 3, 'the bridge follows the moved v1 tag');
    // the tags deleted
    assert.equal((await site.v2('/v2/alice/moving/manifests/v2', push, { method: 'DELETE' })).status, 202);
    const del = await request(s.url, '/v1/repositories/alice/moving/tags/v1', {
      method: 'DELETE',
      headers: { Authorization: `Token ${(await site.deleteToken('alice/moving', CREDS.owner))!}` },
    });
    assert.equal(del.status, 200, del.text);
    assert.equal((await site.v2('/v2/alice/moving/manifests/v2', anon, { headers: { Accept: S2 } })).status, 404);
    assert.equal((await site.v2('/v2/alice/moving/manifests/v1', anon, { headers: { Accept: S2 } })).status, 404);
    assert.deepEqual((await site.regGet('/v1/repositories/alice/moving/tags', (await site.readToken('alice/moving', undefined))!)).json(), {});
  });
});

/**
 * The v1 mirror (mirroring.source, src/mirror/v1-mirror.ts) behind an index: images belong to
 * repositories, so a registry node asks the upstream for an image its token's repository lacks,
 * with the caller's own Authorization. What one caller's credentials fetched must not be handed to
 * another caller whose own request the upstream would refuse.
 */
describe('v1 mirror behind an index: an answer fetched with one caller’s token is not served to another', () => {
  let up: TestServer;
  let mirror: TestServer;
  let site: Site;
  const secret = makeImage();

  before(async () => {
    // the upstream: index and registry, alice's private repository
    up = await startTestServer({ bcrypt_cost: 4, token_cache_ttl: 0 });
    site = new Site(up.url, up.url);
    for (const c of [CREDS.owner, CREDS.other])
      await saveUser(up.db!, { username: c![0], email: `${c![0]}@example.com`, password: c![1], active: true }, { cost: 4 });
    await site.pushV1('alice/hidden', CREDS.owner, [secret]);
    await site.setAccess('alice/hidden', CREDS.owner, 'private');
    await site.pushV1('otto/open', CREDS.other, [makeImage()]);
    // a registry node of the same index, mirroring the upstream registry
    mirror = await startTestServer(
      { standalone: false, index_endpoint: up.url, token_cache_ttl: 0, mirroring: { source: up.url, source_index: up.url } },
      { role: 'registry' },
    );
  });
  after(async () => {
    await mirror?.stop();
    await up?.stop();
  });

  it('json and ancestry fetched upstream with the owner’s token are not served to a caller with another repository’s token', async () => {
    const own = (await site.readToken('alice/hidden', CREDS.owner))!;
    const anon = (await site.readToken('otto/open', undefined))!;
    for (const what of ['json', 'ancestry'] as const) {
      // the upstream refuses anonymous: its token is for another repository
      assert.equal((await site.regGet(`/v1/images/${secret.id}/${what}`, anon)).status, 404, `upstream, anonymous ${what}`);
      // through the mirror: the owner reads (the mirror asks upstream with the owner's token)…
      const mine = await request(mirror.url, `/v1/images/${secret.id}/${what}`, { headers: { Authorization: `Token ${own}` } });
      assert.equal(mine.status, 200, `mirror, owner ${what}: ${mine.text}`);
      // …and anonymous, with a token of a public repository, must not get what the owner's fetched
      const theirs = await request(mirror.url, `/v1/images/${secret.id}/${what}`, { headers: { Authorization: `Token ${anon}` } });
      assert.equal(theirs.status, 404, `mirror, anonymous ${what}: ${theirs.status} ${theirs.text.slice(0, 200)}`);
    }
  });
});
