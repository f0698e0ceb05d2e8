import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { decodeJwt, decodeProtectedHeader } from 'jose';
import { request, type Response } from '../helpers/http.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { spawnServer, type ChildServer } from '../helpers/child.js';
import { ROOT } from '../helpers/paths.js';
import { sha256 } from '../helpers/oci-layout.js';
import { makeImage, pushImage, putTag } from '../helpers/v1-client.js';
import { saveUser, setActive, setPassword, removeUser, findUserByName } from '../../src/db/users.js';
import { addCollaborator, saveRepository } from '../../src/db/repositories.js';
import { loadSigningKey, V2TokenIssuer } from '../../src/auth/v2-jwt.js';
import { libtrustKid } from '../../src/content/schema1.js';

const run = promisify(execFile);
const CLI = join(ROOT, 'dist', 'src', 'cli', 'main.js');
const basic = (u: string, p: string): string => `Basic ${Buffer.from(`${u}:${p}`).toString('base64')}`;
const bearer = (t: string): Record<string, string> => ({ Authorization: `Bearer ${t}` });

interface TokenBody {
  token: string;
  access_token: string;
  expires_in: number;
  issued_at: string;
  refresh_token?: string;
}
type Access = { type: string; name: string; actions: string[] }[];

function challenge(r: Response): Record<string, string> {
  const h = String(r.headers['www-authenticate'] ?? '');
  const m = /^Bearer (.*)$/.exec(h);
  assert.ok(m, `Bearer challenge expected, got ${h}`);
  const out: Record<string, string> = {};
  for (const p of m[1]!.matchAll(/(\w+)="([^"]*)"/g)) out[p[1]!] = p[2]!;
  return out;
}

function assertUnauthorized(r: Response, error?: string): Record<string, string> {
  assert.equal(r.status, 401, r.text);
  assert.equal(r.headers['docker-distribution-api-version'], 'registry/2.0');
  const body = r.json<{ errors: { code: string; detail: unknown }[] }>();
  assert.equal(body.errors[0]!.code, 'UNAUTHORIZED');
  const c = challenge(r);
  assert.equal(c.error, error);
  return c;
}

/** A blob pushed in one POST (end-4b). */
async function pushBlob(url: string, name: string, token: string | undefined, data: Buffer): Promise<Response> {
  return request(url, `/v2/${name}/blobs/uploads/?digest=${sha256(data)}`, {
    method: 'POST',
    headers: { ...(token ? bearer(token) : {}), 'Content-Type': 'application/octet-stream' },
    body: data,
  });
}

