import type { StorageDriver } from '../storage/driver.js';
import type { StagedImage, V1Images } from '../content/v1-images.js';

/** Images made durable together (each flush costs two syncs, whatever the number of images in it). */
export const BATCH_IMAGES = 64;
/** Work queued with afterVisible run at once after a flush. */
const AFTER_PARALLEL = 4;

/**
 * The importer's durability in batches (issue 16). Images are staged one by one
 * (V1Images.stageImport: records written without a flush); every BATCH_IMAGES images, and at the
 * end, a flush makes the staged records durable at once (StorageDriver.syncKeys), writes the
 * images' json, makes it durable, and only then removes their in-progress marks: an image becomes
 * visible only once every record of it is durable, and a crash before that leaves it marked (the
 * next run imports it again). Work that must only follow visible images (a repository's tags and
 * index entries) is queued with afterVisible and runs after the flush of every image staged before
 * it. Flushes run one at a time, in order, while the next batch is being staged.
 */
export class ImportBatches {
  private pending: StagedImage[] = [];
  private after: (() => Promise<void>)[] = [];
  private chain: Promise<void> = Promise.resolve();
  /** Flushes done, and syncKeys calls made (for the report and the tests). */
  flushes = 0;
  /**
   * Images a client's push of the same id into the same repository took over while they were
   * staged (a live server on the same storage): neither published nor completed, left to that push.
   * Scope name and id → the image; the caller reports them and what needs them.
   */
  readonly overtaken = new Map<string, StagedImage>();

  /** Whether an image was taken over by a client's push before its batch made it visible. */
  isOvertaken(scope: string | undefined, id: string): boolean {
    return this.overtaken.has(imageKey(scope, id));
  }

  constructor(
    private readonly driver: StorageDriver,
    private readonly images: V1Images,
    private readonly max = BATCH_IMAGES,
  ) {}

  /** Images staged and not visible yet (scope and id), to tell whether work must wait for a flush. */
  private readonly unflushed = new Set<string>();

  add(s: StagedImage): void {
    const key = imageKey(s.scope?.full, s.id);
    // twice in one flush, its two publishImported would wait for each other's lock at the barrier
    if (this.unflushed.has(key)) throw new Error(`image ${s.id} staged twice before it was visible`);
    this.pending.push(s);
    this.unflushed.add(key);
    if (this.pending.length >= this.max) void this.flush().catch(() => undefined); // the error is the final flush's
  }

  /**
   * Run fn once the images it needs (scope name and id) are visible: now when none of them is
   * waiting for a flush (nothing new, or all flushed), else after the flush of everything staged so
   * far. Resolves when fn ran now, or at once when it was queued (the final flush runs it).
   */
  async afterVisible(needs: readonly { readonly scope: string | undefined; readonly id: string }[], fn: () => Promise<void>): Promise<void> {
    if (!needs.some((n) => this.unflushed.has(imageKey(n.scope, n.id)))) return fn();
    this.after.push(fn);
  }

  /** Flush what is staged (and everything before it); rejects if this or an earlier flush failed. */
  flush(): Promise<void> {
    const batch = this.pending;
    const after = this.after;
    this.pending = [];
    this.after = [];
    this.chain = this.chain.then(() => this.commit(batch, after));
    return this.chain;
  }

  private async commit(batch: readonly StagedImage[], after: readonly (() => Promise<void>)[]): Promise<void> {
    if (batch.length > 0) {
      await this.sync(batch.flatMap((s) => s.keys));
      // every image of the batch at once, each holding its lock until the one flush of all their
      // records (publishImported): all of them must reach the flush, or give up, for it to run
      const flush = new FlushBarrier(batch.length, (keys) => this.sync(keys));
      await Promise.all(
        batch.map(async (s) => {
          const part = flush.member();
          let visible: boolean;
          try {
            visible = await this.images.publishImported(s, part.arrive);
          } finally {
            part.leave();
          }
          if (!visible) this.overtaken.set(imageKey(s.scope?.full, s.id), s);
          this.unflushed.delete(imageKey(s.scope?.full, s.id));
        }),
      );
      this.flushes++;
    }
    // a repository's tags and index entries each (several at once, as the repositories were)
    await each(after, (fn) => fn(), AFTER_PARALLEL);
  }

  private async sync(keys: readonly string[]): Promise<void> {
    // without syncKeys the records were written durably (V1Images.stageImport)
    if (this.driver.syncKeys) await this.driver.syncKeys(keys);
  }
}

const imageKey = (scope: string | undefined, id: string): string => `${scope ?? ''}\n${id}`;

/**
 * One flush for the records of many images, each written under its own lock: every image either
 * arrives with its keys (and waits for the flush) or is done without them; once all of them are
 * one or the other, the keys are flushed and every arrival goes on (or fails with the flush).
 */
class FlushBarrier {
  private readonly keys: string[] = [];
  private pending: number;
  private open!: () => void;
  private readonly flushed: Promise<void>;

  constructor(count: number, flush: (keys: readonly string[]) => Promise<void>) {
    this.pending = count;
    const all = new Promise<void>((r) => (this.open = r));
    this.flushed = all.then(() => flush(this.keys));
    // the arrivals get the error (the batch's commit rejects with it)
    this.flushed.catch(() => undefined);
    if (count === 0) this.open();
  }

  /** One image's part: arrive with its keys (resolves once they are durable), and leave when done. */
  member(): { arrive: (keys: readonly string[]) => Promise<void>; leave: () => void } {
    let counted = false;
    const count = (): void => {
      if (counted) return;
      counted = true;
      if (--this.pending === 0) this.open();
    };
    return {
      arrive: (keys) => {
        this.keys.push(...keys);
        count();
        return this.flushed;
      },
      leave: count,
    };
  }
}

async function each<T>(items: readonly T[], fn: (item: T) => Promise<void>, limit: number): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) await fn(items[next++]!);
    }),
  );
}
