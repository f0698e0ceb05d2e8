import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, request as httpRequest, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from '../helpers/http.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { spawnServer, type ChildServer } from '../helpers/child.js';
import { filesUnder } from '../helpers/files.js';
import { makeImage } from '../helpers/v1-client.js';
import { basic, Site, type Creds } from '../helpers/accounts.js';
import { Receiver } from '../helpers/receiver.js';
import { saveUser } from '../../src/db/users.js';

const ALICE: Creds = ['alice', 'alicepw1'];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * What the registry sees of its index's `POST /_index/v1/pushed`: `pass` forwards it, `refuse`
 * answers 503 without forwarding (the index never got it), `lose` forwards it and answers 503 (the
 * index acted on it, its answer was lost). Everything else is forwarded as is.
 */
type Mode = 'pass' | 'refuse' | 'lose';
class IndexProxy {
  mode: Mode = 'pass';
  pushedSeen = 0;
  private server: Server | undefined;
  url = '';
  constructor(private readonly target: string) {}
  async up(): Promise<void> {
    const t = new URL(this.target);
    this.server = createServer((req, res) => {
      const pushed = (req.url ?? '').startsWith('/_index/v1/pushed');
      if (pushed) this.pushedSeen++;
      if (pushed && this.mode === 'refuse') {
        req.resume();
        res.writeHead(503).end('index away');
        return;
      }
      const lose = pushed && this.mode === 'lose';
      const up = httpRequest({ host: t.hostname, port: t.port, method: req.method, path: req.url, headers: { ...req.headers, host: t.host } }, (r) => {
        if (lose) {
          r.resume();
          r.on('end', () => res.writeHead(503).end('answer lost'));
          return;
        }
        res.writeHead(r.statusCode ?? 502, r.headers);
        r.pipe(res);
      });
      up.on('error', () => res.writeHead(502).end());
      req.pipe(up);
    });
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }
  async down(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}

/**
 * Issue 15, "never lost", split mode: a registry's notice of a v1 tag push is journalled in its
 * storage before the push is answered, replayed until the index answers, and fired by the index
 * at most once per notice id: an index that never got the notice, or whose answer was lost, still
 * ends with exactly one delivery per hook and tag.
 */
describe('v1 push notices of a split registry are journalled and replayed once', () => {
  let idx: TestServer;
  let reg: ChildServer | undefined;
  let proxy: IndexProxy;
  let dir: string;
  let config: string;
  const hooks = new Receiver();
  const spawnRegistry = () => spawnServer({ SETTINGS_FLAVOR: 'dev', STANDALONE: 'false', LOGLEVEL: 'info' }, ['--only', 'registry', '--config', config]);
  const stopRegistry = async () => {
    if (reg && reg.proc.exitCode === null) {
      reg.proc.kill('SIGTERM');
      await Promise.race([reg.exited, sleep(10_000)]);
    }
  };
  const pending = () => filesUnder(join(dir, 'registry', 'v1', '_pending'));

  before(async () => {
    await hooks.up();
    dir = await mkdtemp(join(tmpdir(), 'lr-split-journal-'));
    idx = await startTestServer(
      {
        bcrypt_cost: 4,
        token_service: 'split-journal',
        webhook_allowed_networks: ['127.0.0.1'],
        webhook_poll_interval: 0.2,
        webhook_retry_base: 0.2,
        webhook_retry_max: 1,
      },
      { role: 'index', dataDir: join(dir, 'index') },
    );
    await saveUser(idx.db!, { username: ALICE[0], email: 'alice@example.com', password: ALICE[1], active: true }, { cost: 4 });
    proxy = new IndexProxy(idx.url);
    await proxy.up();
    config = join(dir, 'registry.yml');
    const keys: Record<string, unknown> = { storage_path: join(dir, 'registry'), standalone: false, index_endpoint: proxy.url, token_service: 'split-journal' };
    await writeFile(
      config,
      `dev:\n${Object.entries(keys)
        .map(([k, v]) => `  ${k}: ${JSON.stringify(v)}`)
        .join('\n')}\n`,
    );
    reg = await spawnRegistry();
  });
  after(async () => {
    await stopRegistry();
    await proxy?.down();
    await idx?.stop();
    await hooks.down();
    await rm(dir, { recursive: true, force: true });
  });

  it('a notice the index never got, and one whose answer was lost: one delivery each after the replay', async () => {
    const base = makeImage();
    const top = makeImage(base.id);
    const site = new Site(idx.url, reg!.url);
    await site.pushV1('alice/app', ALICE, [base, top], 'first');
    const created = await request(idx.url, '/v1/webhooks/alice/app', {
      method: 'POST',
      headers: { Authorization: basic(...ALICE), 'Content-Type': 'application/json' },
      body: JSON.stringify({ name: 'ci', url: `${hooks.url}/hook` }),
    });
    assert.equal(created.status, 201, created.text);
    for (let i = 0; i < 50 && (await pending()).length > 0; i++) await sleep(100);
    assert.deepEqual(await pending(), [], 'an answered notice leaves nothing pending');

    // the index never gets the notice: the push succeeds, the notice stays in storage
    proxy.mode = 'refuse';
    const seen = proxy.pushedSeen;
    await site.pushV1('alice/app', ALICE, [base, top], 'while-away');
    for (let i = 0; i < 50 && proxy.pushedSeen === seen; i++) await sleep(100);
    assert.equal((await pending()).length, 1, `the notice stays pending\n${reg!.output()}`);

    // the index acts on the notice but its answer is lost: the hook fires, the notice stays too
    proxy.mode = 'lose';
    await site.pushV1('alice/app', ALICE, [base, top], 'answer-lost');
    await hooks.until((r) => r.length >= 1, 20_000, 'the webhook of the notice whose answer was lost');
    assert.equal((await pending()).length, 2, 'both notices pending');

    // the index answers again; a restarted registry replays what is pending
    proxy.mode = 'pass';
    await stopRegistry();
    reg = await spawnRegistry();
    for (let i = 0; i < 200 && (await pending()).length > 0; i++) await sleep(100);
    assert.deepEqual(await pending(), [], `replayed notices are removed\n${reg.output()}`);
    await hooks.until((r) => r.length >= 2, 20_000, 'the webhook of the replayed notice');
    await sleep(1500); // nothing more comes: exactly one per hook and tag
    const tags = hooks.received.map((r) => (JSON.parse(r.body) as { push_data: { tag: string; images: string[]; pusher: string } }).push_data);
    assert.deepEqual(tags.map((p) => p.tag).sort(), ['answer-lost', 'while-away']);
    for (const p of tags) {
      assert.deepEqual(p.images, [base.id, top.id]);
      assert.equal(p.pusher, 'alice');
    }
    const hist = await request(idx.url, `/v1/webhooks/alice/app/${created.json<{ id: number }>().id}/deliveries`, {
      headers: { Authorization: basic(...ALICE) },
    });
    assert.deepEqual(
      hist
        .json<{ tag: string }[]>()
        .map((d) => d.tag)
        .sort(),
      ['answer-lost', 'while-away'],
    );
  });
});
