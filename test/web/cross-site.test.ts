import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Browser, BrowserContext } from 'playwright-core';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { saveUser } from '../../src/db/users.js';
import { findRepository, listComments, saveRepository } from '../../src/db/repositories.js';
import { listHooks } from '../../src/webhooks/store.js';
import { browserSkip, launch } from './browser.js';

/**
 * Cross-site request forgery in a real browser (test/protocol/csrf.test.ts has every route over
 * plain HTTP). Alice's Chromium has Basic credentials for the index, cached after its challenge;
 * she then opens a page of another origin on loopback whose form posts, with enctype=text/plain, a
 * JSON body to the webhook API and to the comments API. The browser sends her credentials along;
 * nothing may change.
 */
const skip = browserSkip();

describe('a page of another origin posting to the API with the browser cached credentials', { skip }, () => {
  let s: TestServer;
  let attacker: Server;
  let browser: Browser;
  let context: BrowserContext;
  let attackerPort = 0;

  before(async () => {
    s = await startTestServer({ bcrypt_cost: 4 });
    const alice = (await saveUser(s.db!, { username: 'alice', email: 'alice@example.com', password: 'alicepw1', active: true }, { cost: 4 }))!;
    await saveRepository(s.db!, { namespace: 'alice', name: 'app', description: '', private: false, ownerId: alice.id });
    // the other site: a form whose one field makes a JSON body (`{…,"pad":"` + `=` + `"}`), sent at once
    attacker = createServer((req, res) => {
      const target = new URL(req.url ?? '/', 'http://x').searchParams.get('to') ?? '';
      const json = new URL(req.url ?? '/', 'http://x').searchParams.get('json') ?? '{}';
      const name = `${json.slice(0, -1)},"pad":"`;
      const esc = (v: string) => v.replace(/&/g, '&amp;').replace(/"/g, '&quot;').replace(/</g, '&lt;');
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
      res.end(
        `<!doctype html><form method="post" enctype="text/plain" action="${esc(target)}">` +
          `<input type="hidden" name="${esc(name)}" value='"}'></form><script>document.forms[0].submit()</script>`,
      );
    });
    await new Promise<void>((r) => attacker.listen(0, '127.0.0.1', r));
    attackerPort = (attacker.address() as AddressInfo).port;
    browser = await launch();
    context = await browser.newContext();
  });
  after(async () => {
    await context?.close().catch(() => undefined);
    await browser?.close();
    await new Promise((r) => attacker?.close(r));
    await s?.stop();
  });

  it('the webhook API and comments: refused (403), nothing added, although the browser sent the cached credentials', async () => {
    const page = await context.newPage();
    // Alice reads her hooks, the credentials given as the prompt would: Chromium keeps them for the index
    const own = await page.goto(`${s.url.replace('//', '//alice:alicepw1@')}/v1/webhooks/alice/app`);
    assert.equal(own?.status(), 200);
    const repo = (await findRepository(s.db!, 'alice', 'app'))!;
    // Chromium sends cached credentials at once below the path they were given for (the hooks), and
    // after a Basic challenge of their realm elsewhere (the comments: before the fix, 401 and again)
    const targets = [
      [`${s.url}/v1/webhooks/alice/app`, { name: 'evil', url: 'https://evil.example/steal' }, true],
      [`${s.url}/v1/comments/alice/app`, { body: 'spam' }, false],
    ] as const;
    // another site (localhost is not 127.0.0.1), and another port of the same host (same-site)
    for (const site of [`http://localhost:${attackerPort}`, `http://127.0.0.1:${attackerPort}`]) {
      for (const [to, body, preemptive] of targets) {
        const url = `${site}/?to=${encodeURIComponent(to)}&json=${encodeURIComponent(JSON.stringify(body))}`;
        const [posted] = await Promise.all([
          page.waitForResponse((r) => r.request().method() === 'POST' && r.url() === to && r.status() !== 401),
          page.goto(url),
        ]);
        const sent = await posted.request().allHeaders();
        if (preemptive) assert.match(sent.authorization ?? '', /^Basic /, 'the browser sent the cached credentials');
        assert.equal(sent['content-type'], 'text/plain');
        assert.equal(posted.status(), 403, `${site} → ${to}: ${await posted.text()}`);
      }
    }
    assert.deepEqual(await listHooks(s.db!, repo.id), []);
    assert.equal((await listComments(s.db!, repo.id)).total, 0);
  });
});
