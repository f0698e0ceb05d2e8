import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { request } from '../helpers/http.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { saveUser } from '../../src/db/users.js';

const basic = (u: string, p: string): string => `Basic ${Buffer.from(`${u}:${p}`).toString('base64')}`;
const DEEP = 'a'.repeat(64);
const OK = 'b'.repeat(64);
const nested = (depth: number): string => '['.repeat(depth) + ']'.repeat(depth);

/**
 * PUT /v1/images/<id>/json read its body up to max_json_size and parsed it without the depth check
 * every other JSON body has (review of 2026-12-07): 4 MiB of nested arrays cost JSON.parse ~2 s of the
 * event loop and ~150 MiB, before the image was even looked for in the repository's list; four such
 * requests at once held /v1/_ping for 4 s and took the server's RSS from 90 to 530 MiB.
 */
describe('hardening: the v1 image json is checked for depth before it is parsed', () => {
  let s: TestServer;
  let token = '';
  before(async () => {
    s = await startTestServer({ bcrypt_cost: 4 });
    await saveUser(s.db!, { username: 'alice', email: 'alice@example.com', password: 'alicepw', active: true }, { cost: 4 });
    const r = await request(s.url, '/v1/repositories/alice/app/', {
      method: 'PUT',
      headers: { Authorization: basic('alice', 'alicepw'), 'X-Docker-Token': 'true', 'Content-Type': 'application/json' },
      body: JSON.stringify([{ id: DEEP }, { id: OK }]),
    });
    assert.equal(r.status, 200, r.text);
    token = String(r.headers['x-docker-token']);
  });
  after(() => s?.stop());

  it('nested deeper than 64 levels: 400 Invalid JSON, nothing stored', async () => {
    const body = `{"id":"${DEEP}","config":${nested(100_000)}}`;
    const r = await request(s.url, `/v1/images/${DEEP}/json`, { method: 'PUT', headers: { Authorization: `Token ${token}` }, body });
    assert.equal(r.status, 400, r.text);
    assert.equal(r.text, '{"error": "Invalid JSON"}');
    const got = await request(s.url, `/v1/images/${DEEP}/json`, { headers: { Authorization: `Token ${token}` } });
    assert.equal(got.status, 404, got.text);
  });

  it('63 levels inside the object (64 in all) are stored as sent', async () => {
    const body = `{"id":"${OK}","config":${nested(63)}}`;
    const r = await request(s.url, `/v1/images/${OK}/json`, { method: 'PUT', headers: { Authorization: `Token ${token}` }, body });
    assert.equal(r.status, 200, r.text);
  });
});
