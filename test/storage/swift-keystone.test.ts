import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, request as httpRequest } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { StorageUnavailableError } from '../../src/storage/driver.js';
import { createDriver } from '../../src/storage/drivers/index.js';
import { createSwiftDriver, swiftOptions } from '../../src/storage/drivers/swift.js';
import { cephMissing, startRgw, type Rgw } from '../helpers/ceph.js';
import { spawnServer } from '../helpers/child.js';
import { request } from '../helpers/http.js';
import { IDENTITY, REGION, startKeystone, type KeystoneStandIn } from '../helpers/keystone.js';
import { startTestServer } from '../helpers/server.js';
import { pushV2 } from '../helpers/v2-client.js';
import { runDriverConformance } from './conformance.js';

const skip = cephMissing();
const MiB = 1024 * 1024;
const sha = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;
let rgw: Rgw | undefined;
let ks: KeystoneStandIn | undefined;

/** The test's own container operations go straight to RGW with auth v1. */
async function swiftAuth(): Promise<{ url: string; token: string }> {
  const r = await fetch(rgw!.swiftAuthUrl, { headers: { 'X-Auth-User': rgw!.swiftUser, 'X-Auth-Key': rgw!.swiftKey } });
  return { url: r.headers.get('x-storage-url')!, token: r.headers.get('x-auth-token')! };
}
async function freshContainer(): Promise<string> {
  const name = rgw!.uniqueBucket('ks');
  const { url, token } = await swiftAuth();
  const r = await fetch(`${url}/${name}`, { method: 'PUT', headers: { 'X-Auth-Token': token } });
  assert.ok(r.status === 201 || r.status === 202, `container PUT ${r.status}`);
  return name;
}
async function dropContainer(container: string): Promise<void> {
  const { url, token } = await swiftAuth();
  for (;;) {
    const r = await fetch(`${url}/${container}?format=json`, { headers: { 'X-Auth-Token': token } });
    const names = r.status === 204 ? [] : ((await r.json()) as { name: string }[]).map((e) => e.name);
    if (names.length === 0) break;
    for (const name of names)
      await fetch(`${url}/${container}/${name.split('/').map(encodeURIComponent).join('/')}`, { method: 'DELETE', headers: { 'X-Auth-Token': token } });
  }
  await fetch(`${url}/${container}`, { method: 'DELETE', headers: { 'X-Auth-Token': token } });
}

/** Our swift_* keys for Keystone v3 as a site would write them (user and project in different domains). */
const v3Keys = (container: string, extra: Record<string, unknown> = {}): Parameters<typeof swiftOptions>[0] => ({
  storage_path: 'registry',
  swift_authurl: `${ks!.url}/v3`,
  swift_user: IDENTITY.user,
  swift_password: IDENTITY.password,
  swift_domain_name: IDENTITY.userDomain,
  swift_tenant_name: IDENTITY.project,
  swift_tenant_domain_name: IDENTITY.projectDomain,
  swift_region_name: REGION,
  swift_container: container,
  swift_segment_size: MiB,
  ...extra,
});
const v2Keys = (container: string, extra: Record<string, unknown> = {}): Parameters<typeof swiftOptions>[0] => ({
  storage_path: 'registry',
  swift_authurl: `${ks!.url}/v2.0`,
  swift_user: IDENTITY.user,
  swift_password: IDENTITY.password,
  swift_tenant_name: IDENTITY.project,
  swift_region_name: REGION,
  swift_container: container,
  swift_segment_size: MiB,
  ...extra,
});

/** The start-up error of a driver built by the factory (undefined when it starts). */
async function startError(keys: Parameters<typeof swiftOptions>[0]): Promise<string | undefined> {
  try {
    const d = await createDriver({ storage: 'swift', ...keys } as Parameters<typeof createDriver>[0]);
    await d.close?.();
    return undefined;
  } catch (e) {
    return (e as Error).message;
  }
}

