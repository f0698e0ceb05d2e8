import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

export type V1Access = 'read' | 'write' | 'delete';

export interface V1TokenClaims {
  readonly repository: string;
  readonly access: V1Access;
  /** Account id, 0 for anonymous. */
  readonly userId: number;
  /** Expiry, epoch seconds. */
  readonly expires: number;
  /**
   * The fingerprint of the account's password the token was issued under (see `issue`), which the
   * index compares with the current one; undefined for a token issued without (anonymous, or before
   * 2026-12-07).
   */
  readonly credential?: string;
}

/** Length of the random part of a token's nonce (9 bytes, base64url); a credential fingerprint follows. */
const NONCE_RANDOM = 12;
/** Length of a credential fingerprint (66 bits of an HMAC). */
const CREDENTIAL_LENGTH = 11;

/**
 * X-Docker-Token values (spec §1.4): `signature=<sig>,repository="ns/repo",access=<a>`, where the
 * signature carries the expiry, the account and a nonce, MACed with the index's secret over all of
 * it and the repository and access, so it cannot be moved to another repository or access and stops
 * working when it expires. Any index node with the secret can verify it; tokens are multi-use within
 * their lifetime, as the registry re-validates on every request (spec §4.2).
 */
export class V1TokenSigner {
  constructor(
    private readonly secret: Buffer,
    private readonly ttlSeconds: number,
  ) {}

  private mac(body: string, repository: string, access: string): string {
    return createHmac('sha256', this.secret).update(`${body}|${repository}|${access}`).digest('base64url');
  }

  /**
   * The fingerprint of an account's credential (its password hash) that `issue` puts in a token:
   * keyed with the secret, so it tells nothing of the hash.
   */
  credential(material: string): string {
    return createHmac('sha256', this.secret).update(`v1-token-credential|${material}`).digest('base64url').slice(0, CREDENTIAL_LENGTH);
  }

  /**
   * `credential` (from `credential()`): appended to the nonce, so it is covered by the MAC and the
   * index can refuse the token once the account's password changes (tokens-review).
   */
  issue(repository: string, access: V1Access, userId: number, now = Date.now(), credential?: string): string {
    const expires = Math.floor(now / 1000) + this.ttlSeconds;
    const body = `${expires}.${userId}.${randomBytes(9).toString('base64url')}${credential ?? ''}`;
    return `signature=${body}.${this.mac(body, repository, access)},repository="${repository}",access=${access}`;
  }

  /** The claims of a token header value (with or without `Token ` prefixes), or undefined. */
  verify(header: string | undefined, now = Date.now()): V1TokenClaims | undefined {
    if (!header) return undefined;
    const value = header.replace(/^\s*(token\s+)+/i, '');
    const pairs = new Map<string, string>();
    for (const m of value.matchAll(/(\w+)[:=][\s"]?([^",]+)"?/g)) if (!pairs.has(m[1]!)) pairs.set(m[1]!, m[2]!);
    const sig = pairs.get('signature');
    const repository = pairs.get('repository');
    const access = pairs.get('access');
    if (!sig || !repository || (access !== 'read' && access !== 'write' && access !== 'delete')) return undefined;
    const m = /^(\d+)\.(\d+)\.([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)$/.exec(sig);
    if (!m) return undefined;
    const body = `${m[1]}.${m[2]}.${m[3]}`;
    const want = Buffer.from(this.mac(body, repository, access));
    const got = Buffer.from(m[4]!);
    if (want.length !== got.length || !timingSafeEqual(want, got)) return undefined;
    const expires = Number(m[1]);
    if (expires * 1000 <= now) return undefined;
    const nonce = m[3]!;
    return {
      repository,
      access,
      userId: Number(m[2]),
      expires,
      ...(nonce.length === NONCE_RANDOM + CREDENTIAL_LENGTH ? { credential: nonce.slice(NONCE_RANDOM) } : {}),
    };
  }
}

export interface BasicCredentials {
  readonly username: string;
  readonly password: string;
}

/** `Authorization: Basic b64(user:pass)`; undefined when absent or malformed. */
export function parseBasic(header: string | undefined): BasicCredentials | undefined {
  const m = /^\s*basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header ?? '');
  if (!m) return undefined;
  const decoded = Buffer.from(m[1]!, 'base64').toString('utf8');
  const i = decoded.indexOf(':');
  if (i < 0) return undefined;
  return { username: decoded.slice(0, i), password: decoded.slice(i + 1) };
}
