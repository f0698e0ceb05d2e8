import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

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

/** dist/native, two levels above dist/src/util. */
const MODULE_PATH = fileURLToPath(new URL('../../native/memory.node', import.meta.url));

function load(): { native?: Native; reason: string } {
  if (process.env.LR_MALLOC_TRIM === '0') return { reason: 'turned off (LR_MALLOC_TRIM=0)' };
  if (!existsSync(MODULE_PATH)) return { reason: `not built (${MODULE_PATH})` };
  try {
    const m = createRequire(import.meta.url)(MODULE_PATH) as Native;
    if (!m.available) return { reason: 'this C library has no malloc_trim' };
    return { native: m, reason: 'loaded' };
  } catch (e) {
    return { reason: `failed to load: ${e instanceof Error ? e.message : String(e)}` };
  }
}

let loaded: { native?: Native; reason: string } | undefined;

/** Whether trimming works here, and why not (for the start line and tests). Loads the module on first use. */
export function mallocTrimStatus(): { readonly available: boolean; readonly reason: string } {
  loaded ??= load();
  return { available: loaded.native !== undefined, reason: loaded.reason };
}

/** Trims the C heap; returns whether memory was released (false when trimming is unavailable). */
export function mallocTrim(): boolean {
  loaded ??= load();
  return loaded.native?.trim() ?? false;
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
