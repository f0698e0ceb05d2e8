import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import { clientAddress, createKoa } from '../../../src/http/app.js';
import { isProxySpec } from '../../../src/config/schema.js';
import { loadConfig } from '../../../src/config/load.js';
import { request } from '../../helpers/http.js';

/** What a handler sees of the client (address, scheme, host) behind trusted_proxies. */
async function seen(trusted: string[], headers: Record<string, string>): Promise<{ address: string; protocol: string; host: string; trusted: unknown }> {
  const app = createKoa(trusted);
  app.use((ctx) => {
    ctx.body = { address: clientAddress(ctx), protocol: ctx.protocol, host: ctx.host, trusted: ctx.state.fromTrustedProxy ?? null };
  });
  const server = app.listen(0, '127.0.0.1');
  await new Promise<void>((r) => server.once('listening', () => r()));
  try {
    const r = await request(`http://127.0.0.1:${(server.address() as AddressInfo).port}`, '/', { headers });
    return r.json();
  } finally {
    await new Promise<void>((r) => server.close(() => r()));
  }
}

const forged = {
  'X-Forwarded-For': '203.0.113.9, 198.51.100.7',
  'X-Forwarded-Proto': 'https',
  'X-Forwarded-Host': 'registry.example.com',
  Host: 'node.internal:5001',
};

describe('trusted_proxies', () => {
  it('unset: forwarded headers are ignored (the socket address, plain http, the Host header)', async () => {
    assert.deepEqual(await seen([], forged), { address: '127.0.0.1', protocol: 'http', host: 'node.internal:5001', trusted: null });
  });

  it('from a peer outside the list: ignored as well', async () => {
    assert.deepEqual(await seen(['10.0.0.0/8', '::1'], forged), { address: '127.0.0.1', protocol: 'http', host: 'node.internal:5001', trusted: false });
  });

  it('from a listed proxy (address or range): the last X-Forwarded-For entry (the one the proxy added), its scheme and host', async () => {
    for (const list of [['127.0.0.1'], ['127.0.0.0/8'], ['10.1.2.3', '127.0.0.1/32']]) {
      assert.deepEqual(await seen(list, forged), { address: '198.51.100.7', protocol: 'https', host: 'registry.example.com', trusted: true }, list.join());
    }
  });

  it('config: addresses and CIDR ranges only', () => {
    for (const ok of ['127.0.0.1', '10.0.0.0/8', 'fd00::/8', '::1', '192.168.1.0/24']) assert.ok(isProxySpec(ok), ok);
    for (const bad of ['', 'nginx', '10.0.0.0/33', '::1/129', '1.2.3.4/', '*', '10.0.0.0/8/1']) assert.ok(!isProxySpec(bad), bad);
    const c = loadConfig({ env: {}, flavor: 'test', overrides: { trusted_proxies: ['10.0.0.0/8'] } });
    assert.deepEqual(c.trusted_proxies, ['10.0.0.0/8']);
    assert.throws(() => loadConfig({ env: {}, flavor: 'test', overrides: { trusted_proxies: ['everyone'] } }), /trusted_proxies/);
  });
});
