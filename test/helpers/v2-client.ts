import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { request } from './http.js';
import { tarOf } from './v1-client.js';

const sha = (b: Buffer | string): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const S2 = 'application/vnd.docker.distribution.manifest.v2+json';

/** The schema2 manifest of a config and its layers (their bytes). */
export function schema2Manifest(config: Buffer, layers: readonly Buffer[]): Buffer {
  return Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: S2,
      config: { mediaType: 'application/vnd.docker.container.image.v1+json', size: config.length, digest: sha(config) },
      layers: layers.map((l) => ({ mediaType: 'application/vnd.docker.image.rootfs.diff.tar.gzip', size: l.length, digest: sha(l) })),
    }),
  );
}

/** A one-layer image whose layer is `layer` (random bytes are fine: the registry does not read layers): its config and schema2 manifest. */
export function layerImage(layer: Buffer): { config: Buffer; manifest: Buffer } {
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [sha(layer)] } }));
  return { config, manifest: schema2Manifest(config, [layer]) };
}

/** Uploads `blobs` in single POSTs, then puts the schema2 `manifest` at name:tag; the digest the registry answers with. */
async function putImage(
  url: string,
  name: string,
  tag: string,
  blobs: readonly Buffer[],
  manifest: Buffer,
  headers: Record<string, string> = {},
): Promise<string> {
  for (const b of blobs) {
    const r = await request(url, `/v2/${name}/blobs/uploads/?digest=${sha(b)}`, { method: 'POST', body: b, headers });
    assert.equal(r.status, 201, r.text);
  }
  const put = await request(url, `/v2/${name}/manifests/${tag}`, { method: 'PUT', body: manifest, headers: { ...headers, 'Content-Type': S2 } });
  assert.equal(put.status, 201, put.text);
  return String(put.headers['docker-content-digest']);
}

/** A one-layer image holding one file `f.txt` of `content` (a real gzip tar, so the bridge gives it a v1 view): its blobs (config, layer) and schema2 manifest. */
export function fileImage(content: string): { config: Buffer; layer: Buffer; blobs: Buffer[]; manifest: Buffer } {
  const tar = tarOf({ 'f.txt': `${content}\n` });
  const layer = gzipSync(tar);
  const config = Buffer.from(
    JSON.stringify({
      architecture: 'amd64',
      os: 'linux',
      config: {},
      rootfs: { type: 'layers', diff_ids: [sha(tar)] },
      history: [{ created_by: 'ADD f.txt' }],
    }),
  );
  return { config, layer, blobs: [config, layer], manifest: schema2Manifest(config, [layer]) };
}

/** A one-layer image (fileImage): config and layer uploaded in single POSTs, then the manifest. */
export async function pushV2(
  url: string,
  name: string,
  tag: string,
  headers: Record<string, string> = {},
  content = name,
): Promise<{ digest: string; manifest: Buffer; layer: string }> {
  const { blobs, manifest, layer } = fileImage(content);
  return { digest: await putImage(url, name, tag, blobs, manifest, headers), manifest, layer: sha(layer) };
}

/** pushV2 of a layerImage: an image whose layer is `layer`. */
export async function pushLayerImage(url: string, name: string, tag: string, layer: Buffer): Promise<{ digest: string; manifest: Buffer }> {
  const { config, manifest } = layerImage(layer);
  return { digest: await putImage(url, name, tag, [config, layer], manifest), manifest };
}
