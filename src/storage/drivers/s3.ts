import { createHash } from 'node:crypto';
import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { PassThrough, pipeline, Readable, Transform, type TransformCallback } from 'node:stream';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
  UploadPartCopyCommand,
  type CompletedPart,
  type S3ClientConfig,
  type ServerSideEncryption,
  type StorageClass,
} from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { ChunkedAnswerError, plainGet } from './s3-get.js';
import { answerError, AnswerTooLargeError, encodeKeyPath, ERROR_BODY_CAP, S3Signer, type SignedAnswer } from './s3-sign.js';
import {
  endWriterStream,
  ContentTooLargeError,
  InvalidOffsetError,
  SizeMismatchError,
  sizeToCheck,
  PathNotFoundError,
  StorageError,
  StorageUnavailableError,
  isValidSegment,
  validateKey,
  type FileInfo,
  type GetOptions,
  type PutOptions,
  type ReaderOptions,
  type ResumableState,
  type ResumableWriter,
  type StorageDriver,
  type Writer,
  type WriterOptions,
} from '../driver.js';
import { PartBufferWriter } from '../part-writer.js';

const MiB = 1024 * 1024;
/** S3's smallest part (all but the last part of a multipart upload). */
export const MIN_PART_SIZE = 5 * MiB;
/** S3's largest part and largest single CopyObject source. */
const MAX_PART_SIZE = 5 * 1024 * MiB;
const MAX_PARTS = 10_000;
/** distribution's default chunksize. */
export const DEFAULT_PART_SIZE = 10 * MiB;
/** Largest page of a listing read (a page holds at most 1,000 keys of at most 1 KiB each). */
const LIST_PAGE_CAP = 16 * MiB;
/** Empty pages in a row a listing may have before it is taken for one that never ends. */
const MAX_EMPTY_PAGES = 100;
/** Objects deleted per DeleteObjects call (the S3 limit). */
const DELETE_BATCH = 1000;
/**
 * The driver's own objects (move locks) live below this top-level prefix. '~' is never valid in a
 * key segment, so nothing here can be addressed through the driver, and list() drops it.
 */
const INTERNAL = '~lr';
/**
 * How long the store may take to complete an answer's headers, counted from the end of the request
 * (a GET: from its start, connecting included): past it the request fails (and is retried as a
 * connection failure is). The idle timeout (60 s of silence) alone let a store that trickles header
 * bytes, each within it, hold a request for ever. Generous: a healthy store answers within
 * milliseconds, and S3 starts the answer of a long copy or CompleteMultipartUpload at once (its
 * progress comes in the body).
 */
export const DEFAULT_HEADERS_TIMEOUT_MS = 60_000;
/** Requests through the SDK with a body larger than this get no headers deadline (the body's upload takes its own time; the idle timeout stays). */
const SDK_DEADLINE_BODY_MAX = MiB;
/** A move lock older than this was left by a killed process: it may be broken. */
const STALE_LOCK_MS = 5 * 60 * 1000;

export interface S3DriverOptions {
  readonly bucket: string;
  /** Region for signing (RGW and most S3-compatible stores accept any; us-east-1 by default). */
  readonly region?: string;
  /** Full endpoint URL (distribution's regionendpoint; Python's boto_host/boto_port/s3_secure). Unset: AWS. */
  readonly endpoint?: string;
  /** Path-style addressing (bucket in the path): the default when an endpoint is given. */
  readonly forcePathStyle?: boolean;
  /** Static credentials; unset: the AWS SDK's default chain (env, shared files, instance roles). */
  readonly accessKeyId?: string;
  readonly secretAccessKey?: string;
  readonly sessionToken?: string;
  /** Key prefix inside the bucket (distribution's rootdirectory, Python's storage_path); no slashes at the ends. */
  readonly rootDirectory?: string;
  /** Multipart part size for writers (≥ 5 MiB; default 10 MiB). A writer holds at most two parts in memory. */
  readonly partSize?: number;
  /** Server-side encryption (AES256, or aws:kms with keyId). */
  readonly encrypt?: boolean;
  readonly kmsKeyId?: string;
  readonly storageClass?: string;
  /** Accept any TLS certificate of the endpoint (distribution's skipverify). */
  readonly skipVerify?: boolean;
  /** Seconds a pre-signed GET URL stays valid (distribution: 20 minutes). */
  readonly presignExpiry?: number;
  /** Parallel sockets to the store. */
  readonly maxSockets?: number;
  /**
   * Every call through the AWS SDK, as for AWS's virtual-hosted endpoints (tests keep that path
   * proven on RGW). Default: the driver's own signed requests and bare GETs where the endpoint allows.
   */
  readonly sdkOnly?: boolean;
  /**
   * Milliseconds the store may take to complete an answer's headers (DEFAULT_HEADERS_TIMEOUT_MS, 60 s;
   * not a configuration key: tests set it short).
   */
  readonly headersTimeoutMs?: number;
}

/** Reader streams hand on bytes in pieces of this size (the last one smaller). */
const READ_BATCH = 1024 * 1024;

/** Collects small chunks into pieces of `size` bytes (errors of the source are passed on by the caller). */
class Batcher extends Transform {
  private parts: Buffer[] = [];
  private bytes = 0;
  private total = 0;
  /** `expect`: the bytes the source must deliver, no more, no fewer (else the stream fails). */
  constructor(
    private readonly size: number,
    private readonly expect?: number,
  ) {
    super({ highWaterMark: 2 * size });
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.total += chunk.length;
    if (this.expect !== undefined && this.total > this.expect) return cb(new Error(`s3: GET answer longer than the ${this.expect} bytes asked`));
    this.parts.push(chunk);
    this.bytes += chunk.length;
    if (this.bytes >= this.size) {
      this.push(this.parts.length === 1 ? this.parts[0] : Buffer.concat(this.parts, this.bytes));
      this.parts = [];
      this.bytes = 0;
    }
    cb();
  }
  override _flush(cb: TransformCallback): void {
    if (this.expect !== undefined && this.total !== this.expect)
      return cb(new Error(`s3: GET answer ended after ${this.total} of the ${this.expect} bytes asked`));
    if (this.bytes > 0) this.push(this.parts.length === 1 ? this.parts[0] : Buffer.concat(this.parts, this.bytes));
    this.parts = [];
    cb();
  }
}

/** The text of an XML element (S3 escapes &, <, >, quotes and control characters). */
function xmlText(s: string): string {
  return s.replace(/&(#x[0-9a-fA-F]+|#\d+|amp|lt|gt|quot|apos);/g, (_, e: string) =>
    e === 'amp'
      ? '&'
      : e === 'lt'
        ? '<'
        : e === 'gt'
          ? '>'
          : e === 'quot'
            ? '"'
            : e === 'apos'
              ? "'"
              : String.fromCodePoint(e[1] === 'x' ? parseInt(e.slice(2), 16) : Number(e.slice(1))),
  );
}
function xmlEscape(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' })[c]!);
}

/** The body of an error answer, at most cap bytes of it (then the answer is dropped: its rest may never end). */
function readCapped(res: Readable, cap: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    let n = 0;
    const done = (): void => resolve(Buffer.concat(parts).toString('utf8'));
    res.on('data', (c: Buffer) => {
      parts.push(c.subarray(0, cap - n));
      n += c.length;
      if (n >= cap) {
        res.removeAllListeners('data');
        res.destroy();
        done();
      }
    });
    res.once('end', done);
    res.once('error', reject);
  });
}

/**
 * At most cap bytes of body: past them, the answer is dropped, and the stream ends there (truncate:
 * enough of an error document) or fails.
 */
