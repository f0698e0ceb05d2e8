import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, request as httpRequest, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
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

  const common = { v2: true, bcrypt_cost: 4, token_service: 'journal-test' };

  /**
   * An index on a port of its own with alice, and a registry split from it that has fetched the
   * index's key; data in index<n> and registry<n>. Both are stopped after the suite.
   */
  async function splitPair(n: string) {
    const port = await freePort();
    const idx = await startTestServer({ ...common, port }, { role: 'index', dataDir: join(dir, `index${n}`) });
    servers.push(idx);
    await saveUser(idx.db!, { username: 'alice', email: 'a@example.com', password: 'alicepw', active: true }, { cost: 4 });
    const regConf = { ...common, standalone: false, index_endpoint: idx.url };
    const reg = await startTestServer(regConf, { role: 'registry', dataDir: join(dir, `registry${n}`) });
    servers.push(reg);
    const site = new Site(idx.url, reg.url);
    const token = await site.bearer(ALICE, 'repository:alice/app:pull,push');
    assert.equal((await site.v2('/v2/', token)).status, 200, 'the registry has fetched the index key');
    return { port, idx, reg, regConf, site, token };
  }

  it('a push made while the index is down reaches the index once it is back', async () => {
    const pair = await splitPair('');
    const { port, regConf, site, token } = pair;
    let { idx, reg } = pair;

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

  it('an index that takes the notice and never answers holds a v2 push 15 s, not for ever: the push lands, the intent stays', async () => {
    const idx = await startTestServer(common, { role: 'index', dataDir: join(dir, 'index3') });
    servers.push(idx);
    await saveUser(idx.db!, { username: 'alice', email: 'a@example.com', password: 'alicepw', active: true }, { cost: 4 });
    // everything reaches the index but the notice, which is read and left unanswered
    const target = new URL(idx.url);
    const held: ServerResponse[] = [];
    const proxy = createServer((req, res) => {
      if ((req.url ?? '').startsWith('/_index/v2/pushed')) {
        req.resume();
        held.push(res);
        return;
      }
      const up = httpRequest({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers }, (r) => {
        res.writeHead(r.statusCode ?? 502, r.headers);
        r.pipe(res);
      });
      up.on('error', () => res.writeHead(502).end());
      req.pipe(up);
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    try {
      const viaProxy = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`;
      const reg = await startTestServer({ ...common, standalone: false, index_endpoint: viaProxy }, { role: 'registry', dataDir: join(dir, 'registry3') });
      servers.push(reg);
      const site = new Site(idx.url, reg.url);
      const token = await site.bearer(ALICE, 'repository:alice/app:pull,push');
      const started = Date.now();
      const pushed = pushV2Image(site, 'alice/app', 'v1', token, v2Image('journal-hung'));
      const outcome = await Promise.race([pushed.then(() => 'pushed'), sleep(40_000).then(() => 'still waiting after 40 s')]);
      assert.equal(outcome, 'pushed');
      const took = Date.now() - started;
      assert.ok(held.length >= 1, 'the notice reached the index');
      assert.ok(took >= 14_000 && took < 30_000, `the push waited for the index ${took} ms`);
      assert.equal((await filesUnder(join(dir, 'registry3', 'v2', '_pending'))).length, 1, 'the intent stays, to be replayed');
    } finally {
      for (const res of held) res.destroy();
      proxy.closeAllConnections();
      await new Promise<void>((resolve) => proxy.close(() => resolve()));
    }
  });

  it('a pending notice whose credentials the index refuses (the token expired meanwhile) is dropped at the replay, not kept for a day', async () => {
    const pair = await splitPair('2');
    const { port, regConf, site, token } = pair;
    let { idx, reg } = pair;

    await idx.stop();
    await pushV2Image(site, 'alice/app', 'v1', token, v2Image('journal-expired'));
    const pendingDir = join(dir, 'registry2', 'v2', '_pending');
    const [file] = await filesUnder(pendingDir);
    assert.ok(file, 'the intent stays while the index is down');
    // the token forwarded with the notice no longer passes at the index (v2 tokens live
    // v2_token_ttl, at least 60 s: one the index cannot verify stands for one that expired)
    const path = file;
    const notice = JSON.parse(await readFile(path, 'utf8')) as { authorization?: string };
    assert.match(notice.authorization ?? '', /^Bearer /);
    await writeFile(path, JSON.stringify({ ...notice, authorization: 'Bearer eyJhbGciOiJFUzI1NiJ9.eyJleHAiOjF9.c2ln' }));

    idx = await startTestServer({ ...common, port }, { role: 'index', dataDir: join(dir, 'index2') });
    servers.push(idx);
    await reg.stop();
    reg = await startTestServer(regConf, { role: 'registry', dataDir: join(dir, 'registry2') });
    servers.push(reg);
    let left = [file];
    for (let i = 0; i < 60 && left.length > 0; i++) {
      await sleep(250);
      left = await filesUnder(pendingDir);
    }
    assert.deepEqual(left, [], 'the refused notice is dropped at the first replay');
    // nothing was told with the refused credentials; the tag is served as pushed
    assert.equal(await findRepository(idx.db!, 'alice', 'app'), undefined);
    const now = new Site(idx.url, reg.url);
    assert.equal((await now.v2('/v2/alice/app/manifests/v1', await now.bearer(ALICE, 'repository:alice/app:pull'))).status, 200);
  });
});
