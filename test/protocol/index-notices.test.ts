import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { request } from '../helpers/http.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { pushV2Image, Site, v2Image, type Creds } from '../helpers/accounts.js';
import { saveUser } from '../../src/db/users.js';
import { listImages, findRepository } from '../../src/db/repositories.js';

const OWNER: Creds = ['owner', 'ownerpw'];
const WRITER: Creds = ['writer', 'writerpw'];

/**
 * The registry → index notices of a split deployment (POST /_index/v2/pushed and /deleted) carry the
 * client's Bearer token; the index acts only on what that token grants: push for a push, delete for
 * a delete. Issue 10's audit found that dropping the delete check left every test green.
 */
describe('index notices from a split registry: the token decides', () => {
  let s: TestServer;
  let site: Site;
  before(async () => {
    s = await startTestServer({ v2: true, storage_delete: true, bcrypt_cost: 4 });
    site = new Site(s.url, s.url);
    await saveUser(s.db!, { username: 'owner', email: 'o@example.com', password: 'ownerpw', active: true }, { cost: 4 });
    await pushV2Image(site, 'owner/app', 'v1', await site.bearer(OWNER, 'repository:owner/app:pull,push'), v2Image('app'));
  });
  after(async () => {
    await s?.stop();
  });

  const post = (path: string, token: string | undefined, body: unknown) =>
    request(s.url, path, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', ...(token ? { Authorization: `Bearer ${token}` } : {}) },
      body: JSON.stringify(body),
    });

  it('a delete notice needs delete: pull+push is 403 and changes nothing; with delete the tag leaves the image list', async () => {
    const repo = (await findRepository(s.db!, 'owner', 'app'))!;
    const tagged = async () => (await listImages(s.db!, repo.id)).filter((i) => i.tag === 'v1').length;
    assert.equal(await tagged(), 1);
    const pushOnly = await site.bearer(OWNER, 'repository:owner/app:pull,push');
    const r = await post('/_index/v2/deleted', pushOnly, { name: 'owner/app', tags: ['v1'] });
    assert.equal(r.status, 403, r.text);
    assert.equal(await tagged(), 1);
    const none = await post('/_index/v2/deleted', undefined, { name: 'owner/app', tags: ['v1'] });
    assert.equal(none.status, 401);
    const del = await site.bearer(OWNER, 'repository:owner/app:delete');
    const ok = await post('/_index/v2/deleted', del, { name: 'owner/app', tags: ['v1'] });
    assert.equal(ok.status, 204, ok.text);
    assert.equal(await tagged(), 0);
  });

  it('a push notice needs push: a pull-only token is 403; no token is 401 before the body is read', async () => {
    await saveUser(s.db!, { username: 'writer', email: 'w@example.com', password: 'writerpw', active: true }, { cost: 4 });
    const pull = await site.bearer(WRITER, 'repository:owner/app:pull');
    const r = await post('/_index/v2/pushed', pull, { name: 'owner/app', tag: 'evil', images: [] });
    assert.equal(r.status, 403, r.text);
    const junk = await request(s.url, '/_index/v2/pushed', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: '{"deep":' + '['.repeat(100000),
    });
    assert.equal(junk.status, 401);
  });
});
