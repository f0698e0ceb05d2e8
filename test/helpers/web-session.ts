import assert from 'node:assert/strict';
import { request } from './http.js';

/**
 * A signed-in web UI session, as a browser gets one: the login form's CSRF cookie, the login POST,
 * then the form token of the account page. `cookie` is the session cookie (`name=value`).
 */
export async function webSession(url: string, username: string, password: string): Promise<{ cookie: string; csrf: string }> {
  const form = await request(url, '/login', { headers: { Accept: 'text/html' } });
  const pre = String(form.headers['set-cookie']).split(';')[0]!;
  const r = await request(url, '/login', {
    method: 'POST',
    headers: { Cookie: pre, 'Content-Type': 'application/x-www-form-urlencoded' },
    body: `_csrf=${pre.slice('lr_csrf='.length)}&username=${encodeURIComponent(username)}&password=${encodeURIComponent(password)}`,
  });
  assert.equal(r.status, 303, r.text);
  const cookie = String(r.headers['set-cookie']).split(';')[0]!;
  const page = await request(url, '/account', { headers: { Cookie: cookie } });
  const csrf = /<meta name="csrf-token" content="([^"]+)"/.exec(page.text)?.[1];
  assert.ok(csrf, 'the account page carries a form token');
  return { cookie, csrf };
}
