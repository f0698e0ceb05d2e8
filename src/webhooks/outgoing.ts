import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { BlockList, isIP } from 'node:net';
import { guardedLookup } from '../util/guarded-lookup.js';
import { addressClass, parseNetwork } from '../util/network.js';

/**
 * Where webhooks may go. Hook URLs are chosen by repository owners, not by the operator: without a
 * check, a hook to http://127.0.0.1:<port>/, http://169.254.169.254/, a private address, or a name
 * resolving to one makes the index POST into its own network and show the first bytes of the answer
 * in the delivery history (SSRF). Only public unicast addresses are reached, unless the operator
 * lists networks in `webhook_allowed_networks` (an internal CI, or loopback in tests).
 */
export class DestinationPolicy {
  private readonly allowed = new BlockList();

  /** `allowedNetworks`: addresses or CIDRs (`10.1.0.0/16`, `::1/128`) reachable although not public. */
  constructor(readonly allowedNetworks: readonly string[] = []) {
    for (const n of allowedNetworks) {
      const net = parseNetwork(n);
      if (!net) throw new Error(`not an address or CIDR network: ${n}`);
      this.allowed.addSubnet(net.address, net.prefix, net.family);
    }
  }

  /** May a delivery connect to this address? (IPv4-mapped IPv6 addresses are judged as IPv4.) */
  permits(address: string): boolean {
    const v = isIP(address);
    if (v === 0) return false;
    const family = v === 4 ? 'ipv4' : 'ipv6';
    if (this.allowed.check(address, family)) return true;
    return addressClass(address) === 'public';
  }

  /**
   * Is this a public address (not one the policy would refuse without webhook_allowed_networks)?
   * A receiver's answer is kept in the history only from one: the operator's allowance lets
   * deliveries into a network, not every account read what the services there answer.
   */
  isPublic(address: string): boolean {
    return addressClass(address) === 'public';
  }

  /** The URL's host when it is an address literal, else undefined (a name, judged when resolved). */
  static literal(url: URL): string | undefined {
    const h = url.hostname.replace(/^\[(.*)\]$/, '$1');
    return isIP(h) ? h : undefined;
  }
}

export class RefusedDestination extends Error {
  override readonly name = 'RefusedDestination';
}

const refusal = (host: string): RefusedDestination =>
  new RefusedDestination(`refused: ${host} is not a public address (an operator may allow networks with webhook_allowed_networks)`);

export interface PostResult {
  readonly status: number;
  /**
   * The first `maxBytes` of the answer (the rest is never read); null when the answer came from a
   * non-public address that webhook_allowed_networks permits: nothing of it is read or kept, since
   * any repository owner chooses the URL and reads the history (a hook to an internal service in
   * the allowed network, "Send test", and its answer was on the page: SSRF with read-back).
   */
  readonly excerpt: string | null;
}

/**
 * POST `body` to `url` within `timeoutMs` (connect, answer and the excerpt of its body together),
 * to a permitted address only; redirects are not followed; the body of an answer from a non-public
 * (operator-allowed) address is not read. Rejects with a RefusedDestination for an
 * address the policy refuses, a TimeoutError past the time, or the connection's error.
 */
export function postWebhook(
  url: string,
  headers: Record<string, string>,
  body: string,
  opts: { timeoutMs: number; policy: DestinationPolicy; maxBytes: number },
): Promise<PostResult> {
  return new Promise<PostResult>((resolve, reject) => {
    let u: URL;
    try {
      u = new URL(url);
    } catch {
      return reject(new Error('invalid URL'));
    }
    if (u.protocol !== 'http:' && u.protocol !== 'https:') return reject(new Error('not an http(s) URL'));
    const literal = DestinationPolicy.literal(u);
    if (literal !== undefined && !opts.policy.permits(literal)) return reject(refusal(u.hostname));
    const payload = Buffer.from(body, 'utf8');
    const signal = AbortSignal.timeout(opts.timeoutMs);
    const send = u.protocol === 'https:' ? httpsRequest : httpRequest;
    const req = send(u, {
      method: 'POST',
      headers: { ...headers, 'Content-Length': String(payload.length), Connection: 'close' },
      // the address checked is the one connected to (no second resolution to rebind)
      lookup: guardedLookup((a) => opts.policy.permits(a), refusal),
      agent: false,
      signal,
    });
    const timedOut = (): Error => Object.assign(new Error('timeout'), { name: 'TimeoutError' });
    req.on('error', (e) => reject(signal.aborted ? timedOut() : e));
    req.on('response', (res: IncomingMessage) => {
      // the address the answer came from (the one the lookup checked, or the literal)
      if (!opts.policy.isPublic(req.socket?.remoteAddress ?? '')) {
        res.destroy();
        return resolve({ status: res.statusCode ?? 0, excerpt: null });
      }
      const parts: Buffer[] = [];
      let n = 0;
      let finished = false;
      const done = (): void => {
        if (finished) return;
        finished = true;
        res.destroy();
        resolve({ status: res.statusCode ?? 0, excerpt: Buffer.concat(parts).subarray(0, opts.maxBytes).toString('utf8') });
      };
      res.on('data', (c: Buffer) => {
        parts.push(c);
        n += c.length;
        if (n >= opts.maxBytes) done();
      });
      res.on('end', done);
      // cut short (the time ran out while the answer came): what came is kept
      res.on('error', done);
      res.on('close', done);
    });
    req.end(payload);
  });
}
