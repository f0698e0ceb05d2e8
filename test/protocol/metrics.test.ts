import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { request } from '../helpers/http.js';
import { freePort } from '../helpers/ports.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { makeImage, pushImage, putTag } from '../helpers/v1-client.js';
import { pushV2 } from '../helpers/v2-client.js';
import { Site, pushV2Image, v2Image } from '../helpers/accounts.js';
import { saveUser } from '../../src/db/users.js';
import { loadConfig } from '../../src/config/load.js';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** One sample line of the exposition: name{labels} value. */
interface Sample {
  readonly name: string;
  readonly labels: Record<string, string>;
  readonly value: number;
}

function parse(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(m, `not a sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!;
    out.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return out;
}

/** Sum of the samples of a name whose labels include `match`. */
function value(samples: readonly Sample[], name: string, match: Record<string, string> = {}): number {
  return samples.filter((s) => s.name === name && Object.entries(match).every(([k, v]) => s.labels[k] === v)).reduce((a, s) => a + s.value, 0);
}

describe('/metrics on the debug listener', () => {
  let s: TestServer;
  let debug: string;
  const scrape = async (): Promise<Sample[]> => {
    const r = await request(debug, '/metrics');
    assert.equal(r.status, 200, r.text);
    assert.match(String(r.headers['content-type']), /^text\/plain; version=0\.0\.4/);
    return parse(r.text);
  };

  before(async () => {
    const port = await freePort();
    s = await startTestServer({ standalone: true, debug_addr: `127.0.0.1:${port}` });
    debug = `http://127.0.0.1:${port}`;
  });
  after(async () => {
    await s?.stop();
  });

  it("exposes distribution's metric names, ours and the default process metrics", async () => {
    const r = await request(debug, '/metrics');
    assert.equal(r.status, 200);
    for (const name of [
      'registry_http_requests_total',
      'registry_http_request_duration_seconds',
      'registry_http_request_size_bytes',
      'registry_http_response_size_bytes',
      'registry_http_in_flight_requests',
      'registry_storage_action_seconds',
      'registry_storage_cache_requests_total',
      'legacy_registry_v1_pushes_total',
      'legacy_registry_v1_pulls_total',
      'legacy_registry_token_validations_total',
      'legacy_registry_token_cache_requests_total',
      'legacy_registry_index_search_duration_seconds',
      'legacy_registry_upload_sessions_in_flight',
      'legacy_registry_event_queue_depth',
      'legacy_registry_event_deliveries_total',
      'legacy_registry_gc_runs_total',
      'process_cpu_seconds_total',
      'process_resident_memory_bytes',
      'nodejs_heap_size_used_bytes',
    ]) {
      assert.match(r.text, new RegExp(`^# TYPE ${name} `, 'm'), name);
    }
    // the health endpoint is still there, and nothing else
    assert.equal((await request(debug, '/debug/health')).status, 200);
    assert.equal((await request(debug, '/other')).status, 404);
    assert.equal((await request(debug, '/metrics', { method: 'POST' })).status, 405);
  });

  it('counts v1 pushes and pulls by step and result, with HTTP and storage metrics', async () => {
    const before = await scrape();
    const img = makeImage();
    const rs = await pushImage(s.url, img);
    assert.deepEqual(
      rs.map((r) => r.status),
      [404, 200, 200, 200],
    );
    assert.equal((await putTag(s.url, 'metricsns/metricsrepo', 'latest', img.id)).status, 200);
    const pulled = await request(s.url, `/v1/images/${img.id}/layer`);
    assert.equal(pulled.status, 200);
    assert.deepEqual(pulled.body, img.layer);
    assert.equal((await request(s.url, `/v1/images/${'f'.repeat(64)}/layer`)).status, 404);
    const after = await scrape();
    const d = (name: string, m: Record<string, string> = {}): number => value(after, name, m) - value(before, name, m);

    assert.equal(d('legacy_registry_v1_pushes_total', { step: 'json', result: 'success' }), 1);
    assert.equal(d('legacy_registry_v1_pushes_total', { step: 'layer', result: 'success' }), 1);
    assert.equal(d('legacy_registry_v1_pushes_total', { step: 'checksum', result: 'success' }), 1);
    assert.equal(d('legacy_registry_v1_pushes_total', { step: 'tag', result: 'success' }), 1);
    assert.equal(d('legacy_registry_v1_pulls_total', { step: 'layer', result: 'success' }), 1);
    assert.equal(d('legacy_registry_v1_pulls_total', { step: 'layer', result: 'refused' }), 1);
    // the probe before the push is a json read that found nothing
    assert.equal(d('legacy_registry_v1_pulls_total', { step: 'json', result: 'refused' }), 1);

    assert.equal(d('registry_http_requests_total', { handler: 'v1_image_layer', method: 'PUT', code: '200' }), 1);
    assert.equal(d('registry_http_requests_total', { handler: 'v1_image_layer', method: 'GET', code: '404' }), 1);
    assert.equal(d('registry_http_request_duration_seconds_count', { handler: 'v1_image_layer', method: 'GET' }), 2);
    // the layer went out whole: the response size sum grew by at least its length
    assert.ok(d('registry_http_response_size_bytes_sum', { handler: 'v1_image_layer' }) >= img.layer.length);
    assert.ok(d('registry_http_request_size_bytes_count', { handler: 'v1_image_json' }) >= 1);
    // storage calls were timed under the driver's name
    assert.ok(d('registry_storage_action_seconds_count', { driver: 'filesystem', action: 'Move' }) >= 1, 'a published layer is a Move');
    assert.ok(d('registry_storage_action_seconds_count', { driver: 'filesystem', action: 'Reader' }) >= 1);
    assert.ok(d('registry_storage_action_seconds_count', { driver: 'filesystem', action: 'PutContent' }) >= 1);
    // nothing in flight once every response is over
    assert.equal(value(after, 'registry_http_in_flight_requests', { handler: 'v1_image_layer' }), 0);
  });

  it('counts v2 requests under distribution handler names; upload sessions in flight; the metadata cache', async () => {
    const before = await scrape();
    const pushed = await pushV2(s.url, 'metricsv2/app', 'v1');
    // the tag is read twice within metadata_cache_ttl: the second read is a cache hit
    for (let i = 0; i < 2; i++) {
      const m = await request(s.url, `/v2/metricsv2/app/manifests/v1`, { headers: { Accept: 'application/vnd.docker.distribution.manifest.v2+json' } });
      assert.equal(m.status, 200);
      assert.equal(m.headers['docker-content-digest'], pushed.digest);
    }
    assert.equal((await request(s.url, '/v2/metricsv2/app/manifests/nosuchtag')).status, 404);
    const open = await request(s.url, '/v2/metricsv2/app/blobs/uploads/', { method: 'POST' });
    assert.equal(open.status, 202);
    const middle = await scrape();
    assert.equal(value(middle, 'legacy_registry_upload_sessions_in_flight') - value(before, 'legacy_registry_upload_sessions_in_flight'), 1);
    assert.equal((await request(s.url, String(open.headers.location), { method: 'DELETE' })).status, 204);
    const after = await scrape();
    const d = (name: string, m: Record<string, string> = {}): number => value(after, name, m) - value(before, name, m);
    assert.equal(d('legacy_registry_upload_sessions_in_flight'), 0);
    assert.equal(d('registry_http_requests_total', { handler: 'manifest', method: 'PUT', code: '201' }), 1);
    assert.equal(d('registry_http_requests_total', { handler: 'manifest', method: 'GET', code: '200' }), 2);
    assert.equal(d('registry_http_requests_total', { handler: 'manifest', method: 'GET', code: '404' }), 1);
    assert.equal(d('registry_http_requests_total', { handler: 'blob_upload', method: 'POST', code: '201' }), 2);
    assert.equal(d('registry_http_requests_total', { handler: 'blob_upload', method: 'POST', code: '202' }), 1);
    assert.equal(d('registry_http_requests_total', { handler: 'blob_upload_chunk', method: 'DELETE', code: '204' }), 1);
    assert.ok(d('registry_storage_cache_requests_total', { type: 'Hit' }) >= 1, 'a cache hit');
    assert.ok(d('registry_storage_cache_requests_total', { type: 'Miss' }) >= 1, 'a cache miss');
    assert.equal(
      d('registry_storage_cache_requests_total', { type: 'Request' }),
      d('registry_storage_cache_requests_total', { type: 'Hit' }) + d('registry_storage_cache_requests_total', { type: 'Miss' }),
    );
  });

  it('keeps label values bounded: no repository names, tags, ids or digests, whatever the path', async () => {
    for (let i = 0; i < 20; i++) {
      await request(s.url, `/v2/cardinality${i}/x/manifests/t${i}`);
      await request(s.url, `/v1/repositories/cardinality${i}/x/tags/t${i}`);
      await request(s.url, `/v1/images/${String(i).padStart(64, 'a')}/json`);
      await request(s.url, `/nonsense/${i}`, { method: 'BREW' as string });
    }
    const r = await request(debug, '/metrics');
    assert.doesNotMatch(r.text, /cardinality|metricsns|metricsv2|nonsense|sha256|aaaa/);
    const samples = parse(r.text);
    const handlers = new Set(samples.filter((x) => x.name === 'registry_http_requests_total').map((x) => x.labels.handler));
    assert.ok(handlers.size <= 30, [...handlers].join(','));
    const methods = new Set(samples.filter((x) => x.name === 'registry_http_requests_total').map((x) => x.labels.method));
    assert.ok(
      [...methods].every((m) => /^(GET|HEAD|PUT|POST|PATCH|DELETE|OPTIONS|OTHER)$/.test(m!)),
      [...methods].join(','),
    );
  });
});

