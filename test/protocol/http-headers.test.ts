import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { request } from '../helpers/http.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

describe('http_headers (distribution http.headers): on every response', () => {
  let s: TestServer;
  before(async () => {
    s = await startTestServer({
      standalone: true,
      v2: true,
      http_headers: { 'X-Content-Type-Options': ['nosniff'], 'X-Site': ['a', 'b'] },
    });
  });
  after(() => s.close());

  it('adds them to successes and to v1 and v2 errors alike', async () => {
    for (const path of ['/_ping', '/v2/', '/v2/no/such/manifests/latest', '/v1/images/0000/json', '/nothing-here']) {
      const r = await request(s.url, path);
      assert.equal(r.headers['x-content-type-options'], 'nosniff', path);
      assert.equal(r.headers['x-site'], 'a, b', path);
    }
  });

  it('is absent when not configured', async () => {
    const t = await startTestServer({ standalone: true });
    try {
      const r = await request(t.url, '/_ping');
      assert.equal(r.status, 200);
      assert.equal(r.headers['x-site'], undefined);
      // nosniff is on every response anyway (security issue 10, finding 18)
      assert.equal(r.headers['x-content-type-options'], 'nosniff');
    } finally {
      await t.close();
    }
  });
});
