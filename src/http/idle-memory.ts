import { getHeapSpaceStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { mallocTrim, memoryReleasedCount } from '../util/malloc-trim.js';

/**
 * Gives back the young generation's memory once the server has gone idle (issue 18: idle RSS).
 *
 * V8 grows the new space (the young generation, two semi-spaces) up to 2 × 16 MiB while objects
 * survive, as they do during start-up (modules, configuration, routes), and shrinks it only in a
 * scavenge that sees a low allocation rate (under ~1 MB/s over the last 5 s). An idle server
 * allocates nothing, so no scavenge comes and ~20 MiB of semi-space stay resident for good
 * (measured: new space 21–23 MiB physical after start and a few requests, 1 MiB after one
 * scavenge on idle). `--max-semi-space-size` would cap it, but costs every busy process more
 * scavenges, and a flag cannot be set from inside the process before the heap is sized.
 *
 * So: every `intervalMs`, if no request started since the last look and none is in flight, and
 * the new space holds more than `minBytes`, run one scavenge (a minor GC: a millisecond or two
 * on an idle heap). The first scavenge after a busy period may still see a high rate over its 5 s
 * window and keep the size; a few attempts per idle period are allowed, then it waits for the
 * next request. Under load it never runs, and the new space grows again as V8 decides.
 *
 * Then, once the scavenges of an idle period are done and it has lasted 10 s, the C heap is
 * trimmed (glibc's malloc_trim, src/util/malloc-trim.ts): the buffers freed after the busy spell
 * sit in malloc's arenas, one per thread that allocated, and only the top of the main arena ever
 * goes back by itself (measured: 4–5 MiB of an idle server's 75–82 MiB RSS given back, in well
 * under a millisecond). A worker thread that ends leaves its arena behind, so code that ends one
 * notes it (noteMemoryReleased) and the next idle look trims again.
 *
 * The scavenge is V8's `gc({ type: 'minor' })`, reached the way Jest's leak detection and this
 * project's memory tests reach it: `--expose-gc` set at run time, `gc` taken from a new context
 * (the main context keeps no `gc` global).
 */
export interface IdleMemoryOptions {
  /** Requests started so far (a counter that only grows). */
  readonly started: () => number;
  /** Requests in flight now. */
  readonly inFlight: () => number;
  readonly intervalMs?: number;
  /** New-space size (physical bytes) above which an idle process scavenges. */
  readonly minBytes?: number;
  /** Scavenges per idle period at most. */
  readonly attempts?: number;
  /**
   * How long the server must have been idle before the C heap is trimmed (default 10 s): pages
   * given back are faulted in again by the next busy spell (~2.7 ms per MiB on this project's VMs),
   * so a pause between bursts of requests does not trim.
   */
  readonly trimAfterMs?: number;
  /** Gives the C heap's free pages back; returns whether any were (default: malloc_trim). */
  readonly trim?: () => boolean;
  /** A counter that grows when memory was freed outside requests (default: noteMemoryReleased's). */
  readonly released?: () => number;
}

type Gc = (options?: { type?: 'minor' | 'major' }) => void;
let gcFn: Gc | undefined | null;

/** V8's gc function, or null when this V8 refuses to expose it. */
function v8Gc(): Gc | null {
  if (gcFn !== undefined) return gcFn;
  try {
    setFlagsFromString('--expose-gc');
    const f = runInNewContext('gc') as unknown;
    gcFn = typeof f === 'function' ? (f as Gc) : null;
  } catch {
    gcFn = null;
  }
  return gcFn;
}

function newSpaceBytes(): number {
  return getHeapSpaceStatistics().find((s) => s.space_name === 'new_space')?.physical_space_size ?? 0;
}

/** Starts watching; returns the stop function. */
export function trimWhenIdle(opts: IdleMemoryOptions): () => void {
  const gc = v8Gc();
  const minBytes = opts.minBytes ?? 4 * 1024 * 1024;
  const attempts = opts.attempts ?? 4;
  const trim = opts.trim ?? mallocTrim;
  const released = opts.released ?? memoryReleasedCount;
  const trimAfterMs = opts.trimAfterMs ?? 10_000;
  let seen = opts.started();
  let left = attempts;
  // the C heap is trimmed once per idle period (once it has lasted trimAfterMs), and again after
  // memory was noted released
  let trimmed = false;
  let releasedSeen = released();
  let idleSince = Date.now();
  const timer = setInterval(() => {
    const now = opts.started();
    if (now !== seen || opts.inFlight() > 0) {
      seen = now;
      left = attempts;
      trimmed = false;
      idleSince = Date.now();
      return;
    }
    if (gc && left > 0 && newSpaceBytes() > minBytes) {
      left--;
      gc({ type: 'minor' });
      return;
    }
    const r = released();
    if ((trimmed && r === releasedSeen) || Date.now() - idleSince < trimAfterMs) return;
    trimmed = true;
    releasedSeen = r;
    trim();
  }, opts.intervalMs ?? 2500);
  timer.unref();
  return () => clearInterval(timer);
}
