import { createReadStream } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
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

  async list(dir: string): Promise<string[]> {
    try {
      return (await readdir(this.path(dir))).sort();
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT' || (e as NodeJS.ErrnoException).code === 'ENOTDIR') return [];
      throw e;
    }
  }

  async read(p: string, maxBytes = SMALL_OBJECT_MAX): Promise<Buffer | undefined> {
    const size = await this.size(p);
    if (size === undefined) return undefined;
    if (size > maxBytes) throw new TooLargeError(`${p}: ${size} bytes, more than the ${maxBytes} a metadata object may have`);
    try {
      return await readFile(this.path(p));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw e;
    }
  }

  async size(p: string): Promise<number | undefined> {
    try {
      const s = await stat(this.path(p));
      return s.isFile() ? s.size : undefined;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT' || (e as NodeJS.ErrnoException).code === 'ENOTDIR') return undefined;
      throw e;
    }
  }

  open(p: string): Readable {
    return createReadStream(this.path(p), { highWaterMark: 1 << 20 });
  }
}

export function joinPath(...parts: string[]): string {
  return join(...parts)
    .split(sep)
    .join('/');
}
