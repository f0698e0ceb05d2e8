import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { TokenAuth } from '../../../src/auth/registry-token.js';
import { createLogger } from '../../../src/log/logger.js';

/**
 * The registry's token cache (token mode): tokens of one repository whose validations return the same
 * id list share one Set (a soak's cache held a copy per token), and sharing never hands a token ids
 * the index did not list for it. The index here is a small HTTP server answering per token.
 */
describe('TokenAuth: validations of one repository share their id list, never widen it', () => {
  let server: Server;
  let url = '';
  // what the index lists, per token signature
  const lists = new Map<string, string[]>();
  let asked = 0;
  before(async () => {
    server = createServer((req, res) => {
      asked++;
      const sig = /signature=([^,]+)/.exec(req.headers.authorization ?? '')?.[1] ?? '';
      const ids = lists.get(sig);
      if (!ids) {
        res.writeHead(401).end();
        return;
      }
      res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify(ids.map((id) => ({ id }))));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => new Promise<void>((r) => server.close(() => r())));

  const id = (n: number): string => n.toString(16).padStart(64, '0');
  const header = (sig: string): string => `Token signature=${sig},repository="ns/app",access=read`;
  const read = async (auth: TokenAuth, sig: string): Promise<ReadonlySet<string>> =>
    (await auth.authorize({ authorization: header(sig), method: 'GET', headers: {}, path: '/v1/repositories/ns/app/tags' })).allowedIds!;

  it('same list: one Set for both tokens; another list: its own Set with exactly its ids', async () => {
    const auth = new TokenAuth({ indexEndpoint: () => url, cacheTtl: 60, log: createLogger('error') });
    const ab = [id(1), id(2)];
    lists.set('s1', ab);
    lists.set('s2', [id(2), id(1)]);
    lists.set('s3', [id(1), id(3)]);
    lists.set('s4', [id(1)]);
    const a = await read(auth, 's1');
    const b = await read(auth, 's2');
    assert.deepEqual([...a].sort(), ab);
    assert.equal(b, a, "the second token of the same list shares the first one's Set");
    const c = await read(auth, 's3');
    assert.notEqual(c, a);
    assert.deepEqual([...c].sort(), [id(1), id(3)]);
    const d = await read(auth, 's4');
    assert.deepEqual([...d], [id(1)], 'a narrower list is not widened to the one kept before');
    // the earlier tokens still read from their cache entries, unchanged by the later lists
    const before = asked;
    assert.deepEqual([...(await read(auth, 's1'))].sort(), ab);
    assert.deepEqual([...(await read(auth, 's3'))].sort(), [id(1), id(3)]);
    assert.equal(asked, before, 'both answered from the cache');
  });

  it('a token the index refuses is refused, whatever list was kept for the repository', async () => {
    const auth = new TokenAuth({ indexEndpoint: () => url, cacheTtl: 60, log: createLogger('error') });
    lists.set('ok', [id(7)]);
    await read(auth, 'ok');
    await assert.rejects(read(auth, 'forged'), (e: Error & { code?: string }) => e.code === 'REQUIRES_AUTHORIZATION');
  });
});
