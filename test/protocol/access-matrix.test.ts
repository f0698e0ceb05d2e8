import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { decodeJwt } from 'jose';
import { request } from '../helpers/http.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { makeImage, putTag, type TestImage } from '../helpers/v1-client.js';
import { basic, pushV2Image, S2, sha, Site, v2Image, type Creds, type V2Image } from '../helpers/accounts.js';
import { findUserByName, saveUser } from '../../src/db/users.js';
import { addCollaborator, findRepository } from '../../src/db/repositories.js';
import { addMember, saveOrganization } from '../../src/db/organizations.js';
import { Receiver } from '../helpers/receiver.js';
import { freePort } from '../helpers/ports.js';

/**
 * Issue 10: the access model as a matrix — every account kind × repository state × every read and
 * write route of v1 (index and registry), the v2 API, the bridge views both ways, catalog,
 * referrers, search, stars and comments, and the webhook API (issue 15). The expected answer of each cell comes from the rights
 * table below; the whole observed table is compared at once, so a diff names the cells that moved.
 */

type Actor = 'owner' | 'collabRead' | 'collabWrite' | 'other' | 'anonymous' | 'admin' | 'orgOwner' | 'orgMember';
type State = 'public' | 'private' | 'deleted';
interface Rights {
  readonly r: boolean;
  readonly w: boolean;
  readonly d: boolean;
}

const CREDS: Record<Actor, Creds> = {
  owner: ['alice', 'alicepw'],
  collabRead: ['carl', 'carlpw'],
  collabWrite: ['wendy', 'wendypw'],
  other: ['otto', 'ottopw'],
  anonymous: undefined,
  admin: ['root', 'rootpw'],
  orgOwner: ['oscar', 'oscarpw'],
  orgMember: ['mona', 'monapw'],
};

/** What the index's rules give each actor (index/access.ts), written out independently here. */
function rightsOf(actor: Actor, state: State, org: boolean): Rights {
  const all = { r: true, w: true, d: true };
  const none = { r: false, w: false, d: false };
  const pub = state === 'public';
  if (actor === 'admin') return all;
  if (state === 'deleted') {
    // no record: only whoever could create the repository (its namespace's owner) has rights on the name
    return !org && actor === 'owner' ? all : org && actor === 'orgOwner' ? all : org && actor === 'orgMember' ? { r: true, w: true, d: false } : none;
  }
  if (org) {
    if (actor === 'orgOwner') return all;
    if (actor === 'orgMember') return { r: true, w: true, d: false };
    return { r: pub, w: false, d: false };
  }
  if (actor === 'owner') return all;
  if (actor === 'collabWrite') return { r: true, w: true, d: false };
  if (actor === 'collabRead') return { r: true, w: false, d: false };
  return { r: pub, w: false, d: false };
}

type Row = Record<string, string>;

/** The cells expected for one actor on one repository. */
function expected(actor: Actor, state: State, org: boolean): Row {
  const { r, w, d } = rightsOf(actor, state, org);
  const anon = actor === 'anonymous';
  const gone = state === 'deleted';
  const r1 = r && !gone; // readable content
  const row: Row = {};
  // v1 index and registry
  row.i8 = r1 ? '200' : anon ? '401' : '404';
  row.tags = r1 ? '200' : '401';
  for (const k of ['json', 'layer', 'ancestry', 'files', 'v2view']) row[k] = r1 ? '200' : '404';
  row.search = r1 ? 'listed' : 'absent';
  row.comments = r1 ? '200' : '404';
  row.star = !r1 ? '404' : anon ? '401' : '200';
  row.i9 = gone ? (anon ? '401' : '404') : !r ? (anon ? '401' : '404') : anon ? '401' : d ? '204' : '403';
  if (!gone) {
    row.claim = w ? '200' : anon ? '401' : '403';
    row.tagPut = w ? '200' : '-';
    row.tagDelete = d ? '200' : '-';
    row.props = !r ? (anon ? '401' : '404') : anon ? '401' : d ? '200' : '403';
  }
  // v2
  row.grant = [r && 'pull', w && 'push', d && 'delete'].filter(Boolean).join(',') || 'none';
  for (const k of ['manifest', 'bridge', 'blob', 'tagsList', 'referrers']) row[k] = !r ? '401' : gone ? '404' : '200';
  row.catalog = anon ? '401' : r1 ? 'listed' : 'absent';
  if (!gone) {
    row.push = w ? '201' : '401';
    row.delete = d ? '202' : '401';
  }
  // webhooks (issue 15): managed by whoever may delete the repository; signing in comes first (401
  // whatever the repository), then a repository the caller cannot read answers as a missing one
  const hooks = (ok: string): string => (anon ? '401' : !r1 ? '404' : d ? ok : '403');
  row.hookList = hooks('200');
  row.hookAdd = hooks('201');
  row.hookRemove = hooks('200');
  row.hookDeliveries = hooks('200');
  row.hookTest = hooks('202');
  return row;
}

