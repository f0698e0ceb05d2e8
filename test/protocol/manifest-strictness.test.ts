import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, createPublicKey, generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { request, type Response } from '../helpers/http.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { tarOf } from '../helpers/v1-client.js';
import { saveUser } from '../../src/db/users.js';
import { findUserByName } from '../../src/db/users.js';
import { saveRepository } from '../../src/db/repositories.js';
import { schema1Payload, signSchema1 } from '../../src/content/schema1.js';

/*
 * Security issue 10 (content confusion in the v2 manifest handling): every finding reproduced over
 * HTTP against a running server. Spec v2-bridge §1.4 (manifest PUT), §2 (formats), §3 (bridge).
 */

const sha = (b: Buffer | string): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const b64url = (b: Buffer | string): string => Buffer.from(b).toString('base64url');
const S2 = 'application/vnd.docker.distribution.manifest.v2+json';
const OCI = 'application/vnd.oci.image.manifest.v1+json';
const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
const S1 = 'application/vnd.docker.distribution.manifest.v1+json';
const S1_SIGNED = 'application/vnd.docker.distribution.manifest.v1+prettyjws';
const CONFIG_S2 = 'application/vnd.docker.container.image.v1+json';
const CONFIG_OCI = 'application/vnd.oci.image.config.v1+json';
const LAYER_S2 = 'application/vnd.docker.image.rootfs.diff.tar.gzip';
const LAYER_OCI = 'application/vnd.oci.image.layer.v1.tar+gzip';
const FOREIGN_S2 = 'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip';
const NONDIST_OCI = 'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip';

interface V2ErrorBody {
  errors: { code: string; message: string; detail: unknown }[];
}
const errorOf = (r: Response): V2ErrorBody['errors'][number] => r.json<V2ErrorBody>().errors[0]!;

function assertError(r: Response, status: number, code: string, message?: RegExp): void {
  assert.equal(r.status, status, r.text.slice(0, 400));
  assert.equal(r.headers['content-type'], 'application/json; charset=utf-8');
  const e = errorOf(r);
  assert.equal(e.code, code, r.text.slice(0, 400));
  if (message) assert.match(e.message, message);
}

interface Image {
  readonly config: Buffer;
  readonly layer: Buffer;
}

/** One gzipped layer and a config with matching history and rootfs (a v1 view exists). */
function image(content: string, configFields: Record<string, unknown> = {}): Image {
  const tar = tarOf({ 'f.txt': `${content}\n` });
  const layer = gzipSync(tar);
  const config = Buffer.from(
    JSON.stringify({
      architecture: 'amd64',
      os: 'linux',
      config: { Cmd: ['/bin/sh'] },
      rootfs: { type: 'layers', diff_ids: [sha(tar)] },
      history: [{ created: '2024-01-01T00:00:00Z', created_by: 'ADD f.txt' }],
      ...configFields,
    }),
  );
  return { config, layer };
}

const desc = (mediaType: string, blob: Buffer, extra: Record<string, unknown> = {}): Record<string, unknown> => ({
  mediaType,
  size: blob.length,
  digest: sha(blob),
  ...extra,
});

function schema2(img: Image, opts: { config?: Record<string, unknown>; layer?: Record<string, unknown> } = {}): string {
  return JSON.stringify({ schemaVersion: 2, mediaType: S2, config: desc(CONFIG_S2, img.config, opts.config), layers: [desc(LAYER_S2, img.layer, opts.layer)] });
}

async function pushBlob(url: string, name: string, blob: Buffer, headers: Record<string, string> = {}): Promise<void> {
  const r = await request(url, `/v2/${name}/blobs/uploads/?digest=${sha(blob)}`, { method: 'POST', body: blob, headers });
  assert.equal(r.status, 201, r.text);
}

function putManifest(
  url: string,
  name: string,
  ref: string,
  body: string | Buffer,
  contentType: string,
  headers: Record<string, string> = {},
): Promise<Response> {
  return request(url, `/v2/${name}/manifests/${ref}`, { method: 'PUT', body, headers: { ...headers, 'Content-Type': contentType } });
}

