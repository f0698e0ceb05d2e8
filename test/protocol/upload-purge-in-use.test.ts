import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { connect } from 'node:net';
import { request } from '../helpers/http.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { DOCKER_UA, makeImage } from '../helpers/v1-client.js';

/**
 * The upload purge (upload_purging, upload_purge_age) removes upload folders nobody wrote for the
 * age. The crash campaign found it removing an upload under a request still inside it (a client gone
 * quiet mid-body on a starved machine): the request then failed with a 500 (ENOENT at the commit, a
 * missing claim at publish). Now a single-request upload (v1 PUT layer) is held by its request and
 * never purged under it; a v2 session idle past the age is purged as designed, and the request
 * holding it ends with 404 BLOB_UPLOAD_UNKNOWN. Here the purge runs every second with an age of one
 * second and the client pauses 2.5 s in the middle of its body.
 */

const sha = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface RawAnswer {
  readonly status: number;
  readonly text: string;
}

/** Sends the head and the first half of the body, waits `pauseMs`, sends the rest; the answer. */
async function slowRequest(base: string, method: string, path: string, body: Buffer, headers: Record<string, string>, pauseMs: number): Promise<RawAnswer> {
  const u = new URL(base);
  const sock = connect(Number(u.port), u.hostname);
  await once(sock, 'connect');
  const chunks: Buffer[] = [];
  sock.on('data', (c: Buffer) => chunks.push(c));
  const answered = new Promise<RawAnswer>((resolve, reject) => {
    sock.on('error', reject);
    sock.on('close', () => {
      const text = Buffer.concat(chunks).toString('latin1');
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0);
      resolve({ status, text: text.slice(text.indexOf('\r\n\r\n') + 4) });
    });
  });
  const head = [
    `${method} ${path} HTTP/1.1`,
    `Host: ${u.host}`,
    'Connection: close',
    `Content-Length: ${body.length}`,
    ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`),
    '',
    '',
  ];
  const half = body.length >> 1;
  sock.write(head.join('\r\n'));
  sock.write(body.subarray(0, half));
  await sleep(pauseMs);
  sock.write(body.subarray(half));
  return answered;
}

describe('the upload purge and a request inside an upload (never a 500)', () => {
  let s: TestServer;
  before(async () => {
    s = await startTestServer({ v2: true, standalone: true, upload_purging: true, upload_purge_age: 1, upload_purge_interval: 1 });
  });
  after(async () => {
    await s.stop();
  });

  it('v2: a session idle past the purge age is purged even under a PUT that holds it: 404 BLOB_UPLOAD_UNKNOWN, never a 500, nothing visible', async () => {
    const body = randomBytes(3 << 20);
    const started = await request(s.url, '/v2/purge/slow/blobs/uploads/', { method: 'POST' });
    assert.equal(started.status, 202, started.text);
    const location = new URL(started.headers['location']!, s.url);
    location.searchParams.set('digest', sha(body));
    const put = await slowRequest(s.url, 'PUT', `${location.pathname}${location.search}`, body, { 'Content-Type': 'application/octet-stream' }, 2500);
    assert.equal(put.status, 404, put.text);
    assert.equal((JSON.parse(put.text) as { errors: { code: string }[] }).errors[0]!.code, 'BLOB_UPLOAD_UNKNOWN');
    const back = await request(s.url, `/v2/purge/slow/blobs/${sha(body)}`, { method: 'HEAD' });
    assert.equal(back.status, 404);
  });

  it('v2: the same under a PATCH: 404 BLOB_UPLOAD_UNKNOWN, and the session stays gone', async () => {
    const first = randomBytes(2 << 20);
    const started = await request(s.url, '/v2/purge/patched/blobs/uploads/', { method: 'POST' });
    assert.equal(started.status, 202, started.text);
    const location = new URL(started.headers['location']!, s.url);
    const patch = await slowRequest(s.url, 'PATCH', `${location.pathname}${location.search}`, first, { 'Content-Type': 'application/octet-stream' }, 2500);
    assert.equal(patch.status, 404, patch.text);
    assert.equal((JSON.parse(patch.text) as { errors: { code: string }[] }).errors[0]!.code, 'BLOB_UPLOAD_UNKNOWN');
    const status = await request(s.url, `${location.pathname}${location.search}`);
    assert.equal(status.status, 404, status.text);
  });

  it('v1: a PUT layer that pauses past the purge age is stored and pulls back', async () => {
    const img = makeImage();
    const common = { 'User-Agent': DOCKER_UA };
    const json = await request(s.url, `/v1/images/${img.id}/json`, {
      method: 'PUT',
      headers: { ...common, 'Content-Type': 'application/json' },
      body: img.json,
    });
    assert.equal(json.status, 200, json.text);
    const layer = await slowRequest(s.url, 'PUT', `/v1/images/${img.id}/layer`, img.layer, { ...common, 'Content-Type': 'application/octet-stream' }, 2500);
    assert.equal(layer.status, 200, layer.text);
    const checksum = await request(s.url, `/v1/images/${img.id}/checksum`, {
      method: 'PUT',
      headers: { ...common, ...(img.tarsum ? { 'X-Docker-Checksum': img.tarsum } : {}), 'X-Docker-Checksum-Payload': img.payload },
      body: '',
    });
    assert.equal(checksum.status, 200, checksum.text);
    const back = await request(s.url, `/v1/images/${img.id}/layer`, { headers: common });
    assert.equal(back.status, 200);
    assert.equal(sha(back.body), sha(img.layer));
  });
});
