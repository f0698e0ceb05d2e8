import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeJwt } from 'jose';
import { request, type Response } from '../helpers/http.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { spawnServer } from '../helpers/child.js';
import { ROOT } from '../helpers/paths.js';
import { saveUser } from '../../src/db/users.js';
import { loadSigningKey, V2TokenIssuer } from '../../src/auth/v2-jwt.js';

/*
 * The token audience (JWT `aud`, the challenge's `service`), the token realm and X-Docker-Endpoints
 * come from configuration, never from what a client writes in its request (spec v2-bridge §4.3/§4.4,
 * v1-protocol §3.14). A Host header is echoed only when it names this machine on our port.
 */

const basic = (u: string, p: string): string => `Basic ${Buffer.from(`${u}:${p}`).toString('base64')}`;
const bearer = (t: string): Record<string, string> => ({ Authorization: `Bearer ${t}` });
const EVIL = { Host: 'evil.example' };
const UNKNOWN_SERVICE = (s: string): string =>
  JSON.stringify({ error: 'invalid_request', error_description: `this token service issues no tokens for service ${JSON.stringify(s)}` });
const INVALID_TOKEN_BODY = '{"errors":[{"code":"UNAUTHORIZED","message":"authentication required: token aud invalid","detail":[]}]}';

function challenge(r: Response): string {
  return String(r.headers['www-authenticate'] ?? '');
}

const form = (s: TestServer, f: Record<string, string>, headers: Record<string, string> = {}) =>
  request(s.url, '/v2/token', {
    method: 'POST',
    headers: { 'Content-Type': 'application/x-www-form-urlencoded', ...headers },
    body: new URLSearchParams(f).toString(),
  });

