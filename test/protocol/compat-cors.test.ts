/**
 * Issue 11 item 7: CORS as the Python registry offered it (its `cors` section, Flask-CORS 1.x
 * semantics), over HTTP: simple requests, preflights, each option; and not a single CORS header when
 * the section is absent or has no origins.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { IncomingHttpHeaders } from 'node:http';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../../src/config/load.js';
import { createLogger } from '../../src/log/logger.js';
import { startServer } from '../../src/main.js';
import { request, type Response } from '../helpers/http.js';
import { FIXTURES } from '../helpers/paths.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

const UI = 'https://ui.example';
const ALL_METHODS = 'DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT';
const IMAGE = 'a'.repeat(64);

/** The CORS headers of an answer (and Vary), nothing else. */
function corsOf(h: IncomingHttpHeaders): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(h)) if (k.startsWith('access-control-') || k === 'vary') out[k] = String(v);
  return out;
}

function preflight(base: string, path: string, origin: string, method = 'PUT', headers = 'content-type'): Promise<Response> {
  return request(base, path, {
    method: 'OPTIONS',
    headers: { Origin: origin, 'Access-Control-Request-Method': method, 'Access-Control-Request-Headers': headers },
  });
}

/** One server per configuration; `cors` as the YAML section would give it. */
function withServer(cors: Record<string, unknown> | null, extra: Record<string, unknown> = {}): { url: () => string } {
  let s: TestServer;
  before(async () => {
    s = await startTestServer({ standalone: true, v2: true, ...(cors ? { cors } : {}), ...extra });
  });
  after(() => s.stop());
  return { url: () => s.url };
}

describe('CORS not configured', () => {
  for (const [what, cors] of [
    ['no cors section', null],
    ['a cors section without origins (the Python sample as shipped)', { origins: null, headers: ['Content-Type'] }],
  ] as const) {
    describe(what, () => {
      const s = withServer(cors);

      it('no CORS header on a simple request, an error, or a v2 answer', async () => {
        for (const path of ['/v1/_ping', `/v1/images/${IMAGE}/json`, '/v2/', '/v1/search?q=x']) {
          const r = await request(s.url(), path, { headers: { Origin: UI } });
          assert.deepEqual(corsOf(r.headers), {}, path);
        }
      });

      it('a preflight is an ordinary OPTIONS: 404 from the routes, no CORS header', async () => {
        const r = await preflight(s.url(), '/v1/_ping', UI);
        assert.equal(r.status, 404);
        assert.equal(r.text, '{"error": "Not found"}');
        assert.deepEqual(corsOf(r.headers), {});
      });
    });
  }
});

