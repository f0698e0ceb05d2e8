import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import { constants, type Stats } from 'node:fs';
import * as fsp from 'node:fs/promises';
import { basename, dirname, join, resolve, sep } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { withFileRange } from '../file-range.js';
import { releasesChunks } from '../recycle.js';
import { closeDirect, DIRECT_AFTER, DIRECT_ALIGN, directIoOn, openDirect, refuseDirect, writeDirect, type DirectFile } from '../direct-io.js';
import { isAbsent } from '../../util/fs-errors.js';
import {
  type CommitOptions,
  type PutOptions,
  type ReaderOptions,
  endWriterStream,
  ContentTooLargeError,
  InvalidOffsetError,
  SizeMismatchError,
  sizeToCheck,
  InvalidPathError,
  PathNotFoundError,
  StorageError,
  isValidSegment,
  validateKey,
  type FileInfo,
  type GetOptions,
  type StorageDriver,
  type Writer,
  type WriterOptions,
} from '../driver.js';
import { pool } from '../../util/pool.js';

export interface FilesystemDriverOptions {
  /** Directory holding every key. Created on first use if missing. */
  readonly root: string;
  /**
   * Make the small file-system calls (lstat, mkdir, open, rename, unlink, the bytes of putContent)
   * as blocking calls on the calling thread, and only the bulk ones (a writer's writes, fsync,
   * readers) on libuv's thread pool. For a command line tool that is the only user of its event
   * loop (`import`): a metadata call takes microseconds in the page cache, while handing it to the
   * pool wakes a thread on another core and back (see docs/migrating.md "Measured"). A server keeps
   * the default (false): a blocking call there would stall every other request.
   *
   * 'metadata' (a server on a local file system, storage_blocking_calls): only the calls on one name
   * block — lstat, stat, mkdir (one key's directories), open, rename, link, unlink, rmdir, a file's close
   * and fstat, and putContent's bytes up to BLOCKING_WRITE_MAX — each one system call on a local
   * disk; reads, listings, recursive removals, real paths, every byte of a writer or a reader, and an
   * unlink, rename or truncating open that would free a file over BIG_FILE (freeing a written-out
   * file takes ~0.5 s for 2 GiB here) stay on the pool. Measured on 1 MiB v2 uploads (POST + PUT, 8
   * at a time; docs/benchmarks.md, "Thirteenth look"): 19 % less CPU per upload and 10 % more
   * uploads per second.
   */
  readonly blocking?: boolean | 'metadata';
}

/** An open file as the driver's write paths use it: fs/promises' FileHandle has these. */
interface Handle {
  writeFile(data: Buffer): Promise<void>;
  writev(buffers: Buffer[], position: number): Promise<{ bytesWritten: number }>;
  sync(): Promise<void>;
  datasync(): Promise<void>;
  stat(): Promise<Stats>;
  close(): Promise<void>;
}

/** The file-system calls of the driver's key operations (see FilesystemDriverOptions.blocking). */
interface FsCalls {
  lstat(path: string): Promise<Stats>;
  /** lstat, undefined when nothing is there (ENOENT, ENOTDIR): no error object made for the common case. */
  lstatIfAny(path: string): Promise<Stats | undefined>;
  stat(path: string): Promise<Stats>;
  mkdir(path: string, options: { recursive: true }): Promise<unknown>;
  /** One directory, its parent existing (EEXIST, ENOENT otherwise). */
  mkdirOne(path: string): Promise<void>;
  rename(from: string, to: string): Promise<void>;
  link(existing: string, path: string): Promise<void>;
  unlink(path: string): Promise<void>;
  rmdir(path: string): Promise<void>;
  rm(path: string, options: fs.RmOptions): Promise<void>;
  readFile(path: string): Promise<Buffer>;
  /** readFile of the file itself: a symlink at path fails with ELOOP (open with O_NOFOLLOW). */
  readFileNoFollow(path: string): Promise<Buffer>;
  readdir(path: string): Promise<string[]>;
  realpath(path: string): Promise<string>;
  open(path: string, flags: number, mode: number): Promise<Handle>;
  /** fsync a directory so a rename or create in it survives a crash (see syncDir). */
  syncDir(path: string): Promise<void>;
}

const promiseCalls: FsCalls = {
  lstat: (p) => fsp.lstat(p),
  lstatIfAny: (p) => fsp.lstat(p).catch((e: unknown) => (isAbsent(e) ? undefined : Promise.reject(e))),
  stat: (p) => fsp.stat(p),
  mkdir: (p, o) => fsp.mkdir(p, o),
  mkdirOne: (p) => fsp.mkdir(p),
  rename: (a, b) => fsp.rename(a, b),
  link: (a, b) => fsp.link(a, b),
  unlink: (p) => fsp.unlink(p),
  rmdir: (p) => fsp.rmdir(p),
  rm: (p, o) => fsp.rm(p, o),
  readFile: (p) => fsp.readFile(p),
  readFileNoFollow: async (p) => {
    const handle = await fsp.open(p, constants.O_RDONLY | O_NOFOLLOW);
    try {
      return await handle.readFile();
    } finally {
      await handle.close();
    }
  },
  readdir: (p) => fsp.readdir(p),
  realpath: (p) => fsp.realpath(p),
  open: (p, f, m) => fsp.open(p, f, m),
  syncDir: (p) => syncDir(p),
};

/**
 * A blocking call made now, its result (or its error, as a rejection, like fs/promises) delivered
 * on the next turn of the event loop: a caller that loops on the driver (`while (!done) await
 * d.list(…)`) still lets timers and I/O callbacks run, as it would with the thread pool.
 */
function settled<T>(fn: () => T): Promise<T> {
  let result: { ok: T } | { error: Error };
  try {
    result = { ok: fn() };
  } catch (e) {
    result = { error: e instanceof Error ? e : new Error(String(e)) };
  }
  return new Promise((ok, fail) => setImmediate(() => ('ok' in result ? ok(result.ok) : fail(result.error))));
}

/**
 * A file opened with a blocking call: small calls block, writes and syncs go to the pool (with
 * syncWriteMax, so do writeFile's bytes past that size).
 */
class BlockingHandle implements Handle {
  private closed = false;
  constructor(
    private readonly fd: number,
    private readonly syncWriteMax = Infinity,
  ) {}
  writeFile(data: Buffer): Promise<void> {
    if (data.length > this.syncWriteMax) return this.writeAll(data);
    return settled(() => {
      for (let at = 0; at < data.length;) at += fs.writeSync(this.fd, data, at, data.length - at);
    });
  }
  private async writeAll(data: Buffer): Promise<void> {
    for (let at = 0; at < data.length;) {
      at += await new Promise<number>((ok, fail) => fs.write(this.fd, data, at, data.length - at, null, (e, n) => (e ? fail(e) : ok(n))));
    }
  }
  writev(buffers: Buffer[], position: number): Promise<{ bytesWritten: number }> {
    return new Promise((ok, fail) => fs.writev(this.fd, buffers, position, (e, bytesWritten) => (e ? fail(e) : ok({ bytesWritten }))));
  }
  sync(): Promise<void> {
    return new Promise((ok, fail) => fs.fsync(this.fd, (e) => (e ? fail(e) : ok())));
  }
  datasync(): Promise<void> {
    return new Promise((ok, fail) => fs.fdatasync(this.fd, (e) => (e ? fail(e) : ok())));
  }
  stat(): Promise<Stats> {
    return settled(() => fs.fstatSync(this.fd));
  }
  close(): Promise<void> {
    return settled(() => {
      // a second close must not close a descriptor number the process has reused meanwhile
      if (this.closed) return;
      this.closed = true;
      fs.closeSync(this.fd);
    });
  }
}

