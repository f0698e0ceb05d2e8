import { createHash } from 'node:crypto';

/** `sha256:<64 lowercase hex>`, parsed at the edge. */
export type Digest = string & { readonly __brand: 'Digest' };
/** A v1 image id: 64 (or legacy 16) lowercase hex. */
export type ImageId = string & { readonly __brand: 'ImageId' };

const DIGEST = /^sha256:[a-f0-9]{64}$/;
const IMAGE_ID = /^([a-f0-9]{16}|[a-f0-9]{64})$/;

/** The digest when `s` is exactly `sha256:<64 lowercase hex>`, else undefined. */
export function parseDigest(s: string): Digest | undefined {
  return DIGEST.test(s) ? (s as Digest) : undefined;
}

export function isImageId(s: string): s is ImageId {
  return IMAGE_ID.test(s);
}

/** Lowercase hex sha256 of the parts, hashed in order as one byte string (strings as UTF-8). */
export function sha256Hex(...parts: (Buffer | string)[]): string {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest('hex');
}

/** `sha256:<hex>` of the parts. */
export function digestOf(...parts: (Buffer | string)[]): Digest {
  return `sha256:${sha256Hex(...parts)}` as Digest;
}
