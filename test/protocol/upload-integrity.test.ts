import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { mkdir, readdir, rename, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { join } from 'node:path';
import { decodeJwt } from 'jose';
import { filesUnder } from '../helpers/files.js';
import { request, type Response } from '../helpers/http.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { makeImage, pushImage, putTag } from '../helpers/v1-client.js';
import { saveUser } from '../../src/db/users.js';

/**
 * Security issue 10 (findings 13 and 16): a digest names exactly one content, an upload session
 * serves one request at a time, and sessions are bounded (spec v2-bridge §1.4, §1.6).
 */

const sha = (b: Buffer | string): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const code = (r: { json<T>(): T }): string => r.json<{ errors: { code: string }[] }>().errors[0]!.code;
const basic = (u: string, p: string): string => `Basic ${Buffer.from(`${u}:${p}`).toString('base64')}`;
type Memory = { sessions: number; hashes: number };
const memory = (s: TestServer): Memory | undefined => s.v2Uploads?.memory();
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface RawResponse {
  readonly status: number;
  readonly headers: Record<string, string>;
  readonly text: string;
  json<T>(): T;
}

function parseRaw(raw: Buffer): RawResponse {
  const text = raw.toString('latin1');
  const split = text.indexOf('\r\n\r\n');
  const head = split >= 0 ? text.slice(0, split) : text;
  const body = split >= 0 ? text.slice(split + 4) : '';
  const [statusLine, ...lines] = head.split('\r\n');
  const headers: Record<string, string> = {};
  for (const l of lines) {
    const i = l.indexOf(':');
    if (i > 0) headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
  }
  return {
    status: Number(/^HTTP\/1\.1 (\d{3})/.exec(statusLine ?? '')?.[1] ?? 0),
    headers,
    text: body,
    json<T>() {
      return JSON.parse(body) as T;
    },
  };
}

interface Held {
  /** Send the body that was held back and wait for the answer (the server then closes). */
  finish(body: Buffer): Promise<RawResponse>;
}

/**
 * A request on a raw socket whose headers (with Content-Length) go out at once while the body is
 * held back, as in the reproduction of finding 13: the server starts the request and waits.
 */
async function hold(base: string, method: string, path: string, length: number, headers: Record<string, string> = {}): Promise<Held> {
  const u = new URL(base);
  const sock = connect(Number(u.port), u.hostname);
  await once(sock, 'connect');
  const chunks: Buffer[] = [];
  sock.on('data', (c: Buffer) => chunks.push(c));
  const answered = new Promise<RawResponse>((resolve, reject) => {
    sock.on('error', reject);
    sock.on('close', () => resolve(parseRaw(Buffer.concat(chunks))));
  });
  const head = [
    `${method} ${path} HTTP/1.1`,
    `Host: ${u.host}`,
    'Connection: close',
    `Content-Length: ${length}`,
    ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`),
    '',
    '',
  ];
  sock.write(head.join('\r\n'));
  return {
    finish(body: Buffer) {
      sock.write(body);
      return answered;
    },
  };
}

/**
 * Wait (at most 1.5 s) until the held request is inside the session: it has claimed the
 * session's data file. Without claims (the code before the fix) this just waits the time out.
 */
async function inProgress(dataDir: string, location: string): Promise<void> {
  const dir = join(dataDir, 'uploads', location.split('/').pop()!);
  for (let i = 0; i < 150; i++) {
    const names = await readdir(dir).catch(() => [] as string[]);
    if (names.some((n) => n.startsWith('claim-'))) return;
    await sleep(10);
  }
}

async function post(base: string, name: string, headers: Record<string, string> = {}): Promise<Response> {
  return request(base, `/v2/${name}/blobs/uploads/`, { method: 'POST', headers });
}

/** Every blob under the data directory holds exactly the bytes its digest names. */
async function assertEveryBlobMatches(dataDir: string): Promise<void> {
  const { readFile } = await import('node:fs/promises');
  for (const f of await filesUnder(join(dataDir, 'blobs'))) {
    const hex = f.split('/').at(-2)!;
    assert.equal(sha(await readFile(f)), `sha256:${hex}`, f);
  }
}

function assertBusy(r: RawResponse | Response, what: string): void {
  assert.equal(r.status, 400, `${what}: ${r.text}`);
  assert.equal(code(r), 'BLOB_UPLOAD_INVALID', what);
  assert.equal(r.json<{ errors: { message: string }[] }>().errors[0]!.message, 'another request of this upload session is in progress', what);
}

describe('finding 13: a held PATCH body cannot rewrite a published blob (index + token auth)', () => {
  let s: TestServer;
  let service: string;
  const tokenFor = async (user: string, scope: string): Promise<Record<string, string>> => {
    const q = new URLSearchParams({ service, scope });
    const r = await request(s.url, `/v2/token?${q}`, { headers: { Authorization: basic(user, `${user}pw`) } });
    assert.equal(r.status, 200, r.text);
    const token = r.json<{ token: string }>().token;
    const access = decodeJwt(token).access as { actions: string[] }[];
    assert.deepEqual([...access[0]!.actions].sort(), ['pull', 'push'], `${user} may push ${scope}`);
    return { Authorization: `Bearer ${token}` };
  };

  before(async () => {
    s = await startTestServer({ v2: true, bcrypt_cost: 4 });
    service = new URL(s.url).host;
    for (const u of ['mallory', 'owner']) await saveUser(s.db!, { username: u, email: `${u}@example.com`, password: `${u}pw`, active: true }, { cost: 4 });
  });
  after(() => s?.stop());

  it('the exact reproduction: the second PATCH and the PUT are refused while the first holds its body; the owner later gets G under sha256(G)', async () => {
    const mallory = await tokenFor('mallory', 'repository:mallory/poison:pull,push');
    const owner = await tokenFor('owner', 'repository:owner/victim:pull,push');
    const G = randomBytes(64 * 1024); // the victim's future layer
    const X = Buffer.alloc(G.length, 0x58); // the attacker's bytes, same length
    const start = await post(s.url, 'mallory/poison', mallory);
    assert.equal(start.status, 202);
    const L = String(start.headers.location);

    const held = await hold(s.url, 'PATCH', L, X.length, { ...mallory, 'Content-Type': 'application/octet-stream' });
    await inProgress(s.dataDir, L);
    const second = await request(s.url, L, { method: 'PATCH', body: G, headers: mallory });
    const put = await request(s.url, `${L}?digest=${sha(G)}`, { method: 'PUT', body: '', headers: mallory });
    const first = await held.finish(X);
    // later, the owner pushes G
    const push = await request(s.url, `/v2/owner/victim/blobs/uploads/?digest=${sha(G)}`, { method: 'POST', body: G, headers: owner });
    assert.equal(push.status, 201, push.text);
    const got = await request(s.url, `/v2/owner/victim/blobs/${sha(G)}`, { headers: owner });
    assert.equal(got.status, 200);
    assert.equal(sha(got.body), sha(G), 'the digest serves bytes that hash to it');
    assert.deepEqual(got.body, G);
    await assertEveryBlobMatches(s.dataDir);

    // how: the attacker's second PATCH and PUT were refused while the first held the session
    assertBusy(second, 'PATCH while another PATCH of the session is in progress');
    assertBusy(put, 'PUT while a PATCH of the session is in progress');
    assert.equal(first.status, 202, first.text);
    assert.equal(first.headers.range, `0-${X.length - 1}`);
    // the session holds X: it can only be published as sha256(X)
    const lie = await request(s.url, `${L}?digest=${sha(G)}`, { method: 'PUT', body: '', headers: mallory });
    assert.equal(lie.status, 400);
    assert.equal(code(lie), 'DIGEST_INVALID');
    assert.equal((await request(s.url, `/v2/mallory/poison/blobs/${sha(G)}`, { method: 'HEAD', headers: mallory })).status, 404);
    await assertEveryBlobMatches(s.dataDir);
  });
});

describe('upload sessions serve one request at a time (standalone)', () => {
  let s: TestServer;
  before(async () => {
    s = await startTestServer({ standalone: true, v2: true });
  });
  after(() => s?.stop());

  it('two concurrent PATCHes on one session: the second gets 400 BLOB_UPLOAD_INVALID at once and changes nothing', async () => {
    const a = randomBytes(30_000);
    const b = randomBytes(20_000);
    const loc = String((await post(s.url, 'ns/two-patches')).headers.location);
    const held = await hold(s.url, 'PATCH', loc, a.length);
    await inProgress(s.dataDir, loc);
    const t0 = Date.now();
    const second = await request(s.url, loc, { method: 'PATCH', body: b, headers: { 'Content-Range': `0-${b.length - 1}` } });
    assertBusy(second, 'the second PATCH');
    assert.ok(Date.now() - t0 < 1000, 'refused without waiting for the first');
    // GET (read-only) still answers, with the state before the PATCH in progress
    const status = await request(s.url, loc);
    assert.equal(status.status, 204);
    assert.equal(status.headers.range, '0-0');
    const first = await held.finish(a);
    assert.equal(first.status, 202, first.text);
    assert.equal(first.headers.range, `0-${a.length - 1}`);
    const put = await request(s.url, `${loc}?digest=${sha(a)}`, { method: 'PUT', body: '' });
    assert.equal(put.status, 201, put.text);
    assert.deepEqual((await request(s.url, `/v2/ns/two-patches/blobs/${sha(a)}`)).body, a);
  });

  it('PUT with a body while a PATCH holds the session is refused; the PATCH then completes and the blob is exactly its bytes', async () => {
    const a = randomBytes(10_000);
    const loc = String((await post(s.url, 'ns/put-during')).headers.location);
    const held = await hold(s.url, 'PATCH', loc, a.length);
    await inProgress(s.dataDir, loc);
    const evil = randomBytes(10_000);
    const put = await request(s.url, `${loc}?digest=${sha(evil)}`, { method: 'PUT', body: evil });
    assertBusy(put, 'PUT during PATCH');
    assert.equal((await request(s.url, `/v2/ns/put-during/blobs/${sha(evil)}`, { method: 'HEAD' })).status, 404);
    assert.equal((await held.finish(a)).status, 202);
    assert.equal((await request(s.url, `${loc}?digest=${sha(a)}`, { method: 'PUT' })).status, 201);
    assert.deepEqual((await request(s.url, `/v2/ns/put-during/blobs/${sha(a)}`)).body, a);
    await assertEveryBlobMatches(s.dataDir);
  });

  it('DELETE during a PATCH is refused; afterwards DELETE removes the session and late PATCH/PUT answer 404 and leave nothing', async () => {
    const a = randomBytes(5000);
    const loc = String((await post(s.url, 'ns/delete-during')).headers.location);
    const uuid = loc.split('/').pop()!;
    const held = await hold(s.url, 'PATCH', loc, a.length);
    await inProgress(s.dataDir, loc);
    assertBusy(await request(s.url, loc, { method: 'DELETE' }), 'DELETE during PATCH');
    const first = await held.finish(a);
    assert.equal(first.status, 202, first.text);
    const del = await request(s.url, loc, { method: 'DELETE' });
    assert.equal(del.status, 204);
    for (const r of [
      await request(s.url, loc, { method: 'PATCH', body: a }),
      await request(s.url, `${loc}?digest=${sha(a)}`, { method: 'PUT', body: a }),
      await request(s.url, loc, { method: 'DELETE' }),
      await request(s.url, loc),
    ]) {
      assert.equal(r.status, 404);
      assert.equal(code(r), 'BLOB_UPLOAD_UNKNOWN');
    }
    assert.deepEqual(await filesUnder(join(s.dataDir, 'uploads', uuid)), []);
    assert.equal((await request(s.url, `/v2/ns/delete-during/blobs/${sha(a)}`, { method: 'HEAD' })).status, 404);
  });

  it('a session whose state a killed process left empty or torn is over: 404 BLOB_UPLOAD_UNKNOWN, never a 500', async () => {
    for (const [i, broken] of ['', '{"name":"ns/torn","off', '[]', '{"name":"ns/torn","offset":-1}'].entries()) {
      const started = String((await post(s.url, 'ns/torn')).headers.location);
      const known = started.split('/').pop()!;
      // the session's first objects are written in place: a kill right after the state's open leaves
      // it empty. Such a session is one this process never knew (it was started by the killed one):
      // the folder moves to a new id, its state broken
      const uuid = randomUUID();
      const loc = started.replace(known, uuid);
      await rename(join(s.dataDir, 'uploads', known), join(s.dataDir, 'uploads', uuid));
      await writeFile(join(s.dataDir, 'uploads', uuid, 'state'), broken);
      const a = randomBytes(100 + i);
      for (const r of [
        await request(s.url, loc),
        await request(s.url, loc, { method: 'PATCH', body: a }),
        await request(s.url, `${loc}?digest=${sha(a)}`, { method: 'PUT', body: a }),
        await request(s.url, loc, { method: 'DELETE' }),
      ]) {
        assert.equal(r.status, 404, `${JSON.stringify(broken)}: ${r.status} ${r.text}`);
        assert.equal(code(r), 'BLOB_UPLOAD_UNKNOWN');
      }
      assert.equal((await request(s.url, `/v2/ns/torn/blobs/${sha(a)}`, { method: 'HEAD' })).status, 404);
    }
  });

  it('a finished session cannot come back: PATCH and PUT after the PUT answer 404 BLOB_UPLOAD_UNKNOWN and leave nothing', async () => {
    const a = randomBytes(8000);
    const loc = String((await post(s.url, 'ns/after-put')).headers.location);
    const uuid = loc.split('/').pop()!;
    assert.equal((await request(s.url, loc, { method: 'PATCH', body: a })).status, 202);
    assert.equal((await request(s.url, `${loc}?digest=${sha(a)}`, { method: 'PUT' })).status, 201);
    const late = await request(s.url, loc, { method: 'PATCH', body: randomBytes(100) });
    assert.equal(late.status, 404);
    assert.equal(code(late), 'BLOB_UPLOAD_UNKNOWN');
    const again = await request(s.url, `${loc}?digest=${sha(a)}`, { method: 'PUT', body: '' });
    assert.equal(again.status, 404);
    assert.equal(code(again), 'BLOB_UPLOAD_UNKNOWN');
    assert.equal((await request(s.url, loc)).status, 404);
    assert.deepEqual(await filesUnder(join(s.dataDir, 'uploads', uuid)), []);
    assert.deepEqual((await request(s.url, `/v2/ns/after-put/blobs/${sha(a)}`)).body, a);
  });

  it('a PATCH held open across a PUT cannot resurrect the session or touch the blob', async () => {
    const a = randomBytes(4000);
    const loc = String((await post(s.url, 'ns/resurrect')).headers.location);
    const uuid = loc.split('/').pop()!;
    assert.equal((await request(s.url, loc, { method: 'PATCH', body: a })).status, 202);
    const late = randomBytes(4000);
    const held = await hold(s.url, 'PATCH', loc, late.length);
    await inProgress(s.dataDir, loc);
    const put = await request(s.url, `${loc}?digest=${sha(a)}`, { method: 'PUT' });
    assertBusy(put, 'PUT while a PATCH holds the session');
    const patched = await held.finish(late);
    assert.equal(patched.status, 202, patched.text);
    const both = Buffer.concat([a, late]);
    assert.equal((await request(s.url, `${loc}?digest=${sha(both)}`, { method: 'PUT' })).status, 201);
    assert.equal((await request(s.url, loc)).status, 404);
    assert.deepEqual(await filesUnder(join(s.dataDir, 'uploads', uuid)), []);
    assert.deepEqual((await request(s.url, `/v2/ns/resurrect/blobs/${sha(both)}`)).body, both);
  });
});

describe('two registry nodes on one storage directory: the session exclusion holds across processes', () => {
  let a: TestServer;
  let b: TestServer;
  before(async () => {
    a = await startTestServer({ standalone: true, v2: true });
    b = await startTestServer({ standalone: true, v2: true }, { dataDir: a.dataDir });
  });
  after(async () => {
    await b?.stop();
    await a?.stop();
  });

  it('a PATCH on node A holds the session: PATCH, PUT and DELETE on node B are refused and change nothing', async () => {
    const body = randomBytes(12_000);
    const loc = String((await post(a.url, 'ns/nodes')).headers.location);
    const held = await hold(a.url, 'PATCH', loc, body.length);
    await inProgress(a.dataDir, loc);
    assertBusy(await request(b.url, loc, { method: 'PATCH', body: randomBytes(100) }), 'PATCH on B');
    assertBusy(await request(b.url, `${loc}?digest=${sha(body)}`, { method: 'PUT', body }), 'PUT on B');
    assertBusy(await request(b.url, loc, { method: 'DELETE' }), 'DELETE on B');
    assert.equal((await held.finish(body)).status, 202);
    // B continues the session where A left it
    const status = await request(b.url, loc);
    assert.equal(status.headers.range, `0-${body.length - 1}`);
    assert.equal((await request(b.url, `${loc}?digest=${sha(body)}`, { method: 'PUT' })).status, 201);
    assert.deepEqual((await request(a.url, `/v2/ns/nodes/blobs/${sha(body)}`)).body, body);
    const late = await request(a.url, loc, { method: 'PATCH', body: randomBytes(10) });
    assert.equal(late.status, 404);
    assert.equal(code(late), 'BLOB_UPLOAD_UNKNOWN');
    assert.deepEqual(await filesUnder(join(a.dataDir, 'uploads', loc.split('/').pop()!)), []);
  });

  it('a node continuing a session another node wrote to since takes the stored state, not what it remembers', async () => {
    const one = randomBytes(5000);
    const two = randomBytes(7000);
    const whole = Buffer.concat([one, two]);
    const loc = String((await post(a.url, 'ns/nodes-back')).headers.location);
    // A started the session (offset 0 in its memory); B writes the first chunk
    const first = await request(b.url, loc, { method: 'PATCH', body: one, headers: { 'Content-Range': `0-${one.length - 1}` } });
    assert.equal(first.status, 202);
    const second = await request(a.url, loc, {
      method: 'PATCH',
      body: two,
      headers: { 'Content-Range': `${one.length}-${whole.length - 1}` },
    });
    assert.equal(second.status, 202, `${second.status} ${second.text}`);
    assert.equal(second.headers.range, `0-${whole.length - 1}`);
    assert.equal((await request(a.url, `${loc}?digest=${sha(whole)}`, { method: 'PUT' })).status, 201);
    assert.deepEqual((await request(b.url, `/v2/ns/nodes-back/blobs/${sha(whole)}`)).body, whole);
  });
});

describe('bytes are published under a digest only after they were hashed: existing objects are not trusted', () => {
  let s: TestServer;
  before(async () => {
    s = await startTestServer({ standalone: true, v2: true, metadata_cache_ttl: 0 });
  });
  after(() => s?.stop());

  /** Put wrong bytes of the right size at a digest's place in storage (a poisoned store). */
  async function poison(digest: string, size: number): Promise<void> {
    const hex = digest.slice(7);
    const dir = join(s.dataDir, 'blobs', 'sha256', hex.slice(0, 2), hex);
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'data'), Buffer.alloc(size, 0x21));
  }

  it('a pushed blob replaces a same-size object at its digest', async () => {
    const G = randomBytes(3000);
    await poison(sha(G), G.length);
    const r = await request(s.url, `/v2/ns/poisoned/blobs/uploads/?digest=${sha(G)}`, { method: 'POST', body: G });
    assert.equal(r.status, 201);
    assert.deepEqual((await request(s.url, `/v2/ns/poisoned/blobs/${sha(G)}`)).body, G);
    // the chunked path (PATCH + PUT) too
    const H = randomBytes(3000);
    await poison(sha(H), H.length);
    const loc = String((await post(s.url, 'ns/poisoned')).headers.location);
    assert.equal((await request(s.url, loc, { method: 'PATCH', body: H })).status, 202);
    assert.equal((await request(s.url, `${loc}?digest=${sha(H)}`, { method: 'PUT' })).status, 201);
    assert.deepEqual((await request(s.url, `/v2/ns/poisoned/blobs/${sha(H)}`)).body, H);
  });

  it('a v1 layer push replaces a same-size object at its digest', async () => {
    const img = makeImage();
    await poison(sha(img.layer), img.layer.length);
    const rs = await pushImage(s.url, img);
    for (const r of rs.slice(1)) assert.equal(r.status, 200, r.text);
    const { readFile } = await import('node:fs/promises');
    const hex = sha(img.layer).slice(7);
    assert.deepEqual(await readFile(join(s.dataDir, 'blobs', 'sha256', hex.slice(0, 2), hex, 'data')), img.layer);
  });

  it('a manifest PUT writes its bytes even when an object is at its digest', async () => {
    const config = Buffer.from('{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}');
    assert.equal((await request(s.url, `/v2/ns/manifest/blobs/uploads/?digest=${sha(config)}`, { method: 'POST', body: config })).status, 201);
    const S2 = 'application/vnd.docker.distribution.manifest.v2+json';
    const manifest = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: S2,
        config: { mediaType: 'application/vnd.docker.container.image.v1+json', size: config.length, digest: sha(config) },
        layers: [],
      }),
    );
    await poison(sha(manifest), manifest.length);
    const put = await request(s.url, `/v2/ns/manifest/manifests/${sha(manifest)}`, { method: 'PUT', body: manifest, headers: { 'Content-Type': S2 } });
    assert.equal(put.status, 201, put.text);
    const got = await request(s.url, `/v2/ns/manifest/manifests/${sha(manifest)}`, { headers: { Accept: S2 } });
    assert.equal(got.status, 200);
    assert.deepEqual(got.body, manifest);
  });

  it('the bridge writes the config blob of a v1 image even when an object is at its digest', async () => {
    const img = makeImage();
    for (const r of (await pushImage(s.url, img)).slice(1)) assert.equal(r.status, 200, r.text);
    assert.equal((await putTag(s.url, 'legacy/poisoned', 'latest', img.id)).status, 200);
    const S2 = 'application/vnd.docker.distribution.manifest.v2+json';
    const first = await request(s.url, '/v2/legacy/poisoned/manifests/latest', { headers: { Accept: S2 } });
    assert.equal(first.status, 200, first.text);
    const configDigest = first.json<{ config: { digest: string; size: number } }>().config;
    await poison(configDigest.digest, configDigest.size);
    const again = await request(s.url, '/v2/legacy/poisoned/manifests/latest', { headers: { Accept: S2 } });
    assert.equal(again.status, 200);
    const config = await request(s.url, `/v2/legacy/poisoned/blobs/${configDigest.digest}`);
    assert.equal(config.status, 200);
    assert.equal(sha(config.body), configDigest.digest);
  });
});

describe('upload sessions are bounded (finding 16)', () => {
  it('default limits: 64 open sessions per repository, 256 per anonymous client address; 429 TOOMANYREQUESTS past them; closed sessions free their slot', async () => {
    const s = await startTestServer({ standalone: true, v2: true });
    try {
      const locs: string[] = [];
      for (let i = 0; i < 64; i++) {
        const r = await post(s.url, 'ns/full');
        assert.equal(r.status, 202, `session ${i + 1}`);
        locs.push(String(r.headers.location));
      }
      const over = await post(s.url, 'ns/full');
      assert.equal(over.status, 429);
      assert.equal(code(over), 'TOOMANYREQUESTS');
      assert.match(String(over.headers['retry-after']), /^\d+$/);
      // a single POST ?digest= opens a session too
      const blob = randomBytes(100);
      assert.equal((await request(s.url, `/v2/ns/full/blobs/uploads/?digest=${sha(blob)}`, { method: 'POST', body: blob })).status, 429);
      assert.equal((await post(s.url, 'ns/other')).status, 202, 'another repository is not affected');
      // a cancelled, a finished and a failed session each give their slot back
      assert.equal((await request(s.url, locs.pop()!, { method: 'DELETE' })).status, 204);
      const again = await post(s.url, 'ns/full');
      assert.equal(again.status, 202);
      assert.equal((await request(s.url, `${String(again.headers.location)}?digest=${sha(blob)}`, { method: 'PUT', body: blob })).status, 201);
      const third = await post(s.url, 'ns/full');
      assert.equal(third.status, 202);
      const bad = await request(s.url, `${String(third.headers.location)}?digest=${sha('other')}`, { method: 'PUT', body: blob });
      assert.equal(bad.status, 400);
      assert.equal((await post(s.url, 'ns/full')).status, 202);
      assert.equal((await post(s.url, 'ns/full')).status, 429);
      // per client address: 64 + 1 open so far; fill up to 256 across repositories
      for (let i = 65; i < 256; i++) assert.equal((await post(s.url, `ns/spread${i % 8}`)).status, 202, `session ${i + 1}`);
      const tooMany = await post(s.url, 'ns/fresh');
      assert.equal(tooMany.status, 429);
      assert.equal(code(tooMany), 'TOOMANYREQUESTS');
    } finally {
      await s.stop();
    }
  });

  it('configured limits count per account; sessions of others are not affected; memory is released', async () => {
    const s = await startTestServer({ v2: true, bcrypt_cost: 4, max_uploads_per_account: 3, max_uploads_per_repository: 2 });
    try {
      const service = new URL(s.url).host;
      for (const u of ['mallory', 'owner']) await saveUser(s.db!, { username: u, email: `${u}@example.com`, password: `${u}pw`, active: true }, { cost: 4 });
      const tok = async (u: string, repo: string): Promise<Record<string, string>> => {
        const r = await request(s.url, `/v2/token?${new URLSearchParams({ service, scope: `repository:${repo}:pull,push` })}`, {
          headers: { Authorization: basic(u, `${u}pw`) },
        });
        return { Authorization: `Bearer ${r.json<{ token: string }>().token}` };
      };
      const m1 = await tok('mallory', 'mallory/one');
      const m2 = await tok('mallory', 'mallory/two');
      const o1 = await tok('owner', 'owner/one');
      assert.equal((await post(s.url, 'mallory/one', m1)).status, 202);
      assert.equal((await post(s.url, 'mallory/one', m1)).status, 202);
      const repoFull = await post(s.url, 'mallory/one', m1);
      assert.equal(repoFull.status, 429, 'per repository');
      assert.equal(code(repoFull), 'TOOMANYREQUESTS');
      const last = await post(s.url, 'mallory/two', m2);
      assert.equal(last.status, 202);
      const accountFull = await post(s.url, 'mallory/two', m2);
      assert.equal(accountFull.status, 429, 'per account');
      assert.equal((await post(s.url, 'owner/one', o1)).status, 202, 'another account');
      assert.deepEqual(memory(s), { sessions: 4, hashes: 4 });
      const blob = randomBytes(1000);
      assert.equal((await request(s.url, `${String(last.headers.location)}?digest=${sha(blob)}`, { method: 'PUT', body: blob, headers: m2 })).status, 201);
      assert.deepEqual(memory(s), { sessions: 3, hashes: 3 });
      assert.equal((await post(s.url, 'mallory/two', m2)).status, 202);
    } finally {
      await s.stop();
    }
  });

  it('the purge job removes abandoned sessions and drops their slots and hash state', async () => {
    const s = await startTestServer({ standalone: true, v2: true, upload_purge_age: 1, upload_purge_interval: 1, max_uploads_per_repository: 2 });
    try {
      const locs = [String((await post(s.url, 'ns/purged')).headers.location), String((await post(s.url, 'ns/purged')).headers.location)];
      assert.equal((await request(s.url, locs[0]!, { method: 'PATCH', body: randomBytes(1000) })).status, 202);
      assert.equal((await post(s.url, 'ns/purged')).status, 429);
      assert.deepEqual(memory(s), { sessions: 2, hashes: 2 });
      for (let i = 0; i < 60 && (memory(s)?.sessions ?? 0) > 0; i++) await sleep(100);
      assert.deepEqual(memory(s), { sessions: 0, hashes: 0 });
      for (const l of locs) assert.equal((await request(s.url, l)).status, 404);
      assert.equal((await post(s.url, 'ns/purged')).status, 202);
    } finally {
      await s.stop();
    }
  });

  it('many finished sessions leave no memory behind', async () => {
    const s = await startTestServer({ standalone: true, v2: true });
    try {
      for (let i = 0; i < 300; i++) {
        const b = Buffer.from(`blob ${i}`);
        const loc = String((await post(s.url, 'ns/many')).headers.location);
        if (i % 3 === 0) assert.equal((await request(s.url, loc, { method: 'DELETE' })).status, 204);
        else assert.equal((await request(s.url, `${loc}?digest=${sha(b)}`, { method: 'PUT', body: b })).status, 201);
      }
      assert.deepEqual(memory(s), { sessions: 0, hashes: 0 });
    } finally {
      await s.stop();
    }
  });
});
