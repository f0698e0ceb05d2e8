import { exposition } from '../../src/metrics/registry.js';
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { request } from '../helpers/http.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { makeImage } from '../helpers/v1-client.js';
import { basic, derivedBaseId, pushV2Image, Site, v2Image, type Creds } from '../helpers/accounts.js';
import { Receiver, type Received } from '../helpers/receiver.js';
import { saveUser } from '../../src/db/users.js';

const ALICE: Creds = ['alice', 'alicepw1'];
const BOB: Creds = ['bobby', 'bobbypw1'];

interface HubPayload {
  callback_url: string;
  push_data: { images: string[]; pushed_at: number; pusher: string; tag: string };
  repository: Record<string, unknown>;
}

/**
 * Webhooks (issue 15) over HTTP against receivers on loopback: Docker Hub's payload after v1 and v2
 * pushes, exactly one delivery per hook and tag, signatures, callbacks and chains, retries with
 * backoff while a receiver is down, the delivery history, and who may manage hooks.
 */
/** The webhook delivery counters and the outbox gauge of this process's /metrics registry. */
async function deliveryMetrics(): Promise<{ success: number; retry: number; failed: number; depthSampled: boolean }> {
  const text = (await exposition()).body;
  const count = (result: string): number => {
    const m =
      new RegExp(`^legacy_registry_event_deliveries_total\\{[^}]*queue="webhooks"[^}]*result="${result}"[^}]*\\} (\\d+)`, 'm').exec(text) ??
      new RegExp(`^legacy_registry_event_deliveries_total\\{[^}]*result="${result}"[^}]*queue="webhooks"[^}]*\\} (\\d+)`, 'm').exec(text);
    return m ? Number(m[1]) : 0;
  };
  return {
    success: count('success'),
    retry: count('retry'),
    failed: count('failed'),
    depthSampled: /^legacy_registry_event_queue_depth\{queue="webhooks"\} \d+/m.test(text),
  };
}

