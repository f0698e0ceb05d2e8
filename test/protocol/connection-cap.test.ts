import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from '../helpers/http.js';
import { loadConfig } from '../../src/config/load.js';
import { createLogger } from '../../src/log/logger.js';
import { startServer, type RunningServer } from '../../src/main.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const PING = 'GET /v1/_ping HTTP/1.1\r\nHost: x\r\n\r\n';

/**
 * max_connections (docs/security.md, "Limits on what a client controls"): every open connection costs
 * memory whether it sends anything or not. Past the cap a new connection is closed as it is accepted,
 * unanswered; the operator gets a WARN at most once a minute; connections are answered again as soon
 * as others close, and the process stays up.
 */
describe('max_connections', () => {
  let dir: string;
  let s: RunningServer;
  const lines: string[] = [];
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'lr-conncap-'));
    const config = loadConfig({ env: {}, flavor: 'test', overrides: { host: '127.0.0.1', port: 0, storage_path: dir, standalone: true, max_connections: 8 } });
    s = await startServer(config, { logger: createLogger('warn', {}, (l) => lines.push(l)) });
  });
  after(async () => {
    await s?.close();
    await rm(dir, { recursive: true, force: true });
  });

  /**
   * A connection the server has accepted and answered once, left in the middle of its next request's
   * headers (held open until headers_timeout, not closed as an idle keep-alive connection).
   */
  async function held(): Promise<Socket> {
    const u = new URL(s.url);
    const sock = connect(Number(u.port), u.hostname);
    sock.on('error', () => undefined);
    let got = '';
    await new Promise<void>((resolve, reject) => {
      sock.on('data', (d: Buffer) => {
        got += d.toString('latin1');
        if (got.includes('\r\n\r\n') && got.endsWith('{}')) resolve();
      });
      sock.on('close', () => reject(new Error(`closed before the answer: ${JSON.stringify(got)}`)));
      sock.write(PING);
    });
    sock.write('GET /v1/_ping HTTP/1.1\r\nHost: x\r\n');
    return sock;
  }

  /** One connection past the cap: what it received before it was closed. */
  async function refused(): Promise<string> {
    const u = new URL(s.url);
    const sock = connect(Number(u.port), u.hostname);
    let got = '';
    sock.on('data', (d: Buffer) => (got += d.toString('latin1')));
    sock.on('error', () => undefined);
    sock.on('connect', () => sock.write(PING));
    await new Promise<void>((resolve) => sock.on('close', () => resolve()));
    return got;
  }

  it('the 9th connection is closed unanswered; after some close, requests are answered again; one WARN', async () => {
    const open: Socket[] = [];
    for (let i = 0; i < 8; i++) open.push(await held());
    for (let i = 0; i < 3; i++) assert.equal(await refused(), '', 'nothing is answered past the cap');
    assert.equal(await request(s.url, '/v1/_ping').catch((e: Error) => e.message), 'socket hang up');
    const warns = lines.filter((l) => /WARN\s+connections refused: max_connections reached/.test(l));
    assert.equal(warns.length, 1, lines.join('\n'));
    assert.match(warns[0]!, /max_connections=8/);
    // some clients leave: the next requests are answered (the server notices the closes at once)
    for (const sock of open.splice(0, 3)) sock.destroy();
    let status = 0;
    for (let i = 0; i < 50 && status !== 200; i++) {
      status = await request(s.url, '/v1/_ping')
        .then((r) => r.status)
        .catch(() => 0);
      if (status !== 200) await sleep(20);
    }
    assert.equal(status, 200);
    // the held connections still work: each finishes its request and gets its answer
    const answers = await Promise.all(
      open.map(
        (sock) =>
          new Promise<string>((resolve) => {
            let got = '';
            sock.on('data', (d: Buffer) => {
              got += d.toString('latin1');
              if (got.endsWith('{}')) resolve(got.split('\r\n')[0]!);
            });
            sock.write('\r\n');
          }),
      ),
    );
    assert.deepEqual(answers, Array(5).fill('HTTP/1.1 200 OK'));
    for (const sock of open) sock.destroy();
    // refusals within the minute add no line
    assert.equal(lines.filter((l) => /connections refused/.test(l)).length, 1);
  });

  it('0 is no cap; the default is 2048', async () => {
    assert.equal(loadConfig({ env: {}, flavor: 'test', overrides: {} }).max_connections, 2048);
    const d = await mkdtemp(join(tmpdir(), 'lr-conncap0-'));
    const config = loadConfig({ env: {}, flavor: 'test', overrides: { host: '127.0.0.1', port: 0, storage_path: d, standalone: true, max_connections: 0 } });
    const open = await startServer(config, { logger: createLogger('silent') });
    try {
      const u = new URL(open.url);
      const socks = Array.from({ length: 12 }, () => connect(Number(u.port), u.hostname));
      const answers = await Promise.all(
        socks.map(
          (sock) =>
            new Promise<string>((resolve, reject) => {
              let got = '';
              sock.on('error', reject);
              sock.on('data', (b: Buffer) => {
                got += b.toString('latin1');
                if (got.endsWith('{}')) resolve(got.split('\r\n')[0]!);
              });
              sock.write(PING);
            }),
        ),
      );
      assert.deepEqual(answers, Array(12).fill('HTTP/1.1 200 OK'));
      for (const sock of socks) sock.destroy();
    } finally {
      await open.close();
      await rm(d, { recursive: true, force: true });
    }
  });
});
