import { createHash, randomUUID } from 'node:crypto';
import { PassThrough, type Readable } from 'node:stream';
import { keys } from '../content/keys.js';
import type { StorageDriver } from '../storage/driver.js';
import { doesReleaseChunks, recyclerOf, withRecycler, type PieceRecycler } from '../storage/recycle.js';

/**
 * One upstream download of a blob, shared by every client that asks for it meanwhile (issue 13:
 * concurrent misses cost one upstream fetch). The bytes go to a private upload key while they are
 * hashed and handed to the clients; the last chunk is held back until the whole blob hashed to its
 * digest (and had the announced size), so a corrupt upstream never gives a client a complete body:
 * its stream is aborted and nothing is published. Verified bytes are published at their digest.
 *
 * A client arriving after the first RETAIN bytes went by cannot be replayed from memory: it waits
 * for the fill to finish and reads the cached blob (memory per fill stays bounded).
 *
 * The download goes at the pace of the fastest client, never the slowest: a client with more than
 * CLIENT_AHEAD queued while another keeps up is let go of the live stream, and gets the rest of its
 * bytes from the cached blob once the fill is verified and published (catch-up). While every client
 * is behind, the download waits for the first to read on (one client alone paces its download, as
 * it would without a mirror), but not longer than the stall time: then all of them catch up later,
 * and the fill goes on at the upstream's pace. A client that comes meanwhile ends that wait, and one
 * waiting for the cached blob means nobody is waited for any more. So a client that stops reading neither slows the
 * others nor holds the upstream connection, and time spent waiting for clients or for the disk is not
 * counted as the upstream stalling.
 */
const RETAIN = 32 * 1024 * 1024;
/**
 * Bytes retained by all fills together: without it, a client asking many distinct blobs at once
 * (each fill is one upstream download) holds 32 MiB per blob in memory. Past it, a new fill retains
 * nothing (a client joining late waits for `done` and reads the cache, as past RETAIN).
 */
const RETAIN_TOTAL = 256 * 1024 * 1024;
const retainBudget = { limit: RETAIN_TOTAL, used: 0 };
/** The shared retain budget (tests shrink it and read its use). */
export const blobFillRetain: { limit: number; readonly used: number } = retainBudget;
/**
 * Bytes the cache file and each client may have queued before the download waits for them: the
 * upstream, the disk and the clients' sockets work at once instead of one after the other (a
 * write waited for chunk by chunk stalls the other two), and memory per fill stays bounded.
 */
const FILE_AHEAD = 8 * 1024 * 1024;
const CLIENT_AHEAD = 4 * 1024 * 1024;

export interface FillResult {
  readonly size: number;
  /** The upload key holding the verified bytes (the caller publishes it). */
  readonly uploadKey: string;
  readonly uuid: string;
}

export class BlobFill {
  /**
   * Clients on the live stream: the bytes written to each so far, and how many it may have queued
   * before it counts as behind (CLIENT_AHEAD, plus the start replayed to a client that came late).
   */
  private readonly subscribers = new Map<PassThrough, { sent: number; allowance: number }>();
  /** Clients let go of the live stream, with the offset they continue from (catch-up). */
  private readonly detached = new Map<PassThrough, number>();
  /**
   * Ends the download's wait while every client is behind (see broadcast), when one is pending: a
   * client that came meanwhile may keep up, and must not wait out the stall time for the stuck ones.
   */
  private wake: (() => void) | undefined;
  /** A client waits for the cached blob (cached()): it keeps up with any pace, so nobody is waited for. */
  private cacheWanted = false;
  private readonly retained: Buffer[] = [];
  private retainedBytes = 0;
  private overflow = false;
  private received = 0;
  private finished = false;
  /** Resolves when the blob is verified and published (or rejects: nothing cached). */
  readonly done: Promise<FillResult>;
  private settle!: { resolve: (r: FillResult) => void; reject: (e: Error) => void };
  /**
   * Pieces go back to the upstream reader's pool once every holder is done with them (profile of a
   * 512 MiB cold pull: 2 of its 2.9 s CPU went to copying the body into fresh 1 MiB buffers, their
   * page faults). Holders: the cache file's write (its callback; only with a sink that keeps no
   * reference after it), the piece held back until verified, the retained start, and each client
   * (given back after its socket took the bytes; a client that does not give back keeps the piece,
   * which then just never returns to the pool). Weak: a piece nobody gives back is collected.
   */
  private pool: PieceRecycler | undefined;
  private readonly holders = new WeakMap<Buffer, number>();

  constructor(
    private readonly driver: StorageDriver,
    readonly digest: string,
    /** Size the upstream announced (Content-Length), when it did. */
    readonly size: number | undefined,
    private readonly stallMs: number,
    /** Publishes the verified, committed bytes at their digest (links and schedules them). */
    private readonly publish: (r: FillResult) => Promise<void>,
    /** The published blob from `offset` on: the rest of a detached client's bytes. */
    private readonly openCached: (offset: number) => Promise<Readable>,
    /** Most bytes the blob may have (max_layer_size; 0 or absent: none): an endless body is cut there. */
    private readonly maxBytes = 0,
  ) {
    this.done = new Promise((resolve, reject) => (this.settle = { resolve, reject }));
    // every caller awaits `done` or a subscriber stream; an unobserved rejection is not a crash
    this.done.catch(() => undefined);
  }

