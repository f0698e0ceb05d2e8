import { closeSync, constants, existsSync, openSync, readlinkSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import { getSystemErrorName } from 'node:util';
import { loadNative } from './native.js';

/**
 * Opens files of a directory tree that someone else may be changing meanwhile (a source tree of
 * `legacy-registry import`), never reaching outside the tree.
 *
 * The importer checks an object's real path (every link resolved) to lie inside the tree, then
 * opens it. Opened by that path, a directory on the way swapped for a symbolic link in between (to
 * /etc, to another tenant's tree) would be followed and a file outside the tree read. So the open is
 * made relative to a descriptor of the tree's root held since the start, with the checked path
 * (which has no link left in it) and no link followed at all (native/beneath.c: openat2 with
 * RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS, or a walk one component at a time where the kernel has no
 * openat2): a link put anywhere on the path since the check fails the open with ELOOP.
 *
 * Without the module (not built, LR_BENEATH=0) the file is opened by its path and then checked where
 * it really is: the kernel's path of the descriptor (/proc/self/fd) must be the path checked, or the
 * descriptor is closed unread (ELOOP). Off Linux, with no /proc either, only the check before the
 * open stands.
 */
interface Native {
  readonly available: boolean;
  /** A descriptor (O_PATH) of the directory, or -errno. */
  openRoot(path: string): number;
  /** The file at `relative` below the root opened with `flags`, or -errno (ELOOP: a link on the way). */
  openBeneath(rootFd: number, relative: string, flags: number, walk: boolean): number;
}

let loaded: { readonly native?: Native; readonly reason: string } | undefined;
const load = (): { readonly native?: Native; readonly reason: string } => (loaded ??= loadNative<Native>('beneath', 'LR_BENEATH', 'not Linux'));

const O_NOFOLLOW = constants.O_NOFOLLOW ?? 0;
const { ELOOP, EXDEV } = osConstants.errno;
/** Where the kernel says what a descriptor is (Linux). */
const PROC_FD = existsSync('/proc/self/fd') ? '/proc/self/fd' : undefined;

/** A tree's root as opens below it need it: its real path, and a descriptor of it when the module is there. */
export interface BeneathRoot {
  readonly path: string;
  readonly fd?: number;
}

/** How files below a root are opened here (for the import's log and tests). */
export function beneathStatus(): { readonly mode: 'native' | 'verify' | 'check'; readonly reason: string } {
  const { native, reason } = load();
  if (native) return { mode: 'native', reason: process.env.LR_BENEATH_WALK === '1' ? 'component walk (LR_BENEATH_WALK=1)' : 'openat2' };
  return { mode: PROC_FD ? 'verify' : 'check', reason };
}

function errnoError(r: number, what: string): NodeJS.ErrnoException {
  const code = getSystemErrorName(r);
  return Object.assign(new Error(`${code}: ${what}`), { code, errno: r });
}

/**
 * The root at `realPath` (a directory with every link of its path resolved): held open for the
 * process's life by the caller (the tree of one import).
 */
export function openRoot(realPath: string): BeneathRoot {
  const native = load().native;
  if (!native) return { path: realPath };
  const fd = native.openRoot(realPath);
  if (fd < 0) throw errnoError(fd, `open ${realPath}`);
  return { path: realPath, fd };
}

/**
 * `relative` ('/'-separated, no '..', no link on the way: a real path's part below the root; '' is
 * the root) opened with `flags` (reading flags only); a descriptor to close. Throws an fs-like error:
 * ELOOP when a symbolic link stands anywhere on the path, EXDEV when the path would leave the root,
 * ENOENT/ENOTDIR when nothing is there.
 */
export function openBeneathSync(root: BeneathRoot, relative: string, flags: number): number {
  const native = load().native;
  if (native && root.fd !== undefined) {
    const fd = native.openBeneath(root.fd, relative, flags, process.env.LR_BENEATH_WALK === '1');
    if (fd < 0) throw errnoError(fd, `open ${relative || '.'} below ${root.path}`);
    return fd;
  }
  if (relative.split('/').includes('..')) throw errnoError(-EXDEV, `${relative}: leaves ${root.path}`);
  const full = relative === '' ? root.path : `${root.path}/${relative}`;
  const fd = openSync(full, flags | O_NOFOLLOW);
  if (PROC_FD === undefined) return fd;
  let real: string;
  try {
    real = readlinkSync(`${PROC_FD}/${fd}`);
  } catch (e) {
    closeSync(fd);
    throw e;
  }
  if (real !== full) {
    closeSync(fd);
    throw errnoError(-ELOOP, `${full} was opened at ${real}: a link on its path since it was checked`);
  }
  return fd;
}

/** A path naming the directory open at `fd` itself (for readdir), where the system has one. */
export function pathOfFd(fd: number): string | undefined {
  return PROC_FD && `${PROC_FD}/${fd}`;
}