describe('manifest PUT reads the document once: strict JSON (issue 10, item 1)', () => {
  let s: TestServer;
  const img = image('strict');
  const name = 'strict/app';
  const cfg = JSON.stringify(desc(CONFIG_S2, img.config));
  const lay = JSON.stringify(desc(LAYER_S2, img.layer));
  before(async () => {
    s = await startTestServer({ standalone: true, v2: true });
    await pushBlob(s.url, name, img.config);
    await pushBlob(s.url, name, img.layer);
  });
  after(() => s.stop());

  it('refuses two layers lists (a duplicate key) with MANIFEST_INVALID and stores nothing', async () => {
    const body = `{"schemaVersion":2,"mediaType":"${S2}","config":${cfg},"layers":[],"layers":[${lay}]}`;
    const r = await putManifest(s.url, name, 'dup', body, S2);
    assertError(r, 400, 'MANIFEST_INVALID', /duplicate key "layers"/);
    assertError(await request(s.url, `/v2/${name}/manifests/dup`, { headers: { Accept: S2 } }), 404, 'MANIFEST_UNKNOWN');
    assertError(await request(s.url, `/v2/${name}/manifests/${sha(body)}`, { headers: { Accept: S2 } }), 404, 'MANIFEST_UNKNOWN');
  });

  it('treats an escaped key as the key it spells: "\\u006cayers" beside "layers" is a duplicate', async () => {
    const body = `{"schemaVersion":2,"mediaType":"${S2}","config":${cfg},"layers":[${lay}],"\\u006cayers":[]}`;
    assertError(await putManifest(s.url, name, 'esc', body, S2), 400, 'MANIFEST_INVALID', /duplicate key "layers"/);
  });

  it('refuses keys that differ from a defined field only in case, as Go would read them (Layers, MediaType, Digest, ſize)', async () => {
    const cases: [string, string, string][] = [
      // Go's encoding/json fills `layers` from `Layers` as well: the last one wins there
      [S2, `{"schemaVersion":2,"mediaType":"${S2}","config":${cfg},"layers":[${lay}],"Layers":[]}`, 'Layers'],
      [OCI, `{"schemaVersion":2,"config":${cfg},"Layers":[${lay}]}`, 'Layers'],
      // OCI allows mediaType to be absent; Go would read this one as mediaType
      [OCI, `{"schemaVersion":2,"MediaType":"${S2}","config":${cfg},"layers":[${lay}]}`, 'MediaType'],
      [
        S2,
        `{"schemaVersion":2,"mediaType":"${S2}","config":{"mediaType":"${CONFIG_S2}","size":${img.config.length},"digest":"${sha(img.config)}","Digest":"${sha('other')}"},"layers":[${lay}]}`,
        'Digest',
      ],
      // U+017F (long s) folds to "s" in Go's case-insensitive match
      [
        S2,
        `{"schemaVersion":2,"mediaType":"${S2}","config":${cfg},"layers":[{"mediaType":"${LAYER_S2}","size":${img.layer.length},"digest":"${sha(img.layer)}","\u017fize":1}]}`,
        '\u017fize',
      ],
      [OCI_INDEX, `{"schemaVersion":2,"manifests":[],"\u017fubject":{"mediaType":"${S2}","size":1,"digest":"${sha('x')}"}}`, '\u017fubject'],
    ];
    for (const [ct, body, key] of cases) {
      const r = await putManifest(s.url, name, 'case', body, ct);
      assertError(r, 400, 'MANIFEST_INVALID', new RegExp(`"${key}"`));
    }
    assertError(await request(s.url, `/v2/${name}/manifests/case`, { headers: { Accept: `${S2}, ${OCI}, ${OCI_INDEX}` } }), 404, 'MANIFEST_UNKNOWN');
  });

  it('accepts annotation keys of any case (a free-form map) and serves the bytes as sent', async () => {
    const body = `{"schemaVersion":2,"mediaType":"${OCI}","config":${JSON.stringify(desc(CONFIG_OCI, img.config))},"layers":[${JSON.stringify(desc(LAYER_OCI, img.layer))}],"annotations":{"Layers":"a","MediaType":"b","layers":"c","{\\"x\\": [1]}":"}]"}}`;
    const r = await putManifest(s.url, name, 'annotated', body, OCI);
    assert.equal(r.status, 201, r.text);
    assert.equal(r.headers['docker-content-digest'], sha(body));
    const get = await request(s.url, `/v2/${name}/manifests/annotated`, { headers: { Accept: OCI } });
    assert.equal(get.status, 200);
    assert.equal(get.text, body);
  });

  it('accepts 64 levels of nesting and refuses 65', async () => {
    const nested = (levels: number): string =>
      `{"schemaVersion":2,"mediaType":"${OCI}","config":${JSON.stringify(desc(CONFIG_OCI, img.config))},"layers":[],"x-extension":${'['.repeat(levels)}${']'.repeat(levels)}}`;
    // the manifest object is level 1
    const ok = await putManifest(s.url, name, 'deep', nested(63), OCI);
    assert.equal(ok.status, 201, ok.text);
    assertError(await putManifest(s.url, name, 'deeper', nested(64), OCI), 400, 'MANIFEST_INVALID', /nest/);
  });

  it('refuses a schema1 document with two fsLayers lists', async () => {
    const hist = JSON.stringify([{ v1Compatibility: JSON.stringify({ id: 'a'.repeat(64) }) }]);
    const body = `{"schemaVersion":1,"name":"${name}","tag":"s1","architecture":"amd64","fsLayers":[{"blobSum":"${sha('nowhere')}"}],"history":${hist},"fsLayers":[{"blobSum":"${sha(img.layer)}"}]}`;
    assertError(await putManifest(s.url, name, 's1', body, S1), 400, 'MANIFEST_INVALID', /duplicate key "fsLayers"/);
  });
});

