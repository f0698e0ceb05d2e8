import { X509Certificate, createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Knex } from 'knex';
import { SignJWT, decodeProtectedHeader, jwtVerify, errors as joseErrors, type JWTPayload, type ProtectedHeaderParameters } from 'jose';
import { libtrustKid } from '../content/schema1.js';
import type { Logger } from '../log/logger.js';
import { missingAccess, type ResourceAccess } from './v2-scope.js';
import { selfSignedCertificate } from './x509.js';
import { tokenValidations } from '../metrics/registry.js';
import { bodyCapped } from '../util/fetch-body.js';
import { jsonDepthExceeds } from '../http/body.js';

/** The index's v2 token signing key (spec v2-bridge §4.3). */
export interface SigningKey {
  readonly privateKey: KeyObject;
  readonly publicKey: KeyObject;
  /** libtrust fingerprint of the public key (what distribution 2.8 looks up). */
  readonly kid: string;
  readonly alg: 'ES256' | 'RS256';
  /** Self-signed certificate of the key (PEM), sent as `x5c` and published for rootcertbundles. */
  readonly certificate?: string;
}

function signingKeyOf(privateKey: KeyObject): SigningKey {
  const publicKey = createPublicKey(privateKey);
  const type = privateKey.asymmetricKeyType;
  let alg: SigningKey['alg'];
  if (type === 'ec') {
    if (privateKey.asymmetricKeyDetails?.namedCurve !== 'prime256v1') throw new Error('token_signing_key: only EC P-256 (ES256) or RSA keys are supported');
    alg = 'ES256';
  } else if (type === 'rsa') {
    alg = 'RS256';
  } else {
    throw new Error(`token_signing_key: unsupported key type ${String(type)} (use EC P-256 or RSA)`);
  }
  return { privateKey, publicKey, kid: libtrustKid(publicKey), alg };
}

/**
 * The key signing v2 JWTs: the PEM file `token_signing_key` when set, else an ES256 key generated
 * once and kept in the index database (settings table, as the v1 token secret), so every index
 * node sharing the database signs with the same key.
 */
export async function loadSigningKey(db: Knex, configuredPath: string | null): Promise<SigningKey> {
  // Two nodes starting at once: the first insert wins, both then read the same value.
  const setting = async (key: string, make: () => string): Promise<string> => {
    const read = async () => (await db('settings').where({ key }).first('value')) as { value: string } | undefined;
    const row = await read();
    if (row) return row.value;
    await db('settings').insert({ key, value: make() }).onConflict('key').ignore();
    return (await read())!.value;
  };
  const key = configuredPath
    ? signingKeyOf(createPrivateKey(readFileSync(configuredPath)))
    : signingKeyOf(
        createPrivateKey(
          await setting('v2_token_key', () =>
            generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
          ),
        ),
      );
  // The certificate is made once per key and kept, so its bytes (what a bundle holds) stay the same.
  const certificate = await setting(`v2_token_cert:${key.kid}`.slice(0, 100), () =>
    selfSignedCertificate(key.privateKey, key.publicKey, `legacy-registry token signer ${key.kid}`),
  );
  return { ...key, certificate };
}

/** The certificate as an `x5c` entry (base64 DER). */
function x5cOf(key: SigningKey): string[] | undefined {
  if (!key.certificate) return undefined;
  return [new X509Certificate(key.certificate).raw.toString('base64')];
}

/** The public half as a JWKS document (published by the index for split registries). */
export function jwksOf(key: SigningKey): { keys: Record<string, unknown>[] } {
  const jwk = key.publicKey.export({ format: 'jwk' }) as Record<string, unknown>;
  const x5c = x5cOf(key);
  return { keys: [{ ...jwk, kid: key.kid, alg: key.alg, use: 'sig', ...(x5c ? { x5c } : {}) }] };
}

/** Claims of our refresh tokens: marked so that no registry takes them as access tokens. */
const REFRESH_USE = 'refresh';

export interface IssuedToken {
  readonly token: string;
  readonly expiresIn: number;
  readonly issuedAt: Date;
}

/** Signs access tokens (§4.3) and refresh tokens for the index's token service. */
export class V2TokenIssuer {
  constructor(
    readonly key: SigningKey,
    private readonly opts: { issuer: string; ttl: number; refreshTtl?: number },
  ) {}

  private base(claims: JWTPayload, sub: string, aud: string, ttl: number, now: number): SignJWT {
    const iat = Math.floor(now / 1000);
    const x5c = x5cOf(this.key);
    return new SignJWT(claims)
      .setProtectedHeader({ typ: 'JWT', alg: this.key.alg, kid: this.key.kid, ...(x5c ? { x5c } : {}) })
      .setIssuer(this.opts.issuer)
      .setSubject(sub)
      .setAudience(aud)
      .setIssuedAt(iat)
      .setNotBefore(iat)
      .setExpirationTime(iat + ttl)
      .setJti(randomBytes(16).toString('base64url'));
  }

