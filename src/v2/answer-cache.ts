// the cache itself is in src/util (v1 image records use it too); the bounds of /v2/'s answers here
export { AnswerCache } from '../util/answer-cache.js';

/** Bounds of the answer caches: manifests up to 4 MiB each, tag lists. */
export const MANIFEST_ANSWERS = { maxEntries: 5000, maxBytes: 32 * 1024 * 1024 } as const;
export const TAG_ANSWERS = { maxEntries: 5000, maxBytes: 8 * 1024 * 1024 } as const;
/**
 * Small blobs (image configs, most of them) kept in memory for GETs: up to SMALL_BLOB_MAX bytes
 * each. A pull reads its config once per image, as often as its manifest.
 */
export const SMALL_BLOB_MAX = 64 * 1024;
export const SMALL_BLOB_ANSWERS = { maxEntries: 4096, maxBytes: 16 * 1024 * 1024 } as const;

/** The answer cache's settings when it is on (a TTL above 0), else undefined. */
export function answerCacheOn(
  c: { readonly ttlMs: number; readonly stamp: () => number } | undefined,
): { readonly ttlMs: number; readonly stamp: () => number } | undefined {
  return c && c.ttlMs > 0 ? c : undefined;
}