const blockingCalls: FsCalls = {
  lstat: (p) => settled(() => fs.lstatSync(p)),
  lstatIfAny: (p) =>
    settled(() => {
      try {
        return fs.lstatSync(p, { throwIfNoEntry: false });
      } catch (e) {
        if (isAbsent(e)) return undefined;
        throw e;
      }
    }),
  stat: (p) => settled(() => fs.statSync(p)),
  mkdir: (p, o) => settled(() => fs.mkdirSync(p, o)),
  mkdirOne: (p) => settled(() => fs.mkdirSync(p)),
  rename: (a, b) => settled(() => fs.renameSync(a, b)),
  link: (a, b) => settled(() => fs.linkSync(a, b)),
  unlink: (p) => settled(() => fs.unlinkSync(p)),
  rmdir: (p) => settled(() => fs.rmdirSync(p)),
  rm: (p, o) => settled(() => fs.rmSync(p, o)),
  readFile: (p) => settled(() => fs.readFileSync(p)),
  readFileNoFollow: (p) =>
    settled(() => {
      const fd = fs.openSync(p, constants.O_RDONLY | O_NOFOLLOW);
      try {
        return fs.readFileSync(fd);
      } finally {
        fs.closeSync(fd);
      }
    }),
  readdir: (p) => settled(() => fs.readdirSync(p)),
  realpath: (p) => settled(() => fs.realpathSync(p)),
  open: (p, f, m) => openBlocking(p, f, m),
  syncDir: (p) => syncDir(p, true),
};

/**
 * open() as a blocking call. O_NONBLOCK: a FIFO put at a key fails (ENXIO) instead of holding the
 * event loop until a reader comes; on a regular file it changes nothing.
 */
function openBlocking(path: string, flags: number, mode: number, syncWriteMax?: number): Promise<Handle> {
  return settled(() => new BlockingHandle(fs.openSync(path, flags | O_NONBLOCK, mode), syncWriteMax));
}

/** putContent's bytes written with a blocking call in the 'metadata' mode (larger ones: the pool). */
const BLOCKING_WRITE_MAX = 64 * 1024;

/**
 * The 'metadata' mode (FilesystemDriverOptions.blocking): blocking calls on one name, the pool for
 * everything that reads or walks an unknown amount (see there).
 */
const metadataCalls: FsCalls = {
  ...blockingCalls,
  // freeing a written-out file takes long (its blocks and cached pages: ~0.24 ms per MiB here, 470
  // ms for 2 GiB), and an unlink, a rename over a file or an open with O_TRUNC may do it: those go
  // to the pool when the file at the name is big (one lstat to tell, ~3 µs)
  unlink: (p) => (freesBigFile(p) ? promiseCalls.unlink(p) : blockingCalls.unlink(p)),
  rename: (a, b) => (freesBigFile(b) ? promiseCalls.rename(a, b) : blockingCalls.rename(a, b)),
  rm: promiseCalls.rm,
  readFile: promiseCalls.readFile,
  readFileNoFollow: promiseCalls.readFileNoFollow,
  readdir: promiseCalls.readdir,
  realpath: promiseCalls.realpath,
  open: (p, f, m) => ((f & constants.O_TRUNC) !== 0 && freesBigFile(p) ? promiseCalls.open(p, f, m) : openBlocking(p, f, m, BLOCKING_WRITE_MAX)),
};

/** A regular file of more than this many bytes is unlinked, replaced or truncated on the pool. */
const BIG_FILE = 4 << 20;

/** Whether a regular file bigger than BIG_FILE is at path (the calls that would free it go to the pool). */
function freesBigFile(path: string): boolean {
  try {
    const st = fs.lstatSync(path, { throwIfNoEntry: false });
    return st !== undefined && st.isFile() && st.size > BIG_FILE;
  } catch {
    return false;
  }
}

/**
 * Linux file systems on a local disk or in memory (statfs f_type), where a call on one name is a
 * matter of microseconds once its directory is cached: ext2/3/4, XFS, Btrfs, tmpfs, ramfs, F2FS,
 * ZFS, overlayfs, JFS, ReiserFS, bcachefs. Anything else (NFS, SMB/CIFS, FUSE, CephFS, GFS2, OCFS2,
 * Lustre…) may wait on a network, and a blocking call there would stall every request.
 */
const LOCAL_FS_TYPES = new Set([
  0xef53, 0x58465342, 0x9123683e, 0x01021994, 0x858458f6, 0xf2f52010, 0x2fc12fc1, 0x794c7630, 0x3153464a, 0x52654973, 0xca451a4e,
]);

/** Whether statfs type `type` (on this platform) is a local file system (LOCAL_FS_TYPES). */
export function isLocalFsType(type: number, platform: string = process.platform): boolean {
  return platform === 'linux' && LOCAL_FS_TYPES.has(type >>> 0);
}

/** Whether root lies on a local file system (isLocalFsType); false when that cannot be told. */
export async function onLocalFs(root: string): Promise<boolean> {
  try {
    return isLocalFsType((await fsp.statfs(root)).type);
  } catch {
    return false;
  }
}

/** Reads and writes move at most this many bytes per system call (and per stream chunk). */
const IO_CHUNK = 1 << 20;
/**
 * A big file being written is flushed to the disk in the background (fdatasync on a pool thread)
 * every WRITEBACK_EVERY bytes once a writer has written WRITEBACK_AFTER, so the fsync of a durable
 * commit finds little left to write: the disk works while the bytes still arrive instead of after
 * the last one. Smaller writes (a v2 PATCH of a few MiB, metadata) never wait for one.
 */
const WRITEBACK_AFTER = 32 << 20;
const WRITEBACK_EVERY = 16 << 20;

/**
 * Marks a putContent temporary file: `<name>~tmp-<16 hex>`, next to its key. '~' is never
 * valid in a key segment, so a temporary file can neither collide with a key nor be addressed
 * or listed through the driver. (A `.tmp-` marker could: `v1.tmp-2` is a valid tag.)
 */
const TEMP_MARK = '~tmp-';
const TEMP_NAME = /~tmp-[0-9a-f]+$/;
/** Part of the key's name kept in a temporary name, so the whole stays within NAME_MAX (255). */
const TEMP_BASE_MAX = 200;

/** Temporary files older than this are removed by createDriver at startup. */
export const STALE_TEMP_AGE_MS = 60 * 60 * 1000;

/** Attempts of a create or rename whose directory was removed under it by a concurrent prune. */
const CREATE_ATTEMPTS = 5;

const O_NOFOLLOW = constants.O_NOFOLLOW ?? 0;
const O_NONBLOCK = constants.O_NONBLOCK ?? 0;
const O_DIRECTORY = constants.O_DIRECTORY ?? 0;

/** The last root resolved by keyToPath (a driver passes its own every time). */
let lastRoot: { readonly root: string; readonly base: string } | undefined;

/**
 * The absolute path of a key under root. Throws InvalidPathError for an invalid key; the result
 * is always root itself (only for '' with allowRoot) or a path strictly below root.
 */
export function keyToPath(root: string, key: string, allowRoot = false): string {
  validateKey(key, allowRoot);
  if (lastRoot?.root !== root) lastRoot = { root, base: resolve(root) };
  const base = lastRoot.base;
  if (key === '') return base;
  // every segment is a plain name (validateKey): nothing for join to normalize where '/' is sep
  const path = sep === '/' ? `${base === '/' ? '' : base}/${key}` : join(base, ...key.split('/'));
  // validateKey already excludes every segment that could climb; this is the second lock.
  if (!path.startsWith(base + sep) || path.length === base.length + 1) throw new InvalidPathError(key);
  return path;
}

