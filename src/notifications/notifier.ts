import { eventDeliveries } from '../metrics/registry.js';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import type { StorageDriver } from '../storage/driver.js';
import { ContentTooLargeError, isNotFound } from '../storage/driver.js';
import { LINK_MAX, parseRecord, readOptional } from '../content/small-objects.js';
import type { Logger } from '../log/logger.js';
import { EVENTS_MEDIA_TYPE, rfc3339Nano, type Event, type EventInput } from './events.js';

/** One `notifications.endpoints` entry (durations in seconds). */
export interface EndpointConfig {
  readonly name: string;
  readonly url: string;
  readonly headers: Readonly<Record<string, readonly string[]>>;
  readonly timeout: number;
  readonly threshold: number;
  readonly backoff: number;
  readonly ignoredmediatypes: readonly string[];
  readonly ignore: { readonly mediatypes: readonly string[]; readonly actions: readonly string[] } | null;
  readonly disabled: boolean;
}

export interface NotifierOptions {
  readonly endpoints: readonly EndpointConfig[];
  readonly includeReferences: boolean;
  /** This node's queue owner name in storage (a restarted node resumes its own queue). */
  readonly node: string;
  /** source.addr of events: host:port of this registry (the port is known once it listens: see `listening`). */
  readonly sourceAddr: string;
}

/** Storage layout: events/notifications/<endpoint>/<owner>/<time>-<seq>-<rand> (a JSON array of events), events/owners/<owner> (lease). */
const ROOT = 'events';
const OWNERS = `${ROOT}/owners`;
const QUEUES = `${ROOT}/notifications`;
/** Events of one stored batch (and one envelope). */
const BATCH = 50;
/** Events an endpoint may hold in memory before storage took them; past it new events are dropped (logged). */
const MAX_PENDING = 10_000;
const LEASE_MS = 30_000;
/**
 * Bound of a stored batch (the write splits a larger one): events carry a manifest's references at
 * most (a manifest is 4 MiB at most), so one event is always within it. A larger object in the
 * queue is not read (logged, left in place), whatever it holds.
 */
const BATCH_MAX = 16 * 1024 * 1024;

const segment = (s: string): string =>
  s
    .replace(/[^A-Za-z0-9._-]/g, '_')
    .replace(/^\.+/, '_')
    .slice(0, 60) || '_';
/** A storage segment naming an endpoint: readable, and distinct per name. */
export const endpointKey = (name: string): string => `${segment(name)}-${createHash('sha256').update(name).digest('hex').slice(0, 8)}`;

interface Stored {
  readonly key: string;
  readonly events: Event[];
  /** Bytes of the batch as stored. */
  readonly bytes: number;
}

/**
 * Stored batches whose events a queue keeps in memory, at most (at least one, whatever its size):
 * the rest wait in storage only and are read back, in order, once these are sent. Before
 * 2026-12-07 every undelivered event stayed in memory as well as in storage, so a receiver that was
 * down (or refused) for long enough took the process down with the pulls and pushes it missed.
 */
const WINDOW_BATCHES = 256;
const WINDOW_BYTES = 16 * 1024 * 1024;

/** Batches are sent in the order of their names (time, then sequence). */
const nameOf = (key: string): string => key.slice(key.lastIndexOf('/') + 1);
const byName = (a: string, b: string): number => (nameOf(a) < nameOf(b) ? -1 : nameOf(a) > nameOf(b) ? 1 : 0);

/** A stored batch's events (undefined when it is not a list), read within BATCH_MAX. */
async function readBatch(driver: StorageDriver, key: string): Promise<Stored | undefined> {
  const raw = await driver.getContent(key, { maxSize: BATCH_MAX });
  const events = parseRecord<unknown>(raw, key);
  return Array.isArray(events) ? { key, events: events as Event[], bytes: raw.length } : undefined;
}

/**
 * One endpoint's queue: events are appended in order, written to storage in batches (so a restart
 * or a crash after the write loses nothing), sent in order one envelope at a time, and deleted
 * once the receiver answered 2xx/3xx. Failures are retried; after `threshold` failures in a row
 * the sender waits `backoff` before each retry (distribution's retrying sink), never dropping.
 */
