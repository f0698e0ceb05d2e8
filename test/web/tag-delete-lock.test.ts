import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { saveUser } from '../../src/db/users.js';
import { holdLock } from '../helpers/held-lock.js';
import { Site } from '../helpers/accounts.js';
import { request, type Response } from '../helpers/http.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { makeImage } from '../helpers/v1-client.js';
import { webSession } from '../helpers/web-session.js';

/**
 * The web UI's tag delete (owner's settings) against a push of the tag: PUT tag, a v2 delete and the
 * v2→v1 bridge move tags under the repository's lock, shared by every node on the storage; the web
 * UI's delete took none before 2026-12-07 (a PUT tag then interleaved with it: the tag could be left
 * without its metadata, as the v1 DELETE did: test/protocol/v1-tag-delete-lock). It now waits for
 * the lock as they do: held from outside (another node's lock object), the delete does not answer
 * until it is let go, then deletes the tag.
 */
describe('web UI tag delete under the repository lock', () => {
  let s: TestServer;
  let site: Site;
  const repo = 'alice/app';
  const alice = ['alice', 'alicepw1'] as const;

  before(async () => {
    s = await startTestServer({ metadata_cache_ttl: 0 });
    await saveUser(s.db!, { username: 'alice', email: 'a@example.com', password: 'alicepw1', active: true }, { cost: 4 });
    site = new Site(s.url, s.url);
    await site.pushV1(repo, alice, [makeImage()], 'doomed');
  });
  after(() => s?.stop());

  it('waits while another node holds the repository lock, then deletes the tag', { timeout: 60_000 }, async () => {
    const { cookie, csrf } = await webSession(s.url, ...alice);
    const release = await holdLock(s.dataDir, `repository\n${repo}`);
    let answered = false;
    let del: Promise<Response>;
    try {
      del = request(s.url, `/u/${repo}/settings/tags/delete`, {
        method: 'POST',
        headers: { Cookie: cookie, 'Content-Type': 'application/x-www-form-urlencoded' },
        body: `_csrf=${encodeURIComponent(csrf)}&tag=doomed`,
      }).finally(() => (answered = true));
      await sleep(1500);
      assert.equal(answered, false, 'the delete answered while another node held the repository lock');
    } finally {
      await release();
    }
    const r = await del;
    assert.equal(r.status, 303, r.text.slice(0, 300));
    const token = await site.readToken(repo, alice);
    assert.equal((await site.regGet(`/v1/repositories/${repo}/tags/doomed`, token)).status, 404);
  });
});
