import { after, before, describe, it } from 'node:test';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import assert from 'node:assert/strict';
import { generateKeyPairSync, sign, X509Certificate, type KeyObject } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SignJWT, decodeJwt } from 'jose';
import { request } from '../helpers/http.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { loadConfig } from '../../src/config/load.js';
import { createLogger } from '../../src/log/logger.js';
import { startServer } from '../../src/main.js';
import { makeImage, putTag, type TestImage } from '../helpers/v1-client.js';
import { accountToken, basic, Site, type Creds } from '../helpers/accounts.js';
import { findUserByName, saveUser, setActive } from '../../src/db/users.js';
import { addCollaborator, findRepository } from '../../src/db/repositories.js';
import { V1TokenSigner } from '../../src/auth/v1-token.js';
import { libtrustKid } from '../../src/content/schema1.js';
import { selfSignedCertificate } from '../../src/auth/x509.js';

const SECRET = 'tokens-review-secret-0123456789';
const ALICE: Creds = ['alice', 'alicepw1'];
const BOB: Creds = ['bobby', 'bobbypw1'];
const CAROL: Creds = ['carol', 'carolpw1'];
const EVE: Creds = ['eve', 'evepw123'];

const token = (t: string | undefined): Record<string, string> => (t ? { Authorization: `Token ${t}` } : {});

/**
 * Adversarial review of tokens and of the registry ⇄ index trust (docs/security.md "Tokens"):
 * v1 X-Docker-Token values moved between repositories, accesses and methods, replayed past their
 * expiry through the registry's validation cache; v2 scope requests bent every way; JWT header
 * tricks; and the internal /_index/ routes a split registry calls, called by anyone else.
 */
