import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { parseChallenge, Upstream, UpstreamUnavailable } from '../../../src/mirror/upstream.js';

describe('mirror upstream client', () => {
  it('parses WWW-Authenticate challenges (Bearer realm/service, Basic; others ignored)', () => {
    assert.deepEqual(parseChallenge('Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull"'), {
      scheme: 'bearer',
      realm: 'https://auth.example/token',
      service: 'registry.example',
    });
    assert.deepEqual(parseChallenge('Basic realm="upstream"'), { scheme: 'basic', realm: 'upstream' });
    assert.deepEqual(parseChallenge('bearer realm=https://a/t'), { scheme: 'bearer', realm: 'https://a/t' });
    assert.equal(parseChallenge('Negotiate abc'), undefined);
    assert.equal(parseChallenge(undefined), undefined);
  });

  it('the breaker opens after the configured failures and fails fast while open', async () => {
    // a port nothing listens on
    const port = await new Promise<number>((r) => {
      const s = createServer().listen(0, '127.0.0.1', () => {
        const p = (s.address() as { port: number }).port;
        s.close(() => r(p));
      });
    });
    const up = new Upstream({ url: `http://127.0.0.1:${port}`, timeoutMs: 2000, breakerFailures: 2, breakerMs: 60_000 });
    try {
      for (let i = 0; i < 2; i++) await assert.rejects(up.request('GET', '/v2/', 'a/b'), UpstreamUnavailable);
      assert.ok(up.open);
      const sent = up.requests;
      await assert.rejects(up.request('GET', '/v2/', 'a/b'), /circuit open/);
      assert.equal(up.requests, sent, 'nothing sent while open');
    } finally {
      up.close();
    }
  });
});
