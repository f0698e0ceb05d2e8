import { Transform, type TransformCallback } from 'node:stream';
import { createInlineInner, type Compression, type Inner, type InnerOptions, type InnerResult } from './inner.js';
import { createSha256, updateBoth, type Sha256 } from './sha256.js';
import type { TarSums } from './tarsum.js';

export type { Compression };

export interface LayerDigests {
  /** `sha256:<hex>` of the bytes as received: the blob's content address. */
  readonly digest: string;
  readonly size: number;
  /** `sha256:<hex>` of json + "\n" + body, spec §6.1 (X-Docker-Checksum-Payload). */
  readonly payload: string;
  /** From the first bytes: gzip 1f 8b, bzip2 'BZh', xz fd 37 7a 58 5a 00, zstd 28 b5 2f fd, else none. */
  readonly compression: Compression;
  /**
   * `sha256:<hex>` of the uncompressed tar (the v2 diff_id). Undefined for bzip2/xz/zstd (not
   * decompressed here) and whenever the data is not a readable tar (then tarError says why).
   */
  readonly diffId?: string;
  /**
   * Tarsums over the uncompressed tar, when asked for (the default); undefined whenever diffId is.
   */
  readonly tarsum?: TarSums;
  /** Why diffId/tarsum are missing, when they are. */
  readonly tarError?: string;
}

/** Makes the uncompressed-side digester (in this thread, or in a worker: see DigestWorkers). */
export type InnerFactory = (kind: Compression, extra: Buffer, opts?: InnerOptions) => Inner;

const XZ = Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]);
const ZSTD = Buffer.from([0x28, 0xb5, 0x2f, 0xfd]);
/** Bytes needed to tell the formats apart. */
const SNIFF = 6;

/** The compression of a layer from its first bytes (fewer than 6 only when the layer is shorter). */
export function sniffCompression(head: Buffer): Compression {
  if (head[0] === 0x1f && head[1] === 0x8b) return 'gzip';
  if (head[0] === 0x42 && head[1] === 0x5a && head[2] === 0x68) return 'bzip2';
  if (head.length >= 6 && head.subarray(0, 6).equals(XZ)) return 'xz';
  if (head.length >= 4 && head.subarray(0, 4).equals(ZSTD)) return 'zstd';
  return 'none';
}

/**
 * One pass over a layer upload (spec §2.7, §6): a pass-through Transform — it forwards every chunk
 * unchanged, so it sits in `pipeline(request, hasher, storageWriter)` — that computes
 * - the sha256 of the raw bytes (content address), the size and the payload checksum, here;
 * - for gzip or plain tar: the uncompressed sha256 (diff_id) and tarsums, in the inner digester
 *   (this thread by default; a worker thread with DigestWorkers).
 * bzip2/xz/zstd layers are only named: their diffId/tarsum stay undefined (no decompressor here).
 * A layer that is not a tar, or a broken gzip stream, never fails the stream: only tarError is set.
 * A chunk is passed on (and the next one accepted) only once the inner digester has taken it, so
 * memory stays bounded whatever the layer size. Read result() after the stream has finished.
 */
export class LayerHasher extends Transform {
  private readonly raw: Sha256 = createSha256();
  private readonly payloadHash: Sha256;
  private size = 0;
  private compression: Compression = 'none';
  private head: Buffer[] = [];
  private headLen = 0;
  private inner: Inner | undefined;
  private digests: LayerDigests | undefined;

  /**
   * extra: the image json bytes (may be empty), for the payload checksum and as tarsum "extra".
   * innerOpts: what the uncompressed side computes (`{ tarsums: false }`: no tarsums, the tar is
   * only checked, the importer when nothing will compare them; `{ tarsumV1: false }`: v0 tarsums only).
   */
  constructor(
    private readonly extra: Buffer,
    private readonly makeInner: InnerFactory = createInlineInner,
    private readonly innerOpts: InnerOptions = {},
  ) {
    super({ highWaterMark: 1 << 20 });
    this.payloadHash = createSha256().update(extra).update('\n', 'latin1');
  }

  /** The content address (`sha256:<hex>`); throws until the stream has finished. */
  sha256(): string {
    return this.result().digest;
  }

  /** The digests; throws until the stream has finished. */
  result(): LayerDigests {
    if (!this.digests) throw new Error('LayerHasher: stream not finished');
    return this.digests;
  }

  private start(head: Buffer): Inner {
    this.compression = sniffCompression(head);
    this.inner = this.makeInner(this.compression, this.extra, this.innerOpts);
    return this.inner;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    // Hash before handing the chunk on: cb may run synchronously and take the next chunk at once.
    updateBoth(this.raw, this.payloadHash, chunk);
    this.size += chunk.length;
    if (this.inner) {
      this.inner.write(chunk, () => cb(null, chunk));
    } else {
      this.head.push(chunk);
      this.headLen += chunk.length;
      if (this.headLen < SNIFF) {
        cb(null, chunk);
      } else {
        const all = this.head.length === 1 ? chunk : Buffer.concat(this.head, this.headLen);
        this.head = [];
        this.start(all).write(all, () => cb(null, chunk));
      }
    }
  }

  override _flush(cb: TransformCallback): void {
    if (!this.inner) {
      const all = Buffer.concat(this.head, this.headLen);
      this.head = [];
      this.start(all).write(all, () => this.finishWith(cb));
      return;
    }
    this.finishWith(cb);
  }

  private finishWith(cb: TransformCallback): void {
    this.inner!.end().then(
      (r) => {
        this.digests = this.digestsFrom(r);
        cb();
      },
      (e: unknown) => {
        // Inner digesters resolve with tarError rather than reject; be safe all the same.
        this.digests = this.digestsFrom({ tarError: e instanceof Error ? e.message : String(e) });
        cb();
      },
    );
  }

  private digestsFrom(r: InnerResult): LayerDigests {
    return layerDigests(this.raw.digest('hex'), this.payloadHash.digest('hex'), this.size, this.compression, r);
  }

  override _destroy(err: Error | null, cb: (error?: Error | null) => void): void {
    this.inner?.destroy();
    cb(err);
  }
}

/**
 * The digests of a layer from its parts: the raw and payload sha256 (hex), its size and compression,
 * and what the uncompressed side found (LayerHasher here, a layer-file worker for the importer).
 */
export function layerDigests(rawHex: string, payloadHex: string, size: number, compression: Compression, r: InnerResult): LayerDigests {
  const digest = `sha256:${rawHex}`;
  // a readable tar: the diff_id (and the tarsums, when computed); an inner that predates the
  // `tar` flag says so through its tarsums
  const tar = r.tar === true || r.tarsum !== undefined;
  const diffId = tar ? (compression === 'none' ? digest : r.diffId) : undefined;
  return {
    digest,
    size,
    payload: `sha256:${payloadHex}`,
    compression,
    ...(diffId ? { diffId } : {}),
    ...(diffId && r.tarsum ? { tarsum: r.tarsum } : {}),
    ...(r.tarError ? { tarError: r.tarError } : {}),
  };
}