describe('tokens review: v1 tokens through the registry (one process, token_cache_ttl 30)', () => {
  let s: TestServer;
  let site: Site;
  let signer: V1TokenSigner;
  let priv: TestImage;
  let pub: TestImage;
  const ids: Record<string, number> = {};

  before(async () => {
    s = await startTestServer({ v2: true, bcrypt_cost: 4, token_cache_ttl: 30, token_secret: SECRET });
    site = new Site(s.url, s.url);
    signer = new V1TokenSigner(Buffer.from(SECRET, 'utf8'), 3600);
    for (const [u, p] of [ALICE!, BOB!, CAROL!, EVE!]) {
      await saveUser(s.db!, { username: u, email: `${u}@example.com`, password: p, active: true }, { cost: 4 });
      ids[u] = (await findUserByName(s.db!, u))!.id;
    }
    priv = makeImage();
    pub = makeImage();
    await site.pushV1('alice/priv', ALICE, [priv]);
    await site.setAccess('alice/priv', ALICE, 'private');
    await site.pushV1('alice/pub', ALICE, [pub]);
    const repo = (await findRepository(s.db!, 'alice', 'priv'))!;
    await addCollaborator(s.db!, repo.id, ids.bobby!, 'read');
    await addCollaborator(s.db!, repo.id, ids.carol!, 'write');
  });
  after(async () => {
    await s?.stop();
  });

  it('a token for one repository opens no other, however the URL spells the other', async () => {
    const anon = (await site.readToken('alice/pub', undefined))!;
    assert.match(anon, /repository="alice\/pub"/);
    // the token works where it belongs (and is now in the registry's validation cache)
    assert.equal((await site.regGet('/v1/repositories/alice/pub/tags', anon)).status, 200);
    for (const path of [
      '/v1/repositories/alice/priv/tags',
      '/v1/repositories/alice/priv/tags/',
      '/v1/repositories/alice%2Fpriv/tags',
      '/v1/repositories/alice%2fpriv/tags',
      '/v1/repositories/ALICE/priv/tags',
      '/v1/repositories/alice/PRIV/tags',
      '/v1/repositories/alice//priv/tags',
      '/v1/repositories/alice/priv%2F/tags',
      '/v1/repositories/alice/pub/../priv/tags',
      '/v1/repositories/alice/pub%2F..%2Fpriv/tags',
      '/v1/repositories/alice/priv/tags/latest',
      '/v1/repositories/alice/priv/json',
      `/v1/images/${priv.id}/json`,
      `/v1/images/${priv.id}/layer`,
      `/v1/images/${priv.id}/ancestry`,
    ]) {
      const r = await site.regGet(path, anon);
      assert.ok(r.status === 401 || r.status === 404 || r.status === 400, `${path}: ${r.status} ${r.text}`);
    }
  });

  it('a read token neither writes nor deletes; a write token does not delete; a delete token does not read or write', async () => {
    const read = (await site.readToken('alice/priv', BOB))!;
    const write = await site.claim('alice/priv', CAROL, [priv.id]);
    const del = (await site.deleteToken('alice/priv', ALICE))!;
    for (const [label, t] of [
      ['read', read],
      ['write', write],
      ['delete', del],
    ] as const) {
      // each is valid for something (and cached by the registry after its first use)
      await site.regGet('/v1/repositories/alice/priv/tags', t);
      const put = await putTag(s.url, 'alice/priv', 'evil', priv.id, t);
      if (label !== 'write') assert.equal(put.status, 401, `${label} token, PUT tag: ${put.status} ${put.text}`);
      const delTag = await request(s.url, '/v1/repositories/alice/priv/tags/nope', { method: 'DELETE', headers: token(t) });
      if (label !== 'delete') assert.equal(delTag.status, 401, `${label} token, DELETE tag: ${delTag.text}`);
      else assert.equal(delTag.status, 404, `delete token, DELETE of a missing tag: ${delTag.text}`);
      const head = await request(s.url, '/v1/repositories/alice/priv/tags', { method: 'HEAD', headers: token(t) });
      assert.equal(head.status, 401, `${label} token, HEAD`);
      const putJson = await request(s.url, `/v1/images/${'ab'.repeat(32)}/json`, { method: 'PUT', headers: token(t), body: '{}' });
      if (label !== 'write') assert.equal(putJson.status, 401, `${label} token, PUT json`);
      const getTags = await site.regGet('/v1/repositories/alice/priv/tags', t);
      assert.equal(getTags.status, label === 'delete' ? 401 : 200, `${label} token, GET tags`);
    }
    // the tag the write token did put, and nothing else happened
    assert.equal((await site.regGet('/v1/repositories/alice/priv/tags/latest', read)).status, 200);
  });

  it('the registry does not serve a token past its expiry from its validation cache', async () => {
    // a token with 3 s left, validated (and cached for token_cache_ttl: 30 s) at once
    const t = await accountToken(s.db!, signer, 'alice/priv', 'read', ids.bobby!, Date.now() - 3600_000 + 3000);
    assert.equal((await site.regGet(`/v1/images/${priv.id}/json`, t)).status, 200);
    assert.equal((await site.regGet('/v1/repositories/alice/priv/tags', t)).status, 200);
    await sleep(4000);
    for (const path of [`/v1/images/${priv.id}/json`, `/v1/images/${priv.id}/layer`, '/v1/repositories/alice/priv/tags']) {
      const r = await site.regGet(path, t);
      assert.equal(r.status, 401, `${path} after the token expired: ${r.status} ${r.text}`);
    }
    // the index refuses it too
    assert.equal((await request(s.url, '/v1/repositories/alice/priv/images', { headers: token(t) })).status, 401);
  });

  it('an account token without a credential fingerprint (as issued before 2026-12-07) is refused by the index and the registry', async () => {
    const bare = signer.issue('alice/priv', 'read', ids.bobby!);
    const good = await accountToken(s.db!, signer, 'alice/priv', 'read', ids.bobby!);
    assert.equal((await site.regGet(`/v1/images/${priv.id}/json`, good)).status, 200, 'the same token with its fingerprint');
    for (const path of [`/v1/images/${priv.id}/json`, `/v1/images/${priv.id}/layer`, '/v1/repositories/alice/priv/tags']) {
      const r = await site.regGet(path, bare);
      assert.equal(r.status, 401, `${path} with a token without a fingerprint: ${r.status} ${r.text}`);
    }
    assert.equal((await request(s.url, '/v1/repositories/alice/priv/images', { headers: token(bare) })).status, 401, 'the index refuses it');
    // the owner's own write token without one: no push either
    const write = signer.issue('alice/priv', 'write', ids.alice!);
    const put = await request(s.url, '/v1/repositories/alice/priv/tags/bare', { method: 'PUT', headers: token(write), body: JSON.stringify(priv.id) });
    assert.equal(put.status, 401, put.text);
  });

  it('X-Docker-Token: true decides whether a read token is handed out; none for what the caller may not read', async () => {
    const no = await request(s.url, '/v1/repositories/alice/pub/images');
    assert.equal(no.status, 200);
    assert.equal(no.headers['x-docker-token'], undefined);
    const anonPriv = await request(s.url, '/v1/repositories/alice/priv/images', { headers: { 'X-Docker-Token': 'true' } });
    assert.equal(anonPriv.status, 401);
    assert.equal(anonPriv.headers['x-docker-token'], undefined);
    const evePriv = await site.images('alice/priv', EVE);
    assert.equal(evePriv.status, 404);
    assert.equal(evePriv.headers['x-docker-token'], undefined);
    // an anonymous token signed for the private repository (as if handed out while it was public) is refused
    assert.equal((await site.regGet(`/v1/images/${priv.id}/json`, signer.issue('alice/priv', 'read', 0))).status, 401);
  });

  it('a collaborator’s token does not survive the repository being deleted and created again', async () => {
    const img = makeImage();
    await site.pushV1('alice/again', ALICE, [img]);
    const repo = (await findRepository(s.db!, 'alice', 'again'))!;
    await addCollaborator(s.db!, repo.id, ids.carol!, 'write');
    const write = await site.claim('alice/again', CAROL, [img.id]);
    // deleted (I6 marks, a second I6 purges) and pushed again by its owner
    assert.equal((await request(s.url, '/v1/repositories/alice/again/', { method: 'DELETE', headers: { Authorization: basic(...ALICE!) } })).status, 202);
    await site.pushV1('alice/again', ALICE, [makeImage()]);
    const r = await putTag(s.url, 'alice/again', 'carol', img.id, write);
    assert.equal(r.status, 401, r.text);
  });
});

