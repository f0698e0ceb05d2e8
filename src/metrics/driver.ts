import type { Readable } from 'node:stream';
import type {
  FileInfo,
  GetOptions,
  PutOptions,
  ReaderOptions,
  ResumableState,
  ResumableWriter,
  StorageDriver,
  Writer,
  WriterOptions,
} from '../storage/driver.js';
import { storageAction } from './registry.js';
import type { HistogramCell } from './cells.js';

/**
 * A driver that times every call of the one it wraps (registry_storage_action_seconds
 * {driver, action}, as distribution's). Streams are timed to their opening (reader, writer) and
 * to their commit, not for the bytes that flow in between (those are the HTTP metrics' part).
 * Failed calls are timed too: a slow "not found" is still a slow storage.
 */
export class MetricsDriver implements StorageDriver {
  readonly name: string;
  // The inner driver's optional capabilities, passed through only when it has them: callers test
  // for them (canRedirect, the upload purge), so a wrapper must not hide or invent them.
  readonly purgeLeftovers?: StorageDriver['purgeLeftovers'];
  readonly purgeAbandonedWrites?: StorageDriver['purgeAbandonedWrites'];
  readonly redirectURL?: (key: string) => Promise<string | undefined>;
  readonly putContentIfAbsent?: StorageDriver['putContentIfAbsent'];
  readonly resumableWriter?: (key: string, state: ResumableState | undefined) => Promise<ResumableWriter>;
  readonly discardResumable?: StorageDriver['discardResumable'];
  readonly atomicWriter?: (key: string) => Promise<Writer>;
  readonly removeObject?: StorageDriver['removeObject'];
  readonly syncKeys?: StorageDriver['syncKeys'];

  constructor(private readonly inner: StorageDriver) {
    this.name = inner.name;
    const optional = inner as StorageDriver & { redirectURL?: (key: string) => Promise<string | undefined> };
    if (optional.purgeLeftovers) this.purgeLeftovers = optional.purgeLeftovers.bind(inner);
    if (optional.purgeAbandonedWrites) this.purgeAbandonedWrites = (ms) => this.timed('PurgeAbandonedWrites', () => optional.purgeAbandonedWrites!(ms));
    if (optional.putContentIfAbsent) this.putContentIfAbsent = (key, data) => this.timed('PutContent', () => optional.putContentIfAbsent!(key, data));
    if (optional.resumableWriter) {
      this.resumableWriter = async (key, state) => {
        const w = await this.timed('Writer', () => optional.resumableWriter!(key, state));
        const timed = this.timed.bind(this);
        return {
          get size() {
            return w.size;
          },
          stream: w.stream,
          commit: (o) => timed('Commit', () => w.commit(o)),
          cancel: () => timed('Cancel', () => w.cancel()),
          suspend: () => timed('Commit', () => w.suspend()),
        };
      };
    }
    if (optional.discardResumable) this.discardResumable = (key, state) => this.timed('Cancel', () => optional.discardResumable!(key, state));
    if (optional.atomicWriter) this.atomicWriter = async (key) => this.timedWriter(await this.timed('Writer', () => optional.atomicWriter!(key)));
    if (optional.removeObject) this.removeObject = (key) => this.timed('Delete', () => optional.removeObject!(key));
    if (optional.syncKeys) this.syncKeys = (keys) => this.timed('Sync', () => optional.syncKeys!(keys));
    if (optional.redirectURL) this.redirectURL = (key) => this.timed('URLFor', () => optional.redirectURL!(key));
  }

  /** This driver's latency cell per action (resolved once). */
  private readonly cells = new Map<string, HistogramCell>();

  private async timed<T>(action: string, fn: () => Promise<T>): Promise<T> {
    let cell = this.cells.get(action);
    if (!cell) this.cells.set(action, (cell = storageAction.cell(this.name, action)));
    const started = process.hrtime.bigint();
    try {
      return await fn();
    } finally {
      storageAction.observe(cell, Number(process.hrtime.bigint() - started) / 1e9);
    }
  }

  getContent(key: string, options?: GetOptions): Promise<Buffer> {
    return this.timed('GetContent', () => this.inner.getContent(key, options));
  }
  putContent(key: string, data: Buffer, options?: PutOptions): Promise<void> {
    return this.timed('PutContent', () => this.inner.putContent(key, data, options));
  }
  reader(key: string, offset?: number, length?: number, options?: ReaderOptions): Promise<Readable> {
    return this.timed('Reader', () => this.inner.reader(key, offset, length, options));
  }
  async writer(key: string, options?: WriterOptions): Promise<Writer> {
    return this.timedWriter(await this.timed('Writer', () => this.inner.writer(key, options)));
  }
  private timedWriter(w: Writer): Writer {
    const timed = this.timed.bind(this);
    return {
      get size() {
        return w.size;
      },
      stream: w.stream,
      commit: (o) => timed('Commit', () => w.commit(o)),
      cancel: () => timed('Cancel', () => w.cancel()),
    };
  }
  stat(key: string): Promise<FileInfo> {
    return this.timed('Stat', () => this.inner.stat(key));
  }
  list(prefix: string): Promise<string[]> {
    return this.timed('List', () => this.inner.list(prefix));
  }
  move(src: string, dst: string, options?: PutOptions): Promise<void> {
    return this.timed('Move', () => this.inner.move(src, dst, options));
  }
  delete(key: string): Promise<void> {
    return this.timed('Delete', () => this.inner.delete(key));
  }
  async close(): Promise<void> {
    await this.inner.close?.();
  }
}
