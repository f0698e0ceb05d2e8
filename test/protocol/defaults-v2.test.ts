import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from '../helpers/http.js';
import { spawnServer, type ChildServer } from '../helpers/child.js';

/**
 * Issue 11 item 5: `legacy-registry serve` with nothing configured serves /v2/ (current docker,
 * podman and skopeo speak only v2), asking for the index's Bearer tokens; V2=false keeps the 404
 * that makes Docker 1.6–1.9 fall back to v1.
 */
describe('serve with the embedded defaults: /v2/ is on', () => {
  let dir: string;
  const servers: ChildServer[] = [];
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'lr-defaults-'));
  });
  after(async () => {
    for (const s of servers) s.proc.kill('SIGTERM');
    await Promise.all(servers.map((s) => s.exited));
    await rm(dir, { recursive: true, force: true });
  });

  it('answers /v2/ with 401, the v2 version header and a Bearer challenge pointing at the index token service', async () => {
    // STANDALONE '' = unset: the default `serve` (index + registry in one process)
    const s = await spawnServer({ STORAGE_PATH: join(dir, 'a'), STANDALONE: '' });
    servers.push(s);
    const r = await request(s.url, '/v2/');
    assert.equal(r.status, 401);
    assert.equal(r.headers['docker-distribution-api-version'], 'registry/2.0');
    assert.match(String(r.headers['www-authenticate']), /^Bearer realm="http:\/\/[^"]+\/v2\/token",service="[^"]+"$/);
    const token = await request(s.url, '/v2/token');
    assert.equal(token.status, 200);
    const ok = await request(s.url, '/v2/', { headers: { Authorization: `Bearer ${token.json<{ token: string }>().token}` } });
    assert.equal(ok.status, 200);
    assert.equal(ok.text, '{}');
  });

  it('V2=false: /v2/ answers 404 without the version header (1.6–1.9 clients stay on v1)', async () => {
    const s = await spawnServer({ STORAGE_PATH: join(dir, 'b'), STANDALONE: '', V2: 'false' });
    servers.push(s);
    const r = await request(s.url, '/v2/');
    assert.equal(r.status, 404);
    assert.equal(r.headers['docker-distribution-api-version'], undefined);
  });
});
