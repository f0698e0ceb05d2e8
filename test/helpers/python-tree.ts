import { createHash, randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { TarSum } from '../../src/digest/tarsum.js';
import { payloadChecksum, sha256hex, tarOf } from './v1-client.js';

/** One image of a Python docker-registry tree written by the tests (spec v1-protocol §10). */
export interface PyImage {
  readonly id: string;
  readonly parent?: string;
  readonly json: Buffer;
  /** the layer bytes as the Python registry stored them (as uploaded) */
  readonly layer: Buffer;
  readonly payload: string;
  readonly gzip: boolean;
}

export interface PyRepo {
  /** `ns/name` as written (the tree's directory names are quote_plus-escaped) */
  readonly name: string;
  readonly tags: Record<string, string>;
  readonly private?: boolean;
  /** images listed in the repository's `_index_images` without a tag (pushed, then the tag moved) */
  readonly untagged?: readonly string[];
}

let n = 0;
/** An image with a layer of `size` bytes of file content (random: incompressible), gzip or plain tar. */
export function pyImage(opts: { parent?: string; gzip: boolean; size?: number; label?: string }): PyImage {
  n++;
  const id = sha256hex(Buffer.from(`py-${process.pid}-${n}-${Math.random()}`));
  const json: Record<string, unknown> = {
    id,
    created: `2014-0${(n % 9) + 1}-01T10:00:00.123456789Z`,
    container_config: { Cmd: ['/bin/sh', '-c', `echo ${opts.label ?? n} > /f${n}`] },
    docker_version: '1.3.2',
    architecture: 'amd64',
    os: 'linux',
    Size: opts.size ?? 16,
  };
  if (opts.parent) json.parent = opts.parent;
  const jsonBytes = Buffer.from(JSON.stringify(json));
  const tar = tarOf({ [`f${n}`]: opts.size ? randomBytes(opts.size) : `file ${opts.label ?? n}\n` });
  const layer = opts.gzip ? gzipSync(tar, { level: 1 }) : tar;
  return { id, ...(opts.parent ? { parent: opts.parent } : {}), json: jsonBytes, layer, payload: payloadChecksum(jsonBytes, layer), gzip: opts.gzip };
}

const quotePlus = (s: string): string => encodeURIComponent(s).replace(/%20/g, '+');

/**
 * Write the tree as the Python registry's local storage would hold it: images/<id>/{json,layer,
 * ancestry,_checksum}, repositories/<ns>/<repo>/{tag_<tag>,tag<tag>_json,json,_index_images,_private}.
 * `checksum: 'bare'` writes the older bare-string form of _checksum for that image.
 */
export async function writePythonTree(
  root: string,
  images: readonly PyImage[],
  repos: readonly PyRepo[],
  opts: {
    bareChecksum?: ReadonlySet<string>;
    noChecksum?: ReadonlySet<string>;
    corrupt?: ReadonlySet<string>;
    /** _checksum holds only the layer's tarsum (as PY ≤ 0.8 recorded it), no payload checksum */
    tarsumOnly?: ReadonlySet<string>;
    /** _checksum holds only a tarsum, and not the layer's */
    wrongTarsum?: ReadonlySet<string>;
  } = {},
): Promise<void> {
  const byId = new Map(images.map((i) => [i.id, i]));
  const ancestry = (id: string): string[] => {
    const out: string[] = [];
    for (let cur: string | undefined = id; cur; cur = byId.get(cur)?.parent) out.push(cur);
    return out;
  };
  for (const img of images) {
    const dir = join(root, 'images', img.id);
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'json'), img.json);
    let layer = img.layer;
    if (opts.corrupt?.has(img.id)) {
      layer = Buffer.from(layer);
      layer[layer.length - 600] = layer[layer.length - 600]! ^ 0xff; // one flipped byte after the checksum was recorded
    }
    await writeFile(join(dir, 'layer'), layer);
    await writeFile(join(dir, 'ancestry'), JSON.stringify(ancestry(img.id)));
    if (opts.tarsumOnly?.has(img.id) || opts.wrongTarsum?.has(img.id)) {
      const t = new TarSum(img.json);
      t.write(img.gzip ? gunzipSync(img.layer) : img.layer);
      t.end();
      const sum = opts.wrongTarsum?.has(img.id) ? `tarsum+sha256:${'0'.repeat(64)}` : t.result()!.v0Plain;
      await writeFile(join(dir, '_checksum'), JSON.stringify([sum]));
    } else if (!opts.noChecksum?.has(img.id))
      await writeFile(join(dir, '_checksum'), opts.bareChecksum?.has(img.id) ? img.payload : JSON.stringify([img.payload]));
  }
  for (const r of repos) {
    const [ns, name] = r.name.includes('/') ? r.name.split('/') : ['library', r.name];
    const dir = join(root, 'repositories', quotePlus(ns!), quotePlus(name!));
    await mkdir(dir, { recursive: true });
    const list: { id: string }[] = [];
    for (const [tag, id] of Object.entries(r.tags)) {
      await writeFile(join(dir, `tag_${tag}`), id);
      await writeFile(join(dir, `tag${tag}_json`), JSON.stringify({ last_update: 1400000000, docker_version: '1.3.2', os: 'linux', arch: 'amd64' }));
      for (const a of ancestry(id)) list.push({ id: a });
    }
    for (const id of r.untagged ?? []) for (const a of ancestry(id)) list.push({ id: a });
    await writeFile(join(dir, 'json'), JSON.stringify({ last_update: 1400000000 }));
    await writeFile(join(dir, '_index_images'), JSON.stringify(list));
    if (r.private) await writeFile(join(dir, '_private'), '');
  }
}

export const sha256 = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;