describe('manifest PUT: descriptor sizes must be the stored sizes (issue 10, item 2)', () => {
  let s: TestServer;
  const img = image('sizes');
  const name = 'sizes/app';
  before(async () => {
    s = await startTestServer({ standalone: true, v2: true });
    await pushBlob(s.url, name, img.config);
    await pushBlob(s.url, name, img.layer);
  });
  after(() => s.stop());

  it('refuses a config descriptor whose size is not the blob size', async () => {
    const r = await putManifest(s.url, name, 'c', schema2(img, { config: { size: 999999 } }), S2);
    assertError(r, 400, 'MANIFEST_INVALID', /size 999999/);
    assert.deepEqual(errorOf(r).detail, { digest: sha(img.config), size: 999999, stored: img.config.length });
  });

  it('refuses a layer descriptor whose size is not the blob size', async () => {
    const r = await putManifest(s.url, name, 'l', schema2(img, { layer: { size: 999999 } }), S2);
    assertError(r, 400, 'MANIFEST_INVALID', /size 999999/);
    assert.deepEqual(errorOf(r).detail, { digest: sha(img.layer), size: 999999, stored: img.layer.length });
  });

  it('refuses an index whose child size is not the stored manifest size; the right size is accepted', async () => {
    const child = schema2(img);
    assert.equal((await putManifest(s.url, name, 'child', child, S2)).status, 201);
    const index = (size: number): string =>
      JSON.stringify({
        schemaVersion: 2,
        mediaType: OCI_INDEX,
        manifests: [{ mediaType: S2, size, digest: sha(child), platform: { architecture: 'amd64', os: 'linux' } }],
      });
    const r = await putManifest(s.url, name, 'idx', index(999999), OCI_INDEX);
    assertError(r, 400, 'MANIFEST_INVALID', /size 999999/);
    assert.deepEqual(errorOf(r).detail, { digest: sha(child), size: 999999, stored: Buffer.byteLength(child) });
    assert.equal((await putManifest(s.url, name, 'idx', index(Buffer.byteLength(child)), OCI_INDEX)).status, 201);
  });
});

