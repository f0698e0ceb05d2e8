import type { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { RegistryError } from '../errors/index.js';
import { TarParser, type TarHeader } from '../digest/tar-parser.js';
import type { LayerLink } from './v1-images.js';

/** One R9 entry: [path, type, deleted, size, mtime, mode, uid, gid] (spec §2.10). */
export type FileEntry = [string, string, boolean, number, number, number, number, number];

const TYPES: Record<string, string> = {
  '0': 'f', '\0': 'f', '1': 'l', '2': 's', '3': 'c', '4': 'b', '5': 'd', '6': 'i', '7': 't', L: 'L', K: 'K', S: 'S',
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

/** Read a stored layer (plain tar or gzip) and list its members. */
export async function listLayerFiles(link: LayerLink, open: () => Promise<Readable>): Promise<FileEntry[]> {
  if (link.compression !== 'gzip' && link.compression !== 'none') throw new RegistryError('LAYER_FORMAT');
  const entries: FileEntry[] = [];
  const parser = new TarParser({
    entry: (h) => {
      const e = fileEntry(h);
      if (e) entries.push(e);
    },
    data: () => undefined,
    entryEnd: () => undefined,
  });
  const src = await open();
  const stream: AsyncIterable<Buffer> = link.compression === 'gzip' ? src.pipe(createGunzip()) : src;
  try {
    for await (const chunk of stream) {
      parser.write(chunk);
      if (parser.error || parser.ended) break;
    }
  } catch {
    throw new RegistryError('LAYER_FORMAT');
  } finally {
    src.destroy();
  }
  parser.end();
  if (parser.error) throw new RegistryError('LAYER_FORMAT');
  return entries;
}