/** The names of accounts and repositories of the matrix: none may appear on /metrics. */
const PRIVATE_WORDS = ['alice', 'carl', 'wendy', 'otto', 'oscar', 'mona', 'acme', 'pub', 'priv', 'gone', 'own', 'marked', 'matrix'];

describe('access matrix: accounts × repository states × every route (issue 10)', () => {
  let s: TestServer;
  let site: Site;
  const v1img = new Map<string, TestImage[]>();
  const v2img = new Map<string, V2Image>();
  const derivedTop = new Map<string, string>();
  const REPOS: { name: string; state: State; org: boolean }[] = [
    { name: 'alice/pub', state: 'public', org: false },
    { name: 'alice/priv', state: 'private', org: false },
    { name: 'alice/gone', state: 'deleted', org: false },
    { name: 'acme/pub', state: 'public', org: true },
    { name: 'acme/priv', state: 'private', org: true },
  ];
  const ACTORS = Object.keys(CREDS) as Actor[];

  const rx = new Receiver();
  /** The hook each repository's owner set before the probes (the one refused callers try to reach). */
  const baseHook = new Map<string, number>();
  let debugPort = 0;

  before(async () => {
    await rx.up();
    debugPort = await freePort();
    s = await startTestServer({
      v2: true,
      storage_delete: true,
      bcrypt_cost: 4,
      token_cache_ttl: 0,
      webhook_allowed_networks: ['127.0.0.1'],
      debug_addr: `127.0.0.1:${debugPort}`,
    });
    site = new Site(s.url, s.url);
    const db = s.db!;
    for (const [actor, c] of Object.entries(CREDS)) {
      if (c) await saveUser(db, { username: c[0], email: `${c[0]}@example.com`, password: c[1], active: true, admin: actor === 'admin' }, { cost: 4 });
    }
    const org = (await saveOrganization(db, { name: 'acme' }))!;
    await addMember(db, org.id, (await findUserByName(db, 'oscar'))!.id, 'owner');
    await addMember(db, org.id, (await findUserByName(db, 'mona'))!.id, 'member');
    // a public repository of otto's: where every actor's own (non-matching) v1 token comes from
    await site.pushV1('otto/own', CREDS.other, [makeImage()]);
    for (const repo of REPOS) {
      const pusher = repo.org ? CREDS.orgOwner : CREDS.owner;
      const root = makeImage();
      const top = makeImage(root.id);
      v1img.set(repo.name, [root, top]);
      await site.pushV1(repo.name, pusher, [root, top], 'v1');
      const img = v2Image(repo.name);
      v2img.set(repo.name, img);
      const token = await site.bearer(pusher, `repository:${repo.name}:pull,push`);
      await pushV2Image(site, repo.name, 'v2', token, img);
      // one tag per actor for the v2 delete probe
      for (const a of ACTORS) {
        const put = await site.v2(`/v2/${repo.name}/manifests/d-${a}`, token, { method: 'PUT', body: img.manifest, headers: { 'Content-Type': S2 } });
        assert.equal(put.status, 201);
      }
      const tags = await site.regGet(`/v1/repositories/${repo.name}/tags`, await site.readToken(repo.name, pusher));
      derivedTop.set(repo.name, tags.json<Record<string, string>>().v2!);
      if (!repo.org) {
        const record = (await findRepository(db, 'alice', repo.name.split('/')[1]!))!;
        await addCollaborator(db, record.id, (await findUserByName(db, 'carl'))!.id, 'read');
        await addCollaborator(db, record.id, (await findUserByName(db, 'wendy'))!.id, 'write');
      }
      const hook = await request(s.url, `/v1/webhooks/${repo.name}`, {
        method: 'POST',
        headers: { Authorization: basic(...pusher!), 'Content-Type': 'application/json' },
        body: JSON.stringify({ name: 'base', url: `${rx.url}/base`, secret: 'matrix-secret' }),
      });
      assert.equal(hook.status, 201, hook.text);
      baseHook.set(repo.name, hook.json<{ id: number }>().id);
      if (repo.state !== 'public') await site.setAccess(repo.name, pusher, 'private');
      if (repo.state === 'deleted') {
        for (const status of [202, 200]) {
          const r = await request(s.url, `/v1/repositories/${repo.name}/`, { method: 'DELETE', headers: { Authorization: basic(...CREDS.owner!) } });
          assert.equal(r.status, status, r.text);
        }
      }
    }
  });
  after(async () => {
    await s?.stop();
    await rx.down();
  });

  /** Every probe of one actor on one repository, as observed. */
  async function observe(actor: Actor, repo: { name: string; state: State; org: boolean }): Promise<Row> {
    const c = CREDS[actor];
    const name = repo.name;
    const [root, top] = v1img.get(name)!;
    const img = v2img.get(name)!;
    const row: Row = {};
    // --- v1 reads: the repository's read token if the index gives one, else the actor's own token
    const i8 = await site.images(name, c);
    row.i8 = String(i8.status);
    const token = i8.status === 200 ? String(i8.headers['x-docker-token']) : await site.readToken('otto/own', c);
    row.tags = String((await site.regGet(`/v1/repositories/${name}/tags`, token)).status);
    for (const [k, path] of [
      ['json', `/v1/images/${top!.id}/json`],
      ['layer', `/v1/images/${root!.id}/layer`],
      ['ancestry', `/v1/images/${top!.id}/ancestry`],
      ['files', `/v1/images/${root!.id}/files`],
      ['v2view', `/v1/images/${derivedTop.get(name)!}/json`],
    ] as const) {
      const r = await site.regGet(path, token);
      row[k] = String(r.status);
      if (r.status === 200 && k === 'layer') assert.deepEqual(r.body, root!.layer);
    }
    const search = await request(s.url, `/v1/search?q=${name.split('/')[1]}&n=100`, { headers: c ? { Authorization: basic(...c) } : {} });
    row.search = search.json<{ results: { name: string }[] }>().results.some((x) => x.name === name) ? 'listed' : 'absent';
    row.comments = String((await request(s.url, `/v1/comments/${name}`, { headers: c ? { Authorization: basic(...c) } : {} })).status);
    row.star = String((await request(s.url, `/v1/stars/${name}`, { method: 'PUT', headers: c ? { Authorization: basic(...c) } : {} })).status);
    const i9 = await request(s.url, `/v1/repositories/${name}/images`, {
      method: 'DELETE',
      headers: { ...(c ? { Authorization: basic(...c) } : {}), 'X-Docker-Token': 'true' },
    });
    row.i9 = String(i9.status);
    if (repo.state !== 'deleted') {
      // --- v1 writes
      const claim = await site.claimRaw(name, c, [top!.id], '');
      row.claim = String(claim.status);
      row.tagPut = claim.status === 200 ? String((await putTag(s.url, name, `t-${actor}`, top!.id, String(claim.headers['x-docker-token']))).status) : '-';
      row.tagDelete =
        i9.status === 204
          ? String(
              (
                await request(s.url, `/v1/repositories/${name}/tags/v1`, {
                  method: 'DELETE',
                  headers: { Authorization: `Token ${String(i9.headers['x-docker-token'])}` },
                })
              ).status,
            )
          : '-';
      if (i9.status === 204) {
        // put the tag back for the next actor (the owner's write token)
        const back = await putTag(s.url, name, 'v1', top!.id, await site.claim(name, repo.org ? CREDS.orgOwner : CREDS.owner, [top!.id], ''));
        assert.equal(back.status, 200);
      }
      const wanted = repo.state === 'private' ? 'private' : 'public';
      row.props = String(
        (
          await request(s.url, `/v1/repositories/${name}/properties`, {
            method: 'PUT',
            headers: c ? { Authorization: basic(...c) } : {},
            body: JSON.stringify({ access: wanted }),
          })
        ).status,
      );
    }
    // --- v2
    const bearer = await site.bearer(c, `repository:${name}:pull,push,delete`);
    const access = (decodeJwt(bearer).access as { actions: string[] }[])[0]?.actions ?? [];
    row.grant = access.length ? access.join(',') : 'none';
    for (const [k, path, headers] of [
      ['manifest', `/v2/${name}/manifests/v2`, { Accept: S2 }],
      ['bridge', `/v2/${name}/manifests/v1`, { Accept: S2 }],
      ['blob', `/v2/${name}/blobs/${sha(img.layers[0]!)}`, {}],
      ['tagsList', `/v2/${name}/tags/list`, {}],
      ['referrers', `/v2/${name}/referrers/${img.digest}`, {}],
    ] as const) {
      const r = await site.v2(path, bearer, { headers });
      row[k] = String(r.status);
      if (k === 'blob' && r.status === 200) assert.deepEqual(r.body, img.layers[0]);
    }
    const cat = await site.v2('/v2/_catalog?n=1000', await site.bearer(c, 'registry:catalog:*'));
    row.catalog = cat.status !== 200 ? String(cat.status) : cat.json<{ repositories: string[] }>().repositories.includes(name) ? 'listed' : 'absent';
    if (repo.state !== 'deleted') {
      row.push = String(
        (await site.v2(`/v2/${name}/manifests/p-${actor}`, bearer, { method: 'PUT', body: img.manifest, headers: { 'Content-Type': S2 } })).status,
      );
      row.delete = String((await site.v2(`/v2/${name}/manifests/d-${actor}`, bearer, { method: 'DELETE' })).status);
    }
    Object.assign(row, await observeHooks(c, name));
    return row;
  }

  /** The webhook API (list, add, remove, deliveries, test) as one caller sees it on one repository. */
  async function observeHooks(c: Creds, name: string): Promise<Row> {
    const row: Row = {};
    const base = baseHook.get(name)!;
    const call = (path: string, method = 'GET', body?: unknown) =>
      request(s.url, `/v1/webhooks/${name}${path}`, {
        method,
        headers: { ...(c ? { Authorization: basic(...c) } : {}), 'Content-Type': 'application/json' },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      });
    const list = await call('');
    row.hookList = String(list.status);
    if (list.status === 200) {
      assert.deepEqual(
        list.json<{ name: string; secret: unknown }[]>().map((h) => [h.name, h.secret]),
        [['base', true]],
        'the secret is never shown',
      );
    } else {
      assert.doesNotMatch(list.text, /matrix-secret|\/base|127\.0\.0\.1/, 'a refused caller learns nothing of the hooks');
    }
    const added = await call('', 'POST', { name: `h-${c?.[0] ?? 'anonymous'}`, url: `${rx.url}/added` });
    row.hookAdd = String(added.status);
    // the caller's own new hook when it could add one, else the owner's: a refused remove leaves it
    row.hookRemove = String((await call(`/${added.status === 201 ? added.json<{ id: number }>().id : base}`, 'DELETE')).status);
    const deliveries = await call(`/${base}/deliveries`);
    row.hookDeliveries = String(deliveries.status);
    if (deliveries.status !== 200) assert.doesNotMatch(deliveries.text, /push_data|callback|"tag"/);
    row.hookTest = String((await call(`/${base}/test`, 'POST')).status);
    return row;
  }

  it('webhooks of a repository marked deleted (not purged): nobody reaches them; a new repository of the name starts without them', async () => {
    await site.pushV1('alice/marked', CREDS.owner, [makeImage()]);
    const made = await request(s.url, '/v1/webhooks/alice/marked', {
      method: 'POST',
      headers: { Authorization: basic(...CREDS.owner!), 'Content-Type': 'application/json' },
      body: JSON.stringify({ name: 'base', url: `${rx.url}/marked`, secret: 'matrix-secret' }),
    });
    assert.equal(made.status, 201, made.text);
    baseHook.set('alice/marked', made.json<{ id: number }>().id);
    const del = await request(s.url, '/v1/repositories/alice/marked/', { method: 'DELETE', headers: { Authorization: basic(...CREDS.owner!) } });
    assert.equal(del.status, 202, del.text);
    const got: Record<string, Row> = {};
    const want: Record<string, Row> = {};
    for (const a of ACTORS.filter((x) => x !== 'orgOwner' && x !== 'orgMember')) {
      got[a] = await observeHooks(CREDS[a], 'alice/marked');
      const e = expected(a, 'deleted', false);
      want[a] = { hookList: e.hookList!, hookAdd: e.hookAdd!, hookRemove: e.hookRemove!, hookDeliveries: e.hookDeliveries!, hookTest: e.hookTest! };
    }
    assert.deepEqual(got, want);
    // the owner pushes the name again: a new repository, without the old hooks
    await site.pushV1('alice/marked', CREDS.owner, [makeImage()]);
    const list = await request(s.url, '/v1/webhooks/alice/marked', { headers: { Authorization: basic(...CREDS.owner!) } });
    assert.equal(list.status, 200, list.text);
    assert.deepEqual(list.json(), []);
  });

  for (const repo of REPOS) {
    it(`${repo.name} (${repo.state}${repo.org ? ', organization' : ''}): every actor gets exactly its rights on every route`, async () => {
      const actors = repo.org ? ACTORS.filter((a) => a !== 'collabRead' && a !== 'collabWrite') : ACTORS.filter((a) => a !== 'orgOwner' && a !== 'orgMember');
      const want: Record<string, Row> = {};
      const got: Record<string, Row> = {};
      for (const a of actors) {
        want[a] = expected(a, repo.state, repo.org);
        got[a] = await observe(a, repo);
      }
      assert.deepEqual(got, want);
    });
  }

  it('/metrics on the debug listener names no repository, account, tag or hook (bounded labels only)', async () => {
    // after every probe of the matrix (it runs last): pushes, pulls, deletes, refusals, webhook calls
    const r = await request(`http://127.0.0.1:${debugPort}`, '/metrics');
    assert.equal(r.status, 200);
    assert.match(r.text, /^registry_http_requests_total\{/m);
    assert.match(r.text, /legacy_registry_event_queue_depth\{queue="webhooks"\}/);
    const values = new Set<string>();
    for (const m of r.text.matchAll(/\{([^}]*)\}/g)) for (const v of m[1]!.matchAll(/="((?:[^"\\]|\\.)*)"/g)) values.add(v[1]!);
    const leaks = [...values].filter((v) => PRIVATE_WORDS.some((w) => new RegExp(`\\b${w}\\b`, 'i').test(v)) || v.includes('/'));
    assert.deepEqual(leaks, [], `label values: ${[...values].sort().join(' ')}`);
    // the main listener does not serve them
    assert.equal((await request(s.url, '/metrics')).status, 404);
  });
});
