import { createHash, type Hash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import { createGunzip, type Gunzip } from 'node:zlib';
import { TarSum, type TarSums } from './tarsum.js';

export type Compression = 'gzip' | 'none' | 'bzip2' | 'xz' | 'zstd';

export interface LayerDigests {
  /** sha256 of the bytes as received: the blob's content address. */
  readonly digest: string;
  readonly size: number;
  /** sha256(json + "\n" + body), spec §6.1. */
  readonly payload: string;
  readonly compression: Compression;
  /** sha256 of the uncompressed tar (v2 diff_id); undefined for bzip2/xz/zstd or a broken gzip. */
  readonly diffId?: string;
  /** Tarsums over the uncompressed tar; undefined when it is not a readable tar. */
  readonly tarsum?: TarSums;
  /** Why diffId/tarsum are missing, when they are. */
  readonly tarError?: string;
}

function sniff(head: Buffer): Compression {
  if (head[0] === 0x1f && head[1] === 0x8b) return 'gzip';
  if (head[0] === 0x42 && head[1] === 0x5a && head[2] === 0x68) return 'bzip2';
  if (head.subarray(0, 6).equals(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]))) return 'xz';
  if (head.subarray(0, 4).equals(Buffer.from([0x28, 0xb5, 0x2f, 0xfd]))) return 'zstd';
  return 'none';
}

/**
 * One pass over a layer upload (spec §2.7, §6): a pass-through Transform that hashes the bytes as
 * they go by — sha256, the payload checksum, and (gzip or plain tar) the uncompressed sha256 and
 * tarsums. Problems reading the tar never fail the upload; they only leave tarsum undefined.
 * Backpressure: a chunk is released only after gunzip has taken it, so zlib holds a bounded amount.
 */
export class LayerHasher extends Transform {
  private readonly raw: Hash = createHash('sha256');
  private readonly payloadHash: Hash;
  private size = 0;
  private compression: Compression | undefined;
  private head: Buffer[] = [];
  private headLen = 0;
  private gunzip: Gunzip | undefined;
  private gunzipDone: Promise<void> | undefined;
  private uncompressed: Hash | undefined;
  private tarsum: TarSum | undefined;
  private tarError: string | undefined;
  private digests: LayerDigests | undefined;

  /** json: the image json bytes, for the payload checksum and as the tarsum "extra" (spec §6). */
  constructor(private readonly extra: Buffer) {
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

  private pending: (() => void) | undefined;

  private startInner(kind: Compression): void {
    this.compression = kind;
    if (kind === 'gzip') {
      this.uncompressed = createHash('sha256');
      this.tarsum = new TarSum(this.extra);
      const gz = createGunzip({ chunkSize: 256 * 1024 });
      this.gunzip = gz;
      gz.on('data', (c: Buffer) => {
        this.uncompressed!.update(c);
        this.tarsum!.write(c);
      });
      this.gunzipDone = new Promise<void>((resolve) => {
        gz.once('end', resolve);
        gz.on('error', (e: Error) => {
          this.tarError ??= `gunzip: ${e.message}`;
          resolve();
          // a chunk waiting for 'drain' must not wait forever: the raw hashes go on without gunzip
          const p = this.pending;
          this.pending = undefined;
          p?.();
        });
      });
    } else if (kind === 'none') {
      this.tarsum = new TarSum(this.extra);
    } else {
      this.tarError = `${kind} layers are stored as they are; tarsum and diff_id need gzip or a plain tar`;
    }
  }

  private feedInner(chunk: Buffer, cb: TransformCallback, out: Buffer): void {
    if (this.gunzip && !this.tarError) {
      const ok = this.gunzip.write(chunk);
      if (!ok && !this.tarError) {
        this.pending = () => cb(null, out);
        this.gunzip.once('drain', () => {
          const p = this.pending;
          this.pending = undefined;
          p?.();
        });
        return;
      }
    } else if (this.compression === 'none') {
      this.tarsum!.write(chunk);
    }
    cb(null, out);
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.raw.update(chunk);
    this.payloadHash.update(chunk);
    this.size += chunk.length;
    if (this.compression === undefined) {
      this.head.push(chunk);
      this.headLen += chunk.length;
      if (this.headLen < 6) {
        cb(null, chunk);
        return;
      }
      const all = Buffer.concat(this.head);
      this.head = [];
      this.startInner(sniff(all));
      this.feedInner(all, cb, chunk);
      return;
    }
    this.feedInner(chunk, cb, chunk);
  }

  override _flush(cb: TransformCallback): void {
    if (this.compression === undefined) {
      const all = Buffer.concat(this.head);
      this.head = [];
      this.startInner(all.length === 0 ? 'none' : sniff(all));
      if (this.compression === 'none') this.tarsum!.write(all);
      else if (this.gunzip && all.length > 0 && !this.tarError) this.gunzip.write(all);
    }
    const finish = (): void => {
      let tarsum: TarSums | undefined;
      let diffId: string | undefined;
      if (this.tarsum && !this.tarError) {
        this.tarsum.end();
        tarsum = this.tarsum.result();
        if (!tarsum) this.tarError = `not a tar archive: ${this.tarsum.error ?? 'incomplete'}`;
      }
      const rawHex = this.raw.digest('hex');
      if (!this.tarError) diffId = this.compression === 'gzip' ? `sha256:${this.uncompressed!.digest('hex')}` : `sha256:${rawHex}`;
      this.digests = {
        digest: `sha256:${rawHex}`,
        size: this.size,
        payload: `sha256:${this.payloadHash.digest('hex')}`,
        compression: this.compression ?? 'none',
        ...(diffId ? { diffId } : {}),
        ...(tarsum && !this.tarError ? { tarsum } : {}),
        ...(this.tarError ? { tarError: this.tarError } : {}),
      };
      cb();
    };
    if (this.gunzip) {
      if (!this.tarError) this.gunzip.end();
      void this.gunzipDone!.then(finish);
    } else finish();
  }

  override _destroy(err: Error | null, cb: (error?: Error | null) => void): void {
    this.gunzip?.destroy();
    cb(err);
  }
}
