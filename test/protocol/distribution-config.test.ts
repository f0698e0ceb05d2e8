import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import bcrypt from 'bcryptjs';
import { request } from '../helpers/http.js';
import { spawnServer, stopChild } from '../helpers/child.js';
import { filesUnder } from '../helpers/files.js';
import { freePort } from '../helpers/ports.js';
import { ROOT } from '../helpers/paths.js';

const basic = (u: string, p: string): string => `Basic ${Buffer.from(`${u}:${p}`).toString('base64')}`;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function until(what: string, fn: () => Promise<boolean>, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await fn()) return;
    await sleep(50);
  }
  assert.fail(`timed out waiting for ${what}`);
}

/** A monolithic v2 blob push (POST then PUT ?digest=); returns the PUT's status. */
async function pushBlob(url: string, repo: string, data: Buffer, auth?: string): Promise<number> {
  const headers: Record<string, string> = auth ? { Authorization: auth } : {};
  const start = await request(url, `/v2/${repo}/blobs/uploads/`, { method: 'POST', headers });
  if (start.status !== 202) return start.status;
  const loc = String(start.headers.location);
  const digest = `sha256:${createHash('sha256').update(data).digest('hex')}`;
  const put = await request(url, `${loc}${loc.includes('?') ? '&' : '?'}digest=${digest}`, {
    method: 'PUT',
    headers: { ...headers, 'Content-Type': 'application/octet-stream' },
    body: data,
  });
  return put.status;
}

