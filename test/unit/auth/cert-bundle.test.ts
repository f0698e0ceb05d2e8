import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { SignJWT } from 'jose';
import { certBundleKeys, V2TokenVerifier } from '../../../src/auth/v2-jwt.js';

const run = promisify(execFile);

/**
 * token_rootcertbundle (an external token service): a token is trusted only when its x5c leaf is
 * one of the bundle's certificates or is signed by one. Issue 10's audit: a token signed by an
 * attacker's certificate that merely names the trusted root as its issuer was refused only by
 * accident; this proves the signature check itself.
 */
describe('token_rootcertbundle: the x5c chain must be signed by a trusted root', () => {
  let dir: string;
  let bundle: string;
  const keyOf = async (name: string): Promise<string> => {
    await run('openssl', ['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', join(dir, `${name}.key`)]);
    return join(dir, `${name}.key`);
  };
  const der = async (file: string): Promise<string> => Buffer.from(new X509Certificate(await readFile(file)).raw).toString('base64');
  const token = async (keyFile: string, x5c: string[]): Promise<string> =>
    new SignJWT({ access: [{ type: 'repository', name: 'a/b', actions: ['pull'] }] })
      .setProtectedHeader({ alg: 'ES256', x5c })
      .setIssuer('token-service')
      .setAudience('my-registry')
      .setSubject('eve')
      .setIssuedAt()
      .setExpirationTime('5m')
      .sign(createPrivateKey(await readFile(keyFile)));

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'lr-certs-'));
    const rootKey = await keyOf('root');
    await run('openssl', ['req', '-x509', '-new', '-key', rootKey, '-subj', '/CN=Token Root', '-days', '2', '-out', join(dir, 'root.crt')]);
    bundle = join(dir, 'root.crt');
    // a leaf the root truly signed
    const leafKey = await keyOf('leaf');
    await run('openssl', ['req', '-new', '-key', leafKey, '-subj', '/CN=token signer', '-out', join(dir, 'leaf.csr')]);
    await run('openssl', [
      'x509',
      '-req',
      '-in',
      join(dir, 'leaf.csr'),
      '-CA',
      bundle,
      '-CAkey',
      rootKey,
      '-CAcreateserial',
      '-days',
      '2',
      '-out',
      join(dir, 'leaf.crt'),
    ]);
    // the attacker's certificate: issuer name = the root's subject, no key identifiers, signed by the attacker
    const evilKey = await keyOf('evil');
    await run('openssl', ['req', '-new', '-key', evilKey, '-subj', '/CN=Token Root', '-out', join(dir, 'evil.csr')]);
    await run('openssl', ['x509', '-req', '-in', join(dir, 'evil.csr'), '-signkey', evilKey, '-days', '2', '-out', join(dir, 'evil.crt')]);
    await writeFile(join(dir, 'unused'), '');
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('accepts a token whose x5c leaf the root signed', async () => {
    const v = new V2TokenVerifier(certBundleKeys(bundle), 'token-service');
    const r = await v.verify(await token(join(dir, 'leaf.key'), [await der(join(dir, 'leaf.crt'))]), 'my-registry');
    assert.equal(r.ok, true, JSON.stringify(r));
  });

  it("refuses a token whose x5c certificate only names the root as issuer (signed by the attacker's key)", async () => {
    const evil = new X509Certificate(await readFile(join(dir, 'evil.crt')));
    const root = new X509Certificate(await readFile(bundle));
    assert.equal(evil.checkIssued(root), true, 'the forgery passes the name check: only the signature check stops it');
    const v = new V2TokenVerifier(certBundleKeys(bundle), 'token-service');
    const r = await v.verify(await token(join(dir, 'evil.key'), [await der(join(dir, 'evil.crt'))]), 'my-registry');
    assert.deepEqual(r, { ok: false, reason: 'token signed by an untrusted key' });
  });
});
