import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { gzipSync } from 'node:zlib';
import { request } from '../helpers/http.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { chunkedStream, DOCKER_UA, payloadChecksum, sha256hex, tarOf } from '../helpers/v1-client.js';
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
    const id = sha256hex(Buffer.from(`listeners-${Math.random()}`));
    const json = Buffer.from(JSON.stringify({ id, created: '2015-01-01T00:00:00Z', os: 'linux' }));
    const layer = gzipSync(tarOf({ 'etc/hosts': 'x\n' }));
    const h = { 'User-Agent': DOCKER_UA };
    assert.equal((await request(s.url, `/v1/images/${id}/json`, { method: 'PUT', body: json, headers: h })).status, 200);
    assert.equal((await request(s.url, `/v1/images/${id}/layer`, { method: 'PUT', body: chunkedStream(layer, 1024), headers: h })).status, 200);
    const sum = { ...h, 'X-Docker-Checksum-Payload': payloadChecksum(json, layer) };
    assert.equal((await request(s.url, `/v1/images/${id}/checksum`, { method: 'PUT', body: '', headers: sum })).status, 200);
    assert.equal((await request(s.url, '/v1/repositories/lst/app/tags/latest', { method: 'PUT', body: JSON.stringify(id), headers: h })).status, 200);
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
