import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pyImage, writePythonTree } from '../helpers/python-tree.js';
import { cli, hostileMigrateSuite, type MigrateReport } from '../helpers/migrate.js';
import { honest, sha, target } from '../helpers/fake-v2-target.js';
import { TargetRegistry } from '../../src/migrate/registry-client.js';

/**
 * `legacy-registry migrate --to <url>` against more targets on 127.0.0.1 that lie or trap (the
 * harness is hostileMigrateSuite, test/helpers/migrate.ts): credentials never reach the report, the
 * state file or the terminal; nothing is reported as moved that the target does not hold as ours.
 */
describe('migrate: more hostile targets on 127.0.0.1', { timeout: 120_000 }, () => {
  const h = hostileMigrateSuite('lr-migrate-hostile2-', ({ base, top }) => ({ latest: top, stable: base }));

  it('an honest target gets both tags (the harness itself works)', async () => {
    const t = await h.serve(target(() => false));
    const r = await h.migrate(t.url);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.deepEqual(r.report!.moved.map((m) => m.target).sort(), ['alice/web:latest', 'alice/web:stable']);
  });

  it('a password in the --to URL is refused, and never shown, stored or reported', async () => {
    const t = await h.serve(target(() => false));
    const state = join(h.work, 'userinfo.state');
    const r = await h.migrate(`http://bob:s3cr3t-pw@127.0.0.1:${t.port}`, ['--state', state]);
    const state_ = await readFile(state, 'utf8').catch(() => '');
    for (const [where, text] of [
      ['stdout', r.stdout],
      ['stderr', r.stderr],
      ['report', r.reportText],
      ['state file', state_],
    ] as const)
      assert.doesNotMatch(text, /s3cr3t-pw/, `the password is not in the ${where}:\n${text}`);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stderr, /--to: .*--username/);
    assert.deepEqual(t.seen, [], 'nothing was sent to the target');
  });

  it('--tag-map onto a tag the repository also has: neither is reported as moved there', async () => {
    const t = await h.serve(target(() => false));
    const r = await h.migrate(t.url, ['--tag-map', 'stable=latest']);
    assert.equal(r.code, 3, r.stdout + r.stderr);
    assert.deepEqual(r.report!.moved, [], 'alice/web:latest on the target can hold only one of the two');
    assert.deepEqual(r.report!.failed.map((f) => f.what).sort(), ['alice/web:latest', 'alice/web:stable']);
    for (const f of r.report!.failed) assert.match(f.reason, /alice\/web:latest and alice\/web:stable would both be pushed as alice\/web:latest/);
    assert.ok(!t.seen.some((s) => s.method === 'PUT' && s.url.includes('/manifests/')), 'no manifest pushed');
    // the same with two maps onto one new tag, and in a dry run
    const d = await h.migrate(t.url, ['--tag-map', 'stable=prod', '--tag-map', 'latest=prod', '--dry-run']);
    assert.equal(d.code, 3, d.stdout + d.stderr);
    assert.deepEqual(d.report!.moved, []);
    assert.equal(d.report!.failed.length, 2);
  });

  it('a manifest read back with the right digest header but other bytes is not reported as moved', async () => {
    let pushed = '';
    const t = await h.serve(
      target((req, res, body) => {
        if (req.method === 'PUT' && /\/manifests\/latest$/.test(req.url!)) pushed = sha(body);
        if (req.method !== 'GET' || !/\/manifests\/latest$/.test(req.url!)) return false;
        // the digest header we expect (as the HEAD says too), and somebody else's manifest as the bytes
        const other = Buffer.from('{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","layers":[]}');
        res.writeHead(200, { 'Docker-Content-Digest': pushed, 'Content-Type': 'application/vnd.docker.distribution.manifest.v2+json' }).end(other);
        return true;
      }),
    );
    const r = await h.migrate(t.url);
    assert.equal(r.code, 3, r.stdout + r.stderr);
    assert.deepEqual(
      r.report!.moved.map((m) => m.target),
      ['alice/web:stable'],
    );
    assert.equal(r.report!.failed[0]!.what, 'alice/web:latest');
    assert.match(r.report!.failed[0]!.reason, /after the push, alice\/web:latest reads back as sha256:[a-f0-9]{64}, not sha256:[a-f0-9]{64}/);
  });
});

