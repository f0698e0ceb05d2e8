import { randomUUID } from 'node:crypto';
import { isNotFound, type StorageDriver } from '../storage/driver.js';
import { readOrDropOversized, removeIfPresent } from './small-objects.js';

/** A notice the index must get for a change in storage (a v2 push or delete of tags). */
export interface PendingNotice {
  readonly op: 'pushed' | 'deleted';
  readonly name: string;
  /** pushed: the tag */
  readonly tag?: string;
  /** deleted: the tags */
  readonly tags?: readonly string[];
  readonly account: string | null;
  readonly admin: boolean;
  /** The client's credentials, for an index in another process (tokens expire: replay is best effort). */
  readonly authorization?: string;
  /** ms since the epoch */
  readonly at: number;
}

/** The index refused a notice for good (4xx but 408/429): replaying it would change nothing. */
export class NoticeRefused extends Error {}

/** Whether an index answer with this status refuses a notice for good (NoticeRefused). */
export const refusedForGood = (status: number): boolean => status >= 400 && status < 500 && status !== 408 && status !== 429;

const ROOT = 'v2/_pending';
/** Where a registry split from its index keeps the v1 push notices the index has not answered yet. */
export const V1_PENDING_ROOT = 'v1/_pending';

/** A v1 tag push a split registry must tell its index of (its webhooks fire there, issue 15). */
export interface V1PushNotice {
  readonly name: string;
  readonly tag: string;
  /** The pushed chain, top last. */
  readonly images: readonly string[];
  /** The push's write token (it expires: a notice replayed after that is refused, and dropped). */
  readonly authorization: string;
  readonly at: number;
}
/**
 * Bound of a notice read back: what a request makes is far less (a v1 push notice lists its chain, at
 * most MAX_ANCESTRY ids, ~67 KB; a v2 delete by digest every tag it untagged, 5,000 tags ~250 KB);
 * a larger object is no notice of ours and goes as junk does. Read within RECORD_MAX (64 KiB) for a
 * few hours on 2026-12-07: such a notice failed every replay, those after it included.
 */
export const NOTICE_MAX = 16 * 1024 * 1024;

/** Notices older than this are dropped (logged): a split registry's forwarded token has long expired. */
export const PENDING_MAX_AGE_MS = 24 * 3600 * 1000;

/**
 * Write-ahead intents for the index (issue 17, crash consistency): before a v2 push or delete
 * changes what storage shows, the notice the index needs is written durably; it is removed once the
 * index has it. A crash (or an index that did not answer) between the two leaves the intent, and
 * {@link replay} sends it again, so the index and storage agree after any kill.
 */
export class IndexJournal<N extends { readonly at: number } = PendingNotice> {
  /** `root`: v1 push notices of a split registry keep theirs apart (V1_PENDING_ROOT). */
  constructor(
    private readonly driver: StorageDriver,
    private readonly root = ROOT,
  ) {}

  async begin(notice: Omit<N, 'at'>): Promise<string> {
    const id = randomUUID();
    await this.driver.putContent(`${this.root}/${id}`, Buffer.from(JSON.stringify({ ...notice, at: Date.now() })));
    return id;
  }

  async end(id: string): Promise<void> {
    await removeIfPresent(this.driver, `${this.root}/${id}`);
  }

  /** Every pending notice, oldest first. */
  async pending(): Promise<{ id: string; notice: N }[]> {
    let keys: string[];
    try {
      keys = await this.driver.list(this.root);
    } catch (e) {
      if (isNotFound(e)) return [];
      throw e;
    }
    const out: { id: string; notice: N }[] = [];
    for (const key of keys) {
      // one past NOTICE_MAX was never written by begin(): junk goes
      const raw = await readOrDropOversized(this.driver, key, NOTICE_MAX);
      if (!raw) continue;
      try {
        out.push({ id: key.slice(this.root.length + 1), notice: JSON.parse(raw.toString('utf8')) as N });
      } catch {
        await removeIfPresent(this.driver, key); // a torn write cannot happen (putContent is atomic); junk goes
      }
    }
    return out.sort((a, b) => a.notice.at - b.notice.at);
  }

  /**
   * Send every pending notice again through `send` (which decides from storage what still holds);
   * a notice that succeeds, or that is too old, is removed. Returns how many were sent and dropped.
   */
  async replay(send: (n: N, id: string) => Promise<void>, onError: (n: N, e: unknown) => void, now = Date.now()): Promise<{ sent: number; dropped: number }> {
    let sent = 0;
    let dropped = 0;
    for (const { id, notice } of await this.pending()) {
      // a notice younger than a few seconds may belong to a request still running on this node
      if (now - notice.at < 5000) continue;
      try {
        await send(notice, id);
        await this.end(id);
        sent++;
      } catch (e) {
        onError(notice, e);
        if (now - notice.at > PENDING_MAX_AGE_MS) {
          await this.end(id);
          dropped++;
        }
      }
    }
    return { sent, dropped };
  }
}
