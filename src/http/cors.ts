import type { Context, Middleware, Next } from 'koa';
import type { CorsConfig, CorsResourceConfig } from '../config/schema.js';

/**
 * CORS as the Python registry offered it (spec v1-protocol §8.2: its `cors` section was handed to
 * Flask-CORS 1.x as CORS_<KEY> settings). The options, their defaults and the headers they produce
 * follow Flask-CORS 1.10's documentation and code:
 * - origins: '*' allows every origin; a value with one of ? * [ ] is a regular expression; any other
 *   value is an exact origin. An allowed Origin is echoed — or '*' is sent, for '*' with
 *   send_wildcard (default true). A request from another origin gets no CORS header at all.
 * - always_send (default true): without an Origin header, Access-Control-Allow-Origin lists the
 *   exact origins (the expressions left out), comma-separated.
 * - expose_headers and supports_credentials on every CORS answer; on an OPTIONS whose
 *   Access-Control-Request-Method is one of `methods` (default: every method), also
 *   Access-Control-Allow-Methods, Access-Control-Allow-Headers (`headers`) and Access-Control-Max-Age.
 *   Lists are sent sorted and comma-separated, as Flask-CORS does.
 * - vary_header (default true): Vary: Origin whenever the answer is not '*'.
 * - automatic_options (default true): OPTIONS requests are answered here, 200 with an empty body,
 *   as Flask answered them on the Python registry's routes; false: the routes answer them.
 * - resources (default every path): regular expressions matched at the start of the path; in the
 *   map form the longest expression that matches gives options overriding the section's.
 * Where Flask-CORS 1.10 was laxer than its documentation, the documentation is followed: expressions
 * must match the whole Origin (Flask-CORS matched a prefix, so `https://a.example` also allowed
 * `https://a.example.evil.test`), exact origins are compared exactly, a requested method must be one
 * of `methods` (not a substring of their list), and supports_credentials: false sends nothing.
 */

const ALL_METHODS = ['GET', 'HEAD', 'POST', 'OPTIONS', 'PUT', 'PATCH', 'DELETE'];

interface Rule {
  readonly wildcard: boolean;
  readonly originMatchers: readonly ((origin: string) => boolean)[];
  /** The exact origins, for always_send answers to requests without an Origin; undefined: none. */
  readonly listed: string | undefined;
  readonly methods: ReadonlySet<string>;
  readonly methodsHeader: string;
  readonly allowHeaders: string | undefined;
  readonly exposeHeaders: string | undefined;
  readonly credentials: boolean;
  readonly maxAge: string | undefined;
  readonly sendWildcard: boolean;
  readonly alwaysSend: boolean;
  readonly automaticOptions: boolean;
  readonly vary: boolean;
}

interface Resource {
  readonly matches: (path: string) => boolean;
  readonly rule: Rule;
}

const list = (v: string | string[] | null): string[] | undefined => (v === null ? undefined : Array.isArray(v) ? v : [v]);
/** Flask-CORS's header form of a list: sorted, ", "-joined; a string as it was given. */
const headerValue = (v: string | string[] | null): string | undefined => (v === null ? undefined : Array.isArray(v) ? [...v].sort().join(', ') : v);
/** Flask-CORS's test for an origin that is a regular expression. */
const isPattern = (o: string): boolean => o !== '*' && /[?*[\]]/.test(o);

/** A regular expression anchored as asked; an invalid one is compared as plain text (as Flask-CORS does). */
function matcher(pattern: string, whole: boolean): (s: string) => boolean {
  try {
    const re = new RegExp(whole ? `^(?:${pattern})$` : `^(?:${pattern})`);
    return (s) => re.test(s);
  } catch {
    return (s) => s === pattern;
  }
}

type Options = Omit<CorsConfig, 'resources'>;

/** The section's options with a resource's non-null ones over them. */
function merge(base: Options, over: CorsResourceConfig | null): Options {
  if (!over) return base;
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(over)) if (v !== null) out[k] = v;
  return out as Options;
}

