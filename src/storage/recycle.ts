import type { Readable, Writable } from 'node:stream';

/*
 * A reader's offer to hand out its pieces from a pool of reused buffers, when its consumer gives
 * every piece back once it is done with it (src/http/respond.ts: after the socket has taken the
 * bytes). Without the consumer's word the reader allocates a fresh buffer per piece, as any stream
 * does: a consumer may keep what it was given. Drivers mark their readers here, so storage needs
 * nothing from HTTP (as file-range.ts).
 */

export interface PieceRecycler {
  /** From now on pieces may come from the pool: the caller gives each one back with give(), or lets it go. */
  enable(): void;
  /** A piece the consumer is done with (never used again by it). */
  give(piece: Buffer): void;
}

export const RECYCLE = Symbol('legacy-registry.recycle');

export function withRecycler<T extends Readable>(stream: T, r: PieceRecycler): T {
  (stream as unknown as Record<symbol, PieceRecycler>)[RECYCLE] = r;
  return stream;
}

export function recyclerOf(stream: Readable): PieceRecycler | undefined {
  return (stream as unknown as Record<symbol, PieceRecycler | undefined>)[RECYCLE];
}

const RELEASES = Symbol('legacy-registry.releases-chunks');

/**
 * Marks a writable that keeps no reference to a chunk once that write's callback has run (the
 * filesystem driver's file sink: the bytes are in the kernel by then). A producer writing pooled
 * pieces may take them back at that moment; other writables (the object-store writers gather
 * chunks into parts after the callback) must be given pieces they may keep.
 */
export function releasesChunks<T extends Writable>(stream: T): T {
  (stream as unknown as Record<symbol, boolean>)[RELEASES] = true;
  return stream;
}

export function doesReleaseChunks(stream: Writable): boolean {
  return (stream as unknown as Record<symbol, boolean | undefined>)[RELEASES] === true;
}
