import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { accessLog, createKoa, v1ErrorRenderer } from '../../../src/http/app.js';
import { createLogger } from '../../../src/log/logger.js';
import { request } from '../../helpers/http.js';

/** A Koa app assembled as main.ts does (access log, v1 error renderer) around test handlers. */
describe('http/app: error rendering safety net', () => {
  let server: Server;
  let url: string;
  const lines: string[] = [];
  before(async () => {
    const log = createLogger('debug', {}, (l) => lines.push(l));
    const app = createKoa();
    app.use(accessLog(log));
    app.use(v1ErrorRenderer(log));
    app.use(async (ctx) => {
      // a handler that copies a request value into a header, as the v2 challenge once did
      ctx.set('X-Echo', decodeURIComponent(String(ctx.query.v ?? '')));
      ctx.body = 'ok';
    });
    server = app.listen(0, '127.0.0.1');
    await new Promise<void>((r) => server.once('listening', () => r()));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => new Promise<void>((r) => server.close(() => r())));

  it('a request value refused as a header value is a 400 with the v1 error body, not a 500', async () => {
    for (const v of ['%00', '%0d%0aSet-Cookie:%20x=1', '%7f', 'a%0ab']) {
      const r = await request(url, `/?v=${v}`);
      assert.equal(r.status, 400, v);
      assert.equal(r.text, '{"error": "Bad request"}');
      assert.equal(r.headers['content-type'], 'application/json');
      assert.equal(r.headers['set-cookie'], undefined);
    }
    assert.equal(lines.filter((l) => / ERROR /.test(l)).length, 0, lines.join(''));
    const ok = await request(url, '/?v=fine');
    assert.equal(ok.status, 200);
    assert.equal(ok.headers['x-echo'], 'fine');
  });
});