/** True for the name of a temporary file this driver creates (and cleanStaleTempFiles removes). */
export function isTempFileName(name: string): boolean {
  return TEMP_NAME.test(name);
}

/**
 * Removes temporary files (`*~tmp-*`) left under root by a process killed during putContent,
 * when their modification time is at least olderThanMs ago, and then the directories that
 * emptied. Run it at startup (createDriver does): temporary files of putContent calls in flight
 * on other nodes sharing the directory are young and stay. Returns how many files it removed.
 * Only directories whose names are valid key segments are entered; symlinks are not followed.
 * `signal` stops the walk between two directories.
 */
export async function cleanStaleTempFiles(root: string, olderThanMs: number, now = Date.now(), signal?: AbortSignal): Promise<number> {
  const base = resolve(root);
  let removed = 0;
  const walk = async (dir: string): Promise<void> => {
    // stopped (a server shutting down): what is left waits for the next start
    if (signal?.aborted) return;
    let entries;
    try {
      entries = await fsp.readdir(dir, { withFileTypes: true });
    } catch (e) {
      if (isAbsent(e)) return; // removed concurrently
      throw e;
    }
    for (const entry of entries) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) {
        if (isValidSegment(entry.name)) await walk(path);
      } else if (entry.isFile() && isTempFileName(entry.name)) {
        try {
          const info = await fsp.lstat(path);
          if (now - info.mtimeMs < olderThanMs) continue;
          await fsp.unlink(path);
          removed++;
        } catch (e) {
          if (errCode(e) === 'ENOENT') continue; // its putContent finished or another node removed it
          throw e;
        }
        await pruneEmptyDirs(promiseCalls, base, dir);
      }
    }
  };
  await walk(base);
  return removed;
}

/**
 * A driver over a local directory: one key, one file at the same relative path.
 * - putContent writes `<name>~tmp-<random>` beside the key, fsyncs it, renames it over the key
 *   and fsyncs the directory: readers see the old or the new file, never a mix.
 * - writer() writes the key's file in place (keys written that way are private upload keys);
 *   commit() fsyncs the file and its directory.
 * - an open reader holds its file descriptor, so a rename over the key does not disturb it.
 * - a symlink below root is followed only while it resolves inside root; any key whose path
 *   would leave root through one is rejected with InvalidPathError. (This guards against links
 *   found in the tree, not against a concurrent attacker with write access to root.) A link at
 *   the key itself is never followed by a write to that name: putContent and move replace or move
 *   the link, delete removes it, writer() refuses it (O_NOFOLLOW).
 * - putContent with `marker` writes the file in place (see PutOptions.marker).
 * - directories emptied by delete, move or cancel are removed, so a prefix exists exactly
 *   while some key lies below it, as in an object store.
 */
export function createFilesystemDriver(options: FilesystemDriverOptions): StorageDriver {
  const calls = options.blocking === true ? blockingCalls : options.blocking === 'metadata' ? metadataCalls : promiseCalls;
  return new FilesystemDriver(resolve(options.root), calls);
}

class FilesystemDriver implements StorageDriver {
  readonly name = 'filesystem';
  private realRoot: Promise<string> | undefined;

  constructor(
    private readonly base: string,
    private readonly io: FsCalls,
  ) {}

  async getContent(key: string, options?: GetOptions): Promise<Buffer> {
    const max = options?.maxSize;
    if (max === undefined) return this.readKey(key, (path, follow) => (follow ? this.io.readFile(path) : this.io.readFileNoFollow(path)));
    // with a bound: the size of the opened file first, its bytes only when within it
    return this.readKey(key, async (path, follow) => {
      const handle = await fsp.open(path, constants.O_RDONLY | (follow ? 0 : O_NOFOLLOW));
      try {
        const info = await handle.stat();
        if (info.isDirectory()) throw new PathNotFoundError(key);
        if (info.size > max) throw new ContentTooLargeError(key, max);
        const data = await handle.readFile();
        // (grown since the stat: by an append)
        if (data.length > max) throw new ContentTooLargeError(key, max);
        return data;
      } finally {
        await handle.close();
      }
    });
  }

  /**
   * A read of the file at key by `read`: first of the file itself (follow false: O_NOFOLLOW), and
   * only when a symlink is there (ELOOP) through it (follow true), once it is known to resolve
   * inside root. The directories on the way are checked first; errors come as the driver's.
   */
  private async readKey<T>(key: string, read: (path: string, follow: boolean) => Promise<T>): Promise<T> {
    const path = keyToPath(this.base, key);
    if ((await this.dirState(dirname(path), key)) === 'missing') throw new PathNotFoundError(key);
    try {
      return await read(path, false);
    } catch (e) {
      if (errCode(e) !== 'ELOOP') throw translate(e, key, true);
    }
    await this.confineSlow(path, key);
    try {
      return await read(path, true);
    } catch (e) {
      throw translate(e, key, true);
    }
  }

  async putContent(key: string, data: Buffer, options: PutOptions = {}): Promise<void> {
    const durable = options.durable !== false;
    const path = await this.namePath(key, true);
    const dir = dirname(path);
    if (options.fresh === true && (await this.putFresh(key, path, data, durable))) return;
    if (options.marker === true) return this.putMarker(key, path, data, durable);
    const temp = join(dir, tempName(basename(path)));
    const handle = await this.createFile(temp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | O_NOFOLLOW, key);
    try {
      await writeAndClose(handle, data, durable);
      await this.io.rename(temp, path);
    } catch (e) {
      await this.io.unlink(temp).catch((ue: unknown) => {
        if (errCode(ue) !== 'ENOENT') throw ue;
      });
      throw translate(e, key, false);
    }
    if (durable) await this.io.syncDir(dir);
  }

  /**
   * putContent with `fresh`: the file created in place (O_EXCL), no temporary file and no rename.
   * False when something is at the key already: putContent then replaces it as usual.
   */
  private async putFresh(key: string, path: string, data: Buffer, durable: boolean): Promise<boolean> {
    let handle: Handle;
    try {
      handle = await this.createFile(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | O_NOFOLLOW, key, 'EEXIST');
    } catch (e) {
      if (errCode(e) === 'EEXIST') return false;
      throw e;
    }
    try {
      await writeAndClose(handle, data, durable);
    } catch (e) {
      await this.io.unlink(path).catch(() => undefined);
      throw translate(e, key, false);
    }
    if (durable) await this.io.syncDir(dirname(path));
    return true;
  }

  /**
   * putContent with `marker`: the file written in place (truncated if it exists, which renews its
   * time), then when durable fsynced with its directory: 7 calls instead of 8, and no temporary
   * inode. (The file's own fsync stays: without a journal, ext4 writes a new file's inode only then.)
   */
  private async putMarker(key: string, path: string, data: Buffer, durable: boolean): Promise<void> {
    const handle = await this.createFile(path, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | O_NOFOLLOW, key);
    try {
      await writeAndClose(handle, data, durable);
    } catch (e) {
      throw translate(e, key, false);
    }
    if (durable) await this.io.syncDir(dirname(path));
  }

