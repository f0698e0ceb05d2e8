import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { request as httpRequest } from 'node:http';
import { request } from '../helpers/http.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { saveUser } from '../../src/db/users.js';
import { saveRepository } from '../../src/db/repositories.js';
import { chunkedStream } from '../helpers/v1-client.js';

const basic = (u: string, p: string): string => `Basic ${Buffer.from(`${u}:${p}`).toString('base64')}`;
const nested = (depth: number): string => '['.repeat(depth) + ']'.repeat(depth);

/**
 * Send the headers and the first part of a large body, and hold the rest back: the answer must
 * come while the body is still incomplete (the server decided without reading it). Resolves with
 * the status and body, or 'no answer' if the server waited for the body.
 */
function answerBeforeBody(
  url: string,
  method: string,
  path: string,
  headers: Record<string, string>,
  total: number,
): Promise<{ status: number; text: string } | 'no answer'> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      {
        host: u.hostname,
        port: u.port,
        method,
        path,
        agent: false,
        headers: { ...headers, 'Content-Type': 'application/json', 'Content-Length': String(total) },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          clearTimeout(timer);
          req.destroy();
          resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') });
        });
      },
    );
    req.on('error', (e) => (settled ? undefined : reject(e)));
    let settled = false;
    const timer = setTimeout(() => {
      settled = true;
      req.destroy();
      resolve('no answer');
    }, 3000);
    req.write('['.repeat(64 * 1024));
  });
}

