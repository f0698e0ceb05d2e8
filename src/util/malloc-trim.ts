import { loadNative } from './native.js';

/**
 * glibc's malloc_trim(0), through native/memory.c (built by scripts/build-native.mjs into
 * dist/native/memory.node): gives the free pages held in every malloc arena back to the system.
 * An idle server calls it (src/http/idle-memory.ts) so that buffers freed after a busy spell, and
 * the arena of a worker thread that ended, stop counting in its resident memory. Without the
 * module (not built, another C library) or with LR_MALLOC_TRIM=0, trimming does nothing.
 */
interface Native {
  readonly available: boolean;
  trim(): boolean;
  retain?(trimThreshold: number, mmapThreshold: number): boolean;
  mapTextInPages?(): number;
}

/**
 * What a busy process keeps of the C heap it freed (see {@link mallocRetain}): up to 64 MiB at the
 * top of the heap, and allocations under 32 MiB (the most glibc's own dynamic threshold reaches) taken
 * from the heap rather than mapped and unmapped
 * each time.
 */
export const RETAIN_TRIM_THRESHOLD = 64 * 1024 * 1024;
export const RETAIN_MMAP_THRESHOLD = 32 * 1024 * 1024;

let loaded: { readonly native?: Native; readonly reason: string } | undefined;
const load = (): { readonly native?: Native; readonly reason: string } =>
  (loaded ??= loadNative<Native>('memory', 'LR_MALLOC_TRIM', 'this C library has no malloc_trim'));

/** Whether trimming works here, and why not (for the start line and tests). Loads the module on first use. */
export function mallocTrimStatus(): { readonly available: boolean; readonly reason: string } {
  const { native, reason } = load();
  return { available: native !== undefined, reason };
}

/** Trims the C heap; returns whether memory was released (false when trimming is unavailable). */
export function mallocTrim(): boolean {
  return load().native?.trim() ?? false;
}

/**
 * Keeps freed C heap for reuse while the process is busy (glibc's M_TRIM_THRESHOLD and
 * M_MMAP_THRESHOLD through native/memory.c). With glibc's defaults the main arena gives back its
 * top past 128 KiB after a burst of frees, so every request body's 64 KiB buffers came from pages
 * mapped anew: 2,400–12,000 page faults per 256 MiB upload in a server, each a fault and a zeroed
 * page from the host on these VMs; with this, 12–240 after the first upload, and 15–20 % less of
 * the server's CPU per upload (2026-12-06, docs/benchmarks.md "Twentieth look"). What is kept goes
 * back when the server is idle (mallocTrim). LR_MALLOC_RETAIN=0 leaves glibc's defaults (for
 * comparisons). Returns whether the thresholds were set.
 */
export function mallocRetain(trimThreshold = RETAIN_TRIM_THRESHOLD, mmapThreshold = RETAIN_MMAP_THRESHOLD): boolean {
  if (process.env.LR_MALLOC_RETAIN === '0') return false;
  const native = load().native;
  // a module built before retain() existed has trim() alone
  return typeof native?.retain === 'function' ? native.retain(trimThreshold, mmapThreshold) : false;
}

/**
 * Drops the executable's text and read-only data from this process's resident pages (native/memory.c):
 * on kernels that map files in large folios, an idle server had 52 MiB of /usr/bin/node resident,
 * 48 MiB again soon after being advised to use small pages, because a fault maps the whole folio.
 * The pages stay in the page cache and are mapped again as they are used, so an idle server calls it
 * with its C heap trim. Returns the bytes of the mappings dropped (0 without the module or off Linux).
 */
export function mapTextInPages(): number {
  const native = load().native;
  return typeof native?.mapTextInPages === 'function' ? native.mapTextInPages() : 0;
}

let released = 0;

/** Code that just freed a lot of C heap (a worker thread that ended) says so: the next idle look trims again. */
export function noteMemoryReleased(): void {
  released++;
}

/** How many times memory was noted released (a counter that only grows). */
export function memoryReleasedCount(): number {
  return released;
}