function capBody(body: Readable, cap: number, truncate: boolean): Readable {
  let n = 0;
  const out = new PassThrough();
  const onData = (c: Buffer): void => {
    const room = cap - n;
    n += c.length;
    if (n <= cap) {
      if (!out.write(c)) body.pause();
      return;
    }
    body.off('data', onData);
    body.destroy();
    if (truncate) out.end(c.subarray(0, room));
    else out.destroy(new Error(`s3: answer larger than ${cap} bytes`));
  };
  body.on('data', onData);
  out.on('drain', () => body.resume());
  body.once('end', () => out.end());
  body.once('error', (e) => out.destroy(e));
  out.once('close', () => body.destroy());
  return out;
}

/**
 * The continuation token of a ListObjectsV2 page, undefined after the last page. A page said to be
 * truncated without a token to go on with is an error: ending the listing there would hand a part
 * of it on as the whole (a tag list, the catalog, or the garbage collector's walk, short of keys).
 */
function nextToken(r: { IsTruncated?: boolean; NextContinuationToken?: string }, label: string): string | undefined {
  if (!r.IsTruncated) return undefined;
  if (!r.NextContinuationToken) throw new StorageError(`s3: a truncated listing without a continuation token: ${label}`, label);
  return r.NextContinuationToken;
}

/** UTF-8 binary order, S3's order of keys. */
function keyAfter(a: string, b: string): boolean {
  return Buffer.compare(Buffer.from(a), Buffer.from(b)) > 0;
}

/**
 * The pages of one listing (ListObjectsV2): S3 hands out keys in ascending order, each page past
 * the one before, so a page that brings no key past those already seen means the store (or a
 * proxy in front) serves pages over again; left alone, the listing would never end, asking the
 * store as fast as it answers. Empty pages are allowed, a bounded number of them in a row.
 */
class ListingProgress {
  private max: string | undefined;
  private empty = 0;
  constructor(private readonly label: string) {}

  /** After a page: its keys and common prefixes (in any order). */
  page(keys: Iterable<string>): void {
    let any = false;
    let advanced = false;
    for (const k of keys) {
      any = true;
      if (this.max === undefined || keyAfter(k, this.max)) {
        this.max = k;
        advanced = true;
      }
    }
    if (any && !advanced) throw new StorageError(`s3: the store's listing repeats itself (a page of keys already listed): ${this.label}`, this.label);
    this.empty = any ? 0 : this.empty + 1;
    if (this.empty > MAX_EMPTY_PAGES)
      throw new StorageError(`s3: the store's listing goes on with ${MAX_EMPTY_PAGES} empty pages in a row: ${this.label}`, this.label);
  }
}

/** An object store driver that can send clients to the bytes directly. */
export interface RedirectingDriver extends StorageDriver {
  /** A URL that GETs the key's bytes without credentials, valid for a while; undefined if the key is missing. */
  redirectURL(key: string): Promise<string | undefined>;
}

export function canRedirect(d: StorageDriver): d is RedirectingDriver {
  return typeof (d as Partial<RedirectingDriver>).redirectURL === 'function';
}

