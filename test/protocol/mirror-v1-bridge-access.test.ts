import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import bcrypt from 'bcryptjs';
import { request } from '../helpers/http.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

/**
 * A v1 read of a repository a v2 upstream mirrors makes the mirror pull the tag's manifest and
 * blobs through and write the v1 view (docs/mirror.md, "A v1 client on a v2 upstream"). That ran
 * before the registry route's own access check: an anonymous request to a mirror that only its
 * htpasswd accounts may read made it ask the upstream for the tags, manifests and blobs of up to 8
 * tags and write their records, and only then got its 401. The upstream here counts what it is
 * asked, and has nothing.
 */
describe('mirror: the v1 view of a v2-mirrored repository is fetched only for a caller who may read it', { timeout: 60_000 }, () => {
  let work: string;
  let upstream: Server;
  let mirror: TestServer;
  const asked: string[] = [];
  const basic = `Basic ${Buffer.from('reader:readerpw').toString('base64')}`;

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'lr-mirror-v1-access-'));
    upstream = createServer((req, res) => {
      asked.push(`${req.method} ${req.url}`);
      if (req.url === '/v2/') {
        res.writeHead(200, { 'Content-Type': 'application/json', 'Docker-Distribution-API-Version': 'registry/2.0' });
        res.end('{}');
        return;
      }
      res.writeHead(404, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ errors: [{ code: 'NAME_UNKNOWN', message: 'repository name not known to registry' }] }));
    });
    await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
    await writeFile(join(work, 'htpasswd'), `reader:${bcrypt.hashSync('readerpw', 5)}\n`);
    mirror = await startTestServer({
      standalone: true,
      v2: true,
      v2_auth: 'htpasswd',
      htpasswd_path: join(work, 'htpasswd'),
      mirror: { upstreams: [{ url: `http://127.0.0.1:${(upstream.address() as AddressInfo).port}` }] },
    });
  });
  after(async () => {
    await mirror?.stop();
    await new Promise((r) => upstream?.close(r));
    await rm(work, { recursive: true, force: true });
  });

  it('anonymous and wrong credentials: 401, and the upstream is asked nothing', async () => {
    for (const headers of [{} as Record<string, string>, { Authorization: `Basic ${Buffer.from('reader:wrong').toString('base64')}` }]) {
      for (const path of ['/v1/repositories/library/app/tags', '/v1/repositories/library/app/tags/latest', '/v1/repositories/someone/app/tags/v1']) {
        const r = await request(mirror.url, path, { headers });
        assert.equal(r.status, 401, `${path}: ${r.status} ${r.body.toString()}`);
      }
    }
    assert.deepEqual(asked, [], 'the upstream was asked for nothing');
  });

  it('a reader: the upstream is asked (it has nothing: 404), so the test above can see a fetch', async () => {
    const r = await request(mirror.url, '/v1/repositories/library/app/tags/latest', { headers: { Authorization: basic } });
    assert.equal(r.status, 404, r.body.toString());
    assert.ok(
      asked.some((a) => a.includes('/library/app/')),
      `asked: ${asked.join(', ')}`,
    );
  });
});
