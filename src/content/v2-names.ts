/** v2 identifiers (spec v2-bridge §1.1), parsed at the edge. */
const COMPONENT = '[a-z0-9]+(?:(?:\\.|_|__|-+)[a-z0-9]+)*';
const NAME = new RegExp(`^${COMPONENT}(?:/${COMPONENT})*$`);
const SHA256 = /^sha256:[a-f0-9]{64}$/;
const DIGEST_SHAPE = /^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/;

export type V2Name = string & { readonly __brand: 'V2Name' };

/** distribution's bound on a repository name's length. */
export const MAX_V2_NAME = 255;

export function parseV2Name(s: string): V2Name | undefined {
  return s.length <= MAX_V2_NAME && NAME.test(s) ? (s as V2Name) : undefined;
}

/**
 * 'ok' for a sha256 digest we store, 'unsupported' for a well-formed digest of another algorithm,
 * 'invalid' otherwise.
 */
export function checkDigest(s: string): 'ok' | 'unsupported' | 'invalid' {
  if (SHA256.test(s)) return 'ok';
  if (DIGEST_SHAPE.test(s) && !s.startsWith('sha256:')) return 'unsupported';
  return 'invalid';
}
