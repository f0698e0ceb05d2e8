import { GetObjectCommand, HeadObjectCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { PassThrough, Readable } from 'node:stream';
import { SMALL_OBJECT_MAX, SourceRefusedError, TooLargeError, type SourceTree } from './source.js';

export interface S3TreeOptions {
  readonly bucket: string;
  /** Key prefix of the tree (the Python registry's storage_path in the bucket), no leading '/'. */
  readonly prefix: string;
  /** Endpoint URL (Ceph RGW, MinIO, …); unset: AWS. Path-style addressing when set. */
  readonly endpoint?: string;
  readonly region?: string;
  readonly accessKeyId?: string;
  readonly secretAccessKey?: string;
}

/** `s3://bucket/prefix` → bucket and prefix. */
export function parseS3Url(u: string): { bucket: string; prefix: string } | undefined {
  const m = /^s3:\/\/([^/]+)\/?(.*)$/.exec(u);
  if (!m) return undefined;
  return { bucket: m[1]!, prefix: m[2]!.replace(/^\/+|\/+$/g, '') };
}

const status = (e: unknown): number | undefined => (e as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;

/**
 * A storage tree in an S3 bucket (the Python registry's s3 storage: its keys under storage_path),
 * read with the AWS SDK directly rather than through our S3 driver: the source's key names (the
 * Python registry's quote_plus escapes) are not keys our driver accepts.
 */
export class S3Tree implements SourceTree {
  private readonly client: S3Client;
  constructor(private readonly o: S3TreeOptions) {
    this.client = new S3Client({
      region: o.region ?? 'us-east-1',
      ...(o.endpoint ? { endpoint: o.endpoint, forcePathStyle: true } : {}),
      ...(o.accessKeyId && o.secretAccessKey ? { credentials: { accessKeyId: o.accessKeyId, secretAccessKey: o.secretAccessKey } } : {}),
    });
  }

  get describe(): string {
    return `s3://${this.o.bucket}/${this.o.prefix}`;
  }

  private key(p: string): string {
    const parts = p.split('/').filter((s) => s !== '');
    // a listing may hold such names, and a server may resolve them in the request's path: the key
    // would then be one outside the tree's prefix
    if (parts.some((s) => s === '.' || s === '..')) throw new SourceRefusedError(`${p}: a path outside the tree`);
    const rel = parts.join('/');
    return this.o.prefix ? (rel ? `${this.o.prefix}/${rel}` : this.o.prefix) : rel;
  }

  async list(dir: string): Promise<string[]> {
    const base = this.key(dir);
    const prefix = base ? `${base}/` : '';
    const out = new Set<string>();
    let token: string | undefined;
    do {
      const r = await this.client.send(
        new ListObjectsV2Command({ Bucket: this.o.bucket, Prefix: prefix, Delimiter: '/', ...(token ? { ContinuationToken: token } : {}) }),
      );
      for (const cp of r.CommonPrefixes ?? []) if (cp.Prefix) out.add(cp.Prefix.slice(prefix.length).replace(/\/$/, ''));
      for (const o of r.Contents ?? []) if (o.Key && o.Key !== prefix) out.add(o.Key.slice(prefix.length));
      token = r.IsTruncated ? r.NextContinuationToken : undefined;
    } while (token);
    return [...out].filter((n) => n !== '').sort();
  }

  async size(p: string): Promise<number | undefined> {
    try {
      const r = await this.client.send(new HeadObjectCommand({ Bucket: this.o.bucket, Key: this.key(p) }));
      return r.ContentLength ?? 0;
    } catch (e) {
      if (status(e) === 404) return undefined;
      throw e;
    }
  }

  async read(p: string, maxBytes = SMALL_OBJECT_MAX): Promise<Buffer | undefined> {
    const size = await this.size(p);
    if (size === undefined) return undefined;
    if (size > maxBytes) throw new TooLargeError(`${p}: ${size} bytes, more than the ${maxBytes} a metadata object may have`);
    if (size === 0) return Buffer.alloc(0);
    try {
      // the object may have been replaced by a bigger one since the HEAD: never read past the cap
      const r = await this.client.send(new GetObjectCommand({ Bucket: this.o.bucket, Key: this.key(p), Range: `bytes=0-${maxBytes}` }));
      const body = Buffer.from(await r.Body!.transformToByteArray());
      if (body.length > maxBytes) throw new TooLargeError(`${p}: more than the ${maxBytes} bytes a metadata object may have`);
      return body;
    } catch (e) {
      if (status(e) === 404) return undefined;
      throw e;
    }
  }

  open(p: string): Readable {
    const out = new PassThrough({ highWaterMark: 1 << 20 });
    this.client.send(new GetObjectCommand({ Bucket: this.o.bucket, Key: this.key(p) })).then(
      (r) => {
        const body = r.Body as Readable;
        body.on('error', (e) => out.destroy(e));
        body.pipe(out);
      },
      (e: unknown) => out.destroy(e as Error),
    );
    return out;
  }

  close(): void {
    this.client.destroy();
  }
}