  /**
   * Exclusive create: the bytes go to a temporary file first (fsynced), then link(2) gives them the
   * key's name, which fails with EEXIST when a file is there: atomic across processes on one
   * filesystem (NFS v3+ too, where link is the classic lock primitive).
   */
  async putContentIfAbsent(key: string, data: Buffer, options: PutOptions = {}): Promise<boolean> {
    const durable = options.durable !== false;
    // link(2) does not follow a symlink at path either: EEXIST
    const path = await this.namePath(key, true);
    const dir = dirname(path);
    const temp = join(dir, tempName(basename(path)));
    const handle = await this.createFile(temp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | O_NOFOLLOW, key);
    let created = false;
    try {
      await writeAndClose(handle, data, durable);
      try {
        await this.io.link(temp, path);
        created = true;
      } catch (e) {
        if (errCode(e) !== 'EEXIST') throw e;
      }
    } catch (e) {
      throw translate(e, key, false);
    } finally {
      await this.io.unlink(temp).catch(() => undefined);
    }
    if (created && durable) await this.io.syncDir(dir);
    return created;
  }

  async reader(key: string, offset = 0, length?: number, options?: ReaderOptions): Promise<Readable> {
    validateKey(key);
    if (!Number.isSafeInteger(offset) || offset < 0) throw new InvalidOffsetError(key, offset);
    if (length !== undefined && (!Number.isSafeInteger(length) || length < 0)) throw new InvalidOffsetError(key, offset);
    const known = sizeToCheck(offset, length, options);
    const handle = await this.readKey(key, (path, follow) => fsp.open(path, constants.O_RDONLY | (follow ? 0 : O_NOFOLLOW)));
    let size: number;
    try {
      const info = await handle.stat();
      if (info.isDirectory()) throw new PathNotFoundError(key);
      size = info.size;
      if (known !== undefined && size !== known) throw new SizeMismatchError(key, known, size);
      if (offset > size) throw new InvalidOffsetError(key, offset);
    } catch (e) {
      await handle.close();
      throw e;
    }
    const count = Math.min(length ?? Infinity, size - offset);
    if (count === 0) {
      await handle.close();
      return emptyStream();
    }
    // The stream owns the handle from here and closes it on end, error or destroy. Senders that can
    // read the file themselves (src/http/send-file.ts) use the handle and then destroy the stream.
    return withFileRange(handle.createReadStream({ start: offset, end: offset + count - 1, highWaterMark: IO_CHUNK }), {
      handle,
      start: offset,
      length: count,
    });
  }

  async localUploadFile(key: string): Promise<string> {
    const path = await this.pathOf(key);
    const dir = dirname(path);
    if (!this.safeDirs.has(dir)) await this.ensureDir(dir, key);
    return path;
  }

  async writer(key: string, options: WriterOptions = {}): Promise<Writer> {
    const path = await this.namePath(key, true);
    const flags = constants.O_WRONLY | constants.O_CREAT | O_NOFOLLOW | (options.append === true ? 0 : constants.O_TRUNC);
    const handle = await this.createFile(path, flags, key);
    let start: number;
    let info: Stats;
    try {
      info = await handle.stat();
      if (!info.isFile()) throw new StorageError(`not a regular file: ${key}`, key);
      start = info.size;
    } catch (e) {
      await handle.close();
      throw e;
    }
    return new FileWriter(key, path, handle, start, this.base, this.forget, this.io, { path, dev: info.dev, ino: info.ino });
  }

  async stat(key: string): Promise<FileInfo> {
    const { path, leaf } = await this.pathAndLeaf(key);
    if (leaf === 'missing') throw new PathNotFoundError(key);
    let info;
    if (leaf !== 'link') info = leaf;
    else {
      try {
        info = await this.io.stat(path);
      } catch (e) {
        throw translate(e, key, true);
      }
    }
    if (info.isDirectory()) {
      if (!(await hasVisibleEntry(path))) throw new PathNotFoundError(key);
      return { size: 0, modTime: info.mtime };
    }
    return { size: info.size, modTime: info.mtime };
  }

  async list(prefix: string): Promise<string[]> {
    const path = await this.pathOf(prefix, true);
    let names: string[];
    try {
      names = await this.io.readdir(path);
    } catch (e) {
      const code = errCode(e);
      if (prefix === '' && code === 'ENOENT') return [];
      if (isAbsent(e)) throw new PathNotFoundError(prefix);
      throw e;
    }
    const keys = names.filter(isValidSegment).map((n) => (prefix === '' ? n : `${prefix}/${n}`));
    if (keys.length === 0 && prefix !== '') throw new PathNotFoundError(prefix);
    return keys.sort();
  }

  async move(src: string, dst: string, options: PutOptions = {}): Promise<void> {
    validateKey(src);
    validateKey(dst);
    if (dirname(keyToPath(this.base, src)) === dirname(keyToPath(this.base, dst))) return this.renameInDir(src, dst, options);
    const srcPath = await this.namePath(src);
    const dstPath = await this.namePath(dst, true);
    const dstDir = dirname(dstPath);
    if (options.ownDirectory === true && basename(srcPath) === basename(dstPath) && (await this.moveDirectory(dirname(srcPath), dstDir, dst, options))) return;
    for (let attempt = 1; ; attempt++) {
      // a directory this driver made or checked is used as it is (see createFile)
      if (attempt > 1 || !this.safeDirs.has(dstDir)) await this.ensureDir(dstDir, dst);
      try {
        await this.io.rename(srcPath, dstPath);
        break;
      } catch (e) {
        // ENOENT: src is missing (not found), or dst's directory was pruned meanwhile (again)
        if (errCode(e) !== 'ENOENT') throw translate(e, src, true);
        try {
          await this.io.lstat(srcPath);
        } catch (le) {
          // nothing to move: the prefixes made for dst go again
          await pruneEmptyDirs(this.io, this.base, dstDir, this.forget);
          throw translate(le, src, true);
        }
        if (attempt >= CREATE_ATTEMPTS) throw translate(e, src, true);
      }
    }
    if (options.durable !== false) await this.io.syncDir(dstDir);
    if (options.sourceDirInUse !== true) await pruneEmptyDirs(this.io, this.base, dirname(srcPath), this.forget);
  }

  /**
   * move() with ownDirectory: src's directory renamed to dst's, when dst's does not exist (or is
   * empty): one rename instead of a mkdir, a rename and an rmdir, and no inode freed (on ext4
   * without a journal every freed inode is skipped by each new file's allocation for a minute).
   * False when dst's directory holds something (the caller moves the file instead).
   */
  private async moveDirectory(srcDir: string, dstDir: string, dst: string, options: PutOptions): Promise<boolean> {
    if (srcDir === this.base || dstDir === this.base) return false;
    for (let attempt = 1; ; attempt++) {
      try {
        await this.io.rename(srcDir, dstDir);
        break;
      } catch (e) {
        const code = errCode(e);
        // dst's parent is missing: make it (checked by pathOf as far as it existed) and again; src
        // gone, or dst's parent pruned each time: the file move says which
        if (code === 'ENOENT') {
          if (attempt >= CREATE_ATTEMPTS) return false;
          await this.ensureDir(dirname(dstDir), dst);
          continue;
        }
        // dst's directory holds something (the blob is there already), or no directory rename here
        if (
          code === 'ENOTEMPTY' ||
          code === 'EEXIST' ||
          code === 'ENOTDIR' ||
          code === 'EISDIR' ||
          code === 'EXDEV' ||
          code === 'EINVAL' ||
          code === 'EPERM' ||
          code === 'EACCES'
        )
          return false;
        throw e;
      }
    }
    this.forget(srcDir);
    this.remember(dstDir);
    if (options.durable !== false) {
      await this.io.syncDir(dirname(dstDir));
      await this.io.syncDir(dirname(srcDir));
    }
    return true;
  }

