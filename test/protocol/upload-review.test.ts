import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { request, type Response } from '../helpers/http.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

/**
 * Adversarial review of the v2 blob upload protocol (2026-12-07): what an earlier pass of
 * upload-integrity, mutation-uploads and compat-oci did not try. Each case failed before its fix.
 */

const sha = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const code = (r: Response): string | undefined => r.json<{ errors: { code: string }[] }>().errors[0]?.code;

describe('v2 upload sessions hold max_layer_size whatever the chunks', () => {
  const MAX = 64 * 1024;
  let s: TestServer;
  before(async () => {
    s = await startTestServer({ standalone: true, v2: true, max_layer_size: MAX });
  });
  after(() => s?.stop());
  const v2 = (method: string, path: string, body?: Buffer) =>
    request(s.url, path, { method, headers: body ? { 'Content-Type': 'application/octet-stream' } : {}, ...(body ? { body } : {}) });
  const session = async (): Promise<string> => {
    const r = await v2('POST', '/v2/cap/app/blobs/uploads/');
    assert.equal(r.status, 202, r.text);
    return String(r.headers.location);
  };

  it('a session holding exactly the cap takes no further byte: a PATCH or a PUT with a body is refused, nothing is published', async () => {
    // exactly max_layer_size in one session is a blob like any other
    const exact = randomBytes(MAX);
    const ok = await session();
    assert.equal((await v2('PATCH', ok, exact)).status, 202);
    assert.equal((await v2('PUT', `${ok}?digest=${sha(exact)}`)).status, 201);

    // before: a session at exactly the cap had none left (0 meant "no limit"), and grew without end
    const first = randomBytes(MAX);
    const more = randomBytes(MAX);
    const all = Buffer.concat([first, more]);
    const loc = await session();
    assert.equal((await v2('PATCH', loc, first)).status, 202);
    const over = await v2('PATCH', loc, more);
    assert.equal(over.status, 400, `a byte past max_layer_size: ${over.status} ${over.text}`);
    assert.equal(code(over), 'SIZE_INVALID');
    const put = await v2('PUT', `${loc}?digest=${sha(all)}`);
    assert.equal(put.status, 404, `the session went with the refused chunk: ${put.status} ${put.text}`);
    assert.equal((await v2('GET', `/v2/cap/app/blobs/${sha(all)}`)).status, 404);

    // the same with the last chunk in the PUT
    const loc2 = await session();
    assert.equal((await v2('PATCH', loc2, first)).status, 202);
    const last = await v2('PUT', `${loc2}?digest=${sha(all)}`, more);
    assert.equal(last.status, 400, `a last chunk past max_layer_size: ${last.status} ${last.text}`);
    assert.equal(code(last), 'SIZE_INVALID');
    assert.equal((await v2('GET', `/v2/cap/app/blobs/${sha(all)}`)).status, 404);
  });
});

describe('v2 upload session status answers HEAD as GET, as distribution does', () => {
  let s: TestServer;
  before(async () => {
    s = await startTestServer({ standalone: true, v2: true });
  });
  after(() => s?.stop());

  it('HEAD on a live session: 204 with Location, Range and Docker-Upload-UUID; on an unknown one 404', async () => {
    const start = await request(s.url, '/v2/status/app/blobs/uploads/', { method: 'POST' });
    assert.equal(start.status, 202, start.text);
    const loc = String(start.headers.location);
    const uuid = String(start.headers['docker-upload-uuid']);
    const chunk = randomBytes(1000);
    const patched = await request(s.url, loc, { method: 'PATCH', headers: { 'Content-Type': 'application/octet-stream' }, body: chunk });
    assert.equal(patched.status, 202, patched.text);
    // distribution's blobUploadDispatcher maps GET and HEAD to GetUploadStatus; before, HEAD was 405
    const get = await request(s.url, loc);
    const head = await request(s.url, loc, { method: 'HEAD' });
    assert.equal(head.status, 204, `HEAD: ${head.status}`);
    for (const h of ['location', 'range', 'docker-upload-uuid']) assert.equal(head.headers[h], get.headers[h], h);
    assert.equal(head.headers.range, '0-999');
    assert.equal(head.headers['docker-upload-uuid'], uuid);
    // another repository's URL, or a session that is over: 404, as for GET
    assert.equal((await request(s.url, `/v2/status/other/blobs/uploads/${uuid}`, { method: 'HEAD' })).status, 404);
    assert.equal((await request(s.url, `${loc}?digest=${sha(chunk)}`, { method: 'PUT' })).status, 201);
    assert.equal((await request(s.url, loc, { method: 'HEAD' })).status, 404);
  });
});
