/** Shared helpers of the digest unit tests (no tests here). */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { LayerHasher, type InnerFactory, type LayerDigests } from '../../../src/digest/layer-hasher.js';
import { TarParser, type TarHeader } from '../../../src/digest/tar-parser.js';
import { TarSum } from '../../../src/digest/tarsum.js';
import { VECTORS } from '../../helpers/paths.js';

export type ChunkMode = 'whole' | 'bytes' | 'random';
export const CHUNK_MODES: readonly ChunkMode[] = ['whole', 'bytes', 'random'];

/** mulberry32: a small seeded PRNG, so "random" chunkings are reproducible. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Deterministic pseudo-random bytes (fast enough for a few MiB). */
export function prandBytes(n: number, seed = 7): Buffer {
  const r = rng(seed);
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i += 4) {
    const v = (r() * 4294967296) >>> 0;
    b[i] = v & 0xff;
    if (i + 1 < n) b[i + 1] = (v >>> 8) & 0xff;
    if (i + 2 < n) b[i + 2] = (v >>> 16) & 0xff;
    if (i + 3 < n) b[i + 3] = v >>> 24;
  }
  return b;
}

/** Deterministic text-like bytes (words and newlines), compressing about 3.7:1 with gzip. */
export function textBytes(n: number, seed = 7): Buffer {
  const words =
    'the of and to in is was for on that with as by at from this be are or it an which were have has not but had his they also their its one first new after been who two other more'.split(
      ' ',
    );
  const r = rng(seed);
  const out = Buffer.allocUnsafe(n);
  let off = 0;
  while (off < n) {
    const w = words[Math.floor(r() * words.length)]!;
    off += out.write(w, off, 'latin1');
    if (off < n) out[off++] = r() < 0.08 ? 0x0a : 0x20;
  }
  return out;
}

/** Split a buffer: whole, 1-byte pieces, or seeded random sizes (mostly small, some large). */
export function split(buf: Buffer, mode: ChunkMode, seed = 1): Buffer[] {
  if (mode === 'whole') return [buf];
  const r = rng(seed);
  const out: Buffer[] = [];
  let off = 0;
  while (off < buf.length) {
    const n = mode === 'bytes' ? 1 : r() < 0.9 ? 1 + Math.floor(r() * 700) : 1 + Math.floor(r() * 70000);
    out.push(buf.subarray(off, off + n));
    off += n;
  }
  return out;
}

export const sha256 = (...parts: Buffer[]): string => {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest('hex');
};

export interface LayerVector {
  file_sha256: string;
  size: number;
  checksum_payload: string;
  tarsum_v0_with_json?: string;
  tarsum_v0_with_json_docker_go?: string;
  tarsum_v0_with_json_python_registry_plain_sort?: string;
  tarsum_v1_with_json: string;
  tarsum_dev_with_json: string;
  tarsum_v0_no_json?: string;
  tarsum_v1_no_json?: string;
  tarsum_dev_no_json?: string;
  per_file_sums_v0?: Record<string, string>;
  per_file_sums_v1?: Record<string, string>;
  per_file_sum_v1_etc_hello_txt?: string;
  per_file_sums_v0_archive_order?: string[];
  files_endpoint_body?: string;
  /** Spec §6.2 "Go ≥ 1.10 builds": the same tarsums with uname and gname hashed empty. */
  go110_tarsum_v0_with_json: string;
  go110_tarsum_v1_with_json: string;
  go110_tarsum_dev_with_json: string;
  go110_tarsum_v0_no_json: string;
  go110_tarsum_v1_no_json: string;
  go110_tarsum_dev_no_json: string;
}

export interface Expected {
  image_id: string;
  json_file: string;
  json_sha256_of_file: string;
  layers: Record<string, LayerVector>;
  empty_layer_checksum_payload: string;
}

export const expected = JSON.parse(readFileSync(join(VECTORS, 'expected.json'), 'utf8')) as Expected;
export const vectorFile = (name: string): Buffer => readFileSync(join(VECTORS, name));
export const json = vectorFile(expected.json_file);

/** Run chunks through a LayerHasher into a collecting sink. */
export async function hashLayer(
  parts: readonly Buffer[],
  extra: Buffer = json,
  inner?: InnerFactory,
  opts: { tarsums?: boolean } = {},
): Promise<{ d: LayerDigests; out: Buffer }> {
  const h = new LayerHasher(extra, inner, opts);
  const got: Buffer[] = [];
  await pipeline(
    Readable.from(parts),
    h,
    new Writable({
      write(c: Buffer, _e, cb) {
        got.push(c);
        cb();
      },
    }),
  );
  return { d: h.result(), out: Buffer.concat(got) };
}

export function tarsumOf(parts: readonly Buffer[], extra: Buffer = json): TarSum {
  const t = new TarSum(extra);
  for (const c of parts) t.write(c);
  t.end();
  return t;
}

export interface Parsed {
  headers: TarHeader[];
  contents: Buffer[];
  /** Largest single data() piece seen. */
  maxPiece: number;
  error?: string;
  ended: boolean;
}

/** Parse with a TarParser, collecting headers and (copied) contents. */
export function parse(parts: readonly Buffer[]): Parsed {
  const headers: TarHeader[] = [];
  const contents: Buffer[] = [];
  let cur: Buffer[] = [];
  let maxPiece = 0;
  const p = new TarParser({
    entry: (h) => {
      headers.push(h);
      cur = [];
    },
    data: (c) => {
      maxPiece = Math.max(maxPiece, c.length);
      cur.push(Buffer.from(c));
    },
    entryEnd: () => contents.push(Buffer.concat(cur)),
  });
  for (const c of parts) p.write(c);
  p.end();
  return { headers, contents, maxPiece, ended: p.ended, ...(p.error !== undefined ? { error: p.error } : {}) };
}