  /**
   * move() within one directory (an upload session's claim and its release, on every request):
   * the directory exists while src does, so ENOENT can only mean that src is missing, and one
   * rename does it (no lstat of src, no mkdir of the directory first).
   */
  private async renameInDir(src: string, dst: string, options: PutOptions): Promise<void> {
    const srcPath = await this.namePath(src);
    const dstPath = await this.namePath(dst);
    const dir = dirname(srcPath);
    try {
      await this.io.rename(srcPath, dstPath);
    } catch (e) {
      throw translate(e, src, true);
    }
    if (options.durable !== false) await this.io.syncDir(dir);
  }

  async purgeLeftovers(prefix: string, maxAgeMs: number, now = Date.now()): Promise<number> {
    return cleanStaleTempFiles(keyToPath(this.base, prefix, true), maxAgeMs, now);
  }

  async delete(key: string): Promise<void> {
    const path = await this.namePath(key);
    // a file (or a symlink: unlink removes the link itself, never its target): one unlink, without
    // looking first; a directory refuses it (EISDIR, EPERM on some systems) and goes below
    let isFile = true;
    try {
      await this.io.unlink(path);
    } catch (e) {
      const code = errCode(e);
      if (code !== 'EISDIR' && code !== 'EPERM') throw translate(e, key, true);
      isFile = false;
    }
    if (isFile) return pruneEmptyDirs(this.io, this.base, dirname(path), this.forget);
    try {
      // a directory (gone meanwhile: rm fails with ENOENT, not found). rm does not follow
      // symlinks: a link below it is removed, never its target. A writer creating a file
      // below the prefix meanwhile (another request, another node) makes a directory non-empty
      // again (ENOTEMPTY): rm retries, and removes what was added too.
      await this.io.rm(path, { recursive: true, maxRetries: 8, retryDelay: 5 });
    } catch (e) {
      throw translate(e, key, true);
    }
    await pruneEmptyDirs(this.io, this.base, dirname(path), this.forget);
  }

  /**
   * Many keys: one syncfs(2) of the filesystem holding root (`sync -f`, GNU coreutils; Node has no
   * binding for it), which flushes them all at once, and with them whatever else is dirty on that
   * filesystem. Few keys, or no `sync -f` here: an fsync of each file, then of each directory.
   */
  async syncKeys(keys: readonly string[]): Promise<void> {
    if (keys.length === 0) return;
    const paths = [...new Set(keys.map((k) => keyToPath(this.base, k)))];
    if (paths.length >= SYNCFS_MIN_KEYS && this.syncfs !== false) {
      this.syncfs = await (this.syncer ??= new SyncfsRunner()).run(this.base);
      if (this.syncfs) return;
    }
    await pool(paths, SYNC_PARALLEL, (p) => syncFile(p));
    await pool([...new Set(paths.map((p) => dirname(p)))], SYNC_PARALLEL, (d) => syncFile(d));
  }

  /** Whether `sync -f` works here (undefined: not tried yet). */
  private syncfs: boolean | undefined;
  private syncer: SyncfsRunner | undefined;

  async close(): Promise<void> {
    // Nothing else is held between calls: every operation opens and closes its own descriptors.
    this.syncer?.close();
    this.syncer = undefined;
  }

  /** Validates key, maps it under root and refuses it if an existing symlink leads out of root. */
  private async pathOf(key: string, allowRoot = false): Promise<string> {
    const path = keyToPath(this.base, key, allowRoot);
    await this.confine(path, key);
    return path;
  }

  /**
   * pathOf, and what confine found at the key: its lstat when it is no symlink, 'link' when it is
   * one (resolved inside root: the caller follows it), 'missing' when nothing is there. Saves the
   * caller a second look at the key (stat, delete and getContent of absent keys are most of the
   * importer's calls).
   */
  private async pathAndLeaf(key: string): Promise<{ path: string; leaf: Stats | 'link' | 'missing' }> {
    const path = keyToPath(this.base, key);
    return { path, leaf: await this.confine(path, key) };
  }

  /**
   * The path of a key for an operation on the name itself, which follows no symlink found there: a
   * create or an open with O_NOFOLLOW (a link at the key fails with ELOOP), a rename (moves or
   * replaces the link itself), an unlink (removes the link itself). Only the directories on the way
   * are checked (dirState, as confine): nothing at the key can lead such an operation out of root,
   * so the key's own lstat is not made (a call through the thread pool each, issue 18).
   */
  private async namePath(key: string, create = false): Promise<string> {
    const path = keyToPath(this.base, key);
    const dir = dirname(path);
    // About to create something there: a directory one level below a known one is made at once
    // rather than looked for first (an upload's folder, a new blob's). Whatever was there already
    // (EEXIST: maybe a symlink) is looked at as usual.
    if (create && !this.safeDirs.has(dir) && (dirname(dir) === this.base || this.safeDirs.has(dirname(dir))) && (await this.makeDir(dir))) return path;
    await this.dirState(dir, key);
    return path;
  }

  /** mkdir of dir alone: true when made here (now known), false when it failed for any reason. */
  private async makeDir(dir: string): Promise<boolean> {
    try {
      await this.io.mkdirOne(dir);
    } catch {
      return false; // there already, parent gone, or a real failure: the caller's usual path says which
    }
    this.remember(dir);
    return true;
  }

  private rootReal(): Promise<string> {
    if (this.realRoot === undefined) {
      const pending = this.io.mkdir(this.base, { recursive: true }).then(() => this.io.realpath(this.base));
      pending.catch(() => {
        // Let the next operation try again; the callers awaiting this one see the error.
        if (this.realRoot === pending) this.realRoot = undefined;
      });
      this.realRoot = pending;
    }
    return this.realRoot;
  }

  /**
   * Directories already resolved inside root (most recent last). A key below one of them needs
   * only an lstat of its last component instead of resolving every component again: the guard is
   * against links found in the tree (see above), and a directory does not turn into a link by
   * itself.
   */
  private readonly safeDirs = new Map<string, true>();

  private readonly forget = (dir: string): void => {
    this.safeDirs.delete(dir);
  };

  private remember(dir: string): void {
    this.safeDirs.delete(dir);
    this.safeDirs.set(dir, true);
    if (this.safeDirs.size > 10_000) this.safeDirs.delete(this.safeDirs.keys().next().value!);
  }

  /**
   * The deepest existing part of path must resolve inside root. Directories are checked one level
   * at a time from the nearest one already known (an lstat each, remembered): a real directory
   * needs nothing more, a symlink is resolved (realpath) and must stay inside root, and below a
   * missing directory nothing can exist, so the key's own name needs no check either (the write
   * that follows creates real directories, ensureDir). Only a key whose last component exists is
   * lstat-ed, and resolved when it is a symlink. Returns what it found there (see pathAndLeaf).
   */
  private async confine(path: string, key: string): Promise<Stats | 'link' | 'missing'> {
    if (path === this.base) return 'link'; // root: nothing known here, the caller looks itself
    if ((await this.dirState(dirname(path), key)) === 'missing') return 'missing';
    const leaf = await this.io.lstatIfAny(path);
    if (!leaf) return 'missing';
    if (!leaf.isSymbolicLink()) return leaf;
    await this.confineSlow(path, key);
    return 'link';
  }

  /**
   * 'safe' when dir is a directory inside root (remembered), 'missing' when it (or a directory
   * above it) does not exist or is no directory; InvalidPathError when a symlink on the way leads
   * out of root or nowhere.
   */
  private async dirState(dir: string, key: string): Promise<'safe' | 'missing'> {
    if (dir === this.base || this.safeDirs.has(dir)) return 'safe';
    if ((await this.dirState(dirname(dir), key)) === 'missing') return 'missing';
    const info = await this.io.lstatIfAny(dir);
    if (!info) return 'missing';
    if (info.isDirectory()) {
      this.remember(dir);
      return 'safe';
    }
    if (!info.isSymbolicLink()) return 'missing'; // a file: nothing can be below it
    // a link to a directory inside root is followed; one leading out of root, or nowhere, is refused
    if (!(await this.verifyDir(dir, key))) throw new InvalidPathError(key);
    return 'safe';
  }

