import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from '../helpers/http.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { DOCKER_UA, makeImage } from '../helpers/v1-client.js';
import { basic, pushV2Image, S2, Site, v2Image, type Creds } from '../helpers/accounts.js';
import { Receiver, type Received } from '../helpers/receiver.js';
import { saveUser } from '../../src/db/users.js';
import type { Event } from '../../src/notifications/events.js';

const ALICE: Creds = ['alice', 'alicepw1'];
const events = (r: readonly Received[]): Event[] => r.flatMap((x) => (JSON.parse(x.body) as { events: Event[] }).events);

/**
 * distribution's notifications from an index + registry in one process (issue 15): Docker 1.x
 * pushes, pulls and deletes through v1 report the bridge's manifest and the tag; endpoints' ignore
 * rules; the webhook outbox and the notification queues survive a restart while receivers are down.
 */
describe('notifications and webhooks of v1 operations, across restarts', () => {
  let s: TestServer;
  let site: Site;
  const all = new Receiver();
  const picky = new Receiver();
  const hooks = new Receiver();
  let dataDir: string;

  const overrides = () => ({
    bcrypt_cost: 4,
    storage_delete: true,
    webhook_allowed_networks: ['127.0.0.1'],
    webhook_retry_base: 0.2,
    webhook_retry_max: 0.5,
    webhook_poll_interval: 0.2,
    webhook_max_attempts: 100,
    notifications: {
      endpoints: [
        { name: 'all', url: `${all.url}/all`, threshold: 2, backoff: 0.2, timeout: 2 },
        // the same receiver filtered: no pulls, no blobs (application/octet-stream)
        { name: 'picky', url: `${picky.url}/picky`, ignoredmediatypes: ['application/octet-stream'], ignore: { mediatypes: [], actions: ['pull'] } },
        { name: 'off', url: 'http://127.0.0.1:9/', disabled: true },
      ],
    },
  });

  before(async () => {
    await all.up();
    await picky.up();
    await hooks.up();
    // our own directory: the server is restarted on it (the helper removes only directories it made)
    dataDir = await mkdtemp(join(tmpdir(), 'lr-notify-'));
    s = await startTestServer(overrides(), { dataDir });
    site = new Site(s.url, s.url);
    await saveUser(s.db!, { username: 'alice', email: 'alice@example.com', password: 'alicepw1', active: true }, { cost: 4 });
  });
  after(async () => {
    await s?.stop();
    for (const r of [all, picky, hooks]) await r.down();
    await rm(dataDir, { recursive: true, force: true });
  });

  it('a Docker 1.x push, pull and delete of a tag: push/pull/delete events naming the bridge manifest and the tag, actor the account', async () => {
    const base = makeImage();
    const top = makeImage(base.id);
    await site.pushV1('alice/old', ALICE, [base, top], 'latest');
    await all.until((r) => events(r).some((e) => e.action === 'push'), 20_000, 'the v1 push event');
    // the digest a v2 client gets for the tag is the one the event names
    const bearer = await site.bearer(ALICE, 'repository:alice/old:pull,delete');
    const head = await site.v2('/v2/alice/old/manifests/latest', bearer, { method: 'HEAD', headers: { Accept: S2 } });
    assert.equal(head.status, 200);
    const digest = String(head.headers['docker-content-digest']);
    const push = events(all.received).find((e) => e.action === 'push')!;
    assert.deepEqual(push.target, {
      mediaType: S2,
      size: Number(head.headers['content-length']),
      digest,
      length: Number(head.headers['content-length']),
      repository: 'alice/old',
      url: `${s.url}/v2/alice/old/manifests/${digest}`,
      tag: 'latest',
    });
    assert.equal(push.request.method, 'PUT');
    assert.equal(push.request.useragent, DOCKER_UA);
    assert.equal(push.actor.name, 'alice');
    assert.equal(events(all.received).filter((e) => e.action === 'push').length, 1, 'one push event per tag (image uploads are not tag events)');

    // Docker ≥ 1.6 pulls a tag by looking it up on the registry
    all.received.length = 0;
    const read = await site.readToken('alice/old', ALICE);
    const tag = await request(s.url, '/v1/repositories/alice/old/tags/latest', { headers: { Authorization: `Token ${read}`, 'User-Agent': DOCKER_UA } });
    assert.equal(JSON.parse(tag.text), top.id);
    // the v2 HEAD above is a pull too (distribution does the same)
    await all.until((r) => events(r).filter((e) => e.action === 'pull').length >= 2, 20_000, 'pull events');
    const pulls = events(all.received).filter((e) => e.action === 'pull');
    assert.deepEqual(
      pulls.map((e) => [e.request.method, e.target.digest, e.target.tag]),
      [
        ['HEAD', digest, 'latest'],
        ['GET', digest, 'latest'],
      ],
    );

    all.received.length = 0;
    const del = await site.deleteToken('alice/old', ALICE);
    const r = await request(s.url, '/v1/repositories/alice/old/tags/latest', { method: 'DELETE', headers: { Authorization: `Token ${del}` } });
    assert.equal(r.status, 200, r.text);
    await all.until((x) => events(x).some((e) => e.action === 'delete'), 20_000, 'the delete event');
    assert.deepEqual(events(all.received).find((e) => e.action === 'delete')!.target, { digest, repository: 'alice/old', tag: 'latest' });
    // picky ignores pulls and blobs: only the manifest push and the delete
    await picky.until((x) => events(x).length >= 2, 20_000, 'picky events');
    assert.deepEqual(
      events(picky.received).map((e) => e.action),
      ['push', 'delete'],
    );
  });

  it('a webhook and both endpoints down across a restart of the server: every delivery arrives once afterwards', async () => {
    const hook = await request(s.url, '/v1/webhooks/alice/old', {
      method: 'POST',
      headers: { Authorization: basic(...ALICE!), 'Content-Type': 'application/json' },
      body: JSON.stringify({ name: 'ci', url: `${hooks.url}/hook` }),
    });
    assert.equal(hook.status, 201, hook.text);
    all.received.length = 0;
    picky.received.length = 0;
    await all.down();
    await picky.down();
    await hooks.down();
    const img = v2Image('restart', 1);
    const token = await site.bearer(ALICE, 'repository:alice/old:pull,push');
    const t0 = Date.now();
    await pushV2Image(site, 'alice/old', 'a', token, img);
    await site.pushV1('alice/old', ALICE, [makeImage()], 'b');
    // pushes never wait for receivers
    assert.ok(Date.now() - t0 < 15_000);
    await new Promise((r) => setTimeout(r, 600)); // a few failed attempts
    await s.stop();
    s = await startTestServer(overrides(), { dataDir });
    site = new Site(s.url, s.url);
    await all.up();
    await picky.up();
    await hooks.up();
    await hooks.until((r) => r.length >= 2, 30_000, 'webhooks after the restart');
    await all.until((r) => events(r).filter((e) => e.action === 'push' && e.target.tag).length >= 2, 30_000, 'notifications after the restart');
    await new Promise((r) => setTimeout(r, 800));
    assert.deepEqual(hooks.received.map((r) => (JSON.parse(r.body) as { push_data: { tag: string } }).push_data.tag).sort(), ['a', 'b']);
    const evs = events(all.received);
    assert.equal(new Set(evs.map((e) => e.id)).size, evs.length, 'no event twice');
    // the v2 push: 2 blobs then the manifest of a; then the v1 tag b
    assert.deepEqual(
      evs.filter((e) => e.action === 'push').map((e) => e.target.tag ?? 'blob'),
      ['blob', 'blob', 'a', 'b'],
    );
    assert.deepEqual(
      events(picky.received).map((e) => `${e.action} ${e.target.tag}`),
      ['push a', 'push b'],
    );
  });
});
