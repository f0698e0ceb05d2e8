import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, request as httpRequest, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { CellCounter, CellGauge, CellHistogram } from '../../../src/metrics/cells.js';
import { instrumentRequest } from '../../../src/metrics/http.js';
import { exposition } from '../../../src/metrics/registry.js';

const BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

describe('cell metrics (the per-request HTTP metrics)', () => {
  it("expose exactly the text prom-client's own metrics give for the same observations", async () => {
    const theirs = new Registry();
    const ours = new Registry();
    const counter = new Counter({ name: 'x_requests_total', help: 'Requests.', labelNames: ['code', 'handler', 'method'], registers: [theirs] });
    const gauge = new Gauge({ name: 'x_in_flight', help: 'In flight.', labelNames: ['handler'], registers: [theirs] });
    const hist = new Histogram({ name: 'x_seconds', help: 'Latency.', labelNames: ['handler', 'method'], buckets: BUCKETS, registers: [theirs] });
    const c = new CellCounter({ name: 'x_requests_total', help: 'Requests.', labelNames: ['code', 'handler', 'method'], registry: ours });
    const g = new CellGauge({ name: 'x_in_flight', help: 'In flight.', labelNames: ['handler'], registry: ours });
    const h = new CellHistogram({ name: 'x_seconds', help: 'Latency.', labelNames: ['handler', 'method'], buckets: BUCKETS, registry: ours });
    // values on the bounds, between them, under the first and over the last
    const seen: [string, string, number][] = [
      ['manifest', 'GET', 0.005],
      ['manifest', 'GET', 0.0051],
      ['manifest', 'GET', 0],
      ['manifest', 'HEAD', 60],
      ['manifest', 'HEAD', 61],
      ['blob', 'GET', 2.5],
      ['blob', 'GET', 0.3],
      ['blob', 'GET', 1e-9],
    ];
    for (const [handler, method, v] of seen) {
      counter.inc({ code: '200', handler, method });
      c.cell('200', handler, method).value++;
      hist.observe({ handler, method }, v);
      h.observe(h.cell(handler, method), v);
    }
    counter.inc({ code: '404', handler: 'blob', method: 'GET' }, 3);
    c.cell('404', 'blob', 'GET').value += 3;
    gauge.inc({ handler: 'blob' }, 2);
    gauge.dec({ handler: 'blob' });
    gauge.set({ handler: 'manifest' }, 0);
    g.cell('blob').value += 2;
    g.cell('blob').value--;
    g.cell('manifest');
    assert.equal(await ours.metrics(), await theirs.metrics());
    assert.deepEqual(await ours.getMetricsAsJSON(), await theirs.getMetricsAsJSON());
  });

  it('refuses a label set of the wrong length', () => {
    const c = new CellCounter({ name: 'y_total', help: 'y', labelNames: ['a', 'b'], registry: new Registry() });
    assert.throws(() => c.cell('only-one'), /2 label values expected/);
  });

  it('count a request through instrumentRequest: status, handler, sizes, in flight', async () => {
    const sample = async (name: string, labels: string): Promise<number> => {
      const { body } = await exposition();
      const line = body.split('\n').find((l) => l.startsWith(`${name}{${labels}} `));
      return line ? Number(line.split(' ').at(-1)) : 0;
    };
    const server: Server = createServer((req, res) => {
      instrumentRequest(req, res);
      if (req.url?.startsWith('/v2/a/b/manifests/latest')) {
        res.write('12345');
        res.end(Buffer.from('678'));
      } else {
        res.statusCode = 404;
        res.end();
      }
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as AddressInfo).port;
    const get = (path: string, body?: string): Promise<void> =>
      new Promise((resolve, reject) => {
        const req = httpRequest({ port, host: '127.0.0.1', path, method: body ? 'PUT' : 'GET', agent: false }, (res) => {
          res.resume();
          res.on('end', resolve);
        });
        req.on('error', reject);
        req.end(body);
      });
    try {
      const before = {
        ok: await sample('registry_http_requests_total', 'code="200",handler="manifest",method="GET"'),
        missing: await sample('registry_http_requests_total', 'code="404",handler="tags",method="PUT"'),
        bytes: await sample('registry_http_response_size_bytes_sum', 'handler="manifest"'),
        reqBytes: await sample('registry_http_request_size_bytes_sum', 'handler="tags"'),
        slow: await sample('registry_http_request_duration_seconds_count', 'handler="manifest",method="GET"'),
      };
      await get('/v2/a/b/manifests/latest?x=1');
      await get('/v2/a/b/manifests/latest');
      await get('/v2/a/b/tags/list', 'abcd');
      // the 'close' of the response comes after the client has its end
      await new Promise((r) => setTimeout(r, 50));
      assert.equal(await sample('registry_http_requests_total', 'code="200",handler="manifest",method="GET"'), before.ok + 2);
      assert.equal(await sample('registry_http_requests_total', 'code="404",handler="tags",method="PUT"'), before.missing + 1);
      assert.equal(await sample('registry_http_response_size_bytes_sum', 'handler="manifest"'), before.bytes + 16);
      assert.equal(await sample('registry_http_request_size_bytes_sum', 'handler="tags"'), before.reqBytes + 4);
      assert.equal(await sample('registry_http_request_duration_seconds_count', 'handler="manifest",method="GET"'), before.slow + 2);
      assert.equal(await sample('registry_http_in_flight_requests', 'handler="manifest"'), 0);
    } finally {
      await new Promise((r) => server.close(r));
    }
  });
});
