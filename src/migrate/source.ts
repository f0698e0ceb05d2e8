import { closeSync, createReadStream, fstatSync, openSync, readdirSync, readSync, statSync } from 'node:fs';
import { join, resolve, sep } from 'node:path';
import type { Readable } from 'node:stream';

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

export class DirectoryTree implements SourceTree {
  readonly root: string;
  constructor(root: string) {
    this.root = resolve(root);
  }

  get describe(): string {
    return this.root;
  }

  private path(p: string): string {
    const full = resolve(this.root, ...p.split('/').filter((s) => s !== ''));
    // names come from listings of the tree itself, but a symlink or '..' must not lead outside it
    if (full !== this.root && !full.startsWith(this.root + sep)) throw new Error(`path outside the tree: ${p}`);
    return full;
  }

  // The small objects and listings are read with synchronous calls: the tree is read by the import
  // CLI only (never by the server), each call is a few microseconds on a local disk, and as promise
  // calls each was a hand-off to the thread pool and back (an import of 1,000 images made ~15,000 of
  // them; a CPU profile showed the main thread waiting on those hand-offs).

  async list(dir: string): Promise<string[]> {
    try {
      return readdirSync(this.path(dir)).sort();
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT' || (e as NodeJS.ErrnoException).code === 'ENOTDIR') return [];
      throw e;
    }
  }

  async read(p: string, maxBytes = SMALL_OBJECT_MAX): Promise<Buffer | undefined> {
    let fd: number;
    try {
      fd = openSync(this.path(p), 'r');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT' || (e as NodeJS.ErrnoException).code === 'ENOTDIR') return undefined;
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
      if ((e as NodeJS.ErrnoException).code === 'ENOENT' || (e as NodeJS.ErrnoException).code === 'ENOTDIR') return undefined;
      throw e;
    }
  }

  open(p: string): Readable {
    return createReadStream(this.path(p), { highWaterMark: 1 << 20 });
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