describe('manifest PUT: urls only on foreign layers (issue 10, item 3)', () => {
  let s: TestServer;
  const img = image('urls');
  const name = 'urls/app';
  const urls = ['http://example.invalid/x'];
  before(async () => {
    s = await startTestServer({ standalone: true, v2: true });
    await pushBlob(s.url, name, img.config);
    await pushBlob(s.url, name, img.layer);
  });
  after(() => s.stop());

  it('refuses urls on the config, on an ordinary layer and on an index child', async () => {
    assertError(await putManifest(s.url, name, 'a', schema2(img, { config: { urls } }), S2), 400, 'MANIFEST_INVALID', /config.*urls/);
    assertError(await putManifest(s.url, name, 'b', schema2(img, { layer: { urls } }), S2), 400, 'MANIFEST_INVALID', /layers\[0\].*urls/);
    const child = schema2(img);
    assert.equal((await putManifest(s.url, name, 'child', child, S2)).status, 201);
    const index = JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_INDEX,
      manifests: [{ mediaType: S2, size: Buffer.byteLength(child), digest: sha(child), urls }],
    });
    assertError(await putManifest(s.url, name, 'c', index, OCI_INDEX), 400, 'MANIFEST_INVALID', /manifests\[0\].*urls/);
  });

  it('accepts foreign and non-distributable layers with http(s) urls without the blob', async () => {
    const remote = Buffer.from('a layer served elsewhere');
    const s2 = JSON.stringify({
      schemaVersion: 2,
      mediaType: S2,
      config: desc(CONFIG_S2, img.config),
      layers: [desc(FOREIGN_S2, remote, { urls: ['https://example.invalid/layer'] }), desc(LAYER_S2, img.layer)],
    });
    const r = await putManifest(s.url, name, 'foreign', s2, S2);
    assert.equal(r.status, 201, r.text);
    const oci = JSON.stringify({ schemaVersion: 2, mediaType: OCI, config: desc(CONFIG_OCI, img.config), layers: [desc(NONDIST_OCI, remote, { urls })] });
    const o = await putManifest(s.url, name, 'nondist', oci, OCI);
    assert.equal(o.status, 201, o.text);
  });

  it('refuses a foreign layer without urls that is not in the repository, and urls that are not http(s)', async () => {
    const remote = Buffer.from('another remote layer');
    const without = JSON.stringify({ schemaVersion: 2, mediaType: S2, config: desc(CONFIG_S2, img.config), layers: [desc(FOREIGN_S2, remote)] });
    const r = await putManifest(s.url, name, 'f1', without, S2);
    assertError(r, 400, 'MANIFEST_BLOB_UNKNOWN');
    assert.deepEqual(errorOf(r).detail, [{ digest: sha(remote) }]);
    const fileUrl = JSON.stringify({
      schemaVersion: 2,
      mediaType: S2,
      config: desc(CONFIG_S2, img.config),
      layers: [desc(FOREIGN_S2, remote, { urls: ['file:///etc/passwd'] })],
    });
    assertError(await putManifest(s.url, name, 'f2', fileUrl, S2), 400, 'MANIFEST_INVALID', /url/);
  });
});

describe("finding 14: another repository's private config reached through urls (issue 10, item 3)", () => {
  let s: TestServer;
  let service: string;
  const basic = (u: string, p: string): string => `Basic ${Buffer.from(`${u}:${p}`).toString('base64')}`;
  const tokenFor = async (user: string, scope: string): Promise<Record<string, string>> => {
    const r = await request(s.url, `/v2/token?${new URLSearchParams({ service, scope })}`, { headers: { Authorization: basic(user, `${user}pw`) } });
    assert.equal(r.status, 200, r.text);
    return { Authorization: `Bearer ${r.json<{ token: string }>().token}` };
  };
  before(async () => {
    s = await startTestServer({ v2: true, bcrypt_cost: 4 });
    service = new URL(s.url).host;
    const alice = await saveUser(s.db!, { username: 'alice', email: 'a@example.com', password: 'alicepw', active: true }, { cost: 4 });
    await saveUser(s.db!, { username: 'mallory', email: 'm@example.com', password: 'mallorypw', active: true }, { cost: 4 });
    await saveRepository(s.db!, { namespace: 'alice', name: 'secret', ownerId: alice!.id, private: true });
    assert.ok(await findUserByName(s.db!, 'mallory'));
  });
  after(() => s.stop());

  it("refuses mallory's manifest whose config is alice's private config with urls; the schema1 view shows nothing of it", async () => {
    const secret = image('alice', { config: { Env: ['DB_PASSWORD=hunter2-very-secret'], Cmd: ['/bin/sh'] } });
    const aliceAuth = await tokenFor('alice', 'repository:alice/secret:pull,push');
    await pushBlob(s.url, 'alice/secret', secret.config, aliceAuth);
    await pushBlob(s.url, 'alice/secret', secret.layer, aliceAuth);
    const mal = await tokenFor('mallory', 'repository:mallory/app:pull,push');
    // mallory cannot read the blob itself ...
    const direct = await request(s.url, `/v2/mallory/app/blobs/${sha(secret.config)}`, { headers: mal });
    assertError(direct, 404, 'BLOB_UNKNOWN');
    // ... and may not name it as her config by adding urls
    const own = image('mallory');
    await pushBlob(s.url, 'mallory/app', own.layer, mal);
    const body = JSON.stringify({
      schemaVersion: 2,
      mediaType: S2,
      config: desc(CONFIG_S2, secret.config, { urls: ['http://example.invalid/x'] }),
      layers: [desc(LAYER_S2, own.layer)],
    });
    const put = await putManifest(s.url, 'mallory/app', 'stolen', body, S2, mal);
    assertError(put, 400, 'MANIFEST_INVALID', /config.*urls/);
    const s1 = await request(s.url, '/v2/mallory/app/manifests/stolen', { headers: { ...mal, Accept: S1_SIGNED } });
    assertError(s1, 404, 'MANIFEST_UNKNOWN');
    assert.doesNotMatch(s1.text, /hunter2/);
  });
});

