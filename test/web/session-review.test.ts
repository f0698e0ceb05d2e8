import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { findUserByName, saveUser } from '../../src/db/users.js';
import { countUserSessions } from '../../src/db/web.js';
import { tsValue } from '../../src/db/rows.js';
import { MAX_SESSIONS_PER_ACCOUNT } from '../../src/web/session.js';
import { request } from '../helpers/http.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

/**
 * Adversarial review of the web UI's sessions (2026-12-07), over HTTP: what a session is after
 * the events that end it. Each case failed before its fix.
 */
const HTML = { Accept: 'text/html' };
const FORM = 'application/x-www-form-urlencoded';

describe('web UI sessions end for good', () => {
  let s: TestServer;
  before(async () => {
    s = await startTestServer({ bcrypt_cost: 4 }, { role: 'index' });
    await saveUser(s.db!, { username: 'alice', email: 'alice@example.com', password: 'alicepw1', active: true }, { cost: 4 });
    await saveUser(s.db!, { username: 'root', email: 'root@example.com', password: 'rootpw1', active: true, admin: true }, { cost: 4 });
    await saveUser(s.db!, { username: 'loop', email: 'loop@example.com', password: 'looppw1', active: true }, { cost: 4 });
  });
  after(() => s?.stop());

  /** Sign in through the form: the session cookie (name=value). */
  async function login(username: string, password: string): Promise<string> {
    const page = await request(s.url, '/login', { headers: HTML });
    const pre = String(page.headers['set-cookie']).split(';')[0]!;
    const r = await request(s.url, '/login', {
      method: 'POST',
      headers: { Cookie: pre, 'Content-Type': FORM },
      body: new URLSearchParams({ _csrf: pre.slice('lr_csrf='.length), username, password }).toString(),
    });
    assert.equal(r.status, 303, r.text);
    return String(r.headers['set-cookie']).split(';')[0]!;
  }
  const csrfOf = (html: string): string => /<meta name="csrf-token" content="([^"]+)"/.exec(html)![1]!;
  /** Whether the cookie is a live session: /account answers its page, else the login form's redirect. */
  const signedIn = async (cookie: string): Promise<boolean> => (await request(s.url, '/account', { headers: { ...HTML, Cookie: cookie } })).status === 200;

  it('deactivating an account ends its sessions: activating it again later does not bring them back', async () => {
    const alice = await login('alice', 'alicepw1');
    assert.equal(await signedIn(alice), true);
    const root = await login('root', 'rootpw1');
    const admin = await request(s.url, '/admin/users', { headers: { ...HTML, Cookie: root } });
    assert.equal(admin.status, 200);
    const active = (on: boolean) =>
      request(s.url, '/admin/users/active', {
        method: 'POST',
        headers: { Cookie: root, 'Content-Type': FORM },
        body: new URLSearchParams({ _csrf: csrfOf(admin.text), username: 'alice', active: on ? '1' : '0' }).toString(),
      });
    // the stolen cookie is not used while the account is off (nothing visits to remove it)
    assert.equal((await active(false)).status, 303);
    assert.equal((await active(true)).status, 303);
    // before: the session was only refused while the account was inactive, and came back with it
    assert.equal(await signedIn(alice), false, 'a session of the deactivated account is over');
    // the account itself works again: a new sign-in is a new session
    assert.equal(await signedIn(await login('alice', 'alicepw1')), true);
  });

  it('a session ends 30 days after its sign-in (web_session_max_age), however often it is used', async () => {
    const DAY = 86400_000;
    const sessionsOf = async (username: string) => {
      const uid = (await findUserByName(s.db!, username))!.id;
      return s.db!('web_sessions').where({ user_id: uid });
    };
    /** Move alice's sessions back in time: signed in `days` ago, last seen 10 minutes ago. */
    const age = async (days: number) => {
      const uid = (await findUserByName(s.db!, 'alice'))!.id;
      const now = Date.now();
      await s.db!('web_sessions')
        .where({ user_id: uid })
        .update({
          created_at: tsValue(s.db!, new Date(now - days * DAY)),
          last_seen_at: tsValue(s.db!, new Date(now - 10 * 60_000)),
          expires_at: tsValue(s.db!, new Date(now + 13 * DAY)),
        });
    };
    await s.db!('web_sessions')
      .where({ user_id: (await findUserByName(s.db!, 'alice'))!.id })
      .delete();
    const young = await login('alice', 'alicepw1');
    // used all along, signed in 29 days ago: still on, and its expiry slides only up to day 30
    await age(29);
    const page = await request(s.url, '/account', { headers: { ...HTML, Cookie: young } });
    assert.equal(page.status, 200);
    const [row] = await sessionsOf('alice');
    const expires = new Date(row.expires_at as string | Date).getTime();
    const created = new Date(row.created_at as string | Date).getTime();
    assert.ok(expires <= created + 30 * DAY + 1000, `the expiry slid to ${new Date(expires).toISOString()}, past the 30 days`);
    const maxAge = /Max-Age=(\d+)/.exec(String(page.headers['set-cookie']))?.[1];
    assert.ok(maxAge !== undefined && Number(maxAge) <= 86400 + 5, `the cookie slid to Max-Age=${maxAge}`);
    // signed in 31 days ago, used 10 minutes ago: over
    await age(31);
    assert.equal(await signedIn(young), false, 'a session past its 30 days is over');
    assert.equal((await sessionsOf('alice')).length, 0, 'and its row is gone');
    assert.equal(await signedIn(await login('alice', 'alicepw1')), true);
  });

  it('an account keeps a bounded number of sessions: signing in past it ends the least recently used one', async () => {
    const loop = (await findUserByName(s.db!, 'loop'))!;
    const first = await login('loop', 'looppw1');
    const cookies = [first];
    // before: every sign-in added a row for 14 days, without bound (one account in a loop grew the database)
    for (let i = 1; i <= MAX_SESSIONS_PER_ACCOUNT; i++) cookies.push(await login('loop', 'looppw1'));
    assert.equal(await countUserSessions(s.db!, loop.id), MAX_SESSIONS_PER_ACCOUNT);
    assert.equal(await signedIn(first), false, 'the oldest session ended');
    assert.equal(await signedIn(cookies[1]!), true, 'the others stay');
    assert.equal(await signedIn(cookies.at(-1)!), true, 'the newest is signed in');
    // other accounts are not touched
    assert.equal(await signedIn(await login('alice', 'alicepw1')), true);
  });
});
