import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { request } from '../helpers/http.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { dockerdMissing, startDockerd, type Dockerd } from '../helpers/dockerd.js';
import { pushV2 } from '../helpers/v2-client.js';

const basic = (u: string, p: string): string => `Basic ${Buffer.from(`${u}:${p}`).toString('base64')}`;
const skip = dockerdMissing();

describe('docker search (Debian docker.io 20.10 daemon) against the index', { skip }, () => {
  let s: TestServer;
  let d: Dockerd;
  let host: string;
  before(async () => {
    s = await startTestServer({ bcrypt_cost: 4, v2: true });
    host = new URL(s.url).host;
    d = await startDockerd();
    await request(s.url, '/v1/users/', { method: 'POST', body: JSON.stringify({ username: 'gina', password: 'ginapw', email: 'g@example.com' }) });
    for (const [name, description, priv] of [
      ['gina/webserver', 'A small web server for legacy hosts', false],
      ['gina/webhidden', 'secret', true],
      ['gina/database', 'not this one', false],
    ] as const) {
      const r = await request(s.url, `/v1/repositories/${name}/`, {
        method: 'PUT',
        headers: { Authorization: basic('gina', 'ginapw'), 'X-Docker-Token': 'true' },
        body: '[]',
      });
      assert.equal(r.status, 200);
      const p = await request(s.url, `/v1/repositories/${name}/properties`, {
        method: 'PUT',
        headers: { Authorization: basic('gina', 'ginapw') },
        body: JSON.stringify({ description, access: priv ? 'private' : 'public' }),
      });
      assert.equal(p.status, 200);
    }
    // and one pushed through /v2/ with a Bearer token: the index learns of it
    const q = new URLSearchParams({ service: host, scope: 'repository:gina/webmodern:pull,push' });
    const t = await request(s.url, `/v2/token?${q}`, { headers: { Authorization: basic('gina', 'ginapw') } });
    await pushV2(s.url, 'gina/webmodern', 'v1', { Authorization: `Bearer ${t.json<{ token: string }>().token}` });
  });
  after(async () => {
    await d?.stop();
    await s?.stop();
  });

  it('lists matching public repositories with their description and stars', async () => {
    const { stdout } = await d.docker('search', '--no-trunc', `${host}/web`);
    const lines = stdout.trim().split('\n');
    assert.match(lines[0]!, /^NAME\s+DESCRIPTION\s+STARS\s+OFFICIAL/);
    assert.equal(lines.length, 3, stdout);
    const rows = lines.slice(1).sort();
    assert.match(rows[0]!, /^gina\/webmodern\s+0\s*/, 'the v2-pushed repository');
    assert.match(rows[1]!, /^gina\/webserver\s+A small web server for legacy hosts\s+0\s*/);
  });

  it('shows nothing for a term nobody matches, and no error', async () => {
    const { stdout } = await d.docker('search', `${host}/zzzz`);
    assert.equal(stdout.trim().split('\n').length, 1);
  });
});
