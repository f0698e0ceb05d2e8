import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import dns, { type LookupAddress } from 'node:dns';
import { mkdtemp, rm } from 'node:fs/promises';
import { syncBuiltinESMExports } from 'node:module';
import { isIP } from 'node:net';
import { networkInterfaces, tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from '../helpers/http.js';
import { selfSignedCert } from '../helpers/tls.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { cleanup } from '../helpers/counting-proxy.js';
import { hostile, within, type Hostile } from '../helpers/fake-upstream.js';
import type { Response } from '../helpers/http.js';

/**
 * DNS rebinding against the mirror: a URL the upstream hands out (a blob's redirect, a manifest's
 * redirect, a token realm) names a host whose first answer is a public address and whose next is
 * 127.0.0.1. Judged by one resolution and connected to after another, the mirror went to its own
 * loopback. There is no DNS server here: node:dns's lookup (the callback one every connection uses,
 * and the promise one) is replaced in this test process, where the server runs, for names under
 * .rebind.test; the answers follow a script per name. Nothing is ever connected to outside loopback
 * and this machine's own address (the public answer is only ever the first, the one a check sees).
 */

const sha = (b: Buffer | string): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const S2 = 'application/vnd.docker.distribution.manifest.v2+json';
const ACCEPT = { Accept: `${S2}, application/vnd.oci.image.manifest.v1+json` };
const MIRROR = { ttl: 0, negative_ttl: 0, timeout: 1, breaker_failures: 0 };
/** A public address (example.com's of old): what the first resolution answers. */
const PUBLIC = '93.184.216.34';

/** An IPv4 address of this machine other than loopback: an upstream "on the network" without leaving the host. */
const ownAddress = Object.values(networkInterfaces())
  .flat()
  .find((a) => a?.family === 'IPv4' && !a.internal)?.address;

type Api = 'callback' | 'promise';
/** The address a scripted name resolves to on its n-th resolution (0-based) through one of the two APIs. */
type Script = (n: number, api: Api) => string;
const scripts = new Map<string, Script>();
/** Every resolution of a scripted name, in order. */
const asked: { host: string; api: Api; address: string }[] = [];

function scripted(host: string, api: Api): string | undefined {
  const script = scripts.get(host.toLowerCase());
  if (!script) return undefined;
  const address = script(asked.filter((a) => a.host === host).length, api);
  asked.push({ host, api, address });
  return address;
}

/** First a public address, then (every resolution after) 127.0.0.1. */
const rebinding: Script = (n) => (n === 0 ? PUBLIC : '127.0.0.1');

const realLookup = dns.lookup;
const realPromiseLookup = dns.promises.lookup;

function installResolver(): void {
  type Cb = (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void;
  const lookup = (host: string, options: unknown, callback?: Cb): void => {
    const cb = (typeof options === 'function' ? options : callback) as Cb;
    const all = typeof options === 'object' && options !== null && (options as { all?: boolean }).all === true;
    const address = scripted(host, 'callback');
    if (address === undefined) return (realLookup as (h: string, o: unknown, c?: Cb) => void)(host, options, callback);
    const family = isIP(address);
    process.nextTick(() => (all ? cb(null, [{ address, family }]) : cb(null, address, family)));
  };
  const promiseLookup = async (host: string, options?: { all?: boolean }): Promise<unknown> => {
    const address = scripted(host, 'promise');
    if (address === undefined) return (realPromiseLookup as (h: string, o?: unknown) => Promise<unknown>)(host, options);
    const family = isIP(address);
    return options?.all ? [{ address, family }] : { address, family };
  };
  dns.lookup = lookup as typeof dns.lookup;
  dns.promises.lookup = promiseLookup as typeof dns.promises.lookup;
  // the named imports of node:dns and node:dns/promises (`import { lookup } from …`) follow
  syncBuiltinESMExports();
}

function restoreResolver(): void {
  dns.lookup = realLookup;
  dns.promises.lookup = realPromiseLookup;
  syncBuiltinESMExports();
}

const portOf = (h: Hostile): string => new URL(h.url).port;
const refused = (r: Response | 'timeout' | Error): boolean => typeof r === 'object' && !(r instanceof Error) && r.status >= 400 && r.status !== 500;
const show = (r: Response | 'timeout' | Error): string => (typeof r === 'object' && !(r instanceof Error) ? `${r.status} ${r.text.slice(0, 200)}` : String(r));

describe(
  'mirror: DNS rebinding of the URLs an upstream hands out',
  { timeout: 60_000, skip: ownAddress ? undefined : 'no IPv4 address on this machine but loopback' },
  () => {
    let dir: string;
    let tlsCheck: string | undefined;
    let up: Hostile;
    let sameNet: Hostile;
    let local: Hostile;
    let localTls: Hostile;
    let mirror: TestServer;
    const layer = randomBytes(3 * 1024 * 1024 + 7);
    /** Requests the services on the mirror's loopback got. */
    const loopbackSeen = (): number => local.seen.length + localTls.seen.length;

    before(async () => {
      installResolver();
      dir = await mkdtemp(join(tmpdir(), 'lr-rebind-'));
      const tls = selfSignedCert(dir);
      // the mirror's client trusts the self-signed storage on loopback (this test process only): what
      // keeps it from there is the address check, not the certificate
      tlsCheck = process.env.NODE_TLS_REJECT_UNAUTHORIZED;
      process.env.NODE_TLS_REJECT_UNAUTHORIZED = '0';
      // the upstream is on the network (this machine's address there, not loopback): loopback is not its class
      up = await hostile({ host: ownAddress });
      sameNet = await hostile({ host: ownAddress });
      // services on the mirror's own loopback (an admin port, a metadata proxy, a database)
      local = await hostile();
      localTls = await hostile({ tls: { key: tls.key, cert: tls.cert } });
      local.handler = (_req, res) => {
        res.writeHead(200, { 'Content-Length': String(layer.length), 'Content-Type': 'application/json' });
        res.end(layer);
      };
      localTls.handler = local.handler;
      sameNet.handler = local.handler;
      scripts.set('samenet.rebind.test', () => ownAddress!);
      for (const name of ['blob', 'tls', 'manifest', 'realm']) scripts.set(`${name}.rebind.test`, rebinding);
      mirror = await startTestServer({ standalone: true, v2: true, mirror: { upstreams: [{ url: up.url }], ...MIRROR } });
    });
    after(async () => {
      await cleanup(
        () => mirror?.stop(),
        () => up?.close(),
        () => sameNet?.close(),
        () => local?.close(),
        () => localTls?.close(),
      );
      restoreResolver();
      if (tlsCheck === undefined) delete process.env.NODE_TLS_REJECT_UNAUTHORIZED;
      else process.env.NODE_TLS_REJECT_UNAUTHORIZED = tlsCheck;
      await rm(dir, { recursive: true, force: true });
    });

    it('a blob redirected to a name on the upstream’s own network is followed through the guarded lookup (the baseline)', async () => {
      up.handler = (_req, res) => {
        // (with a Content-Length: a chunked answer sends getBlob to node:http, not the bare GET)
        res.writeHead(307, { Location: `http://samenet.rebind.test:${portOf(sameNet)}/storage/x`, 'Content-Length': '0' });
        res.end();
      };
      const r = await request(mirror.url, `/v2/evil/samenet/blobs/${sha(layer)}`);
      assert.equal(r.status, 200, r.text);
      assert.ok(r.body.equals(layer));
      assert.ok(
        asked.some((a) => a.host === 'samenet.rebind.test' && a.api === 'callback'),
        'the connection resolved the name',
      );
    });

    for (const [what, name, scheme, target] of [
      ['a blob redirected (plain http: the bare GET)', 'blob', 'http', () => local],
      ['a blob redirected to https storage (node:https)', 'tls', 'https', () => localTls],
    ] as const) {
      it(`${what} to a name answering ${PUBLIC} first and 127.0.0.1 next: not followed there, 503`, async () => {
        const before = loopbackSeen();
        up.handler = (_req, res) => {
          res.writeHead(307, { Location: `${scheme}://${name}.rebind.test:${portOf(target())}/secret`, 'Content-Length': '0' });
          res.end();
        };
        const r = await within(10_000, request(mirror.url, `/v2/evil/rebind-${name}/blobs/${sha(randomBytes(8))}`));
        assert.equal(loopbackSeen(), before, `the mirror asked its loopback ${local.seen.at(-1)?.line ?? localTls.seen.at(-1)?.line}`);
        assert.ok(typeof r === 'object' && !(r instanceof Error) && r.status === 503, show(r));
        assert.ok(asked.filter((a) => a.host === `${name}.rebind.test`).length >= 2, 'the name was resolved a second time (the rebinding)');
      });
    }

    it(`a manifest redirected to a name answering ${PUBLIC} first and 127.0.0.1 next: not followed there`, async () => {
      const before = loopbackSeen();
      up.handler = (_req, res) => {
        res.writeHead(302, { Location: `http://manifest.rebind.test:${portOf(local)}/secret` });
        res.end();
      };
      const m = await within(10_000, request(mirror.url, '/v2/evil/rebind-manifest/manifests/v1', { headers: ACCEPT }));
      assert.equal(loopbackSeen(), before, `the mirror asked its loopback ${local.seen.at(-1)?.line}`);
      assert.ok(refused(m), show(m));
      assert.ok(asked.filter((a) => a.host === 'manifest.rebind.test').length >= 2, 'the name was resolved a second time (the rebinding)');
    });

    it(`a Bearer realm at a name answering ${PUBLIC} first and 127.0.0.1 next: not asked, nothing of it shown`, async () => {
      const before = loopbackSeen();
      up.handler = (_req, res) => {
        res.writeHead(401, { 'WWW-Authenticate': `Bearer realm="http://realm.rebind.test:${portOf(local)}/token",service="up"` });
        res.end();
      };
      const r = await within(10_000, request(mirror.url, '/v2/evil/rebind-realm/manifests/v1', { headers: ACCEPT }));
      assert.equal(loopbackSeen(), before, `the mirror asked its loopback ${local.seen.at(-1)?.line}`);
      assert.ok(refused(r), show(r));
      assert.ok(asked.filter((a) => a.host === 'realm.rebind.test').length >= 2, 'the name was resolved a second time (the rebinding)');
    });
  },
);

describe(
  'mirror: a pooled connection to a host the upstream handed out',
  { timeout: 60_000, skip: ownAddress ? undefined : 'no IPv4 address on this machine but loopback' },
  () => {
    let up: Hostile;
    let storage: Hostile;
    let mirror: TestServer;
    /** Whether the upstream's name is still on the network (else its address check sees a public one). */
    let upstreamOnNetwork = true;
    const m = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: S2 }));

    before(async () => {
      installResolver();
      up = await hostile({ host: ownAddress });
      storage = await hostile({ host: ownAddress });
      storage.handler = (_req, res) => {
        res.writeHead(200, { 'Content-Type': S2, 'Content-Length': String(m.length) });
        res.end(m);
      };
      // the upstream is configured by name: connected to on the network, but its name's class moves
      // to public (the promise API is what the mirror's address check reads; connections use the other)
      scripts.set('up.rebind.test', (_n, api) => (api === 'promise' && !upstreamOnNetwork ? PUBLIC : ownAddress!));
      // its storage: on the upstream's network, until a check sees a public answer
      scripts.set('pool.rebind.test', (_n, api) => (api === 'promise' && !upstreamOnNetwork ? PUBLIC : ownAddress!));
      mirror = await startTestServer({ standalone: true, v2: true, mirror: { upstreams: [{ url: `http://up.rebind.test:${portOf(up)}` }], ...MIRROR } });
      up.handler = (_req, res) => {
        res.writeHead(302, { Location: `http://pool.rebind.test:${portOf(storage)}/m` });
        res.end();
      };
    });
    after(async () => {
      await cleanup(
        () => mirror?.stop(),
        () => up?.close(),
        () => storage?.close(),
      );
      restoreResolver();
    });

    it('is not reused once the address it is connected to is no longer one the upstream may send the mirror to', async () => {
      // the storage on the upstream's network: followed, and its connection kept for the next request
      const first = await within(10_000, request(mirror.url, '/v2/evil/pool/manifests/v1', { headers: ACCEPT }));
      assert.ok(typeof first === 'object' && !(first instanceof Error) && first.status !== 500, show(first));
      assert.equal(storage.seen.length, 1, 'the storage was asked');
      assert.equal(storage.open(), 1, 'the connection to the storage is kept');
      // now the upstream's name answers a public address (private networks are no longer its), and
      // the storage's name answers a public address to the check: the pooled connection is still to
      // the private one
      upstreamOnNetwork = false;
      const second = await within(10_000, request(mirror.url, '/v2/evil/pool/manifests/v2', { headers: ACCEPT }));
      assert.equal(storage.seen.length, 1, `the mirror asked ${storage.seen.at(-1)?.line} over the pooled connection`);
      assert.ok(refused(second), show(second));
    });
  },
);
