import { createHash, type KeyObject } from 'node:crypto';
import type { StorageDriver } from '../storage/driver.js';
import { V2Error } from '../errors/v2.js';
import { v1ViewFromConfig } from './bridge.js';
import { ConfigUnavailableError, type ConfigReader } from './config-reader.js';
import { schema1Key, schema1Payload, signSchema1, type Schema1Layer } from './schema1.js';
import { readOptional, RECORD_MAX } from './small-objects.js';
import type { V1ToV2 } from './v1-to-v2.js';
import { MT, schema1DocKey, schema1DocMax, type StoredManifest } from './v2-manifests.js';
import type { V2Name } from './v2-names.js';

/**
 * Signed schema1 for clients that accept nothing newer (Docker 1.6–1.9, docker-registry-client's
 * default): v2 images through the config builder view (§3.6), v1-pushed tags with their own ids
 * and JSON (§3.4). The canonical payload is distribution's, so the digest is the one distribution
 * gave; the signed bytes are made once per digest and kept, so a pull by that digest gets the
 * same document.
 */
export class Schema1Bridge {
  private key: Promise<KeyObject> | undefined;
  constructor(
    private readonly driver: StorageDriver,
    private readonly configs: ConfigReader,
    private readonly fromV1: V1ToV2 | undefined,
  ) {}

  private async layersOfV2(name: V2Name, found: StoredManifest): Promise<{ layers: Schema1Layer[]; architecture: string } | undefined> {
    if (found.mediaType !== MT.schema2 && found.mediaType !== MT.ociManifest) return undefined;
    const m = JSON.parse(found.bytes.toString('utf8')) as { config: { digest: string }; layers: { digest: string }[] };
    let config: Buffer;
    try {
      // only a config this repository holds, and not larger than max_config_size (issue 10)
      config = await this.configs.readConfig(name, m.config.digest);
    } catch (e) {
      if (e instanceof ConfigUnavailableError) throw new V2Error('MANIFEST_UNKNOWN', { digest: found.digest }, `no schema1 form: ${e.message}`);
      throw e;
    }
    let view;
    try {
      view = v1ViewFromConfig(
        config,
        m.layers.map((l) => l.digest),
      );
    } catch {
      return undefined;
    }
    const arch = (JSON.parse(config.toString('utf8')) as { architecture?: unknown }).architecture;
    return {
      layers: [...view].reverse().map((v) => ({ blobSum: v.blob, v1Compatibility: v.json.toString('utf8') })),
      architecture: typeof arch === 'string' && arch !== '' ? arch : 'amd64',
    };
  }

  /** The signed schema1 of a tag, or undefined when the image has no schema1 form. */
  async forTag(name: V2Name, tag: string, found: StoredManifest, v1Origin: boolean): Promise<StoredManifest | undefined> {
    const src = v1Origin && this.fromV1 ? await this.fromV1.schema1Layers(name, tag) : await this.layersOfV2(name, found);
    if (!src) return undefined;
    const payload = schema1Payload(name, tag, src.architecture, src.layers);
    const digest = `sha256:${createHash('sha256').update(payload).digest('hex')}`;
    // the payload signed: its bytes and a signature (a JWK and two base64url values)
    let bytes = await readOptional(this.driver, schema1DocKey(name, digest), payload.length + RECORD_MAX);
    if (!bytes) {
      this.key ??= schema1Key(this.driver);
      bytes = signSchema1(payload, await this.key);
      await this.driver.putContent(schema1DocKey(name, digest), bytes);
    }
    return { digest, mediaType: MT.schema1Signed, size: bytes.length, bytes };
  }

  /** A schema1 document served before, by its digest. */
  async byDigest(name: V2Name, digest: string): Promise<StoredManifest | undefined> {
    const bytes = await readOptional(this.driver, schema1DocKey(name, digest), schema1DocMax(this.configs.maxSize));
    return bytes ? { digest, mediaType: MT.schema1Signed, size: bytes.length, bytes } : undefined;
  }
}