  /** An access token: `sub` "" for anonymous, `aud` the service, `access` the granted list. */
  async issueAccess(p: { sub: string; aud: string; access: readonly ResourceAccess[]; admin?: boolean }, now = Date.now()): Promise<IssuedToken> {
    // Clients raise anything under 60 s to 60 (§4.2): never issue less.
    const ttl = Math.max(60, this.opts.ttl);
    const claims: JWTPayload = { access: p.access.map((a) => ({ type: a.type, name: a.name, actions: [...a.actions] })) };
    if (p.admin) claims.admin = true;
    const token = await this.base(claims, p.sub, p.aud, ttl, now).sign(this.key.privateKey);
    return { token, expiresIn: ttl, issuedAt: new Date(Math.floor(now / 1000) * 1000) };
  }

  /**
   * A long-lived refresh token bound to one account (name, id, and `cred`: a fingerprint of its
   * password hash, so a password change ends every session); useless as an access token.
   */
  async issueRefresh(p: { sub: string; uid: number; cred: string }, now = Date.now()): Promise<string> {
    const ttl = this.opts.refreshTtl ?? 90 * 86400;
    return this.base({ use: REFRESH_USE, uid: p.uid, cred: p.cred }, p.sub, `${this.opts.issuer}#refresh`, ttl, now).sign(this.key.privateKey);
  }

  /** The account a refresh token names, or undefined when it is not one of ours or has expired. */
  async verifyRefresh(token: string): Promise<{ sub: string; uid: number; cred: string } | undefined> {
    try {
      const { payload } = await jwtVerify(token, this.key.publicKey, {
        issuer: this.opts.issuer,
        audience: `${this.opts.issuer}#refresh`,
        algorithms: [this.key.alg],
        requiredClaims: ['exp', 'sub'],
      });
      if (payload.use !== REFRESH_USE || typeof payload.uid !== 'number' || typeof payload.sub !== 'string' || typeof payload.cred !== 'string')
        return undefined;
      return { sub: payload.sub, uid: payload.uid, cred: payload.cred };
    } catch {
      return undefined;
    }
  }
}

/** Finds the public key for a token header: by x5c (checked against trusted certs) or kid. */
export type KeyResolver = (header: ProtectedHeaderParameters) => Promise<KeyObject | undefined>;

/** One process: the index's own key. */
export function localKeys(key: SigningKey): KeyResolver {
  return (h) => Promise.resolve(h.kid === key.kid ? key.publicKey : undefined);
}

/**
 * `token_rootcertbundle`: PEM certificates of trusted signers (an external token service such as
 * docker_auth, or our index's). As distribution 2.8: an `x5c` leaf must be one of the bundle's
 * certificates or be issued and signed by one; else the `kid` names a bundle key by its libtrust
 * fingerprint (§4.4 step 5).
 */
export function certBundleKeys(path: string): KeyResolver {
  const pem = readFileSync(path, 'utf8');
  const certs = (pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []).map((c) => new X509Certificate(c));
  if (certs.length === 0) throw new Error(`token_rootcertbundle: no certificate in ${path}`);
  const byKid = new Map(certs.map((c) => [libtrustKid(c.publicKey), c.publicKey] as const));
  return (h) => {
    if (Array.isArray(h.x5c) && h.x5c.length > 0) {
      let leaf: X509Certificate;
      try {
        leaf = new X509Certificate(Buffer.from(h.x5c[0]!, 'base64'));
      } catch {
        return Promise.resolve(undefined);
      }
      const trusted = certs.some((root) => root.raw.equals(leaf.raw) || (leaf.checkIssued(root) && leaf.verify(root.publicKey)));
      return Promise.resolve(trusted ? leaf.publicKey : undefined);
    }
    return Promise.resolve(h.kid ? byKid.get(h.kid) : undefined);
  };
}

/** The most of a JSON Web Key Set a registry reads from its index. */
const JWKS_MAX_BYTES = 1024 * 1024;

/**
 * `serve --only registry` with an index_endpoint: the index's keys from its JWKS
 * (`/.well-known/jwks.json`), cached; an unknown kid refetches (at most every 10 s), so a key
 * change at the index is picked up without a restart.
 */
export function remoteJwksKeys(url: string, log: Logger, maxAgeMs = 300_000): KeyResolver {
  let keys = new Map<string, KeyObject>();
  let fetchedAt = 0;
  let inflight: Promise<void> | undefined;
  const refresh = async (): Promise<void> => {
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(10_000) });
      if (res.status !== 200) throw new Error(`status ${res.status}`);
      // a key set is a few keys: read up to JWKS_MAX_BYTES, its depth checked before parsing, whatever
      // the index at index_endpoint answers (res.json() read an endless answer for the whole 10 s)
      const raw = await bodyCapped(res, JWKS_MAX_BYTES);
      if (jsonDepthExceeds(raw, 8)) throw new Error('the key set is nested too deep');
      const body = JSON.parse(raw.toString('utf8')) as { keys?: unknown } | null;
      if (body === null || typeof body !== 'object') throw new Error('the key set is no JSON object');
      const next = new Map<string, KeyObject>();
      for (const k of Array.isArray(body.keys) ? body.keys : []) {
        const jwk = k as { kid?: unknown };
        if (typeof jwk.kid !== 'string') continue;
        try {
          next.set(jwk.kid, createPublicKey({ key: k as import('node:crypto').JsonWebKey, format: 'jwk' }));
        } catch {
          // a key type we cannot use: skip it
        }
      }
      keys = next;
      fetchedAt = Date.now();
    } catch (e) {
      fetchedAt = Date.now() - maxAgeMs + 10_000; // retry in 10 s
      log.error('cannot fetch the token signing keys from the index', { url, err: (e as Error).message });
    }
  };
  return async (h) => {
    const stale = Date.now() - fetchedAt > maxAgeMs;
    const unknown = !h.kid || !keys.has(h.kid);
    if (stale || (unknown && Date.now() - fetchedAt > 10_000)) {
      inflight ??= refresh().finally(() => (inflight = undefined));
      await inflight;
    }
    return h.kid ? keys.get(h.kid) : undefined;
  };
}