describe('token audience with nothing configured: the listen address, whatever the Host header says', () => {
  let s: TestServer;
  let self: string;
  before(async () => {
    s = await startTestServer({ v2: true, bcrypt_cost: 4 });
    self = new URL(s.url).host;
    await saveUser(s.db!, { username: 'alice', email: 'a@example.com', password: 'alicepw', active: true }, { cost: 4 });
  });
  after(() => s?.stop());

  it('GET and POST /v2/token?service=evil.example: 400 invalid_request, no token', async () => {
    const g = await request(s.url, '/v2/token?service=evil.example&scope=repository:alice/app:pull', { headers: { Authorization: basic('alice', 'alicepw') } });
    assert.equal(g.status, 400);
    assert.equal(g.headers['content-type'], 'application/json; charset=utf-8');
    assert.equal(g.text, UNKNOWN_SERVICE('evil.example'));
    const anon = await request(s.url, '/v2/token?service=evil.example', { headers: EVIL });
    assert.equal(anon.status, 400);
    assert.equal(anon.text, UNKNOWN_SERVICE('evil.example'));
    const p = await form(s, { grant_type: 'password', username: 'alice', password: 'alicepw', client_id: 'test', service: 'evil.example' }, EVIL);
    assert.equal(p.status, 400);
    assert.equal(p.text, UNKNOWN_SERVICE('evil.example'));
  });

  it('without a service parameter the token is for the listen address, not for the Host the client wrote', async () => {
    for (const headers of [EVIL, {}]) {
      const r = await request(s.url, '/v2/token?scope=repository:alice/app:pull', { headers: { ...headers, Authorization: basic('alice', 'alicepw') } });
      assert.equal(r.status, 200, r.text);
      assert.equal(decodeJwt(r.json<{ token: string }>().token).aud, self);
    }
    const named = await request(s.url, `/v2/token?service=${encodeURIComponent(self)}`, { headers: EVIL });
    assert.equal(named.status, 200, named.text);
    assert.equal(decodeJwt(named.json<{ token: string }>().token).aud, self);
  });

  it('a token the index key signed for aud=evil.example is refused with Host: evil.example: 401 invalid_token', async () => {
    const key = await loadSigningKey(s.db!, null);
    const issuer = new V2TokenIssuer(key, { issuer: 'legacy-registry', ttl: 300 });
    const evil = (
      await issuer.issueAccess({ sub: 'alice', aud: 'evil.example', access: [{ type: 'repository', name: 'alice/app', actions: ['pull', 'push'] }] })
    ).token;
    for (const headers of [EVIL, {}]) {
      const r = await request(s.url, '/v2/', { headers: { ...headers, ...bearer(evil) } });
      assert.equal(r.status, 401);
      assert.equal(r.text, INVALID_TOKEN_BODY);
      assert.equal(challenge(r), `Bearer realm="${s.url}/v2/token",service="${self}",error="invalid_token"`);
    }
    // the same key, the configured audience: accepted, whatever Host says
    const good = (await issuer.issueAccess({ sub: 'alice', aud: self, access: [] })).token;
    const ok = await request(s.url, '/v2/', { headers: { ...EVIL, ...bearer(good) } });
    assert.equal(ok.status, 200, ok.text);
    assert.equal(ok.text, '{}');
  });

  it('the 401 challenge names the listen address for Host: evil.example, and echoes only a Host naming this machine on our port', async () => {
    const port = new URL(s.url).port;
    const cases: [string, string][] = [
      ['evil.example', self],
      [`evil.example:${port}`, self],
      [`localhost:${port}`, `localhost:${port}`],
      [`LocalHost:${port}`, `localhost:${port}`],
      [`${hostname()}:${port}`, `${hostname().toLowerCase()}:${port}`],
      [`127.0.0.1:${port}`, `127.0.0.1:${port}`],
      [`[::1]:${port}`, `[::1]:${port}`],
      ['localhost:1', self],
      ['localhost', self],
      [`evil.example",service="x:${port}`, self],
    ];
    for (const [host, shown] of cases) {
      const r = await request(s.url, '/v2/alice/app/tags/list', { headers: { Host: host } });
      assert.equal(r.status, 401, host);
      assert.equal(challenge(r), `Bearer realm="http://${shown}/v2/token",service="${self}",scope="repository:alice/app:pull"`, host);
    }
  });

  it('X-Docker-Endpoints of the index (PUT /v1/repositories/…/ and GET …/images) is not evil.example', async () => {
    const put = await request(s.url, '/v1/repositories/alice/app/', {
      method: 'PUT',
      headers: { ...EVIL, Authorization: basic('alice', 'alicepw'), 'X-Docker-Token': 'true', 'Content-Type': 'application/json' },
      body: '[]',
    });
    assert.equal(put.status, 200, put.text);
    assert.equal(put.headers['x-docker-endpoints'], self);
    const list = await request(s.url, '/v1/repositories/alice/app/images', {
      headers: { ...EVIL, Authorization: basic('alice', 'alicepw'), 'X-Docker-Token': 'true' },
    });
    assert.equal(list.status, 200, list.text);
    assert.equal(list.headers['x-docker-endpoints'], self);
    const local = await request(s.url, '/v1/repositories/alice/app/images', {
      headers: { Host: `localhost:${new URL(s.url).port}`, Authorization: basic('alice', 'alicepw') },
    });
    assert.equal(local.headers['x-docker-endpoints'], `localhost:${new URL(s.url).port}`);
  });
});

