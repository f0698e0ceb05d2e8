import type { Context, Next } from 'koa';
import type { Logger } from '../log/logger.js';

/** Methods that change nothing: a page of any site may send them (RFC 9110 §9.2.1). */
const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/** An origin in one spelling (`https://host` without its default port, host lower case); undefined: none. */
function normalOrigin(s: string): string | undefined {
  try {
    const o = new URL(s).origin;
    return o === 'null' ? undefined : o;
  } catch {
    return undefined;
  }
}

/**
 * This server's origin as the browser names it: the scheme and Host of the request (X-Forwarded-Proto
 * and X-Forwarded-Host from a trusted proxy: koa reads them when trusted_proxies is set), as the web
 * UI and distribution's event URLs build it.
 */
export function requestOrigin(ctx: Context): string | undefined {
  return ctx.host ? normalOrigin(`${ctx.protocol}://${ctx.host}`) : undefined;
}

/** Is this Origin header (`null` never is) this server's own, or one of the configured public URLs'? */
export function isOwnOrigin(ctx: Context, origin: string, publicOrigins: ReadonlySet<string> = new Set()): boolean {
  const o = normalOrigin(origin);
  return o !== undefined && (o === requestOrigin(ctx) || publicOrigins.has(o));
}

export interface CrossSiteOptions {
  /** URLs this server is reached at besides the request's Host (webhook_base_url): their origins count as its own. */
  readonly publicUrls?: readonly (string | null)[];
  /** Origins the cors section lists for a path (cors.ts listedOrigin): pages the operator lets write. */
  readonly listed?: (path: string, origin: string) => boolean;
  readonly log?: Logger;
}

/**
 * Cross-site request forgery, for every route at once. A browser attaches credentials on its own:
 * the web UI's session cookie, and Basic credentials it cached after a `WWW-Authenticate: Basic`
 * prompt (v1 index, v2 with htpasswd, the webhook API). Another site's page can make it send a POST
 * (an HTML form, `enctype=text/plain` carries a JSON body, no CORS preflight) with them, and with
 * `cors` opened to it, any method. Such requests say where they come from: every current browser
 * sends `Sec-Fetch-Site` (Fetch Metadata), and `Origin` on every non-GET request; API clients
 * (docker, podman, skopeo, the npm client, curl) send neither. So a request that changes something
 * is refused (403) when `Sec-Fetch-Site` is `cross-site` or `same-site` (another port of the same
 * host is same-site), or when it has no `Sec-Fetch-Site` and an `Origin` that is not this server's
 * (`null` included: a sandboxed frame, a redirect from another origin) — unless that origin is
 * listed in the cors section for the path. Without either header, nothing changes.
 */
export function crossSiteGuard(opts: CrossSiteOptions = {}) {
  const publicOrigins = new Set(
    (opts.publicUrls ?? []).flatMap((u) => {
      const o = u ? normalOrigin(u) : undefined;
      return o ? [o] : [];
    }),
  );
  return async (ctx: Context, next: Next): Promise<void> => {
    if (SAFE_METHODS.has(ctx.method)) return next();
    const site = ctx.get('Sec-Fetch-Site').trim().toLowerCase();
    const origin = ctx.get('Origin').trim();
    // the browser itself says the request comes from our origin, or from the user (address bar)
    if (site === 'same-origin' || site === 'none') return next();
    const listed = origin !== '' && opts.listed?.(ctx.path, origin) === true;
    const foreignSite = site === 'cross-site' || site === 'same-site';
    if (listed || (!foreignSite && (origin === '' || isOwnOrigin(ctx, origin, publicOrigins)))) return next();
    opts.log?.info('cross-site request refused', {
      id: ctx.state.requestId,
      method: ctx.method,
      path: ctx.path,
      origin: origin.slice(0, 200),
      site: site.slice(0, 20) || undefined,
    });
    const message = 'Cross-site request refused: a page of another site may not change anything here (Origin / Sec-Fetch-Site)';
    ctx.status = 403;
    ctx.type = 'application/json; charset=utf-8';
    ctx.body =
      ctx.path.startsWith('/v2/') && ctx.path !== '/v2/token'
        ? JSON.stringify({ errors: [{ code: 'DENIED', message, detail: null }] })
        : JSON.stringify({ error: message });
  };
}
