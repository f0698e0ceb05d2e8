import type { RepoName, Tag } from './names.js';

/**
 * Whose v1 image records a request sees: a repository (images belong to repositories, issue 10:
 * an image id is a name, not a capability) or null for the registry-wide set of a registry
 * without accounts.
 */
export type ImageScope = RepoName | null;

/**
 * Storage key layout. All content lives under these prefixes of one driver:
 *   blobs/sha256/<2 hex>/<hex>/data           layer bytes, content-addressed, stored once
 *   uploads/<uuid>/data                       bytes of an upload in progress (never served)
 *   <images>/<id>/json                        image json, bytes exactly as uploaded
 *   <images>/<id>/ancestry                    JSON list [id, parent, …, root]
 *   <images>/<id>/_inprogress                 marker between PUT json and a verified PUT checksum
 *   <images>/<id>/layer                       JSON link to the blob + checksums computed at upload
 *   <images>/<id>/_checksum                   JSON of the checksums the client sent with PUT checksum
 *   <images>/<id>/_files                      cached R9 member list
 *     where <images> is v1/repositories/<ns>/<repo>/_images when images belong to repositories
 *     (a registry that checks tokens with an index: an id is resolved within the token's
 *     repository), and v1/images for a registry without accounts (standalone), where every
 *     client may read everything anyway.
 *   v1/repositories/<ns>/<repo>/_tags/<tag>   image id (bare string)
 *   v1/repositories/<ns>/<repo>/_tagjson/<tag> tag metadata (R15)
 *   v1/repositories/<ns>/<repo>/_json         repository metadata (copy of latest's)
 *   v1/repositories/<ns>/<repo>/_private      private marker
 *   v1/repositories/<ns>/<repo>/_index_images stand-in index image list (standalone)
 *   v1/repositories/<ns>/<repo>/_images_list  ids the index returned when it validated a token
 */
/** Where a scope's image records live: a repository's own, or the registry-wide set. */
function imagesRoot(scope: ImageScope): string {
  return scope ? `v1/repositories/${scope.namespace}/${scope.repository}/_images` : 'v1/images';
}
const image = (scope: ImageScope, id: string): string => `${imagesRoot(scope)}/${id}`;

export const keys = {
  blob: (hex: string): string => `blobs/sha256/${hex.slice(0, 2)}/${hex}/data`,
  uploadsRoot: 'uploads',
  upload: (uuid: string): string => `uploads/${uuid}/data`,
  uploadDir: (uuid: string): string => `uploads/${uuid}`,
  imagesRoot,
  image,
  imageJson: (scope: ImageScope, id: string): string => `${image(scope, id)}/json`,
  ancestry: (scope: ImageScope, id: string): string => `${image(scope, id)}/ancestry`,
  inProgress: (scope: ImageScope, id: string): string => `${image(scope, id)}/_inprogress`,
  layerLink: (scope: ImageScope, id: string): string => `${image(scope, id)}/layer`,
  clientChecksum: (scope: ImageScope, id: string): string => `${image(scope, id)}/_checksum`,
  files: (scope: ImageScope, id: string): string => `${image(scope, id)}/_files`,
  repositoriesRoot: 'v1/repositories',
  repo: (r: RepoName): string => `v1/repositories/${r.namespace}/${r.repository}`,
  tagsDir: (r: RepoName): string => `v1/repositories/${r.namespace}/${r.repository}/_tags`,
  tag: (r: RepoName, t: Tag): string => `v1/repositories/${r.namespace}/${r.repository}/_tags/${t}`,
  tagJson: (r: RepoName, t: Tag): string => `v1/repositories/${r.namespace}/${r.repository}/_tagjson/${t}`,
  repoJson: (r: RepoName): string => `v1/repositories/${r.namespace}/${r.repository}/_json`,
  private: (r: RepoName): string => `v1/repositories/${r.namespace}/${r.repository}/_private`,
  indexImages: (r: RepoName): string => `v1/repositories/${r.namespace}/${r.repository}/_index_images`,
  imagesList: (r: RepoName): string => `v1/repositories/${r.namespace}/${r.repository}/_images_list`,
};
