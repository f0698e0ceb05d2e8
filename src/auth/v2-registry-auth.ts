import type { Context } from 'koa';
import { advertisedAuthority, tokenService } from '../config/advertise.js';
import { listenAddress } from '../config/load.js';
import type { Config } from '../config/schema.js';
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
  /**
   * The token was issued by this server's own index: `admin` is what the account was when it was
   * issued (up to v2_token_ttl ago), and the index checks it again where it lists everything (the
   * catalog). Absent: an external token service's word (token_rootcertbundle), htpasswd, no auth.
   */
  readonly indexIssued?: boolean;
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
  /**
   * Where the names come from (config/advertise.ts): token_realm, else the index's realm, else
   * this server's; token_service, else registry_endpoints[0], else the listen address.
   */
  readonly config: Config;
  /** Base URL of the index when it is another process (index_endpoint): realm = <it>/v2/token. */
  readonly indexBase: string | null;
}

/** The realm path of our token service on the index. */
export const TOKEN_PATH = '/v2/token';

/** The port this request reached (the one we listen on: not something the client writes). */
export function boundPort(ctx: Context, config: Config): number {
  return ctx.req.socket.localPort ?? listenAddress(config).port;
}

/** The `service` (JWT aud) of this server: from configuration, never from the request (spec §4.3). */
export function serviceFor(ctx: Context, config: Config): string {
  return tokenService(config, boundPort(ctx, config));
}

/**
 * The token realm for this request: token_realm; else the index's URL (index_endpoint) +
 * /v2/token; else this server's /v2/token at the Host the client used when that names this
 * machine on our port, else at the listen address (config/advertise.ts).
 */
export function realmFor(ctx: Context, config: Config, indexBase: string | null): string {
  if (config.token_realm) return config.token_realm;
  if (indexBase) return `${indexBase}${TOKEN_PATH}`;
  const scheme = config.tls_certificate ? 'https' : 'http';
  return `${scheme}://${advertisedAuthority(config, ctx.get('Host'), boundPort(ctx, config))}${TOKEN_PATH}`;
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
    let value = `Bearer realm=${quote(realmFor(ctx, this.opts.config, this.opts.indexBase))},service=${quote(serviceFor(ctx, this.opts.config))}`;
    if (needs.length > 0) value += `,scope=${quote(formatScope(needs))}`;
    if (error) value += `,error=${quote(error)}`;
    return new V2Error('UNAUTHORIZED', detailOf(needs), message, { 'WWW-Authenticate': value });
  }

  async authorize(ctx: Context, needs: readonly ResourceAccess[]): Promise<V2Principal> {
    const m = /^\s*bearer\s+(\S+)\s*$/i.exec(ctx.get('Authorization'));
    if (!m) throw this.challenge(ctx, needs);
    const r = await this.opts.verifier.verify(m[1]!, serviceFor(ctx, this.opts.config));
    if (!r.ok) throw this.challenge(ctx, needs, 'invalid_token', `authentication required: ${r.reason}`);
    const missing = missingAccess(r.token.access, needs);
    if (missing.length > 0) throw this.challenge(ctx, needs, 'insufficient_scope', 'authentication required: insufficient scope');
    return { account: r.token.account, admin: r.token.admin, ...(r.token.indexIssued ? { indexIssued: true } : {}) };
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