describe('bridge: configs read through the repository link, within max_config_size (issue 10, items 4 and 5)', () => {
  let s: TestServer;
  before(async () => {
    s = await startTestServer({ standalone: true, v2: true, storage_delete: true });
  });
  after(() => s.stop());

  it('the schema1 view refuses a config the repository no longer links (MANIFEST_UNKNOWN)', async () => {
    const img = image('unlinked');
    const name = 'link/app';
    await pushBlob(s.url, name, img.config);
    await pushBlob(s.url, name, img.layer);
    assert.equal((await putManifest(s.url, name, 'a', schema2(img), S2)).status, 201);
    assert.equal((await putManifest(s.url, name, 'b', schema2(img), S2)).status, 201);
    const before = await request(s.url, `/v2/${name}/manifests/a`, { headers: { Accept: S1_SIGNED } });
    assert.equal(before.status, 200, before.text);
    assert.equal((await request(s.url, `/v2/${name}/blobs/${sha(img.config)}`, { method: 'DELETE' })).status, 202);
    const after = await request(s.url, `/v2/${name}/manifests/b`, { headers: { Accept: S1_SIGNED } });
    assertError(after, 404, 'MANIFEST_UNKNOWN', /config/);
  });

  it('a 10 MiB config (one Env string of "<"): PUT 201, the process stays up, schema1 404 "too large", v2 GET works, no v1 view', async () => {
    const tar = tarOf({ 'f.txt': 'big\n' });
    const layer = gzipSync(tar);
    const head = JSON.stringify({
      architecture: 'amd64',
      os: 'linux',
      rootfs: { type: 'layers', diff_ids: [sha(tar)] },
      history: [{ created_by: 'ADD f.txt' }],
      config: { Env: [''] },
    });
    const fill = 10 * 1024 * 1024 - head.length;
    const config = Buffer.from(head.replace('"Env":[""]', `"Env":["${'<'.repeat(fill)}"]`));
    assert.equal(config.length, 10 * 1024 * 1024);
    const name = 'big/app';
    await pushBlob(s.url, name, config);
    await pushBlob(s.url, name, layer);
    const manifest = JSON.stringify({ schemaVersion: 2, mediaType: S2, config: desc(CONFIG_S2, config), layers: [desc(LAYER_S2, layer)] });
    const put = await putManifest(s.url, name, 'latest', manifest, S2);
    assert.equal(put.status, 201, put.text);
    const s1 = await request(s.url, `/v2/${name}/manifests/latest`, { headers: { Accept: S1_SIGNED } });
    assertError(s1, 404, 'MANIFEST_UNKNOWN', /config .*too large/);
    const v2 = await request(s.url, `/v2/${name}/manifests/latest`, { headers: { Accept: S2 } });
    assert.equal(v2.status, 200);
    assert.equal(v2.text, manifest);
    assert.equal((await request(s.url, `/v1/repositories/${name}/tags/latest`)).status, 404);
    assert.equal((await request(s.url, '/v2/')).status, 200, 'still serving');
  });
});

describe('bridge: max_config_size is configurable (issue 10, item 4)', () => {
  let s: TestServer;
  before(async () => {
    s = await startTestServer({ standalone: true, v2: true, max_config_size: 1024 });
  });
  after(() => s.stop());

  it('a config over the cap has no v1 view and no schema1 form; one under it has both', async () => {
    const name = 'cap/app';
    const small = image('small');
    const big = image('big', { comment: 'x'.repeat(2000) });
    assert.ok(small.config.length <= 1024 && big.config.length > 1024);
    for (const [tag, img] of [
      ['small', small],
      ['big', big],
    ] as const) {
      await pushBlob(s.url, name, img.config);
      await pushBlob(s.url, name, img.layer);
      assert.equal((await putManifest(s.url, name, tag, schema2(img), S2)).status, 201);
    }
    assert.equal((await request(s.url, `/v2/${name}/manifests/small`, { headers: { Accept: S1_SIGNED } })).status, 200);
    assert.equal((await request(s.url, `/v1/repositories/${name}/tags/small`)).status, 200);
    const s1 = await request(s.url, `/v2/${name}/manifests/big`, { headers: { Accept: S1_SIGNED } });
    assertError(s1, 404, 'MANIFEST_UNKNOWN', new RegExp(`config .*too large.*${big.config.length} bytes.*1024`));
    assert.equal((await request(s.url, `/v1/repositories/${name}/tags/big`)).status, 404);
  });
});