  /**
   * A stream of the whole blob for one more client, or undefined when the bytes already sent
   * are no longer in memory (the caller waits for `done`, then serves the cache).
   */
  subscribe(): Readable | undefined {
    if (this.overflow || this.finished) return undefined;
    const pt = withRecycler(new PassThrough({ highWaterMark: CLIENT_AHEAD }), {
      // pieces are counted for every client; one that gives them back releases its count
      enable: () => undefined,
      give: (piece) => this.release(piece),
    });
    this.subscribers.set(pt, { sent: 0, allowance: CLIENT_AHEAD + this.retainedBytes });
    for (const c of this.retained) this.send(pt, c);
    pt.once('close', () => {
      this.subscribers.delete(pt);
      this.detached.delete(pt);
    });
    // the next chunk tells who is behind: the newcomer keeps up, the stuck ones are let go of it
    this.wake?.();
    return pt;
  }

  /**
   * The verified and published blob, for a client that could not join the live stream (it came past
   * the start kept in memory, or at the end). It counts as a client keeping up: from now on one that
   * is behind is let go of the live stream instead of being waited for, so the client waiting here
   * gets the blob at the upstream's pace, not at that of a client that stopped or reads slowly.
   */
  cached(): Promise<FillResult> {
    this.cacheWanted = true;
    this.wake?.();
    return this.done;
  }

  /** Let a client go of the live stream: it continues from the cached blob once the fill is done. */
  private detach(pt: PassThrough): void {
    const live = this.subscribers.get(pt);
    if (live === undefined) return;
    this.subscribers.delete(pt);
    this.detached.set(pt, live.sent);
  }

  /** The rest of each detached client's bytes, from the published blob. */
  private catchUp(): void {
    for (const [pt, offset] of this.detached) {
      if (pt.destroyed) continue;
      void this.openCached(offset).then(
        (r) => {
          if (pt.destroyed) return void r.destroy();
          r.once('error', (e) => pt.destroy(e));
          pt.once('close', () => r.destroy());
          r.pipe(pt);
        },
        (e: unknown) => pt.destroy(e instanceof Error ? e : new Error(String(e))),
      );
    }
    this.detached.clear();
  }

  private hold(piece: Buffer, n = 1): void {
    if (this.pool) this.holders.set(piece, (this.holders.get(piece) ?? 0) + n);
  }

  /** One holder is done with the piece; the last one gives it back to the upstream's pool. */
  private release(piece: Buffer): void {
    const n = this.holders.get(piece);
    if (n === undefined) return;
    if (n > 1) this.holders.set(piece, n - 1);
    else {
      this.holders.delete(piece);
      this.pool?.give(piece);
    }
  }

  private send(pt: PassThrough, piece: Buffer): void {
    this.hold(piece);
    pt.write(piece);
    const live = this.subscribers.get(pt);
    if (live) live.sent += piece.length;
  }

  private dropRetained(): void {
    for (const c of this.retained) this.release(c);
    this.retained.length = 0;
    retainBudget.used -= this.retainedBytes;
    this.retainedBytes = 0;
  }

