import { closeSync, constants, fstatSync, openSync, read, write } from 'node:fs';
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
 * look"). Downloads now read such a blob with O_DIRECT too (openDirectRead, src/http/send-file.ts),
 * 0.79–0.91× distribution in the same phase: this machine's disk reads 2.1–2.3 GB/s, what loopback
 * carries, where distribution reads memory ("Twenty-second look"). A site whose pushes far outnumber
 * quick pulls of the same layers may turn it on.
 */
interface Native {
  readonly available: boolean;
  alignedBuffer(size: number): ArrayBuffer;
  discard(buffer: ArrayBuffer): boolean;
  cached(fd: number, position: number): boolean;
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
/** Buffers kept for downloads' direct reads (src/http/send-file.ts), at most READ_POOL_MAX. */
const readKept: Buffer[] = [];
const READ_POOL_MAX = 32;
let readDirectly = 0;
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
  const fd = reopenDirect(path, constants.O_WRONLY | (constants.O_NOFOLLOW ?? 0), of);
  if (fd === undefined) return undefined;
  lent += 2;
  const take = (): Buffer => kept.pop() ?? alignedBuffer(native);
  return { fd, buffers: [take(), take()] };
}

/**
 * `path` opened again with O_DIRECT and `flags` if it is still the file `of` (same device and
 * inode); undefined when not, or when the file system refuses O_DIRECT (EINVAL: not tried on that
 * device again).
 */
function reopenDirect(path: string, flags: number, of: { readonly dev: number; readonly ino: number }): number | undefined {
  let fd: number;
  try {
    fd = openSync(path, flags | O_DIRECT!);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EINVAL') refused.add(of.dev);
    return undefined;
  }
  try {
    const st = fstatSync(fd);
    if (st.dev === of.dev && st.ino === of.ino) return fd;
  } catch {
    // a descriptor that cannot be checked is not used
  }
  closeSync(fd);
  return undefined;
}

function alignedBuffer(native: Native, size = DIRECT_BUFFER): Buffer {
  return Buffer.from(native.alignedBuffer(size));
}

/** Closes the direct descriptor and returns its buffers to the pool (no write may be in flight on them). */
export function closeDirect(f: DirectFile): void {
  lent -= 2;
  kept.push(...f.buffers);
  closeDirectFd(f.fd);
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

/** Pages of a download's range looked up in the page cache before it is read directly or not. */
const CACHE_SAMPLES = 8;

/**
 * A second descriptor of the file open as `fd`, with O_DIRECT, for a download to read `from` (a
 * 4 KiB boundary) to `to`: when direct I/O is on, the file system takes O_DIRECT and the page cache
 * does not hold the range (a blob written with O_DIRECT, or one the kernel has evicted). Such a blob
 * read through the page cache is copied into pages the kernel takes from free memory, which on this
 * project's VMs the host first faults in and zeroes: `dd` of a 512 MiB file written with O_DIRECT
 * read it at 773 MB/s with 0.67 s of system time, and with `iflag=direct` at 2.1 GB/s with 0.03 s.
 * A range whose CACHE_SAMPLES pages spread over it are all cached is read through the page cache as
 * before (undefined): one page is not enough, the kernel's readahead of an earlier read (8 MiB here)
 * caches the first pages of the next range. The descriptor is opened through /proc/self/fd, so it is
 * the same file whatever became of its name, and checked to be (same device and inode). Close it
 * with closeDirectFd.
 */
export function openDirectRead(fd: number, from: number, to: number): number | undefined {
  const native = load().native;
  if (!native || off || O_DIRECT === undefined) return undefined;
  try {
    const st = fstatSync(fd);
    if (refused.has(st.dev) || !st.isFile() || to <= from) return undefined;
    let cached = true;
    for (let i = 0; i < CACHE_SAMPLES && cached; i++) cached = native.cached(fd, from + Math.floor(((to - from - 1) * i) / (CACHE_SAMPLES - 1)));
    return cached ? undefined : reopenDirect(`/proc/self/fd/${fd}`, constants.O_RDONLY, st);
  } catch {
    // a descriptor gone: the download reads through the page cache
    return undefined;
  }
}

/** The file system of a direct descriptor refused a read (EINVAL): direct I/O is not tried on it again. */
export function refuseDirectRead(fd: number): void {
  try {
    refused.add(fstatSync(fd).dev);
  } catch {
    // the descriptor is closed next
  }
}

/** Closes a direct descriptor (its reads or writes all returned: a failing close loses nothing). */
export function closeDirectFd(fd: number): void {
  try {
    closeSync(fd);
  } catch {
    // nothing is pending on it
  }
}

/** An aligned buffer of DIRECT_BUFFER bytes for a direct read (kept ones first); give it back with giveReadBuffer. */
export function takeReadBuffer(): Buffer {
  const native = load().native;
  if (!native) throw new Error('direct reads need native/directio.c');
  return readKept.pop() ?? alignedBuffer(native);
}

/** A read buffer the socket has taken the bytes of (no read or write may still use it). */
export function giveReadBuffer(b: Buffer): void {
  if (readKept.length < READ_POOL_MAX) readKept.push(b);
}

/**
 * One read of `length` bytes (a multiple of DIRECT_ALIGN) at `position` (aligned too) into an
 * aligned buffer through a direct descriptor; the bytes read (fewer at the end of the file).
 */
export function readDirect(fd: number, buffer: Buffer, length: number, position: number): Promise<number> {
  return new Promise((ok, fail) =>
    read(fd, buffer, 0, length, position, (e, n) => {
      if (e) return fail(e);
      readDirectly += n;
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
  for (const b of [...kept, ...readKept]) any = native.discard(b.buffer as ArrayBuffer) || any;
  return any;
}

/** Buffers lent to writers and kept for later ones, and the bytes written and read directly so far (for tests). */
export function directIoCounters(): { readonly lent: number; readonly kept: number; readonly written: number; readonly read: number } {
  return { lent, kept: kept.length, written, read: readDirectly };
}

/**
 * Whether the importer's layer copies (src/digest/layer-file-worker.ts) write with O_DIRECT: on
 * where the module is built and O_DIRECT exists, unless LR_DIRECT_IO=0. Unlike a server's uploads
 * (off unless LR_DIRECT_IO=1), an import is a bulk copy that nobody pulls from while it runs: its
 * layers need not stay in the page cache, and a pull of one later is read ahead (src/http/sendfile.ts).
 */
export function importDirectIo(): boolean {
  return load().native !== undefined;
}

/** A page-aligned buffer of `size` bytes (a multiple of DIRECT_ALIGN) for direct I/O; undefined without the module. */
export function alignedBufferOf(size: number): Buffer | undefined {
  const native = load().native;
  return native ? alignedBuffer(native, size) : undefined;
}

/**
 * A second descriptor of the file open as `fd` for direct writes (through /proc/self/fd, checked to
 * be the same file), with the file's device (for refuseDirect); undefined when the module is missing
 * or the file system refuses O_DIRECT (its device is then not tried again). Close it with closeDirectFd.
 */
export function directTwin(fd: number): { readonly fd: number; readonly dev: number } | undefined {
  if (!load().native || O_DIRECT === undefined) return undefined;
  try {
    const st = fstatSync(fd);
    if (refused.has(st.dev) || !st.isFile()) return undefined;
    const twin = reopenDirect(`/proc/self/fd/${fd}`, constants.O_WRONLY, st);
    return twin === undefined ? undefined : { fd: twin, dev: st.dev };
  } catch {
    return undefined;
  }
}