describe('swift driver through Keystone v2/v3 (a stand-in on loopback) on Ceph RGW', { skip, timeout: 900_000 }, () => {
  before(async () => {
    rgw = await startRgw();
    ks = await startKeystone({ authUrl: rgw.swiftAuthUrl, user: rgw.swiftUser, key: rgw.swiftKey });
  });
  after(async () => {
    await ks?.close();
    await rgw?.stop();
  });

  // the whole suite, unchanged, with the storage URL and token from the Keystone v3 catalog
  runDriverConformance('swift through Keystone v3 (Ceph RGW)', async () => {
    const container = await freshContainer();
    return { driver: createSwiftDriver(swiftOptions(v3Keys(container))), cleanup: () => dropContainer(container) };
  });

  it("v3: the request bodies of ncw/swift (user domain, project by name and domain or by id, trust) are accepted; the project domain defaults to the user's", async () => {
    const container = await freshContainer();
    try {
      const variants: Array<[Record<string, unknown>, unknown]> = [
        [{}, { project: { name: IDENTITY.project, domain: { name: IDENTITY.projectDomain } } }],
        [
          {
            swift_domain_name: null,
            swift_domain_id: IDENTITY.userDomainId,
            swift_tenant_name: null,
            swift_tenant_domain_name: null,
            swift_tenant_id: IDENTITY.projectId,
          },
          { project: { id: IDENTITY.projectId } },
        ],
        [
          { swift_tenant_domain_name: null, swift_tenant_domain_id: IDENTITY.projectDomainId },
          { project: { name: IDENTITY.project, domain: { id: IDENTITY.projectDomainId } } },
        ],
        [{ swift_trust_id: IDENTITY.trustId }, { 'OS-TRUST:trust': { id: IDENTITY.trustId } }],
      ];
      for (const [extra, scope] of variants) {
        const before = ks!.logins.length;
        const msg = await startError(v3Keys(container, extra));
        assert.equal(msg, undefined, `${JSON.stringify(extra)}: ${msg}`);
        const sent = ks!.logins[before]!.body as { auth: { scope: unknown; identity: { methods: string[]; password: { user: Record<string, unknown> } } } };
        assert.deepEqual(sent.auth.scope, scope);
        assert.deepEqual(sent.auth.identity.methods, ['password']);
        assert.equal(sent.auth.identity.password.user.name, IDENTITY.user);
      }
      // no tenant domain: the project is looked up in the user's domain (Services), where it is not
      const msg = await startError(v3Keys(container, { swift_tenant_domain_name: null }));
      assert.match(msg ?? '', /refused the credentials of user "registry-svc" in domain Services \(project registry\): 401 Could not find project: registry\./);
    } finally {
      await dropContainer(container);
    }
  });

  it('v3: the catalog endpoint is chosen by region and interface; a region or interface without one fails at start naming what the catalog has', async () => {
    const container = await freshContainer();
    try {
      assert.equal(await startError(v3Keys(container, { swift_endpoint_type: 'internalURL' })), undefined);
      const none = await startError(v3Keys(container, { swift_region_name: 'Nowhere' }));
      assert.match(
        none ?? '',
        /Keystone v3 at http:\/\/127\.0\.0\.1:\d+\/v3\/auth\/tokens: the catalog has no object-store endpoint with interface public in region Nowhere \(project registry\); object-store endpoints: RegionOne\/public, RegionOne\/internal, RegionOne\/admin, RegionTwo\/public/,
      );
      // admin is a dead address in this catalog; no region: the first listed (RegionOne's, dead too)
      for (const extra of [{ swift_endpoint_type: 'admin' }, { swift_region_name: null }]) {
        const dead = await startError(v3Keys(container, extra));
        assert.match(dead ?? '', /swift: cannot use container .* \(auth v3\): HEAD 127\.0\.0\.1:9: connect ECONNREFUSED/, JSON.stringify(extra));
      }
    } finally {
      await dropContainer(container);
    }
  });

  it('bad credentials fail at start with a clear message (v3 and v2), without the password in it', async () => {
    const container = await freshContainer();
    try {
      const v3 = await startError(v3Keys(container, { swift_password: 'wrong-password' }));
      assert.match(
        v3 ?? '',
        /^swift: cannot use container "ks-[^"]+" at http:\/\/127\.0\.0\.1:\d+\/v3 \(auth v3\): Keystone v3 at http:\/\/127\.0\.0\.1:\d+\/v3\/auth\/tokens refused the credentials of user "registry-svc" in domain Services \(project registry\): 401 The request you have made requires authentication\.$/,
      );
      const wrongDomain = await startError(v3Keys(container, { swift_domain_name: 'Default' }));
      assert.match(wrongDomain ?? '', /refused the credentials of user "registry-svc" in domain Default/);
      const v2 = await startError(v2Keys(container, { swift_password: 'wrong-password' }));
      assert.match(
        v2 ?? '',
        /^swift: cannot use container "ks-[^"]+" at http:\/\/127\.0\.0\.1:\d+\/v2\.0 \(auth v2\): Keystone v2 at http:\/\/127\.0\.0\.1:\d+\/v2\.0\/tokens refused the credentials of user "registry-svc" \(project registry\): 401/,
      );
      const tenant = await startError(v2Keys(container, { swift_tenant_name: 'someone-else' }));
      assert.match(tenant ?? '', /refused the credentials of user "registry-svc" \(project someone-else\)/);
      for (const m of [v3, wrongDomain, v2, tenant]) assert.doesNotMatch(m ?? '', /wrong-password|pa55-w0rd/);
      // no tenant with v2: an unscoped token, whose catalog is empty
      const unscoped = await startError(v2Keys(container, { swift_tenant_name: null }));
      assert.match(
        unscoped ?? '',
        /the catalog has no object-store endpoint with a publicURL in region RegionTwo \(no tenant or tenantid: an unscoped token has no catalog\)/,
      );
    } finally {
      await dropContainer(container);
    }
  });

  it('a token near expiry is renewed before it expires; a token the store refuses (401) is renewed once, by one login for concurrent requests', async () => {
    const container = await freshContainer();
    const d = createSwiftDriver(swiftOptions(v3Keys(container)));
    try {
      // a long-lived token: one login for many requests
      ks!.ttlSeconds = 3600;
      await d.putContent('a/one', Buffer.from('1'));
      for (let i = 0; i < 5; i++) assert.equal((await d.getContent('a/one')).toString(), '1');
      assert.equal(d.logins, 1);
      // tokens of 4 s: renewed at half their life (under a minute left), before RGW could refuse them
      ks!.ttlSeconds = 4;
      await d.check(); // still the long-lived one
      assert.equal(d.logins, 1);
      const d2 = createSwiftDriver(swiftOptions(v3Keys(container)));
      try {
        const t0 = Date.now();
        await d2.check();
        await d2.getContent('a/one');
        if (Date.now() - t0 < 1500) assert.equal(d2.logins, 1, 'not yet within half the life');
        await new Promise((r) => setTimeout(r, Math.max(0, t0 + 2300 - Date.now())));
        await d2.getContent('a/one');
        assert.equal(d2.logins, 2, 'renewed after half its life, before expiry');
      } finally {
        await d2.close();
      }
      ks!.ttlSeconds = 3600;
      // the next login hands out a token RGW does not know: the driver gets 401 and logs in again,
      // once for all requests that carried it. A proxy in front of RGW holds RGW's 401s back, the
      // n-th by n × 150 ms, so most arrive after the new login: they must reuse it, not log in again
      const held = { n: 0 };
      let bogus = '';
      const rgwUrl = new URL(rgw!.swiftAuthUrl);
      const gate = createServer((req, res) => {
        const up = httpRequest({ host: rgwUrl.hostname, port: rgwUrl.port, method: req.method, path: req.url, headers: req.headers }, (ur) => {
          const delay = req.headers['x-auth-token'] === bogus ? held.n++ * 150 : 0;
          setTimeout(() => {
            res.writeHead(ur.statusCode ?? 502, ur.headers);
            ur.pipe(res);
          }, delay);
        });
        up.on('error', () => res.destroy());
        req.pipe(up);
      });
      await new Promise<void>((r) => gate.listen(0, '127.0.0.1', () => r()));
      ks!.storageOrigin = `http://127.0.0.1:${(gate.address() as AddressInfo).port}`;
      const d3 = createSwiftDriver(swiftOptions(v3Keys(container)));
      try {
        bogus = `AUTH_tk${randomBytes(16).toString('hex')}`;
        ks!.nextBogusToken = bogus;
        const reads = await Promise.all(Array.from({ length: 8 }, () => d3.getContent('a/one')));
        assert.deepEqual(reads.map(String), Array(8).fill('1'));
        assert.equal(held.n, 8, 'eight requests carried the refused token');
        assert.equal(d3.logins, 2, 'one login after the 401s of eight concurrent requests');
      } finally {
        ks!.storageOrigin = undefined;
        await d3.close();
        gate.closeAllConnections();
        await new Promise((r) => gate.close(r));
      }
    } finally {
      ks!.ttlSeconds = 3600;
      await d.close();
      await dropContainer(container);
    }
  });

  it('v2: a key of 32+ characters is tried as a Rackspace API key first, then as a password; the form that worked is kept', async () => {
    const container = await freshContainer();
    const longPassword = `${'pw-'.repeat(12)}!`;
    const other = await startKeystone({ authUrl: rgw!.swiftAuthUrl, user: rgw!.swiftUser, key: rgw!.swiftKey }, { ...IDENTITY, password: longPassword });
    try {
      const keys = (password: string): Parameters<typeof swiftOptions>[0] => ({
        ...v2Keys(container),
        swift_authurl: `${other.url}/v2.0`,
        swift_password: password,
      });
      // an API key (Rackspace Cloud Files): accepted at the first try
      const d = createSwiftDriver(swiftOptions(keys(IDENTITY.apiKey)));
      await d.check();
      await d.close();
      assert.deepEqual(other.logins.at(-1)!.body, {
        auth: { 'RAX-KSKEY:apiKeyCredentials': { username: IDENTITY.user, apiKey: IDENTITY.apiKey }, tenantName: IDENTITY.project },
      });
      assert.equal(other.refused, 0);
      // a long password: refused as an API key, accepted as a password; later logins go straight to it
      const p = createSwiftDriver(swiftOptions(keys(longPassword)));
      try {
        other.nextBogusToken = `AUTH_tk${randomBytes(16).toString('hex')}`;
        await p.check(); // the bogus token: 401 from RGW, a second login
        assert.equal(p.logins, 2);
        assert.equal(other.refused, 1, 'the API key form once, at the first login only');
        assert.deepEqual(other.logins.at(-1)!.body, {
          auth: { passwordCredentials: { username: IDENTITY.user, password: longPassword }, tenantName: IDENTITY.project },
        });
      } finally {
        await p.close();
      }
    } finally {
      await other.close();
      await dropContainer(container);
    }
  });

  it('Keystone away when a token is due for renewal: the old token serves until it expires, then requests fail (503-class), and work again once Keystone is back', async () => {
    const container = await freshContainer();
    ks!.ttlSeconds = 4;
    const d = createSwiftDriver(swiftOptions(v3Keys(container)));
    try {
      const t0 = Date.now();
      await d.putContent('k/v', Buffer.from('kept'));
      await new Promise((r) => setTimeout(r, Math.max(0, t0 + 2300 - Date.now())));
      ks!.unavailable = true;
      assert.equal((await d.getContent('k/v')).toString(), 'kept', 'renewal failed: the old token, still valid, is used');
      assert.equal(d.logins, 2, 'a renewal was tried');
      await d.getContent('k/v');
      assert.equal(d.logins, 2, 'not again at once: no login per request while Keystone is away');
      await new Promise((r) => setTimeout(r, Math.max(0, t0 + 4500 - Date.now())));
      await assert.rejects(
        d.getContent('k/v'),
        (e: Error) => e instanceof StorageUnavailableError && /Keystone v3 at .* answered 503: Keystone is away/.test(e.message),
      );
      ks!.unavailable = false;
      ks!.ttlSeconds = 3600;
      assert.equal((await d.getContent('k/v')).toString(), 'kept');
    } finally {
      ks!.unavailable = false;
      ks!.ttlSeconds = 3600;
      await d.close();
      await dropContainer(container);
    }
  });

  it('v2: the registry with the Python swift_* keys through Keystone v2 (tenant id, internal endpoint): push and pull an image and a 3 MiB blob', async () => {
    const container = await freshContainer();
    const s = await startTestServer({
      standalone: true,
      v2: true,
      storage: 'swift',
      ...v2Keys(container, { swift_tenant_name: null, swift_tenant_id: IDENTITY.projectId, swift_endpoint_type: 'internalURL' }),
    });
    try {
      const before = ks!.logins.length;
      const pushed = await pushV2(s.url, 'ns/keystone', 'v1');
      const m = await request(s.url, '/v2/ns/keystone/manifests/v1', { headers: { Accept: 'application/vnd.docker.distribution.manifest.v2+json' } });
      assert.equal(m.status, 200, m.text);
      assert.ok(m.body.equals(pushed.manifest));
      const layer = await request(s.url, `/v2/ns/keystone/blobs/${pushed.layer}`);
      assert.equal(layer.status, 200);
      assert.equal(sha(layer.body), pushed.layer);
      const blob = randomBytes(3 * MiB + 5);
      const put = await request(s.url, `/v2/ns/keystone/blobs/uploads/?digest=${sha(blob)}`, { method: 'POST', body: blob });
      assert.equal(put.status, 201, put.text);
      const got = await request(s.url, `/v2/ns/keystone/blobs/${sha(blob)}`);
      assert.equal(sha(got.body), sha(blob));
      assert.equal(ks!.logins.length, before, 'the token from start-up served every request');
      const sent = ks!.logins.at(-1)!;
      assert.equal(sent.api, 'v2');
      assert.deepEqual(sent.body, { auth: { passwordCredentials: { username: IDENTITY.user, password: IDENTITY.password }, tenantId: IDENTITY.projectId } });
    } finally {
      await s.stop();
      await dropContainer(container);
    }
  });

  it("distribution's storage.swift with Keystone v3 keys and REGISTRY_STORAGE_SWIFT_* overrides starts and serves; a wrong password stops it at start", async () => {
    const container = await freshContainer();
    const work = await mkdtemp(join(tmpdir(), 'lr-ks-'));
    try {
      const file = join(work, 'config.yml');
      await writeFile(
        file,
        [
          'version: 0.1',
          'storage:',
          '  swift:',
          `    authurl: ${ks!.url}/v3`,
          '    username: placeholder',
          '    password: placeholder',
          `    container: ${container}`,
          `    domain: ${IDENTITY.userDomain}`,
          `    tenant: ${IDENTITY.project}`,
          `    region: ${REGION}`,
          '    endpointtype: public',
          '',
        ].join('\n'),
      );
      const env = {
        REGISTRY_CONFIGURATION_PATH: file,
        REGISTRY_STORAGE_SWIFT_USERNAME: IDENTITY.user,
        REGISTRY_STORAGE_SWIFT_TENANTDOMAINID: IDENTITY.projectDomainId,
        REGISTRY_STORAGE_SWIFT_AUTHVERSION: '3',
      };
      const s = await spawnServer({ ...env, REGISTRY_STORAGE_SWIFT_PASSWORD: IDENTITY.password });
      try {
        const blob = randomBytes(2 * MiB + 3);
        const put = await request(s.url, `/v2/ns/dist/blobs/uploads/?digest=${sha(blob)}`, { method: 'POST', body: blob });
        assert.equal(put.status, 201, put.text);
        const got = await request(s.url, `/v2/ns/dist/blobs/${sha(blob)}`);
        assert.equal(sha(got.body), sha(blob));
        const sent = ks!.logins.at(-1)!.body as { auth: { scope: unknown } };
        assert.deepEqual(sent.auth.scope, { project: { name: IDENTITY.project, domain: { id: IDENTITY.projectDomainId } } });
      } finally {
        s.proc.kill('SIGTERM');
        await s.exited;
      }
      const bad = await spawnServer({ ...env, REGISTRY_STORAGE_SWIFT_PASSWORD: 'wrong' }).then(
        (x) => {
          x.proc.kill('SIGKILL');
          return new Error('started');
        },
        (e: unknown) => e as Error,
      );
      assert.match(
        bad.message,
        /swift: cannot use container "ks-[^"]+" at http:\/\/127\.0\.0\.1:\d+\/v3 \(auth v3\): Keystone v3 at .* refused the credentials of user "registry-svc" in domain Services \(project registry\): 401/,
      );
    } finally {
      await rm(work, { recursive: true, force: true });
      await dropContainer(container);
    }
  });
});