describe('webhooks', () => {
  let s: TestServer;
  let site: Site;
  const rx = new Receiver();
  const rx2 = new Receiver();

  const api = (path: string, c: Creds, method = 'GET', body?: unknown) =>
    request(s.url, path, {
      method,
      headers: { ...(c ? { Authorization: basic(...c) } : {}), 'Content-Type': 'application/json' },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
  const payloads = (r: readonly Received[], path = '/'): HubPayload[] => r.filter((x) => x.path === path).map((x) => JSON.parse(x.body) as HubPayload);

  before(async () => {
    await rx.up();
    await rx2.up();
    s = await startTestServer({
      bcrypt_cost: 4,
      webhook_allowed_networks: ['127.0.0.1'],
      webhook_retry_base: 0.2,
      webhook_retry_max: 1,
      webhook_poll_interval: 0.2,
      webhook_max_attempts: 4,
    });
    site = new Site(s.url, s.url);
    for (const [u, p] of [ALICE!, BOB!]) await saveUser(s.db!, { username: u, email: `${u}@example.com`, password: p, active: true }, { cost: 4 });
  });
  after(async () => {
    await s?.stop();
    await rx.down();
    await rx2.down();
  });

  it('a Docker 1.x push of a tag sends one Hub payload per hook: the chain top last, the index fields, signed', async () => {
    const base = makeImage();
    const top = makeImage(base.id);
    // the repository exists once pushed: hooks are set on it, then the next push fires them
    await site.pushV1('alice/app', ALICE, [base, top], 'v1');
    const created = await api('/v1/webhooks/alice/app', ALICE, 'POST', { name: 'ci', url: `${rx.url}/`, secret: 's3cret' });
    assert.equal(created.status, 201, created.text);
    assert.deepEqual(Object.keys(created.json<object>()).sort(), ['chained', 'created_at', 'id', 'name', 'secret', 'url']);
    assert.equal(created.json<{ secret: unknown }>().secret, true, 'the secret is never shown back');
    await site.pushV1('alice/app', ALICE, [base, top], 'latest');
    await rx.until((r) => r.length >= 1);
    // nothing more comes: one delivery per hook and tag
    await new Promise((r) => setTimeout(r, 700));
    assert.equal(rx.received.length, 1);
    const d = rx.received[0]!;
    assert.equal(d.headers['content-type'], 'application/json');
    assert.match(String(d.headers['x-registry-delivery']), /^[0-9a-f-]{36}$/);
    assert.equal(d.headers['x-registry-event'], 'push');
    assert.equal(d.headers['x-registry-signature-256'], `sha256=${createHmac('sha256', 's3cret').update(d.body).digest('hex')}`);
    const p = JSON.parse(d.body) as HubPayload;
    assert.deepEqual(Object.keys(p), ['callback_url', 'push_data', 'repository']);
    assert.deepEqual(p.push_data.images, [base.id, top.id]);
    assert.equal(p.push_data.tag, 'latest');
    assert.equal(p.push_data.pusher, 'alice');
    assert.ok(Math.abs(p.push_data.pushed_at - Date.now() / 1000) < 120);
    const port = new URL(s.url).port;
    assert.match(p.callback_url, new RegExp(`^http://127\\.0\\.0\\.1:${port}/u/alice/app/hook/[0-9a-f]{64}/$`));
    assert.deepEqual(Object.keys(p.repository).sort(), [
      'comment_count',
      'date_created',
      'description',
      'dockerfile',
      'full_description',
      'is_official',
      'is_private',
      'is_trusted',
      'name',
      'namespace',
      'owner',
      'repo_name',
      'repo_url',
      'star_count',
      'status',
    ]);
    assert.equal(p.repository.repo_name, 'alice/app');
    assert.equal(p.repository.namespace, 'alice');
    assert.equal(p.repository.name, 'app');
    assert.equal(p.repository.is_private, false);
    assert.equal(p.repository.is_official, false);
    assert.equal(p.repository.status, 'Active');
    assert.equal(p.repository.repo_url, `http://127.0.0.1:${port}/u/alice/app/`);
    assert.equal(typeof p.repository.date_created, 'number');

    // the receiver's callback is recorded and shows in the history with the attempt
    const cbPath = new URL(p.callback_url).pathname;
    const cb = await request(s.url, cbPath, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ state: 'success', description: 'tests passed', context: 'ci', target_url: 'http://ci/1' }),
    });
    assert.equal(cb.status, 200, cb.text);
    const hookId = created.json<{ id: number }>().id;
    const hist = (await api(`/v1/webhooks/alice/app/${hookId}/deliveries`, ALICE)).json<
      {
        id: string;
        state: string;
        tag: string;
        callback: { state: string; description: string };
        history: { status: number; duration_ms: number; response: string | null }[];
      }[]
    >();
    assert.equal(hist.length, 1);
    assert.equal(hist[0]!.id, d.headers['x-registry-delivery']);
    assert.equal(hist[0]!.state, 'delivered');
    assert.equal(hist[0]!.tag, 'latest');
    assert.deepEqual([hist[0]!.callback.state, hist[0]!.callback.description], ['success', 'tests passed']);
    assert.equal(hist[0]!.history.length, 1);
    assert.equal(hist[0]!.history[0]!.status, 200);
    // the receiver is on 127.0.0.1, allowed but not public: its answer is not kept (webhooks-hostile)
    assert.equal(hist[0]!.history[0]!.response, null);
    assert.ok(hist[0]!.history[0]!.duration_ms >= 0);
    // a token of nothing, a bad state, another repository's path: refused, nothing recorded
    assert.equal((await request(s.url, `/u/alice/app/hook/${'0'.repeat(64)}/`, { method: 'POST', body: '{"state":"success"}' })).status, 404);
    assert.equal((await request(s.url, cbPath, { method: 'POST', body: '{"state":"great"}' })).status, 400);
    assert.equal((await request(s.url, cbPath.replace('/alice/app/', '/bobby/app/'), { method: 'POST', body: '{"state":"failure"}' })).status, 404);
  });

  it('a v2 push of a tag sends one payload with the derived v1 chain; a test delivery is marked test', async () => {
    rx.received.length = 0;
    const img = v2Image('hooked', 2);
    const token = await site.bearer(ALICE, 'repository:alice/app:pull,push');
    await pushV2Image(site, 'alice/app', 'v2tag', token, img);
    await rx.until((r) => r.length >= 1);
    await new Promise((r) => setTimeout(r, 700));
    assert.equal(rx.received.length, 1);
    const p = JSON.parse(rx.received[0]!.body) as HubPayload;
    assert.equal(p.push_data.tag, 'v2tag');
    assert.equal(p.push_data.pusher, 'alice');
    assert.equal(p.push_data.images.length, 2);
    assert.equal(p.push_data.images[0], derivedBaseId(img.layers[0]!));
    // the top id is what a v1 client pulls for the tag
    const tags = await site.regGet('/v1/repositories/alice/app/tags/v2tag', await site.readToken('alice/app', ALICE));
    assert.equal(JSON.parse(tags.text), p.push_data.images[1]);

    const hooks = (await api('/v1/webhooks/alice/app', ALICE)).json<{ id: number }[]>();
    const t = await api(`/v1/webhooks/alice/app/${hooks[0]!.id}/test`, ALICE, 'POST');
    assert.equal(t.status, 202, t.text);
    await rx.until((r) => r.length >= 2);
    assert.equal(rx.received[1]!.headers['x-registry-event'], 'test');
    assert.equal(rx.received[1]!.headers['x-registry-delivery'], t.json<{ delivery: string }>().delivery);
  });

  it('chained hooks: the next fires only after a success callback; a failure callback stops the chain', async () => {
    rx.received.length = 0;
    const first = await api('/v1/webhooks/alice/chain', ALICE, 'POST', { name: 'a', url: `${rx2.url}/first` });
    assert.equal(first.status, 404, 'no repository yet: 404');
    const img = v2Image('chain', 1);
    const token = await site.bearer(ALICE, 'repository:alice/chain:pull,push');
    await pushV2Image(site, 'alice/chain', 'one', token, img);
    for (const [name, path, chained] of [
      ['a', '/first', false],
      ['b', '/second', true],
      ['c', '/third', true],
    ] as const) {
      const r = await api('/v1/webhooks/alice/chain', ALICE, 'POST', { name, url: `${rx2.url}${path}`, chained });
      assert.equal(r.status, 201, r.text);
    }
    await pushV2Image(site, 'alice/chain', 'two', token, img);
    await rx2.until((r) => r.length >= 1);
    await new Promise((r) => setTimeout(r, 800));
    assert.deepEqual(
      rx2.received.map((r) => r.path),
      ['/first'],
      'b waits for a',
    );
    const cb = new URL(payloads(rx2.received, '/first')[0]!.callback_url).pathname;
    assert.equal((await request(s.url, cb, { method: 'POST', body: '{"state":"success"}' })).status, 200);
    await rx2.until((r) => r.length >= 2);
    assert.equal(rx2.received[1]!.path, '/second');
    const cb2 = new URL(payloads(rx2.received, '/second')[0]!.callback_url).pathname;
    assert.equal((await request(s.url, cb2, { method: 'POST', body: '{"state":"failure","description":"tests failed"}' })).status, 200);
    await new Promise((r) => setTimeout(r, 800));
    assert.deepEqual(
      rx2.received.map((r) => r.path),
      ['/first', '/second'],
      'c never fires after a failure',
    );
    const hooks = (await api('/v1/webhooks/alice/chain', ALICE)).json<{ id: number; name: string }[]>();
    const third = (await api(`/v1/webhooks/alice/chain/${hooks.find((h) => h.name === 'c')!.id}/deliveries`, ALICE)).json<{ state: string }[]>();
    assert.deepEqual(
      third.map((d) => d.state),
      ['skipped'],
    );
  });

  it('a receiver that refuses or is down gets the delivery later (backoff), then a dead one is marked failed', async () => {
    const before = await deliveryMetrics();
    const flaky = new Receiver();
    await flaky.up();
    let calls = 0;
    flaky.status = () => (++calls <= 2 ? 503 : 200);
    const r = await api('/v1/webhooks/bobby/flaky', BOB, 'POST', { name: 'x', url: flaky.url });
    assert.equal(r.status, 404);
    const token = await site.bearer(BOB, 'repository:bobby/flaky:pull,push');
    const img = v2Image('flaky', 1);
    await pushV2Image(site, 'bobby/flaky', 'a', token, img);
    const hook = (await api('/v1/webhooks/bobby/flaky', BOB, 'POST', { name: 'x', url: `${flaky.url}/x` })).json<{ id: number }>();
    const dead = (await api('/v1/webhooks/bobby/flaky', BOB, 'POST', { name: 'dead', url: 'http://127.0.0.1:9/nothing' })).json<{ id: number }>();
    const t0 = Date.now();
    await pushV2Image(site, 'bobby/flaky', 'b', token, img);
    await flaky.until((x) => x.length >= 1, 30_000);
    assert.equal(flaky.refused, 2);
    assert.ok(Date.now() - t0 >= 200 * 0.8 + 400 * 0.8, 'retries waited (0.2 s, then 0.4 s, ±20 %)');
    const h = (await api(`/v1/webhooks/bobby/flaky/${hook.id}/deliveries`, BOB)).json<{ state: string; attempts: number; history: { status: number }[] }[]>();
    assert.equal(h[0]!.state, 'delivered');
    assert.deepEqual(
      h[0]!.history.map((a) => a.status),
      [503, 503, 200],
    );
    // the dead one: 4 attempts (webhook_max_attempts), then failed
    const deadline = Date.now() + 20_000;
    let dh: { state: string; attempts: number; history: { status: number | null; error: string }[] }[] = [];
    while (Date.now() < deadline) {
      dh = (await api(`/v1/webhooks/bobby/flaky/${dead.id}/deliveries`, BOB)).json();
      if (dh[0]?.state === 'failed') break;
      await new Promise((res) => setTimeout(res, 200));
    }
    assert.equal(dh[0]!.state, 'failed');
    assert.equal(dh[0]!.attempts, 4);
    assert.ok(dh[0]!.history.every((a) => a.status === null && a.error.length > 0));
    // the same story in /metrics (legacy_registry_event_deliveries_total, by result)
    const afterwards = await deliveryMetrics();
    assert.ok(afterwards.success - before.success >= 1, `success ${before.success} → ${afterwards.success}`);
    assert.ok(afterwards.retry - before.retry >= 2 + 3, `retry ${before.retry} → ${afterwards.retry}: 2 refusals + 3 of the dead hook`);
    assert.equal(afterwards.failed - before.failed, 1);
    assert.ok(afterwards.depthSampled, 'the outbox depth gauge is sampled at scrape time');
    await flaky.down();
  });

  it('only the owner manages hooks; others get 401/403/404 and change nothing; bad input is a 400', async () => {
    assert.equal((await api('/v1/webhooks/alice/app', undefined)).status, 401);
    assert.equal((await api('/v1/webhooks/alice/app', BOB)).status, 403, 'public repository, not the owner');
    assert.equal((await api('/v1/webhooks/alice/app', BOB, 'POST', { name: 'evil', url: 'http://127.0.0.1:1/' })).status, 403);
    await site.setAccess('alice/app', ALICE, 'private');
    assert.equal((await api('/v1/webhooks/alice/app', BOB)).status, 404, 'private: as if missing');
    const hooks = (await api('/v1/webhooks/alice/app', ALICE)).json<{ id: number }[]>();
    assert.equal((await api(`/v1/webhooks/alice/app/${hooks[0]!.id}/deliveries`, BOB)).status, 404);
    assert.equal((await api(`/v1/webhooks/alice/app/${hooks[0]!.id}`, BOB, 'DELETE')).status, 404);
    for (const bad of [
      { name: 'x', url: 'ftp://example.com/' },
      { name: 'x', url: 'not a url' },
      { name: '', url: 'http://example.com/' },
      { name: 'x\u0000', url: 'http://example.com/' },
      { name: 'x', url: 'http://user:pw@example.com/' },
      { name: 'x', url: 'http://example.com/', secret: 'x'.repeat(201) },
      { name: 'ci', url: 'http://example.com/' },
      [1, 2],
    ]) {
      const r = await api('/v1/webhooks/alice/app', ALICE, 'POST', bad);
      assert.equal(r.status, 400, `${JSON.stringify(bad)}: ${r.text}`);
    }
    assert.equal((await api('/v1/webhooks/alice/app', ALICE)).json<unknown[]>().length, 1);
    assert.equal((await api('/v1/webhooks/alice/app/999999', ALICE, 'DELETE')).status, 404);
    assert.equal((await api(`/v1/webhooks/alice/app/${hooks[0]!.id}`, ALICE, 'DELETE')).status, 200);
    assert.equal((await api('/v1/webhooks/alice/app', ALICE)).json<unknown[]>().length, 0);
  });
});
