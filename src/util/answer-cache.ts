import { BoundedCache } from './bounded-cache.js';

/**
 * Recent answers, each valid for the write stamp it was computed under and until it expires.
 * Concurrent requests for a missing answer share one computation (64 clients asking at the moment
 * an answer expires cost one computation, not 64). Bounded by entries and by bytes (a manifest
 * answer can be 4 MiB; security issue 10, finding 7): an answer is weighed once it has resolved.
 */
export class AnswerCache<T> {
  private readonly cache: BoundedCache<{ readonly stamp: number; readonly value: Promise<T>; bytes: number }>;
  constructor(
    private readonly opts: { readonly ttlMs: number; readonly stamp: () => number },
    bounds: { readonly maxEntries: number; readonly maxBytes: number; readonly weigh: (value: T) => number },
    /** Which answers are kept (default: all); one that is not is still shared by the requests that waited for it. */
    private readonly keep: (value: T) => boolean = () => true,
  ) {
    this.cache = new BoundedCache({ maxEntries: bounds.maxEntries, maxBytes: bounds.maxBytes, weight: (e, key) => 128 + 2 * key.length + e.bytes });
    this.weigh = bounds.weigh;
  }
  private readonly weigh: (value: T) => number;

  get(key: string, compute: () => Promise<T>): Promise<T> {
    const stamp = this.opts.stamp();
    const e = this.cache.get(key);
    if (e && e.stamp === stamp) return e.value;
    const value = compute();
    const entry = { stamp, value, bytes: 0 };
    this.cache.set(key, entry, this.opts.ttlMs);
    // errors are not kept; a write while computing makes the entry stale by its stamp
    value.then(
      (v) => {
        if (this.cache.peek(key) !== entry) return;
        if (!this.keep(v)) {
          this.cache.delete(key);
          return;
        }
        entry.bytes = this.weigh(v);
        this.cache.reweigh(key);
      },
      () => {
        if (this.cache.peek(key) === entry) this.cache.delete(key);
      },
    );
    return value;
  }
}