describe('migrate target client: an upload the target answers before reading it', { timeout: 60_000 }, () => {
  it('the body is not sent on (its blob file closed) and the connection is not held', async () => {
    // raw HTTP: answers a PUT as soon as its head is in and then reads no more of the connection,
    // anything else with a keep-alive 200 (Node's own server would drain the rest of the body)
    const sockets = new Set<net.Socket>();
    const server = net.createServer((s) => {
      sockets.add(s);
      let head = '';
      s.on('data', (d: Buffer) => {
        head += d.toString('latin1');
        for (let end = head.indexOf('\r\n\r\n'); end >= 0; end = head.indexOf('\r\n\r\n')) {
          const request = head.slice(0, end);
          head = head.slice(end + 4);
          if (request.startsWith('PUT ')) {
            s.write('HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n');
            s.pause();
            return;
          }
          s.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}');
        }
      });
      s.on('error', () => undefined);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const t = new TargetRegistry({ url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, maxSockets: 1, timeoutMs: 20_000 });
    try {
      let body: Readable | undefined;
      const size = 256 << 20;
      const r = await t.request('PUT', 'v2/alice/web/blobs/uploads/x', {
        length: size,
        body: () =>
          (body = Readable.from(
            (function* () {
              for (let i = 0; i < size >> 16; i++) yield Buffer.alloc(1 << 16);
            })(),
          )),
      });
      assert.equal(r.status, 400);
      assert.equal(body!.destroyed, true, 'the body (a blob file in a migration) is closed once the target has answered');
      // one connection (--concurrency 1): the next request must not wait for the stalled upload's
      const started = Date.now();
      assert.equal((await t.request('GET', 'v2/')).status, 200);
      assert.ok(Date.now() - started < 5_000, `the next request waited ${Date.now() - started} ms`);
    } finally {
      t.close();
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    }
  });
});

describe('migrate: a target that answers an upload early and stops reading', { timeout: 120_000 }, () => {
  let work = '';
  let storage = '';
  let stop = (): void => undefined;
  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'lr-migrate-hostile2-big-'));
    storage = join(work, 'storage');
    // a layer larger than what the loopback's socket buffers take without the target reading
    const big = pyImage({ gzip: false, size: 24 << 20 });
    await writePythonTree(join(work, 'py'), [big], [{ name: 'alice/big', tags: { a: big.id, b: big.id } }]);
    assert.equal((await cli(storage, ['user', 'add', 'alice', 'alice@example.com', '--password', 'alicepw1'])).code, 0);
    const r = await cli(storage, ['import', '--owner', 'alice', '--no-progress', join(work, 'py')]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
  });
  after(async () => {
    stop();
    await rm(work, { recursive: true, force: true });
  });

  it('the run goes on (each tag fails with the answer) instead of waiting for the stalled connection', async () => {
    // answers the layer's upload PUT from the raw socket as soon as its head is in, and reads nothing
    // more of that connection (Node's own answer would drain the body); the rest (the config too) is honest
    const registry = honest();
    const raw = http.createServer((req, res) => {
      if (req.method === 'PUT' && req.url!.includes('/blobs/uploads/') && Number(req.headers['content-length']) > 1 << 20) {
        req.socket.pause();
        req.socket.write('HTTP/1.1 507 Insufficient Storage\r\nContent-Length: 0\r\n\r\n');
        return;
      }
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        if (registry(req, res, Buffer.concat(chunks)) !== true) res.writeHead(404).end();
      });
    });
    await new Promise<void>((r) => raw.listen(0, '127.0.0.1', r));
    stop = () => {
      raw.closeAllConnections();
      raw.close();
    };
    const url = `http://127.0.0.1:${(raw.address() as AddressInfo).port}`;
    const reportFile = join(work, 'report.json');
    const started = Date.now();
    const r = await cli(storage, ['migrate', '--to', url, '--no-progress', '--concurrency', '1', '--timeout', '20', '--report', reportFile]);
    assert.ok(Date.now() - started < 15_000, `the migration ended in ${Date.now() - started} ms`);
    assert.equal(r.code, 3, r.stdout + r.stderr);
    const report = JSON.parse(await readFile(reportFile, 'utf8')) as MigrateReport;
    assert.deepEqual(
      report.failed.map((f) => f.what),
      ['alice/big:a', 'alice/big:b'],
    );
    for (const f of report.failed) assert.match(f.reason, /uploading blob sha256:[a-f0-9]{64}: 507/);
  });
});