/** A libtrust-style signature entry over `payload` with the given protected format fields (spec §2.1). */
function signatureOver(key: KeyObject, payload: string, formatLength: number, formatTail: string): Record<string, unknown> {
  const prot = b64url(JSON.stringify({ formatLength, formatTail: b64url(formatTail), time: '2026-01-01T00:00:00Z' }));
  const signature = sign('sha256', Buffer.from(`${prot}.${b64url(payload)}`), { key, dsaEncoding: 'ieee-p1363' });
  const jwk = createPublicKey(key).export({ format: 'jwk' });
  return { header: { jwk: { crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y }, alg: 'ES256' }, signature: b64url(signature), protected: prot };
}

describe('signed schema1 is read once: every field from the signed payload (issue 10, item 6)', () => {
  let s: TestServer;
  const key = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
  const name = 'signed/app';
  const linked = gzipSync(tarOf({ 'mine.txt': 'mine\n' }));
  const elsewhere = gzipSync(tarOf({ 'theirs.txt': 'theirs\n' }));
  const hist = (id: string): string => JSON.stringify([{ v1Compatibility: JSON.stringify({ id }) }]);
  const head = `{"schemaVersion":1,"name":"${name}","tag":"t","architecture":"amd64","fsLayers":[`;
  before(async () => {
    s = await startTestServer({ standalone: true, v2: true });
    await pushBlob(s.url, name, linked);
    await pushBlob(s.url, 'other/repo', elsewhere);
  });
  after(() => s.stop());

  it('accepts a compactly signed document (formatTail "}"), digest of the payload, served as stored', async () => {
    const payload = `${head}{"blobSum":"${sha(linked)}"}],"history":${hist('1'.repeat(64))}}`;
    const fl = payload.length - 1;
    const doc = `${payload.slice(0, fl)},"signatures":${JSON.stringify([signatureOver(key, payload, fl, '}')])}}`;
    const r = await putManifest(s.url, name, 'good', doc, S1_SIGNED);
    assert.equal(r.status, 201, r.text);
    assert.equal(r.headers['docker-content-digest'], sha(payload));
    const get = await request(s.url, `/v2/${name}/manifests/${sha(payload)}`);
    assert.equal(get.status, 200);
    assert.equal(get.text, doc);
  });

  it('refuses a document whose signed payload (formatTail) lists other fsLayers than the document', async () => {
    // the signed payload names a blob of another repository; the document itself names one of ours
    const prefix = head;
    const signedPayload = `${prefix}{"blobSum":"${sha(elsewhere)}"}],"history":${hist('2'.repeat(64))}}`;
    const tail = signedPayload.slice(prefix.length);
    const doc = `${prefix}{"blobSum":"${sha(linked)}"}],"history":${hist('3'.repeat(64))},"signatures":${JSON.stringify([signatureOver(key, signedPayload, prefix.length, tail)])}}`;
    const r = await putManifest(s.url, name, 'split', doc, S1_SIGNED);
    assertError(r, 400, 'MANIFEST_INVALID', /signed payload/);
    assertError(await request(s.url, `/v2/${name}/manifests/${sha(signedPayload)}`), 404, 'MANIFEST_UNKNOWN');
    assertError(await request(s.url, `/v2/${name}/manifests/split`), 404, 'MANIFEST_UNKNOWN');
  });

  it('refuses a document with members outside the signed payload', async () => {
    const payload = `${head}{"blobSum":"${sha(linked)}"}],"history":${hist('4'.repeat(64))}}`;
    const fl = payload.length - 1;
    const doc = `${payload.slice(0, fl)},"fsLayersNote":"unsigned","signatures":${JSON.stringify([signatureOver(key, payload, fl, '}')])}}`;
    assertError(await putManifest(s.url, name, 'extra', doc, S1_SIGNED), 400, 'MANIFEST_INVALID', /signed payload/);
  });

  it('accepts a formatLength that stops early when the payload is still exactly the document without signatures', async () => {
    const payload = `${head}{"blobSum":"${sha(linked)}"}],"history":${hist('5'.repeat(64))}}`;
    // formatLength stops before "history": the tail carries it, and the document carries the same bytes
    const fl = payload.indexOf(',"history"');
    const doc = `${payload.slice(0, -1)},"signatures":${JSON.stringify([signatureOver(key, payload, fl, payload.slice(fl))])}}`;
    const r = await putManifest(s.url, name, 'tail', doc, S1_SIGNED);
    assert.equal(r.status, 201, r.text);
    assert.equal(r.headers['docker-content-digest'], sha(payload));
  });

  it('refuses signatures that disagree on the payload, and a signatures member that is not the last', async () => {
    const payload = `${head}{"blobSum":"${sha(linked)}"}],"history":${hist('6'.repeat(64))}}`;
    const fl = payload.length - 1;
    const other = `${head}{"blobSum":"${sha(linked)}"}],"history":${hist('6'.repeat(64))},"x":1}`;
    const two = `${payload.slice(0, fl)},"signatures":${JSON.stringify([signatureOver(key, payload, fl, '}'), signatureOver(key, other, fl, ',"x":1}')])}}`;
    assertError(await putManifest(s.url, name, 'two', two, S1_SIGNED), 400, 'MANIFEST_INVALID', /signed payload/);
    const first = `{"signatures":${JSON.stringify([signatureOver(key, payload, fl, '}')])},${payload.slice(1)}`;
    assertError(await putManifest(s.url, name, 'first', first, S1_SIGNED), 400, 'MANIFEST_INVALID', /signed payload/);
  });
});

