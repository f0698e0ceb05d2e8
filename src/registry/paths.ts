import type { Context } from 'koa';
import { RegistryError } from '../errors/index.js';
import { parseRepoName, type RepoName } from '../content/names.js';
import { isImageId } from '../digest/digest.js';

export function imageId(ctx: Context): string {
  const id = String(ctx.params.id ?? '');
  if (!isImageId(id)) throw new RegistryError('INVALID_IMAGE_ID');
  return id;
}

/**
 * Split /v1/repositories/<path> into the repository and the route suffix, greedily as the Python
 * registry's router did (spec §1.5). Returns undefined when no registry route matches.
 */
export type RepoRoute =
  | { kind: 'tags'; repo: string }
  | { kind: 'tag'; repo: string; tag: string }
  | { kind: 'tagJson'; repo: string; tag: string }
  | { kind: 'json'; repo: string }
  | { kind: 'properties'; repo: string }
  | { kind: 'images'; repo: string }
  | { kind: 'auth'; repo: string }
  | { kind: 'layerAccess'; repo: string; id: string }
  | { kind: 'root'; repo: string; slash: boolean };

export type RepoRouteOf<K extends RepoRoute['kind']> = Extract<RepoRoute, { kind: K }>;

const REPO_ROUTES: [RegExp, (m: RegExpExecArray) => RepoRoute][] = [
  [/^(.+)\/tags\/([^/]+)\/json$/, (m) => ({ kind: 'tagJson', repo: m[1]!, tag: m[2]! })],
  [/^(.+)\/tags\/?$/, (m) => ({ kind: 'tags', repo: m[1]! })],
  [/^(.+)\/tags\/([^/]+)$/, (m) => ({ kind: 'tag', repo: m[1]!, tag: m[2]! })],
  [/^(.+)\/json$/, (m) => ({ kind: 'json', repo: m[1]! })],
  [/^(.+)\/properties$/, (m) => ({ kind: 'properties', repo: m[1]! })],
  [/^(.+)\/images$/, (m) => ({ kind: 'images', repo: m[1]! })],
  [/^(.+)\/auth$/, (m) => ({ kind: 'auth', repo: m[1]! })],
  [/^(.+)\/layer\/([^/]+)\/access$/, (m) => ({ kind: 'layerAccess', repo: m[1]!, id: m[2]! })],
  [/^(.+?)(\/?)$/, (m) => ({ kind: 'root', repo: m[1]!, slash: m[2] === '/' })],
];

export function matchRepoRoute(rest: string): RepoRoute | undefined {
  for (const [re, make] of REPO_ROUTES) {
    const m = re.exec(rest);
    if (m) return make(m);
  }
  return undefined;
}

export function decodePath(raw: string): string {
  // nothing to decode without a '%' (decodeURIComponent would return it as it is, at a cost)
  if (!raw.includes('%')) return raw;
  try {
    return decodeURIComponent(raw);
  } catch {
    throw new RegistryError('INVALID_REPOSITORY_NAME');
  }
}

export function repoName(raw: string): RepoName {
  const name = parseRepoName(decodePath(raw));
  if (!name) throw new RegistryError('INVALID_REPOSITORY_NAME');
  return name;
}
