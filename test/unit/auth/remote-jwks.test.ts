import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { generateKeyPairSync } from 'node:crypto';
import { remoteJwksKeys } from '../../../src/auth/v2-jwt.js';
import { createLogger } from '../../../src/log/logger.js';

/**
 * A registry split from its index fetches the index's token keys (JWKS) over HTTP: an index that
 * answers without end is read up to a bound, not for the whole timeout.
 */
describe('remoteJwksKeys: the index key set, read up to a bound', () => {
  let server: Server;
  let url = '';
  let endlessSent = 0;
  let endlessClosed = false;
  const jwk = { ...generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ format: 'jwk' }), kid: 'ABCD:EFGH' };
  before(async () => {
    server = createServer((req, res) => {
      if (req.url === '/good') return void res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify({ keys: [jwk] }));
      if (req.url === '/deep') return void res.writeHead(200).end('{"keys":' + '['.repeat(100_000) + ']'.repeat(100_000) + '}');
      // a key set that never ends
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.write('{"keys":[');
      const entry = Buffer.from(`${JSON.stringify(jwk)},`.repeat(512));
      const more = (): void => {
        while (!res.destroyed && endlessSent < 4096 * 1024 * 1024) {
          endlessSent += entry.length;
          if (!res.write(entry)) return void res.once('drain', more);
        }
        res.end(']}');
      };
      res.on('close', () => (endlessClosed = true));
      more();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => new Promise<void>((r) => server.close(() => r())));
  const lines: string[] = [];
  const log = createLogger('error', {}, (l) => void lines.push(l));

  it('a key set is read and its keys used', async () => {
    const keys = remoteJwksKeys(`${url}/good`, log);
    assert.ok(await keys({ kid: 'ABCD:EFGH', alg: 'ES256' }));
  });

  it('an endless answer is cut at 1 MiB: no key, an error logged, the connection closed', async () => {
    const keys = remoteJwksKeys(`${url}/endless`, log);
    const started = Date.now();
    assert.equal(await keys({ kid: 'ABCD:EFGH', alg: 'ES256' }), undefined);
    assert.ok(Date.now() - started < 5000, `took ${Date.now() - started} ms`);
    for (let i = 0; i < 50 && !endlessClosed; i++) await new Promise((r) => setTimeout(r, 100));
    assert.ok(endlessClosed, 'the connection closed');
    assert.ok(endlessSent < 64 * 1024 * 1024, `${endlessSent} bytes sent`);
    assert.match(lines.join(''), /larger than 1048576 bytes/);
  });

  it('a key set nested deeper than a key set is refused before parsing', async () => {
    const keys = remoteJwksKeys(`${url}/deep`, log);
    assert.equal(await keys({ kid: 'ABCD:EFGH', alg: 'ES256' }), undefined);
    assert.match(lines.join(''), /nested too deep/);
  });
});
