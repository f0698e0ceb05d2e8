import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from '../helpers/http.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { spawnServer, type ChildServer } from '../helpers/child.js';
import { DOCKER_UA, makeImage } from '../helpers/v1-client.js';
import { basic, pushV2Image, S2, Site, v2Image, type Creds } from '../helpers/accounts.js';
import { Receiver, type Received } from '../helpers/receiver.js';
import { saveUser } from '../../src/db/users.js';
import type { Event } from '../../src/notifications/events.js';

const ALICE: Creds = ['alice', 'alicepw1'];
const BOB: Creds = ['bobby', 'bobbypw1'];

interface HubPayload {
  callback_url: string;
  push_data: { images: string[]; pushed_at: number; pusher: string; tag: string };
  repository: Record<string, unknown>;
}
const payloads = (r: readonly Received[]): HubPayload[] => r.map((x) => JSON.parse(x.body) as HubPayload);
const events = (r: readonly Received[]): Event[] => r.flatMap((x) => (JSON.parse(x.body) as { events: Event[] }).events);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Issue 15 in split mode: the registry runs as its own process (`serve --only registry`, spawned
 * here), the index in another. A Docker 1.x push through the registry fires the repository's Hub
 * webhooks exactly once per tag (the index fires them on the registry's notice, which carries the
 * push's write token), and the registry's distribution events name the pusher. Only the holder of a
 * write token for that very repository can make the index fire them.
 */
describe('webhooks and notifications of v1 pushes through a registry split from its index', () => {
  let idx: TestServer;
  let reg: ChildServer;
  let site: Site;
  let dir: string;
  const hooks = new Receiver();
  const notes = new Receiver();

  before(async () => {
    await hooks.up();
    await notes.up();
    dir = await mkdtemp(join(tmpdir(), 'lr-split-hooks-'));
    idx = await startTestServer(
      {
        bcrypt_cost: 4,
        token_service: 'split-hooks',
        webhook_allowed_networks: ['127.0.0.1'],
        webhook_poll_interval: 0.2,
        webhook_retry_base: 0.2,
        webhook_retry_max: 1,
      },
      { role: 'index', dataDir: join(dir, 'index') },
    );
    for (const [u, p] of [ALICE!, BOB!]) await saveUser(idx.db!, { username: u, email: `${u}@example.com`, password: p, active: true }, { cost: 4 });
    const config = join(dir, 'registry.yml');
    const keys: Record<string, unknown> = {
      storage_path: join(dir, 'registry'),
      standalone: false,
      index_endpoint: idx.url,
      v2: true,
      token_service: 'split-hooks',
      storage_delete: true,
      notifications: { endpoints: [{ name: 'all', url: `${notes.url}/events`, threshold: 2, backoff: 0.2, timeout: 2 }] },
    };
    await writeFile(
      config,
      `dev:\n${Object.entries(keys)
        .map(([k, v]) => `  ${k}: ${JSON.stringify(v)}`)
        .join('\n')}\n`,
    );
    reg = await spawnServer({ SETTINGS_FLAVOR: 'dev', STANDALONE: 'false', LOGLEVEL: 'info' }, ['--only', 'registry', '--config', config]);
    site = new Site(idx.url, reg.url);
  });
  after(async () => {
    if (reg && reg.proc.exitCode === null) {
      reg.proc.kill('SIGTERM');
      await Promise.race([reg.exited, sleep(10_000)]);
    }
    await idx?.stop();
    await hooks.down();
    await notes.down();
    await rm(dir, { recursive: true, force: true });
  });

  it('a Docker 1.x push sequence: one Hub payload per hook and tag (chain top last, index fields, pusher), push events naming the pusher', async () => {
    const base = makeImage();
    const top = makeImage(base.id);
    await site.pushV1('alice/app', ALICE, [base, top], 'first');
    const created = await request(idx.url, '/v1/webhooks/alice/app', {
      method: 'POST',
      headers: { Authorization: basic(...ALICE!), 'Content-Type': 'application/json' },
      body: JSON.stringify({ name: 'ci', url: `${hooks.url}/hook` }),
    });
    assert.equal(created.status, 201, created.text);
    hooks.received.length = 0;
    notes.received.length = 0;

    await site.pushV1('alice/app', ALICE, [base, top], 'latest');
    await hooks.until((r) => r.length >= 1, 20_000, 'the webhook of the v1 push');
    await sleep(1000); // nothing more comes: exactly one per hook and tag
    assert.equal(hooks.received.length, 1, reg.output());
    const p = payloads(hooks.received)[0]!;
    assert.deepEqual(p.push_data.images, [base.id, top.id]);
    assert.equal(p.push_data.tag, 'latest');
    assert.equal(p.push_data.pusher, 'alice');
    assert.equal(p.repository.repo_name, 'alice/app');
    assert.equal(p.repository.owner, 'alice');
    assert.equal(p.repository.is_private, false);
    assert.equal(p.repository.status, 'Active');
    // the index's fields: its own address for callback_url and repo_url
    assert.equal(p.repository.repo_url, `${idx.url}/u/alice/app/`);
    assert.match(p.callback_url, new RegExp(`^${idx.url.replace(/\./g, '\\.')}/u/alice/app/hook/[0-9a-f]{64}/$`));
    const cb = await request(idx.url, new URL(p.callback_url).pathname, { method: 'POST', body: JSON.stringify({ state: 'success' }) });
    assert.equal(cb.status, 200, cb.text);

    // the registry's distribution event of the tag push: the bridge's manifest, the tag, the pusher
    await notes.until((r) => events(r).some((e) => e.action === 'push' && e.target.tag === 'latest'), 20_000, 'the push event');
    const push = events(notes.received).filter((e) => e.action === 'push' && e.target.tag === 'latest');
    assert.equal(push.length, 1);
    assert.equal(push[0]!.actor.name, 'alice');
    assert.equal(push[0]!.target.repository, 'alice/app');
    assert.equal(push[0]!.target.mediaType, S2);
    assert.match(String(push[0]!.target.digest), /^sha256:[0-9a-f]{64}$/);
    assert.equal(push[0]!.request.useragent, DOCKER_UA);

    // two more tags of one chain, one v1 and one v2 push: one delivery each, nothing twice
    hooks.received.length = 0;
    await site.pushV1('alice/app', ALICE, [base, top], 'second');
    const img = v2Image('split-hooked', 1);
    await pushV2Image(site, 'alice/app', 'from-v2', await site.bearer(ALICE, 'repository:alice/app:pull,push'), img);
    await hooks.until((r) => r.length >= 2, 20_000, 'the webhooks of two more pushes');
    await sleep(1000);
    assert.deepEqual(
      payloads(hooks.received)
        .map((x) => x.push_data.tag)
        .sort(),
      ['from-v2', 'second'],
    );
    const hist = await request(idx.url, `/v1/webhooks/alice/app/${created.json<{ id: number }>().id}/deliveries`, {
      headers: { Authorization: basic(...ALICE!) },
    });
    assert.deepEqual(
      hist
        .json<{ tag: string; state: string }[]>()
        .map((d) => `${d.tag} ${d.state}`)
        .sort(),
      ['from-v2 delivered', 'latest delivered', 'second delivered'],
    );
  });

  it('only a write token for the repository makes the index fire its hooks; the refused notices fire nothing', async () => {
    hooks.received.length = 0;
    const top = makeImage();
    await site.pushV1('bobby/own', BOB, [top], 'latest');
    const notice = (authorization: string | undefined, body: unknown = { name: 'alice/app', tag: 'forged', images: [top.id] }) =>
      request(idx.url, '/_index/v1/pushed', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', ...(authorization ? { Authorization: authorization } : {}) },
        body: JSON.stringify(body),
      });
    const aliceWrite = await site.claim('alice/app', ALICE, [top.id], '');
    const cells: Record<string, number> = {
      'no credentials': (await notice(undefined)).status,
      'Basic of the owner': (await notice(basic(...ALICE!))).status,
      'a token this index never signed': (await notice(`Token signature=${'a'.repeat(40)},repository="alice/app",access=write`)).status,
      'the owner read token': (await notice(`Token ${await site.readToken('alice/app', ALICE)}`)).status,
      'another read token': (await notice(`Token ${await site.readToken('alice/app', BOB)}`)).status,
      'a write token of another repository': (await notice(`Token ${await site.claim('bobby/own', BOB, [top.id], '')}`)).status,
      'the write token, another repository named': (await notice(`Token ${aliceWrite}`, { name: 'bobby/own', tag: 'forged', images: [top.id] })).status,
      'the write token, a bad tag': (await notice(`Token ${aliceWrite}`, { name: 'alice/app', tag: '-bad tag', images: [top.id] })).status,
      'the write token, no chain': (await notice(`Token ${aliceWrite}`, { name: 'alice/app', tag: 'forged', images: [] })).status,
      'the write token, a chain of junk': (await notice(`Token ${aliceWrite}`, { name: 'alice/app', tag: 'forged', images: ['../x'] })).status,
      'the write token, 1001 images': (
        await notice(`Token ${aliceWrite}`, { name: 'alice/app', tag: 'forged', images: Array.from({ length: 1001 }, () => top.id) })
      ).status,
      'the write token, 100,000 nested arrays': (
        await request(idx.url, '/_index/v1/pushed', {
          method: 'POST',
          headers: { 'Content-Type': 'application/json', Authorization: `Token ${aliceWrite}` },
          body: '{"deep":' + '['.repeat(100_000),
        })
      ).status,
      'the write token, 200 KiB of body': (
        await request(idx.url, '/_index/v1/pushed', {
          method: 'POST',
          headers: { 'Content-Type': 'application/json', Authorization: `Token ${aliceWrite}` },
          body: JSON.stringify({ name: 'alice/app', tag: 'big', images: [top.id], pad: 'x'.repeat(200 * 1024) }),
        })
      ).status,
    };
    assert.deepEqual(cells, {
      'no credentials': 401,
      'Basic of the owner': 401,
      'a token this index never signed': 401,
      'the owner read token': 403,
      'another read token': 403,
      'a write token of another repository': 403,
      'the write token, another repository named': 403,
      'the write token, a bad tag': 400,
      'the write token, no chain': 400,
      'the write token, a chain of junk': 400,
      'the write token, 1001 images': 400,
      'the write token, 100,000 nested arrays': 400,
      'the write token, 200 KiB of body': 413,
    });
    // a deleted repository: the write token issued before the delete no longer fires anything
    await site.pushV1('alice/gone', ALICE, [top], 'latest');
    const goneHook = await request(idx.url, '/v1/webhooks/alice/gone', {
      method: 'POST',
      headers: { Authorization: basic(...ALICE!), 'Content-Type': 'application/json' },
      body: JSON.stringify({ name: 'ci', url: `${hooks.url}/gone` }),
    });
    assert.equal(goneHook.status, 201, goneHook.text);
    const goneWrite = await site.claim('alice/gone', ALICE, [top.id], '');
    const del = await request(idx.url, '/v1/repositories/alice/gone/', { method: 'DELETE', headers: { Authorization: basic(...ALICE!) } });
    assert.equal(del.status, 202, del.text);
    assert.equal((await notice(`Token ${goneWrite}`, { name: 'alice/gone', tag: 'late', images: [top.id] })).status, 403);
    await sleep(1000);
    assert.deepEqual(
      hooks.received.map((r) => r.path),
      [],
      'no refused notice fired a hook',
    );

    // the write token's holder may tell the index (what the registry does for it): one delivery
    const ok = await notice(`Token ${aliceWrite}`, { name: 'alice/app', tag: 'by-notice', images: [top.id] });
    assert.equal(ok.status, 200, ok.text);
    assert.deepEqual(ok.json(), { pusher: 'alice' });
    await hooks.until((r) => r.length >= 1, 20_000, 'the webhook of the accepted notice');
    assert.deepEqual(
      payloads(hooks.received).map((x) => [x.push_data.tag, x.push_data.pusher, x.push_data.images]),
      [['by-notice', 'alice', [top.id]]],
    );
  });
});