class EndpointQueue {
  private pending: Event[] = [];
  /** The oldest stored batches, events included (within WINDOW_BATCHES and WINDOW_BYTES). */
  private readonly stored: Stored[] = [];
  private storedBytes = 0;
  /** Batches of this queue are in storage and not in `stored`: read back once `stored` is sent. */
  private behind = false;
  /** Events of those batches, as far as counted (the queue's depth). */
  private spilled = 0;
  private refilling = false;
  private writing = false;
  private sending = false;
  private failures = 0;
  private seq = 0;
  private stopped = false;
  private wake: (() => void) | undefined;
  private sleepTimer: NodeJS.Timeout | undefined;
  dropped = 0;
  delivered = 0;
  /** Tests and metrics: called after each envelope delivered (events, ms since the oldest was emitted). */
  onDelivered?: (events: readonly Event[]) => void;

  constructor(
    readonly config: EndpointConfig,
    private readonly driver: StorageDriver,
    /** Set at start, once the node knows its owner name. */
    public prefix: string,
    private readonly log: Logger,
  ) {}

  get depth(): number {
    return this.pending.length + this.stored.reduce((a, s) => a + s.events.length, 0) + this.spilled;
  }

  /** What the queue keeps in memory (tests and diagnostics): events not stored yet, stored batches and their events. */
  memory(): { pending: number; batches: number; events: number } {
    return { pending: this.pending.length, batches: this.stored.length, events: this.stored.reduce((a, s) => a + s.events.length, 0) };
  }

  /**
   * A batch now in storage under this queue's prefix: kept in memory when it fits the window and
   * nothing older waits in storage alone; else left there (counted), to be read back in order.
   */
  offer(b: Stored): void {
    if (this.stored.some((s) => s.key === b.key)) return; // read back by a refill already
    const fits = this.stored.length === 0 || (this.stored.length < WINDOW_BATCHES && this.storedBytes + b.bytes <= WINDOW_BYTES);
    if (!this.behind && !this.refilling && fits) {
      this.stored.push(b);
      this.storedBytes += b.bytes;
    } else {
      this.behind = true;
      this.spilled += b.events.length;
    }
  }

  accepts(e: Event): boolean {
    const mt = e.target.mediaType;
    if (mt && (this.config.ignoredmediatypes.includes(mt) || (this.config.ignore?.mediatypes.includes(mt) ?? false))) return false;
    if (this.config.ignore?.actions.includes(e.action)) return false;
    return true;
  }

  push(e: Event): void {
    if (this.pending.length >= MAX_PENDING) {
      this.dropped++;
      eventDeliveries.inc({ queue: this.config.name, result: 'failed' });
      if (this.dropped === 1 || this.dropped % 1000 === 0)
        this.log.error('notification queue full: event dropped', { endpoint: this.config.name, dropped: this.dropped });
      return;
    }
    this.pending.push(e);
    void this.write();
  }

  /** Entries found in storage at start (ours from before a restart, or adopted), offered oldest first: sent first, in key order. */
  resume(entries: Stored[]): void {
    for (const e of entries) this.offer(e);
    this.stored.sort((a, b) => byName(a.key, b.key));
    this.kick();
  }

  /**
   * `stored` is sent and batches wait in storage alone: read the oldest of them back, up to the
   * window. A batch stored meanwhile waits in storage too (the next refill lists it).
   */
  private async refill(): Promise<void> {
    this.refilling = true;
    this.behind = false;
    try {
      let keys: string[];
      try {
        keys = (await this.driver.list(this.prefix)).sort(byName);
      } catch (e) {
        if (!isNotFound(e)) throw e;
        keys = [];
      }
      const known = new Set(this.stored.map((s) => s.key));
      let counted = 0;
      let bytes = 0;
      const loaded: Stored[] = [];
      for (const key of keys) {
        if (known.has(key)) continue;
        if (loaded.length >= WINDOW_BATCHES || (loaded.length > 0 && bytes >= WINDOW_BYTES)) {
          this.behind = true;
          break;
        }
        let b: Stored | undefined;
        try {
          b = await readBatch(this.driver, key);
        } catch (e) {
          if (!isNotFound(e)) this.log.warn('stored notification batch unreadable: left in place', { key, err: String(e) });
        }
        if (!b) continue;
        loaded.push(b);
        bytes += b.bytes;
        counted += b.events.length;
      }
      // adopted meanwhile (resume) may have taken some of them in already
      const now = new Set(this.stored.map((s) => s.key));
      for (const b of loaded) {
        if (now.has(b.key)) continue;
        this.stored.push(b);
        this.storedBytes += b.bytes;
      }
      this.stored.sort((a, b) => byName(a.key, b.key));
      this.spilled = this.behind ? Math.max(0, this.spilled - counted) : 0;
    } catch (e) {
      this.behind = true;
      throw e;
    } finally {
      this.refilling = false;
    }
  }

