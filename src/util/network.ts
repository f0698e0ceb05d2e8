import { isIP } from 'node:net';

/** An address or CIDR network as a subnet (an address alone is its own /32 or /128). */
export interface Subnet {
  readonly address: string;
  readonly prefix: number;
  readonly family: 'ipv4' | 'ipv6';
}

/**
 * `a.b.c.d`, `a.b.c.d/n`, `x::y`, `x::y/n` → a subnet; undefined for anything else (not an address,
 * or a prefix longer than the family's). The one reading of trusted_proxies and
 * webhook_allowed_networks, for the configuration's checks and for the matchers built from them.
 */
export function parseNetwork(n: string): Subnet | undefined {
  const m = /^([^/]+)(?:\/(\d{1,3}))?$/.exec(n.trim());
  const v = m ? isIP(m[1]!) : 0;
  if (!m || v === 0) return undefined;
  const max = v === 4 ? 32 : 128;
  const prefix = m[2] === undefined ? max : Number(m[2]);
  if (prefix > max) return undefined;
  return { address: m[1]!, prefix, family: v === 4 ? 'ipv4' : 'ipv6' };
}