/** The S3 API's error name (SDK v3: `name`; HEAD answers have no body, so only the status). */
function errName(e: unknown): string {
  return String((e as { name?: unknown; Code?: unknown }).name ?? (e as { Code?: unknown }).Code ?? '');
}
function errStatus(e: unknown): number | undefined {
  return (e as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
}
function isMissing(e: unknown): boolean {
  const n = errName(e);
  if (n === 'NoSuchBucket') return false;
  return n === 'NoSuchKey' || n === 'NotFound' || (errStatus(e) === 404 && n !== 'NoSuchUpload');
}

/**
 * Storage on an S3-compatible object store (AWS S3, Ceph RGW, MinIO…), on the AWS SDK v3.
 *
 * - putContent is one PutObject (atomic). Writers stream through a multipart upload at the key
 *   itself, so the bytes appear at once, complete, on CompleteMultipartUpload; memory is bounded by
 *   two parts. A writer that appends continues the key with UploadPartCopy of its current bytes
 *   (or, under 5 MiB, by reading them back into the first part).
 * - move is CopyObject (multipart copy above 5 GiB) then DeleteObject, under a lock object created
 *   with `If-None-Match: *`: of concurrent moves of one key exactly one copies, the others find the
 *   lock taken (or the key gone) and reject with PathNotFoundError.
 * - prefixes are what ListObjectsV2 with a '/' delimiter reports; they vanish with their last key.
 */
export type S3StorageDriver = RedirectingDriver & {
  readonly client: S3Client;
  readonly bucket: string;
  /** Fails with a clear message when the bucket cannot be used (startup check). */
  check(): Promise<void>;
  putContentIfAbsent(key: string, data: Buffer): Promise<boolean>;
  atomicWriter(key: string): Promise<Writer>;
  removeObject(key: string): Promise<void>;
  purgeAbandonedWrites(olderThanMs: number): Promise<number>;
  close(): Promise<void>;
};

export function createS3Driver(options: S3DriverOptions): S3StorageDriver {
  return new S3Driver(options);
}

class S3Driver implements StorageDriver {
  readonly name = 's3';
  readonly client: S3Client;
  readonly bucket: string;
  private readonly root: string;
  readonly partSize: number;
  private readonly sse: { ServerSideEncryption?: ServerSideEncryption; SSEKMSKeyId?: string };
  private readonly storageClass: StorageClass | undefined;
  private readonly presignExpiry: number;
  /** The sockets of the SDK's client, shared by the driver's own GETs (reader). */
  private readonly httpAgent: HttpAgent;
  private readonly httpsAgent: HttpsAgent;
  /** Our own SigV4 requests for the small calls (s3-sign.ts); only for a path-style endpoint. */
  private readonly signer: S3Signer | undefined;
  private readonly headersTimeoutMs: number;

  constructor(o: S3DriverOptions) {
    this.bucket = o.bucket;
    const root = (o.rootDirectory ?? '').replace(/^\/+|\/+$/g, '');
    this.root = root === '' ? '' : `${root}/`;
    this.partSize = o.partSize ?? DEFAULT_PART_SIZE;
    if (!Number.isSafeInteger(this.partSize) || this.partSize < MIN_PART_SIZE || this.partSize > MAX_PART_SIZE) {
      throw new Error(`s3: part size must be between 5 MiB and 5 GiB, got ${this.partSize}`);
    }
    this.sse = o.encrypt ? (o.kmsKeyId ? { ServerSideEncryption: 'aws:kms', SSEKMSKeyId: o.kmsKeyId } : { ServerSideEncryption: 'AES256' }) : {};
    this.storageClass = o.storageClass && o.storageClass.toUpperCase() !== 'NONE' ? (o.storageClass as StorageClass) : undefined;
    this.presignExpiry = o.presignExpiry ?? 20 * 60;
    this.headersTimeoutMs = o.headersTimeoutMs ?? DEFAULT_HEADERS_TIMEOUT_MS;
    if (!Number.isSafeInteger(this.headersTimeoutMs) || this.headersTimeoutMs <= 0) {
      throw new Error(`s3: the headers timeout must be a positive number of milliseconds, got ${this.headersTimeoutMs}`);
    }
    const maxSockets = o.maxSockets ?? 64;
    this.httpAgent = new HttpAgent({ keepAlive: true, maxSockets });
    this.httpsAgent = new HttpsAgent({ keepAlive: true, maxSockets, rejectUnauthorized: !o.skipVerify });
    const config: S3ClientConfig = {
      region: o.region ?? 'us-east-1',
      forcePathStyle: o.forcePathStyle ?? o.endpoint !== undefined,
      // the SDK's default (when_supported) adds CRC32 trailers to every upload: extra CPU, and
      // stores older than 2025 (RGW 16) reject them on UploadPart; S3's own MD5/sha256 rules remain
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      maxAttempts: 3,
      requestHandler: {
        httpAgent: this.httpAgent,
        httpsAgent: this.httpsAgent,
        connectionTimeout: 10_000,
      },
      ...(o.endpoint ? { endpoint: o.endpoint } : {}),
      ...(o.accessKeyId && o.secretAccessKey
        ? { credentials: { accessKeyId: o.accessKeyId, secretAccessKey: o.secretAccessKey, ...(o.sessionToken ? { sessionToken: o.sessionToken } : {}) } }
        : {}),
    };
    this.client = new S3Client(config);
    // the SDK reads whole answers (error documents, listings, results) into memory: a store's
    // answer of any size, or one that never ends, must not be (object bodies stream, uncapped)
    const capBodies =
      (next: (args: unknown) => Promise<{ response: unknown }>, context: { commandName?: string }) =>
      async (args: unknown): Promise<{ response: unknown }> => {
        const out = await next(args);
        const res = out.response as { statusCode?: number; body?: unknown };
        if (res.body instanceof Readable) {
          if ((res.statusCode ?? 0) >= 300) res.body = capBody(res.body, ERROR_BODY_CAP, true);
          else if (context.commandName !== 'GetObjectCommand') res.body = capBody(res.body, LIST_PAGE_CAP, false);
        }
        return out;
      };
    this.client.middlewareStack.addRelativeTo(capBodies as unknown as Parameters<S3Client['middlewareStack']['addRelativeTo']>[0], {
      relation: 'after',
      toMiddleware: 'deserializerMiddleware',
      name: 'legacyRegistryCapBodies',
    });
    this.withHeadersDeadline();
    this.plainGetBroken = o.sdkOnly === true;
    const pathOnly = !o.sdkOnly && o.endpoint !== undefined && (config.forcePathStyle ?? false) && ['', '/'].includes(new URL(o.endpoint).pathname);
    this.signer = pathOnly
      ? new S3Signer(
          o.endpoint!,
          String(config.region),
          async () => this.client.config.credentials(),
          { http: this.httpAgent, https: this.httpsAgent },
          this.headersTimeoutMs,
        )
      : undefined;
  }

  /**
   * The SDK's requests get the headers deadline too (its handler has an idle timeout only, and none
   * is set): its handler's answer comes when the headers are complete, so a request is given up (its
   * abort signal) when they are not within the deadline. Counted from the start, so only for
   * requests without a large body (a part's upload through the SDK keeps the idle timeout alone).
   */
  private withHeadersDeadline(): void {
    type Handle = (request: { body?: unknown }, options?: { abortSignal?: unknown }) => Promise<unknown>;
    const handler = this.client.config.requestHandler as unknown as { handle: Handle };
    const inner = handler.handle.bind(handler);
    const ms = this.headersTimeoutMs;
    handler.handle = (request, options = {}) => {
      const body = request.body;
      const small = body === undefined || body === null || ((typeof body === 'string' || body instanceof Uint8Array) && body.length <= SDK_DEADLINE_BODY_MAX);
      if (!small || options.abortSignal !== undefined) return inner(request, options);
      const abort = new AbortController();
      let timer: NodeJS.Timeout | undefined;
      const deadline = new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          reject(new Error(`s3: no complete answer headers within ${ms / 1000} s`));
          abort.abort();
        }, ms);
      });
      return Promise.race([inner(request, { ...options, abortSignal: abort.signal }), deadline]).finally(() => clearTimeout(timer));
    };
  }

  /**
   * A small request through the signer, retried (twice, as the SDK does) after a connection failure
   * or a 500/502/503/504. Resolves with any other answer; the caller maps non-2xx with answerError.
   */
  private async raw(
    label: string,
    method: string,
    fullKey: string | null,
    headers: Record<string, string> = {},
    body?: Buffer | Buffer[],
    query?: Record<string, string>,
    limit?: number,
  ): Promise<SignedAnswer> {
    let last: unknown;
    for (let attempt = 0; attempt < 3; attempt++) {
      if (attempt > 0) await new Promise((r) => setTimeout(r, 50 * attempt));
      try {
        const path = fullKey === null ? `/${encodeURIComponent(this.bucket)}` : encodeKeyPath(this.bucket, fullKey);
        const a = await this.signer!.send(method, path, headers, body, query, limit);
        if (a.status < 500 || a.status === 501 || a.status > 504) return a;
        last = answerError(method, a);
      } catch (e) {
        // longer than the caller allows: the same again from another attempt
        if (e instanceof AnswerTooLargeError) throw new ContentTooLargeError(label, e.limit);
        last = e;
      }
    }
    if ((last as { $metadata?: unknown }).$metadata) this.fail(last, label);
    throw new StorageUnavailableError(`s3: unreachable: ${(last as Error)?.message ?? String(last)}`, label, { cause: last });
  }

  /** The SSE / storage class headers of PUTs (the SDK's extraPutFields, as headers). */
  private putHeaders(): Record<string, string> {
    const h: Record<string, string> = {};
    if (this.sse.ServerSideEncryption) h['x-amz-server-side-encryption'] = this.sse.ServerSideEncryption;
    if (this.sse.SSEKMSKeyId) h['x-amz-server-side-encryption-aws-kms-key-id'] = this.sse.SSEKMSKeyId;
    if (this.storageClass) h['x-amz-storage-class'] = this.storageClass;
    return h;
  }

  /** Fails with a clear message when the bucket cannot be used (startup check). */
  async check(): Promise<void> {
    try {
      await this.client.send(new HeadBucketCommand({ Bucket: this.bucket }));
      await this.client.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: this.root, MaxKeys: 1 }));
    } catch (e) {
      const status = errStatus(e);
      const why =
        status === 404
          ? 'the bucket does not exist'
          : status === 403
            ? 'access denied (check the access key, secret key and region)'
            : `${errName(e) || 'error'}: ${(e as Error).message}`;
      throw new Error(`s3: cannot use bucket ${JSON.stringify(this.bucket)} at ${this.describeEndpoint()}: ${why}`, { cause: e });
    }
  }

  private describeEndpoint(): string {
    const ep = this.client.config.endpoint;
    return ep ? 'the configured endpoint' : 'AWS';
  }

  // ---- keys

  private k(key: string): string {
    return this.root + key;
  }

  /** Maps the SDK's errors: a missing key → PathNotFoundError, a missing bucket or refused access → StorageUnavailableError. */
  private fail(e: unknown, key: string): never {
    if (e instanceof StorageError) throw e;
    if (isMissing(e)) throw new PathNotFoundError(key);
    const n = errName(e);
    const status = errStatus(e);
    if (
      n === 'NoSuchBucket' ||
      n === 'AccessDenied' ||
      n === 'InvalidAccessKeyId' ||
      n === 'SignatureDoesNotMatch' ||
      status === 403 ||
      status === 503 ||
      status === undefined
    ) {
      throw new StorageUnavailableError(`s3: ${n || 'unreachable'}: ${(e as Error).message ?? String(e)}`, key, { cause: e });
    }
    throw e;
  }

  private async send<T>(key: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      this.fail(e, key);
    }
  }

  // ---- StorageDriver

  async getContent(key: string, options?: GetOptions): Promise<Buffer> {
    validateKey(key);
    const max = options?.maxSize;
    if (this.signer) {
      const a = await this.raw(key, 'GET', this.k(key), {}, undefined, undefined, max);
      if (a.status === 200) return a.body;
      this.fail(answerError('GET', a), key);
    }
    const r = await this.send(key, () => this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: this.k(key) })));
    if (max === undefined) return Buffer.from(await r.Body!.transformToByteArray());
    // bounded: an answer announced, or running, past max is dropped there
    const body = r.Body as unknown as Readable;
    if ((r.ContentLength ?? 0) > max) {
      body.destroy();
      throw new ContentTooLargeError(key, max);
    }
    const parts: Buffer[] = [];
    let n = 0;
    for await (const c of body) {
      n += (c as Buffer).length;
      if (n > max) {
        body.destroy();
        throw new ContentTooLargeError(key, max);
      }
      parts.push(c as Buffer);
    }
    return Buffer.concat(parts);
  }

  async putContent(key: string, data: Buffer, _options?: PutOptions): Promise<void> {
    validateKey(key);
    await this.putObject(key, Buffer.from(data));
  }

  /**
   * Creates the object only if the key holds none (PutObject with `If-None-Match: *`): true when this
   * call created it. Of concurrent calls for one missing key exactly one returns true (the storage
   * locks of several registry nodes rely on it).
   */
  async putContentIfAbsent(key: string, data: Buffer): Promise<boolean> {
    validateKey(key);
    const body = Buffer.from(data);
    for (let attempt = 0; ; attempt++) {
      try {
        if (this.signer) {
          const a = await this.raw(key, 'PUT', this.k(key), { 'if-none-match': '*', ...this.putHeaders() }, body);
          if (a.status !== 200) throw answerError('PUT', a);
        } else {
          await this.client.send(
            new PutObjectCommand({ Bucket: this.bucket, Key: this.k(key), Body: body, ContentLength: body.length, IfNoneMatch: '*', ...this.extraPutFields() }),
          );
        }
        return true;
      } catch (e) {
        if (errStatus(e) === 412 || errName(e) === 'PreconditionFailed') return false;
        // AWS: 409 ConditionalRequestConflict while another conditional write of the key is in flight
        if (errStatus(e) === 409 && attempt < 5) {
          if (await this.headIfAny(key)) return false;
          await new Promise((r) => setTimeout(r, 20 * (attempt + 1)));
          continue;
        }
        this.fail(e, key);
      }
    }
  }

  private async putObject(key: string, body: Buffer): Promise<void> {
    if (this.signer) {
      const a = await this.raw(key, 'PUT', this.k(key), this.putHeaders(), body);
      if (a.status !== 200) this.fail(answerError('PUT', a), key);
      return;
    }
    await this.send(key, () =>
      this.client.send(
        new PutObjectCommand({
          Bucket: this.bucket,
          Key: this.k(key),
          Body: body,
          ContentLength: body.length,
          ...this.sse,
          ...(this.storageClass ? { StorageClass: this.storageClass } : {}),
        }),
      ),
    );
  }

  async reader(key: string, offset = 0, length?: number, options?: ReaderOptions): Promise<Readable> {
    validateKey(key);
    if (!Number.isSafeInteger(offset) || offset < 0) throw new InvalidOffsetError(key, offset);
    if (length !== undefined && (!Number.isSafeInteger(length) || length < 0)) throw new InvalidOffsetError(key, offset);
    const known = sizeToCheck(offset, length, options);
    if (length === 0) {
      const { size } = await this.head(key);
      if (known !== undefined && size !== known) throw new SizeMismatchError(key, known, size);
      if (offset > size) throw new InvalidOffsetError(key, offset);
      return Readable.from([]);
    }
    const range = offset === 0 && length === undefined ? undefined : `bytes=${offset}-${length === undefined ? '' : offset + length - 1}`;
    const r = await this.rawGet(key, range);
    if (r.status === 416) {
      r.body.resume();
      // at or past the end: an empty stream at the end, an error past it
      const { size } = await this.head(key);
      if (known !== undefined && size !== known) throw new SizeMismatchError(key, known, size);
      if (offset === size) return Readable.from([]);
      throw new InvalidOffsetError(key, offset);
    }
    // the bytes the answer holds: those asked, or the store's answer is not used (a store, or a
    // proxy or cache in front of it, that ignores the Range and answers 200 with the whole object,
    // or 206 for other bytes, would otherwise have them served as the range asked)
    let expect: number | undefined;
    /** The size of the whole object as this answer tells it (undefined: not told). */
    let total: number | undefined;
    if (range === undefined) {
      if (r.status !== 200) return this.wrongAnswer(key, range, r);
      // a whole object: as many bytes as the caller knows it to hold, when it says (else the answer's
      // Content-Length, which the HTTP client holds the body to)
      expect = known;
      total = r.contentLength;
    } else {
      const m = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(r.contentRange?.trim() ?? '');
      const [start, end, whole] = m ? [Number(m[1]), Number(m[2]), Number(m[3])] : [NaN, NaN, NaN];
      const askedEnd = length === undefined ? Infinity : offset + length - 1;
      // the end may stop short of the one asked only at the end of the object
      const ok = r.status === 206 && start === offset && end >= start && end <= askedEnd && (end === askedEnd || end === whole - 1);
      if (!ok) return this.wrongAnswer(key, range, r);
      expect = end - start + 1;
      total = whole;
    }
    // the object the GET found is not the one the caller was told of (a HEAD answered another size
    // than the GET finds): its bytes, cut or padded to the size told, would pass as the object's
    if (known !== undefined && total !== undefined && total !== known) {
      r.body.destroy();
      throw new SizeMismatchError(key, known, total);
    }
    if (r.contentLength !== undefined && expect !== undefined && r.contentLength !== expect) return this.wrongAnswer(key, range, r);
    if (r.batched) return r.body;
    // the HTTP client delivers 64 KiB pieces; handing them on in 1 MiB batches costs one copy but
    // saves most of the per-write cost of the client's socket (measured: bench/s3.ts downloads)
    const batched = new Batcher(READ_BATCH, expect);
    // pipeline: a failed S3 body fails the batched stream, and a reader that stops destroys the body
    pipeline(r.body, batched, () => undefined);
    return batched;
  }

  /** A GET answer for other bytes than those asked: not read, an error. */
  private wrongAnswer(key: string, range: string | undefined, r: { status: number; body: Readable; contentRange: string | undefined }): never {
    r.body.destroy();
    throw new StorageError(
      `s3: GET ${key}${range ? ` (Range ${range})` : ''} answered ${r.status}${r.contentRange ? ` Content-Range ${JSON.stringify(r.contentRange.slice(0, 80))}` : ''}: not the bytes asked`,
      key,
    );
  }

  /**
   * GET of the key (with a Range header) with a pre-signed URL, bypassing the SDK's response
   * handling: on an http: endpoint a bare GET on a socket that reads into one reused buffer
   * (s3-get.ts: ~0.4 s CPU/GiB received instead of ~3 through node:http), else node:http with the
   * driver's keep-alive agents. Resolves with 200/206 or 416 and the body (`batched`: already in
   * READ_BATCH pieces); other answers become the driver's errors. Connection failures before the
   * answer, and 500/502/503/504, are retried twice, as the SDK does.
   */
  private async rawGet(
    key: string,
    range: string | undefined,
  ): Promise<{ status: number; body: Readable; batched: boolean; contentRange: string | undefined; contentLength: number | undefined }> {
    let last: unknown;
    for (let attempt = 0; attempt < 3; attempt++) {
      if (attempt > 0) await new Promise((r) => setTimeout(r, 50 * attempt));
      let url: URL;
      try {
        // the Range header is sent unsigned: a pre-signed URL binds the method, key and host only
        url = this.signer
          ? await this.signer.presignGet(encodeKeyPath(this.bucket, this.k(key)), 15 * 60)
          : new URL(await getSignedUrl(this.client, new GetObjectCommand({ Bucket: this.bucket, Key: this.k(key) }), { expiresIn: 15 * 60 }));
      } catch (e) {
        this.fail(e, key);
      }
      const headers: Record<string, string> = range ? { Range: range } : {};
      let status: number;
      let body: Readable;
      let batched = false;
      let answered: (name: string) => string | undefined;
      try {
        if (url.protocol === 'http:' && !this.plainGetBroken) {
          try {
            let hs: Map<string, string>;
            ({ status, body, headers: hs } = await plainGet(url, headers, { piece: READ_BATCH, timeoutMs: 60_000, headersTimeoutMs: this.headersTimeoutMs }));
            answered = (name) => hs.get(name);
            batched = true;
          } catch (e) {
            if (!(e instanceof ChunkedAnswerError)) throw e;
            // a store that answers GETs without Content-Length: node:http from now on
            this.plainGetBroken = true;
            let res: IncomingMessage;
            ({ status, body: res } = await this.nodeGet(url, headers));
            body = res;
            answered = (name) => [res.headers[name]].flat()[0];
          }
        } else {
          let res: IncomingMessage;
          ({ status, body: res } = await this.nodeGet(url, headers));
          body = res;
          answered = (name) => [res.headers[name]].flat()[0];
        }
      } catch (e) {
        last = e;
        continue;
      }
      if (status === 200 || status === 206 || status === 416) {
        const cl = answered('content-length');
        return {
          status,
          body,
          batched,
          contentRange: answered('content-range'),
          contentLength: cl !== undefined && /^\s*\d+\s*$/.test(cl) ? Number(cl) : undefined,
        };
      }
      const text = await readCapped(body, ERROR_BODY_CAP).catch(() => '');
      const code = /<Code>([^<]*)<\/Code>/.exec(text)?.[1] ?? '';
      const err = Object.assign(new Error(`s3: GET answered ${status} ${code}`), { name: code || String(status), $metadata: { httpStatusCode: status } });
      if (status === 500 || status === 502 || status === 503 || status === 504) {
        last = err;
        continue;
      }
      this.fail(err, key);
    }
    throw new StorageUnavailableError(`s3: unreachable: ${(last as Error)?.message ?? String(last)}`, key, { cause: last });
  }

  private plainGetBroken = false;

  private nodeGet(url: URL, headers: Record<string, string>): Promise<{ status: number; body: IncomingMessage }> {
    return new Promise((resolve, reject) => {
      const tls = url.protocol === 'https:';
      const req = (tls ? httpsRequest : httpRequest)(url, { method: 'GET', agent: tls ? this.httpsAgent : this.httpAgent, headers }, (res) =>
        resolve({ status: res.statusCode ?? 0, body: res }),
      );
      req.setTimeout(60_000, () => req.destroy(new Error('s3: no answer to GET within 60 s')));
      // (see DEFAULT_HEADERS_TIMEOUT_MS)
      const deadline = setTimeout(
        () => req.destroy(new Error(`s3: no complete answer headers to GET within ${this.headersTimeoutMs / 1000} s`)),
        this.headersTimeoutMs,
      );
      req.once('response', () => clearTimeout(deadline));
      req.once('close', () => clearTimeout(deadline));
      req.once('error', reject);
      req.end();
    });
  }

  private async head(key: string): Promise<{ size: number; modTime: Date; etag: string }> {
    if (this.signer) {
      const a = await this.raw(key, 'HEAD', this.k(key));
      if (a.status !== 200) this.fail(answerError('HEAD', a), key);
      const lm = a.headers['last-modified'];
      return { size: Number(a.headers['content-length'] ?? 0), modTime: lm ? new Date(lm) : new Date(), etag: String(a.headers.etag ?? '') };
    }
    const r = await this.send(key, () => this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: this.k(key) })));
    return { size: r.ContentLength ?? 0, modTime: r.LastModified ?? new Date(), etag: r.ETag ?? '' };
  }

  /** head, or undefined for a missing key. */
  private async headIfAny(key: string): Promise<{ size: number; modTime: Date; etag: string } | undefined> {
    try {
      return await this.head(key);
    } catch (e) {
      if (e instanceof PathNotFoundError) return undefined;
      throw e;
    }
  }

  async writer(key: string, options: WriterOptions = {}): Promise<Writer> {
    validateKey(key);
    const before = options.append === true ? await this.headIfAny(key) : undefined;
    const w = new S3Writer(this, key, this.k(key), before);
    if (before && before.size > 0 && before.size < MIN_PART_SIZE) {
      // too small to be a copied part: its bytes become the start of the first part, as many as the
      // HEAD said (the writer's size starts there): an object that changed in between is refused,
      // never kept as the start of something else (before 2026-12-07 it was read whole and kept)
      let start: Buffer;
      try {
        start = await this.getContent(key, { maxSize: before.size });
      } catch (e) {
        if (e instanceof ContentTooLargeError) throw new StorageError(`s3: ${key} grew past the ${before.size} bytes it had when opened for appending`, key);
        throw e;
      }
      if (start.length !== before.size) throw new StorageError(`s3: ${key} holds ${start.length} bytes, ${before.size} when opened for appending`, key);
      w.prime(start);
    }
    return w;
  }

  /**
   * A writer that continues an upload kept open between requests (see S3Writer); without a state,
   * writer(key, { append: true }).
   */
  async resumableWriter(key: string, state: ResumableState | undefined): Promise<ResumableWriter> {
    validateKey(key);
    if (!state) {
      const fresh = (await this.writer(key, { append: true })) as S3Writer;
      fresh.resumable();
      return fresh;
    }
    const resume = parseResume(state, key);
    const w = new S3Writer(this, key, this.k(key), undefined, resume);
    w.resumable();
    if (resume.staged > 0) {
      const staged = await this.getFull(this.k(key) + STAGING, key);
      if (staged.length !== resume.staged) throw new StorageError(`s3: the staged bytes of ${key} do not match its state`, key);
      w.prime(staged);
    }
    return w;
  }

  /**
   * A writer whose bytes appear at the key only on commit (one PutObject under a part, else a
   * multipart upload completed at the key); cancel aborts the multipart upload and leaves the key
   * as it was.
   */
  async atomicWriter(key: string): Promise<Writer> {
    validateKey(key);
    return new S3Writer(this, key, this.k(key), undefined, undefined, true);
  }

  /** One DeleteObject (a missing key is no error, as in S3). */
  async removeObject(key: string): Promise<void> {
    validateKey(key);
    await this.deleteObject(this.k(key), key);
  }

  async discardResumable(key: string, state: ResumableState): Promise<void> {
    validateKey(key);
    const resume = parseResume(state, key);
    if (resume.uploadId) {
      await this.send(key, () => this.client.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: this.k(key), UploadId: resume.uploadId })));
    }
    if (resume.staged > 0) await this.deleteObject(this.k(key) + STAGING, key);
  }

  async stat(key: string): Promise<FileInfo> {
    validateKey(key);
    const h = await this.headIfAny(key);
    if (h) return { size: h.size, modTime: h.modTime };
    const r = await this.send(key, () => this.client.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: `${this.k(key)}/`, MaxKeys: 1 })));
    const first = r.Contents?.[0];
    if (!first) throw new PathNotFoundError(key);
    return { size: 0, modTime: first.LastModified ?? new Date() };
  }

  async list(prefix: string): Promise<string[]> {
    validateKey(prefix, true);
    const head = prefix === '' ? this.root : `${this.k(prefix)}/`;
    const out = new Set<string>();
    const progress = new ListingProgress(prefix);
    let token: string | undefined;
    do {
      const r = await this.send(prefix, () =>
        this.client.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: head, Delimiter: '/', ...(token ? { ContinuationToken: token } : {}) })),
      );
      progress.page([...(r.Contents ?? []).map((c) => c.Key ?? ''), ...(r.CommonPrefixes ?? []).map((p) => p.Prefix ?? '')]);
      for (const c of r.Contents ?? []) {
        const name = c.Key!.slice(head.length);
        if (isValidSegment(name)) out.add(c.Key!.slice(this.root.length));
      }
      for (const p of r.CommonPrefixes ?? []) {
        const name = p.Prefix!.slice(head.length, -1);
        if (isValidSegment(name)) out.add(p.Prefix!.slice(this.root.length, -1));
      }
      token = nextToken(r, prefix);
    } while (token);
    if (out.size === 0 && prefix !== '') throw new PathNotFoundError(prefix);
    return [...out].sort();
  }

  async move(src: string, dst: string, _options?: PutOptions): Promise<void> {
    validateKey(src);
    validateKey(dst);
    const lock = await this.lock(src);
    if (!lock) throw new PathNotFoundError(src); // another move holds it: it wins or finds nothing
    try {
      if (src === dst) {
        if (await this.headIfAny(src)) return;
      } else if (await this.copyIfObject(src, dst)) {
        await this.deleteObject(this.k(src), src);
        return;
      }
      // a prefix moves with everything below it, as a directory rename does
      const below = await this.keysBelow(src);
      if (below.length === 0) throw new PathNotFoundError(src);
      for (const { key, size } of below) {
        const rel = key.slice(this.k(src).length);
        const target = dst + rel;
        await this.copy(key.slice(this.root.length), target, size);
      }
      await this.deleteKeys(
        below.map((b) => b.key),
        src,
      );
    } finally {
      await this.unlock(lock);
    }
  }

  /** Creates the move lock of key (If-None-Match: *); undefined when another holds it. */
  private async lock(key: string): Promise<string | undefined> {
    const lockKey = `${this.root}${INTERNAL}/locks/${key}`;
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        const body = Buffer.from(`${process.pid} ${new Date().toISOString()}`);
        if (this.signer) {
          const a = await this.raw(key, 'PUT', lockKey, { 'if-none-match': '*' }, body);
          if (a.status !== 200) throw answerError('PUT', a);
        } else {
          await this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key: lockKey, Body: body, IfNoneMatch: '*' }));
        }
        return lockKey;
      } catch (e) {
        if (errStatus(e) !== 412 && errName(e) !== 'PreconditionFailed' && errStatus(e) !== 409) this.fail(e, key);
        // taken: by a live move (we lose), or left by a killed process long ago (break it, once)
        const held = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: lockKey })).catch(() => undefined);
        if (held && Date.now() - (held.LastModified?.getTime() ?? Date.now()) < STALE_LOCK_MS) return undefined;
        await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: lockKey })).catch(() => undefined);
      }
    }
    return undefined;
  }

  private async unlock(lockKey: string): Promise<void> {
    await this.deleteObject(lockKey, lockKey).catch(() => undefined);
  }

  /** DeleteObject of a full key (a missing key is no error, as in S3). */
  private async deleteObject(fullKey: string, label: string): Promise<void> {
    if (this.signer) {
      const a = await this.raw(label, 'DELETE', fullKey);
      if (a.status >= 300 && a.status !== 404) this.fail(answerError('DELETE', a), label);
      return;
    }
    await this.send(label, () => this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: fullKey })));
  }

  /**
   * Copies src to dst when src is an object; false when there is none (a prefix, or nothing). One
   * CopyObject in the common case (no HEAD first: every move saves a round trip); a source above
   * 5 GiB, which CopyObject refuses, takes the multipart copy.
   */
  private async copyIfObject(src: string, dst: string): Promise<boolean> {
    try {
      if (this.signer) {
        const a = await this.raw(
          src,
          'PUT',
          this.k(dst),
          { 'x-amz-copy-source': encodeKeyPath(this.bucket, this.k(src)), ...this.putHeaders() },
          Buffer.alloc(0),
        );
        // S3 may answer a copy 200 with an error document in the body
        if (a.status !== 200 || a.body.includes('<Error>')) throw answerError('COPY', a.status === 200 ? { ...a, status: 500 } : a);
      } else {
        await this.client.send(
          new CopyObjectCommand({ Bucket: this.bucket, Key: this.k(dst), CopySource: encodeURI(`${this.bucket}/${this.k(src)}`), ...this.extraPutFields() }),
        );
      }
      return true;
    } catch (e) {
      if (isMissing(e)) return false;
      if (errStatus(e) !== 400) this.fail(e, src);
    }
    const h = await this.headIfAny(src);
    if (!h) return false;
    await this.copy(src, dst, h.size, h.etag);
    return true;
  }

  /** Server-side copy of src (driver key) to dst (driver key): CopyObject, or a multipart copy above 5 GiB. */
  private async copy(src: string, dst: string, size: number, etag?: string): Promise<void> {
    const CopySource = encodeURI(`${this.bucket}/${this.k(src)}`);
    const extra = { ...this.sse, ...(this.storageClass ? { StorageClass: this.storageClass } : {}) };
    if (size <= MAX_PART_SIZE) {
      await this.send(src, () =>
        this.client.send(new CopyObjectCommand({ Bucket: this.bucket, Key: this.k(dst), CopySource, ...(etag ? { CopySourceIfMatch: etag } : {}), ...extra })),
      );
      return;
    }
    const { UploadId } = await this.send(dst, () => this.client.send(new CreateMultipartUploadCommand({ Bucket: this.bucket, Key: this.k(dst), ...extra })));
    try {
      const parts = await this.copyParts(src, UploadId!, this.k(dst), size, 1, etag);
      await this.completeMultipart(this.k(dst), UploadId!, parts, dst);
    } catch (e) {
      await this.client.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: this.k(dst), UploadId })).catch(() => undefined);
      this.fail(e, src);
    }
  }

  /**
   * CompleteMultipartUpload. S3 may answer it 200 and report a failure in the body (an <Error>
   * document, sent while the parts are being assembled): the SDK turns that into an error only when
   * the body ends with `</Error>`, so one followed by a newline passed as a success and a push was
   * acknowledged whose object was never created. A completed upload's answer names the object.
   */
  async completeMultipart(full: string, uploadId: string, parts: CompletedPart[], label: string): Promise<void> {
    const r = await this.client.send(
      new CompleteMultipartUploadCommand({ Bucket: this.bucket, Key: full, UploadId: uploadId, MultipartUpload: { Parts: parts } }),
    );
    // (RGW answers an empty ETag at times: any field of the result will do)
    if ([r.Location, r.Bucket, r.Key, r.ETag].every((v) => v === undefined)) {
      throw new StorageError(`s3: CompleteMultipartUpload answered without a result (an error document?): ${label}`, label);
    }
  }

  /** UploadPartCopy of all of src in equal pieces of at most 5 GiB (each ≥ 5 MiB when size ≥ 5 MiB). */
  async copyParts(src: string, uploadId: string, dstFull: string, size: number, firstPart: number, etag?: string): Promise<CompletedPart[]> {
    const pieces = Math.ceil(size / MAX_PART_SIZE);
    const piece = Math.ceil(size / pieces);
    const parts: CompletedPart[] = [];
    const CopySource = encodeURI(`${this.bucket}/${this.k(src)}`);
    for (let i = 0; i < pieces; i++) {
      const start = i * piece;
      const end = Math.min(size, start + piece) - 1;
      const PartNumber = firstPart + i;
      const r = await this.send(src, () =>
        this.client.send(
          new UploadPartCopyCommand({
            Bucket: this.bucket,
            Key: dstFull,
            UploadId: uploadId,
            PartNumber,
            CopySource,
            CopySourceRange: `bytes=${start}-${end}`,
            ...(etag ? { CopySourceIfMatch: etag } : {}),
          }),
        ),
      );
      parts.push({ PartNumber, ETag: r.CopyPartResult?.ETag });
    }
    return parts;
  }

  async delete(key: string): Promise<void> {
    validateKey(key);
    const keys = (await this.keysBelow(key)).map((b) => b.key);
    // a key is an object or a prefix, never both (driver.ts): with keys below, no HEAD (one request
    // fewer for every upload folder removed on the push path)
    if (keys.length === 0 && (await this.headIfAny(key))) keys.push(this.k(key));
    if (keys.length === 0) throw new PathNotFoundError(key);
    await this.deleteKeys(keys, key);
  }

  /** Every object strictly below key/ (full S3 keys and sizes). */
  private async keysBelow(key: string): Promise<Array<{ key: string; size: number }>> {
    const out: Array<{ key: string; size: number }> = [];
    const progress = new ListingProgress(key);
    let token: string | undefined;
    if (this.signer) {
      // ListObjectsV2 through the signer (an upload folder is removed after every push)
      do {
        const a = await this.raw(
          key,
          'GET',
          null,
          {},
          undefined,
          {
            'list-type': '2',
            prefix: `${this.k(key)}/`,
            ...(token ? { 'continuation-token': token } : {}),
          },
          LIST_PAGE_CAP,
        );
        if (a.status !== 200) this.fail(answerError('LIST', a), key);
        const text = a.body.toString('utf8');
        const before = out.length;
        for (const m of text.matchAll(/<Contents>([\s\S]*?)<\/Contents>/g)) {
          const k = /<Key>([^<]*)<\/Key>/.exec(m[1]!)?.[1];
          const size = /<Size>(\d+)<\/Size>/.exec(m[1]!)?.[1];
          if (k !== undefined) out.push({ key: xmlText(k), size: Number(size ?? 0) });
        }
        progress.page(out.slice(before).map((o) => o.key));
        token = /<IsTruncated>true<\/IsTruncated>/.test(text)
          ? xmlText(/<NextContinuationToken>([^<]*)<\/NextContinuationToken>/.exec(text)?.[1] ?? '')
          : undefined;
        if (token === '') throw new StorageError(`s3: a truncated listing without a continuation token: ${key}`, key);
      } while (token);
      return out;
    }
    do {
      const r = await this.send(key, () =>
        this.client.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: `${this.k(key)}/`, ...(token ? { ContinuationToken: token } : {}) })),
      );
      progress.page((r.Contents ?? []).map((c) => c.Key ?? ''));
      for (const c of r.Contents ?? []) out.push({ key: c.Key!, size: c.Size ?? 0 });
      token = nextToken(r, key);
    } while (token);
    return out;
  }

  private async deleteKeys(keys: string[], label: string): Promise<void> {
    for (let i = 0; i < keys.length; i += DELETE_BATCH) {
      const batch = keys.slice(i, i + DELETE_BATCH);
      if (batch.length === 1) {
        await this.deleteObject(batch[0]!, label);
        continue;
      }
      if (this.signer) {
        const xml = `<Delete><Quiet>true</Quiet>${batch.map((k) => `<Object><Key>${xmlEscape(k)}</Key></Object>`).join('')}</Delete>`;
        const body = Buffer.from(xml);
        const a = await this.raw(
          label,
          'POST',
          null,
          { 'content-md5': createHash('md5').update(body).digest('base64'), 'content-type': 'application/xml' },
          body,
          { delete: '' },
        );
        if (a.status !== 200) this.fail(answerError('DELETE', a), label);
        const errors = [...a.body.toString('utf8').matchAll(/<Error>([\s\S]*?)<\/Error>/g)]
          .map((m) => /<Code>([^<]*)<\/Code>/.exec(m[1]!)?.[1] ?? '')
          .filter((c) => c !== 'NoSuchKey');
        if (errors.length > 0) throw new StorageError(`s3: could not delete ${errors.length} objects below ${label}: ${errors[0]}`, label);
        continue;
      }
      const r = await this.send(label, () =>
        this.client.send(new DeleteObjectsCommand({ Bucket: this.bucket, Delete: { Objects: batch.map((Key) => ({ Key })), Quiet: true } })),
      );
      const failed = (r.Errors ?? []).filter((e) => e.Code !== 'NoSuchKey');
      if (failed.length > 0)
        throw new StorageError(`s3: could not delete ${failed.length} objects below ${label}: ${failed[0]!.Code ?? ''} ${failed[0]!.Message ?? ''}`, label);
    }
  }

  /** Pre-signed GET of the key, or undefined when it is missing. */
  async redirectURL(key: string): Promise<string | undefined> {
    validateKey(key);
    if (!(await this.headIfAny(key))) return undefined;
    if (this.signer) return String(await this.signer.presignGet(encodeKeyPath(this.bucket, this.k(key)), this.presignExpiry));
    return getSignedUrl(this.client, new GetObjectCommand({ Bucket: this.bucket, Key: this.k(key) }), { expiresIn: this.presignExpiry });
  }

  /**
   * Aborts multipart uploads below the root started more than olderThanMs ago: writers of killed
   * processes or dropped connections (they cost storage and are invisible otherwise). A resumable
   * upload (resumableWriter) stays open across requests for as long as its client keeps sending:
   * one with an object beside it (same folder) written within olderThanMs is in use and stays.
   * Returns how many.
   */
  async purgeAbandonedWrites(olderThanMs: number): Promise<number> {
    const cutoff = Date.now() - olderThanMs;
    let aborted = 0;
    let keyMarker: string | undefined;
    let idMarker: string | undefined;
    /** The upload id markers handed out so far with keyMarker. */
    const idsOfKey = new Set<string>();
    for (;;) {
      const r = await this.send('', () =>
        this.client.send(
          new ListMultipartUploadsCommand({
            Bucket: this.bucket,
            Prefix: this.root,
            ...(keyMarker ? { KeyMarker: keyMarker } : {}),
            ...(idMarker ? { UploadIdMarker: idMarker } : {}),
          }),
        ),
      );
      for (const u of r.Uploads ?? []) {
        if ((u.Initiated?.getTime() ?? Date.now()) > cutoff) continue;
        if (await this.usedSince(u.Key ?? '', cutoff)) continue;
        await this.client.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: u.Key, UploadId: u.UploadId })).then(
          () => aborted++,
          () => undefined,
        );
      }
      if (!r.IsTruncated) break;
      // the markers move on (past the key, or to another upload of the key): else the same page
      // would come again and again
      const next = r.NextKeyMarker ?? '';
      if (next === '' || (keyMarker !== undefined && !keyAfter(next, keyMarker) && (next !== keyMarker || idsOfKey.has(r.NextUploadIdMarker ?? '')))) {
        throw new StorageError(`s3: the store's listing of multipart uploads does not move on (marker ${JSON.stringify(next.slice(0, 200))})`, '');
      }
      if (next !== keyMarker) idsOfKey.clear();
      idsOfKey.add(r.NextUploadIdMarker ?? '');
      keyMarker = next;
      idMarker = r.NextUploadIdMarker;
    }
    return aborted;
  }

  /** True when an object in the folder of the full key `full` was written after `time` (ms). */
  private async usedSince(full: string, time: number): Promise<boolean> {
    const slash = full.lastIndexOf('/');
    if (slash <= 0) return false;
    const progress = new ListingProgress(full);
    let token: string | undefined;
    do {
      const r = await this.send(full, () =>
        this.client.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: full.slice(0, slash + 1), ...(token ? { ContinuationToken: token } : {}) })),
      );
      progress.page((r.Contents ?? []).map((c) => c.Key ?? ''));
      if ((r.Contents ?? []).some((c) => (c.LastModified?.getTime() ?? 0) > time)) return true;
      token = nextToken(r, full);
    } while (token);
    return false;
  }

  async close(): Promise<void> {
    this.client.destroy();
  }

  // ---- for S3Writer
  extraPutFields(): { ServerSideEncryption?: ServerSideEncryption; SSEKMSKeyId?: string; StorageClass?: StorageClass } {
    return { ...this.sse, ...(this.storageClass ? { StorageClass: this.storageClass } : {}) };
  }
  failFor(e: unknown, key: string): never {
    this.fail(e, key);
  }
  async putBuffer(key: string, body: Buffer): Promise<void> {
    await this.putObject(key, body);
  }
  /**
   * UploadPart; its ETag. Through the signer where it serves (UNSIGNED-PAYLOAD, as its other PUTs):
   * the SDK signs a Buffer body with its sha256, a second hash of every byte uploaded.
   */
  async uploadPart(full: string, uploadId: string, partNumber: number, body: Buffer[], size: number, label: string): Promise<string> {
    if (this.signer) {
      const a = await this.raw(label, 'PUT', full, {}, body, { partNumber: String(partNumber), uploadId });
      if (a.status !== 200) this.fail(answerError('UploadPart', a), label);
      const etag = a.headers.etag;
      if (typeof etag !== 'string' || etag === '') throw new StorageError(`s3: UploadPart answered without an ETag: ${label}`, label);
      return etag;
    }
    const r = await this.send(label, () =>
      this.client.send(
        new UploadPartCommand({
          Bucket: this.bucket,
          Key: full,
          UploadId: uploadId,
          PartNumber: partNumber,
          Body: Buffer.concat(body, size),
          ContentLength: size,
        }),
      ),
    );
    return r.ETag!;
  }

  /** PutObject of a full S3 key (the driver's own objects). */
  async putFull(full: string, body: Buffer, label: string): Promise<void> {
    if (this.signer) {
      const a = await this.raw(label, 'PUT', full, this.putHeaders(), body);
      if (a.status !== 200) this.fail(answerError('PUT', a), label);
      return;
    }
    await this.send(label, () =>
      this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key: full, Body: body, ContentLength: body.length, ...this.extraPutFields() })),
    );
  }
  /** GetObject of a full S3 key (the driver's own objects). */
  async getFull(full: string, label: string): Promise<Buffer> {
    if (this.signer) {
      const a = await this.raw(label, 'GET', full);
      if (a.status === 200) return a.body;
      this.fail(answerError('GET', a), label);
    }
    const r = await this.send(label, () => this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: full })));
    return Buffer.from(await r.Body!.transformToByteArray());
  }
  async deleteFull(full: string, label: string): Promise<void> {
    await this.deleteObject(full, label);
  }
}

