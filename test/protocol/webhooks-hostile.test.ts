import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { createServer as createTcpServer, type Server as TcpServer, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { request } from '../helpers/http.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { basic, type Creds } from '../helpers/accounts.js';
import { Receiver } from '../helpers/receiver.js';
import { saveUser } from '../../src/db/users.js';
import { findRepository, saveRepository } from '../../src/db/repositories.js';
import { enqueuePush, MAX_OPEN_PER_HOOK } from '../../src/webhooks/store.js';
import { DestinationPolicy, postWebhook } from '../../src/webhooks/outgoing.js';

const ALICE: Creds = ['alice', 'alicepw1'];

interface DeliveryView {
  id: string;
  state: string;
  attempts: number;
  history: { status: number | null; error: string | null; response: string | null; duration_ms: number }[];
}

/**
 * Hook URLs are chosen by repository owners, not by the operator (docs/webhooks.md): they must not
 * turn the index into a proxy into its own network (SSRF), and a hostile receiver (endless answer,
 * no answer, redirects) or a flood of test deliveries must not hold the sender or grow the outbox.
 * Every receiver here is on 127.0.0.1; the first server refuses loopback as the default does, the
 * second allows 127.0.0.1 only (webhook_allowed_networks) to meet hostile receivers.
 */
describe('webhooks: hostile hook URLs and receivers', () => {
  const rx = new Receiver();
  let strict: TestServer;
  let loose: TestServer;

  const api = (s: TestServer, path: string, method = 'GET', body?: unknown) =>
    request(s.url, path, {
      method,
      headers: { Authorization: basic(...ALICE), 'Content-Type': 'application/json' },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
  const addHook = async (s: TestServer, name: string, url: string): Promise<number> => {
    const r = await api(s, '/v1/webhooks/alice/app', 'POST', { name, url });
    assert.equal(r.status, 201, r.text);
    return r.json<{ id: number }>().id;
  };
  /** Queue a test delivery and wait until it is finished (delivered or failed). */
  const testDelivery = async (s: TestServer, hook: number): Promise<DeliveryView> => {
    const r = await api(s, `/v1/webhooks/alice/app/${hook}/test`, 'POST');
    assert.equal(r.status, 202, r.text);
    const id = r.json<{ delivery: string }>().delivery;
    const until = Date.now() + 15_000;
    for (;;) {
      const list = (await api(s, `/v1/webhooks/alice/app/${hook}/deliveries`)).json<DeliveryView[]>();
      const d = list.find((x) => x.id === id);
      if (d && (d.state === 'delivered' || d.state === 'failed')) return d;
      assert.ok(Date.now() < until, `delivery ${id} still ${d?.state}`);
      await new Promise((res) => setTimeout(res, 100));
    }
  };

  const setup = async (overrides: Record<string, unknown>): Promise<TestServer> => {
    const s = await startTestServer({ bcrypt_cost: 4, webhook_poll_interval: 0.2, webhook_max_attempts: 1, webhook_timeout: 1, ...overrides });
    await saveUser(s.db!, { username: ALICE[0], email: 'alice@example.com', password: ALICE[1], active: true }, { cost: 4 });
    await saveRepository(s.db!, { namespace: 'alice', name: 'app' });
    return s;
  };

  before(async () => {
    await rx.up();
    strict = await setup({});
    loose = await setup({ webhook_allowed_networks: ['127.0.0.1/32'] });
  });
  after(async () => {
    await strict?.stop();
    await loose?.stop();
    await rx.down();
  });

  it('refuses hook URLs naming loopback, private, link-local or otherwise non-public addresses, in any spelling', async () => {
    const port = rx.port;
    for (const url of [
      `http://127.0.0.1:${port}/`,
      `http://127.1.2.3:${port}/`,
      `http://2130706433:${port}/`, // 127.0.0.1 as one number
      `http://0x7f.1:${port}/`,
      `http://0177.0.0.1:${port}/`,
      `http://0/`,
      `http://0.0.0.0:${port}/`,
      `http://[::1]:${port}/`,
      `http://[::]:${port}/`,
      `http://[::ffff:127.0.0.1]:${port}/`,
      `http://[::ffff:a9fe:a9fe]/`, // 169.254.169.254, IPv4-mapped
      'http://169.254.169.254/latest/meta-data/',
      'http://10.0.0.1/',
      'http://172.16.5.4/',
      'http://192.168.1.1/',
      'http://100.64.0.1/',
      'https://[fd00::1]/',
      'http://[fe80::1]/',
      'http://224.0.0.1/',
      'http://[64:ff9b::7f00:1]/', // NAT64 of 127.0.0.1
    ]) {
      const r = await api(strict, '/v1/webhooks/alice/app', 'POST', { name: 'evil', url });
      assert.equal(r.status, 400, `${url}: ${r.text}`);
      assert.match(r.text, /not a public address/, url);
    }
    assert.equal((await api(strict, '/v1/webhooks/alice/app')).json<unknown[]>().length, 0, 'nothing was added');
    assert.equal(rx.received.length, 0);
  });

  it('a name resolving to loopback is refused at delivery time: the receiver gets nothing, the history says why', async () => {
    const hook = await addHook(strict, 'named', `http://localhost:${rx.port}/named`);
    const d = await testDelivery(strict, hook);
    assert.equal(d.state, 'failed');
    assert.equal(d.history[0]!.status, null);
    assert.match(d.history[0]!.error ?? '', /localhost is not a public address/);
    assert.equal(rx.received.length, 0, 'no request reached the loopback receiver');
  });

  it('the operator allows networks: webhook_allowed_networks reaches 127.0.0.1 (and nothing else non-public)', async () => {
    const hook = await addHook(loose, 'ok', `${rx.url}/ok`);
    const d = await testDelivery(loose, hook);
    assert.equal(d.state, 'delivered', JSON.stringify(d));
    assert.equal(rx.received.filter((r) => r.path === '/ok').length, 1);
    // ::1 and the rest of 127/8 stay refused
    assert.equal((await api(loose, '/v1/webhooks/alice/app', 'POST', { name: 'v6', url: `http://[::1]:${rx.port}/` })).status, 400);
    assert.equal((await api(loose, '/v1/webhooks/alice/app', 'POST', { name: 'other', url: `http://127.0.0.2:${rx.port}/` })).status, 400);
    const policy = new DestinationPolicy(['127.0.0.1/32', '10.1.0.0/16']);
    assert.deepEqual(
      ['127.0.0.1', '::ffff:127.0.0.1', '10.1.200.3', '10.2.0.1', '::1', '8.8.8.8', '2a00:1450::1', '169.254.169.254'].map((a) => policy.permits(a)),
      [true, true, true, false, false, true, true, false],
    );
    await api(loose, `/v1/webhooks/alice/app/${hook}`, 'DELETE');
  });

  it("an allowed non-public address's answer is neither read nor kept: owners cannot read internal services through the history", async () => {
    // webhook_allowed_networks lets deliveries into a network (an internal CI); any account owning a
    // repository could otherwise aim a hook at any service of that network, "Send test", and read
    // the first 512 bytes of its answer in the delivery history (JSON API and settings tab)
    const internal: Server = createServer((req, res) => {
      req.resume();
      res.writeHead(200, { 'Content-Type': 'application/json' }).end('{"internal":"db password s3cr3t"}');
    });
    await new Promise<void>((res) => internal.listen(0, '127.0.0.1', res));
    try {
      const hook = await addHook(loose, 'internal', `http://127.0.0.1:${(internal.address() as AddressInfo).port}/_search`);
      const d = await testDelivery(loose, hook);
      assert.equal(d.state, 'delivered');
      assert.equal(d.history[0]!.status, 200);
      assert.equal(d.history[0]!.response, null, 'the answer of an internal service shows in the history');
      assert.doesNotMatch(JSON.stringify(await loose.db!('webhook_attempts').select('response_excerpt')), /s3cr3t/);
      await api(loose, `/v1/webhooks/alice/app/${hook}`, 'DELETE');
      // a public address's answer is kept (first 512 bytes): judged by the address the answer came from
      const policy = new DestinationPolicy(['127.0.0.1/32']);
      assert.deepEqual(
        ['127.0.0.1', '::ffff:127.0.0.1', '10.1.2.3', '8.8.8.8', '2a00:1450::1', 'x'].map((a) => policy.isPublic(a)),
        [false, false, false, true, true, false],
      );
      const publicHere = Object.assign(new DestinationPolicy(['127.0.0.1/32']), { isPublic: () => true });
      const url = `http://127.0.0.1:${(internal.address() as AddressInfo).port}/`;
      const kept = await postWebhook(url, {}, '{}', { timeoutMs: 2000, policy: publicHere, maxBytes: 512 });
      assert.deepEqual(kept, { status: 200, excerpt: '{"internal":"db password s3cr3t"}' });
      assert.deepEqual(await postWebhook(url, {}, '{}', { timeoutMs: 2000, policy, maxBytes: 512 }), { status: 200, excerpt: null });
    } finally {
      internal.closeAllConnections();
      await new Promise((res) => internal.close(res));
    }
  });

  it('a redirect is not followed: a 3xx to a refused address is a failed attempt, nothing is sent there', async () => {
    let hits = 0;
    const redirector: Server = createServer((req, res) => {
      hits++;
      req.resume();
      res.writeHead(307, { Location: `http://127.0.0.1:${rx.port}/redirected` }).end();
    });
    await new Promise<void>((res) => redirector.listen(0, '127.0.0.1', res));
    try {
      const hook = await addHook(loose, 'redirect', `http://127.0.0.1:${(redirector.address() as AddressInfo).port}/`);
      const d = await testDelivery(loose, hook);
      assert.equal(d.state, 'failed');
      assert.equal(d.history[0]!.status, 307);
      assert.equal(hits, 1);
      assert.equal(rx.received.filter((r) => r.path === '/redirected').length, 0);
      await api(loose, `/v1/webhooks/alice/app/${hook}`, 'DELETE');
    } finally {
      redirector.closeAllConnections();
      await new Promise((res) => redirector.close(res));
    }
  });

  it('an endless answer is read to 512 bytes; an answer that never comes, or trickles, ends at webhook_timeout', async () => {
    const held: Socket[] = [];
    let endlessWritten = 0;
    const hostile: Server = createServer((req, res) => {
      req.resume();
      if (req.url === '/endless') {
        res.writeHead(200, { 'Content-Type': 'text/plain' });
        const chunk = Buffer.alloc(64 * 1024, 'A');
        const pump = (): void => {
          while (!res.destroyed && endlessWritten < 512 * 1024 * 1024) {
            endlessWritten += chunk.length;
            if (!res.write(chunk)) return void res.once('drain', pump);
          }
        };
        pump();
      } else if (req.url === '/trickle') {
        res.writeHead(200, { 'Content-Type': 'text/plain' });
        const t = setInterval(() => (res.destroyed ? clearInterval(t) : res.write('x')), 200);
        res.on('close', () => clearInterval(t));
      }
      // '/silent': never answers
    });
    // and a port that accepts connections and never reads or writes
    const tarpit: TcpServer = createTcpServer((sock) => held.push(sock));
    await new Promise<void>((res) => hostile.listen(0, '127.0.0.1', res));
    await new Promise<void>((res) => tarpit.listen(0, '127.0.0.1', res));
    const base = `http://127.0.0.1:${(hostile.address() as AddressInfo).port}`;
    try {
      const endless = await testDelivery(loose, await addHook(loose, 'endless', `${base}/endless`));
      assert.equal(endless.state, 'delivered');
      // 127.0.0.1 is only allowed, not public: nothing of the answer is read (test above)
      assert.equal(endless.history[0]!.response, null);
      assert.ok(endlessWritten < 64 * 1024 * 1024, `the sender stopped reading (${endlessWritten} bytes written)`);
      // from a public address the answer is read to 512 bytes (the receiver taken for one here)
      endlessWritten = 0;
      const publicHere = Object.assign(new DestinationPolicy(['127.0.0.1/32']), { isPublic: () => true });
      const read = await postWebhook(`${base}/endless`, {}, '{}', { timeoutMs: 1000, policy: publicHere, maxBytes: 512 });
      assert.equal(read.excerpt!.length, 512);
      assert.ok(endlessWritten < 64 * 1024 * 1024, `the sender stopped reading (${endlessWritten} bytes written)`);

      const silent = await testDelivery(loose, await addHook(loose, 'silent', `${base}/silent`));
      assert.equal(silent.state, 'failed');
      assert.match(silent.history[0]!.error ?? '', /no answer within 1 s/);

      const trickle = await testDelivery(loose, await addHook(loose, 'trickle', `${base}/trickle`));
      assert.ok(trickle.history[0]!.duration_ms < 3000, `trickling answer cut at the timeout (${trickle.history[0]!.duration_ms} ms)`);

      const pit = await testDelivery(loose, await addHook(loose, 'tarpit', `http://127.0.0.1:${(tarpit.address() as AddressInfo).port}/`));
      assert.equal(pit.state, 'failed');
      assert.match(pit.history[0]!.error ?? '', /no answer within 1 s/);
    } finally {
      for (const s of held) s.destroy();
      hostile.closeAllConnections();
      await new Promise((res) => hostile.close(res));
      await new Promise((res) => tarpit.close(res));
      for (const h of (await api(loose, '/v1/webhooks/alice/app')).json<{ id: number }[]>()) await api(loose, `/v1/webhooks/alice/app/${h.id}`, 'DELETE');
    }
  });

  it('the outbox stays bounded per hook: test deliveries past a few unfinished ones are refused (429), pushes past the cap are recorded as skipped', async () => {
    const held: Socket[] = [];
    const tarpit: TcpServer = createTcpServer((sock) => held.push(sock));
    await new Promise<void>((res) => tarpit.listen(0, '127.0.0.1', res));
    try {
      const hook = await addHook(loose, 'pit', `http://127.0.0.1:${(tarpit.address() as AddressInfo).port}/`);
      const answers: { status: number; text: string }[] = [];
      for (let i = 0; i < 12; i++) answers.push(await api(loose, `/v1/webhooks/alice/app/${hook}/test`, 'POST'));
      const statuses = answers.map((a) => a.status).join(' ');
      const refused = answers.find((a) => a.status === 429);
      assert.ok(refused, `a flood of tests is refused: ${statuses}`);
      assert.match(refused.text, /still unfinished/);
      assert.ok(answers.filter((a) => a.status === 202).length < 12, statuses);

      // pushes: the store queues at most MAX_OPEN_PER_HOOK unfinished deliveries per hook
      const repo = (await findRepository(loose.db!, 'alice', 'app'))!;
      for (let i = 0; i < 2 * MAX_OPEN_PER_HOOK; i++) await enqueuePush(loose.db!, repo.id, `t${i}`, () => '{}');
      const open = (await loose.db!('webhook_deliveries')
        .where({ webhook_id: hook })
        .whereIn('state', ['waiting', 'pending', 'sending'])
        .count({ n: '*' })
        .first()) as {
        n: unknown;
      };
      assert.ok(Number(open.n) <= MAX_OPEN_PER_HOOK, `unfinished deliveries of one hook: ${String(open.n)}`);
      const skipped = (await loose.db!('webhook_deliveries').where({ webhook_id: hook, state: 'skipped' }).first('last_error')) as
        { last_error: string } | undefined;
      assert.match(skipped?.last_error ?? '', /still unfinished/);
    } finally {
      for (const s of held) s.destroy();
      await new Promise((res) => tarpit.close(res));
    }
  });
});
