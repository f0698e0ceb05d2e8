import { createHash, randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { isNotFound, type StorageDriver } from '../storage/driver.js';
import { KeyedMutex, type Locks } from './mutex.js';
import { readOptional, RECORD_MAX } from './small-objects.js';

/** Where lock objects live: outside every prefix the content layer lists or caches. */
export const LOCKS_PREFIX = 'locks';

export interface StorageLockOptions {
  /** How long a holder's claim lasts without renewal (ms); a dead node's lock is broken after it. */
  readonly leaseMs?: number;
  /** Longest wait for a lock before the request fails (ms). */
  readonly waitMs?: number;
  /** Allowance for clocks of nodes that disagree (ms), added to the lease before breaking it. */
  readonly skewMs?: number;
}

interface LockRecord {
  readonly owner: string;
  readonly expires: number;
  /** The holder's machine and process: a lock of a dead process on this machine is broken at once. */
  readonly host?: string;
  readonly pid?: number;
  /** When the holder took the lock (ms since the epoch). */
  readonly since?: number;
}

/** Who holds a lock another caller could not take (for messages: another node, process or caller). */
export interface LockHolder {
  readonly host?: string;
  readonly pid?: number;
  readonly since?: number;
  /** Held by another caller in this very process. */
  readonly here: boolean;
}

const HOST = hostname();

/** True when the record names a process of this machine that no longer runs. */
function deadHere(r: LockRecord): boolean {
  if (r.host !== HOST || r.pid === undefined || r.pid === process.pid) return false;
  try {
    process.kill(r.pid, 0);
    return false;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

export class LockTimeoutError extends Error {
  constructor(readonly lock: string) {
    super(`timed out waiting for lock ${lock}`);
    this.name = 'LockTimeoutError';
  }
}

/**
 * Locks that hold across every process sharing the storage: several registry nodes on one
 * directory (NFS) or bucket must not interleave the writes of one v1 image, or a tag write with a
 * repository delete, any more than two requests in one process may. Within a process a KeyedMutex
 * queues the callers (no storage traffic while they wait); the process at the head of its queue
 * then takes the storage lock: an object at locks/<sha256 of the name>, created with the driver's
 * exclusive create (putContentIfAbsent), holding the owner and a lease end, renewed while held and
 * deleted on release.
 *
 * A node that dies holding a lock leaves its object behind: after the lease (plus a clock-skew
 * allowance) another node breaks it by moving it away (move() lets exactly one breaker win) and
 * creates its own (at once when the record names a process of this machine that is gone: a
 * restart after SIGKILL does not wait out the lease). Known limit: a holder stalled longer than its lease (no renewal for leaseMs)
 * loses the lock to a breaker while still working; the lease is renewed every third of it, so that
 * needs a pause of the whole process longer than the lease.
 *
 * A driver without putContentIfAbsent gets the in-process lock only (one node per storage).
 */
export class StorageLock implements Locks {
  private readonly local = new KeyedMutex();
  private readonly leaseMs: number;
  private readonly waitMs: number;
  private readonly skewMs: number;

  constructor(
    private readonly driver: StorageDriver,
    opts: StorageLockOptions = {},
  ) {
    this.leaseMs = opts.leaseMs ?? 30_000;
    this.waitMs = opts.waitMs ?? 60_000;
    this.skewMs = opts.skewMs ?? 5_000;
  }

  /** True when the lock holds across processes (the driver can create exclusively). */
  get shared(): boolean {
    return typeof this.driver.putContentIfAbsent === 'function';
  }

  run<T>(name: string, fn: () => Promise<T>): Promise<T> {
    return this.local.run(name, async () => {
      if (!this.shared) return fn();
      const release = await this.acquire(name);
      try {
        return await fn();
      } finally {
        await release();
      }
    });
  }

  /**
   * Run `fn` under the lock if nobody holds it now, without waiting: `{ ran: false, holder }` when
   * another caller (of this process, or a live one elsewhere) has it. A stale lock (lease over, or
   * its process on this machine gone) is broken as `run` would. For work that must never run twice at
   * once and need not queue (garbage collection).
   */
  async tryRun<T>(name: string, fn: () => Promise<T>): Promise<{ ran: true; value: T } | { ran: false; holder: LockHolder }> {
    if (this.tried.has(name)) return { ran: false, holder: { host: HOST, pid: process.pid, here: true } };
    this.tried.add(name);
    try {
      return await this.local.run(name, async () => {
        if (!this.shared) return { ran: true as const, value: await fn() };
        const got = await this.take(name);
        if (!got.release) return { ran: false as const, holder: { ...got.held, here: false } };
        try {
          return { ran: true as const, value: await fn() };
        } finally {
          await got.release();
        }
      });
    } finally {
      this.tried.delete(name);
    }
  }

  /** Names tryRun holds in this process (a second tryRun of the same name does not queue behind it). */
  private readonly tried = new Set<string>();

  /** The storage key of a lock name (names hold any characters; keys do not). */
  static keyOf(name: string): string {
    return `${LOCKS_PREFIX}/${createHash('sha256').update(name).digest('hex')}`;
  }

  private async acquire(name: string): Promise<() => Promise<void>> {
    const deadline = Date.now() + this.waitMs;
    let pause = 5;
    for (;;) {
      const got = await this.take(name);
      if (got.release) return got.release;
      if (Date.now() > deadline) throw new LockTimeoutError(name);
      await sleep(pause + Math.random() * pause);
      pause = Math.min(pause * 2, 200);
    }
  }

  /**
   * One try at the storage lock: the release function when taken (a stale holder is broken first),
   * else the live holder's record.
   */
  private async take(name: string): Promise<{ release: () => Promise<void>; held?: undefined } | { release?: undefined; held: Omit<LockHolder, 'here'> }> {
    const key = StorageLock.keyOf(name);
    const owner = randomBytes(12).toString('hex');
    const since = Date.now();
    const record = (): Buffer =>
      Buffer.from(JSON.stringify({ owner, expires: Date.now() + this.leaseMs, host: HOST, pid: process.pid, since } satisfies LockRecord));
    for (;;) {
      // a lock need not survive a crash (its holder does not either): no fsync
      if (await this.driver.putContentIfAbsent!(key, record(), { durable: false })) break;
      const held = await this.read(key);
      if (held && (held.expires + this.skewMs < Date.now() || deadHere(held))) {
        await this.breakStale(key, held.owner);
        continue;
      }
      if (!held) continue; // released between the two calls: try again at once
      return {
        held: {
          ...(held.host !== undefined ? { host: held.host } : {}),
          ...(held.pid !== undefined ? { pid: held.pid } : {}),
          ...(held.since !== undefined ? { since: held.since } : {}),
        },
      };
    }
    // renew the lease while the work goes on, as long as the object still names this owner
    const renew = setInterval(
      () => {
        void (async () => {
          const now = await this.read(key);
          if (now?.owner === owner) await this.driver.putContent(key, record(), { durable: false });
        })().catch(() => undefined);
      },
      Math.max(1000, Math.floor(this.leaseMs / 3)),
    );
    renew.unref();
    return {
      release: async () => {
        clearInterval(renew);
        const now = await this.read(key).catch(() => undefined);
        if (now?.owner !== owner) return; // broken meanwhile (we stalled past the lease): not ours to remove
        await this.driver.delete(key).catch((e: unknown) => {
          if (!isNotFound(e)) throw e;
        });
      },
    };
  }

  /**
   * Move an expired lock out of the way. Of several breakers exactly one move succeeds; if what it
   * moved is not the record found expired (the lock changed hands in between), it is put back.
   */
  private async breakStale(key: string, staleOwner: string): Promise<void> {
    const aside = `${key}-broken-${randomBytes(6).toString('hex')}`;
    try {
      await this.driver.move(key, aside, { durable: false });
    } catch (e) {
      if (isNotFound(e)) return;
      throw e;
    }
    const moved = await readOptional(this.driver, aside, RECORD_MAX);
    if (moved && parse(moved)?.owner !== staleOwner) await this.driver.putContentIfAbsent!(key, moved, { durable: false });
    await this.driver.delete(aside).catch(() => undefined);
  }

  private async read(key: string): Promise<LockRecord | undefined> {
    const raw = await readOptional(this.driver, key, RECORD_MAX);
    return raw ? (parse(raw) ?? { owner: '', expires: 0 }) : undefined;
  }
}

function parse(raw: Buffer): LockRecord | undefined {
  try {
    const r = JSON.parse(raw.toString('utf8')) as Partial<LockRecord>;
    if (typeof r.owner !== 'string' || typeof r.expires !== 'number') return undefined;
    return {
      owner: r.owner,
      expires: r.expires,
      ...(typeof r.host === 'string' ? { host: r.host } : {}),
      ...(typeof r.pid === 'number' ? { pid: r.pid } : {}),
      ...(typeof r.since === 'number' ? { since: r.since } : {}),
    };
  } catch {
    return undefined;
  }
}
