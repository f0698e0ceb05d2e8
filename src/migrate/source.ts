import { closeSync, constants, createReadStream, fstatSync, readdirSync, readSync, realpathSync } from 'node:fs';
import { join, resolve, sep } from 'node:path';
import { Readable } from 'node:stream';
import { isAbsent } from '../util/fs-errors.js';
import { openBeneathSync, openRoot, pathOfFd, type BeneathRoot } from '../util/open-beneath.js';

/**
 * A storage tree being imported, read-only: a directory on disk (an S3 bucket/prefix plugs in
 * behind the same interface). Paths are '/'-separated, relative to the tree's root, and may hold
 * any character the source registry wrote (the Python registry's quote_plus escapes, distribution's
 * tag names), so they are never handed to our own storage driver's key rules.
 */
export interface SourceTree {
  readonly describe: string;
  /** Names directly below `dir` ([] when it does not exist). */
  list(dir: string): Promise<string[]>;
  /** Whole small object, or undefined when absent. */
  read(path: string, maxBytes?: number): Promise<Buffer | undefined>;
  /** Size in bytes, or undefined when absent (or a directory). */
  size(path: string): Promise<number | undefined>;
  open(path: string): Readable;
  /**
   * The object's real path on the local disk (a directory tree), to tell directories apart; absent
   * for a tree that is not on the local disk. Never opened by it: see localFile.
   */
  localPath?(path: string): string;
  /**
   * The object as a reader in another thread opens it safely (openBeneathSync relative to the
   * tree's root): absent for a tree that is not on the local disk.
   */
  localFile?(path: string): LocalFile;
}

/** A read past this is not a small object (a tag link, a json, an ancestry): refused. */
export const SMALL_OBJECT_MAX = 8 * 1024 * 1024;

export class TooLargeError extends Error {}

/**
 * An object of the tree that is not imported for what it is: a symbolic link (or a link on its way)
 * that leads outside the tree. The import reports the object's image, blob or repository as
 * skipped with this message; it never reads what the link points to.
 */
export class SourceRefusedError extends Error {}

/**
 * Why an object of the tree is skipped rather than imported (a link leading out of the tree, an
 * object past its size cap), or undefined for any other error (which stops the import).
 */
export function skipReason(e: unknown): string | undefined {
  return e instanceof SourceRefusedError || e instanceof TooLargeError ? e.message : undefined;
}

export const SKIPPED: unique symbol = Symbol('skipped');

/**
 * What `work` gives, or SKIPPED once `skip` has been told why when the tree refused the object (see
 * skipReason); any other error is thrown.
 */
export async function orSkip<T>(work: Promise<T>, skip: (why: string) => void): Promise<T | typeof SKIPPED> {
  try {
    return await work;
  } catch (e) {
    const why = skipReason(e);
    if (why === undefined) throw e;
    skip(why);
    return SKIPPED;
  }
}

/**
 * Opened for reading: a FIFO does not block the open. No link is followed either (openBeneathSync:
 * the path was checked, every link resolved, before; a link on it now was put there since).
 */
const READ_FLAGS = constants.O_RDONLY | (constants.O_NONBLOCK ?? 0) | (constants.O_NOFOLLOW ?? 0);
const DIR_FLAGS = READ_FLAGS | (constants.O_DIRECTORY ?? 0);

/** An object of a tree on the local disk, for a reader in another thread: see SourceTree.localFile. */
export interface LocalFile {
  /** The tree's root (its real path, and a descriptor of it) */
  readonly root: BeneathRoot;
  /** The object's real path below the root ('/'-separated, no link on it when it was checked) */
  readonly path: string;
}

/** A path of the tree checked: its real path below the root, and whether anything was there. */
interface Checked {
  readonly rel: string;
  readonly found: boolean;
}

export class DirectoryTree implements SourceTree {
  readonly root: string;
  /** The root with its own links resolved: what every object's real path must be under. */
  private readonly realRoot: string;
  /** The root held open (when the tree is first read) for every open below it; never closed (one tree per import). */
  private beneath: BeneathRoot | undefined;
  constructor(root: string) {
    this.root = resolve(root);
    try {
      this.realRoot = realpathSync.native(this.root);
    } catch {
      this.realRoot = this.root;
    }
  }

  get describe(): string {
    return this.root;
  }

  /**
   * The real path of `p` (every link resolved) below the root, which it must lie inside: names come
   * from listings of the tree itself, but neither '..' nor a symbolic link may lead outside it (a
   * tree from elsewhere with `layer -> /etc/shadow` would otherwise import a host file as a layer).
   * An absent path is returned as it is below the root (found: false), for the caller's own open to
   * find absent.
   *
   * The check alone is not enough: a directory on the path swapped for a link to outside the tree
   * after it (someone with write access to the tree, racing the import) would be followed by an open
   * of the path. So every open is made by `openFd` relative to the root held open, with the real path
   * and no link followed at all (src/util/open-beneath.ts): such a swap fails the open, and the
   * object is skipped.
   */
  private path(p: string): Checked {
    const full = resolve(this.root, ...p.split('/').filter((s) => s !== ''));
    if (full !== this.root && !full.startsWith(this.root + sep)) throw new SourceRefusedError(`${p}: a path outside the tree`);
    let real: string;
    try {
      real = realpathSync.native(full);
    } catch (e) {
      if (isAbsent(e)) return { rel: relativeTo(this.root, full), found: false };
      // links that lead to each other (`layer -> layer`), or directories nested past PATH_MAX (a
      // tarball can hold either): the object is skipped with why, not the end of the import
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ELOOP') throw new SourceRefusedError(`${p}: symbolic links that lead to each other, never to an object`);
      if (code === 'ENAMETOOLONG') throw new SourceRefusedError(`${p}: a path longer than this system can open`);
      throw e;
    }
    if (real !== this.realRoot && !real.startsWith(this.realRoot + sep)) {
      throw new SourceRefusedError(`${p}: a symbolic link to ${real}, outside the tree`);
    }
    return {
      rel: relativeTo(this.realRoot, real),
      found: true,
    };
  }