describe('/metrics with an index: token validations and their cache, search latency', () => {
  let s: TestServer;
  let debug: string;
  before(async () => {
    const port = await freePort();
    s = await startTestServer({ debug_addr: `127.0.0.1:${port}`, bcrypt_cost: 4, token_cache_ttl: 30 });
    debug = `http://127.0.0.1:${port}`;
    await saveUser(s.db!, { username: 'metricsuser', email: 'm@example.com', password: 'metricspw', active: true, admin: false }, { cost: 4 });
  });
  after(async () => {
    await s?.stop();
  });

  it('moves the token and search metrics with real requests', async () => {
    const before = parse((await request(debug, '/metrics')).text);
    const site = new Site(s.url, s.url);
    const creds = ['metricsuser', 'metricspw'] as const;
    const img = makeImage();
    await site.pushV1('metricsuser/app', creds, [img]);
    const read = await site.readToken('metricsuser/app', creds);
    assert.ok(read);
    // one token, two reads: the index is asked once, the second answer comes from the cache
    assert.equal((await site.regGet(`/v1/images/${img.id}/json`, read)).status, 200);
    assert.equal((await site.regGet(`/v1/images/${img.id}/ancestry`, read)).status, 200);
    assert.equal((await site.regGet(`/v1/images/${img.id}/json`, 'signature=bogus,repository="metricsuser/app",access=read')).status, 401);
    const bearer = await site.bearer(creds, 'repository:metricsuser/v2app:pull,push');
    await pushV2Image(site, 'metricsuser/v2app', 'latest', bearer, v2Image('metrics'));
    for (const q of ['app', 'nothing-matches-this']) assert.equal((await request(s.url, `/v1/search?q=${q}`)).status, 200);
    const after = parse((await request(debug, '/metrics')).text);
    const d = (name: string, m: Record<string, string> = {}): number => value(after, name, m) - value(before, name, m);
    assert.ok(d('legacy_registry_token_validations_total', { kind: 'v1', result: 'valid' }) >= 2, 'write token, read token');
    assert.ok(d('legacy_registry_token_validations_total', { kind: 'v1', result: 'invalid' }) >= 1);
    assert.ok(d('legacy_registry_token_cache_requests_total', { type: 'hit' }) >= 1);
    assert.ok(d('legacy_registry_token_cache_requests_total', { type: 'miss' }) >= 2);
    assert.ok(d('legacy_registry_token_validations_total', { kind: 'v2', result: 'valid' }) >= 4, 'every v2 request of the push');
    assert.equal(d('legacy_registry_index_search_duration_seconds_count'), 2);
    assert.doesNotMatch(String((await request(debug, '/metrics')).text), /metricsuser/);
  });
});

