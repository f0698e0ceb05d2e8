import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { sha256 } from './python-tree.js';
import { tarOf } from './v1-client.js';
import { schema2Manifest } from './v2-client.js';

/** A one-layer image written into a distribution tree: its manifest's digest, its layer's bytes and digest. */
export interface DistImage {
  readonly manifest: string;
  readonly layer: Buffer;
  readonly layerDigest: string;
}

/** A repository's manifest revision link and the tags naming it, below `dir` (a repository directory, in the tree or not). */
export async function writeRepoLinks(dir: string, manifest: string, tags: readonly string[]): Promise<void> {
  const m = join(dir, '_manifests');
  await mkdir(join(m, 'revisions', 'sha256', manifest.slice(7)), { recursive: true });
  await writeFile(join(m, 'revisions', 'sha256', manifest.slice(7), 'link'), manifest);
  for (const t of tags) {
    await mkdir(join(m, 'tags', t, 'current'), { recursive: true });
    await writeFile(join(m, 'tags', t, 'current', 'link'), manifest);
  }
}

/** A distribution (registry:2) storage tree below `tree`, written by hand for `legacy-registry import`. */
export function distributionTree(tree: string): {
  readonly v2: string;
  blobData(digest: string): string;
  putBlob(bytes: Buffer): Promise<string>;
  image(label: string, layerBytes?: Buffer): Promise<DistImage>;
  repo(name: string, manifest: string, tags: readonly string[]): Promise<void>;
} {
  const v2 = join(tree, 'docker', 'registry', 'v2');
  const blobData = (digest: string): string => join(v2, 'blobs', 'sha256', digest.slice(7, 9), digest.slice(7), 'data');
  const putBlob = async (bytes: Buffer): Promise<string> => {
    const digest = sha256(bytes);
    await mkdir(join(blobData(digest), '..'), { recursive: true });
    await writeFile(blobData(digest), bytes);
    return digest;
  };
  /** Layer (`layerBytes`, or the gzipped tar of `<label>.txt`), config and schema2 manifest, each stored as a blob. */
  const image = async (label: string, layerBytes?: Buffer): Promise<DistImage> => {
    const tar = tarOf({ [`${label}.txt`]: `${label}\n` });
    const layer = layerBytes ?? gzipSync(tar);
    const layerDigest = await putBlob(layer);
    const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', config: {}, rootfs: { type: 'layers', diff_ids: [sha256(tar)] } }));
    await putBlob(config);
    return { manifest: await putBlob(schema2Manifest(config, [layer])), layer, layerDigest };
  };
  const repo = (name: string, manifest: string, tags: readonly string[]): Promise<void> =>
    writeRepoLinks(join(v2, 'repositories', ...name.split('/')), manifest, tags);
  return { v2, blobData, putBlob, image, repo };
}