describe('v2 token auth: the index token service and the registry check (spec §4)', () => {
  let s: TestServer;
  let service: string;
  const getToken = async (creds: [string, string] | undefined, scopes: string[], extra: Record<string, string> = {}): Promise<Response> => {
    const q = new URLSearchParams({ service, ...extra });
    for (const sc of scopes) q.append('scope', sc);
    return request(s.url, `/v2/token?${q}`, { headers: creds ? { Authorization: basic(...creds) } : {} });
  };
  const tokenFor = async (creds: [string, string] | undefined, ...scopes: string[]): Promise<string> => {
    const r = await getToken(creds, scopes);
    assert.equal(r.status, 200, r.text);
    return r.json<TokenBody>().token;
  };
  const accessOf = (t: string): Access => decodeJwt(t).access as Access;
  const post = (form: Record<string, string>) =>
    request(s.url, '/v2/token', {
      method: 'POST',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams(form).toString(),
    });

  const alice: [string, string] = ['alice', 'alicepw'];
  const bob: [string, string] = ['bobby', 'bobbypw'];
  const dave: [string, string] = ['davey', 'daveypw'];

  before(async () => {
    s = await startTestServer({ v2: true, bcrypt_cost: 4 });
    service = new URL(s.url).host;
    const db = s.db!;
    const a = await saveUser(db, { username: 'alice', email: 'a@example.com', password: 'alicepw', active: true }, { cost: 4 });
    const b = await saveUser(db, { username: 'bobby', email: 'b@example.com', password: 'bobbypw', active: true }, { cost: 4 });
    await saveUser(db, { username: 'davey', email: 'd@example.com', password: 'daveypw', active: true }, { cost: 4 });
    await saveUser(db, { username: 'carol', email: 'c@example.com', password: 'carolpw', active: false }, { cost: 4 });
    await saveUser(db, { username: 'frank', email: 'f@example.com', password: 'frankpw', active: true }, { cost: 4 });
    await saveUser(db, { username: 'erin', email: 'e@example.com', password: 'erinpw', active: true }, { cost: 4 });
    await saveUser(db, { username: 'root1', email: 'r@example.com', password: 'rootpw', active: true, admin: true }, { cost: 4 });
    const { repository: priv } = await saveRepository(db, { namespace: 'alice', name: 'secret', ownerId: a!.id, private: true });
    await saveRepository(db, { namespace: 'alice', name: 'pub', ownerId: a!.id });
    await addCollaborator(db, priv.id, b!.id, 'read');
  });
  after(() => s?.stop());

  it('GET /v2/ without credentials: 401 UNAUTHORIZED, Bearer challenge with realm and service, no scope', async () => {
    const r = await request(s.url, '/v2/');
    const c = assertUnauthorized(r);
    assert.equal(c.realm, `${s.url}/v2/token`);
    assert.equal(c.service, service);
    assert.equal(c.scope, undefined);
  });

  it('issues a token for Basic credentials as docker login asks (account, client_id, offline_token): claims, kid, refresh token', async () => {
    const r = await getToken(alice, [], { account: 'alice', client_id: 'docker', offline_token: 'true' });
    assert.equal(r.status, 200, r.text);
    const body = r.json<TokenBody>();
    assert.equal(body.token, body.access_token);
    assert.equal(body.expires_in, 300);
    assert.match(body.issued_at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    assert.ok(body.refresh_token);
    const h = decodeProtectedHeader(body.token);
    assert.equal(h.typ, 'JWT');
    assert.equal(h.alg, 'ES256');
    const key = await loadSigningKey(s.db!, null);
    assert.equal(h.kid, libtrustKid(key.publicKey));
    assert.match(String(h.kid), /^([A-Z2-7]{4}:){11}[A-Z2-7]{4}$/);
    const c = decodeJwt(body.token);
    assert.equal(c.iss, 'legacy-registry');
    assert.equal(c.sub, 'alice');
    assert.equal(c.aud, service);
    assert.equal(c.exp! - c.iat!, 300);
    assert.equal(c.nbf, c.iat);
    assert.ok(typeof c.jti === 'string' && c.jti.length > 10);
    assert.deepEqual(c.access, []);
    // the token opens /v2/
    assert.equal((await request(s.url, '/v2/', { headers: bearer(body.token) })).status, 200);
    // no refresh token unless offline_token=true
    assert.equal((await getToken(alice, [])).json<TokenBody>().refresh_token, undefined);
  });

  it('wrong password: 401; inactive account: 403; account not matching the credentials: 401', async () => {
    const wrong = await getToken(['alice', 'nope'], []);
    assert.equal(wrong.status, 401);
    assert.equal(wrong.json<{ errors: { code: string }[] }>().errors[0]!.code, 'UNAUTHORIZED');
    const inactive = await getToken(['carol', 'carolpw'], []);
    assert.equal(inactive.status, 403);
    assert.equal(inactive.json<{ errors: { code: string }[] }>().errors[0]!.code, 'DENIED');
    assert.equal((await getToken(alice, [], { account: 'bobby' })).status, 401);
  });

  it('repeated failures are throttled like v1 logins: 429 TOOMANYREQUESTS with Retry-After', async () => {
    let last: Response | undefined;
    for (let i = 0; i < 6; i++) last = await getToken(['erin', `bad${i}`], []);
    assert.equal(last!.status, 429);
    assert.ok(Number(last!.headers['retry-after']) > 0);
    assert.equal(last!.json<{ errors: { code: string }[] }>().errors[0]!.code, 'TOOMANYREQUESTS');
    assert.equal((await getToken(['erin', 'erinpw'], [])).status, 429, 'locked even with the right password');
  });

  it('grants the intersection of requested and allowed actions, never an error', async () => {
    assert.deepEqual(accessOf(await tokenFor(bob, 'repository:alice/secret:pull,push')), [{ type: 'repository', name: 'alice/secret', actions: ['pull'] }]);
    assert.deepEqual(accessOf(await tokenFor(dave, 'repository:alice/secret:pull,push')), []);
    assert.deepEqual(accessOf(await tokenFor(undefined, 'repository:alice/secret:pull')), []);
    assert.deepEqual(accessOf(await tokenFor(undefined, 'repository:alice/pub:pull,push')), [{ type: 'repository', name: 'alice/pub', actions: ['pull'] }]);
    assert.deepEqual(accessOf(await tokenFor(alice, 'repository:alice/secret:*')), [{ type: 'repository', name: 'alice/secret', actions: ['*'] }]);
    assert.deepEqual(accessOf(await tokenFor(bob, 'repository:alice/secret:*')), [{ type: 'repository', name: 'alice/secret', actions: ['pull'] }]);
    // deeper names: the namespace is the first component; new repositories in one's own namespace
    assert.deepEqual(accessOf(await tokenFor(alice, 'repository:alice/team/app:pull,push,delete')), [
      { type: 'repository', name: 'alice/team/app', actions: ['pull', 'push', 'delete'] },
    ]);
    assert.deepEqual(accessOf(await tokenFor(bob, 'repository:alice/team/app:push')), []);
    // one component = library/: admins only may push
    assert.deepEqual(accessOf(await tokenFor(alice, 'repository:base:push')), []);
    assert.deepEqual(accessOf(await tokenFor(['root1', 'rootpw'], 'repository:base:pull,push')), [
      { type: 'repository', name: 'base', actions: ['pull', 'push'] },
    ]);
    // several scopes in one request, and the catalog for accounts only
    const both = accessOf(await tokenFor(alice, 'repository:alice/pub:pull', 'registry:catalog:*'));
    assert.deepEqual(both, [
      { type: 'repository', name: 'alice/pub', actions: ['pull'] },
      { type: 'registry', name: 'catalog', actions: ['*'] },
    ]);
    assert.deepEqual(accessOf(await tokenFor(undefined, 'registry:catalog:*')), []);
    // malformed scopes are ignored
    assert.deepEqual(accessOf(await tokenFor(alice, 'nonsense', 'repository:Bad Name:pull')), []);
  });

  it('refresh tokens: POST grant_type=password (offline) and refresh_token; not an access token; dead with the account', async () => {
    const pw = await post({
      grant_type: 'password',
      username: 'frank',
      password: 'frankpw',
      access_type: 'offline',
      client_id: 'test',
      service,
      scope: 'repository:frank/app:pull,push',
    });
    assert.equal(pw.status, 200, pw.text);
    const b = pw.json<TokenBody & { scope: string }>();
    assert.ok(b.refresh_token);
    assert.equal(b.scope, 'repository:frank/app:pull,push');
    assert.deepEqual(accessOf(b.access_token), [{ type: 'repository', name: 'frank/app', actions: ['pull', 'push'] }]);
    const rf = await post({ grant_type: 'refresh_token', refresh_token: b.refresh_token!, client_id: 'test', service, scope: 'repository:frank/app:pull' });
    assert.equal(rf.status, 200, rf.text);
    assert.equal(decodeJwt(rf.json<TokenBody>().access_token).sub, 'frank');
    assertUnauthorized(await request(s.url, '/v2/', { headers: bearer(b.refresh_token!) }), 'invalid_token');
    assert.equal((await post({ grant_type: 'password', username: 'frank', password: 'wrong', client_id: 'test', service })).status, 401);
    assert.equal((await post({ grant_type: 'refresh_token', refresh_token: 'garbage', client_id: 'test', service })).status, 401);
    assert.equal((await post({ grant_type: 'client_credentials', client_id: 'test' })).status, 400);
    assert.equal((await post({ grant_type: 'password', username: 'frank', password: 'frankpw' })).status, 400, 'client_id required');
    const user = await findUserByName(s.db!, 'frank');
    // a password change ends the sessions of the old password
    await setPassword(s.db!, user!.id, 'frankpw2', { cost: 4 });
    assert.equal((await post({ grant_type: 'refresh_token', refresh_token: b.refresh_token!, client_id: 'test', service })).status, 401);
    const again = await post({ grant_type: 'password', username: 'frank', password: 'frankpw2', access_type: 'offline', client_id: 'test', service });
    const b2 = again.json<TokenBody>();
    assert.equal((await post({ grant_type: 'refresh_token', refresh_token: b2.refresh_token!, client_id: 'test', service })).status, 200);
    await setActive(s.db!, user!.id, false);
    // the deactivation ended the refresh token (401; a password grant of the deactivated account is 403)
    assert.equal((await post({ grant_type: 'refresh_token', refresh_token: b2.refresh_token!, client_id: 'test', service })).status, 401);
    assert.equal(
      (await post({ grant_type: 'password', username: 'frank', password: 'frankpw2', access_type: 'offline', client_id: 'test', service })).status,
      403,
    );
    // activated again, the account does not get its refresh tokens back (the deactivation ended them)
    await setActive(s.db!, user!.id, true);
    assert.equal((await post({ grant_type: 'refresh_token', refresh_token: b2.refresh_token!, client_id: 'test', service })).status, 401);
    const b3 = (
      await post({ grant_type: 'password', username: 'frank', password: 'frankpw2', access_type: 'offline', client_id: 'test', service })
    ).json<TokenBody>();
    assert.equal((await post({ grant_type: 'refresh_token', refresh_token: b3.refresh_token!, client_id: 'test', service })).status, 200);
    await removeUser(s.db!, user!.id);
    assert.equal((await post({ grant_type: 'refresh_token', refresh_token: b.refresh_token!, client_id: 'test', service })).status, 401);
  });

  it('refuses missing, forged, expired, wrong-audience and wrong-issuer tokens with invalid_token', async () => {
    const c = assertUnauthorized(await request(s.url, '/v2/alice/pub/tags/list'));
    assert.equal(c.scope, 'repository:alice/pub:pull');
    const good = await tokenFor(alice, 'repository:alice/pub:pull');
    const [h, p] = good.split('.');
    // forged: same claims, signed by another key (with the same kid)
    const other = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
    const key = await loadSigningKey(s.db!, null);
    const forger = new V2TokenIssuer({ ...key, privateKey: other }, { issuer: 'legacy-registry', ttl: 300 });
    const forged = (await forger.issueAccess({ sub: 'alice', aud: service, access: [{ type: 'repository', name: 'alice/pub', actions: ['pull'] }] })).token;
    const r1 = await request(s.url, '/v2/alice/pub/tags/list', { headers: bearer(forged) });
    const c1 = assertUnauthorized(r1, 'invalid_token');
    assert.equal(c1.scope, 'repository:alice/pub:pull');
    assert.deepEqual(r1.json<{ errors: { detail: unknown }[] }>().errors[0]!.detail, [{ Type: 'repository', Name: 'alice/pub', Action: 'pull' }]);
    // tampered payload
    const tampered = `${h}.${Buffer.from(JSON.stringify({ ...decodeJwt(good), sub: 'root1' })).toString('base64url')}.${good.split('.')[2]}`;
    assertUnauthorized(await request(s.url, '/v2/alice/pub/tags/list', { headers: bearer(tampered) }), 'invalid_token');
    assertUnauthorized(await request(s.url, '/v2/', { headers: bearer(`${h}.${p}`) }), 'invalid_token');
    const access = [{ type: 'repository', name: 'alice/pub', actions: ['pull'] }];
    const real = new V2TokenIssuer(key, { issuer: 'legacy-registry', ttl: 300 });
    const expired = (await real.issueAccess({ sub: 'alice', aud: service, access }, Date.now() - 400_000)).token;
    assertUnauthorized(await request(s.url, '/v2/alice/pub/tags/list', { headers: bearer(expired) }), 'invalid_token');
    // within the 60 s leeway it still works
    const justExpired = (await real.issueAccess({ sub: 'alice', aud: service, access }, Date.now() - 330_000)).token;
    // past auth: the repository has no content yet, so the answer is the registry's NAME_UNKNOWN, not a 401
    const past = await request(s.url, '/v2/alice/pub/tags/list', { headers: bearer(justExpired) });
    assert.equal(past.status, 404, past.text);
    assert.equal(past.json<{ errors: { code: string }[] }>().errors[0]?.code, 'NAME_UNKNOWN');
    const wrongAud = (await real.issueAccess({ sub: 'alice', aud: 'other.example:5000', access })).token;
    assertUnauthorized(await request(s.url, '/v2/alice/pub/tags/list', { headers: bearer(wrongAud) }), 'invalid_token');
    const wrongIss = (await new V2TokenIssuer(key, { issuer: 'someone-else', ttl: 300 }).issueAccess({ sub: 'alice', aud: service, access })).token;
    assertUnauthorized(await request(s.url, '/v2/alice/pub/tags/list', { headers: bearer(wrongIss) }), 'invalid_token');
  });

  it('malformed Authorization headers and token requests get 4xx, never 5xx', async () => {
    const none = Buffer.from('{"alg":"none","typ":"JWT"}').toString('base64url');
    const hs = Buffer.from('{"alg":"HS256","typ":"JWT","kid":"x"}').toString('base64url');
    const claims = Buffer.from('{"iss":"legacy-registry","access":[{"type":"repository","name":"alice/pub","actions":["*"]}]}').toString('base64url');
    for (const auth of [
      'Bearer',
      'Bearer ',
      'Bearer a.b.c',
      'Bearer ...',
      `Bearer ${none}.${claims}.`,
      `Bearer ${hs}.${claims}.c2ln`,
      `Bearer ${'x'.repeat(8000)}`,
      'Basic !!!',
      'Token signature=1',
    ]) {
      const r = await request(s.url, '/v2/alice/pub/tags/list', { headers: { Authorization: auth } });
      assert.equal(r.status, 401, auth.slice(0, 40));
    }
    for (const q of ['scope=%ZZ', 'scope=repository:a:b:c:d', 'offline_token=yes&scope=', 'service=&account=']) {
      const r = await request(s.url, `/v2/token?${q}`);
      assert.equal(r.status, 200, q);
    }
    assert.equal((await request(s.url, '/v2/token', { headers: { Authorization: 'Basic !!!' } })).status, 401);
    assert.equal((await request(s.url, '/v2/token', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{}' })).status, 400);
    assert.equal(
      (await request(s.url, '/v2/token', { method: 'POST', headers: { 'Content-Type': 'application/x-www-form-urlencoded' }, body: 'x'.repeat(70_000) }))
        .status,
      400,
    );
  });

  it('a token for another repository or without push: insufficient_scope; with the scope the request goes through', async () => {
    const pubPull = await tokenFor(alice, 'repository:alice/pub:pull');
    const data = Buffer.from(`blob ${Date.now()}`);
    assertUnauthorized(await request(s.url, '/v2/alice/secret/tags/list', { headers: bearer(pubPull) }), 'insufficient_scope');
    const r = await pushBlob(s.url, 'alice/pub', pubPull, data);
    const c = assertUnauthorized(r, 'insufficient_scope');
    assert.equal(c.scope, 'repository:alice/pub:pull,push');
    const push = await tokenFor(alice, 'repository:alice/pub:pull,push');
    assert.equal((await pushBlob(s.url, 'alice/pub', push, data)).status, 201);
    // anonymous pull of the public repository
    const anon = await tokenFor(undefined, 'repository:alice/pub:pull');
    const got = await request(s.url, `/v2/alice/pub/blobs/${sha256(data)}`, { headers: bearer(anon) });
    assert.equal(got.status, 200);
    assert.ok(got.body.equals(data));
    // DELETE needs delete; mount needs pull on the source
    assertUnauthorized(await request(s.url, `/v2/alice/pub/blobs/${sha256(data)}`, { method: 'DELETE', headers: bearer(push) }), 'insufficient_scope');
    const mountNoSource = await request(s.url, `/v2/alice/secret/blobs/uploads/?mount=${sha256(data)}&from=alice/other`, {
      method: 'POST',
      headers: bearer(await tokenFor(alice, 'repository:alice/secret:pull,push')),
    });
    assert.equal(challenge(mountNoSource).scope, 'repository:alice/secret:pull,push repository:alice/other:pull');
    const mount = await request(s.url, `/v2/alice/secret/blobs/uploads/?mount=${sha256(data)}&from=alice/pub`, {
      method: 'POST',
      headers: bearer(await tokenFor(alice, 'repository:alice/secret:pull,push', 'repository:alice/pub:pull')),
    });
    assert.equal(mount.status, 201, mount.text);
  });

  it('a private repository is readable by its read collaborator, not by others', async () => {
    const data = Buffer.from(`secret ${Date.now()}`);
    assert.equal((await pushBlob(s.url, 'alice/secret', await tokenFor(alice, 'repository:alice/secret:push,pull'), data)).status, 201);
    const path = `/v2/alice/secret/blobs/${sha256(data)}`;
    assert.equal((await request(s.url, path, { headers: bearer(await tokenFor(bob, 'repository:alice/secret:pull')) })).status, 200);
    assertUnauthorized(await request(s.url, path, { headers: bearer(await tokenFor(dave, 'repository:alice/secret:pull')) }), 'insufficient_scope');
    assertUnauthorized(await request(s.url, path, { headers: bearer(await tokenFor(undefined, 'repository:alice/secret:pull')) }), 'insufficient_scope');
  });

  it('the catalog needs registry:catalog:*', async () => {
    const c = assertUnauthorized(
      await request(s.url, '/v2/_catalog', { headers: bearer(await tokenFor(alice, 'repository:alice/pub:pull')) }),
      'insufficient_scope',
    );
    assert.equal(c.scope, 'registry:catalog:*');
    const ok = await request(s.url, '/v2/_catalog', { headers: bearer(await tokenFor(alice, 'registry:catalog:*')) });
    assert.equal(ok.status, 200, ok.text);
    assert.ok(Array.isArray(ok.json<{ repositories: string[] }>().repositories));
  });

  it('publishes the verification key as a JWKS', async () => {
    const r = await request(s.url, '/.well-known/jwks.json');
    assert.equal(r.status, 200);
    const { keys } = r.json<{ keys: { kid: string; kty: string; crv: string }[] }>();
    const key = await loadSigningKey(s.db!, null);
    assert.equal(keys[0]!.kid, key.kid);
    assert.equal(keys[0]!.kty, 'EC');
  });
});

describe('v2 token auth with index and registry as two processes', () => {
  let idx: ChildServer;
  let reg: ChildServer;
  let dirs: string[] = [];

  before(async () => {
    dirs = [await mkdtemp(join(tmpdir(), 'lr-v2a-i-')), await mkdtemp(join(tmpdir(), 'lr-v2a-r-'))];
    // one service name for both (the token audience): each would otherwise default to its own listen address
    idx = await spawnServer({ STORAGE_PATH: dirs[0]!, STANDALONE: '', BCRYPT_COST: '4', TOKEN_SERVICE: 'split-registry' }, ['--only', 'index']);
    reg = await spawnServer({ STORAGE_PATH: dirs[1]!, STANDALONE: '', INDEX_ENDPOINT: idx.url, V2: 'true', TOKEN_SERVICE: 'split-registry' }, [
      '--only',
      'registry',
    ]);
  });
  after(async () => {
    idx?.proc.kill('SIGTERM');
    reg?.proc.kill('SIGTERM');
    await Promise.all([idx?.exited, reg?.exited]);
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  it('the registry sends clients to the index realm and accepts its tokens (key from the JWKS), not forged ones', async () => {
    const signup = await request(idx.url, '/v1/users/', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ username: 'split1', password: 'splitpw', email: 's@example.com' }),
    });
    assert.equal(signup.status, 201, signup.text);
    const c = assertUnauthorized(await request(reg.url, '/v2/'));
    assert.equal(c.realm, `${idx.url}/v2/token`);
    assert.equal(c.service, 'split-registry');
    const q = new URLSearchParams({ service: c.service!, scope: 'repository:split1/app:pull,push' });
    const t = await request(idx.url, `/v2/token?${q}`, { headers: { Authorization: basic('split1', 'splitpw') } });
    assert.equal(t.status, 200, t.text);
    const token = t.json<TokenBody>().token;
    const data = Buffer.from('split blob');
    assert.equal((await pushBlob(reg.url, 'split1/app', token, data)).status, 201);
    assert.equal((await request(reg.url, `/v2/split1/app/blobs/${sha256(data)}`, { headers: bearer(token) })).status, 200);
    const other = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
    const kid = decodeProtectedHeader(token).kid!;
    const forged = await new V2TokenIssuer({ privateKey: other, publicKey: other, kid, alg: 'ES256' }, { issuer: 'legacy-registry', ttl: 300 }).issueAccess({
      sub: 'split1',
      aud: c.service!,
      access: [{ type: 'repository', name: 'split1/app', actions: ['pull'] }],
    });
    assertUnauthorized(await request(reg.url, `/v2/split1/app/blobs/${sha256(data)}`, { headers: bearer(forged.token) }), 'invalid_token');
  });
});

describe('v2 token auth with token_rootcertbundle (certificates of an external or our own token service)', () => {
  let idx: TestServer;
  let reg: TestServer;
  let dir: string;

  before(async () => {
    // the index issues tokens for the registry's service only when it is told of it
    idx = await startTestServer({ bcrypt_cost: 4, token_audiences: ['my-registry'] }, { role: 'index' });
    await saveUser(idx.db!, { username: 'certy', email: 'c@example.com', password: 'certypw', active: true }, { cost: 4 });
    dir = await mkdtemp(join(tmpdir(), 'lr-v2a-cert-'));
    const pem = await request(idx.url, '/.well-known/token-cert.pem');
    assert.equal(pem.status, 200);
    assert.match(pem.text, /^-----BEGIN CERTIFICATE-----\n/);
    await writeFile(join(dir, 'bundle.pem'), pem.text);
    reg = await startTestServer(
      {
        v2: true,
        v2_auth: 'token',
        standalone: true,
        token_rootcertbundle: join(dir, 'bundle.pem'),
        token_realm: `${idx.url}/v2/token`,
        token_service: 'my-registry',
      },
      { role: 'registry' },
    );
  });
  after(async () => {
    await reg?.stop();
    await idx?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('tokens carry x5c (the published certificate) and the kid; the registry trusts them through the bundle', async () => {
    const c = assertUnauthorized(await request(reg.url, '/v2/'));
    assert.equal(c.realm, `${idx.url}/v2/token`);
    assert.equal(c.service, 'my-registry');
    const t = await request(idx.url, '/v2/token?service=my-registry&scope=repository:certy/app:pull,push', {
      headers: { Authorization: basic('certy', 'certypw') },
    });
    const token = t.json<TokenBody>().token;
    const h = decodeProtectedHeader(token);
    assert.equal(h.x5c?.length, 1);
    const jwks = (await request(idx.url, '/.well-known/jwks.json')).json<{ keys: { x5c: string[] }[] }>();
    assert.deepEqual(jwks.keys[0]!.x5c, h.x5c);
    const data = Buffer.from('bundle blob');
    assert.equal((await pushBlob(reg.url, 'certy/app', token, data)).status, 201);
    // the same kid without x5c: found in the bundle by its libtrust fingerprint
    const key = await loadSigningKey(idx.db!, null);
    const noX5c = await new V2TokenIssuer({ ...key, certificate: undefined }, { issuer: 'legacy-registry', ttl: 300 }).issueAccess({
      sub: 'certy',
      aud: 'my-registry',
      access: [{ type: 'repository', name: 'certy/app', actions: ['pull'] }],
    });
    assert.equal(decodeProtectedHeader(noX5c.token).x5c, undefined);
    assert.equal((await request(reg.url, `/v2/certy/app/blobs/${sha256(data)}`, { headers: bearer(noX5c.token) })).status, 200);
    // a key and certificate of its own (not in the bundle): refused
    const { selfSignedCertificate } = await import('../../src/auth/x509.js');
    const { createPublicKey } = await import('node:crypto');
    const other = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
    const otherKey = {
      privateKey: other,
      publicKey: createPublicKey(other),
      kid: libtrustKid(createPublicKey(other)),
      alg: 'ES256' as const,
      certificate: selfSignedCertificate(other, createPublicKey(other), 'intruder'),
    };
    const intruder = await new V2TokenIssuer(otherKey, { issuer: 'legacy-registry', ttl: 300 }).issueAccess({
      sub: 'certy',
      aud: 'my-registry',
      access: [{ type: 'repository', name: 'certy/app', actions: ['pull'] }],
    });
    assertUnauthorized(await request(reg.url, `/v2/certy/app/blobs/${sha256(data)}`, { headers: bearer(intruder.token) }), 'invalid_token');
  });
});

describe('v2 htpasswd mode and the htpasswd CLI (spec §4.6)', () => {
  let s: TestServer;
  let dir: string;
  let file: string;
  const cli = (args: string[], input?: string) =>
    new Promise<{ stdout: string; stderr: string; code: number }>((resolve) => {
      const p = execFile(
        process.execPath,
        [CLI, ...args],
        { env: { PATH: process.env.PATH ?? '', STORAGE_PATH: dir, BCRYPT_COST: '4' } },
        (err, stdout, stderr) => resolve({ stdout, stderr, code: err ? ((err as { code?: number }).code ?? 1) : 0 }),
      );
      p.stdin!.end(input ?? '');
    });

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'lr-htpw-'));
    file = join(dir, 'htpasswd');
    const added = await cli(['htpasswd', file, 'hanna', '--password-stdin'], 'hannapw\n');
    assert.equal(added.code, 0, added.stderr);
    assert.match(added.stdout, /added hanna/);
    s = await startTestServer({ standalone: true, v2: true, v2_auth: 'htpasswd', htpasswd_path: file, htpasswd_realm: 'Test Realm' });
  });
  after(async () => {
    await s?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('the CLI writes a $2y$ bcrypt entry and has --help', async () => {
    const { readFile } = await import('node:fs/promises');
    assert.match(await readFile(file, 'utf8'), /^hanna:\$2y\$04\$[./A-Za-z0-9]{53}\n$/);
    assert.match((await run(process.execPath, [CLI, 'htpasswd', '--help'])).stdout, /Usage: legacy-registry htpasswd/);
  });

  it('answers a Basic challenge without or with wrong credentials, 200 with good ones', async () => {
    const none = await request(s.url, '/v2/');
    assert.equal(none.status, 401);
    assert.equal(none.headers['www-authenticate'], 'Basic realm="Test Realm"');
    assert.equal(none.json<{ errors: { code: string }[] }>().errors[0]!.code, 'UNAUTHORIZED');
    assert.equal((await request(s.url, '/v2/', { headers: { Authorization: basic('hanna', 'wrong') } })).status, 401);
    assert.equal((await request(s.url, '/v2/', { headers: { Authorization: basic('nobody', 'hannapw') } })).status, 401);
    assert.equal((await request(s.url, '/v2/', { headers: { Authorization: basic('hanna', 'hannapw') } })).status, 200);
    const data = Buffer.from('htpasswd blob');
    const up = await request(s.url, `/v2/ns/app/blobs/uploads/?digest=${sha256(data)}`, {
      method: 'POST',
      headers: { Authorization: basic('hanna', 'hannapw') },
      body: data,
    });
    assert.equal(up.status, 201);
  });

  it('gates the v1 routes with the same file: stand-in index login, repository calls, registry routes (v1 errors)', async () => {
    const good = { Authorization: basic('hanna', 'hannapw') };
    const none = await request(s.url, '/v1/users/');
    assert.equal(none.status, 401);
    assert.equal(none.headers['www-authenticate'], 'Basic realm="Test Realm"');
    const wrong = await request(s.url, '/v1/users/', { headers: { Authorization: basic('hanna', 'nope') } });
    assert.equal(wrong.status, 401);
    assert.equal(wrong.text, '"Wrong login/password"');
    assert.equal((await request(s.url, '/v1/users/', { headers: good })).status, 200);
    assert.equal(
      (
        await request(s.url, '/v1/users/', {
          method: 'POST',
          headers: { 'Content-Type': 'application/json' },
          body: '{"username":"x1234","password":"y1234","email":"z@example.com"}',
        })
      ).status,
      401,
    );
    assert.equal((await request(s.url, '/v1/search?q=app')).status, 401);
    assert.equal((await request(s.url, '/v1/search?q=app', { headers: good })).status, 200);
    assert.equal((await request(s.url, '/_ping')).status, 200, 'ping stays open');
    // a 1.x push: index call with Basic, registry calls with the (signed) token
    const img = makeImage();
    assert.equal((await request(s.url, `/v1/images/${img.id}/json`)).status, 401);
    assert.equal((await request(s.url, '/v1/repositories/ns/v1app/', { method: 'PUT', body: '[]', headers: { 'X-Docker-Token': 'true' } })).status, 401);
    const claim = await request(s.url, '/v1/repositories/ns/v1app/', {
      method: 'PUT',
      body: JSON.stringify([{ id: img.id }]),
      headers: { ...good, 'X-Docker-Token': 'true' },
    });
    assert.equal(claim.status, 200, claim.text);
    const token = String(claim.headers['x-docker-token']);
    const forged = token.replace(/signature=[^,]+/, 'signature=1.0.abc.def');
    const denied = await pushImage(s.url, img, forged);
    assert.equal(denied[0]!.status, 401);
    assert.deepEqual(denied[0]!.json(), { error: 'Requires authorization' });
    const rs = await pushImage(s.url, img, token);
    assert.deepEqual(
      rs.map((r) => r.status),
      [404, 200, 200, 200],
    );
    assert.equal((await putTag(s.url, 'ns/v1app', 'latest', img.id, token)).status, 200);
    assert.equal((await putTag(s.url, 'ns/other', 'latest', img.id, token)).status, 401, 'a token for another repository');
    assert.equal((await request(s.url, '/v1/repositories/ns/v1app/tags')).status, 401);
    assert.equal((await request(s.url, '/v1/repositories/ns/v1app/tags', { headers: good })).status, 200);
  });

  it('re-reads the file when it changes: a user added by the CLI logs in, a removed one no longer', async () => {
    const r = await cli(['htpasswd', file, 'ivan', '--password-stdin', '--cost', '4'], 'ivanpw\n');
    assert.equal(r.code, 0, r.stderr);
    const later = new Date(Date.now() + 2000);
    await utimes(file, later, later);
    assert.equal((await request(s.url, '/v2/', { headers: { Authorization: basic('ivan', 'ivanpw') } })).status, 200);
    const del = await cli(['htpasswd', file, 'hanna', '--delete']);
    assert.equal(del.code, 0, del.stderr);
    const later2 = new Date(Date.now() + 4000);
    await utimes(file, later2, later2);
    assert.equal((await request(s.url, '/v2/', { headers: { Authorization: basic('hanna', 'hannapw') } })).status, 401);
    assert.notEqual((await cli(['htpasswd', file, 'hanna', '--delete'])).code, 0, 'deleting an absent user fails');
    // entries of other hash kinds never match
    await writeFile(file, 'md5user:$apr1$abc$abcdefghijklmnopqrstuv\nivan:ivanpw\n');
    const later3 = new Date(Date.now() + 6000);
    await utimes(file, later3, later3);
    assert.equal((await request(s.url, '/v2/', { headers: { Authorization: basic('ivan', 'ivanpw') } })).status, 401);
  });
});
