import type { Readable } from 'node:stream';
import { isNotFound, type StorageDriver } from '../storage/driver.js';
import { keyExists, readOptional, removeIfPresent } from './small-objects.js';
import { RegistryError } from '../errors/index.js';
import { LayerHasher, type InnerFactory, type LayerDigests } from '../digest/layer-hasher.js';
import { BlobStore, ShortBodyError, SizeLimitError } from './blob-store.js';
import { keys } from './keys.js';
import { KeyedMutex } from './mutex.js';
import { FILES_CACHE_MAX, filesListing } from './v1-files.js';
import { isImageId } from '../digest/digest.js';

/** What PUT layer learnt about the bytes, stored beside the image (v1/images/<id>/layer). */
export interface LayerLink {
  readonly digest: string;
  readonly size: number;
  /** sha256(json + "\n" + body), spec §6.1. */
  readonly payload: string;
  readonly compression: LayerDigests['compression'];
  /** sha256 of the uncompressed tar (v2 diff_id), when it could be computed. */
  readonly diffId?: string;
  readonly tarsum?: LayerDigests['tarsum'];
}

export interface ImageJson {
  readonly json: Buffer;
  /** Layer size, when the image has a layer. */
  readonly size?: number;
  /** Verified payload checksum, when the image is complete. */
  readonly payload?: string;
}

export interface PutJsonChecks {
  /** Token mode: ids the index listed for the token's repository (spec §2.5). */
  readonly allowedIds?: ReadonlySet<string>;
  /** Token mode: does the index let this caller use the parent (spec §4.4)? */
  readonly parentAccess?: (parent: string) => Promise<boolean>;
}

export interface V1ImageOptions {
  readonly maxLayerSize: number;
  readonly verifyTarsum: boolean;
  /** Where gunzip and tarsum run (a worker thread, when main.ts provides one). */
  readonly innerDigests?: InnerFactory;
}

/**
 * The v1 image records of the registry: json, ancestry, layer link and the in-progress mark, as small
 * objects in the driver, and the layer bytes in the blob store. The in-progress mark is written first
 * and removed last, so a half-pushed image is never served (spec §2.1 "done" check).
 */
export class V1Images {
  private readonly locks = new KeyedMutex();
  constructor(
    private readonly driver: StorageDriver,
    readonly blobs: BlobStore,
    private readonly opts: V1ImageOptions,
  ) {}

  private read(key: string): Promise<Buffer | undefined> {
    return readOptional(this.driver, key);
  }

  private exists(key: string): Promise<boolean> {
    return keyExists(this.driver, key);
  }

  private async remove(key: string): Promise<void> {
    await removeIfPresent(this.driver, key);
  }

  async hasJson(id: string): Promise<boolean> {
    return this.exists(keys.imageJson(id));
  }

  async inProgress(id: string): Promise<boolean> {
    return this.exists(keys.inProgress(id));
  }

  async layerLink(id: string): Promise<LayerLink | undefined> {
    const raw = await this.read(keys.layerLink(id));
    return raw ? (JSON.parse(raw.toString('utf8')) as LayerLink) : undefined;
  }

  /** Throws 400 "being uploaded" for an incomplete image (spec §2.1 "done"). */
  async assertComplete(id: string): Promise<void> {
    if (await this.inProgress(id)) throw new RegistryError('IMAGE_UPLOADING');
  }

  /** R3: the json bytes as uploaded, with the layer size and payload checksum when known. */
  async getJson(id: string): Promise<ImageJson> {
    await this.assertComplete(id);
    const json = await this.read(keys.imageJson(id));
    if (!json) throw new RegistryError('IMAGE_NOT_FOUND');
    const link = await this.layerLink(id);
    if (!link) return { json };
    const client = await this.read(keys.clientChecksum(id));
    return { json, size: link.size, ...(client ? { payload: link.payload } : {}) };
  }

