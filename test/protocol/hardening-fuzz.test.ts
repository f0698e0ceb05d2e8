import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Agent, request as httpRequest } from 'node:http';
import { request } from '../helpers/http.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { pushV2 } from '../helpers/v2-client.js';
import { makeImage, pushImage, putTag } from '../helpers/v1-client.js';
import { saveUser } from '../../src/db/users.js';

const basic = (u: string, p: string): string => `Basic ${Buffer.from(`${u}:${p}`).toString('base64')}`;

/** Every byte that has no business in a name, a tag, a digest or an id: C0, DEL and the upper half. */
const BAD_BYTES = [...Array.from({ length: 0x20 }, (_, i) => i), ...Array.from({ length: 0x81 }, (_, i) => 0x7f + i)];
const pct = (b: number): string => `%${b.toString(16).padStart(2, '0').toUpperCase()}`;

interface Probe {
  readonly method: string;
  /** Path segments; each is fuzzed in turn. A segment starting with '?' is a query string value. */
  readonly segments: readonly string[];
  readonly query?: string;
  readonly headers?: Record<string, string>;
  readonly body?: string;
}

/**
 * Finding 11 of security issue 10: a control character in a v2 name reached the WWW-Authenticate
 * header and the request ended in a 500. Here every byte 0x00–0x1f and 0x7f–0xff, percent-encoded,
 * goes into every path segment of the v1 and v2 routes (and the query values that name things):
 * no answer may be a 5xx, and the server stays up.
 */
