import { GetObjectCommand, HeadObjectCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { PassThrough, Readable, Transform } from 'node:stream';
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
  /** ms: the most the store may stay silent on a request, and take for a listing page or a metadata object (default 120 s). */
  readonly timeoutMs?: number;
}

/** Most a listing page or an error document of the store may be (the SDK reads them whole). */
const MAX_ANSWER = 16 * 1024 * 1024;
/** Most names one directory listing may return (a store paging forever is not a tree). */
const MAX_LISTED = 10_000_000;
/**
 * Most characters those names may hold in all: a store may page on with fresh tokens, and at S3's
 * 1,024 bytes a key, 10,000,000 names are 10 GB of strings, past the heap (the import dies out of
 * memory). 64 MiB is ~1,000,000 digests in one directory, far beyond a registry's largest (the
 * revisions of one repository).
 */
export const MAX_LISTED_CHARS = 64 * 1024 * 1024;

/** Reads a body, refusing it past max bytes (without holding more than that). */
async function readCapped(body: AsyncIterable<Uint8Array>, max: number, what: string): Promise<Buffer> {
  const parts: Buffer[] = [];
  let n = 0;
  for await (const c of body) {
    n += c.length;
    if (n > max) throw new TooLargeError(`${what}: more than the ${max} bytes a metadata object may have`);
    parts.push(Buffer.from(c.buffer, c.byteOffset, c.length));
  }
  return Buffer.concat(parts);
}

/** `s3://bucket/prefix` → bucket and prefix. */
export function parseS3Url(u: string): { bucket: string; prefix: string } | undefined {
  const m = /^s3:\/\/([^/]+)\/?(.*)$/.exec(u);
  if (!m) return undefined;
  return { bucket: m[1]!, prefix: m[2]!.replace(/^\/+|\/+$/g, '') };
}

/**
 * What the operator is told when the store failed the import (refused, too large, no answer in
 * time, an S3 error answer), or undefined for anything else (a bug: let it show its stack).
 */
export function storeFailure(e: unknown, timeoutMs: number): string | undefined {
  if (e instanceof SourceRefusedError || e instanceof TooLargeError) return e.message;
  if (!(e instanceof Error)) return undefined;
  if (e.name === 'AbortError' || e.name === 'TimeoutError') return `no complete answer from the store within ${timeoutMs / 1000} s (${e.message})`;
  if ((e as { $metadata?: unknown }).$metadata !== undefined || /^(ECONN|ENOTFOUND|EAI_|ETIMEDOUT|EPIPE)/.test((e as NodeJS.ErrnoException).code ?? ''))
    return `the store: ${e.name !== 'Error' ? `${e.name}: ` : ''}${e.message}`;
  return undefined;
}