/** Security issue 10, finding 9: JSON bodies are bounded and checked before they are parsed. */
describe('hardening: JSON request bodies (size and depth before parsing, credentials first)', () => {
  let s: TestServer;
  before(async () => {
    s = await startTestServer({ bcrypt_cost: 4 });
    await saveUser(s.db!, { username: 'writer', email: 'writer@example.com', password: 'writerpw', active: true }, { cost: 4 });
    await saveRepository(s.db!, { namespace: 'writer', name: 'open' });
  });
  after(() => s?.stop());

  it('POST /v1/users/ (signup) with 4 MB of nested JSON: 413 from Content-Length, nothing parsed', async () => {
    const r = await request(s.url, '/v1/users/', { method: 'POST', body: nested(2 * 1024 * 1024), headers: { 'Content-Type': 'application/json' } });
    assert.equal(r.status, 413);
    assert.equal(r.text, '{"error": "Request body too large"}');
  });

  it('POST /v1/users/ with a small but deeply nested body: 400 Error Decoding JSON', async () => {
    const r = await request(s.url, '/v1/users/', { method: 'POST', body: nested(20_000), headers: { 'Content-Type': 'application/json' } });
    assert.equal(r.status, 400);
    assert.equal(r.text, '{"error": "Error Decoding JSON"}');
    // 64 levels are fine (and then not an account)
    const ok = await request(s.url, '/v1/users/', { method: 'POST', body: nested(64) });
    assert.equal(ok.status, 400);
    assert.equal(ok.text, '"Invalid JSON body"');
    // brackets inside strings are not nesting
    const str = await request(s.url, '/v1/users/', {
      method: 'POST',
      body: JSON.stringify({ username: '[[[['.repeat(100), password: 'x', email: '{{{{'.repeat(100) }),
    });
    assert.equal(str.status, 400);
    assert.match(str.text, /^"Invalid username/);
  });

  it('a signup body over 64 KiB is 413, a normal signup still works', async () => {
    const big = JSON.stringify({ username: 'someone', password: 'secret1', email: 'a@b.c', pad: 'x'.repeat(70 * 1024) });
    const r = await request(s.url, '/v1/users/', { method: 'POST', body: big });
    assert.equal(r.status, 413);
    assert.equal(r.text, '{"error": "Request body too large"}');
    const created = await request(s.url, '/v1/users/', {
      method: 'POST',
      body: JSON.stringify({ username: 'newbie', password: 'secret1', email: 'newbie@example.com' }),
      headers: { 'Content-Type': 'application/json; charset=utf-8' },
    });
    assert.equal(created.status, 201);
    assert.equal(created.text, '"User Created"');
  });

  it('a chunked signup body past 64 KiB: 413 the client can read, then the connection closes', async () => {
    const r = await request(s.url, '/v1/users/', {
      method: 'POST',
      body: chunkedStream(Buffer.from(nested(512 * 1024)), 16 * 1024),
      headers: { 'Content-Type': 'application/json' },
    });
    assert.equal(r.status, 413);
    assert.equal(r.text, '{"error": "Request body too large"}');
    assert.equal(r.headers.connection, 'close');
  });

  it('PUT /v1/users/<name>/ without credentials: 401 before the body is read', async () => {
    const r = await answerBeforeBody(s.url, 'PUT', '/v1/users/writer/', {}, 4 * 1024 * 1024);
    assert.notEqual(r, 'no answer', 'the server waited for the whole body before checking credentials');
    assert.equal((r as { status: number }).status, 401);
    assert.equal((r as { text: string }).text, '"Authentication is required"');
    // with credentials: a deep body is 400, a good one 204
    const deep = await request(s.url, '/v1/users/writer/', {
      method: 'PUT',
      body: `{"email": ${nested(100)}}`,
      headers: { Authorization: basic('writer', 'writerpw') },
    });
    assert.equal(deep.status, 400);
    assert.equal(deep.text, '{"error": "Error Decoding JSON"}');
    const ok = await request(s.url, '/v1/users/writer/', {
      method: 'PUT',
      body: JSON.stringify({ email: 'writer2@example.com' }),
      headers: { Authorization: basic('writer', 'writerpw') },
    });
    assert.equal(ok.status, 204);
  });

  it('POST /v1/comments/<repo> without credentials: 401 before the body is read', async () => {
    const r = await answerBeforeBody(s.url, 'POST', '/v1/comments/writer/open', {}, 4 * 1024 * 1024);
    assert.notEqual(r, 'no answer', 'the server waited for the whole body before checking credentials');
    assert.equal((r as { status: number }).status, 401);
    assert.equal((r as { text: string }).text, '"Authentication is required"');
  });

  it('PUT /v1/stars/<repo> without credentials: 401, the body never read', async () => {
    const r = await answerBeforeBody(s.url, 'PUT', '/v1/stars/writer/open', {}, 4 * 1024 * 1024);
    assert.notEqual(r, 'no answer');
    assert.equal((r as { status: number }).status, 401);
  });

  it('comments: deep or large bodies are 400/413 for a signed-in user; a comment has an ISO-8601 createdAt', async () => {
    const auth = { Authorization: basic('writer', 'writerpw') };
    const deep = await request(s.url, '/v1/comments/writer/open', { method: 'POST', body: `{"body": "hi", "x": ${nested(100)}}`, headers: auth });
    assert.equal(deep.status, 400);
    assert.equal(deep.text, '{"error": "Invalid data"}');
    const large = await request(s.url, '/v1/comments/writer/open', { method: 'POST', body: JSON.stringify({ body: 'x'.repeat(70 * 1024) }), headers: auth });
    assert.equal(large.status, 413);
    assert.equal(large.text, '{"error": "Request body too large"}');
    const before = Date.now();
    const ok = await request(s.url, '/v1/comments/writer/open', { method: 'POST', body: JSON.stringify({ body: 'nice repo' }), headers: auth });
    assert.equal(ok.status, 201, ok.text);
    const c = ok.json<{ body: string; createdAt: unknown }>();
    assert.equal(c.body, 'nice repo');
    assert.equal(typeof c.createdAt, 'string', `createdAt was ${JSON.stringify(c.createdAt)}`);
    assert.match(c.createdAt as string, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    assert.ok(Math.abs(Date.parse(c.createdAt as string) - before) < 60_000);
    const list = await request(s.url, '/v1/comments/writer/open');
    assert.equal(list.status, 200);
    const items = list.json<{ items: { createdAt: unknown }[] }>().items;
    assert.equal(items.length, 1);
    assert.equal(items[0]!.createdAt, c.createdAt);
  });
});
