import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TargetRegistry } from '../../../src/migrate/registry-client.js';

/**
 * The migrate target over TLS: a certificate from a private CA is refused by default, accepted
 * with --ca-cert (added to the system roots) or --insecure; Basic credentials are sent after the
 * challenge only.
 */
describe('migrate target TLS and Basic auth', () => {
  let dir: string;
  let server: Server;
  let url: string;
  const seen: (string | undefined)[] = [];

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'lr-target-tls-'));
    const o = (args: string[]): void => void execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' });
    o(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=migrate test CA']);
    o(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'srv.key', '-out', 'srv.csr', '-subj', '/CN=127.0.0.1']);
    const ext = join(dir, 'ext.cnf');
    execFileSync('sh', ['-c', `printf 'subjectAltName=IP:127.0.0.1\\n' > ${ext}`]);
    o(['x509', '-req', '-in', 'srv.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'srv.pem', '-days', '2', '-extfile', ext]);
    server = createServer({ key: readFileSync(join(dir, 'srv.key')), cert: readFileSync(join(dir, 'srv.pem')) }, (req, res) => {
      seen.push(req.headers.authorization);
      if (req.headers.authorization !== `Basic ${Buffer.from('bob:pw').toString('base64')}`) {
        res.writeHead(401, { 'WWW-Authenticate': 'Basic realm="t"', 'Content-Type': 'application/json' });
        res.end('{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}');
        return;
      }
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end('{}');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => {
    server.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('refuses a certificate of an unknown CA', async () => {
    const t = new TargetRegistry({ url, username: 'bob', password: 'pw' });
    try {
      await assert.rejects(t.ping(), /certificate/i);
    } finally {
      t.close();
    }
  });

  it('accepts it with the CA file, and answers the Basic challenge with the account', async () => {
    seen.length = 0;
    const t = new TargetRegistry({ url, username: 'bob', password: 'pw', caFile: join(dir, 'ca.pem') });
    try {
      await t.ping();
    } finally {
      t.close();
    }
    assert.equal(seen[0], undefined, 'no credentials before the challenge');
    assert.equal(seen.length, 2);
  });

  it("accepts it with insecure; wrong credentials give the target's 401", async () => {
    const t = new TargetRegistry({ url, username: 'bob', password: 'wrong', insecure: true });
    try {
      await assert.rejects(t.ping(), /401 UNAUTHORIZED/);
    } finally {
      t.close();
    }
  });
});
