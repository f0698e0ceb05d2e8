import { createHash, type Hash } from 'node:crypto';
import { loadNative } from '../util/native.js';

/**
 * SHA-256 for the hashes a layer takes in pairs over the same bytes: its address and its payload
 * checksum over the stored bytes, its diff_id and its tarsum over the tar. With the x86 SHA
 * extensions two streams hashed together in one loop cost little more than one (native/sha256x2.c:
 * 2.7 against 1.5 GB/s on this project's VMs), so {@link updateBoth} hashes a chunk into two
 * hashes at once when both are native. The native module is built by scripts/build-native.mjs (part
 * of `npm run build`) into dist/native; without it, on a CPU without the extensions, or with
 * LR_SHA256X2=0 in the environment, every hash is node:crypto's and updateBoth updates one after
 * the other: the digests are the same either way.
 */
export interface Sha256 {
  update(data: Uint8Array): this;
  update(data: string, encoding: BufferEncoding): this;
  digest(): Buffer;
  digest(encoding: 'hex'): string;
}

interface Native {
  readonly available: boolean;
  readonly contextSize: number;
  init(ctx: Uint8Array): void;
  update(ctx: Uint8Array, data: Uint8Array): void;
  update2(a: Uint8Array, b: Uint8Array, data: Uint8Array): void;
  final(ctx: Uint8Array, out: Uint8Array): void;
}

const loaded = loadNative<Native>('sha256x2', 'LR_SHA256X2', 'this CPU has no SHA extensions');
const native = loaded.native;

/** Whether paired hashing is native here, and why not when it is not (for logs and tests). */
export const sha256x2 = { native: native !== undefined, reason: loaded.reason } as const;

class NativeSha256 implements Sha256 {
  readonly ctx: Uint8Array;
  private done = false;

  constructor(private readonly n: Native) {
    this.ctx = new Uint8Array(n.contextSize);
    n.init(this.ctx);
  }

  update(data: Uint8Array | string, encoding?: BufferEncoding): this {
    if (this.done) throw new Error('sha256: update after digest');
    this.n.update(this.ctx, typeof data === 'string' ? Buffer.from(data, encoding) : data);
    return this;
  }

  digest(): Buffer;
  digest(encoding: 'hex'): string;
  digest(encoding?: 'hex'): Buffer | string {
    if (this.done) throw new Error('sha256: digest already called');
    this.done = true;
    const out = Buffer.allocUnsafe(32);
    this.n.final(this.ctx, out);
    return encoding ? out.toString(encoding) : out;
  }

  /** Both hashes take `data` (a and b are distinct and not finished). */
  static both(n: Native, a: NativeSha256, b: NativeSha256, data: Uint8Array): void {
    if (a.done || b.done) throw new Error('sha256: update after digest');
    n.update2(a.ctx, b.ctx, data);
  }
}

/** A new SHA-256 hash: native when paired hashing is, node:crypto's otherwise. */
export function createSha256(): Sha256 {
  return native ? new NativeSha256(native) : (createHash('sha256') as Hash & Sha256);
}

/** Hash `data` into both a and b (two distinct hashes from createSha256); one pass when both are native. */
export function updateBoth(a: Sha256, b: Sha256, data: Uint8Array): void {
  if (native && a !== b && a instanceof NativeSha256 && b instanceof NativeSha256) NativeSha256.both(native, a, b, data);
  else {
    a.update(data);
    b.update(data);
  }
}