/** What S3Writer.suspend() hands the caller (see ResumableState). */
interface S3Resume {
  /** The open multipart upload at the key; none while everything fits in the staging object. */
  readonly uploadId?: string;
  /** [PartNumber, ETag] of the parts uploaded so far, in order. */
  readonly parts: ReadonlyArray<readonly [number, string]>;
  /** Bytes so far: the parts' and the staging object's. */
  readonly size: number;
  /** Bytes in the staging object (the key + STAGING), under 5 MiB: the start of the next part. */
  readonly staged: number;
}
/** Suffix of a resumable upload's staging object: '~' makes it no valid key (list() hides it, delete() of the folder takes it). */
const STAGING = '~staged';

function parseResume(state: ResumableState, key: string): S3Resume {
  const r = state as Partial<S3Resume>;
  const ok =
    (r.uploadId === undefined || typeof r.uploadId === 'string') &&
    Array.isArray(r.parts) &&
    r.parts.every((p) => Array.isArray(p) && Number.isSafeInteger(p[0]) && typeof p[1] === 'string') &&
    Number.isSafeInteger(r.size) &&
    Number.isSafeInteger(r.staged) &&
    r.staged! >= 0 &&
    r.staged! < MIN_PART_SIZE &&
    (r.uploadId !== undefined || r.parts.length === 0);
  if (!ok) throw new StorageError(`s3: not a resumable upload state: ${key}`, key);
  return r as S3Resume;
}

