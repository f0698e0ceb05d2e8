import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { freePort } from '../helpers/ports.js';
import { filesUnder } from '../helpers/files.js';
import { pushV2Image, Site, v2Image, type Creds } from '../helpers/accounts.js';
import { saveUser } from '../../src/db/users.js';
import { findRepository, listImages } from '../../src/db/repositories.js';

const ALICE: Creds = ['alice', 'alicepw'];

/**
 * The index's notice of a v2 push is written ahead (issue 17): when the index cannot be told (down,
 * or the registry is killed in between), the intent stays in storage and is replayed, so index and
 * storage agree again without another push of the tag.
 */
describe('index notices are written ahead and replayed', () => {
  let dir: string;
  const servers: TestServer[] = [];
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'lr-journal-'));
  });
  after(async () => {
    for (const s of servers) await s.stop().catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  });

  it('a push made while the index is down reaches the index once it is back', async () => {
    const port = await freePort();
    const common = { v2: true, bcrypt_cost: 4, token_service: 'journal-test' };
    let idx = await startTestServer({ ...common, port }, { role: 'index', dataDir: join(dir, 'index') });
    servers.push(idx);
    await saveUser(idx.db!, { username: 'alice', email: 'a@example.com', password: 'alicepw', active: true }, { cost: 4 });
    const regConf = { ...common, standalone: false, index_endpoint: idx.url };
    let reg = await startTestServer(regConf, { role: 'registry', dataDir: join(dir, 'registry') });
    servers.push(reg);
    const site = new Site(idx.url, reg.url);
    const token = await site.bearer(ALICE, 'repository:alice/app:pull,push');
    assert.equal((await site.v2('/v2/', token)).status, 200, 'the registry has fetched the index key');

    await idx.stop();
    await pushV2Image(site, 'alice/app', 'v1', token, v2Image('journal'));
    assert.equal((await filesUnder(join(dir, 'registry', 'v2', '_pending'))).length, 1, 'the intent stays while the index is down');

    idx = await startTestServer({ ...common, port }, { role: 'index', dataDir: join(dir, 'index') });
    servers.push(idx);
    assert.equal(await findRepository(idx.db!, 'alice', 'app'), undefined);
    // a registry start replays what is pending (after a few seconds: younger intents may belong to a
    // request still running on another node)
    await reg.stop();
    reg = await startTestServer(regConf, { role: 'registry', dataDir: join(dir, 'registry') });
    servers.push(reg);
    let repo;
    for (let i = 0; i < 60 && !(repo = await findRepository(idx.db!, 'alice', 'app')); i++) await sleep(250);
    assert.ok(repo, 'the index learnt the push');
    const images = await listImages(idx.db!, repo.id);
    assert.equal(images[images.length - 1]!.tag, 'v1');
    for (let i = 0; i < 20 && (await filesUnder(join(dir, 'registry', 'v2', '_pending'))).length > 0; i++) await sleep(100);
    assert.deepEqual(await filesUnder(join(dir, 'registry', 'v2', '_pending')), []);
  });
});
