import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { request } from '../helpers/http.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { makeImage, pushImage, putTag } from '../helpers/v1-client.js';

/**
 * The v1 image and repository routes are dispatched by the registry itself (src/registry/routes.ts),
 * not by @koa/router, matching as the router did before: case-insensitive, one optional trailing
 * slash, the id percent-decoded, HEAD answered by the GET handler, and a method or resource without
 * a handler passed on (404 from the end of the chain), never answered by the wrong handler.
 */
describe('v1 route dispatch', () => {
  let s: TestServer;
  const img = makeImage();
  before(async () => {
    s = await startTestServer({ standalone: true });
    const pushed = await pushImage(s.url, img);
    assert.ok(
      pushed.every((r) => r.status === 200 || r.status === 404),
      pushed.map((r) => r.status).join(),
    );
    assert.equal((await putTag(s.url, 'dispatch/repo', 'latest', img.id)).status, 200);
  });
  after(async () => {
    await s?.stop();
  });

  it('serves an image json at its path, in any case, with a trailing slash, percent-encoded', async () => {
    const want = img.json.toString();
    for (const path of [
      `/v1/images/${img.id}/json`,
      `/V1/Images/${img.id}/JSON`,
      `/v1/images/${img.id}/json/`,
      `/v1/images/${[...img.id].map((c) => `%${c.charCodeAt(0).toString(16)}`).join('')}/json`,
    ]) {
      const r = await request(s.url, path);
      assert.equal(r.status, 200, `${path}: ${r.text}`);
      assert.equal(r.text, want, path);
    }
  });

  it('answers HEAD with the GET handler, without a body', async () => {
    const r = await request(s.url, `/v1/images/${img.id}/json`, { method: 'HEAD' });
    assert.equal(r.status, 200);
    assert.equal(r.body.length, 0);
    assert.equal(r.headers['x-docker-size'] !== undefined, true);
    const a = await request(s.url, `/v1/images/${img.id}/ancestry`, { method: 'HEAD' });
    assert.equal(a.status, 200);
  });

  it('passes on what no handler takes: other methods, resources, two trailing slashes, an empty id', async () => {
    for (const [method, path] of [
      ['POST', `/v1/images/${img.id}/json`],
      ['DELETE', `/v1/images/${img.id}/layer`],
      ['GET', `/v1/images/${img.id}/checksum`],
      ['HEAD', `/v1/images/${img.id}/checksum`],
      ['GET', `/v1/images/${img.id}/bogus`],
      ['GET', `/v1/images/${img.id}/json//`],
      ['GET', '/v1/images//json'],
      ['GET', '/v1/repositories/'],
    ] as const) {
      const r = await request(s.url, path, { method });
      assert.equal(r.status, 404, `${method} ${path}: ${r.status} ${r.text}`);
    }
  });

  it('routes repository paths in any case and with a trailing slash', async () => {
    for (const path of ['/v1/repositories/dispatch/repo/tags', '/V1/REPOSITORIES/dispatch/repo/tags/', '/v1/repositories/dispatch/repo/tags/latest']) {
      const r = await request(s.url, path);
      assert.equal(r.status, 200, `${path}: ${r.text}`);
      assert.match(r.text, new RegExp(img.id), path);
    }
  });
});
