import type { RepoName, Tag } from './names.js';

/**
 * Storage key layout. All content lives under these prefixes of one driver:
 *   blobs/sha256/<2 hex>/<hex>/data           layer bytes, content-addressed, stored once
 *   uploads/<uuid>/data                       bytes of an upload in progress (never served)
 *   v1/images/<id>/json                       image json, bytes exactly as uploaded
 *   v1/images/<id>/ancestry                   JSON list [id, parent, …, root]
 *   v1/images/<id>/_inprogress                marker between PUT json and a verified PUT checksum
 *   v1/images/<id>/layer                      JSON link to the blob + checksums computed at upload
 *   v1/images/<id>/_checksum                  JSON of the checksums the client sent with PUT checksum
 *   v1/images/<id>/_files                     cached R9 member list
 *   v1/repositories/<ns>/<repo>/_tags/<tag>   image id (bare string)
 *   v1/repositories/<ns>/<repo>/_tagjson/<tag> tag metadata (R15)
 *   v1/repositories/<ns>/<repo>/_json         repository metadata (copy of latest's)
 *   v1/repositories/<ns>/<repo>/_private      private marker
 *   v1/repositories/<ns>/<repo>/_index_images stand-in index image list (standalone)
 *   v1/repositories/<ns>/<repo>/_images_list  ids the index returned when it validated a token
 */
export const keys = {
  blob: (hex: string): string => `blobs/sha256/${hex.slice(0, 2)}/${hex}/data`,
  uploadsRoot: 'uploads',
  upload: (uuid: string): string => `uploads/${uuid}/data`,
  uploadDir: (uuid: string): string => `uploads/${uuid}`,
  image: (id: string): string => `v1/images/${id}`,
  imageJson: (id: string): string => `v1/images/${id}/json`,
  ancestry: (id: string): string => `v1/images/${id}/ancestry`,
  inProgress: (id: string): string => `v1/images/${id}/_inprogress`,
  layerLink: (id: string): string => `v1/images/${id}/layer`,
  clientChecksum: (id: string): string => `v1/images/${id}/_checksum`,
  files: (id: string): string => `v1/images/${id}/_files`,
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
