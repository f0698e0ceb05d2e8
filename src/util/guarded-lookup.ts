import dns, { type LookupAddress } from 'node:dns';
import type { LookupFunction } from 'node:net';

type LookupCallback = (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void;

/**
 * A `lookup` for net.connect (and http/https requests, tls.connect, which hand it on) that resolves
 * the name once and refuses it when any of its addresses is not `permits`-ted: the address checked
 * is the one connected to. Checking a name by resolving it first and then connecting to it resolves
 * it twice, and a name whose first answer is public and whose second is 127.0.0.1, 10.x or
 * 169.254.169.254 (DNS rebinding) passed the check and reached the address refused. The refusal is
 * the connection's error: `refusal(hostname, the first address refused)`. An address literal never
 * comes here (net.connect connects to it without a lookup): the caller checks literals itself.
 *
 * The one implementation behind where webhooks may go (webhooks/outgoing.ts) and where a URL an
 * upstream handed out may take the mirror (mirror/upstream.ts). It resolves through node:dns's
 * `lookup` as it is when called (tests replace it to answer differently from one call to the next).
 */
export function guardedLookup(permits: (address: string) => boolean, refusal: (hostname: string, address?: string) => Error): LookupFunction {
  const lookup = (hostname: string, options: { all?: boolean }, callback: LookupCallback): void => {
    dns.lookup(hostname, { all: true }, (err, addresses) => {
      if (err) return callback(err, '');
      if (addresses.length === 0) return callback(refusal(hostname), '');
      const refused = addresses.find((a) => !permits(a.address));
      if (refused) return callback(refusal(hostname, refused.address), '');
      if (options.all) return callback(null, addresses);
      callback(null, addresses[0]!.address, addresses[0]!.family);
    });
  };
  return lookup as LookupFunction;
}