describe('CORS with listed origins (exact and a regular expression) and the sample headers', () => {
  const s = withServer({
    origins: [UI, 'https://[a-z]+\\.corp\\.example'],
    headers: ['Content-Type', 'Authorization'],
    expose_headers: ['X-Docker-Token', 'Docker-Content-Digest'],
    max_age: 600,
  });

  it('a simple request from an allowed origin: the origin echoed, exposed headers, Vary: Origin', async () => {
    const r = await request(s.url(), '/v1/_ping', { headers: { Origin: UI } });
    assert.equal(r.status, 200);
    assert.equal(r.text, '{}');
    assert.deepEqual(corsOf(r.headers), {
      'access-control-allow-origin': UI,
      'access-control-expose-headers': 'Docker-Content-Digest, X-Docker-Token',
      vary: 'Origin',
    });
  });

  it('an origin matching the regular expression is echoed; the expression is matched whole', async () => {
    const ok = await request(s.url(), '/v1/_ping', { headers: { Origin: 'https://build.corp.example' } });
    assert.equal(ok.headers['access-control-allow-origin'], 'https://build.corp.example');
    for (const origin of ['https://build.corp.example.evil.test', 'https://evil.test', `${UI}.evil.test`, 'https://UI.example']) {
      const r = await request(s.url(), '/v1/_ping', { headers: { Origin: origin } });
      assert.equal(r.status, 200);
      assert.deepEqual(corsOf(r.headers), {}, origin);
    }
  });

  it('without an Origin header (always_send): the listed exact origins, not the expressions', async () => {
    const r = await request(s.url(), '/v1/_ping');
    assert.deepEqual(corsOf(r.headers), {
      'access-control-allow-origin': UI,
      'access-control-expose-headers': 'Docker-Content-Digest, X-Docker-Token',
      vary: 'Origin',
    });
  });

  it('errors carry the headers too (v1 404, v2 401-free 404)', async () => {
    const v1 = await request(s.url(), `/v1/images/${IMAGE}/json`, { headers: { Origin: UI } });
    assert.equal(v1.status, 404);
    assert.equal(v1.text, '{"error": "Image not found"}');
    assert.equal(v1.headers['access-control-allow-origin'], UI);
    const v2 = await request(s.url(), '/v2/ns/app/manifests/latest', { headers: { Origin: UI } });
    assert.equal(v2.status, 404);
    assert.equal(v2.headers['access-control-allow-origin'], UI);
    assert.equal(v2.headers.vary, 'Origin');
  });

  it('a preflight: 200, empty, with methods, allowed headers and max age, before any route or auth', async () => {
    for (const path of [`/v1/images/${IMAGE}/json`, '/v2/ns/app/blobs/uploads/', '/anything']) {
      const r = await preflight(s.url(), path, UI);
      assert.equal(r.status, 200, path);
      assert.equal(r.text, '');
      assert.deepEqual(corsOf(r.headers), {
        'access-control-allow-origin': UI,
        'access-control-allow-methods': ALL_METHODS,
        'access-control-allow-headers': 'Authorization, Content-Type',
        'access-control-expose-headers': 'Docker-Content-Digest, X-Docker-Token',
        'access-control-max-age': '600',
        vary: 'Origin',
      });
    }
  });

  it('a preflight from an origin not allowed: 200 without CORS headers (the browser stops there)', async () => {
    const r = await preflight(s.url(), '/v1/_ping', 'https://evil.test');
    assert.equal(r.status, 200);
    assert.deepEqual(corsOf(r.headers), {});
  });

  it('an OPTIONS without Access-Control-Request-Method: the origin only, no preflight headers', async () => {
    const r = await request(s.url(), '/v1/_ping', { method: 'OPTIONS', headers: { Origin: UI } });
    assert.equal(r.status, 200);
    assert.deepEqual(corsOf(r.headers), {
      'access-control-allow-origin': UI,
      'access-control-expose-headers': 'Docker-Content-Digest, X-Docker-Token',
      vary: 'Origin',
    });
  });
});

describe("CORS origins '*' with the defaults", () => {
  const s = withServer({ origins: '*' });

  it("answers '*' (send_wildcard), no Vary, with or without Origin", async () => {
    for (const headers of [{ Origin: UI }, {}] as Record<string, string>[]) {
      const r = await request(s.url(), '/v1/_ping', { headers });
      assert.deepEqual(corsOf(r.headers), { 'access-control-allow-origin': '*' });
    }
  });

  it('a preflight: every method, no allowed headers or max age unless configured', async () => {
    const r = await preflight(s.url(), '/v2/', UI, 'delete');
    assert.equal(r.status, 200);
    assert.deepEqual(corsOf(r.headers), { 'access-control-allow-origin': '*', 'access-control-allow-methods': ALL_METHODS });
  });
});

describe('CORS options: methods, send_wildcard, supports_credentials, always_send, vary_header', () => {
  const s = withServer({ origins: '*', methods: ['GET', 'HEAD'], send_wildcard: false, supports_credentials: true, always_send: false, vary_header: false });

  it('echoes the origin (send_wildcard false), credentials allowed, no Vary (vary_header false)', async () => {
    const r = await request(s.url(), '/v1/_ping', { headers: { Origin: UI } });
    assert.deepEqual(corsOf(r.headers), { 'access-control-allow-origin': UI, 'access-control-allow-credentials': 'true' });
  });

  it('nothing without an Origin header (always_send false)', async () => {
    const r = await request(s.url(), '/v1/_ping');
    assert.deepEqual(corsOf(r.headers), {});
  });

  it('a preflight for a method not allowed gets no preflight headers; an allowed one does', async () => {
    const put = await preflight(s.url(), '/v1/_ping', UI, 'PUT');
    assert.equal(put.status, 200);
    assert.deepEqual(corsOf(put.headers), { 'access-control-allow-origin': UI, 'access-control-allow-credentials': 'true' });
    const get = await preflight(s.url(), '/v1/_ping', UI, 'get');
    assert.deepEqual(corsOf(get.headers), {
      'access-control-allow-origin': UI,
      'access-control-allow-credentials': 'true',
      'access-control-allow-methods': 'GET, HEAD',
    });
  });
});