  /**
   * Hand a chunk to every client on the live stream. Clients with more than CLIENT_AHEAD queued are
   * let go of it while another keeps up; when all of them are behind, a promise that resolves once
   * one reads on, or after the stall time (every client is then let go of it).
   */
  private broadcast(chunk: Buffer): Promise<unknown> | undefined {
    if (!this.overflow) {
      if (this.retainedBytes + chunk.length <= RETAIN && retainBudget.used + chunk.length <= retainBudget.limit) {
        this.hold(chunk);
        this.retained.push(chunk);
        this.retainedBytes += chunk.length;
        retainBudget.used += chunk.length;
      } else {
        this.overflow = true;
        this.dropRetained();
      }
    }
    const behind: PassThrough[] = [];
    let keepingUp = 0;
    for (const [pt, live] of [...this.subscribers]) {
      if (pt.destroyed) {
        this.subscribers.delete(pt);
        continue;
      }
      this.send(pt, chunk);
      if (pt.writableLength > live.allowance) behind.push(pt);
      else keepingUp++;
    }
    if (behind.length === 0) return undefined;
    if (keepingUp > 0 || this.cacheWanted) {
      for (const pt of behind) this.detach(pt);
      return undefined;
    }
    // every client is behind: the first one to read on sets the pace, for the stall time at most
    return new Promise<void>((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.wake = undefined;
        for (const pt of behind) {
          pt.off('drain', done);
          pt.off('close', done);
        }
        resolve();
      };
      const timer = setTimeout(() => {
        for (const pt of behind) this.detach(pt);
        done();
      }, this.stallMs);
      for (const pt of behind) {
        pt.on('drain', done);
        pt.on('close', done);
      }
      this.wake = done;
    });
  }

  /** Pump the upstream answer's body. Resolves/rejects `done`; never throws itself. */
  async run(res: Readable): Promise<void> {
    const uuid = randomUUID();
    const uploadKey = keys.upload(uuid);
    let writer: Awaited<ReturnType<StorageDriver['writer']>> | undefined;
    let stall: NodeJS.Timeout | undefined;
    try {
      writer = await this.driver.writer(uploadKey);
      const out = writer.stream;
      const upstreamPool = recyclerOf(res);
      if (upstreamPool && doesReleaseChunks(out)) {
        upstreamPool.enable();
        this.pool = upstreamPool;
      }
      const written =
        (chunk: Buffer) =>
        (err?: Error | null): void => {
          // a failed write may still hold the piece: stop recycling altogether (the fill fails)
          if (err) this.pool = undefined;
          else this.release(chunk);
        };
      const hash = createHash('sha256');
      let held: Buffer | undefined;
      // one timer per fill, not one per chunk: it checks when the last bytes came
      let last = Date.now();
      // paused for the clients or the disk: not the upstream's stall
      let waiting = false;
      stall = setInterval(
        () => {
          if (!waiting && Date.now() - last > this.stallMs) res.destroy(new Error(`upstream body stalled for ${this.stallMs} ms`));
        },
        Math.max(50, this.stallMs / 4),
      );
      // 'data' events, not for-await: the async iterator reads whatever is buffered as one chunk,
      // which copies every byte once more (Buffer.concat); each piece is handed on as it came
      await new Promise<void>((resolve, reject) => {
        let ended = false;
        res.on('data', (chunk: Buffer) => {
          try {
            last = Date.now();
            this.received += chunk.length;
            if (this.size !== undefined && this.received > this.size) throw new Error(`upstream sent more than the announced ${this.size} bytes`);
            if (this.maxBytes > 0 && this.received > this.maxBytes) throw new Error(`upstream blob larger than max_layer_size (${this.maxBytes} bytes)`);
            hash.update(chunk);
            // holders: the file's write, and the hold-back until the next piece (or verification)
            this.hold(chunk, 2);
            out.write(chunk, this.pool ? written(chunk) : undefined);
            const waitFile = out.writableLength > FILE_AHEAD ? drained(out) : undefined;
            const waitClients = held ? this.broadcast(held) : undefined;
            if (held) this.release(held);
            held = chunk;
            if (waitFile || waitClients) {
              res.pause();
              waiting = true;
              Promise.all([waitFile, waitClients]).then(
                () => {
                  waiting = false;
                  last = Date.now();
                  res.resume();
                },
                (e: unknown) => res.destroy(e as Error),
              );
            }
          } catch (e) {
            res.destroy(e as Error);
          }
        });
        res.once('end', () => {
          ended = true;
          resolve();
        });
        res.once('error', reject);
        res.once('close', () => {
          if (!ended) reject(res.errored ?? new Error('upstream connection closed before the end of the blob'));
        });
      });
      clearInterval(stall);
      const actual = `sha256:${hash.digest('hex')}`;
      if (actual !== this.digest) throw new Error(`upstream blob hashes to ${actual}, not ${this.digest}`);
      if (this.size !== undefined && this.received !== this.size) throw new Error(`upstream sent ${this.received} of ${this.size} bytes`);
      // verified: the clients get their last bytes now; making the copy durable (fsync of the whole
      // blob) and publishing it is the cache's business, not theirs to wait for. Clients arriving
      // from here on wait for `done` and read the published blob.
      this.finished = true;
      if (held) {
        const last = held;
        await this.broadcast(last);
        this.release(last);
      }
      this.dropRetained();
      for (const pt of this.subscribers.keys()) pt.end();
      await writer.commit();
      const result = { size: this.received, uploadKey, uuid };
      await this.publish(result);
      this.settle.resolve(result);
      this.catchUp();
    } catch (e) {
      this.finished = true;
      this.pool = undefined;
      this.dropRetained();
      clearInterval(stall);
      res.destroy();
      await writer?.cancel().catch(() => undefined);
      await this.driver.delete(keys.uploadDir(uuid)).catch(() => undefined);
      const err = e instanceof Error ? e : new Error(String(e));
      // (after a verified blob, a failed commit leaves the clients' complete streams alone)
      for (const pt of [...this.subscribers.keys(), ...this.detached.keys()]) if (!pt.writableEnded) pt.destroy(err);
      this.detached.clear();
      this.settle.reject(err);
    }
  }
}

function drained(w: import('node:stream').Writable): Promise<void> {
  return new Promise((resolve, reject) => {
    const done = (e?: Error): void => {
      w.off('drain', ok);
      w.off('error', done);
      if (e) reject(e);
      else resolve();
    };
    const ok = (): void => done();
    w.on('drain', ok);
    w.on('error', done);
  });
}