  /** R4, checks in the order of spec §2.5. */
  async putJson(id: string, body: Buffer, checks: PutJsonChecks = {}): Promise<void> {
    let data: unknown;
    try {
      data = JSON.parse(body.toString('utf8'));
    } catch {
      throw new RegistryError('INVALID_JSON');
    }
    if (data === null || typeof data !== 'object' || Array.isArray(data)) throw new RegistryError('INVALID_JSON');
    const obj = data as Record<string, unknown>;
    if (!('id' in obj)) throw new RegistryError('MISSING_ID');
    if (obj.id !== id) throw new RegistryError('ID_MISMATCH');
    if (checks.allowedIds && !checks.allowedIds.has(id)) throw new RegistryError('NOT_IN_REPOSITORY');
    const parent = obj.parent;
    if (parent !== undefined && parent !== null && parent !== '') {
      if (typeof parent !== 'string' || !isImageId(parent) || parent === id) {
        throw new RegistryError('PARENT_MISSING');
      }
      if (!(await this.hasJson(parent))) throw new RegistryError('PARENT_MISSING');
      if (checks.parentAccess && !(await checks.parentAccess(parent))) throw new RegistryError('PARENT_UNAUTHORIZED');
    }
    await this.locks.run(id, async () => {
      const existing = await this.read(keys.imageJson(id));
      const marked = await this.inProgress(id);
      if (existing && !marked) throw new RegistryError('IMAGE_EXISTS');
      // Same bytes again (a retry, or a second client pushing the same image at once): keep the layer
      // already uploaded for them, its payload checksum is still right.
      if (existing && existing.equals(body)) return;
      let ancestry: string[] = [id];
      if (typeof parent === 'string' && parent !== '') {
        const raw = await this.read(keys.ancestry(parent));
        const parentAncestry = raw ? (JSON.parse(raw.toString('utf8')) as string[]) : [parent];
        ancestry = [id, ...parentAncestry];
      }
      // The mark goes first: whatever happens after it, the image is not served until PUT checksum.
      await this.driver.putContent(keys.inProgress(id), Buffer.from('true'));
      await this.remove(keys.layerLink(id));
      await this.remove(keys.clientChecksum(id));
      await this.remove(keys.files(id));
      await this.driver.putContent(keys.imageJson(id), body);
      await this.driver.putContent(keys.ancestry(id), Buffer.from(JSON.stringify(ancestry)));
    });
  }

  /** R6: stream the layer into the blob store, hashing on the way (spec §2.7). */
  async putLayer(id: string, body: Readable, contentLength?: number): Promise<LayerLink> {
    const json = await this.read(keys.imageJson(id));
    if (!json) throw new RegistryError('IMAGE_NOT_FOUND');
    if (!(await this.inProgress(id)) && (await this.exists(keys.layerLink(id)))) {
      throw new RegistryError('IMAGE_EXISTS');
    }
    const hasher = new LayerHasher(json, this.opts.innerDigests);
    let blob;
    try {
      blob = await this.blobs.ingest(body, hasher, {
        maxSize: this.opts.maxLayerSize,
        ...(contentLength !== undefined ? { expectedSize: contentLength } : {}),
      });
    } catch (e) {
      if (e instanceof SizeLimitError) throw new RegistryError('LAYER_TOO_LARGE');
      if (e instanceof ShortBodyError) throw new RegistryError('UPLOAD_INCOMPLETE');
      throw e;
    }
    const d = hasher.result();
    const link: LayerLink = {
      digest: blob.digest,
      size: blob.size,
      payload: d.payload,
      compression: d.compression,
      ...(d.diffId ? { diffId: d.diffId } : {}),
      ...(d.tarsum ? { tarsum: d.tarsum } : {}),
    };
    await this.locks.run(id, async () => {
      // The json may have been replaced while the bytes streamed in: then this payload is stale.
      const now = await this.read(keys.imageJson(id));
      if (!now || !now.equals(json)) throw new RegistryError('IMAGE_UPLOADING', 'Image json changed during the upload, retry');
      if (!(await this.inProgress(id))) throw new RegistryError('IMAGE_EXISTS');
      await this.driver.putContent(keys.layerLink(id), Buffer.from(JSON.stringify(link)));
    });
    return link;
  }

