import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { request } from '../helpers/http.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { makeImage, pushImage, putTag } from '../helpers/v1-client.js';
import { pushV2 } from '../helpers/v2-client.js';

/**
 * A response whose body koa streams (GET /v1/images/<id>/files) carried 11 'close' listeners, one past
 * node's default limit: every such request printed "MaxListenersExceededWarning: Possible
 * EventEmitter memory leak detected" in the server's log (seen in CI under the access matrix). The
 * read routes of v1 and v2, each requested twice on one keep-alive connection, must make node warn
 * of nothing.
 */
describe('no listener-leak warning from the read routes', () => {
  let s: TestServer;
  const warnings: Error[] = [];
  const onWarning = (w: Error): void => {
    warnings.push(w);
  };
  before(async () => {
    process.on('warning', onWarning);
    s = await startTestServer({ standalone: true, v2: true });
  });
  after(async () => {
    process.off('warning', onWarning);
    await s?.stop();
  });

  it('v1 json, layer, ancestry, files, tags; v2 manifest, blob, tags', async () => {
    const img = makeImage();
    const id = img.id;
    const pushed = await pushImage(s.url, img);
    assert.deepEqual(
      pushed.slice(1).map((r) => r.status),
      [200, 200, 200],
    );
    assert.equal((await putTag(s.url, 'lst/app', 'latest', id)).status, 200);
    const v2 = await pushV2(s.url, 'lst/v2app', 'v1');
    const paths = [
      `/v1/images/${id}/json`,
      `/v1/images/${id}/layer`,
      `/v1/images/${id}/ancestry`,
      `/v1/images/${id}/files`,
      '/v1/repositories/lst/app/tags',
      '/v2/lst/v2app/manifests/v1',
      `/v2/lst/v2app/blobs/${v2.layer}`,
      '/v2/lst/v2app/tags/list',
    ];
    for (const p of [...paths, ...paths]) assert.equal((await request(s.url, p)).status, 200, p);
    // process warnings are emitted on a later tick
    await new Promise((r) => setTimeout(r, 50));
    const leaks = warnings.filter((w) => w.name === 'MaxListenersExceededWarning');
    assert.deepEqual(
      leaks.map((w) => w.message),
      [],
    );
  });
});