describe('token audience configured: token_service, token_audiences, token_realm, registry_endpoints', () => {
  let s: TestServer;
  before(async () => {
    s = await startTestServer({
      v2: true,
      bcrypt_cost: 4,
      token_service: 'registry.example',
      token_audiences: ['distribution.example'],
      token_realm: 'https://auth.example/v2/token',
      registry_endpoints: 'reg1.example:5000, reg2.example',
    });
    await saveUser(s.db!, { username: 'alice', email: 'a@example.com', password: 'alicepw', active: true }, { cost: 4 });
  });
  after(() => s?.stop());

  it('mints for the configured service (the default) and for token_audiences; refuses any other', async () => {
    const auth = { Authorization: basic('alice', 'alicepw') };
    for (const [q, aud] of [
      ['', 'registry.example'],
      ['service=registry.example&', 'registry.example'],
      ['service=distribution.example&', 'distribution.example'],
    ] as const) {
      const r = await request(s.url, `/v2/token?${q}scope=repository:alice/app:pull`, { headers: { ...EVIL, ...auth } });
      assert.equal(r.status, 200, r.text);
      assert.equal(decodeJwt(r.json<{ token: string }>().token).aud, aud);
    }
    for (const other of ['evil.example', new URL(s.url).host, 'REGISTRY.EXAMPLE']) {
      const r = await request(s.url, `/v2/token?service=${encodeURIComponent(other)}`, { headers: auth });
      assert.equal(r.status, 400, other);
      assert.equal(r.text, UNKNOWN_SERVICE(other));
    }
  });

  it('a token minted for another audience (token_audiences) is refused here, with or without a matching Host', async () => {
    const r = await request(s.url, '/v2/token?service=distribution.example', { headers: { Authorization: basic('alice', 'alicepw') } });
    const other = r.json<{ token: string }>().token;
    for (const headers of [{ Host: 'distribution.example' }, {}] as Record<string, string>[]) {
      const v = await request(s.url, '/v2/', { headers: { ...headers, ...bearer(other) } });
      assert.equal(v.status, 401);
      assert.equal(v.text, INVALID_TOKEN_BODY);
      assert.equal(challenge(v), 'Bearer realm="https://auth.example/v2/token",service="registry.example",error="invalid_token"');
    }
    const mine = (await request(s.url, '/v2/token', { headers: { Authorization: basic('alice', 'alicepw') } })).json<{ token: string }>().token;
    assert.equal((await request(s.url, '/v2/', { headers: { ...EVIL, ...bearer(mine) } })).status, 200);
  });

  it('the challenge and X-Docker-Endpoints are the configured values, whatever Host says', async () => {
    for (const headers of [EVIL, { Host: `localhost:${new URL(s.url).port}` }]) {
      const c = await request(s.url, '/v2/', { headers });
      assert.equal(c.status, 401);
      assert.equal(challenge(c), 'Bearer realm="https://auth.example/v2/token",service="registry.example"');
      const put = await request(s.url, '/v1/repositories/alice/app/', {
        method: 'PUT',
        headers: { ...headers, Authorization: basic('alice', 'alicepw'), 'Content-Type': 'application/json' },
        body: '[]',
      });
      assert.equal(put.status, 200, put.text);
      assert.equal(put.headers['x-docker-endpoints'], 'reg1.example:5000, reg2.example');
    }
  });
});

describe('stand-in index of a standalone registry: X-Docker-Endpoints', () => {
  let s: TestServer;
  before(async () => {
    s = await startTestServer({ standalone: true });
  });
  after(() => s?.stop());

  it('PUT /v1/repositories/ns/repo/ and GET …/images with Host: evil.example answer the listen address', async () => {
    const self = new URL(s.url).host;
    const put = await request(s.url, '/v1/repositories/ns/repo/', {
      method: 'PUT',
      headers: { ...EVIL, 'Content-Type': 'application/json', 'X-Docker-Token': 'true' },
      body: '[]',
    });
    assert.equal(put.status, 200, put.text);
    assert.equal(put.headers['x-docker-endpoints'], self);
    const list = await request(s.url, '/v1/repositories/ns/repo/images', { headers: { ...EVIL, 'X-Docker-Token': 'true' } });
    assert.equal(list.status, 200, list.text);
    assert.equal(list.text, '[]');
    assert.equal(list.headers['x-docker-endpoints'], self);
    const images = await request(s.url, '/v1/repositories/ns/repo/images', {
      method: 'PUT',
      headers: { ...EVIL, 'Content-Type': 'application/json' },
      body: '[]',
    });
    assert.equal(images.status, 204);
    assert.equal(images.headers['x-docker-endpoints'], self);
    // a Host naming this machine on our port is kept (clients that reached us as localhost go on so)
    const local = await request(s.url, '/v1/repositories/ns/repo/images', { headers: { Host: `localhost:${new URL(s.url).port}` } });
    assert.equal(local.headers['x-docker-endpoints'], `localhost:${new URL(s.url).port}`);
  });
});