  private async write(): Promise<void> {
    if (this.writing) return;
    this.writing = true;
    try {
      while (this.pending.length > 0) {
        let events = this.pending.slice(0, BATCH);
        let body = Buffer.from(JSON.stringify(events));
        while (body.length > BATCH_MAX && events.length > 1) {
          events = events.slice(0, events.length >> 1);
          body = Buffer.from(JSON.stringify(events));
        }
        const name = `${String(Date.now()).padStart(15, '0')}-${String(this.seq++).padStart(9, '0')}-${randomBytes(2).toString('hex')}`;
        const key = `${this.prefix}/${name}`;
        try {
          await this.driver.putContent(key, body);
        } catch (e) {
          // storage refused: keep them in memory and try again shortly (order is kept)
          this.log.warn('notification events not stored yet', { endpoint: this.config.name, err: String(e) });
          await this.sleep(1000);
          if (this.stopped) return;
          continue;
        }
        this.pending.splice(0, events.length);
        this.offer({ key, events, bytes: body.length });
        this.kick();
      }
    } finally {
      this.writing = false;
    }
  }

  kick(): void {
    if (this.wake) {
      const w = this.wake;
      this.wake = undefined;
      clearTimeout(this.sleepTimer);
      w();
    }
    if (!this.sending && !this.stopped) this.sendLoop = this.send();
  }

