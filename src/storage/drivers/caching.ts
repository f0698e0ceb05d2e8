import type { FileInfo, PutOptions, StorageDriver, Writer, WriterOptions } from '../driver.js';
import type { Readable } from 'node:stream';

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
  /** Largest object kept (bytes). */
  readonly maxObject?: number;
  /** Total bytes of cached content. */
  readonly maxBytes?: number;
  /** Key prefixes whose metadata may be cached. */
  readonly prefixes?: readonly string[];
  /** Prefix of content-addressed (immutable) objects. */
  readonly immutablePrefix?: string;
  readonly now?: () => number;
}

interface Entry<T> {
  value: T;
  expires: number;
  bytes: number;
}

const DEFAULT_PREFIXES = ['v2/repositories/', 'v1/repositories/'];

export class CachingDriver implements StorageDriver {
  readonly name: string;
  private readonly content = new Map<string, Entry<Buffer>>();
  private readonly stats = new Map<string, Entry<FileInfo>>();
  private readonly lists = new Map<string, Entry<string[]>>();
  private bytes = 0;
  private readonly ttl: number;
  private readonly blobTtl: number;
  private readonly maxObject: number;
  private readonly maxBytes: number;
  private readonly prefixes: readonly string[];
  private readonly immutable: string;
  private readonly now: () => number;
  /** Bumped by every local write; a read that started before a write does not fill the cache. */
  private generation = 0;

  constructor(
    private readonly inner: StorageDriver,
    opts: CachingOptions,
  ) {
    this.name = inner.name;
    this.ttl = opts.ttlMs;
    this.blobTtl = opts.blobTtlMs ?? 60_000;
    this.maxObject = opts.maxObject ?? 256 * 1024;
    this.maxBytes = opts.maxBytes ?? 32 * 1024 * 1024;
    this.prefixes = opts.prefixes ?? DEFAULT_PREFIXES;
    this.immutable = opts.immutablePrefix ?? 'blobs/';
    this.now = opts.now ?? Date.now;
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

  private fresh<T>(map: Map<string, Entry<T>>, key: string): T | undefined {
    const e = map.get(key);
    if (!e) return undefined;
    if (e.expires <= this.now()) {
      this.drop(map, key, e);
      return undefined;
    }
    // LRU: move to the end
    map.delete(key);
    map.set(key, e);
    return e.value;
  }

  private drop<T>(map: Map<string, Entry<T>>, key: string, e: Entry<T>): void {
    map.delete(key);
    this.bytes -= e.bytes;
  }

  private keep<T>(map: Map<string, Entry<T>>, key: string, value: T, bytes: number, ttl: number, gen: number): void {
    if (ttl <= 0 || gen !== this.generation || bytes > this.maxObject) return;
    const old = map.get(key);
    if (old) this.drop(map, key, old);
    map.set(key, { value, expires: this.now() + ttl, bytes });
    this.bytes += bytes;
    while (this.bytes > this.maxBytes || map.size > 50_000) {
      const first = map.keys().next();
      if (first.done) break;
      this.drop(map, first.value, map.get(first.value)!);
    }
  }

  /** Forget key, everything below it, and the listings of every prefix above it. */
  private invalidate(key: string, subtree = false): void {
    this.generation++;
    for (const map of [this.content, this.stats, this.lists] as Map<string, Entry<unknown>>[]) {
      const e = map.get(key);
      if (e) this.drop(map, key, e);
    }
    for (let i = key.lastIndexOf('/'); i >= 0; i = key.lastIndexOf('/', i - 1)) {
      const parent = key.slice(0, i);
      const l = this.lists.get(parent);
      if (l) this.drop(this.lists, parent, l);
      // a new object makes its parent prefixes exist: a cached stat of them stays true
      if (i === 0) break;
    }
    const rootList = this.lists.get('');
    if (rootList) this.drop(this.lists, '', rootList);
    if (!subtree) return;
    const below = `${key}/`;
    for (const map of [this.content, this.stats, this.lists] as Map<string, Entry<unknown>>[]) {
      for (const [k, e] of map) if (k.startsWith(below)) this.drop(map, k, e);
    }
  }

  async getContent(key: string): Promise<Buffer> {
    const ttl = this.ttlFor(key);
    if (ttl > 0) {
      const hit = this.fresh(this.content, key);
      // callers own the buffer they get: hand out copies, never the cached bytes
      if (hit) return Buffer.from(hit);
    }
    const gen = this.generation;
    const value = await this.inner.getContent(key);
    if (ttl > 0 && value.length <= this.maxObject) this.keep(this.content, key, Buffer.from(value), value.length, ttl, gen);
    return value;
  }

  async stat(key: string): Promise<FileInfo> {
    const ttl = this.ttlFor(key);
    if (ttl > 0) {
      const hit = this.fresh(this.stats, key);
      if (hit) return hit;
    }
    const gen = this.generation;
    const info = await this.inner.stat(key);
    this.keep(this.stats, key, info, 64, ttl, gen);
    return info;
  }

  async list(prefix: string): Promise<string[]> {
    const ttl = prefix === '' ? 0 : this.ttlFor(`${prefix}/`);
    if (ttl > 0) {
      const hit = this.fresh(this.lists, prefix);
      if (hit) return [...hit];
    }
    const gen = this.generation;
    const keys = await this.inner.list(prefix);
    this.keep(this.lists, prefix, keys, 64 + keys.reduce((a, k) => a + k.length, 0), ttl, gen);
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

  reader(key: string, offset?: number, length?: number): Promise<Readable> {
    return this.inner.reader(key, offset, length);
  }

  async writer(key: string, options?: WriterOptions): Promise<Writer> {
    this.invalidate(key);
    const w = await this.inner.writer(key, options);
    const commit = w.commit.bind(w);
    const cancel = w.cancel.bind(w);
    w.commit = async (options?: { readonly durable?: boolean }): Promise<void> => {
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

  async delete(key: string): Promise<void> {
    this.invalidate(key, true);
    try {
      await this.inner.delete(key);
    } finally {
      this.invalidate(key, true);
    }
  }

  async close(): Promise<void> {
    this.content.clear();
    this.stats.clear();
    this.lists.clear();
    this.bytes = 0;
    await this.inner.close?.();
  }
}
