/**
 * Issue 11 item 3: OCI distribution-spec conformance v1.1.1, "GET nonexistent manifest should return
 * 404". A manifest reference that is neither a valid tag nor a valid digest names no manifest: GET
 * and HEAD answer 404 MANIFEST_UNKNOWN, as distribution does (its route does not match); PUT keeps
 * refusing it with 400 (TAG_INVALID / DIGEST_INVALID), since nothing may be stored under it.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { request, type Response } from '../helpers/http.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

const errors = (r: Response): { code: string; message: string; detail: unknown }[] =>
  r.json<{ errors: { code: string; message: string; detail: unknown }[] }>().errors;

/** The conformance suite's nonexistentManifest, and other references off both grammars. */
const BAD_REFERENCES = [
  '.INVALID_MANIFEST_NAME',
  '-leading-dash',
  'a'.repeat(129),
  'sha256:totallywrong',
  'sha256:abc',
  `sha256:${'A'.repeat(64)}`,
  `sha512:${'0'.repeat(128)}`,
  'bad%20tag',
  '%zz',
];

describe('GET/HEAD /v2/<name>/manifests/<reference> off the tag and digest grammars', () => {
  let s: TestServer;
  before(async () => {
    s = await startTestServer({ standalone: true, v2: true });
  });
  after(() => s.stop());

  for (const ref of BAD_REFERENCES) {
    it(`GET ${ref.slice(0, 40)}: 404 MANIFEST_UNKNOWN`, async () => {
      const r = await request(s.url, `/v2/conformance/test/manifests/${ref}`, { headers: { Accept: 'application/vnd.oci.image.manifest.v1+json' } });
      assert.equal(r.status, 404);
      assert.equal(r.headers['docker-distribution-api-version'], 'registry/2.0');
      assert.equal(r.headers['content-type'], 'application/json; charset=utf-8');
      const [e, ...rest] = errors(r);
      assert.equal(rest.length, 0);
      assert.equal(e!.code, 'MANIFEST_UNKNOWN');
      assert.equal(e!.message, 'manifest unknown');
    });

    it(`HEAD ${ref.slice(0, 40)}: 404, no body`, async () => {
      const r = await request(s.url, `/v2/conformance/test/manifests/${ref}`, { method: 'HEAD' });
      assert.equal(r.status, 404);
      assert.equal(r.body.length, 0);
    });
  }

  it('a valid tag or digest that is not there: 404 MANIFEST_UNKNOWN as before', async () => {
    for (const ref of ['latest', `sha256:${'0'.repeat(64)}`]) {
      const r = await request(s.url, `/v2/conformance/test/manifests/${ref}`);
      assert.equal(r.status, 404, ref);
      assert.equal(errors(r)[0]!.code, 'MANIFEST_UNKNOWN');
    }
  });

  it('PUT under such a reference stays 400: TAG_INVALID for a tag, DIGEST_INVALID for a digest', async () => {
    const body = JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config: {}, layers: [] });
    const cases: [string, string][] = [
      ['.INVALID_MANIFEST_NAME', 'TAG_INVALID'],
      ['-leading-dash', 'TAG_INVALID'],
      ['%zz', 'TAG_INVALID'],
      ['sha256:totallywrong', 'DIGEST_INVALID'],
      [`sha512:${'0'.repeat(128)}`, 'DIGEST_INVALID'],
    ];
    for (const [ref, c] of cases) {
      const r = await request(s.url, `/v2/conformance/test/manifests/${ref}`, {
        method: 'PUT',
        body,
        headers: { 'Content-Type': 'application/vnd.oci.image.manifest.v1+json' },
      });
      assert.equal(r.status, 400, ref);
      assert.equal(errors(r)[0]!.code, c, ref);
    }
  });
});