  /** Resolve dir: true (and remembered) when it exists inside root, false when it does not exist. */
  private async verifyDir(dir: string, key: string): Promise<boolean> {
    const realRoot = await this.rootReal();
    let real: string;
    try {
      real = await this.io.realpath(dir);
    } catch (e) {
      const code = errCode(e);
      if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'ELOOP') return false;
      throw e;
    }
    if (real !== realRoot && !real.startsWith(realRoot + sep)) throw new InvalidPathError(key);
    this.remember(dir);
    return true;
  }

  private async confineSlow(path: string, key: string): Promise<void> {
    const realRoot = await this.rootReal();
    for (let p = path; p !== this.base; p = dirname(p)) {
      let real: string;
      try {
        real = await this.io.realpath(p);
      } catch (e) {
        const code = errCode(e);
        if (code === 'ELOOP') throw new InvalidPathError(key);
        if (code !== 'ENOENT' && code !== 'ENOTDIR') throw e;
        // Missing: look one level up, unless p is a dangling symlink (its target is unknown).
        if (await isSymlink(this.io, p)) throw new InvalidPathError(key);
        continue;
      }
      if (real !== realRoot && !real.startsWith(realRoot + sep)) throw new InvalidPathError(key);
      return;
    }
  }

  private async ensureDir(dir: string, key: string): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await this.io.mkdir(dir, { recursive: true });
        // what existed of it was checked by confine (pathOf comes first), the rest mkdir just made
        this.remember(dir);
        return;
      } catch (e) {
        const code = errCode(e);
        if (code === 'ENOTDIR' || code === 'EEXIST') {
          throw new StorageError(`cannot create the prefix of ${key}: an object is in the way`, key);
        }
        // a concurrent delete pruned a directory the recursive mkdir had just made (its last key went
        // away between two levels): make the path again
        if (code === 'ENOENT' && attempt < CREATE_ATTEMPTS) continue;
        throw e;
      }
    }
  }

  /** Opens (creating) a file, creating its directory; retries if a prune removes it meanwhile. */
  private async createFile(path: string, flags: number, key: string, rawCode?: string): Promise<Handle> {
    const dir = dirname(path);
    for (let attempt = 1; ; attempt++) {
      // a directory this driver made or checked is used as it is; if a prune removed it meanwhile,
      // open fails with ENOENT and the next attempt makes it again
      if (attempt > 1 || !this.safeDirs.has(dir)) await this.ensureDir(dir, key);
      try {
        return await this.io.open(path, flags, 0o644);
      } catch (e) {
        if (errCode(e) === 'ENOENT' && attempt < CREATE_ATTEMPTS) {
          this.forget(dir);
          continue;
        }
        // the caller's own case, as the system reported it (putFresh: EEXIST)
        if (rawCode !== undefined && errCode(e) === rawCode) throw e;
        throw translate(e, key, false);
      }
    }
  }
}

/** A Writable over a file handle: writes at explicit positions, batching queued chunks with writev. */
class FileSink extends Writable {
  private inflight: Promise<void> = Promise.resolve();
  /** Where this sink began writing, and where the last background flush began (file positions). */
  private readonly started: number;
  private flushedTo: number;
  /** The background flush in progress, if any (one at a time). */
  private flushing: Promise<void> | undefined;
  /**
   * A background flush's error. Linux reports a write-back error to one fsync per descriptor only,
   * so it must be kept here: the commit's own fsync could succeed after it.
   */
  private flushError: Error | undefined;

  /**
   * Direct writes (src/storage/direct-io.ts): the file's second descriptor and its two buffers, the
   * one being filled and how much it holds, the file offset the direct writes have reached, and the
   * write in flight from the other buffer. `paged`: the file system refused a direct write, so the
   * buffers' bytes go through the page cache instead.
   */
  private direct: { file: DirectFile; cur: 0 | 1; filled: number; written: number; inflight: Promise<void>; paged: boolean } | undefined;
  /** Where direct writes would begin (a 4 KiB boundary past DIRECT_AFTER), Infinity when off or once not possible. */
  private directAt: number;

  constructor(
    private readonly handle: Handle,
    public position: number,
    private readonly target?: { readonly path: string; readonly dev: number; readonly ino: number },
  ) {
    super({ highWaterMark: IO_CHUNK });
    this.started = this.flushedTo = position;
    this.directAt = target && directIoOn() ? Math.ceil(Math.max(position, DIRECT_AFTER) / DIRECT_ALIGN) * DIRECT_ALIGN : Infinity;
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.track(this.writeAll([chunk]), callback);
  }

  override _writev(chunks: Array<{ chunk: Buffer; encoding: BufferEncoding }>, callback: (error?: Error | null) => void): void {
    this.track(this.writeAll(chunks.map((c) => c.chunk)), callback);
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.track(this.finishDirect(), callback);
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    // The buffers go back to the pool, and the direct descriptor is closed, only once no write uses
    // them: first the chunk being staged (it may start one more write), then the write in flight.
    if (!this.direct) return callback(error);
    void this.inflight
      .then(async () => {
        while (this.direct) {
          const last = this.direct.inflight;
          await last.catch(() => undefined);
          if (this.direct?.inflight === last) this.releaseDirect();
        }
      })
      .then(() => callback(error));
  }

  /** Resolves once no write or background flush is using the handle (so it may be closed). */
  async settled(): Promise<void> {
    await this.inflight;
    await this.flushing;
    if (this.direct) await this.direct.inflight.catch(() => undefined);
  }

  /** Throws the error of a background flush, if one failed (the bytes may not be on the disk). */
  checkFlushed(): void {
    if (this.flushError) throw this.flushError;
  }

  /** Starts a background fdatasync once WRITEBACK_EVERY bytes were written since the last one. */
  private maybeFlush(): void {
    if (this.position - this.started < WRITEBACK_AFTER || this.position - this.flushedTo < WRITEBACK_EVERY || this.flushing || this.direct) return;
    this.flushedTo = this.position;
    this.flushing = this.handle.datasync().then(
      () => {
        this.flushing = undefined;
      },
      (e: unknown) => {
        this.flushing = undefined;
        this.flushError ??= e instanceof Error ? e : new Error(String(e));
      },
    );
  }

  private track(work: Promise<void>, callback: (error?: Error | null) => void): void {
    this.inflight = work.then(
      () => callback(),
      (e: unknown) => callback(e instanceof Error ? e : new Error(String(e))),
    );
  }

  private async writeAll(buffers: Buffer[]): Promise<void> {
    let rest = buffers.filter((b) => b.length > 0);
    while (rest.length > 0) {
      if (this.direct) return this.stage(rest);
      if (this.position >= this.directAt) {
        this.startDirect();
        continue;
      }
      // through the page cache, up to where direct writes begin
      const room = this.directAt - this.position;
      const batch = room === Infinity ? rest : takeFront(rest, room);
      const bytesWritten = await writevSome(this.handle, batch, this.position);
      this.position += bytesWritten;
      rest = dropFront(rest, bytesWritten);
      this.maybeFlush();
    }
  }

  /** Opens the file for direct writes at this.position (a 4 KiB boundary), or gives up on them for this writer. */
  private startDirect(): void {
    this.directAt = Infinity;
    // a stream destroyed meanwhile has run _destroy already: nothing would give the buffers back
    if (this.destroyed) return;
    const file = this.target ? openDirect(this.target.path, this.target) : undefined;
    if (file) this.direct = { file, cur: 0, filled: 0, written: this.position, inflight: Promise.resolve(), paged: false };
  }