export interface VerifiedToken {
  /** `sub`: the account, null when anonymous. */
  readonly account: string | null;
  readonly admin: boolean;
  readonly access: ResourceAccess[];
  /**
   * Signed with this server's own index key (the verifier's keys are the index's, not a
   * token_rootcertbundle's): the index database, not the token, has the last word on whether its
   * account still exists, is active and is an admin.
   */
  readonly indexIssued: boolean;
}

export type VerifyResult = { readonly ok: true; readonly token: VerifiedToken } | { readonly ok: false; readonly reason: string };

const ALGORITHMS = ['ES256', 'ES384', 'ES512', 'RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'EdDSA'];

/** Access list of a verified payload; malformed entries are dropped. */
function accessOf(payload: JWTPayload): ResourceAccess[] {
  const raw = payload.access;
  if (!Array.isArray(raw)) return [];
  const out: ResourceAccess[] = [];
  for (const e of raw) {
    const a = e as { type?: unknown; name?: unknown; actions?: unknown };
    if (typeof a.type !== 'string' || typeof a.name !== 'string' || !Array.isArray(a.actions)) continue;
    out.push({ type: a.type, name: a.name, actions: a.actions.filter((x): x is string => typeof x === 'string') });
  }
  return out;
}

/**
 * Verifies Bearer access tokens as distribution 2.8 does (spec §4.4): three parts, trusted `iss`,
 * `aud` = service, exp/nbf with 60 s leeway, a signature by a trusted key. Refresh tokens are refused.
 */
export class V2TokenVerifier {
  constructor(
    private readonly keys: KeyResolver,
    private readonly issuer: string,
    /** The keys are this server's own index's (its key, or its JWKS): its tokens say `indexIssued`. */
    private readonly indexKeys = false,
  ) {}

  async verify(token: string, service: string | undefined): Promise<VerifyResult> {
    const r = await this.check(token, service);
    tokenValidations.cell('v2', r.ok ? 'valid' : 'invalid').value++;
    return r;
  }

  private async check(token: string, service: string | undefined): Promise<VerifyResult> {
    let header: ProtectedHeaderParameters;
    try {
      header = decodeProtectedHeader(token);
    } catch {
      return { ok: false, reason: 'malformed token' };
    }
    if (token.split('.').length !== 3) return { ok: false, reason: 'malformed token' };
    const key = await this.keys(header);
    if (!key) return { ok: false, reason: 'token signed by an untrusted key' };
    try {
      const { payload } = await jwtVerify(token, key, {
        issuer: this.issuer,
        ...(service !== undefined ? { audience: service } : {}),
        clockTolerance: 60,
        algorithms: ALGORITHMS,
        requiredClaims: ['exp'],
      });
      if (payload.use === REFRESH_USE) return { ok: false, reason: 'a refresh token is not an access token' };
      const sub = typeof payload.sub === 'string' && payload.sub !== '' ? payload.sub : null;
      return { ok: true, token: { account: sub, admin: payload.admin === true, access: accessOf(payload), indexIssued: this.indexKeys } };
    } catch (e) {
      if (e instanceof joseErrors.JWTExpired) return { ok: false, reason: 'token expired' };
      if (e instanceof joseErrors.JWTClaimValidationFailed) return { ok: false, reason: `token ${e.claim} invalid` };
      if (e instanceof joseErrors.JWSSignatureVerificationFailed) return { ok: false, reason: 'signature invalid' };
      return { ok: false, reason: 'token invalid' };
    }
  }

  /**
   * For the index (e.g. registry → index notifications): the account and access of an
   * `Authorization: Bearer <jwt>` header this index issued, if it is valid and grants every
   * entry of `needs`; else undefined. The audience is not checked (any service of ours).
   */
  async verifyAccessToken(authorization: string | undefined, needs: readonly ResourceAccess[] = []): Promise<VerifiedToken | undefined> {
    const m = /^\s*bearer\s+(\S+)\s*$/i.exec(authorization ?? '');
    if (!m) return undefined;
    const r = await this.verify(m[1]!, undefined);
    if (!r.ok) return undefined;
    return missingAccess(r.token.access, needs).length === 0 ? r.token : undefined;
  }
}
