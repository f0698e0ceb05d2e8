import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { request } from '../helpers/http.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { pushV2 } from '../helpers/v2-client.js';
import { Receiver } from '../helpers/receiver.js';
import type { Event } from '../../src/notifications/events.js';

const events = (rx: Receiver): Event[] => rx.received.flatMap((x) => (JSON.parse(x.body) as { events: Event[] }).events);

/**
 * distribution's notifications (src/notifications/notifier.ts) while the receiver is away: every
 * event a client's request makes is kept in storage until delivered, and only the oldest few
 * hundred batches in memory. Before, each undelivered event stayed in memory as well, so the
 * pulls of clients during a long enough outage of the receiver took the process down.
 */
describe('hardening: an unreachable notification endpoint does not grow memory with every event', () => {
  let s: TestServer;
  const rx = new Receiver();
  before(async () => {
    // the receiver's port, closed until the end of the test: connections refused
    await rx.up();
    await rx.down();
    s = await startTestServer({
      standalone: true,
      v2: true,
      notifications: { endpoints: [{ name: 'away', url: `${rx.url}/events`, threshold: 1, backoff: 0.2, timeout: 1 }] },
    });
  });
  after(async () => {
    await s?.stop();
    await rx.down();
  });

  it('600 pulls while the receiver is down: at most 256 stored batches in memory, all 600 delivered once, in order, when it is back', async () => {
    await pushV2(s.url, 'notes/app', 'latest');
    const notifier = s.notifier!;
    const settled = async (): Promise<void> => {
      for (let i = 0; i < 2000 && notifier.memory()[0]!.pending > 0; i++) await new Promise((r) => setTimeout(r, 5));
      assert.equal(notifier.memory()[0]!.pending, 0, 'every event stored');
    };
    await settled();
    const before = notifier.stats()[0]!.depth;
    const N = 600;
    for (let i = 0; i < N; i++) {
      // each a pull event, stored before the next request: a batch of its own
      const r = await request(s.url, '/v2/notes/app/manifests/latest', { method: 'HEAD', headers: { 'User-Agent': `puller-${i}` } });
      assert.equal(r.status, 200);
      await settled();
    }
    const mem = notifier.memory()[0]!;
    assert.ok(mem.batches <= 256 && mem.events < N, `${mem.batches} stored batches (${mem.events} events) kept in memory`);
    assert.equal(notifier.stats()[0]!.depth, before + N, 'every event still queued');

    await rx.up();
    await rx.until((r) => r.length > 0 && events(rx).filter((e) => e.action === 'pull').length >= N, 60_000, 'the queued pull events');
    const pulls = events(rx)
      .filter((e) => e.action === 'pull')
      .map((e) => e.request.useragent);
    assert.equal(pulls.length, N, 'each delivered once');
    assert.deepEqual(
      pulls,
      Array.from({ length: N }, (_, i) => `puller-${i}`),
      'in the order of the requests',
    );
    assert.equal(events(rx).length, before + N, 'the push events too');
    for (let i = 0; i < 100 && notifier.stats()[0]!.depth > 0; i++) await new Promise((r) => setTimeout(r, 50));
    assert.equal(notifier.stats()[0]!.depth, 0);
    assert.deepEqual(notifier.memory()[0], { endpoint: 'away', pending: 0, batches: 0, events: 0 });
  });
});
