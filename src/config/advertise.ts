import { hostname, networkInterfaces } from 'node:os';
import { isIP } from 'node:net';
import type { Config } from './schema.js';
import { ConfigError, listenAddress } from './load.js';

/*
 * How this server names itself to clients: the v2 token audience (`service`), the authority in the
 * token realm and in X-Docker-Endpoints. These come from configuration, never from the request: a
 * Host header is only ever echoed when it names this machine on the port we listen on, so a client
 * cannot make us mint, accept or advertise a name of its choosing.
 */
const WILDCARDS = new Set(['', '0.0.0.0', '::', '0:0:0:0:0:0:0:0']);

/**
 * The host part of the default name: the listen host, or the machine's host name (os.hostname())
 * when the listen host is a wildcard (0.0.0.0, ::). Lower case.
 */
export function defaultHost(c: Config): string {
  const { host } = listenAddress(c);
  return (WILDCARDS.has(host) ? hostname() : host).toLowerCase();
}

/** `host:port` (IPv6 in brackets) of the listen address, `port` being the one actually bound. */
export function defaultAuthority(c: Config, port: number): string {
  const h = defaultHost(c);
  return `${isIP(h) === 6 ? `[${h}]` : h}:${port}`;
}

/**
 * The v2 token audience of this server (spec v2-bridge §4.3: `aud` must equal the service):
 * token_service, else the first registry_endpoints entry, else the listen address.
 */
export function tokenService(c: Config, port: number): string {
  return c.token_service ?? c.registry_endpoints?.[0] ?? defaultAuthority(c, port);
}

/** An IP address in one spelling (IPv6 compressed, lower case), or undefined if it is none. */
function canonicalIp(s: string): string | undefined {
  const kind = isIP(s);
  if (kind === 4) return s;
  if (kind !== 6) return undefined;
  try {
    return new URL(`http://[${s}]/`).hostname.slice(1, -1);
  } catch {
    return undefined;
  }
}

/**
 * The Host header, normalised, when it names this machine on our port: `localhost`, os.hostname()
 * or an address of a local interface (os.networkInterfaces()), with the port we listen on (or no
 * port when we listen on the scheme's default). Anything else: undefined. The value returned is
 * rebuilt from the parsed parts, never the raw header, so it cannot carry quotes or commas.
 */
export function localAuthority(hostHeader: string, port: number, tls: boolean): string | undefined {
  const m = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(?::([1-9]\d{0,4}))?$/.exec(hostHeader.trim());
  if (!m) return undefined;
  const explicit = m[2] !== undefined;
  if ((explicit ? Number(m[2]) : tls ? 443 : 80) !== port) return undefined;
  const suffix = explicit ? `:${port}` : '';
  const name = m[1]!.toLowerCase();
  if (name === 'localhost' || name === hostname().toLowerCase()) return `${name}${suffix}`;
  const ip = canonicalIp(name.startsWith('[') ? name.slice(1, -1) : name);
  if (ip === undefined) return undefined;
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) {
      if (canonicalIp(a.address) === ip) return `${isIP(ip) === 6 ? `[${ip}]` : ip}${suffix}`;
    }
  }
  return undefined;
}

/** The authority clients are told to use (realm, X-Docker-Endpoints): a Host naming this machine, else the listen address. */
export function advertisedAuthority(c: Config, hostHeader: string, port: number): string {
  return localAuthority(hostHeader, port, c.tls_certificate !== null) ?? defaultAuthority(c, port);
}

/**
 * The prod flavor does not guess names (spec v1-protocol §8.1 flavors): it refuses to start without
 * token_service when it checks v2 tokens, and without registry_endpoints when an index (or the
 * stand-in index of a standalone registry) answers with X-Docker-Endpoints.
 */
export function requireAdvertisedNames(c: Pick<Config, 'flavor' | 'token_service' | 'registry_endpoints'>, uses: { v2Tokens: boolean; index: boolean }): void {
  if (c.flavor !== 'prod') return;
  const missing: string[] = [];
  if (uses.v2Tokens && c.token_service === null) {
    missing.push('token_service: required with v2 token auth (the audience of v2 tokens; the listen address is no name clients know)');
  }
  if (uses.index && !c.registry_endpoints?.length) {
    missing.push('registry_endpoints: required when an index answers (X-Docker-Endpoints; the listen address is no name clients know)');
  }
  if (missing.length > 0) throw new ConfigError(`invalid configuration (flavor prod):\n  ${missing.join('\n  ')}`);
}
