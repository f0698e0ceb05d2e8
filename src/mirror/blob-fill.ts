import { createHash, randomUUID } from 'node:crypto';
import { PassThrough, type Readable } from 'node:stream';
import { keys } from '../content/keys.js';
import type { StorageDriver } from '../storage/driver.js';

/**
 * One upstream download of a blob, shared by every client that asks for it meanwhile (issue 13:
 * concurrent misses cost one upstream fetch). The bytes go to a private upload key while they are
 * hashed and handed to the clients; the last chunk is held back until the whole blob hashed to its
 * digest (and had the announced size), so a corrupt upstream never gives a client a complete body:
 * its stream is aborted and nothing is published. Verified bytes are published at their digest.
 *
 * A client arriving after the first RETAIN bytes went by cannot be replayed from memory: it waits
 * for the fill to finish and reads the cached blob (memory per fill stays bounded).
 */
const RETAIN = 32 * 1024 * 1024;
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
  private readonly subscribers = new Set<PassThrough>();
  private readonly retained: Buffer[] = [];
  private retainedBytes = 0;
  private overflow = false;
  private received = 0;
  private finished = false;
  /** Resolves when the blob is verified and published (or rejects: nothing cached). */
  readonly done: Promise<FillResult>;
  private settle!: { resolve: (r: FillResult) => void; reject: (e: Error) => void };

  constructor(
    private readonly driver: StorageDriver,
    readonly digest: string,
    /** Size the upstream announced (Content-Length), when it did. */
    readonly size: number | undefined,
    private readonly stallMs: number,
    /** Publishes the verified, committed bytes at their digest (links and schedules them). */
    private readonly publish: (r: FillResult) => Promise<void>,
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
    const pt = new PassThrough({ highWaterMark: CLIENT_AHEAD });
    for (const c of this.retained) pt.write(c);
    this.subscribers.add(pt);
    pt.once('close', () => this.subscribers.delete(pt));
    return pt;
  }

  /** Hand a chunk to every client; a promise when one of them has too much queued (wait for it). */
  private broadcast(chunk: Buffer): Promise<unknown> | undefined {
    if (!this.overflow) {
      if (this.retainedBytes + chunk.length <= RETAIN) {
        this.retained.push(chunk);
        this.retainedBytes += chunk.length;
      } else {
        this.overflow = true;
        this.retained.length = 0;
      }
    }
    const waits: Promise<void>[] = [];
    for (const pt of this.subscribers) {
      if (pt.destroyed) continue;
      // the slowest client paces the download (as a single client would): memory stays bounded
      pt.write(chunk);
      if (pt.writableLength > CLIENT_AHEAD) waits.push(new Promise((r) => {
        const go = (): void => {
          pt.off('drain', go);
          pt.off('close', go);
          r();
        };
        pt.on('drain', go);
        pt.on('close', go);
      }));
    }
    return waits.length > 0 ? Promise.all(waits) : undefined;
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
      const hash = createHash('sha256');
      let held: Buffer | undefined;
      // one timer per fill, not one per chunk: it checks when the last bytes came
      let last = Date.now();
      stall = setInterval(() => {
        if (Date.now() - last > this.stallMs) res.destroy(new Error(`upstream body stalled for ${this.stallMs} ms`));
      }, Math.max(50, this.stallMs / 4));
      // 'data' events, not for-await: the async iterator reads whatever is buffered as one chunk,
      // which copies every byte once more (Buffer.concat); each piece is handed on as it came
      await new Promise<void>((resolve, reject) => {
        let ended = false;
        res.on('data', (chunk: Buffer) => {
          try {
            last = Date.now();
            this.received += chunk.length;
            if (this.size !== undefined && this.received > this.size) throw new Error(`upstream sent more than the announced ${this.size} bytes`);
            hash.update(chunk);
            out.write(chunk);
            const waitFile = out.writableLength > FILE_AHEAD ? drained(out) : undefined;
            const waitClients = held ? this.broadcast(held) : undefined;
            held = chunk;
            if (waitFile || waitClients) {
              res.pause();
              Promise.all([waitFile, waitClients]).then(() => res.resume(), (e: unknown) => res.destroy(e as Error));
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
      if (held) await this.broadcast(held);
      for (const pt of this.subscribers) pt.end();
      await writer.commit();
      const result = { size: this.received, uploadKey, uuid };
      await this.publish(result);
      this.settle.resolve(result);
    } catch (e) {
      this.finished = true;
      clearInterval(stall);
      res.destroy();
      await writer?.cancel().catch(() => undefined);
      await this.driver.delete(keys.uploadDir(uuid)).catch(() => undefined);
      const err = e instanceof Error ? e : new Error(String(e));
      // (after a verified blob, a failed commit leaves the clients' complete streams alone)
      for (const pt of this.subscribers) if (!pt.writableEnded) pt.destroy(err);
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