  /** Copies the bytes into the buffer being filled; each full buffer is written while the other fills. */
  private async stage(buffers: Buffer[]): Promise<void> {
    const d = this.direct!;
    for (const b of buffers) {
      for (let off = 0; off < b.length;) {
        const into = d.file.buffers[d.cur];
        const n = b.copy(into, d.filled, off);
        d.filled += n;
        off += n;
        this.position += n;
        if (d.filled === into.length) {
          // the other buffer's write must be done before it is filled again
          await d.inflight;
          d.inflight = this.writeOut(into, into.length, d.written);
          d.inflight.catch(() => undefined); // awaited by the next stage, finishDirect or settled
          d.written += into.length;
          d.cur = d.cur === 0 ? 1 : 0;
          d.filled = 0;
        }
      }
    }
  }

  /**
   * Writes `length` bytes of a buffer at `position`: directly while the file system takes them, the
   * rest (a short write's remainder, or everything once it refused O_DIRECT) through the page cache.
   */
  private async writeOut(buffer: Buffer, length: number, position: number): Promise<void> {
    const d = this.direct!;
    let off = 0;
    while (!d.paged && off < length && (length - off) % DIRECT_ALIGN === 0) {
      let n: number;
      try {
        n = await writeDirect(d.file.fd, off === 0 ? buffer : buffer.subarray(off), length - off, position + off);
      } catch (e) {
        if (errCode(e) !== 'EINVAL') throw e;
        d.paged = true;
        refuseDirect(this.target!.dev);
        break;
      }
      if (n <= 0) throw new Error('write made no progress');
      off += n;
      if (n % DIRECT_ALIGN !== 0) break;
    }
    for (let at = position + off; off < length;) {
      const n = await writevSome(this.handle, [buffer.subarray(off, length)], at);
      off += n;
      at += n;
    }
  }

  /**
   * At the end of the stream: the last buffer's whole blocks directly, its last partial block (never
   * a multiple of DIRECT_ALIGN, so writeOut sends it through the page cache) after them.
   */
  private async finishDirect(): Promise<void> {
    const d = this.direct;
    if (!d) return;
    try {
      await d.inflight;
      const buffer = d.file.buffers[d.cur];
      const whole = d.filled - (d.filled % DIRECT_ALIGN);
      if (whole > 0) await this.writeOut(buffer, whole, d.written);
      if (d.filled > whole) await this.writeOut(buffer.subarray(whole), d.filled - whole, d.written + whole);
      d.written += d.filled;
      d.filled = 0;
    } finally {
      this.releaseDirect();
    }
  }

  private releaseDirect(): void {
    const d = this.direct;
    if (!d) return;
    this.direct = undefined;
    closeDirect(d.file);
  }
}

class FileWriter implements Writer {
  private readonly sink: FileSink;
  private state: 'open' | 'committing' | 'committed' | 'cancelled' = 'open';
  private closing: Promise<void> | undefined;

  constructor(
    private readonly key: string,
    private readonly path: string,
    private readonly handle: Handle,
    start: number,
    private readonly base: string,
    private readonly forget: (dir: string) => void,
    private readonly io: FsCalls,
    target?: { readonly path: string; readonly dev: number; readonly ino: number },
  ) {
    // the sink's write callback runs once writev returned: the chunk is no longer referenced
    this.sink = releasesChunks(new FileSink(handle, start, target));
    // A failed stream must not crash the process when the caller writes without pipeline():
    // commit() reports the error (stream.errored), and cancel() cleans up.
    this.sink.on('error', noteStreamError);
    this.sink.on('close', () => {
      // Destroyed before finishing (a failed pipeline): release the descriptor now. A close
      // error is not lost: commit() and cancel() await this same promise.
      if (!this.sink.writableFinished) void this.closeHandle().catch(() => undefined);
    });
  }

  get size(): number {
    return this.sink.position;
  }

  get stream(): Writable {
    return this.sink;
  }

  async commit(options: CommitOptions = {}): Promise<void> {
    if (this.state !== 'open') throw new StorageError(`writer is ${this.state}: ${this.key}`, this.key);
    this.state = 'committing';
    const durable = options.durable !== false;
    try {
      await endWriterStream(this.sink, this.key);
      await this.sink.settled();
      this.sink.checkFlushed();
      // fsync flushes every dirty page of the file, also those of earlier non-durable commits
      if (durable) await this.handle.sync();
      await this.closeHandle();
      // 'bytes': the caller moves the file next, and that move makes its new name durable
      if (durable && options.durable !== 'bytes') await this.io.syncDir(dirname(this.path));
    } catch (e) {
      this.state = 'open'; // the caller is expected to cancel()
      await this.closeHandle().catch(() => undefined); // the first error is the one to report
      throw e;
    }
    this.state = 'committed';
  }

  async cancel(): Promise<void> {
    if (this.state === 'cancelled') return;
    if (this.state !== 'open') throw new StorageError(`writer is ${this.state}: ${this.key}`, this.key);
    this.state = 'cancelled';
    if (!this.sink.destroyed) this.sink.destroy();
    await this.closeHandle();
    try {
      await this.io.unlink(this.path);
    } catch (e) {
      if (errCode(e) !== 'ENOENT') throw e;
    }
    await pruneEmptyDirs(this.io, this.base, dirname(this.path), this.forget);
  }

  private closeHandle(): Promise<void> {
    this.closing ??= this.sink.settled().then(() => this.handle.close());
    return this.closing;
  }
}

/** The stream keeps its error in `errored`; commit() rethrows it. */
function noteStreamError(): void {}

/**
 * The random part of this process's temporary names (64 bits), then a counter: unique among the
 * processes sharing the directory as random names were, without reading random bytes for every
 * small write (the importer makes ~5 per image). O_EXCL refuses a name taken all the same.
 */
const TEMP_PREFIX = randomBytes(8).toString('hex');
let tempCounter = 0;

function tempName(name: string): string {
  tempCounter = (tempCounter + 1) % 0x1_0000_0000;
  return `${name.slice(0, TEMP_BASE_MAX)}${TEMP_MARK}${TEMP_PREFIX}${tempCounter.toString(16).padStart(8, '0')}`;
}

function emptyStream(): Readable {
  return new Readable({
    read() {
      this.push(null);
    },
  });
}

/** One writev at `position`; the bytes it took (at least one: no progress is an error). */
async function writevSome(handle: Handle, buffers: Buffer[], position: number): Promise<number> {
  const { bytesWritten } = await handle.writev(buffers, position);
  if (bytesWritten <= 0) throw new Error('write made no progress');
  return bytesWritten;
}

/** The first `bytes` bytes of a list of buffers (views, no copy). */
function takeFront(buffers: Buffer[], bytes: number): Buffer[] {
  const out: Buffer[] = [];
  let left = bytes;
  for (const b of buffers) {
    if (left <= 0) break;
    out.push(b.length <= left ? b : b.subarray(0, left));
    left -= b.length;
  }
  return out;
}

function dropFront(buffers: Buffer[], bytes: number): Buffer[] {
  let skip = bytes;
  let i = 0;
  while (i < buffers.length && skip >= buffers[i]!.length) {
    skip -= buffers[i]!.length;
    i++;
  }
  const rest = buffers.slice(i);
  if (skip > 0 && rest.length > 0) rest[0] = rest[0]!.subarray(skip);
  return rest;
}

async function hasVisibleEntry(dir: string): Promise<boolean> {
  // The async iterator closes the directory when the loop ends early.
  for await (const entry of await fsp.opendir(dir)) {
    if (isValidSegment(entry.name)) return true;
  }
  return false;
}