describe('metrics configuration', () => {
  it("maps distribution's http.debug.prometheus and turns /metrics off with metrics: false", async () => {
    const dir = await mkdtemp(join(tmpdir(), 'lr-metrics-'));
    try {
      const file = join(dir, 'config.yml');
      await writeFile(
        file,
        'version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: /tmp/x\nhttp:\n  addr: :5000\n  debug:\n    addr: 127.0.0.1:5001\n    prometheus:\n      enabled: true\n      path: /prom\n',
      );
      const c = loadConfig({ env: {}, file });
      assert.equal(c.metrics, true);
      assert.equal(c.metrics_path, '/prom');
      assert.ok(!c.warnings.some((w) => w.includes('prometheus')), c.warnings.join('; '));
      const off = loadConfig({ env: { REGISTRY_HTTP_DEBUG_PROMETHEUS_ENABLED: 'false' }, file });
      assert.equal(off.metrics, false);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
    const port = await freePort();
    const s = await startTestServer({ standalone: true, debug_addr: `127.0.0.1:${port}`, metrics: false, metrics_path: '/m' });
    try {
      assert.equal((await request(`http://127.0.0.1:${port}`, '/metrics')).status, 404);
      assert.equal((await request(`http://127.0.0.1:${port}`, '/m')).status, 404);
      assert.equal((await request(`http://127.0.0.1:${port}`, '/debug/health')).status, 200);
    } finally {
      await s.stop();
    }
    const port2 = await freePort();
    const s2 = await startTestServer({ standalone: true, debug_addr: `127.0.0.1:${port2}`, metrics_path: '/prom' });
    try {
      assert.equal((await request(`http://127.0.0.1:${port2}`, '/prom')).status, 200);
      assert.equal((await request(`http://127.0.0.1:${port2}`, '/metrics')).status, 404);
    } finally {
      await s2.stop();
    }
  });
});