  private rootHandle(): BeneathRoot {
    return (this.beneath ??= openRoot(this.realRoot));
  }

  /**
   * `p` opened with `flags` below the root, no link followed; undefined when nothing is there (or a
   * link stands where nothing was when `path` looked: a dangling one, never followed). A link put on
   * the path of an object that was there is refused (SourceRefusedError): the tree changed under
   * the import, and whatever the link leads to is not read.
   */
  private openFd(p: string, flags: number): number | undefined {
    const c = this.path(p);
    try {
      return openBeneathSync(this.rootHandle(), c.rel, flags);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (isAbsent(e) || (code === 'ELOOP' && !c.found)) return undefined;
      if (code === 'ELOOP' || code === 'EXDEV') {
        throw new SourceRefusedError(`${p}: a symbolic link on its path since it was checked (the tree changed during the import): not followed`);
      }
      if (code === 'ENAMETOOLONG') throw new SourceRefusedError(`${p}: a path longer than this system can open`);
      throw e;
    }
  }

  // The small objects and listings are read with synchronous calls: the tree is read by the import
  // CLI only (never by the server), each call is a few microseconds on a local disk, and as promise
  // calls each was a hand-off to the thread pool and back (an import of 1,000 images made ~15,000 of
  // them; a CPU profile showed the main thread waiting on those hand-offs).

  async list(dir: string): Promise<string[]> {
    const fd = this.openFd(dir, DIR_FLAGS);
    if (fd === undefined) return [];
    try {
      // the directory opened, itself (/proc/self/fd/N); off Linux, its path as checked
      return readdirSync(pathOfFd(fd) ?? join(this.realRoot, ...this.path(dir).rel.split('/'))).sort();
    } catch (e) {
      if (isAbsent(e)) return [];
      throw e;
    } finally {
      closeSync(fd);
    }
  }

  async read(p: string, maxBytes = SMALL_OBJECT_MAX): Promise<Buffer | undefined> {
    const fd = this.openFd(p, READ_FLAGS);
    if (fd === undefined) return undefined;
    try {
      const st = fstatSync(fd);
      if (!st.isFile()) return undefined;
      if (st.size > maxBytes) throw new TooLargeError(`${p}: ${st.size} bytes, more than the ${maxBytes} a metadata object may have`);
      // read what is there, growing up to one byte past the cap: a file that grew since the fstat is
      // read whole or refused, never read past the cap
      let buf = Buffer.allocUnsafe(Math.min(maxBytes, st.size) + 1);
      let n = 0;
      for (;;) {
        if (n === buf.length) {
          if (buf.length > maxBytes) break;
          const bigger = Buffer.allocUnsafe(Math.min(maxBytes + 1, buf.length * 2));
          buf.copy(bigger, 0, 0, n);
          buf = bigger;
        }
        const got = readSync(fd, buf, n, buf.length - n, null);
        if (got === 0) break;
        n += got;
      }
      if (n > maxBytes) throw new TooLargeError(`${p}: more than the ${maxBytes} bytes a metadata object may have`);
      return buf.subarray(0, n);
    } finally {
      closeSync(fd);
    }
  }

  async size(p: string): Promise<number | undefined> {
    const fd = this.openFd(p, READ_FLAGS);
    if (fd === undefined) return undefined;
    try {
      const s = fstatSync(fd);
      return s.isFile() ? s.size : undefined;
    } finally {
      closeSync(fd);
    }
  }

  open(p: string): Readable {
    const fd = this.openFd(p, READ_FLAGS);
    if (fd !== undefined) return createReadStream('', { fd, highWaterMark: 1 << 20 });
    // as a read stream of a path that is not there: the error comes from the stream
    const absent = new Readable({ read() {} });
    absent.destroy(Object.assign(new Error(`ENOENT: ${p}: no such file in the tree`), { code: 'ENOENT' }));
    return absent;
  }

  localPath(p: string): string {
    const { rel } = this.path(p);
    return rel === '' ? this.realRoot : join(this.realRoot, ...rel.split('/'));
  }

  localFile(p: string): LocalFile {
    return { root: this.rootHandle(), path: this.path(p).rel };
  }
}

export function joinPath(...parts: string[]): string {
  return join(...parts)
    .split(sep)
    .join('/');
}

/** `path` below `root` (which it is, or is inside) as a relative key with '/' separators ('' for the root itself). */
function relativeTo(root: string, path: string): string {
  return path === root
    ? ''
    : path
        .slice(root.length + 1)
        .split(sep)
        .join('/');
}