  /** R7: verify the client's checksums against the ones computed while streaming (spec §2.8). */
  async putChecksum(id: string, payloadHeader: string | undefined, tarsumHeader: string | undefined): Promise<void> {
    if (payloadHeader === undefined) throw new RegistryError('PAYLOAD_NOT_SET');
    const payload = payloadHeader.trim();
    if (payload === '') throw new RegistryError('CHECKSUM_MISSING');
    await this.locks.run(id, async () => {
      if (!(await this.hasJson(id))) throw new RegistryError('IMAGE_NOT_FOUND');
      const link = await this.layerLink(id);
      if (!(await this.inProgress(id))) {
        // A second client finishing the same image (concurrent pushes): say "already exists", which
        // the 1.x client treats as success, when its checksum is the one already verified.
        if (link && link.payload === payload) throw new RegistryError('IMAGE_EXISTS');
        throw new RegistryError('CHECKSUM_CANNOT_SET');
      }
      if (!link) throw new RegistryError('LAYER_MISSING');
      if (link.payload !== payload) throw new RegistryError('CHECKSUM_MISMATCH');
      const tarsum = tarsumHeader?.trim();
      if (this.opts.verifyTarsum && tarsum && link.tarsum && !tarsumMatches(tarsum, link.tarsum)) {
        throw new RegistryError('CHECKSUM_MISMATCH');
      }
      await this.driver.putContent(
        keys.clientChecksum(id),
        Buffer.from(JSON.stringify({ payload, ...(tarsum ? { tarsum } : {}) })),
      );
      await this.remove(keys.inProgress(id));
    });
  }

  /** R8. */
  async getAncestry(id: string): Promise<string[]> {
    await this.assertComplete(id);
    const raw = await this.read(keys.ancestry(id));
    if (!raw) throw new RegistryError('IMAGE_NOT_FOUND');
    return JSON.parse(raw.toString('utf8')) as string[];
  }

  /** R5: the stored layer of a complete image. */
  async getLayer(id: string): Promise<LayerLink> {
    await this.assertComplete(id);
    const link = await this.layerLink(id);
    if (!link) throw new RegistryError('IMAGE_NOT_FOUND');
    return link;
  }

  /** R9: the member list of the layer as JSON text, streamed; kept beside the image when small (v1-files.ts). */
  async files(id: string): Promise<Readable> {
    return filesListing({
      cached: async () => {
        const info = await this.driver.stat(keys.files(id)).catch((e: unknown) => (isNotFound(e) ? undefined : Promise.reject(e)));
        return info && info.size <= FILES_CACHE_MAX ? this.read(keys.files(id)) : undefined;
      },
      layer: () => this.getLayer(id),
      open: (link) => this.openLayer(link, 0),
      keep: (json) => this.driver.putContent(keys.files(id), json),
    });
  }

  openLayer(link: LayerLink, offset: number, length?: number): Promise<Readable> {
    return this.blobs.open(link.digest, offset, length);
  }
}

/** A client tarsum matches when it equals the computed value of its own label (v0 either sort). */
export function tarsumMatches(header: string, t: NonNullable<LayerLink['tarsum']>): boolean {
  if (header.startsWith('tarsum+sha256:')) return header === t.v0 || header === t.v0Plain;
  if (header.startsWith('tarsum.v1+sha256:')) return header === t.v1;
  if (header.startsWith('tarsum.dev+sha256:')) return header === t.dev;
  // Other algorithms (sha512, …) are not computed: nothing to compare against.
  return true;
}
