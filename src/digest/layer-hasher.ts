import { createHash, type Hash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import { createInlineInner, type Compression, type Inner } from './inner.js';
import type { TarSums } from './tarsum.js';

export type { Compression };

export interface LayerDigests {
  /** sha256 of the bytes as received: the blob's content address. */
  readonly digest: string;
  readonly size: number;
  /** sha256(json + "\n" + body), spec §6.1. */
  readonly payload: string;
  readonly compression: Compression;
  /** sha256 of the uncompressed tar (v2 diff_id); undefined for bzip2/xz/zstd or a broken layer. */
  readonly diffId?: string;
  /** Tarsums over the uncompressed tar; undefined when it is not a readable tar. */
  readonly tarsum?: TarSums;
  /** Why diffId/tarsum are missing, when they are. */
  readonly tarError?: string;
}

/** Makes the uncompressed-side digester (in this thread, or in a worker: see DigestWorkers). */
export type InnerFactory = (kind: Compression, extra: Buffer) => Inner;

function sniff(head: Buffer): Compression {
  if (head[0] === 0x1f && head[1] === 0x8b) return 'gzip';
  if (head[0] === 0x42 && head[1] === 0x5a && head[2] === 0x68) return 'bzip2';
  if (head.subarray(0, 6).equals(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]))) return 'xz';
  if (head.subarray(0, 4).equals(Buffer.from([0x28, 0xb5, 0x2f, 0xfd]))) return 'zstd';
  return 'none';
}

/**
 * One pass over a layer upload (spec §2.7, §6): a pass-through Transform that hashes the bytes as
 * they go by — sha256 and the payload checksum here, and (gzip or plain tar) the uncompressed
 * sha256 and tarsums in the inner digester. Problems reading the tar never fail the upload; they
 * only leave tarsum undefined. A chunk is released only once the inner digester has taken it, so
 * memory stays bounded whatever the layer size.
 */
export class LayerHasher extends Transform {
  private readonly raw: Hash = createHash('sha256');
  private readonly payloadHash: Hash;
  private size = 0;
  private compression: Compression | undefined;
  private head: Buffer[] = [];
  private headLen = 0;
  private inner: Inner | undefined;
  private digests: LayerDigests | undefined;

  /** extra: the image json bytes, for the payload checksum and as the tarsum "extra" (spec §6). */
  constructor(
    private readonly extra: Buffer,
    private readonly makeInner: InnerFactory = createInlineInner,
  ) {
    super({ highWaterMark: 1 << 20 });
    this.payloadHash = createHash('sha256').update(extra).update('\n');
  }

  sha256(): string {
    return this.result().digest;
  }

  result(): LayerDigests {
    if (!this.digests) throw new Error('LayerHasher: stream not finished');
    return this.digests;
  }

  private start(head: Buffer): Inner {
    this.compression = head.length === 0 ? 'none' : sniff(head);
    this.inner = this.makeInner(this.compression, this.extra);
    return this.inner;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.raw.update(chunk);
    this.payloadHash.update(chunk);
    this.size += chunk.length;
    if (this.inner) {
      this.inner.write(chunk, () => cb(null, chunk));
      return;
    }
    // The compression is known after 6 bytes; keep the first bytes until then.
    this.head.push(chunk);
    this.headLen += chunk.length;
    if (this.headLen < 6) {
      cb(null, chunk);
      return;
    }
    const all = this.head.length === 1 ? chunk : Buffer.concat(this.head);
    this.head = [];
    this.start(all).write(all, () => cb(null, chunk));
  }

  override _flush(cb: TransformCallback): void {
    const finish = (): void => {
      void this.inner!.end().then((r) => {
        const rawHex = this.raw.digest('hex');
        const diffId = r.tarsum ? (this.compression === 'gzip' ? r.diffId : `sha256:${rawHex}`) : undefined;
        this.digests = {
          digest: `sha256:${rawHex}`,
          size: this.size,
          payload: `sha256:${this.payloadHash.digest('hex')}`,
          compression: this.compression ?? 'none',
          ...(diffId ? { diffId } : {}),
          ...(r.tarsum ? { tarsum: r.tarsum } : {}),
          ...(r.tarError ? { tarError: r.tarError } : {}),
        };
        cb();
      }, cb);
    };
    if (!this.inner) {
      const all = Buffer.concat(this.head);
      this.head = [];
      this.start(all).write(all, finish);
      return;
    }
    finish();
  }

  override _destroy(err: Error | null, cb: (error?: Error | null) => void): void {
    this.inner?.destroy();
    cb(err);
  }
}
