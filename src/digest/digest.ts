import { createHash } from 'node:crypto';

/** `sha256:<64 lowercase hex>`, parsed at the edge. */
export type Digest = string & { readonly __brand: 'Digest' };
/** A v1 image id: 64 (or legacy 16) lowercase hex. */
export type ImageId = string & { readonly __brand: 'ImageId' };

const DIGEST = /^sha256:[a-f0-9]{64}$/;
const IMAGE_ID = /^([a-f0-9]{16}|[a-f0-9]{64})$/;

export function parseDigest(s: string): Digest | undefined {
  return DIGEST.test(s) ? (s as Digest) : undefined;
}

export function isImageId(s: string): s is ImageId {
  return IMAGE_ID.test(s);
}

export function sha256Hex(...parts: (Buffer | string)[]): string {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest('hex');
}
