import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import dns, { type LookupAddress } from 'node:dns';
import { connect, createServer, type AddressInfo, type Server } from 'node:net';
import { guardedLookup } from '../../../src/util/guarded-lookup.js';
import { addressClass } from '../../../src/util/network.js';

/**
 * The guarded lookup shared by the webhooks and the mirror: one resolution, every address of it
 * checked, and the connection made to what was checked. node:dns's lookup is replaced here for
 * names under .guard.test (each answers a list of addresses per resolution, from a script).
 */

type Cb = (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void;
const scripts = new Map<string, string[][]>();
const resolutions = new Map<string, number>();
const realLookup = dns.lookup;

class Refused extends Error {}
const publicOnly = (a: string): boolean => addressClass(a) === 'public';
const loopbackOnly = (a: string): boolean => addressClass(a) === 'loopback';
const refusal = (host: string, address?: string): Refused => new Refused(`${host} ${address ?? '-'}`);

describe('guardedLookup (util/guarded-lookup.ts)', () => {
  let server: Server;
  let port: number;
  let accepted = 0;

  before(async () => {
    dns.lookup = ((host: string, options: unknown, callback?: Cb): void => {
      const script = scripts.get(host);
      if (!script) return (realLookup as (h: string, o: unknown, c?: Cb) => void)(host, options, callback);
      const n = resolutions.get(host) ?? 0;
      resolutions.set(host, n + 1);
      const list = script[Math.min(n, script.length - 1)]!.map((address) => ({ address, family: address.includes(':') ? 6 : 4 }));
      process.nextTick(() => (callback ?? (options as Cb))(null, list));
    }) as typeof dns.lookup;
    server = createServer((s) => {
      accepted++;
      s.end();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    port = (server.address() as AddressInfo).port;
  });
  after(async () => {
    dns.lookup = realLookup;
    await new Promise((r) => server.close(r));
  });

  const connectVia = (host: string, permits: (a: string) => boolean): Promise<string> =>
    new Promise((resolve, reject) => {
      const s = connect({ host, port, lookup: guardedLookup(permits, refusal) });
      s.once('connect', () => {
        const a = s.remoteAddress ?? '';
        s.destroy();
        resolve(a);
      });
      s.once('error', reject);
    });

  it('connects to the address it checked, resolving the name once (a second answer is never used)', async () => {
    scripts.set('once.guard.test', [['127.0.0.1'], ['93.184.216.34']]);
    assert.equal(await connectVia('once.guard.test', loopbackOnly), '127.0.0.1');
    assert.equal(resolutions.get('once.guard.test'), 1);
  });

  it('refuses a name with any address not permitted, names the first refused, and connects to none', async () => {
    const before = accepted;
    // (a permitted address first: what a lookup checking only the first would connect to, here)
    scripts.set('mixed.guard.test', [['127.0.0.1', '93.184.216.34']]);
    await assert.rejects(connectVia('mixed.guard.test', loopbackOnly), (e: unknown) => e instanceof Refused && e.message === 'mixed.guard.test 93.184.216.34');
    scripts.set('loop.guard.test', [['127.0.0.1']]);
    await assert.rejects(connectVia('loop.guard.test', publicOnly), (e: unknown) => e instanceof Refused && e.message === 'loop.guard.test 127.0.0.1');
    assert.equal(accepted, before);
  });

  it('answers as asked: every address with `all`, else the first and its family; a name without addresses is refused', async () => {
    scripts.set('two.guard.test', [['127.0.0.1', '::1']]);
    const lookup = guardedLookup(loopbackOnly, refusal) as unknown as (h: string, o: { all?: boolean }, cb: Cb) => void;
    const all = await new Promise((r) => lookup('two.guard.test', { all: true }, (_e, a) => r(a)));
    assert.deepEqual(all, [
      { address: '127.0.0.1', family: 4 },
      { address: '::1', family: 6 },
    ]);
    const one = await new Promise((r) => lookup('two.guard.test', {}, (_e, a, f) => r([a, f])));
    assert.deepEqual(one, ['127.0.0.1', 4]);
    scripts.set('none.guard.test', [[]]);
    const err = await new Promise((r) => lookup('none.guard.test', {}, (e) => r(e)));
    assert.ok(err instanceof Refused && err.message === 'none.guard.test -');
  });
});
