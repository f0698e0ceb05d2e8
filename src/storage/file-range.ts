import type { FileHandle } from 'node:fs/promises';
import type { Readable } from 'node:stream';

/*
 * A file-backed reader's offer to be sent from its file handle instead of read as a stream
 * (src/http/send-file.ts takes it: no per-chunk allocation). Drivers mark their readers here, so
 * storage needs nothing from HTTP.
 */

/** What a driver's file-backed reader can offer instead of being read as a stream. */
export interface FileRange {
  readonly handle: FileHandle;
  readonly start: number;
  readonly length: number;
}

export const FILE_RANGE = Symbol('legacy-registry.fileRange');

/** Mark a reader as backed by `handle` from `start` for `length` bytes (the reader still owns the handle). */
export function withFileRange<T extends Readable>(stream: T, range: FileRange): T {
  (stream as unknown as Record<symbol, FileRange>)[FILE_RANGE] = range;
  return stream;
}

export function fileRangeOf(stream: Readable): FileRange | undefined {
  return (stream as unknown as Record<symbol, FileRange | undefined>)[FILE_RANGE];
}
