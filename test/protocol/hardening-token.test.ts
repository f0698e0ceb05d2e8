import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { decodeJwt } from 'jose';
import { request } from '../helpers/http.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { saveUser } from '../../src/db/users.js';
import { saveRepository } from '../../src/db/repositories.js';

const basic = (u: string, p: string): string => `Basic ${Buffer.from(`${u}:${p}`).toString('base64')}`;
type Access = { type: string; name: string; actions: string[] }[];

/**
 * Security issue 10, finding 9: a token request naming 1,500 scopes cost half a second of database
 * work and came back as a 288 KB token. At most 32 scopes per request (src/index/token-routes.ts).
 * (A GET cannot carry 1,500: the request line passes Node's 16 KiB header limit; the form can.)
 */
describe('hardening: /v2/token scopes are capped', () => {
  let s: TestServer;
  let service: string;
  before(async () => {
    s = await startTestServer({ v2: true, bcrypt_cost: 4 });
    service = new URL(s.url).host;
    await saveUser(s.db!, { username: 'scoper', email: 'scoper@example.com', password: 'scoperpw', active: true }, { cost: 4 });
    await saveRepository(s.db!, { namespace: 'scoper', name: 'mine', private: true });
    await saveRepository(s.db!, { namespace: 'library', name: 'pub' });
  });
  after(() => s?.stop());

  const get = (scopes: string[], auth?: string) =>
    request(s.url, `/v2/token?service=${encodeURIComponent(service)}${scopes.map((x) => `&scope=${encodeURIComponent(x)}`).join('')}`, {
      headers: auth ? { Authorization: auth } : {},
    });

  const post = (scope: string) =>
    request(s.url, '/v2/token', {
      method: 'POST',
      body: new URLSearchParams({ grant_type: 'password', client_id: 'test', username: 'scoper', password: 'scoperpw', service, scope }).toString(),
      headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
    });

  it('POST (OAuth2 form) with 1,500 scopes: 400 invalid_request, no token', async () => {
    const r = await post(Array.from({ length: 1500 }, (_, i) => `repository:scoper/r${i}:pull,push`).join(' '));
    assert.equal(r.status, 400, `status ${r.status}, ${r.body.length} bytes`);
    assert.equal(r.headers['content-type'], 'application/json; charset=utf-8');
    assert.deepEqual(r.json(), { error: 'invalid_request', error_description: 'too many scopes: at most 32 per token request' });
  });

  it('GET with 300 scope parameters: 400 invalid_request', async () => {
    const r = await get(
      Array.from({ length: 300 }, (_, i) => `repository:a${i}:pull`),
      basic('scoper', 'scoperpw'),
    );
    assert.equal(r.status, 400);
    assert.deepEqual(r.json(), { error: 'invalid_request', error_description: 'too many scopes: at most 32 per token request' });
  });

  it('GET with 33 scopes in fewer parameters (space-separated) is 400 too; 32 are fine', async () => {
    const names = Array.from({ length: 33 }, (_, i) => `repository:scoper/r${i}:pull`);
    const over = await get([names.slice(0, 20).join(' '), names.slice(20).join(' ')]);
    assert.equal(over.status, 400);
    assert.equal(over.json<{ error: string }>().error, 'invalid_request');
    const ok = await get(names.slice(0, 32), basic('scoper', 'scoperpw'));
    assert.equal(ok.status, 200, ok.text);
    const access = decodeJwt(ok.json<{ token: string }>().token).access as Access;
    assert.equal(access.length, 32);
    assert.deepEqual(access[0], { type: 'repository', name: 'scoper/r0', actions: ['pull'] });
  });

  it('POST (OAuth2 form) with 33 scopes: 400 invalid_request; 32 are fine', async () => {
    const names = Array.from({ length: 33 }, (_, i) => `repository:scoper/r${i}:pull`);
    const r = await post(names.join(' '));
    assert.equal(r.status, 400);
    assert.deepEqual(r.json(), { error: 'invalid_request', error_description: 'too many scopes: at most 32 per token request' });
    const ok = await post(names.slice(1).join(' '));
    assert.equal(ok.status, 200, ok.text);
    assert.equal((decodeJwt(ok.json<{ token: string }>().token).access as Access).length, 32);
  });

  it('the same repository under several spellings is judged once and alike', async () => {
    const r = await get(
      [
        'repository:pub:pull',
        'repository:library/pub:pull,push',
        'repository:scoper/mine:pull',
        'repository:scoper/mine:push,delete',
        'repository:scoper/mine:*',
      ],
      basic('scoper', 'scoperpw'),
    );
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(decodeJwt(r.json<{ token: string }>().token).access, [
      { type: 'repository', name: 'pub', actions: ['pull'] },
      { type: 'repository', name: 'library/pub', actions: ['pull'] },
      { type: 'repository', name: 'scoper/mine', actions: ['*'] },
    ]);
    const anon = await get(['repository:scoper/mine:pull', 'repository:pub:pull']);
    assert.deepEqual(decodeJwt(anon.json<{ token: string }>().token).access, [{ type: 'repository', name: 'pub', actions: ['pull'] }]);
  });
});
