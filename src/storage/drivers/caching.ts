import {
  ContentTooLargeError,
  type CommitOptions,
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
import type { Readable } from 'node:stream';
import { BoundedCache } from '../../util/bounded-cache.js';
import { storageCacheRequests } from '../../metrics/registry.js';

/**
 * A read-through cache in front of a driver, for the small metadata objects every pull reads
 * (tag links, manifest revisions, tag lists, repository markers) and small content-addressed
 * blobs (manifests, image configs).
 *
 * Rules that keep it correct with many registry nodes on one storage:
 * - Only positive answers are kept (content found, stat found, a listing). A key missing here may
 *   have been written by another node a moment ago, so "not found" is always asked again: a blob
 *   uploaded through node A is at once visible to a manifest PUT on node B.
 * - Every write through this node (putContent, writer commit, move, delete) drops the affected
 *   entries at once, so a node always reads its own writes.
 * - Entries expire after `ttlMs`: a change made through another node (a re-tag, a delete) is seen
 *   here within that time. Content-addressed blobs never change and live `blobTtlMs`.
 * - Upload state, image records of v1 pushes in progress and layer data are never cached (only
 *   keys under the configured prefixes, and only through getContent/stat/list).
 */
export interface CachingOptions {
  readonly ttlMs: number;
  readonly blobTtlMs?: number;
  /** Largest object kept (bytes; default 256 KiB). */
  readonly maxObject?: number;
  /** Total bytes of everything kept: content, stats and listings (default 32 MiB). */
  readonly maxBytes?: number;
  /** Most entries kept, content, stats and listings together (default 50,000). */
  readonly maxEntries?: number;
  /** Key prefixes whose metadata may be cached. */
  readonly prefixes?: readonly string[];
  /** Prefix of content-addressed (immutable) objects. */
  readonly immutablePrefix?: string;
  readonly now?: () => number;
}

/** What one key of the storage is known to be; the kinds share one bounded cache. */
type Kind = 'content' | 'stat' | 'list';
type Known = { kind: 'content'; value: Buffer } | { kind: 'stat'; value: FileInfo } | { kind: 'list'; value: string[] };

/** Approximate heap bytes of a kept answer (per-entry overhead included). */
function weightOf(e: Known, key: string): number {
  const base = 96 + key.length;
  if (e.kind === 'content') return base + e.value.length;
  if (e.kind === 'stat') return base + 64;
  return base + e.value.reduce((a, k) => a + 32 + k.length, 0);
}

const DEFAULT_PREFIXES = ['v2/repositories/', 'v1/repositories/'];
export const CACHING_DEFAULTS = Object.freeze({ maxObject: 256 * 1024, maxBytes: 32 * 1024 * 1024, maxEntries: 50_000 });

/** distribution's registry_storage_cache_requests_total: every cacheable lookup, and whether it hit. */
function counted(hit: boolean): void {
  storageCacheRequests.cell('Request').value++;
  storageCacheRequests.cell(hit ? 'Hit' : 'Miss').value++;
}

export class CachingDriver implements StorageDriver {
  readonly name: string;
  /** Keyed `<kind>\0<storage key>`; bounded by entries and bytes (src/util/bounded-cache.ts). */
  private readonly cache: BoundedCache<Known>;
  private readonly ttl: number;
  private readonly blobTtl: number;
  private readonly maxObject: number;
  private readonly prefixes: readonly string[];
  private readonly immutable: string;
  /** Bumped by every local write; a read that started before a write does not fill the cache. */
  private generation = 0;

  constructor(
    private readonly inner: StorageDriver,
    opts: CachingOptions,
  ) {
    this.name = inner.name;
    this.ttl = opts.ttlMs;
    this.blobTtl = opts.blobTtlMs ?? 60_000;
    this.maxObject = opts.maxObject ?? CACHING_DEFAULTS.maxObject;
    this.prefixes = opts.prefixes ?? DEFAULT_PREFIXES;
    this.immutable = opts.immutablePrefix ?? 'blobs/';
    const resumable = inner.resumableWriter?.bind(inner);
    if (resumable) {
      this.resumableWriter = async (key, state) => {
        this.invalidate(key);
        const w = await resumable(key, state);
        for (const m of ['commit', 'cancel', 'suspend'] as const) {
          const f = (w[m] as (...a: unknown[]) => Promise<unknown>).bind(w);
          (w as unknown as Record<string, unknown>)[m] = async (...a: unknown[]): Promise<unknown> => {
            try {
              return await f(...a);
            } finally {
              this.invalidate(key);
            }
          };
        }
        return w;
      };
    }
    if (inner.discardResumable) this.discardResumable = inner.discardResumable.bind(inner);
    const atomic = inner.atomicWriter?.bind(inner);
    if (atomic) {
      this.atomicWriter = async (key) => {
        this.invalidate(key);
        return this.invalidating(key, await atomic(key));
      };
    }
    const removeObject = inner.removeObject?.bind(inner);
    if (removeObject) {
      this.removeObject = async (key) => {
        this.invalidate(key);
        try {
          await removeObject(key);
        } finally {
          this.invalidate(key);
        }
      };
    }
    // durability only: what is cached is what was written either way
    if (inner.syncKeys) this.syncKeys = inner.syncKeys.bind(inner);
    const localUploadFile = inner.localUploadFile?.bind(inner);
    if (localUploadFile) {
      // a new private upload key, written by another thread: nothing cached may stand for it
      this.localUploadFile = async (key) => {
        this.invalidate(key);
        return localUploadFile(key);
      };
    }
    const exclusive = inner.putContentIfAbsent?.bind(inner);
    if (exclusive) {
      this.putContentIfAbsent = async (key, data, options) => {
        this.invalidate(key);
        try {
          return await exclusive(key, data, options);
        } finally {
          this.invalidate(key);
        }
      };
    }
    this.cache = new BoundedCache<Known>({
      maxEntries: opts.maxEntries ?? CACHING_DEFAULTS.maxEntries,
      maxBytes: opts.maxBytes ?? CACHING_DEFAULTS.maxBytes,
      weight: weightOf,
      ...(opts.now ? { now: opts.now } : {}),
    });
  }

  /** Entries and bytes held now (for tests and diagnostics). */
  get usage(): { readonly entries: number; readonly bytes: number } {
    return { entries: this.cache.size, bytes: this.cache.bytes };
  }

  /**
   * Changes whenever this node writes anything: a value derived from cached reads and stored with
   * the stamp it was computed under is still right while the stamp is unchanged (within the TTL).
   */
  get changeStamp(): number {
    return this.generation;
  }

  private ttlFor(key: string): number {
    if (key.startsWith(this.immutable)) return this.blobTtl;
    return this.prefixes.some((p) => key.startsWith(p)) ? this.ttl : 0;
  }

  private fresh(kind: Kind, key: string): Known['value'] | undefined {
    const e = this.cache.get(`${kind}\0${key}`);
    return e?.kind === kind ? e.value : undefined;
  }

  private keep(kind: Kind, key: string, value: Known['value'], bytes: number, ttl: number, gen: number): void {
    if (ttl <= 0 || gen !== this.generation || bytes > this.maxObject) return;
    this.cache.set(`${kind}\0${key}`, { kind, value } as Known, ttl);
  }

  private forget(key: string): void {
    for (const kind of ['content', 'stat', 'list'] as const) this.cache.delete(`${kind}\0${key}`);
  }

  /** Forget key, everything below it, and the listings of every prefix above it. */
  private invalidate(key: string, subtree = false): void {
    this.generation++;
    this.forget(key);
    for (let i = key.lastIndexOf('/'); i >= 0; i = key.lastIndexOf('/', i - 1)) {
      this.cache.delete(`list\0${key.slice(0, i)}`);
      // a new object makes its parent prefixes exist: a cached stat of them stays true
      if (i === 0) break;
    }
    this.cache.delete('list\0');
    if (!subtree) return;
    const below = `${key}/`;
    this.cache.deleteWhere((k) => k.slice(k.indexOf('\0') + 1).startsWith(below));
  }

  async getContent(key: string, options?: GetOptions): Promise<Buffer> {
    const ttl = this.ttlFor(key);
    if (ttl > 0) {
      const hit = this.fresh('content', key) as Buffer | undefined;
      counted(hit !== undefined);
      if (hit && options?.maxSize !== undefined && hit.length > options.maxSize) throw new ContentTooLargeError(key, options.maxSize);
      // callers own the buffer they get: hand out copies, never the cached bytes
      if (hit) return Buffer.from(hit);
    }
    const gen = this.generation;
    const value = await this.inner.getContent(key, options);
    if (ttl > 0 && value.length <= this.maxObject) this.keep('content', key, Buffer.from(value), value.length, ttl, gen);
    return value;
  }

  async stat(key: string): Promise<FileInfo> {
    const ttl = this.ttlFor(key);
    if (ttl > 0) {
      const hit = this.fresh('stat', key) as FileInfo | undefined;
      counted(hit !== undefined);
      if (hit) return hit;
    }
    const gen = this.generation;
    const info = await this.inner.stat(key);
    this.keep('stat', key, info, 64, ttl, gen);
    return info;
  }

  async list(prefix: string): Promise<string[]> {
    const ttl = prefix === '' ? 0 : this.ttlFor(`${prefix}/`);
    if (ttl > 0) {
      const hit = this.fresh('list', prefix) as string[] | undefined;
      counted(hit !== undefined);
      if (hit) return [...hit];
    }
    const gen = this.generation;
    const keys = await this.inner.list(prefix);
    this.keep('list', prefix, keys, 64 + keys.reduce((a, k) => a + k.length, 0), ttl, gen);
    return [...keys];
  }

  async putContent(key: string, data: Buffer, options?: PutOptions): Promise<void> {
    this.invalidate(key);
    try {
      await this.inner.putContent(key, data, options);
    } finally {
      this.invalidate(key);
    }
  }

  reader(key: string, offset?: number, length?: number, options?: ReaderOptions): Promise<Readable> {
    return this.inner.reader(key, offset, length, options);
  }

  async writer(key: string, options?: WriterOptions): Promise<Writer> {
    this.invalidate(key);
    return this.invalidating(key, await this.inner.writer(key, options));
  }

  /** The writer, its commit and cancel dropping what is known about key. */
  private invalidating(key: string, w: Writer): Writer {
    const commit = w.commit.bind(w);
    const cancel = w.cancel.bind(w);
    w.commit = async (options?: CommitOptions): Promise<void> => {
      try {
        await commit(options);
      } finally {
        this.invalidate(key);
      }
    };
    w.cancel = async (): Promise<void> => {
      try {
        await cancel();
      } finally {
        this.invalidate(key);
      }
    };
    return w;
  }

  async move(src: string, dst: string, options?: PutOptions): Promise<void> {
    this.invalidate(src, true);
    this.invalidate(dst, true);
    try {
      await this.inner.move(src, dst, options);
    } finally {
      this.invalidate(src, true);
      this.invalidate(dst, true);
    }
  }

  /** Present when the inner driver has them (v2 chunked uploads on an object store); commits invalidate as writer()'s do. */
  readonly resumableWriter?: (key: string, state: ResumableState | undefined) => Promise<ResumableWriter>;
  readonly discardResumable?: (key: string, state: ResumableState) => Promise<void>;
  readonly syncKeys?: StorageDriver['syncKeys'];
  readonly localUploadFile?: StorageDriver['localUploadFile'];

  /** Present when the inner driver has them; a commit invalidates as writer()'s does. */
  readonly atomicWriter?: (key: string) => Promise<Writer>;
  readonly removeObject?: (key: string) => Promise<void>;

  /** Present when the inner driver has it (storage-level locks); never cached (locks are outside the prefixes). */
  readonly putContentIfAbsent?: (key: string, data: Buffer, options?: PutOptions) => Promise<boolean>;

  async delete(key: string): Promise<void> {
    this.invalidate(key, true);
    try {
      await this.inner.delete(key);
    } finally {
      this.invalidate(key, true);
    }
  }

  async purgeLeftovers(prefix: string, maxAgeMs: number, now?: number): Promise<number> {
    // leftovers are never listed or cached: nothing here to invalidate
    return this.inner.purgeLeftovers ? this.inner.purgeLeftovers(prefix, maxAgeMs, now) : 0;
  }

  async close(): Promise<void> {
    this.cache.clear();
    await this.inner.close?.();
  }
}
