import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request, type Response } from '../helpers/http.js';
import { spawnServer, type ChildServer } from '../helpers/child.js';
import { freePort } from '../helpers/ports.js';
import { DOCKER_UA, makeImage, pushImage, putTag, type TestImage } from '../helpers/v1-client.js';

const basic = (u: string, p: string): string => `Basic ${Buffer.from(`${u}:${p}`).toString('base64')}`;
const tokenOf = (r: Response): string => String(r.headers['x-docker-token']);

/**
 * Index and registry as two processes, the registry validating every token against the index
 * (spec §4.2), driven with the Docker 1.x request sequences of spec §5.
 */
describe('index + registry in two processes: the Docker 1.x sequences', () => {
  let dir: string;
  let idx: ChildServer;
  let reg: ChildServer;
  let regHost: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'lr-index-'));
    const [ip, rp] = await Promise.all([freePort(), freePort()]);
    regHost = `127.0.0.1:${rp}`;
    idx = await spawnServer({ STORAGE_PATH: join(dir, 'index'), REGISTRY_ENDPOINTS: regHost, BCRYPT_COST: '4', STANDALONE: '' }, [
      '--only',
      'index',
      '--port',
      String(ip),
    ]);
    reg = await spawnServer({ STORAGE_PATH: join(dir, 'registry'), INDEX_ENDPOINT: idx.url, STANDALONE: 'false' }, [
      '--only',
      'registry',
      '--port',
      String(rp),
    ]);
  });
  after(async () => {
    reg?.proc.kill('SIGTERM');
    idx?.proc.kill('SIGTERM');
    await Promise.all([reg?.exited, idx?.exited]);
    await rm(dir, { recursive: true, force: true });
  });

  it('pings: both say not standalone, so 1.x clients use tokens', async () => {
    for (const s of [idx, reg]) {
      const r = await request(s.url, '/v1/_ping');
      assert.equal(r.status, 200);
      assert.equal(r.headers['x-docker-registry-standalone'], 'False');
    }
    assert.equal((await request(idx.url, '/v2/')).status, 404);
  });

  it('signs up (201), falls back to login on "already exists" (400), logs in (200/401)', async () => {
    const body = JSON.stringify({ username: 'alice', password: 'secret1', auth: '', email: 'alice@example.com' });
    const created = await request(idx.url, '/v1/users/', { method: 'POST', body, headers: { 'Content-Type': 'application/json; charset=utf-8' } });
    assert.equal(created.status, 201);
    assert.equal(created.text, '"User Created"');
    const again = await request(idx.url, '/v1/users/', { method: 'POST', body, headers: { 'Content-Type': 'application/json' } });
    assert.equal(again.status, 400);
    assert.equal(again.text, '"Username or email already exists"');
    const sameEmail = await request(idx.url, '/v1/users', {
      method: 'POST',
      body: JSON.stringify({ username: 'alice2', password: 'secret1', email: 'ALICE@example.com' }),
    });
    assert.equal(sameEmail.status, 400);
    assert.equal(sameEmail.text, '"Username or email already exists"');
    const ok = await request(idx.url, '/v1/users/', { headers: { Authorization: basic('alice', 'secret1') } });
    assert.equal(ok.status, 200);
    assert.equal(ok.text, '"OK"');
    const wrong = await request(idx.url, '/v1/users/', { headers: { Authorization: basic('alice', 'nope!') } });
    assert.equal(wrong.status, 401);
    const bob = await request(idx.url, '/v1/users/', {
      method: 'POST',
      body: JSON.stringify({ username: 'bobby', password: 'secret2', email: 'bob@example.com' }),
    });
    assert.equal(bob.status, 201);
  });

  it('refuses bad signups with a 400 JSON string, and never a 5xx', async () => {
    for (const [body, re] of [
      [{ username: 'ab', password: 'secret1', email: 'a@b.c' }, /username/i],
      [{ username: 'Upper_case', password: 'secret1', email: 'a@b.c' }, /username/i],
      [{ username: 'charlie', password: '1234', email: 'c@b.c' }, /password/i],
      [{ username: 'charlie', password: 'secret1', email: 'not-an-email' }, /email/i],
    ] as const) {
      const r = await request(idx.url, '/v1/users/', { method: 'POST', body: JSON.stringify(body) });
      assert.equal(r.status, 400, JSON.stringify(body));
      assert.match(r.json<string>(), re);
    }
    const junk = await request(idx.url, '/v1/users/', { method: 'POST', body: '{nope' });
    assert.equal(junk.status, 400);
    for (const auth of ['Basic !!!', 'Basic ' + Buffer.from('nocolon').toString('base64'), 'Bearer x', 'Token signature=x']) {
      const r = await request(idx.url, '/v1/users/', { headers: { Authorization: auth } });
      assert.equal(r.status, 401, auth);
    }
  });

  let web: TestImage[];
  let writeToken: string;
  it('pushes a new repository: index PUT (token + endpoints), registry json/layer/checksum/tag, index images 204', async () => {
    const root = makeImage();
    const top = makeImage(root.id);
    web = [root, top];
    const claim = await request(idx.url, '/v1/repositories/alice/web/', {
      method: 'PUT',
      headers: { Authorization: basic('alice', 'secret1'), 'X-Docker-Token': 'true', 'Content-Type': 'application/json', 'User-Agent': DOCKER_UA },
      body: JSON.stringify([{ id: root.id }, { id: top.id, Tag: 'latest' }]),
    });
    assert.equal(claim.status, 200);
    assert.equal(claim.headers['x-docker-endpoints'], regHost);
    writeToken = tokenOf(claim);
    assert.match(writeToken, /^signature=[^,"]+,repository="alice\/web",access=write$/);
    assert.equal(claim.headers['www-authenticate'], `Token ${writeToken}`);
    for (const img of web) {
      const rs = await pushImage(reg.url, img, writeToken);
      // the probe with the push's write token: 404 for an image the repository does not hold (issue
      // 11: one answer for absent and not-yours; old clients log a 401 as an error), then the push
      assert.deepEqual(
        rs.map((r) => r.status),
        [404, 200, 200, 200],
        rs.map((r) => r.text).join(' '),
      );
      assert.equal(rs[0]!.text, '{"error": "Image not found"}');
    }
    assert.equal((await putTag(reg.url, 'alice/web', 'latest', top.id, writeToken)).status, 200);
    const done = await request(idx.url, '/v1/repositories/alice/web/images', {
      method: 'PUT',
      headers: { Authorization: basic('alice', 'secret1'), 'X-Docker-Token': 'true', 'X-Docker-Endpoints': `http://${regHost}/v1/` },
      body: '[]',
    });
    assert.equal(done.status, 204);
  });

  it('pulls anonymously: index images (read token) → registry tags, ancestry, json, layer', async () => {
    const list = await request(idx.url, '/v1/repositories/alice/web/images', { headers: { 'X-Docker-Token': 'true' } });
    assert.equal(list.status, 200);
    // Docker 1.x sent `[]` in the final PUT: the checksums come from the registry, which verified them
    // (issue 11 item 6; here the registry is another process and tells the index over HTTP)
    assert.deepEqual(
      list.json(),
      web.map((i) => ({ id: i.id, checksum: i.payload })),
    );
    const read = tokenOf(list);
    assert.match(read, /access=read$/);
    const auth = { Authorization: `Token ${read}` };
    const tags = await request(reg.url, '/v1/repositories/alice/web/tags', { headers: auth });
    assert.equal(tags.status, 200);
    assert.deepEqual(tags.json(), { latest: web[1]!.id });
    const anc = await request(reg.url, `/v1/images/${web[1]!.id}/ancestry`, { headers: auth });
    assert.deepEqual(anc.json(), [web[1]!.id, web[0]!.id]);
    for (const img of web) {
      const json = await request(reg.url, `/v1/images/${img.id}/json`, { headers: auth });
      assert.equal(json.status, 200);
      assert.deepEqual(json.body, img.json);
      const layer = await request(reg.url, `/v1/images/${img.id}/layer`, { headers: auth });
      assert.deepEqual(layer.body, img.layer);
    }
  });

  it('pushes again: existing images are skipped with 409 "Image already exists"', async () => {
    const claim = await request(idx.url, '/v1/repositories/alice/web/', {
      method: 'PUT',
      headers: { Authorization: basic('alice', 'secret1'), 'X-Docker-Token': 'true' },
      body: JSON.stringify([{ id: web[0]!.id }, { id: web[1]!.id, Tag: 'latest' }]),
    });
    const rs = await pushImage(reg.url, web[0]!, tokenOf(claim));
    assert.equal(rs[1]!.status, 409);
    assert.equal(rs[1]!.text, '{"error": "Image already exists"}');
  });

  it('keeps tokens in their lane: none, forged, read-for-write, other repository, expired-looking', async () => {
    const list = await request(idx.url, '/v1/repositories/alice/web/images', { headers: { 'X-Docker-Token': 'true' } });
    const read = tokenOf(list);
    const none = await request(reg.url, '/v1/repositories/alice/web/tags');
    assert.equal(none.status, 401);
    assert.equal(none.text, '{"error": "Requires authorization"}');
    assert.equal(none.headers['www-authenticate'], 'Token');
    const forged = read.replace(/signature=[^,]+/, 'signature=1999999999.1.AAAA.BBBB');
    assert.equal((await request(reg.url, '/v1/repositories/alice/web/tags', { headers: { Authorization: `Token ${forged}` } })).status, 401);
    const widened = read.replace('access=read', 'access=write');
    assert.equal((await putTag(reg.url, 'alice/web', 'evil', web[0]!.id, widened)).status, 401);
    assert.equal((await putTag(reg.url, 'alice/web', 'evil', web[0]!.id, read)).status, 401, 'read token never writes');
    const moved = read.replace('alice/web', 'bobby/web');
    assert.equal((await request(reg.url, '/v1/repositories/bobby/web/tags', { headers: { Authorization: `Token ${moved}` } })).status, 401);
    assert.equal(
      (await request(reg.url, '/v1/repositories/alice/other/tags', { headers: { Authorization: `Token ${read}` } })).status,
      401,
      'a token for one repository never opens another',
    );
    const old = read.replace(/signature=(\d+)/, 'signature=1000000000');
    assert.equal((await request(reg.url, '/v1/repositories/alice/web/tags', { headers: { Authorization: `Token ${old}` } })).status, 401);
  });

  it('refuses writes outside the namespace: bobby cannot push to alice/, nobody to library/ but admins', async () => {
    for (const [path, user, pw] of [
      ['alice/web', 'bobby', 'secret2'],
      ['library/base', 'alice', 'secret1'],
      ['base', 'alice', 'secret1'],
    ] as const) {
      const r = await request(idx.url, `/v1/repositories/${path}/`, {
        method: 'PUT',
        headers: { Authorization: basic(user, pw), 'X-Docker-Token': 'true' },
        body: '[]',
      });
      assert.equal(r.status, 403, path);
      assert.equal(r.headers['x-docker-token'], undefined);
    }
    const anon = await request(idx.url, '/v1/repositories/alice/new/', {
      method: 'PUT',
      headers: { Authorization: 'Basic Og==', 'X-Docker-Token': 'true' },
      body: '[]',
    });
    assert.equal(anon.status, 401);
    const bad = await request(idx.url, '/v1/repositories/alice/web/', {
      method: 'PUT',
      headers: { Authorization: basic('alice', 'secret1') },
      body: '{"not": "a list"}',
    });
    assert.equal(bad.status, 400);
    const badName = await request(idx.url, '/v1/repositories/a/b/c/', { method: 'PUT', headers: { Authorization: basic('alice', 'secret1') }, body: '[]' });
    assert.equal(badName.status, 400);
    assert.equal(badName.text, '{"error": "Invalid repository name"}');
  });

  it('searches with the spec fields, defaults and bounds', async () => {
    const r = await request(idx.url, '/v1/search?q=web', { headers: { 'X-Docker-Token': 'true' } });
    assert.equal(r.status, 200);
    const body = r.json<Record<string, unknown> & { results: Record<string, unknown>[] }>();
    assert.deepEqual(Object.keys(body).sort(), ['num_pages', 'num_results', 'page', 'page_size', 'query', 'results']);
    assert.equal(body.query, 'web');
    assert.equal(body.page_size, 25);
    assert.equal(body.page, 1);
    assert.equal(body.num_results, 1);
    assert.deepEqual(body.results[0], { description: '', is_automated: false, is_official: false, is_trusted: false, name: 'alice/web', star_count: 0 });
    for (const q of ['n=0', 'n=1000', 'page=-3', 'n=abc', 'q=%27%3B%20DROP%20TABLE%20users%3B--', 'q=%22%2A%28', 'q=%25_%5C']) {
      const x = await request(idx.url, `/v1/search?${q}`);
      assert.equal(x.status, 200, q);
      const b = x.json<{ page_size: number; page: number }>();
      assert.ok(b.page_size >= 1 && b.page_size <= 100 && b.page >= 1, q);
    }
  });

  it('hides private repositories from everyone but those who may read them', async () => {
    const img = makeImage();
    const claim = await request(idx.url, '/v1/repositories/bobby/secret/', {
      method: 'PUT',
      headers: { Authorization: basic('bobby', 'secret2'), 'X-Docker-Token': 'true' },
      body: JSON.stringify([{ id: img.id, Tag: 'latest' }]),
    });
    assert.equal(claim.status, 200);
    await pushImage(reg.url, img, tokenOf(claim));
    const anonBefore = await request(idx.url, '/v1/repositories/bobby/secret/images', { headers: { 'X-Docker-Token': 'true' } });
    assert.equal(anonBefore.status, 200, 'public until made private');
    const notOwner = await request(idx.url, '/v1/repositories/bobby/secret/properties', {
      method: 'PUT',
      headers: { Authorization: basic('alice', 'secret1') },
      body: '{"access": "private"}',
    });
    assert.equal(notOwner.status, 403);
    const setPrivate = await request(idx.url, '/v1/repositories/bobby/secret/properties', {
      method: 'PUT',
      headers: { Authorization: basic('bobby', 'secret2') },
      body: '{"access": "private", "description": "bob\'s secret web app"}',
    });
    assert.equal(setPrivate.status, 200);
    const props = await request(idx.url, '/v1/repositories/bobby/secret/properties', { headers: { Authorization: basic('bobby', 'secret2') } });
    assert.deepEqual(props.json(), { access: 'private', description: "bob's secret web app" });
    // invisible to anonymous and to alice: image list, search, and the registry with a stolen-scope token
    const anon = await request(idx.url, '/v1/repositories/bobby/secret/images', { headers: { 'X-Docker-Token': 'true' } });
    assert.equal(anon.status, 401);
    const alice = await request(idx.url, '/v1/repositories/bobby/secret/images', {
      headers: { 'X-Docker-Token': 'true', Authorization: basic('alice', 'secret1') },
    });
    assert.equal(alice.status, 404);
    assert.equal(alice.headers['x-docker-token'], undefined);
    const search = await request(idx.url, '/v1/search?q=secret', { headers: { Authorization: basic('alice', 'secret1') } });
    assert.equal(search.json<{ num_results: number }>().num_results, 0);
    const own = await request(idx.url, '/v1/search?q=secret', { headers: { Authorization: basic('bobby', 'secret2') } });
    assert.equal(own.json<{ num_results: number; results: { name: string; description: string }[] }>().results[0]!.name, 'bobby/secret');
    // alice's token for her own repository does not open bobby's private image on the registry
    const mine = await request(idx.url, '/v1/repositories/alice/web/images', {
      headers: { 'X-Docker-Token': 'true', Authorization: basic('alice', 'secret1') },
    });
    const json = await request(reg.url, `/v1/images/${img.id}/json`, { headers: { Authorization: `Token ${tokenOf(mine)}` } });
    assert.equal(json.status, 404);
    const layer = await request(reg.url, `/v1/images/${img.id}/layer`, { headers: { Authorization: `Token ${tokenOf(mine)}` } });
    assert.equal(layer.status, 404);
    // bobby still pulls it
    const his = await request(idx.url, '/v1/repositories/bobby/secret/images', {
      headers: { 'X-Docker-Token': 'true', Authorization: basic('bobby', 'secret2') },
    });
    assert.equal(his.status, 200);
    const hisLayer = await request(reg.url, `/v1/images/${img.id}/layer`, { headers: { Authorization: `Token ${tokenOf(his)}` } });
    assert.deepEqual(hisLayer.body, img.layer);
  });

  it('deletes a tag with a delete token from the index (I9), then the repository (I6 twice)', async () => {
    const del = await request(idx.url, '/v1/repositories/alice/web/images', {
      method: 'DELETE',
      headers: { Authorization: basic('alice', 'secret1'), 'X-Docker-Token': 'true' },
    });
    assert.equal(del.status, 204);
    const token = tokenOf(del);
    assert.match(token, /access=delete$/);
    const tag = await request(reg.url, '/v1/repositories/alice/web/tags/latest', { method: 'DELETE', headers: { Authorization: `Token ${token}` } });
    assert.equal(tag.status, 200);
    const nobody = await request(idx.url, '/v1/repositories/alice/web/images', { method: 'DELETE', headers: { Authorization: basic('bobby', 'secret2') } });
    assert.equal(nobody.status, 403);
    const mark = await request(idx.url, '/v1/repositories/alice/web/', {
      method: 'DELETE',
      headers: { Authorization: basic('alice', 'secret1'), 'X-Docker-Token': 'true' },
    });
    assert.equal(mark.status, 202);
    const delToken = tokenOf(mark);
    // gone for everyone: anonymous callers are asked to log in, as for a private repository
    assert.equal((await request(idx.url, '/v1/repositories/alice/web/images', { headers: { 'X-Docker-Token': 'true' } })).status, 401);
    assert.equal(
      (await request(idx.url, '/v1/repositories/alice/web/images', { headers: { 'X-Docker-Token': 'true', Authorization: basic('bobby', 'secret2') } })).status,
      404,
    );
    // and from the registry at once (one process): the delete token still works for the registry's
    // own call (R17), which has nothing left to remove
    const tagsAfter = await request(reg.url, '/v1/repositories/alice/web/tags', { headers: { Authorization: `Token ${delToken}` } });
    assert.equal(tagsAfter.status, 401, 'a delete token reads nothing');
    const regDel = await request(reg.url, '/v1/repositories/alice/web/', { method: 'DELETE', headers: { Authorization: `Token ${delToken}` } });
    assert.equal(regDel.status, 200);
    const purge = await request(idx.url, '/v1/repositories/alice/web/', { method: 'DELETE', headers: { Authorization: basic('alice', 'secret1') } });
    assert.equal(purge.status, 200);
    const gone = await request(idx.url, '/v1/search?q=web');
    assert.equal(gone.json<{ num_results: number }>().num_results, 0);
  });

  it('updates an account (I4): password and e-mail by the user; others get 403, unknown 404', async () => {
    await request(idx.url, '/v1/users/', { method: 'POST', body: JSON.stringify({ username: 'henry', password: 'henrypw', email: 'henry@example.com' }) });
    const upd = await request(idx.url, '/v1/users/henry/', {
      method: 'PUT',
      headers: { Authorization: basic('henry', 'henrypw') },
      body: JSON.stringify({ password: 'henrypw2', email: 'henry2@example.com' }),
    });
    assert.equal(upd.status, 204);
    assert.equal(upd.body.length, 0);
    assert.equal((await request(idx.url, '/v1/users/', { headers: { Authorization: basic('henry', 'henrypw') } })).status, 401);
    assert.equal((await request(idx.url, '/v1/users/', { headers: { Authorization: basic('henry', 'henrypw2') } })).status, 200);
    const other = await request(idx.url, '/v1/users/alice/', {
      method: 'PUT',
      headers: { Authorization: basic('henry', 'henrypw2') },
      body: '{"password": "stolen!"}',
    });
    assert.equal(other.status, 403);
    const weak = await request(idx.url, '/v1/users/henry/', {
      method: 'PUT',
      headers: { Authorization: basic('henry', 'henrypw2') },
      body: '{"password": "123"}',
    });
    assert.equal(weak.status, 400);
    const taken = await request(idx.url, '/v1/users/henry/', {
      method: 'PUT',
      headers: { Authorization: basic('henry', 'henrypw2') },
      body: '{"email": "alice@example.com"}',
    });
    assert.equal(taken.status, 400);
    const anon = await request(idx.url, '/v1/users/henry/', { method: 'PUT', body: '{"email": "x@y.z"}' });
    assert.equal(anon.status, 401);
  });

  it('confirms delete tokens on PUT …/auth (I10) and refuses other tokens', async () => {
    const img = makeImage();
    const claim = await request(idx.url, '/v1/repositories/alice/authz/', {
      method: 'PUT',
      headers: { Authorization: basic('alice', 'secret1'), 'X-Docker-Token': 'true' },
      body: JSON.stringify([{ id: img.id }]),
    });
    const write = tokenOf(claim);
    const del = tokenOf(
      await request(idx.url, '/v1/repositories/alice/authz/images', {
        method: 'DELETE',
        headers: { Authorization: basic('alice', 'secret1'), 'X-Docker-Token': 'true' },
      }),
    );
    const ok = await request(idx.url, '/v1/repositories/alice/authz/auth', { method: 'PUT', headers: { Authorization: `Token ${del}` } });
    assert.equal(ok.status, 200);
    assert.equal(ok.text, '"OK"');
    assert.equal((await request(idx.url, '/v1/repositories/alice/authz/auth', { method: 'PUT', headers: { Authorization: `Token ${write}` } })).status, 403);
    assert.equal((await request(idx.url, '/v1/repositories/alice/other/auth', { method: 'PUT', headers: { Authorization: `Token ${del}` } })).status, 403);
    // I11 (where a push may link an image from): the other repositories the write token's holder may
    // write that list the id — never the token's own, never one it may only read or not at all
    const src = await request(idx.url, '/v1/repositories/alice/authzsrc/', {
      method: 'PUT',
      headers: { Authorization: basic('alice', 'secret1'), 'X-Docker-Token': 'true' },
      body: JSON.stringify([{ id: img.id }]),
    });
    assert.equal(src.status, 200);
    const hidden = await request(idx.url, '/v1/repositories/bobby/authzhid/', {
      method: 'PUT',
      headers: { Authorization: basic('bobby', 'secret2'), 'X-Docker-Token': 'true' },
      body: JSON.stringify([{ id: img.id }]),
    });
    assert.equal(hidden.status, 200);
    const priv = await request(idx.url, '/v1/repositories/bobby/authzhid/properties', {
      method: 'PUT',
      headers: { Authorization: basic('bobby', 'secret2') },
      body: '{"access": "private"}',
    });
    assert.equal(priv.status, 200);
    const pub = await request(idx.url, '/v1/repositories/bobby/authzpub/', {
      method: 'PUT',
      headers: { Authorization: basic('bobby', 'secret2'), 'X-Docker-Token': 'true' },
      body: JSON.stringify([{ id: img.id }]),
    });
    assert.equal(pub.status, 200, 'public, readable by alice, yet not a source: she may not write it');
    const yes = await request(idx.url, `/v1/repositories/alice/authz/layer/${img.id}/access`, { headers: { Authorization: `Token ${write}` } });
    assert.deepEqual(yes.json(), { access: true, repositories: ['alice/authzsrc'] });
    const no = await request(idx.url, `/v1/repositories/alice/authz/layer/${'e'.repeat(64)}/access`, { headers: { Authorization: `Token ${write}` } });
    assert.deepEqual(no.json(), { access: false, repositories: [] });
    const forged = await request(idx.url, `/v1/repositories/alice/authz/layer/${img.id}/access`, {
      headers: { Authorization: 'Token signature=1.2.3.4,repository="alice/authz",access=write' },
    });
    assert.deepEqual(forged.json(), { access: false, repositories: [] });
    const read = tokenOf(
      await request(idx.url, '/v1/repositories/alice/authzsrc/images', { headers: { Authorization: basic('alice', 'secret1'), 'X-Docker-Token': 'true' } }),
    );
    const byRead = await request(idx.url, `/v1/repositories/alice/authzsrc/layer/${img.id}/access`, { headers: { Authorization: `Token ${read}` } });
    assert.deepEqual(byRead.json(), { access: false, repositories: [] }, 'only a push links');
  });

  it('slows repeated failed logins (429) without locking the owner out for good', async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 7; i++) statuses.push((await request(idx.url, '/v1/users/', { headers: { Authorization: basic('bobby', `wrong${i}`) } })).status);
    assert.deepEqual(statuses.slice(0, 5), [401, 401, 401, 401, 401]);
    assert.equal(statuses[6], 429);
    const r = await request(idx.url, '/v1/users/', { headers: { Authorization: basic('bobby', 'secret2') } });
    assert.equal(r.status, 429, 'during the lock even the right password waits');
    assert.ok(Number(r.headers['retry-after']) > 0 && Number(r.headers['retry-after']) <= 15 * 60);
  });
});