/**
 * A multipart upload at the key, started lazily when the first full part is ready (a small writer
 * is one PutObject). PartBufferWriter keeps at most about two parts in memory. With append, the
 * key's current bytes are the first part(s), copied server-side (UploadPartCopy, pinned to the
 * ETag seen at open). Resumable (v2 chunked uploads): suspend() leaves the multipart upload open
 * and keeps bytes short of a 5 MiB part in a staging object beside the key; the next writer reads
 * them back into its first part and continues the part numbers, so a PATCH costs its own bytes
 * (plus at most 5 MiB staged), never a copy of the upload so far.
 */
class S3Writer extends PartBufferWriter implements ResumableWriter {
  private uploadId: string | undefined;
  private parts: CompletedPart[] = [];
  /** Bytes of the key before this writer that are to be copied server-side (0 once copied or primed). */
  private copyFrom: { size: number; etag: string } | undefined;
  /** The staging object holds bytes of the upload (read back into the first part). */
  private staged: boolean;

  constructor(
    private readonly d: S3Driver,
    key: string,
    private readonly full: string,
    before: { size: number; etag: string } | undefined,
    resume?: S3Resume,
    /** atomicWriter: the key holds published bytes that a cancel leaves alone. */
    private readonly keepKey = false,
  ) {
    super(key, resume?.size ?? before?.size ?? 0, d.partSize);
    if (!resume && before && before.size >= MIN_PART_SIZE) this.copyFrom = { size: before.size, etag: before.etag };
    this.uploadId = resume?.uploadId;
    this.parts = resume ? resume.parts.map(([PartNumber, ETag]) => ({ PartNumber, ETag })) : [];
    this.staged = (resume?.staged ?? 0) > 0;
  }