describe('the prod flavor refuses to start without token_service and registry_endpoints', () => {
  const CLI = join(ROOT, 'bin', 'legacy-registry.cjs');
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'lr-aud-prod-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  const serve = (env: Record<string, string>, args: string[] = []) =>
    new Promise<{ code: number | null; signal: string | null; stderr: string }>((resolve) => {
      execFile(
        process.execPath,
        [CLI, 'serve', '--host', '127.0.0.1', '--port', '0', ...args],
        { env: { PATH: process.env.PATH ?? '', SETTINGS_FLAVOR: 'prod', STORAGE_PATH: dir, LOGLEVEL: 'warn', ...env }, timeout: 15_000 },
        (err, _stdout, stderr) =>
          resolve({ code: err ? ((err as { code?: number }).code ?? null) : 0, signal: err ? ((err as { signal?: string }).signal ?? null) : null, stderr }),
      );
    });

  it('index + registry with v2: exit 2 naming both keys', async () => {
    const r = await serve({ V2: 'true' });
    assert.equal(r.signal, null, 'it started instead of refusing');
    assert.equal(r.code, 2);
    assert.equal(
      r.stderr,
      'legacy-registry: invalid configuration (flavor prod):\n' +
        '  token_service: required with v2 token auth (the audience of v2 tokens; the listen address is no name clients know)\n' +
        '  registry_endpoints: required when an index answers (X-Docker-Endpoints; the listen address is no name clients know)\n',
    );
  });

  it('an index without v2: exit 2 naming registry_endpoints; a standalone registry (stand-in index) too', async () => {
    for (const [env, args] of [
      [{ V2: 'false' }, []],
      [{}, ['--only', 'index']],
      [{ STANDALONE: 'true' }, []],
    ] as [Record<string, string>, string[]][]) {
      const r = await serve(env, args);
      assert.equal(r.code, 2, JSON.stringify(env) + args.join(' '));
      assert.equal(
        r.stderr,
        'legacy-registry: invalid configuration (flavor prod):\n' +
          '  registry_endpoints: required when an index answers (X-Docker-Endpoints; the listen address is no name clients know)\n',
      );
    }
  });

  it('a registry alone with v2 token auth: exit 2 naming token_service', async () => {
    const r = await serve({ V2: 'true', STANDALONE: 'false', INDEX_ENDPOINT: 'http://127.0.0.1:9' }, ['--only', 'registry']);
    assert.equal(r.code, 2);
    assert.equal(
      r.stderr,
      'legacy-registry: invalid configuration (flavor prod):\n' +
        '  token_service: required with v2 token auth (the audience of v2 tokens; the listen address is no name clients know)\n',
    );
  });

  it('starts with both keys set, and the challenge names them', async () => {
    const srv = await spawnServer(
      {
        SETTINGS_FLAVOR: 'prod',
        STORAGE_PATH: dir,
        STANDALONE: '',
        V2: 'true',
        TOKEN_SERVICE: 'registry.example',
        REGISTRY_ENDPOINTS: 'registry.example:5000',
        BCRYPT_COST: '4',
      },
      [],
    );
    try {
      const r = await request(srv.url, '/v2/', { headers: EVIL });
      assert.equal(r.status, 401);
      assert.equal(challenge(r), `Bearer realm="${srv.url}/v2/token",service="registry.example"`);
    } finally {
      srv.proc.kill('SIGTERM');
      await srv.exited;
    }
  });
});
