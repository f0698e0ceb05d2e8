import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startTestServer } from '../helpers/server.js';
import { makeImage, pushImage, putTag } from '../helpers/v1-client.js';
import { Site, type Creds } from '../helpers/accounts.js';
import { saveUser } from '../../src/db/users.js';

const NS: Creds = ['nsuser', 'nsuserpw'];

/**
 * Storage written before images belonged to repositories (every v1 image in v1/images/) stays
 * pullable: the first start with an index gives each repository the images its tags name.
 */
describe("storage upgrade: registry-wide v1 images become their repositories' own", () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'lr-layout-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('a tagged chain pushed to a registry-wide store pulls back after the restart with an index', async () => {
    const root = makeImage();
    const top = makeImage(root.id);
    const untagged = makeImage();
    // layout 1: the registry-wide set (a registry without accounts writes it today too)
    const old = await startTestServer({ standalone: true }, { dataDir: dir });
    for (const img of [root, top, untagged]) {
      const rs = await pushImage(old.url, img);
      assert.deepEqual(
        rs.slice(1).map((r) => r.status),
        [200, 200, 200],
      );
    }
    assert.equal((await putTag(old.url, 'nsuser/app', 'latest', top.id)).status, 200);
    await old.stop();
    await stat(join(dir, 'v1', 'images', top.id, 'json'));

    const s = await startTestServer({ bcrypt_cost: 4 }, { dataDir: dir });
    try {
      await saveUser(s.db!, { username: 'nsuser', email: 'ns@example.com', password: 'nsuserpw', active: true }, { cost: 4 });
      const site = new Site(s.url, s.url);
      await site.claim('nsuser/app', NS, [root.id, top.id]);
      const t = (await site.readToken('nsuser/app', NS))!;
      assert.deepEqual((await site.regGet('/v1/repositories/nsuser/app/tags', t)).json(), { latest: top.id });
      assert.deepEqual((await site.regGet(`/v1/images/${top.id}/ancestry`, t)).json(), [top.id, root.id]);
      for (const img of [root, top]) {
        assert.deepEqual((await site.regGet(`/v1/images/${img.id}/layer`, t)).body, img.layer);
        assert.deepEqual((await site.regGet(`/v1/images/${img.id}/json`, t)).body, img.json);
      }
      assert.equal((await site.regGet(`/v1/images/${untagged.id}/json`, t)).status, 404, 'no tag named it: not carried over');
      await stat(join(dir, 'v1', '_layout'));
    } finally {
      await s.stop();
    }
  });
});