describe('tokens review: v2 scopes, accounts and JWT headers', () => {
  let s: TestServer;
  let site: Site;
  let service: string;

  before(async () => {
    s = await startTestServer({ v2: true, bcrypt_cost: 4, token_cache_ttl: 0 });
    site = new Site(s.url, s.url);
    for (const [u, p] of [ALICE!, BOB!, CAROL!, EVE!])
      await saveUser(s.db!, { username: u, email: `${u}@example.com`, password: p, active: true }, { cost: 4 });
    await site.pushV1('alice/priv', ALICE, [makeImage()]);
    await site.setAccess('alice/priv', ALICE, 'private');
    const repo = (await findRepository(s.db!, 'alice', 'priv'))!;
    await addCollaborator(s.db!, repo.id, (await findUserByName(s.db!, 'bobby'))!.id, 'read');
    service = await site.v2Service();
  });
  after(async () => {
    await s?.stop();
  });

  const grant = async (c: Creds, query: string): Promise<{ type: string; name: string; actions: string[] }[]> => {
    const r = await request(s.url, `/v2/token?service=${encodeURIComponent(service)}&${query}`, { headers: c ? { Authorization: basic(c[0], c[1]) } : {} });
    assert.equal(r.status, 200, `${query}: ${r.text}`);
    return (decodeJwt(r.json<{ token: string }>().token).access as { type: string; name: string; actions: string[] }[]) ?? [];
  };

  it('scope requests bent every way grant a stranger nothing on a private repository, and anonymous no catalog', async () => {
    for (const c of [EVE, undefined]) {
      for (const q of [
        'scope=repository:alice/priv:pull,push,delete',
        'scope=repository:alice/priv:*',
        'scope=repository:alice/priv:pull&scope=repository:alice/priv:push',
        'scope=repository:alice/priv:pull%20repository:alice/priv:push',
        'scope=repository(plugin):alice/priv:pull',
        'scope=repository:alice/priv:pull,,push',
        'scope=repository:alice/priv::pull',
        'scope=repository:alice/priv:pull:push',
        'scope=repository:alice/priv/:pull',
        'scope=repository:ALICE/priv:pull',
        'scope=repository:alice/../alice/priv:pull',
        'scope=repository:alice%2Fpriv:pull',
        'scope=repository:localhost:5000/alice/priv:pull',
      ]) {
        const got = (await grant(c, q)).filter((a) => a.type !== 'registry');
        assert.deepEqual(got, [], `${c?.[0] ?? 'anonymous'} ${q}`);
      }
    }
    assert.deepEqual(await grant(undefined, 'scope=registry:catalog:*'), []);
    assert.deepEqual(await grant(EVE, 'scope=registry:catalog:*'), [{ type: 'registry', name: 'catalog', actions: ['*'] }]);
  });

  it('a read collaborator gets pull and only pull, whatever it asks', async () => {
    for (const q of [
      'scope=repository:alice/priv:pull,push,delete',
      'scope=repository:alice/priv:*',
      'scope=repository:alice/priv:push&scope=repository:alice/priv:pull&scope=repository:alice/priv:delete',
    ]) {
      assert.deepEqual(await grant(BOB, q), [{ type: 'repository', name: 'alice/priv', actions: ['pull'] }], q);
    }
  });

  it('Basic credentials of one account with account= another: refused, nothing issued', async () => {
    const r = await request(s.url, `/v2/token?service=${encodeURIComponent(service)}&account=alice&scope=repository:alice/priv:*`, {
      headers: { Authorization: basic(...BOB!) },
    });
    assert.equal(r.status, 401);
    assert.ok(!r.text.includes('token'), r.text);
    // anonymous naming an account is anonymous
    const anon = await grant(undefined, 'account=alice&scope=repository:alice/priv:*');
    assert.deepEqual(anon, []);
  });

  it('a refresh token is no access token, an access token no refresh token; no refresh token for anonymous', async () => {
    const r = await request(s.url, `/v2/token?service=${encodeURIComponent(service)}&offline_token=true&scope=repository:alice/priv:pull`, {
      headers: { Authorization: basic(...ALICE!) },
    });
    const body = r.json<{ token: string; refresh_token?: string }>();
    assert.ok(body.refresh_token);
    const tags = await request(s.url, '/v2/alice/priv/tags/list', { headers: { Authorization: `Bearer ${body.refresh_token!}` } });
    assert.equal(tags.status, 401);
    const asRefresh = await request(s.url, '/v2/token', {
      method: 'POST',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({
        grant_type: 'refresh_token',
        refresh_token: body.token,
        client_id: 'x',
        service,
        scope: 'repository:alice/priv:pull',
      }).toString(),
    });
    assert.equal(asRefresh.status, 401, asRefresh.text);
    const anon = await request(s.url, `/v2/token?service=${encodeURIComponent(service)}&offline_token=true`);
    assert.equal(anon.json<{ refresh_token?: string }>().refresh_token, undefined);
  });

  it('JWT header tricks: jku, x5c, kid paths, crit, alg none: all refused', async () => {
    const real = decodeJwt((await request(s.url, `/v2/token?service=${encodeURIComponent(service)}`)).json<{ token: string }>().token);
    const jwks = (await request(s.url, '/.well-known/jwks.json')).json<{ keys: { kid: string }[] }>();
    const kid = jwks.keys[0]!.kid;
    const evil = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const evilCert = new X509Certificate(selfSignedCertificate(evil.privateKey, evil.publicKey, 'evil'));
    const now = Math.floor(Date.now() / 1000);
    const claims = { access: [{ type: 'repository', name: 'alice/priv', actions: ['*'] }] };
    const forge = (header: Record<string, unknown>, key = evil.privateKey) =>
      new SignJWT(claims)
        .setProtectedHeader({ alg: 'ES256', typ: 'JWT', ...header })
        .setIssuer(String(real.iss))
        .setAudience(service)
        .setSubject('alice')
        .setIssuedAt(now)
        .setExpirationTime(now + 300)
        .sign(key);
    const cases: [string, string][] = [
      ['our kid, their key', await forge({ kid })],
      ['their kid', await forge({ kid: libtrustKid(evil.publicKey) })],
      ['jku to their keys', await forge({ kid: libtrustKid(evil.publicKey), jku: 'http://127.0.0.1:9/jwks.json' })],
      ['x5c of their certificate, our kid', await forge({ kid, x5c: [evilCert.raw.toString('base64')] })],
      ['x5c of their certificate, no kid', await forge({ x5c: [evilCert.raw.toString('base64')] })],
      ['jwk embedded', await forge({ jwk: evil.publicKey.export({ format: 'jwk' }) })],
      ['kid path', await forge({ kid: `../../${kid}` })],
      ['kid __proto__', await forge({ kid: '__proto__' })],
    ];
    // jose refuses to sign with an unknown critical header: signed by hand
    const handSigned = (header: Record<string, unknown>, key: KeyObject) => {
      const input = `${Buffer.from(JSON.stringify(header)).toString('base64url')}.${Buffer.from(
        JSON.stringify({ ...claims, iss: real.iss, aud: service, sub: 'alice', iat: now, exp: now + 300 }),
      ).toString('base64url')}`;
      return `${input}.${sign('sha256', Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' }).toString('base64url')}`;
    };
    cases.push(['crit unknown', handSigned({ alg: 'ES256', typ: 'JWT', kid, crit: ['x-evil'], 'x-evil': 1 }, evil.privateKey)]);
    const none = `${Buffer.from(JSON.stringify({ alg: 'none', typ: 'JWT', kid })).toString('base64url')}.${Buffer.from(
      JSON.stringify({ ...claims, iss: real.iss, aud: service, sub: 'alice', exp: now + 300 }),
    ).toString('base64url')}.`;
    cases.push(['alg none', none]);
    for (const [label, t] of cases) {
      const r = await request(s.url, '/v2/alice/priv/tags/list', { headers: { Authorization: `Bearer ${t}` } });
      assert.equal(r.status, 401, `${label}: ${r.status} ${r.text}`);
      assert.match(String(r.headers['www-authenticate']), /error="invalid_token"/, label);
    }
  });
});