  /** Used through resumableWriter: the last 5 MiB stay buffered until suspend() or commit(). */
  resumable(): void {
    this.holdBack = MIN_PART_SIZE;
  }

  /** Starts the multipart upload (and copies the key's earlier bytes into it) if not yet done. */
  private async begin(): Promise<string> {
    if (this.uploadId) return this.uploadId;
    const r = await this.d.client.send(new CreateMultipartUploadCommand({ Bucket: this.d.bucket, Key: this.full, ...this.d.extraPutFields() }));
    this.uploadId = r.UploadId!;
    if (this.copyFrom) {
      this.parts.push(...(await this.d.copyParts(this.key, this.uploadId, this.full, this.copyFrom.size, 1, this.copyFrom.etag)));
      this.copyFrom = undefined;
    }
    return this.uploadId;
  }

  protected override async beforePart(): Promise<void> {
    await this.begin();
    if (this.parts.length >= MAX_PARTS) throw new StorageError(`s3: more than ${MAX_PARTS} parts: raise the part size`, this.key);
  }

  protected override async uploadPart(body: Buffer[], size: number): Promise<void> {
    const PartNumber = this.parts.length + 1;
    const slot: CompletedPart = { PartNumber };
    this.parts.push(slot);
    slot.ETag = await this.d.uploadPart(this.full, this.uploadId!, PartNumber, body, size, this.key);
  }

