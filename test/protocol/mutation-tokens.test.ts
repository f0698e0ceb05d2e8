import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SignJWT, type JWTPayload } from 'jose';
import { request, type Response } from '../helpers/http.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { makeImage, type TestImage } from '../helpers/v1-client.js';
import { accountToken, basic, Site } from '../helpers/accounts.js';
import { findUserByName, saveUser } from '../../src/db/users.js';
import { addCollaborator, findRepository } from '../../src/db/repositories.js';
import { V1TokenSigner } from '../../src/auth/v1-token.js';
import { libtrustKid } from '../../src/content/schema1.js';

/**
 * Issue 17 (mutation testing, group "tokens"): v1 tokens (auth/v1-token.ts), v2 JWT verification
 * (auth/v2-jwt.ts), the /v2/ authorizer's decision and challenge (auth/v2-registry-auth.ts) and the
 * scope comparison (auth/v2-scope.ts missingAccess), each through HTTP with tokens forged here from
 * the server's own secrets (token_secret, token_signing_key), so every claim can be bent one at a time.
 */

const SECRET = 'mutation-tokens-secret';
const ISSUER = 'mutation-issuer';

describe('mutation group tokens', () => {
  let s: TestServer;
  let site: Site;
  let signer: V1TokenSigner;
  let keyDir: string;
  let key: KeyObject;
  let kid: string;
  let service: string;
  let img: TestImage;
  const ids: Record<string, number> = {};

  before(async () => {
    keyDir = await mkdtemp(join(tmpdir(), 'lr-mut-key-'));
    const pair = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    key = pair.privateKey;
    kid = libtrustKid(pair.publicKey);
    const keyPath = join(keyDir, 'signing.pem');
    await writeFile(keyPath, pair.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString());
    s = await startTestServer({ v2: true, bcrypt_cost: 4, token_cache_ttl: 0, token_secret: SECRET, token_issuer: ISSUER, token_signing_key: keyPath });
    site = new Site(s.url, s.url);
    signer = new V1TokenSigner(Buffer.from(SECRET, 'utf8'), 3600);
    for (const [u, p] of [
      ['alice', 'alicepw'],
      ['carl', 'carlpw'],
      ['otto', 'ottopw'],
      ['colon', 'pass:with:colons'],
    ] as const) {
      await saveUser(s.db!, { username: u, email: `${u}@example.com`, password: p, active: true }, { cost: 4 });
      ids[u] = (await findUserByName(s.db!, u))!.id;
    }
    img = makeImage();
    await site.pushV1('alice/priv', ['alice', 'alicepw'], [img]);
    await site.setAccess('alice/priv', ['alice', 'alicepw'], 'private');
    await addCollaborator(s.db!, (await findRepository(s.db!, 'alice', 'priv'))!.id, ids.carl!, 'read');
    service = await site.v2Service();
  });
  after(async () => {
    await s?.stop();
    await rm(keyDir, { recursive: true, force: true });
  });

  describe('v1 tokens (X-Docker-Token), verified by the index for the registry', () => {
    const layer = () => `/v1/images/${img.id}/json`;
    const reg = (authorization: string) => request(s.url, layer(), { headers: { Authorization: authorization } });
    const index = (authorization: string) => request(s.url, '/v1/repositories/alice/priv/images', { headers: { Authorization: authorization } });

    it('a token the index signed works; its account decides (a collaborator yes, a stranger no, anonymous no)', async () => {
      assert.equal((await reg(`Token ${await accountToken(s.db!, signer, 'alice/priv', 'read', ids.alice!)}`)).status, 200);
      assert.equal((await reg(`Token ${await accountToken(s.db!, signer, 'alice/priv', 'read', ids.carl!)}`)).status, 200);
      assert.equal((await reg(`Token ${await accountToken(s.db!, signer, 'alice/priv', 'read', ids.otto!)}`)).status, 401);
      assert.equal((await reg(`Token ${signer.issue('alice/priv', 'read', 0)}`)).status, 401);
      const i8 = await index(`Token ${await accountToken(s.db!, signer, 'alice/priv', 'read', ids.carl!)}`);
      assert.equal(i8.status, 200, i8.text);
      assert.deepEqual(
        i8.json<{ id: string }[]>().map((e) => e.id),
        [img.id],
      );
    });

    it('expiry: a token whose time is up is refused; one with seconds left is taken', async () => {
      const now = Date.now();
      assert.equal(
        (await reg(`Token ${await accountToken(s.db!, signer, 'alice/priv', 'read', ids.alice!, now - 3600_000 - 5000)}`)).status,
        401,
        'expired 5 s ago',
      );
      assert.equal(
        (await reg(`Token ${await accountToken(s.db!, signer, 'alice/priv', 'read', ids.alice!, now - 3600_000 + 30_000)}`)).status,
        200,
        '30 s left',
      );
      const short = new V1TokenSigner(Buffer.from(SECRET, 'utf8'), 2);
      assert.equal((await index(`Token ${await accountToken(s.db!, short, 'alice/priv', 'read', ids.alice!)}`)).status, 200, 'a 2 s token, used at once');
    });

    it('every part is covered by the MAC: signature, expiry, account, repository, access', async () => {
      const t = await accountToken(s.db!, signer, 'alice/priv', 'read', ids.alice!);
      const m = /^signature=(\d+)\.(\d+)\.([^.]+)\.([^,]+),repository="([^"]+)",access=(\w+)$/.exec(t);
      assert.ok(m, t);
      const [, exp, uid, nonce, mac] = m;
      const make = (e: string, u: string, n: string, sig: string, repo = 'alice/priv', access = 'read') =>
        `Token signature=${e}.${u}.${n}.${sig},repository="${repo}",access=${access}`;
      const flip = (x: string) => (x[0] === 'A' ? 'B' : 'A') + x.slice(1);
      for (const [label, header] of [
        ['mac changed', make(exp!, uid!, nonce!, flip(mac!))],
        ['mac one character short', make(exp!, uid!, nonce!, mac!.slice(1))],
        ['mac one character long', make(exp!, uid!, nonce!, `${mac!}A`)],
        ['expiry moved', make(String(Number(exp) + 100), uid!, nonce!, mac!)],
        ['account changed', make(exp!, String(ids.carl), nonce!, mac!)],
        ['nonce changed', make(exp!, uid!, flip(nonce!), mac!)],
        ['no nonce', `Token signature=${exp!}.${uid!}.${mac!},repository="alice/priv",access=read`],
        ['expiry not a number', make(`x${exp!}`, uid!, nonce!, mac!)],
        ['repository changed', make(exp!, uid!, nonce!, mac!, 'alice/pub')],
        ['access widened', make(exp!, uid!, nonce!, mac!, 'alice/priv', 'write')],
        ['unknown access', make(exp!, uid!, nonce!, mac!, 'alice/priv', 'admin')],
        ['no signature', 'Token repository="alice/priv",access=read'],
        ['garbage after the signature', `${make(exp!, uid!, nonce!, mac!)}`.replace(`.${mac!},`, `.${mac!}!,`)],
      ] as const) {
        const r = await index(header);
        assert.equal(r.status, 401, `index, ${label}: ${r.status} ${r.text}`);
        assert.equal((await reg(header)).status, 401, `registry, ${label}`);
      }
      assert.equal((await index(make(exp!, uid!, nonce!, mac!))).status, 200, 'the unbent token');
    });

    it('the index reads the header as the registry does: prefixes, spacing, first of a repeated key', async () => {
      const t = await accountToken(s.db!, signer, 'alice/priv', 'read', ids.alice!);
      for (const h of [`Token ${t}`, `token ${t}`, `Token Token ${t}`, `  Token   ${t}`, `Token ${t},repository="alice/pub"`, `Token ${t},access=write`]) {
        const r = await index(h);
        assert.equal(r.status, 200, `${h}: ${r.status} ${r.text}`);
      }
      const colon = t.replace('repository="alice/priv"', 'repository:"alice/priv"');
      assert.equal((await index(`Token ${colon}`)).status, 200, '`key:"value"` is the Python registry grammar too');
    });

    it('Basic credentials: user:pass, split at the first colon, case-insensitive scheme, nothing else', async () => {
      const b64 = (x: string) => Buffer.from(x).toString('base64');
      const login = (authorization: string) => request(s.url, '/v1/users/', { headers: { Authorization: authorization } });
      assert.equal((await login(basic('alice', 'alicepw'))).status, 200);
      assert.equal((await login(basic('colon', 'pass:with:colons'))).status, 200, 'the password keeps its colons');
      assert.equal((await login(`basic ${b64('alice:alicepw')}`)).status, 200);
      assert.equal((await login(`  Basic   ${b64('alice:alicepw')}  `)).status, 200);
      assert.equal((await login(basic('alice', 'wrong'))).status, 401);
      assert.equal((await login(`Basic ${b64('alicealicepw')}`)).status, 401, 'no colon');
      assert.equal((await login(`Basic ${b64(':alicepw')}`)).status, 401, 'no user');
      assert.equal((await login(`Basic ${b64('alice:alicepw')} extra`)).status, 401);
      assert.equal((await login(`Basic! ${b64('alice:alicepw')}`)).status, 401);
      assert.equal((await login(`xBasic ${b64('alice:alicepw')}`)).status, 401);
      assert.equal((await login(`Basic ${b64('alice:alicepw')}*`)).status, 401);
    });
  });

  describe('v2 Bearer JWTs on /v2/', () => {
    const forge = async (
      claims: JWTPayload,
      opts: { aud?: string; iss?: string; exp?: number | null; nbf?: number; kid?: string; sub?: string; alg?: string; secret?: Uint8Array } = {},
    ): Promise<string> => {
      const now = Math.floor(Date.now() / 1000);
      let j = new SignJWT(claims)
        .setProtectedHeader({ alg: opts.alg ?? 'ES256', kid: opts.kid ?? kid, typ: 'JWT' })
        .setIssuer(opts.iss ?? ISSUER)
        .setAudience(opts.aud ?? service)
        .setSubject(opts.sub ?? 'alice')
        .setIssuedAt(now)
        .setNotBefore(opts.nbf ?? now);
      if (opts.exp !== null) j = j.setExpirationTime(opts.exp ?? now + 300);
      return j.sign(opts.secret ?? key);
    };
    const pullApp = [{ type: 'repository', name: 'alice/app', actions: ['pull'] }];
    const tags = (auth: string | undefined) => request(s.url, '/v2/alice/app/tags/list', { headers: auth !== undefined ? { Authorization: auth } : {} });
    const realm = () => `http://${new URL(s.url).host}/v2/token`;
    const challenge = (error?: string, scope = 'repository:alice/app:pull') =>
      `Bearer realm="${realm()}",service="${service}"${scope ? `,scope="${scope}"` : ''}${error ? `,error="${error}"` : ''}`;

    /** Past the authorizer: no such repository (404 NAME_UNKNOWN), not 401. */
    const assertAllowed = (r: Response, label: string) => {
      assert.equal(r.status, 404, `${label}: ${r.status} ${r.text}`);
      assert.equal(r.json<{ errors: { code: string }[] }>().errors[0]!.code, 'NAME_UNKNOWN', label);
    };
    const assertRefused = (r: Response, label: string, reason: string | undefined, error: string | undefined, scope?: string) => {
      assert.equal(r.status, 401, `${label}: ${r.status} ${r.text}`);
      assert.equal(r.headers['www-authenticate'], challenge(error, scope), label);
      const e = r.json<{ errors: { code: string; message: string; detail: unknown }[] }>().errors[0]!;
      assert.equal(e.code, 'UNAUTHORIZED', label);
      if (reason !== undefined) assert.equal(e.message, reason, label);
    };

    it('a good token passes; none, or another scheme, gets the bare challenge with the scope and its detail', async () => {
      assertAllowed(await tags(`Bearer ${await forge({ access: pullApp })}`), 'good');
      assertAllowed(await tags(`bearer   ${await forge({ access: pullApp })}  `), 'lowercase scheme, spaces');
      const none = await tags(undefined);
      assertRefused(none, 'no header', undefined, undefined);
      assert.deepEqual(none.json<{ errors: { detail: unknown }[] }>().errors[0]!.detail, [{ Type: 'repository', Name: 'alice/app', Action: 'pull' }]);
      assertRefused(await tags(basic('alice', 'alicepw')), 'Basic', undefined, undefined);
      assertRefused(await tags(`Bearer ${await forge({ access: pullApp })} x`), 'two words', undefined, undefined);
      assertRefused(await tags(`XBearer ${await forge({ access: pullApp })}`), 'the scheme is the first word', undefined, undefined);
      const base = await request(s.url, '/v2/');
      assert.equal(base.status, 401);
      assert.equal(base.headers['www-authenticate'], challenge(undefined, ''), '/v2/ needs no scope: none in the challenge');
      assert.equal((await request(s.url, '/v2/', { headers: { Authorization: `Bearer ${await forge({})}` } })).status, 200);
    });

    it('each failed check is refused as invalid_token with its reason', async () => {
      const now = Math.floor(Date.now() / 1000);
      const good = await forge({ access: pullApp });
      const [h, p, sig] = good.split('.') as [string, string, string];
      const cases: [string, string, string][] = [
        ['not a JWT', 'abc', 'malformed token'],
        ['four parts', `${good}.x`, 'malformed token'],
        ['two parts', `${h}.${p}`, 'malformed token'],
        ['signature of another payload', `${h}.${(await forge({ access: pullApp, x: 1 })).split('.')[1]}.${sig}`, 'signature invalid'],
        ['unknown key', await forge({ access: pullApp }, { kid: 'ABCD:EFGH' }), 'token signed by an untrusted key'],
        ['other audience', await forge({ access: pullApp }, { aud: 'other-service' }), 'token aud invalid'],
        ['other issuer', await forge({ access: pullApp }, { iss: 'other-issuer' }), 'token iss invalid'],
        ['expired beyond the leeway', await forge({ access: pullApp }, { exp: now - 120 }), 'token expired'],
        ['not yet valid beyond the leeway', await forge({ access: pullApp }, { nbf: now + 120 }), 'token nbf invalid'],
        ['no expiry', await forge({ access: pullApp }, { exp: null }), 'token exp invalid'],
        ['a refresh token', await forge({ access: pullApp, use: 'refresh' }), 'a refresh token is not an access token'],
        ['HS256 (algorithm confusion)', await forge({ access: pullApp }, { alg: 'HS256', secret: new TextEncoder().encode('x'.repeat(32)) }), 'token invalid'],
      ];
      for (const [label, token, reason] of cases) assertRefused(await tags(`Bearer ${token}`), label, `authentication required: ${reason}`, 'invalid_token');
    });

    it('the 60 s leeway: expired or not yet valid by 30 s still passes', async () => {
      const now = Math.floor(Date.now() / 1000);
      assertAllowed(await tags(`Bearer ${await forge({ access: pullApp }, { exp: now - 30 })}`), 'expired 30 s ago');
      assertAllowed(await tags(`Bearer ${await forge({ access: pullApp }, { nbf: now + 30 })}`), 'valid in 30 s');
    });

    it('scope: every needed action on the same type and name, or *; malformed access entries count for nothing', async () => {
      const upload = (token: string) => request(s.url, '/v2/alice/app/blobs/uploads/', { method: 'POST', headers: { Authorization: `Bearer ${token}` } });
      const scope = 'repository:alice/app:pull,push';
      const refusedScope = async (access: unknown, label: string) => {
        const r = await upload(await forge({ access } as JWTPayload));
        assertRefused(r, label, 'authentication required: insufficient scope', 'insufficient_scope', scope);
        assert.deepEqual(
          r.json<{ errors: { detail: unknown }[] }>().errors[0]!.detail,
          [
            { Type: 'repository', Name: 'alice/app', Action: 'pull' },
            { Type: 'repository', Name: 'alice/app', Action: 'push' },
          ],
          label,
        );
      };
      const accepted = async (access: unknown, label: string) => {
        const r = await upload(await forge({ access } as JWTPayload));
        assert.equal(r.status, 202, `${label}: ${r.status} ${r.text}`);
      };
      await accepted([{ type: 'repository', name: 'alice/app', actions: ['pull', 'push'] }], 'both');
      await accepted([{ type: 'repository', name: 'alice/app', actions: ['*'] }], '*');
      await accepted(
        [
          { type: 'repository', name: 'alice/app', actions: ['pull'] },
          { type: 'repository', name: 'alice/app', actions: ['push', 7] },
        ],
        'two entries, a non-string action ignored',
      );
      await refusedScope([{ type: 'repository', name: 'alice/app', actions: ['pull'] }], 'pull only');
      await refusedScope([{ type: 'repository', name: 'alice/other', actions: ['*'] }], 'another repository');
      await refusedScope([{ type: 'registry', name: 'alice/app', actions: ['*'] }], 'another type');
      await refusedScope([{ type: 'repository', name: 'alice/app', actions: 'pull,push' }], 'actions not a list');
      await refusedScope([{ type: 'repository', name: ['alice/app'], actions: ['*'] }], 'name not a string');
      await refusedScope([{ type: 7, name: 'alice/app', actions: ['*'] }], 'type not a string');
      await refusedScope({ type: 'repository', name: 'alice/app', actions: ['*'] }, 'access not a list');
      await refusedScope([{ type: 'repository', name: 'alice/app', actions: ['pul', 'pushx', '**'] }], 'near misses');
    });

    it('sub and admin come from the token (admin only while the index still has the account as an admin): the catalog shows an admin everything, an account its own', async () => {
      const push = await forge({ access: [{ type: 'repository', name: 'alice/app', actions: ['*'] }] }, { sub: 'alice' });
      const { pushV2 } = await import('../helpers/v2-client.js');
      await pushV2(s.url, 'alice/app', 'latest', { Authorization: `Bearer ${push}` });
      await s.db!('repositories').where({ namespace: 'alice', name: 'app' }).update({ private: true });
      const catalog = async (claims: JWTPayload, sub: string) => {
        const r = await request(s.url, '/v2/_catalog', {
          headers: { Authorization: `Bearer ${await forge({ access: [{ type: 'registry', name: 'catalog', actions: ['*'] }], ...claims }, { sub })}` },
        });
        assert.equal(r.status, 200, r.text);
        return r.json<{ repositories: string[] }>().repositories.filter((n) => n.startsWith('alice/'));
      };
      await saveUser(s.db!, { username: 'ottoadm', email: 'ottoadm@example.com', password: 'ottoadmpw', active: true, admin: true }, { cost: 4 });
      assert.deepEqual(await catalog({ admin: true }, 'ottoadm'), ['alice/app', 'alice/priv']);
      assert.deepEqual(await catalog({ admin: 'true' }, 'ottoadm'), [], 'admin must be the boolean true');
      // a token of this index saying admin for an account that is none (any more): its own view
      assert.deepEqual(await catalog({ admin: true }, 'otto'), [], 'otto is not an admin');
      assert.deepEqual(await catalog({ admin: true }, 'nosuchacct'), [], 'no such account');
      assert.deepEqual(await catalog({}, 'alice'), ['alice/app', 'alice/priv']);
      assert.deepEqual(await catalog({}, ''), [], 'an empty sub is anonymous');
    });
  });
});