describe('serving from a distribution config.yml (spec v2-bridge §5)', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'lr-distsrv-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('serve <config.yml>: htpasswd, headers, JSON logs with fields, no access log, REGISTRY_* overrides', async () => {
    const htpasswd = join(dir, 'htpasswd');
    await writeFile(htpasswd, `alice:${bcrypt.hashSync('wonderland', 4)}\n`);
    const cfg = join(dir, 'config.yml');
    await writeFile(
      cfg,
      [
        'version: 0.1',
        'log:',
        '  formatter: json',
        '  fields:',
        '    service: registry',
        '  accesslog:',
        '    disabled: true',
        'storage:',
        '  cache:',
        '    blobdescriptor: inmemory',
        '  filesystem:',
        '    rootdirectory: /nonexistent/overridden-by-the-environment',
        'http:',
        '  addr: :5000',
        '  headers:',
        '    X-Content-Type-Options: [nosniff]',
        'auth:',
        '  htpasswd:',
        '    realm: basic-realm',
        `    path: ${htpasswd}`,
        '',
      ].join('\n'),
    );
    const root = join(dir, 'root1');
    const s = await spawnServer({ REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY: root, 'REGISTRY_HTTP_HEADERS_X-SITE': '[one]' }, [cfg]);
    try {
      const anon = await request(s.url, '/v2/');
      assert.equal(anon.status, 401);
      assert.equal(anon.headers['www-authenticate'], 'Basic realm="basic-realm"');
      assert.equal(anon.headers['x-content-type-options'], 'nosniff');
      assert.equal(anon.headers['x-site'], 'one', 'REGISTRY_HTTP_HEADERS_X-SITE added a header');
      assert.equal((await request(s.url, '/v2/', { headers: { Authorization: basic('alice', 'nope') } })).status, 401);
      const ok = await request(s.url, '/v2/', { headers: { Authorization: basic('alice', 'wonderland') } });
      assert.equal(ok.status, 200);
      assert.equal(ok.headers['docker-distribution-api-version'], 'registry/2.0');
      assert.equal(await pushBlob(s.url, 'team/app', Buffer.from('hello distribution config'), basic('alice', 'wonderland')), 201);
      const stored = await filesUnder(join(root, 'blobs'));
      assert.ok(stored.length > 0, 'the blob went to the directory the environment named');
      // the v1 side of this standalone registry is gated by the same file
      assert.equal((await request(s.url, '/v1/users/')).status, 401);
      assert.equal((await request(s.url, '/v1/users/', { headers: { Authorization: basic('alice', 'wonderland') } })).status, 200);

      const lines = s
        .output()
        .split('\n')
        .filter((l) => l.trim() !== '');
      const logs = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
      assert.ok(
        logs.every((o) => o.service === 'registry' && typeof o.time === 'string' && typeof o.level === 'string'),
        'every line is JSON with the static field',
      );
      assert.ok(
        logs.some((o) => o.level === 'warn' && /storage\.cache: ignored/.test(String(o.msg))),
        'ignored keys are reported at start',
      );
      assert.ok(logs.some((o) => /REGISTRY_HTTP_HEADERS_X-SITE/.test(String(o.msg))) === false, 'a map key is addressed, not ignored');
      assert.ok(!logs.some((o) => o.msg === 'request'), 'access log disabled');
    } finally {
      await stopChild(s);
    }
  });

  it('REGISTRY_CONFIGURATION_PATH names the file; a bad file stops the start with the key, line and exit 2', async () => {
    const cfg = join(dir, 'env.yml');
    await writeFile(cfg, `version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: ${join(dir, 'root2')}\n`);
    const s = await spawnServer({ REGISTRY_CONFIGURATION_PATH: cfg });
    try {
      assert.equal((await request(s.url, '/v2/')).status, 200, 'no auth section: open');
      assert.match(s.output(), /flavor=distribution/);
    } finally {
      await stopChild(s);
    }
    const bad = join(dir, 'bad.yml');
    await writeFile(bad, 'version: 0.1\nstorage:\n  gcs:\n    bucket: b\n');
    const cli = join(ROOT, 'dist', 'src', 'cli', 'main.js');
    const proc = spawn(process.execPath, [cli, 'serve', bad], { stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    proc.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const code = await new Promise<number | null>((r) => proc.once('exit', r));
    assert.equal(code, 2, err);
    assert.match(err, /storage\.gcs \(.*bad\.yml:3\): storage driver "gcs" is not supported/);
    // config-check takes the same argument and prints the mapped values
    const out = execFileSync(process.execPath, [cli, 'config-check', cfg], { encoding: 'utf8' });
    assert.equal((JSON.parse(out) as { storage_path: string }).storage_path, join(dir, 'root2'));
  });

  it('health: a failing check turns every request into 503 until it passes; /debug/health on http.debug.addr lists it', async () => {
    const root = join(dir, 'root3');
    await mkdir(root, { recursive: true });
    const flag = join(dir, 'maintenance');
    const debugPort = await freePort();
    const cfg = join(dir, 'health.yml');
    await writeFile(
      cfg,
      [
        'version: 0.1',
        'storage:',
        '  filesystem:',
        `    rootdirectory: ${root}`,
        'http:',
        '  debug:',
        `    addr: 127.0.0.1:${debugPort}`,
        'health:',
        '  storagedriver:',
        '    enabled: true',
        '    interval: 100ms',
        '    threshold: 2',
        '  file:',
        `    - file: ${flag}`,
        '      interval: 100ms',
        '',
      ].join('\n'),
    );
    const s = await spawnServer({}, [cfg]);
    const debug = `http://127.0.0.1:${debugPort}`;
    try {
      await sleep(300);
      assert.equal((await request(s.url, '/v2/')).status, 200);
      const healthy = await request(debug, '/debug/health');
      assert.equal(healthy.status, 200);
      assert.deepEqual(healthy.json(), {});

      await writeFile(flag, 'down for maintenance');
      await until('the file check to fail', async () => (await request(s.url, '/v2/')).status === 503);
      const v2 = await request(s.url, '/v2/team/app/tags/list');
      assert.equal(v2.status, 503);
      assert.deepEqual(v2.json(), {
        errors: [{ code: 'UNAVAILABLE', message: 'service unavailable', detail: 'health check failed: please see /debug/health' }],
      });
      const v1 = await request(s.url, '/v1/_ping');
      assert.equal(v1.status, 503);
      assert.deepEqual(v1.json(), { error: 'service unavailable: health check failed' });
      const listed = await request(debug, '/debug/health');
      assert.equal(listed.status, 503);
      assert.deepEqual(listed.json(), { [flag]: 'file exists' });
      await rm(flag);
      await until('the file check to pass', async () => (await request(s.url, '/v2/')).status === 200);

      // the storage driver check: the root replaced by a regular file
      await rename(root, `${root}.away`);
      await writeFile(root, 'not a directory');
      await until('the storage check to fail', async () => (await request(s.url, '/v2/')).status === 503);
      const sd = (await request(debug, '/debug/health')).json<Record<string, string>>();
      assert.deepEqual(Object.keys(sd), ['storagedriver_filesystem']);
      assert.match(sd.storagedriver_filesystem!, /not a directory/);
      await rm(root);
      await rename(`${root}.away`, root);
      await until('the storage check to pass', async () => (await request(s.url, '/v2/')).status === 200);
      assert.equal((await request(debug, '/nothing')).status, 404);
    } finally {
      await stopChild(s);
    }
  });

  it('storage.maintenance.readonly: writes answer 405 and change nothing; reads go on', async () => {
    const root = join(dir, 'root4');
    // a first run writes a blob
    const cfg = join(dir, 'ro.yml');
    const text = (ro: boolean): string =>
      `version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: ${root}\n  maintenance:\n    readonly:\n      enabled: ${ro}\n`;
    await writeFile(cfg, text(false));
    const data = Buffer.from('written before read-only');
    let s = await spawnServer({}, [cfg]);
    try {
      assert.equal(await pushBlob(s.url, 'ro/app', data), 201);
    } finally {
      await stopChild(s);
    }
    await writeFile(cfg, text(true));
    s = await spawnServer({}, [cfg]);
    try {
      const before = await filesUnder(root);
      const post = await request(s.url, '/v2/ro/app/blobs/uploads/', { method: 'POST' });
      assert.equal(post.status, 405);
      assert.equal(post.json<{ errors: { code: string }[] }>().errors[0]!.code, 'UNSUPPORTED');
      const digest = `sha256:${createHash('sha256').update(data).digest('hex')}`;
      assert.equal((await request(s.url, `/v2/ro/app/blobs/${digest}`, { method: 'DELETE' })).status, 405);
      assert.equal((await request(s.url, '/v2/ro/app/manifests/latest', { method: 'PUT', body: '{}' })).status, 405);
      const v1 = await request(s.url, `/v1/images/${'a'.repeat(64)}/json`, { method: 'PUT', body: '{}' });
      assert.equal(v1.status, 405);
      assert.deepEqual(v1.json(), { error: 'The registry is in read-only mode' });
      assert.equal((await request(s.url, '/v1/repositories/ro/app/tags/latest', { method: 'PUT', body: '"x"' })).status, 405);
      const get = await request(s.url, `/v2/ro/app/blobs/${digest}`);
      assert.equal(get.status, 200);
      assert.deepEqual(get.body, data);
      assert.deepEqual(await filesUnder(root), before, 'nothing changed on disk');
    } finally {
      await stopChild(s);
    }
  });

  it('storage.maintenance.uploadpurging: an abandoned upload is purged after age, every interval', async () => {
    const cfg = join(dir, 'purge.yml');
    await writeFile(
      cfg,
      `version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: ${join(dir, 'root5')}\n  maintenance:\n    uploadpurging:\n      enabled: true\n      age: 1s\n      interval: 1s\n`,
    );
    const s = await spawnServer({}, [cfg]);
    try {
      const start = await request(s.url, '/v2/p/app/blobs/uploads/', { method: 'POST' });
      assert.equal(start.status, 202);
      const loc = String(start.headers.location);
      assert.equal((await request(s.url, loc)).status, 204, 'the upload is there');
      await until('the purge', async () => (await request(s.url, loc)).status === 404, 6000);
      const gone = await request(s.url, loc);
      assert.equal(gone.json<{ errors: { code: string }[] }>().errors[0]!.code, 'BLOB_UPLOAD_UNKNOWN');
    } finally {
      await stopChild(s);
    }
  });

  it('http.tls: HTTPS with the given certificate, client certificates against clientcas, minimumtls', async () => {
    const t = join(dir, 'tls');
    await mkdir(t);
    const ssl = (...args: string[]): void => {
      execFileSync('openssl', args, { cwd: t, stdio: 'ignore' });
    };
    // a CA, a server certificate for 127.0.0.1 and a client certificate, all signed by it
    ssl(
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-keyout',
      'ca.key',
      '-out',
      'ca.pem',
      '-days',
      '2',
      '-subj',
      '/CN=test ca',
    );
    ssl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=127.0.0.1');
    await writeFile(join(t, 'ext.cnf'), 'subjectAltName=IP:127.0.0.1\n');
    ssl('x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.pem', '-days', '2', '-extfile', 'ext.cnf');
    ssl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'client.key', '-out', 'client.csr', '-subj', '/CN=client');
    ssl('x509', '-req', '-in', 'client.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'client.pem', '-days', '2');
    const cfg = join(dir, 'tls.yml');
    await writeFile(
      cfg,
      [
        'version: 0.1',
        'storage:',
        '  inmemory: {}',
        'http:',
        '  tls:',
        `    certificate: ${join(t, 'server.pem')}`,
        `    key: ${join(t, 'server.key')}`,
        `    clientcas: [${join(t, 'ca.pem')}]`,
        '    minimumtls: tls1.3',
        '',
      ].join('\n'),
    );
    const s = await spawnServer({}, [cfg]);
    const ca = await readFile(join(t, 'ca.pem'));
    const get = (opts: Record<string, unknown>): Promise<number> =>
      new Promise((resolve, reject) => {
        const u = new URL(s.url);
        const req = httpsRequest({ host: u.hostname, port: u.port, path: '/v2/', ca, agent: false, ...opts }, (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        });
        req.on('error', reject);
        req.end();
      });
    try {
      assert.match(s.url, /^https:\/\//);
      assert.equal(await get({ cert: await readFile(join(t, 'client.pem')), key: await readFile(join(t, 'client.key')) }), 200);
      await assert.rejects(get({}), 'no client certificate: refused');
      await assert.rejects(
        get({ cert: await readFile(join(t, 'client.pem')), key: await readFile(join(t, 'client.key')), maxVersion: 'TLSv1.2' }),
        'below minimumtls: refused',
      );
    } finally {
      await stopChild(s);
    }
  });
});
