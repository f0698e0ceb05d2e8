/**
 * The one in-memory cache of the process (token validations, v2 answers, storage metadata): a map
 * bounded by its number of entries and by the bytes its values hold, as a weight function reckons
 * them; least recently used entries go first. Every entry has its own expiry, enforced on read: an
 * expired entry is never returned, and it is dropped when it is found.
 *
 * Why both bounds: a count alone lets a few large values (a repository's image list of 100k ids, a
 * 4 MiB manifest) take the heap; bytes alone let millions of tiny entries cost their per-entry
 * overhead (security issue 10, finding 7).
 */
export interface BoundedCacheOptions<V> {
  /** Most entries kept. */
  readonly maxEntries: number;
  /** Most bytes kept, as `weight` counts them; a single value heavier than this is not kept. */
  readonly maxBytes: number;
  /** Approximate bytes a value holds in memory (its key included if it matters). */
  readonly weight: (value: V, key: string) => number;
  /** Clock (tests). */
  readonly now?: () => number;
}

interface Slot<V> {
  readonly value: V;
  readonly expires: number;
  bytes: number;
}

export class BoundedCache<V> {
  /** Insertion order is recency order: the first key is the least recently used. */
  private readonly map = new Map<string, Slot<V>>();
  private total = 0;
  private lastPrune = -Infinity;
  private readonly now: () => number;

  constructor(private readonly opts: BoundedCacheOptions<V>) {
    if (!(opts.maxEntries >= 0) || !(opts.maxBytes >= 0)) throw new RangeError('BoundedCache: maxEntries and maxBytes must be >= 0');
    this.now = opts.now ?? Date.now;
  }

  /** Entries held (expired ones not yet found included). */
  get size(): number {
    return this.map.size;
  }

  /** Bytes held, as the weight function counts them. */
  get bytes(): number {
    return this.total;
  }

  /** The live value of key (and it becomes the most recently used), or undefined. */
  get(key: string): V | undefined {
    const slot = this.map.get(key);
    if (!slot) return undefined;
    if (slot.expires <= this.now()) {
      this.remove(key, slot);
      return undefined;
    }
    this.map.delete(key);
    this.map.set(key, slot);
    return slot.value;
  }

  /** The live value of key without touching its recency. */
  peek(key: string): V | undefined {
    const slot = this.map.get(key);
    return slot && slot.expires > this.now() ? slot.value : undefined;
  }

  /**
   * Keep value for ttlMs, replacing what key held, then evict the least recently used entries until
   * both bounds hold. Returns false (and keeps nothing) when ttlMs ≤ 0 or the value alone is heavier
   * than maxBytes.
   */
  set(key: string, value: V, ttlMs: number): boolean {
    const old = this.map.get(key);
    if (old) this.remove(key, old);
    const bytes = Math.max(0, this.opts.weight(value, key));
    if (!(ttlMs > 0) || bytes > this.opts.maxBytes || this.opts.maxEntries === 0) return false;
    this.map.set(key, { value, expires: this.now() + ttlMs, bytes });
    this.total += bytes;
    this.evict();
    return this.map.has(key);
  }

  /**
   * Weigh key's value again (a value that grew after it was stored, such as a promise that has
   * resolved), then restore the bounds. A value now heavier than maxBytes is dropped.
   */
  reweigh(key: string): void {
    const slot = this.map.get(key);
    if (!slot) return;
    const bytes = Math.max(0, this.opts.weight(slot.value, key));
    this.total += bytes - slot.bytes;
    slot.bytes = bytes;
    if (bytes > this.opts.maxBytes) this.remove(key, slot);
    else this.evict();
  }

  delete(key: string): boolean {
    const slot = this.map.get(key);
    if (!slot) return false;
    this.remove(key, slot);
    return true;
  }

  /** Drop every entry whose key matches (e.g. a prefix); expired or not. */
  deleteWhere(match: (key: string) => boolean): number {
    let n = 0;
    for (const [k, slot] of this.map) {
      if (match(k)) {
        this.remove(k, slot);
        n++;
      }
    }
    return n;
  }

  clear(): void {
    this.map.clear();
    this.total = 0;
  }

  private remove(key: string, slot: Slot<V>): void {
    this.map.delete(key);
    this.total -= slot.bytes;
  }

  /** Drop every expired entry; returns how many went. */
  prune(): number {
    const now = this.now();
    this.lastPrune = now;
    return this.deleteWhere((k) => this.map.get(k)!.expires <= now);
  }

  private evict(): void {
    if (this.map.size <= this.opts.maxEntries && this.total <= this.opts.maxBytes) return;
    // Expired entries go before live ones, whatever their recency; the sweep is a pass over the
    // whole map, so a full cache does it at most once a second, not on every insert.
    if (this.now() - this.lastPrune >= 1000) this.prune();
    for (const [k, slot] of this.map) {
      if (this.map.size <= this.opts.maxEntries && this.total <= this.opts.maxBytes) break;
      this.remove(k, slot);
    }
  }
}