describe('tokens review: the internal /_index/ routes of a split deployment, called by anyone', () => {
  let idx: TestServer;
  let reg: TestServer;
  let site: Site;
  let service: string;
  let img: TestImage;

  before(async () => {
    idx = await startTestServer({ bcrypt_cost: 4, token_service: 'review-split', token_cache_ttl: 0 }, { role: 'index' });
    reg = await startTestServer(
      { v2: true, standalone: false, index_endpoint: idx.url, token_service: 'review-split', token_cache_ttl: 0 },
      { role: 'registry' },
    );
    site = new Site(idx.url, reg.url);
    for (const [u, p] of [ALICE!, BOB!, EVE!]) await saveUser(idx.db!, { username: u, email: `${u}@example.com`, password: p, active: true }, { cost: 4 });
    img = makeImage();
    await site.pushV1('alice/priv', ALICE, [img]);
    await site.setAccess('alice/priv', ALICE, 'private');
    await site.pushV1('alice/pub', ALICE, [makeImage()]);
    const repo = (await findRepository(idx.db!, 'alice', 'priv'))!;
    await addCollaborator(idx.db!, repo.id, (await findUserByName(idx.db!, 'bobby'))!.id, 'read');
    service = await site.v2Service();
  });
  after(async () => {
    await reg?.stop();
    await idx?.stop();
  });

  const bearer = async (c: Creds, ...scopes: string[]): Promise<string> => {
    const q = new URLSearchParams({ service });
    for (const sc of scopes) q.append('scope', sc);
    const r = await request(idx.url, `/v2/token?${q}`, { headers: c ? { Authorization: basic(c[0], c[1]) } : {} });
    assert.equal(r.status, 200, r.text);
    return r.json<{ token: string }>().token;
  };
  const post = (path: string, authorization: string | undefined, body: unknown) =>
    request(idx.url, path, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', ...(authorization ? { Authorization: authorization } : {}) },
      body: JSON.stringify(body),
    });

  it('v1 notices (checksums, pushed) need a write token for that very repository', async () => {
    const checksum = { name: 'alice/priv', id: img.id, checksum: `sha256:${'0'.repeat(64)}` };
    const pushed = { name: 'alice/priv', tag: 'evil', images: [img.id] };
    const eveWrite = await site.claim('eve/own', EVE, []);
    const bobRead = (await site.readToken('alice/priv', BOB))!;
    const anonRead = (await site.readToken('alice/pub', undefined))!;
    for (const [label, auth] of [
      ['no credentials', undefined],
      ['Basic of the owner', basic(...ALICE!)],
      ['a Bearer token', `Bearer ${await bearer(ALICE, 'repository:alice/priv:*')}`],
      ['a read token of the repository', `Token ${bobRead}`],
      ['an anonymous read token of another', `Token ${anonRead}`],
      ["a write token of the caller's own repository", `Token ${eveWrite}`],
      ['a forged token', `Token signature=1.1.x.y,repository="alice/priv",access=write`],
    ] as const) {
      for (const [path, body] of [
        ['/_index/v1/checksums', checksum],
        ['/_index/v1/pushed', pushed],
      ] as const) {
        const r = await post(path, auth, body);
        assert.ok(r.status === 401 || r.status === 403, `${label}, ${path}: ${r.status} ${r.text}`);
      }
    }
    const images = await request(idx.url, '/v1/repositories/alice/priv/images', { headers: { Authorization: basic(...ALICE!) } });
    assert.ok(!images.text.includes('0'.repeat(64)), images.text);
  });

  it('v2 notices (pushed, deleted) need a Bearer token of this index with push (delete) on the name', async () => {
    const pushed = { name: 'alice/priv', tag: 'evil', images: [{ id: 'ab'.repeat(32) }] };
    const deleted = { name: 'alice/priv', tags: ['latest'] };
    const refresh = (await request(idx.url, `/v2/token?service=${service}&offline_token=true`, { headers: { Authorization: basic(...ALICE!) } })).json<{
      refresh_token: string;
    }>().refresh_token;
    for (const [label, auth] of [
      ['no credentials', undefined],
      ['Basic of the owner', basic(...ALICE!)],
      ['a v1 write token', `Token ${await site.claim('alice/priv', ALICE, [])}`],
      ['the refresh token of the owner', `Bearer ${refresh}`],
      ['a pull token of a read collaborator', `Bearer ${await bearer(BOB, 'repository:alice/priv:*')}`],
      ['an anonymous token', `Bearer ${await bearer(undefined, 'repository:alice/priv:*', 'repository:alice/pub:*')}`],
      ["a push token of the caller's own repository", `Bearer ${await bearer(EVE, 'repository:eve/own:*', 'repository:alice/priv:*')}`],
    ] as const) {
      for (const [path, body] of [
        ['/_index/v2/pushed', pushed],
        ['/_index/v2/deleted', deleted],
      ] as const) {
        const r = await post(path, auth, body);
        assert.ok(r.status === 401 || r.status === 403, `${label}, ${path}: ${r.status} ${r.text}`);
      }
    }
    const images = await request(idx.url, '/v1/repositories/alice/priv/images', { headers: { Authorization: basic(...ALICE!) } });
    assert.ok(!images.text.includes('ab'.repeat(32)), images.text);
    const tags = await site.regGet('/v1/repositories/alice/priv/tags', (await site.readToken('alice/priv', ALICE))!);
    assert.deepEqual(Object.keys(tags.json<Record<string, string>>()), ['latest']);
  });

  it('the catalog: Basic credentials or a v1 token are anonymous there; private names only with a Bearer token that may see them', async () => {
    for (const auth of [undefined, basic(...ALICE!), `Token ${(await site.readToken('alice/priv', ALICE))!}`]) {
      const r = await request(idx.url, '/_index/v2/catalog?limit=100', { headers: auth ? { Authorization: auth } : {} });
      assert.equal(r.status, 200, r.text);
      assert.ok(!r.json<{ repositories: string[] }>().repositories.includes('alice/priv'), `${auth ?? 'none'}: ${r.text}`);
    }
    const eve = await request(idx.url, '/_index/v2/catalog?limit=100', { headers: { Authorization: `Bearer ${await bearer(EVE, 'registry:catalog:*')}` } });
    assert.ok(!eve.json<{ repositories: string[] }>().repositories.includes('alice/priv'), eve.text);
    const alice = await request(idx.url, '/_index/v2/catalog?limit=100', { headers: { Authorization: `Bearer ${await bearer(ALICE, 'registry:catalog:*')}` } });
    assert.ok(alice.json<{ repositories: string[] }>().repositories.includes('alice/priv'), alice.text);
  });

  it('a password change ends the v1 tokens issued before it, as it ends refresh tokens and web sessions', async () => {
    const DAVE: Creds = ['dave', 'davepw12'];
    await saveUser(idx.db!, { username: 'dave', email: 'dave@example.com', password: DAVE[1], active: true }, { cost: 4 });
    const d = makeImage();
    await site.pushV1('dave/app', DAVE, [d]);
    await site.setAccess('dave/app', DAVE, 'private');
    const read = (await site.readToken('dave/app', DAVE))!;
    const write = await site.claim('dave/app', DAVE, [d.id]);
    assert.equal((await site.regGet(`/v1/images/${d.id}/json`, read)).status, 200);
    assert.equal((await putTag(reg.url, 'dave/app', 'before', d.id, write)).status, 200);
    // the owner changes the password (say, after it leaked)
    const change = await request(idx.url, '/v1/users/dave/', {
      method: 'PUT',
      headers: { Authorization: basic(...DAVE), 'Content-Type': 'application/json' },
      body: JSON.stringify({ password: 'newdavepw' }),
    });
    assert.equal(change.status, 204, change.text);
    assert.equal((await site.regGet(`/v1/images/${d.id}/json`, read)).status, 401, 'read token issued before the change');
    assert.equal((await putTag(reg.url, 'dave/app', 'after', d.id, write)).status, 401, 'write token issued before the change');
    assert.equal((await request(idx.url, '/v1/repositories/dave/app/images', { headers: { Authorization: `Token ${read}` } })).status, 401);
    // tokens issued under the new password work
    const fresh = (await site.readToken('dave/app', ['dave', 'newdavepw']))!;
    assert.equal((await site.regGet(`/v1/images/${d.id}/json`, fresh)).status, 200);
  });

  it('deactivating an account ends its v1 tokens: activated again, it does not get them back', async () => {
    const ERIN: Creds = ['erin', 'erinpw12'];
    const erin = await saveUser(idx.db!, { username: 'erin', email: 'erin@example.com', password: ERIN[1], active: true }, { cost: 4 });
    const e = makeImage();
    await site.pushV1('erin/app', ERIN, [e]);
    await site.setAccess('erin/app', ERIN, 'private');
    const read = (await site.readToken('erin/app', ERIN))!;
    const write = await site.claim('erin/app', ERIN, [e.id]);
    assert.equal((await site.regGet(`/v1/images/${e.id}/json`, read)).status, 200);
    // an admin deactivates the account (say, its token leaked), then activates it again
    await setActive(idx.db!, erin!.id, false);
    await setActive(idx.db!, erin!.id, true);
    assert.equal((await site.regGet(`/v1/images/${e.id}/json`, read)).status, 401, 'read token issued before the deactivation');
    assert.equal((await putTag(reg.url, 'erin/app', 'after', e.id, write)).status, 401, 'write token issued before the deactivation');
    const fresh = (await site.readToken('erin/app', ERIN))!;
    assert.equal((await site.regGet(`/v1/images/${e.id}/json`, fresh)).status, 200);
  });

  it('the registry node takes a v1 token only as the index vouches for it, for its own repository', async () => {
    const read = (await site.readToken('alice/priv', BOB))!;
    assert.equal((await site.regGet(`/v1/images/${img.id}/json`, read)).status, 200);
    assert.equal((await putTag(reg.url, 'alice/priv', 'x', img.id, read)).status, 401);
    const anon = (await site.readToken('alice/pub', undefined))!;
    assert.equal((await site.regGet(`/v1/images/${img.id}/json`, anon)).status, 404);
    assert.equal((await site.regGet('/v1/repositories/alice/priv/tags', anon)).status, 401);
  });
});