/** The whole of `data` into a file just created, fsynced when durable; the handle is closed whatever happens. */
async function writeAndClose(handle: Handle, data: Buffer, durable: boolean): Promise<void> {
  try {
    if (data.length > 0) await handle.writeFile(data);
    if (durable) await handle.sync();
  } finally {
    await handle.close();
  }
}

async function isSymlink(io: FsCalls, path: string): Promise<boolean> {
  return (await io.lstatIfAny(path))?.isSymbolicLink() ?? false;
}

/** syncKeys: from this many distinct keys on, one syncfs instead of an fsync each. */
const SYNCFS_MIN_KEYS = 16;
/** syncKeys without syncfs: fsyncs in flight at once (the thread pool runs four). */
const SYNC_PARALLEL = 8;

/**
 * syncfs(2) of the filesystem holding a path, by `sync -f` (GNU coreutils), run by one shell kept
 * for the purpose: each request is a line on its stdin, each answer a line on its stdout. Spawning
 * `sync` from this process forks all of it (measured on a 150 MiB import: ~22 ms of the event loop
 * per spawn, 32 spawns per 1,000 images); the shell is small to fork. The shell goes with this
 * process (its stdin closes) and does not keep it alive.
 */
class SyncfsRunner {
  private child: ChildProcessWithoutNullStreams | undefined;
  private readonly waiting: ((ok: boolean) => void)[] = [];
  private chain: Promise<unknown> = Promise.resolve();
  private buffered = '';

  /** syncfs of the filesystem holding path: false when it cannot be run here. */
  run(path: string): Promise<boolean> {
    if (/[\n\r]/.test(path)) return syncFilesystemOnce(path);
    const result = this.chain.then(() => this.request(path));
    this.chain = result.catch(() => undefined);
    return result;
  }

  private start(): ChildProcessWithoutNullStreams | undefined {
    let child: ChildProcessWithoutNullStreams;
    try {
      child = spawn('sh', ['-c', 'while IFS= read -r p; do if sync -f -- "$p"; then echo 0; else echo 1; fi; done'], { stdio: 'pipe' });
    } catch {
      return undefined;
    }
    const fail = (): void => {
      if (this.child === child) this.child = undefined;
      for (const w of this.waiting.splice(0)) w(false);
    };
    child.once('error', fail);
    child.once('exit', fail);
    child.stdin.on('error', fail);
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (d: string) => {
      this.buffered += d;
      let nl: number;
      while ((nl = this.buffered.indexOf('\n')) >= 0) {
        const line = this.buffered.slice(0, nl);
        this.buffered = this.buffered.slice(nl + 1);
        this.waiting.shift()?.(line === '0');
      }
    });
    child.stderr.resume();
    this.idle(child);
    return child;
  }

  /** Not counted as work that keeps the process alive while no request waits. */
  private idle(child: ChildProcessWithoutNullStreams): void {
    child.unref();
    for (const s of [child.stdin, child.stdout, child.stderr] as unknown as { unref?: () => void }[]) s.unref?.();
  }

  private busy(child: ChildProcessWithoutNullStreams): void {
    child.ref();
    for (const s of [child.stdin, child.stdout, child.stderr] as unknown as { ref?: () => void }[]) s.ref?.();
  }

  private request(path: string): Promise<boolean> {
    const child = (this.child ??= this.start());
    if (!child) return Promise.resolve(false);
    return new Promise<boolean>((resolvePromise) => {
      this.busy(child);
      this.waiting.push((ok) => {
        this.idle(child);
        resolvePromise(ok);
      });
      child.stdin.write(`${path}\n`);
    }).then((ok) => (ok ? true : syncFilesystemOnce(path)));
  }

  close(): void {
    this.child?.stdin.end();
    this.child = undefined;
  }
}

/** syncfs(2) of the filesystem holding path, by one `sync -f`: false when that cannot be run here. */
function syncFilesystemOnce(path: string): Promise<boolean> {
  return new Promise((resolvePromise) => {
    let child;
    try {
      child = spawn('sync', ['-f', path], { stdio: 'ignore' });
    } catch {
      resolvePromise(false);
      return;
    }
    child.once('error', () => resolvePromise(false));
    child.once('exit', (code) => resolvePromise(code === 0));
  });
}

/** fsync a file or directory by path; gone meanwhile is fine (it was deleted, nothing to keep). */
async function syncFile(path: string): Promise<void> {
  let handle: fsp.FileHandle;
  try {
    handle = await fsp.open(path, constants.O_RDONLY);
  } catch (e) {
    if (isAbsent(e)) return;
    throw e;
  }
  try {
    await handle.sync();
  } catch (e) {
    if (!['EINVAL', 'ENOTSUP', 'EISDIR', 'EPERM', 'EBADF'].includes(errCode(e) ?? '')) throw e;
  } finally {
    await handle.close();
  }
}

/** Some platforms and filesystems cannot fsync a directory; the rename is then as durable as it gets. */
const DIR_SYNC_UNSUPPORTED = ['EINVAL', 'ENOTSUP', 'EISDIR', 'EPERM', 'EBADF'];

/**
 * fsync a directory so a rename or create in it survives a crash. `blockingOpen` (the blocking
 * modes): the directory is opened and closed by blocking calls, and only the fsync goes to the pool.
 */
async function syncDir(dir: string, blockingOpen = false): Promise<void> {
  const flags = constants.O_RDONLY | O_DIRECTORY;
  const fd = blockingOpen ? fs.openSync(dir, flags) : await new Promise<number>((ok, fail) => fs.open(dir, flags, (e, n) => (e ? fail(e) : ok(n))));
  try {
    await new Promise<void>((ok, fail) => fs.fsync(fd, (e) => (e ? fail(e) : ok())));
  } catch (e) {
    if (!DIR_SYNC_UNSUPPORTED.includes(errCode(e) ?? '')) throw e;
  } finally {
    if (blockingOpen) fs.closeSync(fd);
    else await new Promise<void>((ok, fail) => fs.close(fd, (e) => (e ? fail(e) : ok())));
  }
}

/** Removes dir and its parents while they are empty, stopping below base. */
async function pruneEmptyDirs(io: FsCalls, base: string, dir: string, removed?: (dir: string) => void): Promise<void> {
  for (let d = dir; d.startsWith(base + sep); d = dirname(d)) {
    try {
      await io.rmdir(d);
      removed?.(d);
    } catch (e) {
      // Not empty, already gone or in use: the prefix is still needed (or someone else pruned it).
      if (['ENOTEMPTY', 'EEXIST', 'ENOENT', 'EBUSY', 'ENOTDIR'].includes(errCode(e) ?? '')) return;
      throw e;
    }
  }
}

function errCode(e: unknown): string | undefined {
  return typeof e === 'object' && e !== null && 'code' in e && typeof e.code === 'string' ? e.code : undefined;
}

/** Maps an fs error for key to the driver's error classes. readSide: EISDIR means "no object here". */
function translate(e: unknown, key: string, readSide: boolean): unknown {
  switch (errCode(e)) {
    case 'ENOENT':
    case 'ENOTDIR':
      return new PathNotFoundError(key);
    case 'EISDIR':
      return readSide ? new PathNotFoundError(key) : new StorageError(`a prefix is in the way: ${key}`, key);
    case 'ENOTEMPTY':
    case 'EEXIST':
      return new StorageError(`a prefix is in the way: ${key}`, key);
    case 'ELOOP':
    case 'ENAMETOOLONG':
      return new InvalidPathError(key);
    default:
      return e;
  }
}