const status = (e: unknown): number | undefined => (e as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;

/**
 * A storage tree in an S3 bucket (the Python registry's s3 storage: its keys under storage_path),
 * read with the AWS SDK directly rather than through our S3 driver: the source's key names (the
 * Python registry's quote_plus escapes) are not keys our driver accepts.
 */
export class S3Tree implements SourceTree {
  private readonly client: S3Client;
  private readonly timeoutMs: number;
  constructor(private readonly o: S3TreeOptions) {
    this.timeoutMs = o.timeoutMs ?? 120_000;
    this.client = new S3Client({
      region: o.region ?? 'us-east-1',
      ...(o.endpoint ? { endpoint: o.endpoint, forcePathStyle: true } : {}),
      ...(o.accessKeyId && o.secretAccessKey ? { credentials: { accessKeyId: o.accessKeyId, secretAccessKey: o.secretAccessKey } } : {}),
      // the SDK waits forever by default: a store that accepts and never answers would hang the import
      requestHandler: { connectionTimeout: this.timeoutMs, socketTimeout: this.timeoutMs },
    });
    // the SDK reads a listing page or an error document whole before parsing it: refuse one past
    // MAX_ANSWER (object bodies are left alone: their readers bound them)
    this.client.middlewareStack.add(
      (next, context) => async (args) => {
        const out = await next(args);
        const res = out.response as { statusCode?: number; headers?: Record<string, string>; body?: unknown };
        const objectBody = context.commandName === 'GetObjectCommand' && (res.statusCode ?? 0) < 300;
        if (!objectBody && res.body instanceof Readable) {
          if (Number(res.headers?.['content-length'] ?? 0) > MAX_ANSWER) {
            res.body.destroy();
            throw new TooLargeError(`s3: an answer of ${res.headers!['content-length']} bytes to ${context.commandName}, more than ${MAX_ANSWER}`);
          }
          let n = 0;
          const src = res.body;
          res.body = src.pipe(
            new Transform({
              transform(c: Buffer, _e, cb) {
                n += c.length;
                if (n > MAX_ANSWER) cb(new TooLargeError(`s3: an answer to ${context.commandName} larger than ${MAX_ANSWER} bytes`));
                else cb(null, c);
              },
            }),
          );
        }
        return out;
      },
      { step: 'deserialize', priority: 'low', name: 'lrCapAnswer' },
    );
  }

  /** Small requests (listing pages, HEADs, metadata objects) must also finish in time: a trickle is no answer. */
  private deadline(): { abortSignal: AbortSignal } {
    return { abortSignal: AbortSignal.timeout(this.timeoutMs) };
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
    const seen = new Set<string>();
    let chars = 0;
    const add = (name: string): void => {
      if (out.has(name)) return;
      out.add(name);
      chars += name.length;
    };
    let token: string | undefined;
    do {
      const r = await this.client.send(
        new ListObjectsV2Command({ Bucket: this.o.bucket, Prefix: prefix, Delimiter: '/', ...(token ? { ContinuationToken: token } : {}) }),
        this.deadline(),
      );
      // names outside the prefix asked for are not in this directory
      for (const cp of r.CommonPrefixes ?? []) if (cp.Prefix?.startsWith(prefix)) add(cp.Prefix.slice(prefix.length).replace(/\/$/, ''));
      for (const o of r.Contents ?? []) if (o.Key?.startsWith(prefix) && o.Key !== prefix) add(o.Key.slice(prefix.length));
      if (out.size > MAX_LISTED) throw new SourceRefusedError(`${dir || '/'}: the store lists more than ${MAX_LISTED} names in it`);
      if (chars > MAX_LISTED_CHARS)
        throw new SourceRefusedError(`${dir || '/'}: the store lists names of more than ${MAX_LISTED_CHARS} characters in all in it`);
      token = r.IsTruncated ? r.NextContinuationToken : undefined;
      if (r.IsTruncated && !token) throw new SourceRefusedError(`${dir || '/'}: the store cut its listing short without a continuation token`);
      if (token !== undefined) {
        // a store handing out a token it gave before would page forever
        if (seen.has(token)) throw new SourceRefusedError(`${dir || '/'}: the store's listing goes round in a circle`);
        seen.add(token);
      }
    } while (token);
    return [...out].filter((n) => n !== '').sort();
  }

  async size(p: string): Promise<number | undefined> {
    try {
      const r = await this.client.send(new HeadObjectCommand({ Bucket: this.o.bucket, Key: this.key(p) }), this.deadline());
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
      const signal = this.deadline();
      const r = await this.client.send(new GetObjectCommand({ Bucket: this.o.bucket, Key: this.key(p), Range: `bytes=0-${maxBytes}` }), signal);
      // a store may ignore the Range: never hold more than the cap, whatever it sends
      const body = r.Body as Readable;
      const onAbort = (): void => void body.destroy(new Error(`s3: ${p}: not read within ${this.timeoutMs / 1000} s`));
      signal.abortSignal.addEventListener('abort', onAbort, { once: true });
      try {
        return await readCapped(body, maxBytes, p);
      } finally {
        signal.abortSignal.removeEventListener('abort', onAbort);
        body.destroy();
      }
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
