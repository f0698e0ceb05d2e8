import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { request as httpRequest } from 'node:http';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../../src/config/load.js';
import { createLogger } from '../../src/log/logger.js';
import { startServer, type RunningServer } from '../../src/main.js';
import { saveUser } from '../../src/db/users.js';
import { saveRepository } from '../../src/db/repositories.js';

const basic = (u: string, p: string): string => `Basic ${Buffer.from(`${u}:${p}`).toString('base64')}`;

interface Answer {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly text: string;
}

/** One request from a chosen loopback address (the server sees it as the client's address). */
function from(address: string, url: string, path: string, headers: Record<string, string> = {}, method = 'GET', body?: string): Promise<Answer> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      {
        host: u.hostname,
        port: u.port,
        path,
        method,
        localAddress: address,
        agent: false,
        headers: { ...headers, ...(body !== undefined ? { 'Content-Length': String(Buffer.byteLength(body)) } : {}) },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text: Buffer.concat(chunks).toString('utf8') }));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/**
 * Security issue 10, finding 10: five wrong passwords locked an account for everyone, and an
 * attacker could renew the lock forever. Failures now count per (account, client address), with a
 * much higher ceiling per account across addresses; the owner, from another address, still logs
 * in. (On loopback, a second client address is had by binding the client socket to 127.0.0.2.)
 */
describe('hardening: login throttling per account and client address', () => {
  let dir: string;
  let s: RunningServer;
  const lines: string[] = [];
  const ATTACKER = '127.0.0.1';
  const OWNER = '127.0.0.2';

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'lr-login-'));
    const config = loadConfig({ env: {}, flavor: 'test', overrides: { host: '127.0.0.1', port: 0, storage_path: dir, v2: true, bcrypt_cost: 4 } });
    s = await startServer(config, { logger: createLogger('info', {}, (l) => lines.push(l)) });
    for (const name of ['victim', 'victim2', 'victim3']) {
      await saveUser(s.db!, { username: name, email: `${name}@example.com`, password: `${name}-pw`, active: true }, { cost: 4 });
      await saveRepository(s.db!, { namespace: name, name: 'app', private: true });
    }
  });
  after(async () => {
    await s?.close();
    await rm(dir, { recursive: true, force: true });
  });

  const failFrom = async (address: string, user: string, n: number): Promise<number[]> => {
    const statuses: number[] = [];
    for (let i = 0; i < n; i++) statuses.push((await from(address, s.url, '/v1/users/', { Authorization: basic(user, `guess-${address}-${i}`) })).status);
    return statuses;
  };

  it('v1 login: the attacking address is locked, the owner from another address logs in', async () => {
    assert.deepEqual(await failFrom(ATTACKER, 'victim', 6), [401, 401, 401, 401, 401, 429]);
    const locked = await from(ATTACKER, s.url, '/v1/users/', { Authorization: basic('victim', 'victim-pw') });
    assert.equal(locked.status, 429, 'the attacking address waits even with the right password');
    assert.equal(locked.text, '"Too many failed logins: retry later"');
    assert.ok(Number(locked.headers['retry-after']) > 0);
    const owner = await from(OWNER, s.url, '/v1/users/', { Authorization: basic('victim', 'victim-pw') });
    assert.equal(owner.status, 200, owner.text);
    assert.equal(owner.text, '"OK"');
    // Basic credentials on another index route (I8 of a private repository) work for the owner too
    const images = await from(OWNER, s.url, '/v1/repositories/victim/app/images', { Authorization: basic('victim', 'victim-pw') });
    assert.equal(images.status, 200, images.text);
    assert.equal(images.text, '[]');
    const attackerImages = await from(ATTACKER, s.url, '/v1/repositories/victim/app/images', { Authorization: basic('victim', 'victim-pw') });
    assert.equal(attackerImages.status, 429);
  });

  it('v2 token service: the attacking address gets 429 TOOMANYREQUESTS, the owner a token', async () => {
    const service = encodeURIComponent(new URL(s.url).host);
    for (let i = 0; i < 5; i++)
      assert.equal((await from(ATTACKER, s.url, `/v2/token?service=${service}`, { Authorization: basic('victim2', `nope${i}`) })).status, 401);
    const locked = await from(ATTACKER, s.url, `/v2/token?service=${service}`, { Authorization: basic('victim2', 'victim2-pw') });
    assert.equal(locked.status, 429);
    assert.equal((JSON.parse(locked.text) as { errors: { code: string }[] }).errors[0]!.code, 'TOOMANYREQUESTS');
    const owner = await from(OWNER, s.url, `/v2/token?service=${service}&scope=repository:victim2/app:pull`, { Authorization: basic('victim2', 'victim2-pw') });
    assert.equal(owner.status, 200, owner.text);
    const form = new URLSearchParams({
      grant_type: 'password',
      client_id: 't',
      username: 'victim2',
      password: 'victim2-pw',
      service: new URL(s.url).host,
    }).toString();
    const oauth = await from(OWNER, s.url, '/v2/token', { 'Content-Type': 'application/x-www-form-urlencoded' }, 'POST', form);
    assert.equal(oauth.status, 200, oauth.text);
    assert.equal((await from(ATTACKER, s.url, '/v2/token', { 'Content-Type': 'application/x-www-form-urlencoded' }, 'POST', form)).status, 429);
  });

  it('each lockout is logged once as a warning with account and address, never the password', () => {
    const warnings = lines.filter((l) => / WARN {2}login locked/.test(l));
    assert.equal(warnings.length, 2, lines.filter((l) => /WARN/.test(l)).join(''));
    assert.match(warnings[0]!, /account=victim address=127\.0\.0\.1 scope=address seconds=60/);
    assert.match(warnings[1]!, /account=victim2 address=127\.0\.0\.1 scope=address seconds=60/);
    for (const l of lines) assert.doesNotMatch(l, /guess-|nope\d|victim-pw|victim2-pw/);
  });

  it('a hundred failures across addresses lock the account everywhere (the ceiling), for a while', async () => {
    // twenty addresses, five failures each: each address locks itself; the hundredth failure locks the account
    for (let a = 10; a < 30; a++) assert.deepEqual(await failFrom(`127.0.0.${a}`, 'victim3', 5), [401, 401, 401, 401, 401]);
    const fresh = await from('127.0.0.99', s.url, '/v1/users/', { Authorization: basic('victim3', 'victim3-pw') });
    assert.equal(fresh.status, 429);
    assert.ok(Number(fresh.headers['retry-after']) > 0 && Number(fresh.headers['retry-after']) <= 60);
    assert.ok(lines.some((l) => /WARN {2}login locked .*account=victim3 address=127\.0\.0\.29 scope=account/.test(l)));
  });
});