/*
 * The `name` and `tag` inside a schema1 document, against Debian's docker-registry 2.8.2
 * (compatibility.schema1.enabled: true) with the same signed documents: a name or tag other than the
 * URL's is 201 and stored under the URL's repository and tag; the name is only matched against the
 * unanchored reference.NameRegexp (any lowercase letter or digit) and 255 bytes, else 400
 * NAME_INVALID; a name or tag of another JSON type is 400 MANIFEST_INVALID (Go's unmarshalling).
 * Unsigned documents follow the same rule here; 2.8.2 refuses every unsigned schema1 (400
 * MANIFEST_INVALID, "missing signature key") whatever its name, and this registry accepts them.
 */
describe("schema1 name and tag: checked as distribution 2.8.2 checks them, never against the URL's", () => {
  let s: TestServer;
  const key = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
  const repo = 's1names/app';
  const layer = gzipSync(tarOf({ 'names.txt': 'names\n' }));
  const v1 = JSON.stringify({ id: '7'.repeat(64), created: '2024-01-01T00:00:00Z', container_config: { Cmd: null } });
  const doc = (name: string, tag: string): string => schema1Payload(name, tag, 'amd64', [{ blobSum: sha(layer), v1Compatibility: v1 }]);
  /** The document with `name` and `tag` written as the given JSON (or left out when undefined). */
  const rawDoc = (nameJson: string | undefined, tagJson: string | undefined): string =>
    `{\n${[
      '   "schemaVersion": 1',
      ...(nameJson === undefined ? [] : [`   "name": ${nameJson}`]),
      ...(tagJson === undefined ? [] : [`   "tag": ${tagJson}`]),
      '   "architecture": "amd64"',
      `   "fsLayers": [\n      {\n         "blobSum": "${sha(layer)}"\n      }\n   ]`,
      `   "history": [\n      {\n         "v1Compatibility": ${JSON.stringify(v1)}\n      }\n   ]`,
    ].join(',\n')}\n}`;
  before(async () => {
    s = await startTestServer({ standalone: true, v2: true });
    for (const r of [repo, 'foo', 'library/bar']) await pushBlob(s.url, r, layer);
  });
  after(() => s.stop());

  it("a name other than the repository's is stored under the URL's repository, signed and unsigned (2.8.2: 201)", async () => {
    for (const [where, name, ref, signed] of [
      [repo, 'other/app', 'signed-other', true],
      [repo, 'other/app', 'plain-other', false],
      ['foo', 'library/foo', 'lib', true],
      ['library/bar', 'bar', 'short', true],
    ] as const) {
      const payload = doc(name, ref);
      const body = signed ? signSchema1(payload, key) : Buffer.from(payload);
      const r = await putManifest(s.url, where, ref, body, signed ? S1_SIGNED : S1);
      assert.equal(r.status, 201, `${where}:${ref} named ${name}: ${r.text}`);
      assert.equal(r.headers['docker-content-digest'], sha(payload));
      const get = await request(s.url, `/v2/${where}/manifests/${ref}`, { headers: { Accept: signed ? S1_SIGNED : S1 } });
      assert.equal(get.status, 200);
      assert.ok(get.body.equals(body), 'served as sent');
    }
    // by digest too, and nothing appears under the name the document gives
    const payload = doc('other/app', 'whatever');
    const r = await putManifest(s.url, repo, sha(payload), signSchema1(payload, key), S1_SIGNED);
    assert.equal(r.status, 201, r.text);
    assertError(await request(s.url, '/v2/other/app/tags/list'), 404, 'NAME_UNKNOWN');
  });

  it('a name equal to the repository is accepted, signed and unsigned', async () => {
    const payload = doc(repo, 'same');
    assert.equal((await putManifest(s.url, repo, 'same', signSchema1(payload, key), S1_SIGNED)).status, 201);
    const plain = doc(repo, 'same-plain');
    assert.equal((await putManifest(s.url, repo, 'same-plain', plain, S1)).status, 201);
    assert.equal((await request(s.url, `/v2/${repo}/manifests/same-plain`, { headers: { Accept: S1 } })).text, plain);
  });

  it("a tag other than the URL's: 201, the URL's tag is set (v2 and the v1 view), the document's is not created", async () => {
    const payload = doc(repo, 'in-the-body');
    const r = await putManifest(s.url, repo, 'in-the-url', signSchema1(payload, key), S1_SIGNED);
    assert.equal(r.status, 201, r.text);
    const tags = (await request(s.url, `/v2/${repo}/tags/list`)).json<{ tags: string[] }>().tags;
    assert.ok(tags.includes('in-the-url'));
    assert.ok(!tags.includes('in-the-body'), JSON.stringify(tags));
    assert.equal((await request(s.url, `/v2/${repo}/manifests/in-the-url`, { headers: { Accept: S1_SIGNED } })).status, 200);
    const v1Tags = (await request(s.url, `/v1/repositories/${repo}/tags`)).json<Record<string, string>>();
    assert.equal(v1Tags['in-the-url'], '7'.repeat(64));
    assert.equal(v1Tags['in-the-body'], undefined);
    // a tag no URL could carry, or none at all, is not looked at either
    for (const [ref, tagJson] of [
      ['odd-tag', '"not a tag!"'],
      ['null-tag', 'null'],
      ['no-tag', undefined],
    ] as const) {
      const r2 = await putManifest(s.url, repo, ref, signSchema1(rawDoc(JSON.stringify(repo), tagJson), key), S1_SIGNED);
      assert.equal(r2.status, 201, `${ref}: ${r2.text}`);
    }
  });

  it('names 2.8.2 lets through are accepted: any lowercase letter or digit, at most 255 bytes ("localhost:5000/…", "Foo", "FOO1")', async () => {
    for (const [i, name] of ['localhost:5000/s1names/app', 'docker.io/s1names/app', 'Foo', 'FOO1', 'foo bar', 'a\u0000', 'a'.repeat(255)].entries()) {
      const r = await putManifest(s.url, repo, `lax-${i}`, signSchema1(doc(name, `lax-${i}`), key), S1_SIGNED);
      assert.equal(r.status, 201, `${JSON.stringify(name)}: ${r.text}`);
    }
  });

  it('names 2.8.2 refuses are 400 NAME_INVALID; a name or tag that is not a string is 400 MANIFEST_INVALID; nothing stored', async () => {
    for (const [i, nameJson] of ['""', '"!!!"', '"/"', '"-"', '"FOO"', JSON.stringify('a'.repeat(256)), 'null', undefined].entries()) {
      const r = await putManifest(s.url, repo, `bad-${i}`, signSchema1(rawDoc(nameJson, `"bad-${i}"`), key), S1_SIGNED);
      assertError(r, 400, 'NAME_INVALID');
      assertError(await request(s.url, `/v2/${repo}/manifests/bad-${i}`), 404, 'MANIFEST_UNKNOWN');
    }
    for (const [i, [nameJson, tagJson]] of [
      ['5', '"t"'],
      ['true', '"t"'],
      ['{}', '"t"'],
      [JSON.stringify(repo), '5'],
      [JSON.stringify(repo), '["t"]'],
    ].entries()) {
      const r = await putManifest(s.url, repo, `type-${i}`, signSchema1(rawDoc(nameJson, tagJson), key), S1_SIGNED);
      assertError(r, 400, 'MANIFEST_INVALID', /must be a string/);
      assertError(await request(s.url, `/v2/${repo}/manifests/type-${i}`), 404, 'MANIFEST_UNKNOWN');
    }
  });
});
