import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * A self-signed certificate for 127.0.0.1 (EC P-256, one day, subjectAltName IP:127.0.0.1) made
 * with openssl in `dir`: the files' paths (for a server's tls_certificate/tls_key) and their bytes
 * (for https.createServer). Clients trust it only when told to (NODE_TLS_REJECT_UNAUTHORIZED=0 in
 * the test process, a CA option, or --insecure).
 */
export function selfSignedCert(dir: string): { keyPath: string; certPath: string; key: Buffer; cert: Buffer } {
  const keyPath = join(dir, 'key.pem');
  const certPath = join(dir, 'cert.pem');
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-keyout',
      keyPath,
      '-out',
      certPath,
      '-days',
      '1',
      '-subj',
      '/CN=127.0.0.1',
      '-addext',
      'subjectAltName=IP:127.0.0.1',
    ],
    { stdio: 'ignore' },
  );
  return { keyPath, certPath, key: readFileSync(keyPath), cert: readFileSync(certPath) };
}
