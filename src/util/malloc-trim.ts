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
}

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

let released = 0;

/** Code that just freed a lot of C heap (a worker thread that ended) says so: the next idle look trims again. */
export function noteMemoryReleased(): void {
  released++;
}

/** How many times memory was noted released (a counter that only grows). */
export function memoryReleasedCount(): number {
  return released;
}
