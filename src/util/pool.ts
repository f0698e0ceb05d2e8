/**
 * Run `fn` over `items`, at most `limit` at a time, in order of start (storage calls a caller keeps
 * in flight together: enough to keep the pool or the round trips busy, never one per item).
 */
export async function pool<T>(items: readonly T[], limit: number, fn: (item: T, i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(Math.max(1, limit), items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        await fn(items[i]!, i);
      }
    }),
  );
}

/** `pool` collecting each item's result, in the items' order. */
export async function mapPool<T, R>(items: readonly T[], limit: number, fn: (item: T, i: number) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  await pool(items, limit, async (item, i) => {
    out[i] = await fn(item, i);
  });
  return out;
}