describe('hardening: no 5xx from bytes in path segments (token auth, v2 on)', () => {
  let s: TestServer;
  const agent = new Agent({ keepAlive: true, maxSockets: 4 });
  const probes: Probe[] = [];

  before(async () => {
    s = await startTestServer({ v2: true, bcrypt_cost: 4, storage_delete: true });
    await saveUser(s.db!, { username: 'fuzzer', email: 'fuzzer@example.com', password: 'fuzzpw', active: true }, { cost: 4 });
    const owner = basic('fuzzer', 'fuzzpw');
    // a v1 repository with one image and a tag, and the tokens 1.x clients would hold for it
    const img = makeImage();
    const claim = await request(s.url, '/v1/repositories/fuzzer/repo/', {
      method: 'PUT',
      headers: { Authorization: owner, 'X-Docker-Token': 'true' },
      body: JSON.stringify([{ id: img.id, Tag: 'latest' }]),
    });
    assert.equal(claim.status, 200, claim.text);
    const write = String(claim.headers['x-docker-token']);
    const pushed = await pushImage(s.url, img, write);
    assert.deepEqual(
      pushed.slice(1).map((r) => r.status),
      [200, 200, 200],
    );
    assert.equal((await putTag(s.url, 'fuzzer/repo', 'latest', img.id, write)).status, 200);
    const read = String(
      (await request(s.url, '/v1/repositories/fuzzer/repo/images', { headers: { Authorization: owner, 'X-Docker-Token': 'true' } })).headers['x-docker-token'],
    );
    // a v2 token good for fuzzer/repo, and a v2 image there
    const t = await request(s.url, `/v2/token?service=${encodeURIComponent(new URL(s.url).host)}&scope=repository:fuzzer/repo:pull,push,delete`, {
      headers: { Authorization: owner },
    });
    assert.equal(t.status, 200, t.text);
    const bearer = `Bearer ${t.json<{ token: string }>().token}`;
    const v2 = await pushV2(s.url, 'fuzzer/repo', 'v2tag', { Authorization: bearer });
    const upload = await request(s.url, '/v2/fuzzer/repo/blobs/uploads/', { method: 'POST', headers: { Authorization: bearer } });
    assert.equal(upload.status, 202);
    const uuid = String(upload.headers['docker-upload-uuid']);

    const id = img.id;
    const v1Token = { Authorization: `Token ${read}` };
    const v1Write = { Authorization: `Token ${write}` };
    const b = { Authorization: bearer };
    const o = { Authorization: owner };
    // with credentials, so the handlers behind authentication see the bytes too (the checks before
    // authentication are the same either way); anonymous for the v2 reads of the finding
    for (const headers of [v1Token]) {
      for (const what of ['json', 'layer', 'ancestry', 'files', 'diff']) probes.push({ method: 'GET', segments: ['v1', 'images', id, what], headers });
      probes.push({ method: 'GET', segments: ['v1', 'repositories', 'fuzzer', 'repo', 'tags'], headers });
      probes.push({ method: 'GET', segments: ['v1', 'repositories', 'fuzzer', 'repo', 'tags', 'latest'], headers });
      probes.push({ method: 'GET', segments: ['v1', 'repositories', 'fuzzer', 'repo', 'tags', 'latest', 'json'], headers });
      probes.push({ method: 'GET', segments: ['v1', 'repositories', 'fuzzer', 'repo', 'json'], headers });
      probes.push({ method: 'GET', segments: ['v1', 'repositories', 'fuzzer', 'repo', 'images'], headers });
      probes.push({ method: 'GET', segments: ['v1', 'repositories', 'fuzzer', 'repo', 'properties'], headers });
      probes.push({ method: 'GET', segments: ['v1', 'repositories', 'fuzzer', 'repo', 'layer', id, 'access'], headers });
    }
    probes.push({ method: 'PUT', segments: ['v1', 'images', id, 'json'], headers: v1Write, body: img.json.toString() });
    probes.push({ method: 'PUT', segments: ['v1', 'images', id, 'checksum'], headers: { ...v1Write, 'X-Docker-Checksum-Payload': img.payload } });
    probes.push({ method: 'PUT', segments: ['v1', 'repositories', 'fuzzer', 'repo', 'tags', 'latest'], headers: v1Write, body: JSON.stringify(id) });
    probes.push({ method: 'DELETE', segments: ['v1', 'repositories', 'fuzzer', 'repo', 'tags', 'nosuchtag'], headers: { Authorization: `Token ${write}` } });
    for (const headers of [o]) {
      probes.push({ method: 'GET', segments: ['v1', 'users', ''], headers });
      probes.push({ method: 'PUT', segments: ['v1', 'users', 'fuzzer', ''], headers, body: '{}' });
      probes.push({ method: 'GET', segments: ['v1', 'repositories', 'fuzzer', 'repo', 'images'], headers: { ...headers, 'X-Docker-Token': 'true' } });
      probes.push({ method: 'PUT', segments: ['v1', 'repositories', 'fuzzer', 'repo', ''], headers, body: '[]' });
      probes.push({ method: 'PUT', segments: ['v1', 'repositories', 'fuzzer', 'repo', 'images'], headers, body: '[]' });
      probes.push({ method: 'GET', segments: ['v1', 'stars', 'fuzzer', 'repo'], headers });
      probes.push({ method: 'PUT', segments: ['v1', 'stars', 'fuzzer', 'repo'], headers });
      probes.push({ method: 'GET', segments: ['v1', 'comments', 'fuzzer', 'repo'], headers });
      probes.push({ method: 'POST', segments: ['v1', 'comments', 'fuzzer', 'repo'], headers, body: '{"body": "hi"}' });
      probes.push({ method: 'GET', segments: ['v1', 'search'], query: 'q', headers });
    }
    for (const m of ['GET', 'HEAD']) probes.push({ method: m, segments: ['v2', 'fuzzer', 'repo', 'manifests', 'v2tag'] });
    probes.push({ method: 'GET', segments: ['v2', 'fuzzer', 'repo', 'tags', 'list'] });
    probes.push({ method: 'GET', segments: ['v1', 'search'], query: 'q' });
    for (const headers of [b]) {
      probes.push({ method: 'GET', segments: ['v2', 'fuzzer', 'repo', 'tags', 'list'], headers });
      probes.push({ method: 'GET', segments: ['v2', 'single', 'tags', 'list'], headers });
      for (const m of ['GET', 'HEAD', 'DELETE']) probes.push({ method: m, segments: ['v2', 'fuzzer', 'repo', 'manifests', 'v2tag'], headers });
      probes.push({ method: 'GET', segments: ['v2', 'fuzzer', 'repo', 'manifests', v2.digest], headers });
      probes.push({
        method: 'PUT',
        segments: ['v2', 'fuzzer', 'repo', 'manifests', 'other'],
        headers: { ...headers, 'Content-Type': 'application/vnd.docker.distribution.manifest.v2+json' },
        body: v2.manifest.toString(),
      });
      for (const m of ['GET', 'HEAD']) probes.push({ method: m, segments: ['v2', 'fuzzer', 'repo', 'blobs', v2.layer], headers });
      probes.push({ method: 'POST', segments: ['v2', 'fuzzer', 'repo', 'blobs', 'uploads', ''], headers });
      for (const m of ['GET', 'PATCH', 'PUT']) probes.push({ method: m, segments: ['v2', 'fuzzer', 'repo', 'blobs', 'uploads', uuid], headers });
      probes.push({ method: 'GET', segments: ['v2', 'fuzzer', 'repo', 'referrers', v2.digest], headers });
      probes.push({ method: 'GET', segments: ['v2', '_catalog'], query: 'last', headers });
      probes.push({ method: 'GET', segments: ['v2', 'token'], query: 'scope', headers });
    }
  });
  after(async () => {
    agent.destroy();
    await s?.stop();
  });

  const send = (method: string, path: string, headers: Record<string, string>, body?: string): Promise<{ status: number; text: string }> =>
    new Promise((resolve, reject) => {
      const u = new URL(s.url);
      const req = httpRequest(
        {
          host: u.hostname,
          port: u.port,
          method,
          path,
          agent,
          headers: { ...headers, ...(body !== undefined ? { 'Content-Length': String(Buffer.byteLength(body)) } : {}) },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('latin1') }));
          res.on('error', reject);
        },
      );
      req.on('error', reject);
      req.end(body);
    });

  it('control characters in a v2 name, tag or digest: 400 with the v2 code, before any challenge is built', async () => {
    const cases: [string, string, unknown][] = [
      ['/v2/a/x%00/tags/list', 'NAME_INVALID', { name: 'a/x\u0000' }],
      ['/v2/a/x%01/tags/list', 'NAME_INVALID', { name: 'a/x\u0001' }],
      ['/v2/a/x%7f/tags/list', 'NAME_INVALID', { name: 'a/x\u007f' }],
      ['/v2/a/x%0d%0aSet-Cookie:%20y=1/manifests/latest', 'NAME_INVALID', { name: 'a/x\r\nSet-Cookie: y=1' }],
      ['/v2/a/%C3%A9/tags/list', 'NAME_INVALID', { name: 'a/é' }],
      ['/v2/a/%FF/tags/list', 'NAME_INVALID', null],
      ['/v2/fuzzer/repo/blobs/sha256:%00', 'DIGEST_INVALID', { digest: 'sha256:%00' }],
    ];
    for (const [path, code, detail] of cases) {
      const r = await request(s.url, path);
      assert.equal(r.status, 400, path);
      assert.equal(r.headers['www-authenticate'], undefined, path);
      assert.equal(r.headers['docker-distribution-api-version'], 'registry/2.0');
      const body = r.json<{ errors: { code: string; detail: unknown }[] }>();
      assert.equal(body.errors[0]!.code, code, path);
      assert.deepEqual(body.errors[0]!.detail, detail, path);
    }
    // a GET of a reference off both grammars is "nonexistent" for the OCI conformance suite: the
    // challenge first (only the name reaches it), then 404 MANIFEST_UNKNOWN; a PUT of it is 400
    const get = await request(s.url, '/v2/fuzzer/repo/manifests/v%01');
    assert.equal(get.status, 401);
    assert.match(String(get.headers['www-authenticate']), /scope="repository:fuzzer\/repo:pull"$/);
    const put = await request(s.url, '/v2/fuzzer/repo/manifests/v%01', { method: 'PUT', body: '{}' });
    assert.equal(put.status, 400);
    assert.equal(put.json<{ errors: { code: string }[] }>().errors[0]!.code, 'TAG_INVALID');
    // a well-formed name still gets the challenge
    const ok = await request(s.url, '/v2/a/x/tags/list');
    assert.equal(ok.status, 401);
    assert.match(String(ok.headers['www-authenticate']), /^Bearer realm=".*",service=".*",scope="repository:a\/x:pull"$/);
  });

  it('answers every probe with a status below 500', async () => {
    const failures: string[] = [];
    let sent = 0;
    for (const p of probes) {
      const targets = p.segments.map((_, i) => i).filter((i) => i > 0 || p.segments[0] !== '');
      const variants: string[] = [];
      for (const byte of BAD_BYTES) {
        const e = pct(byte);
        for (const i of targets) {
          if (i === 0) continue; // the /v1, /v2 prefix selects the surface
          const segs = p.segments.map((seg, j) => (j === i ? `${seg.slice(0, 1)}${e}${seg.slice(1)}` : seg));
          variants.push(`/${segs.join('/')}${p.query ? `?${p.query}=x` : ''}`);
        }
        if (p.query) variants.push(`/${p.segments.join('/')}?${p.query}=a${e}b`);
      }
      for (let k = 0; k < variants.length; k += 8) {
        const batch = variants.slice(k, k + 8);
        const results = await Promise.all(batch.map((path) => send(p.method, path, p.headers ?? {}, p.body)));
        results.forEach((r, j) => {
          if (r.status >= 500)
            failures.push(`${p.method} ${batch[j]} (${Object.keys(p.headers ?? {}).join(',') || 'anonymous'}) → ${r.status} ${r.text.slice(0, 120)}`);
        });
        sent += batch.length;
      }
    }
    assert.ok(sent > 20000, `only ${sent} probes`);
    // one line per probe shape, with how many bytes broke it (the bytes are in the first example)
    const shapes = new Map<string, { n: number; first: string }>();
    for (const f of failures) {
      const shape = f.replace(/%[0-9A-F]{2}/g, '%XX').replace(/\(request [0-9a-f]+\)/, '');
      const e = shapes.get(shape);
      if (e) e.n++;
      else shapes.set(shape, { n: 1, first: f });
    }
    assert.deepEqual(
      [...shapes.values()].map((e) => `${e.n}× ${e.first}`),
      [],
      `${failures.length} of ${sent} probes answered 5xx`,
    );
    assert.equal((await request(s.url, '/v1/_ping')).status, 200);
  });
});
