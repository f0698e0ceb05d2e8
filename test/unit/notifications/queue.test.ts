import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createMemoryDriver } from '../../../src/storage/drivers/memory.js';
import { createLogger } from '../../../src/log/logger.js';
import { endpointKey, Notifier, type EndpointConfig } from '../../../src/notifications/notifier.js';
import type { Event } from '../../../src/notifications/events.js';
import { Receiver } from '../../helpers/receiver.js';

const log = createLogger('silent');
const endpoint = (url: string): EndpointConfig => ({
  name: 'rx',
  url,
  headers: {},
  timeout: 1,
  threshold: 2,
  backoff: 0.1,
  ignoredmediatypes: [],
  ignore: null,
  disabled: false,
});
const request = { id: 'r', addr: '127.0.0.1:1', host: 'h', method: 'GET', useragent: 'ua' };
const got = (rx: Receiver): Event[] => rx.received.flatMap((r) => (JSON.parse(r.body) as { events: Event[] }).events);

/**
 * The persistent notification queues (src/notifications/notifier.ts) on one storage: a crashed
 * node's stored events are adopted by a live node once its lease has run out, and two live
 * processes with the same node name never share a queue.
 */
describe('notification queues in storage', () => {
  const rx = new Receiver();
  before(async () => {
    await rx.up();
  });
  after(async () => {
    await rx.down();
  });

  it("a crashed node's queue (lease run out) is adopted and delivered, in order, by another node", async () => {
    const driver = createMemoryDriver();
    const ep = endpoint(`${rx.url}/e`);
    // what a node that died left: two stored batches and a lease that ended
    const dead = `events/notifications/${endpointKey('rx')}/deadnode`;
    const ev = (n: number): Event => ({
      id: `id-${n}`,
      timestamp: 't',
      action: 'push',
      target: { repository: 'a/b', tag: `t${n}` },
      request,
      actor: {},
      source: { addr: 'x:1', instanceID: 'i' },
    });
    await driver.putContent(`${dead}/000000000000001-000000000-aaaa`, Buffer.from(JSON.stringify([ev(1), ev(2)])));
    await driver.putContent(`${dead}/000000000000002-000000001-bbbb`, Buffer.from(JSON.stringify([ev(3)])));
    await driver.putContent('events/owners/deadnode', Buffer.from(String(Date.now() - 1000)));
    // a live one's lease is left alone
    await driver.putContent(`events/notifications/${endpointKey('rx')}/livenode/000000000000003-000000000-cccc`, Buffer.from(JSON.stringify([ev(9)])));
    await driver.putContent('events/owners/livenode', Buffer.from(String(Date.now() + 60_000)));
    const n = new Notifier(driver, { endpoints: [ep], includeReferences: false, node: 'adopter', sourceAddr: 'h:1' }, log);
    await n.start();
    n.emit({ action: 'pull', target: { repository: 'a/b', tag: 'new' }, request });
    await rx.until((r) => got({ received: r } as Receiver).length >= 4, 10_000, 'adopted and new events');
    await n.stop();
    assert.deepEqual(
      got(rx).map((e) => e.target.tag),
      ['t1', 't2', 't3', 'new'],
    );
    const leftover = await driver.list(`events/notifications/${endpointKey('rx')}/adopter`).catch(() => []);
    assert.deepEqual(leftover, [], 'every delivered batch removed');
    assert.deepEqual(
      await driver.list(`events/notifications/${endpointKey('rx')}`).then((l) => l.map((k) => k.split('/').pop())),
      ['livenode'],
      'delivered batches removed, the live queue untouched',
    );
    await assert.rejects(driver.getContent('events/owners/deadnode'));
  });

  it('a second live process with the same node name stores under a name of its own; a clean stop releases the lease', async () => {
    rx.received.length = 0;
    const driver = createMemoryDriver();
    await rx.down();
    const ep = endpoint(`${rx.url}/e`);
    const a = new Notifier(driver, { endpoints: [ep], includeReferences: false, node: 'same', sourceAddr: 'h:1' }, log);
    const b = new Notifier(driver, { endpoints: [ep], includeReferences: false, node: 'same', sourceAddr: 'h:2' }, log);
    await a.start();
    await b.start();
    assert.equal(a.owner, 'same');
    assert.match(b.owner, /^same-[0-9a-f]{8}$/);
    a.emit({ action: 'push', target: { tag: 'from-a' }, request });
    b.emit({ action: 'push', target: { tag: 'from-b' }, request });
    await new Promise((r) => setTimeout(r, 200));
    await a.stop();
    await b.stop();
    assert.equal(Number((await driver.getContent('events/owners/same')).toString()), 0, 'released');
    // a restart under the name finds its own queue; b's (released) is adopted
    await rx.up();
    const again = new Notifier(driver, { endpoints: [ep], includeReferences: false, node: 'same', sourceAddr: 'h:1' }, log);
    await again.start();
    await rx.until((r) => got({ received: r } as Receiver).length >= 2, 10_000, 'both queues');
    await again.stop();
    assert.deepEqual(
      got(rx)
        .map((e) => e.target.tag)
        .sort(),
      ['from-a', 'from-b'],
    );
  });

  it('events too many bytes for one stored batch (16 MiB) are split: each stored batch within it, all delivered once, in order, after a restart', async () => {
    rx.received.length = 0;
    await rx.down(); // nothing delivered until the restart: every event goes through storage
    const driver = createMemoryDriver();
    const ep: EndpointConfig = { ...endpoint(`${rx.url}/e`), timeout: 30 };
    // ~1 MiB of references per event (includeReferences, a manifest of many layers): 30 events, ~30 MiB
    const references = Array.from({ length: 7000 }, (_, i) => ({
      mediaType: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
      digest: `sha256:${createHash('sha256').update(String(i)).digest('hex')}`,
      size: i,
    }));
    const tags = Array.from({ length: 30 }, (_, i) => `t${i}`);
    const opts = { endpoints: [ep], includeReferences: true, node: 'big', sourceAddr: 'h:1' };
    const a = new Notifier(driver, opts, log);
    await a.start();
    for (const tag of tags) a.emit({ action: 'push', target: { repository: 'a/b', tag, references }, request });
    const queue = `events/notifications/${endpointKey('rx')}/big`;
    const stored = async (): Promise<{ key: string; size: number; tags: string[] }[]> =>
      Promise.all(
        (await driver.list(queue).catch(() => [] as string[])).sort().map(async (key) => {
          const body = await driver.getContent(key);
          return { key, size: body.length, tags: (JSON.parse(body.toString('utf8')) as Event[]).map((e) => e.target.tag!) };
        }),
      );
    const deadline = Date.now() + 30_000;
    while ((await stored()).flatMap((b) => b.tags).length < tags.length && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    const batches = await stored();
    for (const b of batches) assert.ok(b.size <= 16 * 1024 * 1024, `${b.key}: ${b.size} bytes (${b.tags.length} events) stored in one batch`);
    assert.ok(
      batches.some((b) => b.tags.length > 1),
      'events share a batch where they fit',
    );
    assert.deepEqual(
      batches.flatMap((b) => b.tags),
      tags,
      'stored once each, in order',
    );
    await a.stop();

    // a restart reads every batch back (within the bound) and sends it
    await rx.up();
    const b = new Notifier(driver, opts, log);
    await b.start();
    await rx.until((r) => got({ received: r } as Receiver).length >= tags.length, 30_000, 'every event');
    await new Promise((r) => setTimeout(r, 300)); // a duplicate would come now
    await b.stop();
    assert.deepEqual(
      got(rx).map((e) => e.target.tag),
      tags,
      'delivered once each, in order',
    );
    assert.deepEqual(await driver.list(queue).catch(() => []), [], 'every delivered batch removed');
  });
});
