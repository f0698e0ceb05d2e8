import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { request } from './http.js';
import { tarOf } from './v1-client.js';

const sha = (b: Buffer | string): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const S2 = 'application/vnd.docker.distribution.manifest.v2+json';

/** A one-layer image: config and layer uploaded in single POSTs, then the manifest. */
export async function pushV2(
  url: string,
  name: string,
  tag: string,
  headers: Record<string, string> = {},
  content = name,
): Promise<{ digest: string; manifest: Buffer; layer: string }> {
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
  for (const b of [config, layer]) {
    const r = await request(url, `/v2/${name}/blobs/uploads/?digest=${sha(b)}`, { method: 'POST', body: b, headers });
    assert.equal(r.status, 201, r.text);
  }
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: S2,
      config: { mediaType: 'application/vnd.docker.container.image.v1+json', size: config.length, digest: sha(config) },
      layers: [{ mediaType: 'application/vnd.docker.image.rootfs.diff.tar.gzip', size: layer.length, digest: sha(layer) }],
    }),
  );
  const put = await request(url, `/v2/${name}/manifests/${tag}`, { method: 'PUT', body: manifest, headers: { ...headers, 'Content-Type': S2 } });
  assert.equal(put.status, 201, put.text);
  return { digest: String(put.headers['docker-content-digest']), manifest, layer: sha(layer) };
}
