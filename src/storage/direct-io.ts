import { closeSync, constants, fstatSync, openSync, write } from 'node:fs';
import { loadNative } from '../util/native.js';

/**
 * Writes with O_DIRECT for the bulk of big files (the filesystem driver's writers: v2 uploads, v1
 * layers, the mirror's cache), issue 18.
 *
 * A blob written through the page cache is copied into pages the kernel allocates for it, then
 * written back. On this project's VMs free memory goes back to the host (free page reporting), so a
 * page cache page taken from free memory is first faulted in and zeroed by the host: measured with
 * `perf` on 512 MiB uploads, the copy into the page cache (`copy_folio_from_iter_atomic`) was 4 % of
 * the server's samples when it reused pages and 40 % when it did not, and the server's system time
 * 0.7–3.3 s per GiB from one upload to the next. `dd` of the same 512 MiB with `oflag=direct
 * conv=fsync`: 0.07–0.08 s of system time, against 0.13–0.77 s through the page cache.
 *
 * So a writer's first DIRECT_AFTER bytes go through the page cache as before (small blobs, configs
 * and manifests stay cached for the reads that follow), and from the first 4 KiB boundary past it
 * the bytes are copied into one of two page-aligned buffers (native/directio.c) and written from
 * there with O_DIRECT on a second descriptor of the same file, one write in flight while the other
 * buffer fills. The last partial block goes through the page cache again; the commit's fsync makes
 * all of it durable as before. Where the module is missing, the file system refuses O_DIRECT
 * (tmpfs on older kernels: EINVAL) or POOL_MAX buffers are lent already, writers stay on the page
 * cache.
 *
 * It is off unless LR_DIRECT_IO=1: a blob written this way is not in the page cache, so the first
 * pull after its push reads it from the disk (1.3–1.4 GB/s here against 2.3–3.3 GB/s from memory),
 * and in the bench, which pushes the downloaded blob again every round, the one-stream download fell
 * to 0.40–0.45× distribution while the uploads rose to 2.16–2.43× (docs/benchmarks.md, "Twenty-first
 * look"). A site whose pushes far outnumber quick pulls of the same layers may turn it on.
 */
interface Native {
  readonly available: boolean;
  alignedBuffer(size: number): ArrayBuffer;
  discard(buffer: ArrayBuffer): boolean;
}

/** O_DIRECT's alignment of addresses, offsets and lengths (the device's needs 512 here; a page always suffices). */
export const DIRECT_ALIGN = 4096;
/** Bytes of one direct write (and of each of a writer's two buffers). */
export const DIRECT_BUFFER = 1 << 20;
/** A writer's bytes before this file offset go through the page cache. */
export const DIRECT_AFTER = 8 << 20;
/** Buffers lent at most (MiB): 8 writers at once write directly, the others through the page cache. */
const POOL_MAX = 16;

const O_DIRECT: number | undefined = (constants as Record<string, number | undefined>).O_DIRECT;

let loaded: { readonly native?: Native; readonly reason: string } | undefined;
const load = (): { readonly native?: Native; readonly reason: string } =>
  (loaded ??=
    O_DIRECT === undefined ? { reason: 'this system has no O_DIRECT' } : loadNative<Native>('directio', 'LR_DIRECT_IO', 'this system has no O_DIRECT'));

/** Devices (st_dev) whose file system refused O_DIRECT: not tried again. */
const refused = new Set<number>();
const kept: Buffer[] = [];
let lent = 0;
let written = 0;
/** Off unless LR_DIRECT_IO=1 (see above: the first pull of a big blob just pushed reads it from the disk). */
let off = process.env.LR_DIRECT_IO !== '1';

/** Whether a writer should try direct writes at all (on, and the module loaded): checked once per writer. */
export function directIoOn(): boolean {
  return !off && load().native !== undefined;
}

/** Turns direct writes on or off in this process (tests of either path). */
export function setDirectIo(on: boolean): void {
  off = !on;
}

/** Whether direct writes can be used here, whether they are on, and why not (for the start line and tests). */
export function directIoStatus(): { readonly available: boolean; readonly on: boolean; readonly reason: string } {
  const { native, reason } = load();
  return {
    available: native !== undefined,
    on: native !== undefined && !off,
    reason: native === undefined ? reason : off ? 'LR_DIRECT_IO=1 turns it on' : 'on',
  };
}

/** A file opened a second time for direct writes, with the two buffers it writes from. */
export interface DirectFile {
  readonly fd: number;
  readonly buffers: readonly [Buffer, Buffer];
}

/**
 * Opens `path` for direct writes if it is still the file `of` (same device and inode) and O_DIRECT
 * works there, with two buffers from the pool; undefined when not (the writer goes on through the
 * page cache). Give it back with closeDirect.
 */
export function openDirect(path: string, of: { readonly dev: number; readonly ino: number }): DirectFile | undefined {
  const native = load().native;
  if (!native || off || O_DIRECT === undefined || refused.has(of.dev) || lent + 2 > POOL_MAX) return undefined;
  let fd: number;
  try {
    fd = openSync(path, constants.O_WRONLY | O_DIRECT | (constants.O_NOFOLLOW ?? 0));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EINVAL') refused.add(of.dev);
    return undefined;
  }
  try {
    const st = fstatSync(fd);
    if (st.dev !== of.dev || st.ino !== of.ino) {
      closeSync(fd);
      return undefined;
    }
  } catch {
    closeSync(fd);
    return undefined;
  }
  lent += 2;
  const take = (): Buffer => kept.pop() ?? Buffer.from(native.alignedBuffer(DIRECT_BUFFER));
  return { fd, buffers: [take(), take()] };
}

/** Closes the direct descriptor and returns its buffers to the pool (no write may be in flight on them). */
export function closeDirect(f: DirectFile): void {
  lent -= 2;
  kept.push(...f.buffers);
  try {
    closeSync(f.fd);
  } catch {
    // nothing was written through a descriptor whose close fails: the writes already returned
  }
}

/** The file system at `dev` refused a direct write (EINVAL): its writers use the page cache from now on. */
export function refuseDirect(dev: number): void {
  refused.add(dev);
}

/** One write of `length` bytes of `buffer` at `position` through the direct descriptor. */
export function writeDirect(fd: number, buffer: Buffer, length: number, position: number): Promise<number> {
  return new Promise((ok, fail) =>
    write(fd, buffer, 0, length, position, (e, n) => {
      if (e) return fail(e);
      written += n;
      ok(n);
    }),
  );
}

/**
 * Gives the pages of the buffers kept for later writers back to the system (an idle server calls
 * it with its C heap trim); they are faulted in again by the next big upload. Returns whether any were.
 */
export function discardKeptBuffers(): boolean {
  const native = load().native;
  if (!native) return false;
  let any = false;
  for (const b of kept) any = native.discard(b.buffer as ArrayBuffer) || any;
  return any;
}

/** Buffers lent to writers and kept for later ones, and the bytes written directly so far (for tests). */
export function directIoCounters(): { readonly lent: number; readonly kept: number; readonly written: number } {
  return { lent, kept: kept.length, written };
}
