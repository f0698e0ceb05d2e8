import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { request, type Response } from './http.js';

export const DOCKER_UA = 'docker/1.5.0 go/go1.4.1 git-commit/a8a31ef kernel/3.16.0-4-amd64 os/linux arch/amd64';

export interface TestImage {
  readonly id: string;
  readonly parent?: string;
  /** image json bytes exactly as pushed */
  readonly json: Buffer;
  /** layer body bytes exactly as pushed (gzip) */
  readonly layer: Buffer;
  /** X-Docker-Checksum-Payload */
  readonly payload: string;
  /** X-Docker-Checksum (tarsum v0), when known */
  readonly tarsum?: string;
}

export function sha256hex(...parts: Buffer[]): string {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest('hex');
}

/** sha256(json + "\n" + layer), spec §6.1, computed here independently of the server's code. */
export function payloadChecksum(json: Buffer, layer: Buffer): string {
  return `sha256:${sha256hex(json, Buffer.from('\n'), layer)}`;
}

/** A minimal ustar archive with one regular file (enough for layers in protocol tests). */
export function tarOf(files: Record<string, Buffer | string>): Buffer {
  const blocks: Buffer[] = [];
  for (const [name, content] of Object.entries(files)) {
    const data = Buffer.isBuffer(content) ? content : Buffer.from(content);
    const h = Buffer.alloc(512);
    h.write(name, 0, 100, 'utf8');
    h.write('0000644\0', 100);
    h.write('0000000\0', 108);
    h.write('0000000\0', 116);
    h.write(data.length.toString(8).padStart(11, '0') + '\0', 124);
    h.write('14440100400\0', 136);
    h.write('        ', 148);
    h.write('0', 156);
    h.write('ustar\0', 257);
    h.write('00', 263);
    h.write('root', 265);
    h.write('root', 297);
    let sum = 0;
    for (const b of h) sum += b;
    h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148);
    blocks.push(h, data, Buffer.alloc((512 - (data.length % 512)) % 512));
  }
  blocks.push(Buffer.alloc(1024));
  return Buffer.concat(blocks);
}

let counter = 0;
/** A fresh image with a unique id and a small gzipped layer. */
export function makeImage(parent?: string, files?: Record<string, string>): TestImage {
  counter++;
  const id = sha256hex(Buffer.from(`image-${process.pid}-${Date.now()}-${counter}-${Math.random()}`));
  const jsonObj: Record<string, unknown> = {
    id,
    created: '2015-01-01T00:00:00Z',
    container_config: { Cmd: null },
    docker_version: '1.5.0',
    architecture: 'amd64',
    os: 'linux',
  };
  if (parent) jsonObj.parent = parent;
  const json = Buffer.from(JSON.stringify(jsonObj));
  const layer = gzipSync(tarOf(files ?? { [`file-${counter}.txt`]: `content ${counter}\n` }));
  return { id, ...(parent ? { parent } : {}), json, layer, payload: payloadChecksum(json, layer) };
}

/** A chain of n images, root first, each the parent of the next. */
export function makeChain(n: number): TestImage[] {
  const chain: TestImage[] = [];
  for (let i = 0; i < n; i++) chain.push(makeImage(chain.at(-1)?.id));
  return chain;
}

/** Split a buffer into a chunked stream (Transfer-Encoding: chunked, no Content-Length). */
export function chunkedStream(buf: Buffer, chunk = 4096): Readable {
  let off = 0;
  return new Readable({
    read() {
      if (off >= buf.length) {
        this.push(null);
        return;
      }
      this.push(buf.subarray(off, off + chunk));
      off += chunk;
    },
  });
}

/**
 * The Docker 1.x push of one image to a registry, request for request (spec §5.3 steps 2–5):
 * probe json, PUT json, PUT layer (chunked gzip), PUT checksum. Returns each response.
 */
export async function pushImage(reg: string, img: TestImage, token?: string): Promise<Response[]> {
  const auth: Record<string, string> = token ? { Authorization: `Token ${token}` } : {};
  const common = { 'User-Agent': DOCKER_UA, ...auth };
  const probe = await request(reg, `/v1/images/${img.id}/json`, { headers: common });
  const json = await request(reg, `/v1/images/${img.id}/json`, {
    method: 'PUT',
    headers: { ...common, 'Content-Type': 'application/json' },
    body: img.json,
  });
  if (json.status !== 200) return [probe, json];
  const layer = await request(reg, `/v1/images/${img.id}/layer`, {
    method: 'PUT',
    headers: { ...common, 'Content-Type': 'application/octet-stream' },
    body: chunkedStream(img.layer),
  });
  const checksum = await request(reg, `/v1/images/${img.id}/checksum`, {
    method: 'PUT',
    headers: {
      ...common,
      ...(img.tarsum ? { 'X-Docker-Checksum': img.tarsum } : {}),
      'X-Docker-Checksum-Payload': img.payload,
    },
    body: '',
  });
  return [probe, json, layer, checksum];
}

export async function putTag(reg: string, repo: string, tag: string, id: string, token?: string): Promise<Response> {
  return request(reg, `/v1/repositories/${repo}/tags/${tag}`, {
    method: 'PUT',
    headers: { 'User-Agent': DOCKER_UA, 'Content-Type': 'application/json', ...(token ? { Authorization: `Token ${token}` } : {}) },
    body: JSON.stringify(id),
  });
}
