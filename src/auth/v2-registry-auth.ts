import type { Context } from 'koa';
import { V2Error } from '../errors/v2.js';
import { parseBasic } from './v1-token.js';
import type { Htpasswd } from './htpasswd.js';
import type { V2TokenVerifier } from './v2-jwt.js';
import { formatScope, missingAccess, type ResourceAccess } from './v2-scope.js';

/**
 * Who made a /v2/ request, once authorised (the contract with the catalog): `account` null for
 * anonymous; `admin` sees everything (also a registry with no auth at all).
 */
export interface V2Principal {
  readonly account: string | null;
  readonly admin: boolean;
}

/** Decides whether a /v2/ request with these needs may go on; throws V2Error 401 with a challenge if not. */
export interface V2Authorizer {
  authorize(ctx: Context, needs: readonly ResourceAccess[]): Promise<V2Principal>;
}

/** `v2_auth: none` (a standalone registry): everything allowed. */
export const V2_OPEN: V2Authorizer = { authorize: () => Promise.resolve({ account: null, admin: true }) };

/** UNAUTHORIZED's detail: one {Type, Name, Action} per needed action (spec §4.1). */
function detailOf(needs: readonly ResourceAccess[]): { Type: string; Name: string; Action: string }[] {
  return needs.flatMap((n) => n.actions.map((a) => ({ Type: n.type, Name: n.name, Action: a })));
}

const quote = (s: string): string => `"${s.replace(/["\\]/g, '\\$&')}"`;

export interface TokenAuthorizerOptions {
  readonly verifier: V2TokenVerifier;
  /** token_realm, else derived per request. */
  readonly realm: string | null;
  /** token_service, else the Host the client used. */
  readonly service: string | null;
  /** Base URL of the index when it is another process (index_endpoint): realm = <it>/v2/token. */
  readonly indexBase: string | null;
}

/** The realm path of our token service on the index. */
export const TOKEN_PATH = '/v2/token';

/** The `service` (JWT aud) the registry names for this request. */
export function serviceFor(ctx: Context, configured: string | null): string {
  return configured ?? ctx.host;
}

/**
 * The token realm for this request: the configured absolute URL; else the index's URL
 * (index_endpoint) + /v2/token; else this process, as the client reached it (scheme and Host).
 */
export function realmFor(ctx: Context, configured: string | null, indexBase: string | null): string {
  if (configured) return configured;
  if (indexBase) return `${indexBase}${TOKEN_PATH}`;
  return `${ctx.protocol}://${ctx.host}${TOKEN_PATH}`;
}

/**
 * `v2_auth: token` (spec §4.4): every /v2/ request needs a Bearer JWT from a trusted issuer for
 * this service, with every access the request needs; else 401 UNAUTHORIZED with the challenge,
 * `error="invalid_token"` when the token failed verification and `error="insufficient_scope"`
 * when it lacks actions.
 */
export class TokenV2Authorizer implements V2Authorizer {
  constructor(private readonly opts: TokenAuthorizerOptions) {}

  private challenge(ctx: Context, needs: readonly ResourceAccess[], error?: 'invalid_token' | 'insufficient_scope', message?: string): V2Error {
    let value = `Bearer realm=${quote(realmFor(ctx, this.opts.realm, this.opts.indexBase))},service=${quote(serviceFor(ctx, this.opts.service))}`;
    if (needs.length > 0) value += `,scope=${quote(formatScope(needs))}`;
    if (error) value += `,error=${quote(error)}`;
    return new V2Error('UNAUTHORIZED', detailOf(needs), message, { 'WWW-Authenticate': value });
  }

  async authorize(ctx: Context, needs: readonly ResourceAccess[]): Promise<V2Principal> {
    const m = /^\s*bearer\s+(\S+)\s*$/i.exec(ctx.get('Authorization'));
    if (!m) throw this.challenge(ctx, needs);
    const r = await this.opts.verifier.verify(m[1]!, serviceFor(ctx, this.opts.service));
    if (!r.ok) throw this.challenge(ctx, needs, 'invalid_token', `authentication required: ${r.reason}`);
    const missing = missingAccess(r.token.access, needs);
    if (missing.length > 0) throw this.challenge(ctx, needs, 'insufficient_scope', 'authentication required: insufficient scope');
    return { account: r.token.account, admin: r.token.admin };
  }
}

/**
 * `v2_auth: htpasswd` (spec §4.6): HTTP Basic against the file; every valid account may do
 * everything (as distribution), so it is treated as admin for the catalog.
 */
export class HtpasswdV2Authorizer implements V2Authorizer {
  constructor(
    private readonly file: Htpasswd,
    private readonly realm: string,
  ) {}

  async authorize(ctx: Context, needs: readonly ResourceAccess[]): Promise<V2Principal> {
    const creds = parseBasic(ctx.get('Authorization') || undefined);
    if (creds && (await this.file.verify(creds.username, creds.password))) return { account: creds.username, admin: true };
    throw new V2Error('UNAUTHORIZED', detailOf(needs), undefined, { 'WWW-Authenticate': `Basic realm=${quote(this.realm)}` });
  }
}
