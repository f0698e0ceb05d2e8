import { parseV2Name } from './v2-names.js';

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

/**
 * A v2 repository name as the index database keeps it: the v1 name when it is one, else the first
 * component as the namespace and the rest (which may hold '/') as the repository, as the token
 * service decides rights (`org/team/app` → namespace `org`). v2 names off the v2 grammar: undefined.
 */
export function indexRepoName(v2name: string): RepoName | undefined {
  const v1 = parseRepoName(v2name);
  if (v1) return v1;
  if (!parseV2Name(v2name)) return undefined;
  const i = v2name.indexOf('/');
  const ns = i < 0 ? 'library' : v2name.slice(0, i);
  const repo = i < 0 ? v2name : v2name.slice(i + 1);
  return { namespace: ns as Namespace, repository: repo as RepoPart, full: `${ns}/${repo}` };
}

export function parseTag(s: string): Tag | undefined {
  return TAG.test(s) ? (s as Tag) : undefined;
}