  private sendLoop: Promise<void> | undefined;

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      this.wake = resolve;
      this.sleepTimer = setTimeout(() => {
        this.wake = undefined;
        resolve();
      }, ms);
      this.sleepTimer.unref?.();
    });
  }

  private async send(): Promise<void> {
    this.sending = true;
    try {
      while (!this.stopped && (this.stored.length > 0 || this.behind)) {
        if (this.stored.length === 0) {
          try {
            await this.refill();
          } catch (e) {
            this.log.warn('stored notification batches not listed', { endpoint: this.config.name, err: String(e) });
            await new Promise<void>((r) => setTimeout(r, 1000).unref?.());
          }
          continue;
        }
        // the oldest stored batches, up to BATCH events, in one envelope (a slow receiver then
        // costs one round trip per envelope, not per event)
        const heads: Stored[] = [this.stored[0]!];
        let n = heads[0]!.events.length;
        for (let i = 1; i < this.stored.length && n + this.stored[i]!.events.length <= BATCH; i++) {
          heads.push(this.stored[i]!);
          n += this.stored[i]!.events.length;
        }
        const events = heads.flatMap((h) => h.events);
        const ok = await this.post(events);
        if (this.stopped && !ok) return;
        if (ok) {
          this.failures = 0;
          // by identity: batches adopted meanwhile may have been sorted in before these
          for (const h of heads) {
            this.stored.splice(this.stored.indexOf(h), 1);
            this.storedBytes -= h.bytes;
          }
          this.delivered += events.length;
          eventDeliveries.inc({ queue: this.config.name, result: 'success' }, events.length);
          for (const head of heads) {
            await this.driver.delete(head.key).catch((e: unknown) => {
              if (!isNotFound(e)) this.log.warn('delivered notification batch not removed', { key: head.key, err: String(e) });
            });
          }
          this.onDelivered?.(events);
          continue;
        }
        this.failures++;
        eventDeliveries.inc({ queue: this.config.name, result: 'retry' }, events.length);
        // distribution: retried at once until `threshold` failures in a row, then after `backoff`
        const wait = this.failures >= this.config.threshold ? this.config.backoff * 1000 : 50;
        await new Promise<void>((r) => setTimeout(r, wait).unref?.());
      }
    } finally {
      this.sending = false;
    }
  }

  private async post(events: Event[]): Promise<boolean> {
    const headers: Record<string, string> = { 'Content-Type': EVENTS_MEDIA_TYPE };
    for (const [k, v] of Object.entries(this.config.headers)) if (v.length > 0) headers[k] = v.join(', ');
    try {
      const res = await fetch(this.config.url, {
        method: 'POST',
        redirect: 'manual',
        headers,
        body: JSON.stringify({ events }),
        signal: AbortSignal.timeout(this.config.timeout * 1000),
      });
      await res.body?.cancel().catch(() => undefined);
      // distribution: any 2xx or 3xx is delivered
      if (res.status >= 200 && res.status < 400) return true;
      if (this.failures === 0) this.log.warn('notification endpoint refused events', { endpoint: this.config.name, status: res.status });
      return false;
    } catch (e) {
      if (this.failures === 0)
        this.log.warn('notification endpoint unreachable', { endpoint: this.config.name, err: String((e as Error).cause ?? (e as Error).message) });
      return false;
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.kick();
    // an envelope on its way finishes (and, delivered, leaves storage), so a restart does not send it again
    if (this.sendLoop) await Promise.race([this.sendLoop, new Promise((r) => setTimeout(r, (this.config.timeout + 1) * 1000))]);
    // let the batch being written land in storage (it is then resumed at the next start)
    for (let i = 0; i < 100 && this.writing; i++) await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * distribution's notifications (spec v2-bridge §5.4) with queues that survive restarts: each
 * endpoint's events are kept under `events/notifications/<endpoint>/<node>/` in storage until the
 * receiver took them. A node resumes its own queue at start, and takes over the queues of nodes
 * whose lease (`events/owners/<node>`, renewed every 10 s) ran out, moving each stored batch into
 * its own queue (a move is the claim: one node gets each batch).
 */
export class Notifier {
  readonly instanceID = randomUUID();
  private readonly queues: EndpointQueue[];
  private leaseTimer: NodeJS.Timeout | undefined;
  private nsCounter = 0;
  private lastMs = 0;

  constructor(
    private readonly driver: StorageDriver,
    private readonly opts: NotifierOptions,
    private readonly log: Logger,
  ) {
    this.owner = segment(opts.node);
    this.sourceAddr = opts.sourceAddr;
    this.queues = opts.endpoints.filter((e) => !e.disabled).map((e) => new EndpointQueue(e, driver, `${QUEUES}/${endpointKey(e.name)}/${this.owner}`, log));
  }

  /** The name this node's queues are stored under. */
  owner: string;
  /** source.addr of events (main.ts sets the bound port once listening). */
  sourceAddr: string;

  get includeReferences(): boolean {
    return this.opts.includeReferences;
  }

  get active(): boolean {
    return this.queues.length > 0;
  }

  /** Events waiting per endpoint (memory and storage), and dropped ones. */
  stats(): { endpoint: string; depth: number; delivered: number; dropped: number }[] {
    return this.queues.map((q) => ({ endpoint: q.config.name, depth: q.depth, delivered: q.delivered, dropped: q.dropped }));
  }

  /** What each endpoint's queue keeps in memory (tests and diagnostics). */
  memory(): { endpoint: string; pending: number; batches: number; events: number }[] {
    return this.queues.map((q) => ({ endpoint: q.config.name, ...q.memory() }));
  }

  /** Tests: observe deliveries of every endpoint. */
  onDelivered(fn: (endpoint: string, events: readonly Event[]) => void): void {
    for (const q of this.queues) q.onDelivered = (events) => fn(q.config.name, events);
  }

  /** Queue an event for every endpoint that does not ignore it. Never waits for storage or receivers. */
  emit(input: EventInput): void {
    if (this.queues.length === 0) return;
    const now = Date.now();
    // distinct, increasing timestamps for events of the same millisecond (RFC3339Nano)
    this.nsCounter = now === this.lastMs ? this.nsCounter + 1 : 0;
    this.lastMs = now;
    const event: Event = {
      id: randomUUID(),
      timestamp: rfc3339Nano(now, this.nsCounter),
      action: input.action,
      target: input.target,
      request: input.request,
      actor: input.actor ? { name: input.actor } : {},
      source: { addr: this.sourceAddr, instanceID: this.instanceID },
    };
    for (const q of this.queues) if (q.accepts(event)) q.push(event);
  }

  /** Take the lease, resume this node's stored queues and adopt those of dead nodes; start sending. */
  async start(): Promise<void> {
    if (this.queues.length === 0) return;
    // another live process with the same node name (two on one host): a name of its own
    const held = await this.leaseOf(`${OWNERS}/${this.owner}`);
    if (held > Date.now()) {
      this.owner = segment(`${this.opts.node}-${randomBytes(4).toString('hex')}`);
      for (const q of this.queues) q.prefix = `${QUEUES}/${endpointKey(q.config.name)}/${this.owner}`;
    }
    await this.renewLease();
    this.leaseTimer = setInterval(() => {
      this.renewLease().catch((e: unknown) => this.log.warn('notification lease not renewed', { err: String(e) }));
      this.adoptOrphans().catch((e: unknown) => this.log.warn('orphaned notification queues not adopted', { err: String(e) }));
    }, 10_000);
    this.leaseTimer.unref();
    for (const q of this.queues) {
      const prefix = `${QUEUES}/${endpointKey(q.config.name)}/${this.owner}`;
      await this.readBatches(prefix, q);
    }
    await this.adoptOrphans();
  }

  /** When an owner's lease ends (epoch ms; 0 when there is none, or it is not a lease). */
  private async leaseOf(key: string): Promise<number> {
    try {
      return Number((await readOptional(this.driver, key, LINK_MAX))?.toString('utf8')) || 0;
    } catch (e) {
      if (!(e instanceof ContentTooLargeError)) throw e;
      this.log.warn('notification lease unreadable: as ended', { key, err: String(e) });
      return 0;
    }
  }

  private async renewLease(expires = Date.now() + LEASE_MS): Promise<void> {
    await this.driver.putContent(`${OWNERS}/${this.owner}`, Buffer.from(String(expires)), { durable: false });
  }

  private async list(prefix: string): Promise<string[]> {
    try {
      return await this.driver.list(prefix);
    } catch (e) {
      if (isNotFound(e)) return [];
      throw e;
    }
  }

  /** This node's stored batches, oldest first, offered to q one at a time (it keeps what fits its window). */
  private async readBatches(prefix: string, q: EndpointQueue): Promise<void> {
    for (const key of (await this.list(prefix)).sort(byName)) {
      try {
        const b = await readBatch(this.driver, key);
        if (b) q.offer(b);
      } catch (e) {
        if (!isNotFound(e)) this.log.warn('stored notification batch unreadable: left in place', { key, err: String(e) });
      }
    }
    q.resume([]);
  }

  /** Queues of owners whose lease ended: each batch moved into ours (the move decides who takes it). */
  private async adoptOrphans(): Promise<void> {
    const now = Date.now();
    for (const leaseKey of await this.list(OWNERS)) {
      const other = leaseKey.slice(OWNERS.length + 1);
      if (other === this.owner) continue;
      const until = await this.leaseOf(leaseKey);
      if (until > now) continue;
      let adopted = 0;
      for (const q of this.queues) {
        const theirs = `${QUEUES}/${endpointKey(q.config.name)}/${other}`;
        const mine = `${QUEUES}/${endpointKey(q.config.name)}/${this.owner}`;
        let moved = 0;
        for (const key of (await this.list(theirs)).sort(byName)) {
          const to = `${mine}/${key.slice(theirs.length + 1)}`;
          try {
            await this.driver.move(key, to);
          } catch (e) {
            if (isNotFound(e)) continue; // another node took it
            throw e;
          }
          try {
            const b = await readBatch(this.driver, to);
            if (b) {
              q.offer(b);
              moved++;
            }
          } catch (e) {
            this.log.warn('adopted notification batch unreadable: left in place', { key: to, err: String(e) });
          }
        }
        if (moved > 0) q.resume([]);
        adopted += moved;
      }
      if (adopted > 0) this.log.info('adopted the notification queue of a stopped node', { node: other, batches: adopted });
      await this.driver.delete(leaseKey).catch(() => undefined);
    }
  }

  /** Stop sending; what is not delivered stays in storage for the next start. */
  async stop(): Promise<void> {
    clearInterval(this.leaseTimer);
    await Promise.all(this.queues.map((q) => q.stop()));
    // released: the next start (or another node) takes the queue over at once
    if (this.queues.length > 0) await this.renewLease(0).catch(() => undefined);
  }
}

/** The default queue owner of this node: its host name (a restarted node finds its queue again). */
export const defaultNode = (): string => hostname();