describe('CORS automatic_options false: OPTIONS go to the routes, which add nothing but the headers', () => {
  const s = withServer({ origins: [UI], automatic_options: false });

  it("a preflight gets the routes' 404 with the CORS headers", async () => {
    const r = await preflight(s.url(), '/v1/_ping', UI);
    assert.equal(r.status, 404);
    assert.equal(r.text, '{"error": "Not found"}');
    assert.deepEqual(corsOf(r.headers), { 'access-control-allow-origin': UI, 'access-control-allow-methods': ALL_METHODS, vary: 'Origin' });
  });
});

describe('CORS resources: per-path options, and paths outside them untouched', () => {
  const s = withServer({ origins: [UI], resources: { '/v1/search': { origins: 'https://search.example', max_age: 30 }, '/v2/.*': null } });

  it('the longest matching expression wins and its options apply', async () => {
    const r = await request(s.url(), '/v1/search?q=x', { headers: { Origin: 'https://search.example' } });
    assert.equal(r.status, 200);
    assert.deepEqual(corsOf(r.headers), { 'access-control-allow-origin': 'https://search.example', vary: 'Origin' });
    const other = await request(s.url(), '/v1/search?q=x', { headers: { Origin: UI } });
    assert.deepEqual(corsOf(other.headers), {});
    const pre = await preflight(s.url(), '/v1/search', 'https://search.example', 'GET');
    assert.equal(pre.headers['access-control-max-age'], '30');
  });

  it("a resource without options takes the section's", async () => {
    const r = await request(s.url(), '/v2/', { headers: { Origin: UI } });
    assert.equal(r.status, 200);
    assert.deepEqual(corsOf(r.headers), { 'access-control-allow-origin': UI, vary: 'Origin' });
  });

  it('a path no resource matches: no CORS headers, OPTIONS left to the routes', async () => {
    const r = await request(s.url(), '/v1/_ping', { headers: { Origin: UI } });
    assert.deepEqual(corsOf(r.headers), {});
    const pre = await preflight(s.url(), '/v1/_ping', UI);
    assert.equal(pre.status, 404);
    assert.deepEqual(corsOf(pre.headers), {});
  });
});

describe('CORS and a Vary header the answer already has', () => {
  const s = withServer({ origins: [UI] }, { http_headers: { Vary: ['Accept-Encoding'] } });

  it('Origin is added to it, once', async () => {
    for (const r of [await request(s.url(), '/v1/_ping', { headers: { Origin: UI } }), await preflight(s.url(), '/v1/_ping', UI)]) {
      assert.equal(r.headers['access-control-allow-origin'], UI);
      const vary = String(r.headers.vary ?? '')
        .split(',')
        .map((v) => v.trim());
      assert.deepEqual(vary.sort(), ['Accept-Encoding', 'Origin']);
    }
  });
});

describe("the Python registry's config_sample.yml runs a server (dev flavor, CORS_ORIGINS set)", () => {
  it('starts with one warning naming the ignored keys, and answers with its CORS settings', async () => {
    const data = await mkdtemp(join(tmpdir(), 'lr-pycfg-'));
    const lines: string[] = [];
    const config = loadConfig({
      env: { DOCKER_REGISTRY_CONFIG: join(FIXTURES, 'config', 'python-registry-config_sample.yml'), CORS_ORIGINS: UI },
      overrides: { host: '127.0.0.1', port: 0, storage_path: data },
    });
    const s = await startServer(config, { logger: createLogger('warn', {}, (l) => lines.push(l)) });
    try {
      const warnings = lines.filter((l) => / WARN /.test(l));
      assert.equal(warnings.length, 1, lines.join(''));
      assert.match(
        warnings[0]!,
        /configuration: search_backend, cache, cache_lru, email_exceptions, bugsnag: settings of the Python registry that this server does not implement, ignored/,
      );
      const ping = await request(s.url, '/v1/_ping', { headers: { Origin: UI } });
      assert.equal(ping.status, 200);
      assert.equal(ping.headers['x-docker-registry-standalone'], 'True');
      assert.deepEqual(corsOf(ping.headers), { 'access-control-allow-origin': UI, vary: 'Origin' });
      const pre = await preflight(s.url, `/v1/images/${IMAGE}/layer`, UI);
      assert.equal(pre.status, 200);
      assert.deepEqual(corsOf(pre.headers), {
        'access-control-allow-origin': UI,
        'access-control-allow-methods': ALL_METHODS,
        'access-control-allow-headers': 'Content-Type',
        vary: 'Origin',
      });
    } finally {
      await s.close();
      await rm(data, { recursive: true, force: true });
    }
  });
});
