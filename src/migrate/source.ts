import { closeSync, constants, createReadStream, fstatSync, openSync, readdirSync, readSync, realpathSync, statSync } from 'node:fs';
import { join, resolve, sep } from 'node:path';
import type { Readable } from 'node:stream';
import { isAbsent } from '../util/fs-errors.js';

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
   * The object's file on the local disk, for a reader in another thread (a directory tree); absent
   * for a tree that is not on the local disk.
   */
  localPath?(path: string): string;
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
 * Opened for reading (after `path` resolved every link): a FIFO does not block the open, and a link
 * put in the last component's place since fails (ELOOP) instead of being followed.
 */
const READ_FLAGS = constants.O_RDONLY | (constants.O_NONBLOCK ?? 0) | (constants.O_NOFOLLOW ?? 0);

export class DirectoryTree implements SourceTree {
  readonly root: string;
  /** The root with its own links resolved: what every object's real path must be under. */
  private readonly realRoot: string;
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
   * The real path of `p` (every link resolved), which must lie inside the tree: names come from
   * listings of the tree itself, but neither '..' nor a symbolic link may lead outside it (a tree
   * from elsewhere with `layer -> /etc/shadow` would otherwise import a host file as a layer). An
   * absent path is returned as it is, for the caller's own call to find absent. Each operation then
   * works on the resolved path, so a link swapped in afterwards is not followed either (the layer
   * worker opens it with O_NOFOLLOW).
   */
  private path(p: string): string {
    const full = resolve(this.root, ...p.split('/').filter((s) => s !== ''));
    if (full !== this.root && !full.startsWith(this.root + sep)) throw new SourceRefusedError(`${p}: a path outside the tree`);
    let real: string;
    try {
      real = realpathSync.native(full);
    } catch (e) {
      if (isAbsent(e)) return full;
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
    return real;
  }

  // The small objects and listings are read with synchronous calls: the tree is read by the import
  // CLI only (never by the server), each call is a few microseconds on a local disk, and as promise
  // calls each was a hand-off to the thread pool and back (an import of 1,000 images made ~15,000 of
  // them; a CPU profile showed the main thread waiting on those hand-offs).

  async list(dir: string): Promise<string[]> {
    try {
      return readdirSync(this.path(dir)).sort();
    } catch (e) {
      if (isAbsent(e)) return [];
      throw e;
    }
  }

  async read(p: string, maxBytes = SMALL_OBJECT_MAX): Promise<Buffer | undefined> {
    let fd: number;
    try {
      fd = openSync(this.path(p), READ_FLAGS);
    } catch (e) {
      // ELOOP: a dangling link (nothing to read), or one put in place since `path` looked: never followed
      if (isAbsent(e) || (e as NodeJS.ErrnoException).code === 'ELOOP') return undefined;
      throw e;
    }
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
    try {
      const s = statSync(this.path(p));
      return s.isFile() ? s.size : undefined;
    } catch (e) {
      if (isAbsent(e)) return undefined;
      throw e;
    }
  }

  open(p: string): Readable {
    // fs.open takes numeric flags as they are (the typings say string only)
    return createReadStream(this.path(p), { highWaterMark: 1 << 20, flags: READ_FLAGS as unknown as string });
  }

  localPath(p: string): string {
    return this.path(p);
  }
}

export function joinPath(...parts: string[]): string {
  return join(...parts)
    .split(sep)
    .join('/');
}