describe('tokens review: what a v1 mirror passes on to its source', () => {
  let upstream: Server;
  let mirror: TestServer;
  const seen: IncomingHttpHeaders[] = [];

  before(async () => {
    upstream = createServer((req, res) => {
      seen.push(req.headers);
      res.writeHead(404, { 'Content-Type': 'application/json' }).end('{"error": "Image not found"}');
    });
    await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
    const source = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;
    mirror = await startTestServer({ standalone: true, mirroring: { source } });
  });
  after(async () => {
    await mirror?.stop();
    await new Promise<void>((r) => upstream.close(() => r()));
  });

  it('the web UI session cookie (any cookie) and Proxy-Authorization stay here; the v1 credentials go on, as the Python mirror sent them', async () => {
    const id = 'cd'.repeat(32);
    const r = await request(mirror.url, `/v1/images/${id}/json`, {
      headers: {
        Cookie: 'lr_session=secret-session; lr_csrf=secret-csrf',
        'Proxy-Authorization': 'Basic cHJveHk6c2VjcmV0',
        Authorization: 'Token signature=x,repository="a/b",access=read',
      },
    });
    assert.equal(r.status, 404, r.text);
    assert.ok(seen.length > 0, 'the mirror asked its source');
    for (const h of seen) {
      assert.equal(h.cookie, undefined, JSON.stringify(h));
      assert.equal(h['proxy-authorization'], undefined, JSON.stringify(h));
      assert.equal(h.authorization, 'Token signature=x,repository="a/b",access=read');
    }
  });
});

describe('tokens review: credentials in the access log', () => {
  it('a webhook callback path is logged without its token', async () => {
    const lines: string[] = [];
    const dir = await mkdtemp(join(tmpdir(), 'lr-review-log-'));
    const config = loadConfig({ env: {}, flavor: 'test', overrides: { host: '127.0.0.1', port: 0, storage_path: dir, loglevel: 'info' } });
    const running = await startServer(config, { role: 'all', logger: createLogger('info', {}, (l) => lines.push(l)) });
    try {
      const secret = 'e7'.repeat(32);
      for (const path of [`/u/alice/app/hook/${secret}/`, `/u/alice/app/hook/${secret}`, `/u/alice/app/hook/${secret}?x=1`]) {
        await request(running.url, path, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{"state":"success"}' });
      }
      await sleep(200);
      const requests = lines.filter((l) => l.includes('/hook/'));
      assert.equal(requests.length, 3, lines.join(''));
      for (const l of requests) {
        assert.ok(!l.includes(secret), l);
        assert.match(l, /\/u\/alice\/app\/hook\/<redacted>/);
      }
    } finally {
      await running.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
