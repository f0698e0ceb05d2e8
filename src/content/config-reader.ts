import { jsonDepthExceeds, MAX_JSON_DEPTH } from '../http/body.js';
import type { BlobStore } from './blob-store.js';
import type { V2Name } from './v2-names.js';

/** Why an image config cannot be read for a bridge view. */
export type ConfigUnavailableReason = 'not-linked' | 'missing' | 'too-large' | 'unreadable' | 'too-deep';

export class ConfigUnavailableError extends Error {
  constructor(
    readonly reason: ConfigUnavailableReason,
    readonly digest: string,
    /** the blob's size, when known */
    readonly size?: number,
    readonly limit?: number,
  ) {
    super(
      reason === 'too-large'
        ? `the image config ${digest} is too large: ${size} bytes, more than max_config_size (${limit} bytes)`
        : reason === 'not-linked'
          ? `the image config ${digest} is not in this repository`
          : reason === 'missing'
            ? `the image config ${digest} is not in storage`
            : reason === 'too-deep'
              ? `the image config ${digest} is JSON nested deeper than ${limit} levels`
              : `the image config ${digest} did not read back at the size it has in storage`,
    );
    this.name = 'ConfigUnavailableError';
  }
}

/** What the reader needs of the v2 uploads: whether a repository holds a blob. */
export interface BlobLinks {
  linked(name: V2Name, digest: string): Promise<boolean>;
}

/**
 * The one way the bridge (the v1 view, the schema1 view) reads an image config by digest (issue 10):
 * only a blob the repository links (spec §1.4: a blob of repository A is unknown in B), only up to
 * max_config_size (a config is parsed and re-encoded whole, so its size is memory and CPU), and
 * never more bytes than the stat said, whatever the driver delivers; and never JSON nested deeper
 * than MAX_JSON_DEPTH, checked here once for every reader (each of them parses the bytes whole):
 * 4 MiB of nested arrays cost JSON.parse ~2 s of the event loop, and a config pushed once to a
 * public repository would cost that on every anonymous schema1 GET and web tag page view. Real
 * configs nest four or five levels. The blob itself stays a v2 blob like any other (distribution
 * takes any config): only the bridge's views of it are refused.
 */
export class ConfigReader {
  constructor(
    private readonly blobs: BlobStore,
    private readonly links: BlobLinks,
    readonly maxSize: number,
  ) {}

  /** The config's bytes, or ConfigUnavailableError. */
  async readConfig(name: V2Name, digest: string): Promise<Buffer> {
    if (!(await this.links.linked(name, digest))) throw new ConfigUnavailableError('not-linked', digest);
    const info = await this.blobs.stat(digest);
    if (!info) throw new ConfigUnavailableError('missing', digest);
    if (info.size > this.maxSize) throw new ConfigUnavailableError('too-large', digest, info.size, this.maxSize);
    const out = Buffer.allocUnsafe(info.size);
    let filled = 0;
    const stream = await this.blobs.open(digest, 0, info.size, info.size);
    try {
      for await (const chunk of stream) {
        const c = chunk as Buffer;
        if (filled + c.length > info.size) throw new ConfigUnavailableError('unreadable', digest, info.size);
        c.copy(out, filled);
        filled += c.length;
      }
    } finally {
      stream.destroy();
    }
    if (filled !== info.size) throw new ConfigUnavailableError('unreadable', digest, info.size);
    // one linear pass, before any caller parses it
    if (jsonDepthExceeds(out, MAX_JSON_DEPTH)) throw new ConfigUnavailableError('too-deep', digest, info.size, MAX_JSON_DEPTH);
    return out;
  }
}