function ruleOf(o: Options): Rule {
  const origins = list(o.origins) ?? ['*'];
  const exact = origins.filter((x) => !isPattern(x));
  const methods = list(o.methods) ?? ALL_METHODS;
  // `headers` is the Python registry's name (CORS_HEADERS); Flask-CORS lets it win over allow_headers
  const allow = o.headers ?? o.allow_headers;
  return {
    wildcard: origins.includes('*'),
    originMatchers: origins.filter((x) => x !== '*').map((x) => (isPattern(x) ? matcher(x, true) : (s: string) => s === x)),
    listed: exact.length > 0 ? [...exact].sort().join(', ') : undefined,
    methods: new Set(methods.flatMap((m) => m.split(',')).map((m) => m.trim().toUpperCase())),
    methodsHeader: o.methods === null ? [...ALL_METHODS].sort().join(', ') : headerValue(o.methods)!,
    allowHeaders: headerValue(allow),
    exposeHeaders: headerValue(o.expose_headers),
    credentials: o.supports_credentials === true,
    maxAge: o.max_age === null ? undefined : String(o.max_age),
    sendWildcard: o.send_wildcard ?? true,
    alwaysSend: o.always_send ?? true,
    automaticOptions: o.automatic_options ?? true,
    vary: o.vary_header ?? true,
  };
}

function resourcesOf(config: CorsConfig): Resource[] {
  const { resources, ...base } = config;
  const fix = (p: string): string => (p === '*' ? '.*' : p);
  if (resources === null) return [{ matches: () => true, rule: ruleOf(base) }];
  if (typeof resources === 'string' || Array.isArray(resources)) {
    const rule = ruleOf(base);
    return (Array.isArray(resources) ? resources : [resources]).map((p) => ({ matches: matcher(fix(p), false), rule }));
  }
  // longest expression first (Flask-CORS: a proxy for the most specific)
  return Object.entries(resources)
    .sort(([a], [b]) => b.length - a.length)
    .map(([p, over]) => ({ matches: matcher(fix(p), false), rule: ruleOf(merge(base, over)) }));
}

/** The Access-Control-Allow-Origin value for a request, or undefined: no CORS headers. */
function allowedOrigin(rule: Rule, origin: string): string | undefined {
  if (origin !== '') {
    if (rule.wildcard) return rule.sendWildcard ? '*' : origin;
    return rule.originMatchers.some((m) => m(origin)) ? origin : undefined;
  }
  return rule.alwaysSend ? rule.listed : undefined;
}

/** The CORS headers of one answer. */
function corsHeaders(rule: Rule, ctx: Context): [string, string][] | undefined {
  const allow = allowedOrigin(rule, ctx.get('Origin'));
  if (allow === undefined) return undefined;
  const h: [string, string][] = [['Access-Control-Allow-Origin', allow]];
  if (rule.exposeHeaders !== undefined) h.push(['Access-Control-Expose-Headers', rule.exposeHeaders]);
  if (rule.credentials) h.push(['Access-Control-Allow-Credentials', 'true']);
  if (ctx.method === 'OPTIONS') {
    const asked = ctx.get('Access-Control-Request-Method').trim().toUpperCase();
    if (asked !== '' && rule.methods.has(asked)) {
      if (rule.maxAge !== undefined) h.push(['Access-Control-Max-Age', rule.maxAge]);
      h.push(['Access-Control-Allow-Methods', rule.methodsHeader]);
      if (rule.allowHeaders !== undefined) h.push(['Access-Control-Allow-Headers', rule.allowHeaders]);
    }
  }
  return h;
}

/**
 * The origins the section names for a path, exact or as an expression; `*` names none. The
 * cross-site guard (src/http/cross-site.ts) lets a browser page of such an origin write: an
 * operator who lists an origin means that page to use the API (a registry UI on another host).
 */
export function listedOrigin(config: CorsConfig): (path: string, origin: string) => boolean {
  const resources = resourcesOf(config);
  return (path, origin) => resources.find((r) => r.matches(path))?.rule.originMatchers.some((m) => m(origin)) === true;
}

/**
 * The middleware; main.ts installs it only when cors has origins (the loader sets cors to null
 * otherwise). It runs before the error renderer, so error answers carry the headers too.
 */
export function cors(config: CorsConfig): Middleware {
  const resources = resourcesOf(config);
  return async (ctx: Context, next: Next): Promise<void> => {
    const resource = resources.find((r) => r.matches(ctx.path));
    if (!resource) return next();
    const { rule } = resource;
    const headers = corsHeaders(rule, ctx);
    const vary = headers !== undefined && rule.vary && headers[0]![1] !== '*';
    const apply = (): void => {
      for (const [k, v] of headers ?? []) ctx.set(k, v);
      if (vary) ctx.vary('Origin');
    };
    if (ctx.method === 'OPTIONS' && rule.automaticOptions) {
      ctx.status = 200;
      ctx.body = '';
      apply();
      return;
    }
    apply();
    await next();
    // a route that set its own Vary replaced ours
    if (vary && !ctx.headerSent) ctx.vary('Origin');
  };
}
