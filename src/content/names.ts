/**
 * Identifiers parsed at the edge (spec v1-protocol §1.5, §7). Internal code trusts the branded types.
 */
export type Namespace = string & { readonly __brand: 'Namespace' };
export type RepoPart = string & { readonly __brand: 'RepoPart' };
export type Tag = string & { readonly __brand: 'Tag' };

export interface RepoName {
  readonly namespace: Namespace;
  readonly repository: RepoPart;
  /** `ns/repo`, always with the namespace (`library/foo`). */
  readonly full: string;
}

const NAMESPACE = /^[a-z0-9_](?:[a-z0-9_-]{0,253}[a-z0-9_])?$/;
const REPOSITORY = /^[a-z0-9_.-]{1,64}$/;
const TAG = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;
const HEX64 = /^[a-f0-9]{64}$/;

/**
 * Parse the `<repo>` part of a /v1/repositories/ path (already percent-decoded): strip trailing '/',
 * split on the first '/'; one part means namespace `library` (spec §1.5, §3.13).
 * Returns undefined for anything off the grammar (spec Q10: 400 Invalid repository name).
 */
export function parseRepoName(path: string): RepoName | undefined {
  const p = path.replace(/\/+$/, '');
  const i = p.indexOf('/');
  let ns: string;
  let repo: string;
  if (i < 0) {
    if (HEX64.test(p)) return undefined; // would look like an image id (CLI rule)
    ns = 'library';
    repo = p;
  } else {
    ns = p.slice(0, i);
    repo = p.slice(i + 1);
  }
  if (!NAMESPACE.test(ns) || !REPOSITORY.test(repo) || repo === '.' || repo === '..') return undefined;
  return { namespace: ns as Namespace, repository: repo as RepoPart, full: `${ns}/${repo}` };
}

export function parseTag(s: string): Tag | undefined {
  return TAG.test(s) ? (s as Tag) : undefined;
}
