import { createHash } from 'node:crypto';
import { createGunzip } from 'node:zlib';
import { TarSum, type TarSums } from './tarsum.js';

export type Compression = 'gzip' | 'none' | 'bzip2' | 'xz' | 'zstd';

/** What is computed over the uncompressed tar: the diff_id (gzip only here) and the tarsums. */
export interface InnerResult {
  readonly diffId?: string;
  readonly tarsum?: TarSums;
  readonly tarError?: string;
}

/** The uncompressed side of the layer hashing: fed the raw layer bytes, in order. */
export interface Inner {
  /** Take a chunk; call done when more may be sent (backpressure). */
  write(chunk: Buffer, done: () => void): void;
  end(): Promise<InnerResult>;
  destroy(): void;
}

/** Gunzip (for gzip) and tarsum in this thread. */
export function createInlineInner(kind: Compression, extra: Buffer): Inner {
  if (kind !== 'gzip' && kind !== 'none') {
    const tarError = `${kind} layers are stored as they are; tarsum and diff_id need gzip or a plain tar`;
    return { write: (_c, done) => done(), end: () => Promise.resolve({ tarError }), destroy: () => undefined };
  }
  const tarsum = new TarSum(extra);
  let tarError: string | undefined;
  const finish = (diffId?: string): InnerResult => {
    tarsum.end();
    const t = tarError ? undefined : tarsum.result();
    if (!t && !tarError) tarError = `not a tar archive: ${tarsum.error ?? 'incomplete'}`;
    return { ...(t && diffId ? { diffId } : {}), ...(t ? { tarsum: t } : {}), ...(tarError ? { tarError } : {}) };
  };
  if (kind === 'none') {
    return {
      write: (c, done) => {
        tarsum.write(c);
        done();
      },
      end: () => Promise.resolve(finish()),
      destroy: () => undefined,
    };
  }
  const uncompressed = createHash('sha256');
  const gz = createGunzip({ chunkSize: 256 * 1024 });
  let pending: (() => void) | undefined;
  const release = (): void => {
    const p = pending;
    pending = undefined;
    p?.();
  };
  gz.on('data', (c: Buffer) => {
    uncompressed.update(c);
    tarsum.write(c);
  });
  const done = new Promise<void>((resolve) => {
    gz.once('end', resolve);
    gz.on('error', (e: Error) => {
      tarError ??= `gunzip: ${e.message}`;
      resolve();
      release(); // a chunk waiting for 'drain' must not wait forever
    });
  });
  return {
    write: (c, next) => {
      if (tarError) {
        next();
        return;
      }
      if (gz.write(c) || tarError) next();
      else {
        pending = next;
        gz.once('drain', release);
      }
    },
    end: async () => {
      if (!tarError) gz.end();
      await done;
      return finish(tarError ? undefined : `sha256:${uncompressed.digest('hex')}`);
    },
    destroy: () => gz.destroy(),
  };
}