  protected override async finish(): Promise<void> {
    if (!this.uploadId && this.copyFrom && this.appended === 0) {
      // appended nothing to a key that already holds its bytes: nothing to do
    } else if (!this.uploadId && !this.copyFrom) {
      await this.d.putBuffer(this.key, this.takeAll());
    } else {
      if (this.buffered > 0 || this.parts.length === 0) await this.flushPart(true);
      else await this.begin();
      await this.d.completeMultipart(this.full, this.uploadId!, this.parts, this.key);
    }
  }

  async suspend(): Promise<ResumableState> {
    if (this.state !== 'open') throw new StorageError(`writer is ${this.state}: ${this.key}`, this.key);
    this.state = 'committing';
    let staged = 0;
    try {
      await endWriterStream(this.stream, this.key);
      await this.settled();
      // the bytes of an earlier object at the key go into the multipart upload now (the state
      // describes parts and staged bytes only)
      if (this.copyFrom) await this.begin();
      if (this.buffered >= MIN_PART_SIZE) {
        await this.flushPart(true);
      } else if (this.buffered > 0) {
        staged = this.buffered;
        await this.d.putFull(this.full + STAGING, this.takeAll(), this.key);
        this.staged = true;
      }
    } catch (e) {
      this.state = 'open'; // the caller is expected to cancel()
      if (e instanceof StorageError) throw e;
      if (this.stream.errored && e === this.stream.errored) throw e;
      this.d.failFor(e, this.key);
    }
    this.state = 'committed';
    const state: S3Resume = {
      ...(this.uploadId ? { uploadId: this.uploadId } : {}),
      parts: this.parts.map((p) => [p.PartNumber!, p.ETag!] as const),
      size: this.size,
      staged,
    };
    return state as unknown as ResumableState;
  }

  protected override mapError(e: unknown): never {
    this.d.failFor(e, this.key);
  }

  protected override async discard(): Promise<void> {
    if (this.uploadId) {
      await this.d.client.send(new AbortMultipartUploadCommand({ Bucket: this.d.bucket, Key: this.full, UploadId: this.uploadId })).catch(() => undefined);
    }
    if (this.staged) await this.d.deleteFull(this.full + STAGING, this.key).catch(() => undefined);
    if (this.keepKey) return;
    await this.d.client.send(new DeleteObjectCommand({ Bucket: this.d.bucket, Key: this.full })).catch((e: unknown) => this.d.failFor(e, this.key));
  }
}
