import { BlockList, isIP } from 'node:net';

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

/** How far inside an address reaches: 'public', or the kind of network it is not public for. */
export type AddressClass = 'public' | 'loopback' | 'link-local' | 'private';

/**
 * Every network that is not the public internet, with its class: the one table behind where
 * webhooks may go (webhooks/outgoing.ts) and where an upstream may send the mirror (mirror/upstream.ts).
 */
const NON_PUBLIC: readonly (readonly [string, number, 'ipv4' | 'ipv6', Exclude<AddressClass, 'public'>])[] = [
  ['0.0.0.0', 8, 'ipv4', 'loopback'], // "this network"; 0.0.0.0 reaches the local host
  ['10.0.0.0', 8, 'ipv4', 'private'],
  ['100.64.0.0', 10, 'ipv4', 'private'], // carrier-grade NAT
  ['127.0.0.0', 8, 'ipv4', 'loopback'],
  ['169.254.0.0', 16, 'ipv4', 'link-local'], // link-local, cloud metadata services
  ['172.16.0.0', 12, 'ipv4', 'private'],
  ['192.0.0.0', 24, 'ipv4', 'private'],
  ['192.0.2.0', 24, 'ipv4', 'private'],
  ['192.168.0.0', 16, 'ipv4', 'private'],
  ['198.18.0.0', 15, 'ipv4', 'private'],
  ['198.51.100.0', 24, 'ipv4', 'private'],
  ['203.0.113.0', 24, 'ipv4', 'private'],
  ['224.0.0.0', 4, 'ipv4', 'private'], // multicast
  ['240.0.0.0', 4, 'ipv4', 'private'], // reserved, broadcast
  ['::', 96, 'ipv6', 'loopback'], // unspecified, loopback, IPv4-compatible
  ['64:ff9b::', 96, 'ipv6', 'private'], // NAT64: an IPv4 address behind it
  ['64:ff9b:1::', 48, 'ipv6', 'private'],
  ['100::', 64, 'ipv6', 'private'], // discard
  ['2001:db8::', 32, 'ipv6', 'private'], // documentation
  ['2002::', 16, 'ipv6', 'private'], // 6to4: an IPv4 address inside
  ['fc00::', 7, 'ipv6', 'private'], // unique local
  ['fe80::', 10, 'ipv6', 'link-local'],
  ['fec0::', 10, 'ipv6', 'private'], // site-local (deprecated)
  ['ff00::', 8, 'ipv6', 'private'], // multicast
];

const CLASS_LISTS = (['loopback', 'link-local', 'private'] as const).map((c) => {
  const b = new BlockList();
  for (const [a, p, f, k] of NON_PUBLIC) if (k === c) b.addSubnet(a, p, f);
  return [c, b] as const;
});

/** The class of an IP address (an IPv4-mapped IPv6 address as its IPv4 one); undefined: not an address. */
export function addressClass(address: string): AddressClass | undefined {
  const a = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address)?.[1] ?? address;
  const v = isIP(a);
  if (v === 0) return undefined;
  const family = v === 4 ? 'ipv4' : 'ipv6';
  return CLASS_LISTS.find(([, b]) => b.check(a, family))?.[0] ?? 'public';
}
