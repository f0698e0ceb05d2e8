import { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { RegistryError } from '../errors/index.js';
import { TarParser, type TarHeader } from '../digest/tar-parser.js';
import type { LayerDigests } from '../digest/layer-hasher.js';
import type { TarSums, TarSumSet } from '../digest/tarsum.js';

/** Where a v1 image's layer is stored and what was verified of it (v1-images.ts writes it; the file listing reads it). */
export interface LayerLink {
  readonly digest: string;
  readonly size: number;
  /** sha256(json + "\n" + body), spec §6.1. */
  readonly payload: string;
  readonly compression: LayerDigests['compression'];
  /** sha256 of the uncompressed tar (v2 diff_id), when it could be computed. */
  readonly diffId?: string;
  /**
   * Links written before the Go ≥ 1.10 tarsums were computed (spec §6.2) have no `go110`; links
   * of pushes have v0 only (no v1/dev) until a PUT checksum asks for another label.
   */
  readonly tarsum?: Omit<TarSums, 'go110'> & { readonly go110?: TarSumSet };
}

/** One R9 entry: [path, type, deleted, size, mtime, mode, uid, gid] (spec §2.10). */
export type FileEntry = [string, string, boolean, number, number, number, number, number];

const TYPES: Record<string, string> = {
  '0': 'f',
  '\0': 'f',
  '1': 'l',
  '2': 's',
  '3': 'c',
  '4': 'b',
  '5': 'd',
  '6': 'i',
  '7': 't',
  L: 'L',
  K: 'K',
  S: 'S',
};

/** The Python registry's path rules for R9: `.`→`/`, `./x`→`/x`, `/.wh.x` → deleted `/x`. */
export function fileEntry(h: TarHeader): FileEntry | undefined {
  let name = h.name;
  if (name.endsWith('/') && name.length > 1) name = name.replace(/\/+$/, '');
  if (name === '.') name = '/';
  else if (name.startsWith('./')) name = `/${name.slice(2)}`;
  let deleted = false;
  if (name.startsWith('/.wh.')) {
    name = `/${name.slice(5)}`;
    deleted = true;
    if (name.startsWith('/.wh.')) return undefined; // e.g. .wh..wh..opq
  }
  return [name, TYPES[h.typeflag] ?? 'u', deleted, h.size, h.mtime, h.mode, h.uid, h.gid];
}

/**
 * Most entries R9 lists (security issue 10, finding 9). A layer with more is listed up to this many:
 * the answer is still a well-formed JSON list, of the first FILES_MAX_ENTRIES members in archive
 * order. Real layers stay far below (a full distribution userland is 10–50k files); the bound is for
 * layers built to be expensive (a small gzip of millions of empty files).
 */
export const FILES_MAX_ENTRIES = 100_000;

/** Largest listing kept beside the image as `_files` (JSON bytes); larger ones are listed from the layer each time. */
export const FILES_CACHE_MAX = 1024 * 1024;

/**
 * One entry as the Python registry wrote it (json.dumps: ", " separators, non-ASCII escaped as
 * \uXXXX; spec §1.2), the same bytes src/http/py-json.ts gives (content/ does not import http/).
 */
function renderEntry(e: FileEntry): string {
  const str = (v: string): string => JSON.stringify(v).replace(/[\u0080-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
  const num = (n: number): string => (Number.isFinite(n) ? String(n) : 'null');
  return `[${str(e[0])}, ${str(e[1])}, ${e[2] ? 'true' : 'false'}, ${num(e[3])}, ${num(e[4])}, ${num(e[5])}, ${num(e[6])}, ${num(e[7])}]`;
}

function isFileEntry(v: unknown): v is FileEntry {
  return (
    Array.isArray(v) &&
    v.length === 8 &&
    typeof v[0] === 'string' &&
    typeof v[1] === 'string' &&
    typeof v[2] === 'boolean' &&
    v.slice(3).every((n) => typeof n === 'number')
  );
}

/** JSON text is sent in pieces of about this size (and the answer starts once the first is ready). */
const PIECE = 64 * 1024;

/** Where the listing of one image comes from (V1Images provides it). */
export interface FilesSource {
  /** The kept listing (JSON text) if there is one no larger than FILES_CACHE_MAX. */
  cached(): Promise<Buffer | undefined>;
  /** The image's layer (throws the image's errors: not found, in progress). */
  layer(): Promise<LayerLink>;
  /** Read the stored layer bytes. */
  open(link: LayerLink): Promise<Readable>;
  /** Keep a complete listing of at most FILES_CACHE_MAX bytes. */
  keep(json: Buffer): Promise<void>;
}

/**
 * R9's answer (spec §2.10) as a stream of JSON text in the Python registry's format, produced while
 * the layer is read: memory stays bounded by a piece of output, whatever the number of members.
 * Resolves once the first piece is ready, so a layer that is no tar at all (or a listing that fits
 * in one piece) fails with LAYER_FORMAT before anything is sent; a layer found damaged further on
 * makes the stream fail (the answer is cut off). Complete listings up to FILES_CACHE_MAX are kept.
 */
export async function filesListing(src: FilesSource, limits: { readonly maxEntries?: number; readonly cacheMax?: number } = {}): Promise<Readable> {
  const max = { entries: limits.maxEntries ?? FILES_MAX_ENTRIES, cache: limits.cacheMax ?? FILES_CACHE_MAX };
  const cached = await src.cached();
  if (cached) {
    // kept listings are small: re-rendered, so those of older versions (compact JSON) answer alike
    let entries: unknown;
    try {
      entries = JSON.parse(cached.toString('utf8'));
    } catch {
      entries = undefined; // a damaged copy is listed again from the layer
    }
    if (Array.isArray(entries) && entries.every(isFileEntry)) return Readable.from([Buffer.from(`[${entries.map(renderEntry).join(', ')}]`)]);
  }
  const link = await src.layer();
  if (link.compression !== 'gzip' && link.compression !== 'none') throw new RegistryError('LAYER_FORMAT');
  const pieces = listingPieces(link, src, max);
  const first = await pieces.next();
  async function* all(): AsyncGenerator<Buffer> {
    if (!first.done) yield first.value;
    yield* pieces;
  }
  return Readable.from(all(), { objectMode: false });
}

async function* listingPieces(link: LayerLink, src: FilesSource, max: { readonly entries: number; readonly cache: number }): AsyncGenerator<Buffer> {
  let text = '[';
  let count = 0;
  let truncated = false;
  let kept: Buffer[] | undefined = [];
  let keptBytes = 0;
  const piece = (): Buffer => {
    const b = Buffer.from(text, 'utf8');
    text = '';
    if (kept) {
      keptBytes += b.length;
      if (keptBytes > max.cache) kept = undefined;
      else kept.push(b);
    }
    return b;
  };
  const parser = new TarParser({
    entry: (h) => {
      if (count === max.entries) {
        truncated = true;
        return;
      }
      const e = fileEntry(h);
      if (!e) return;
      text += count === 0 ? renderEntry(e) : `, ${renderEntry(e)}`;
      count++;
    },
    data: () => undefined,
    entryEnd: () => undefined,
  });
  const raw = await src.open(link);
  const gunzip = link.compression === 'gzip' ? createGunzip() : undefined;
  const input: AsyncIterable<Buffer> = gunzip ? raw.pipe(gunzip) : raw;
  try {
    try {
      for await (const chunk of input) {
        parser.write(chunk);
        if (parser.error) throw new RegistryError('LAYER_FORMAT');
        if (text.length >= PIECE) yield piece();
        if (parser.ended || truncated) break;
      }
    } catch (e) {
      if (e instanceof RegistryError) throw e;
      throw new RegistryError('LAYER_FORMAT');
    }
    if (!truncated) {
      parser.end();
      if (parser.error) throw new RegistryError('LAYER_FORMAT');
    }
  } finally {
    raw.destroy();
    gunzip?.destroy();
  }
  text += ']';
  const last = piece();
  if (kept && !truncated) await src.keep(Buffer.concat(kept, keptBytes));
  yield last;
}
