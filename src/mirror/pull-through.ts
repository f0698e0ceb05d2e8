import type { Readable } from 'node:stream';
import type { MirrorConfig } from '../config/schema.js';
import type { BlobStore } from '../content/blob-store.js';
import { deleteBlobUnlessWritten } from '../content/gc.js';
import { keys } from '../content/keys.js';
import { parseTag } from '../content/names.js';
import { keyExists, readOptional, RECORD_MAX } from '../content/small-objects.js';
import { MT, type V2Manifests } from '../content/v2-manifests.js';
import { checkDigest, parseV2Name, type V2Name } from '../content/v2-names.js';
import { linkKey, type V2Uploads } from '../content/v2-uploads.js';
import { V2Error } from '../errors/v2.js';
import type { Logger } from '../log/logger.js';
import type { StorageDriver } from '../storage/driver.js';
import { isNotFound } from '../storage/driver.js';
import { BlobFill } from './blob-fill.js';
import { ExpirySchedule } from './expiry.js';
import { Upstream, UpstreamRefused, UpstreamUnavailable } from './upstream.js';

/**
 * The v2 pull-through mirror (issue 13; spec v2-bridge §5.3): repositories whose name falls under
 * an upstream's prefix are read-only copies of the upstream's, filled on demand into the same
 * storage as local repositories (one copy of every byte: the v1 view and the bridge read them as
 * they read pushed content). The v2 routes ask it before reading local storage.
 */

/** A mirrored repository: its local name (where it is cached) and the upstream's name for it. */
export interface MirrorTarget {
  readonly local: V2Name;
  readonly remote: string;
  readonly upstream: Upstream;
}

/** What a client's manifest request is served from. */
export interface ManifestFreshness {
  /** The upstream could not be asked: the cached copy is served (Warning header). */
  readonly stale?: string;
}

/** A blob on its way from upstream, or undefined: it is now in local storage. */
export interface BlobStream {
  readonly size: number | undefined;
  readonly stream: Readable;
  /** Settles once the blob is published in the cache (the stream may end a little earlier). */
  readonly cached: Promise<unknown>;
}

export const STALE_WARNING = '110 legacy-registry "Response is Stale (upstream unavailable)"';
// signed schema1 last, as distribution's proxy accepts it: an old image upstream has nothing newer
const ACCEPT = [MT.ociIndex, MT.list, MT.ociManifest, MT.schema2, MT.schema1Signed, MT.schema1].join(', ');
const MAX_MANIFEST = 4 * 1024 * 1024;
const MAX_TAGS_BODY = 4 * 1024 * 1024;
const NEGATIVE_ENTRIES = 10000;

export interface PullThroughDeps {
  readonly driver: StorageDriver;
  readonly blobs: BlobStore;
  readonly manifests: V2Manifests;
  readonly uploads: V2Uploads;
  /** The bridge: tags of expired manifests leave the v1 view too. */
  readonly toV1?: { unpublish(name: V2Name, tags: readonly string[]): Promise<void> };
  readonly log?: Logger;
  /**
   * Most bytes a blob fetched from upstream may have (`max_layer_size`; 0 or absent: no cap). An
   * upstream that sends no Content-Length, or a larger one, is cut there and nothing is cached.
   */
  readonly maxBlobSize?: number;
}

export class PullThrough {
  private readonly ups: { readonly prefix: string; readonly ns: string | null; readonly client: Upstream }[];
  private readonly negative = new Map<string, number>();
  private readonly manifestFlights = new Map<string, Promise<ManifestFreshness>>();
  private readonly fills = new Map<string, Promise<BlobFill>>();
  readonly schedule: ExpirySchedule;
  private sweepTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly cfg: MirrorConfig,
    private readonly deps: PullThroughDeps,
  ) {
    this.ups = cfg.upstreams
      .map((u) => ({
        prefix: u.prefix,
        ns: u.ns,
        client: new Upstream(
          {
            url: u.url,
            username: u.username,
            password: u.password,
            timeoutMs: cfg.timeout * 1000,
            breakerFailures: cfg.breaker_failures,
            breakerMs: cfg.breaker_seconds * 1000,
          },
          deps.log,
        ),
      }))
      // the longest prefix decides (docker.io/library/ before docker.io/)
      .sort((a, b) => b.prefix.length - a.prefix.length);
    this.schedule = new ExpirySchedule(deps.driver);
  }

  /** The upstream clients, longest prefix first (tests count their requests). */
  get upstreams(): readonly Upstream[] {
    return this.ups.map((u) => u.client);
  }

  /** The mirrored repository a name is, or undefined for a local repository. */
  target(name: string): MirrorTarget | undefined {
    for (const u of this.ups) {
      if (!name.startsWith(u.prefix)) continue;
      const remote = name.slice(u.prefix.length);
      const local = parseV2Name(name);
      if (!local || remote === '') continue;
      return { local, remote, upstream: u.client };
    }
    return undefined;
  }

  /** The name prefix of the upstream containerd names with `?ns=<host>`, if one is configured for it. */
  nsPrefix(ns: string): string | undefined {
    return this.ups.find((u) => u.ns !== null && u.ns === ns)?.prefix;
  }

  private negativeHit(key: string): boolean {
    const until = this.negative.get(key);
    if (until === undefined) return false;
    if (until > Date.now()) return true;
    this.negative.delete(key);
    return false;
  }

  private remember404(key: string): void {
    if (this.cfg.negative_ttl <= 0) return;
    if (this.negative.size >= NEGATIVE_ENTRIES) this.negative.delete(this.negative.keys().next().value!);
    this.negative.set(key, Date.now() + this.cfg.negative_ttl * 1000);
  }

  private expires(): number | undefined {
    return this.cfg.ttl > 0 ? Date.now() + this.cfg.ttl * 1000 : undefined;
  }

  private unavailable(t: MirrorTarget, what: string, e: Error): V2Error {
    return new V2Error(
      'UNAVAILABLE',
      { upstream: t.upstream.base.origin, reason: e.message },
      `the upstream is unavailable (${e.message}) and ${what} is not cached`,
    );
  }

  private refused(t: MirrorTarget, status: number): V2Error {
    return new V2Error('DENIED', { upstream: t.upstream.base.origin, status }, `the upstream refused to serve ${t.remote} (${status})`);
  }

  /**
   * Make local storage hold what `ref` names upstream. By digest: nothing to do when cached. By tag:
   * the tag is resolved upstream each time (v2-bridge §5.3); when the upstream cannot be asked, the
   * cached tag is served stale. Concurrent requests for one reference share one upstream request.
   */
  async manifest(t: MirrorTarget, ref: { tag?: string; digest?: string }): Promise<ManifestFreshness> {
    const { manifests } = this.deps;
    // references also come from upstream answers (a list's children, a tags list, the bridge): only
    // well-formed ones go into an upstream URL or a storage key
    if (ref.digest !== undefined ? checkDigest(ref.digest) !== 'ok' : parseTag(ref.tag ?? '') === undefined) {
      throw new V2Error('MANIFEST_UNKNOWN', ref, 'not a valid tag or sha256 digest');
    }
    if (ref.digest && (await manifests.get(t.local, { digest: ref.digest }))) return {};
    const key = `m\n${t.local}\n${ref.tag ?? ref.digest}`;
    if (this.negativeHit(key)) throw new V2Error('MANIFEST_UNKNOWN', ref, 'manifest unknown to the upstream');
    let flight = this.manifestFlights.get(key);
    if (!flight) {
      flight = this.fetchManifest(t, ref, key).finally(() => this.manifestFlights.delete(key));
      this.manifestFlights.set(key, flight);
    }
    return flight;
  }

  private async fetchManifest(t: MirrorTarget, ref: { tag?: string; digest?: string }, key: string): Promise<ManifestFreshness> {
    const { manifests } = this.deps;
    const reference = ref.tag ?? ref.digest!;
    try {
      const res = await t.upstream.request('GET', `/v2/${t.remote}/manifests/${reference}`, t.remote, { Accept: ACCEPT });
      const status = res.statusCode ?? 0;
      if (status === 404) {
        t.upstream.discard(res);
        this.remember404(key);
        throw new V2Error('MANIFEST_UNKNOWN', ref, 'manifest unknown to the upstream');
      }
      if (status === 401 || status === 403) {
        t.upstream.discard(res);
        throw this.refused(t, status);
      }
      if (status !== 200) {
        t.upstream.discard(res);
        throw new UpstreamUnavailable(`upstream answered ${status}`);
      }
      const bytes = await t.upstream.readBody(res, MAX_MANIFEST);
      const ctype = String(res.headers['content-type'] ?? '');
      if (ref.tag) {
        // unchanged upstream: nothing to write
        const current = await manifests.resolve(t.local, ref);
        const same = current && (await manifests.get(t.local, { digest: current }));
        if (same && same.bytes.equals(bytes)) return {};
      }
      let rev;
      try {
        rev = await manifests.putCached(t.local, ref, bytes, ctype);
      } catch (e) {
        // bytes that do not hash to the digest asked for, or no manifest we cache: the upstream's
        // fault (a bad gateway), not the client's (a 400 to a GET), and a cached tag still serves
        if (e instanceof V2Error) throw new UpstreamUnavailable(`upstream sent an unusable manifest for ${reference}: ${e.message}`);
        throw e;
      }
      const exp = this.expires();
      if (exp !== undefined) await this.schedule.schedule('manifest', t.local, rev.digest, exp);
      return {};
    } catch (e) {
      if (e instanceof V2Error) throw e;
      if (!(e instanceof UpstreamUnavailable) && !(e instanceof UpstreamRefused)) {
        // an upstream that answered with something unreadable counts as unavailable
        this.deps.log?.warn('mirror: manifest from upstream not cached', { name: t.local, reference, err: String(e) });
      }
      const err = e as Error;
      if (ref.tag && (await manifests.resolve(t.local, ref)) && (await manifests.get(t.local, ref))) {
        this.deps.log?.warn('mirror: upstream unavailable, serving the cached tag', { name: t.local, tag: ref.tag, reason: err.message });
        return { stale: STALE_WARNING };
      }
      throw this.unavailable(t, `${t.local}:${reference}`, err);
    }
  }

  /**
   * A blob not in local storage for t: a stream of it from upstream (shared with concurrent
   * requests, verified before it ends), or undefined when it is now cached (the caller serves it
   * from storage). Throws BLOB_UNKNOWN for an upstream 404, UNAVAILABLE when it cannot be fetched.
   */
  async blob(t: MirrorTarget, digest: string): Promise<BlobStream | undefined> {
    if (checkDigest(digest) !== 'ok') throw new V2Error('BLOB_UNKNOWN', { digest }, 'not a sha256 digest');
    const key = `b\n${t.local}\n${digest}`;
    if (this.negativeHit(key)) throw new V2Error('BLOB_UNKNOWN', { digest }, 'blob unknown to the upstream');
    let flight = this.fills.get(key);
    if (!flight) {
      flight = this.startFill(t, digest, key);
      this.fills.set(key, flight);
      const forget = (): void => void this.fills.delete(key);
      flight.then((f) => f.done.then(forget, forget), forget);
    }
    const fill = await flight;
    const stream = fill.subscribe();
    if (stream) return { size: fill.size, stream, cached: fill.done };
    await fill.cached().catch((e: unknown) => {
      throw this.unavailable(t, digest, e as Error);
    });
    return undefined;
  }

  private async startFill(t: MirrorTarget, digest: string, key: string): Promise<BlobFill> {
    let res;
    try {
      res = await t.upstream.getBlob(`/v2/${t.remote}/blobs/${digest}`, t.remote);
    } catch (e) {
      throw this.unavailable(t, digest, e as Error);
    }
    const status = res.status;
    if (status !== 200) t.upstream.discard(res.body);
    if (status === 404) {
      this.remember404(key);
      throw new V2Error('BLOB_UNKNOWN', { digest }, 'blob unknown to the upstream');
    }
    if (status === 401 || status === 403) throw this.refused(t, status);
    if (status !== 200) throw this.unavailable(t, digest, new Error(`upstream answered ${status}`));
    const size = res.length;
    const { blobs, uploads, driver, maxBlobSize } = this.deps;
    if (maxBlobSize && size !== undefined && size > maxBlobSize) {
      res.body.destroy();
      throw this.unavailable(t, digest, new Error(`upstream blob of ${size} bytes, more than max_layer_size (${maxBlobSize})`));
    }
    const fill = new BlobFill(
      driver,
      digest,
      size,
      this.cfg.timeout * 1000,
      async (r) => {
        try {
          await blobs.publish(r.uploadKey, digest);
        } finally {
          await driver.delete(keys.uploadDir(r.uuid)).catch(() => undefined);
        }
        await uploads.link(t.local, digest);
        const exp = this.expires();
        if (exp !== undefined) await this.schedule.schedule('blob', t.local, digest, exp);
      },
      (offset) => blobs.open(digest, offset),
      maxBlobSize,
    );
    fill.done.catch((e: unknown) => this.deps.log?.warn('mirror: blob from upstream not cached', { name: t.local, digest, err: String(e) }));
    void fill.run(res.body);
    return fill;
  }

  /** Size of a blob upstream (HEAD of a blob not cached: nothing is fetched). */
  async blobSize(t: MirrorTarget, digest: string): Promise<number> {
    if (checkDigest(digest) !== 'ok') throw new V2Error('BLOB_UNKNOWN', { digest }, 'not a sha256 digest');
    let res;
    try {
      res = await t.upstream.request('HEAD', `/v2/${t.remote}/blobs/${digest}`, t.remote);
    } catch (e) {
      throw this.unavailable(t, digest, e as Error);
    }
    t.upstream.discard(res);
    const status = res.statusCode ?? 0;
    if (status === 404) throw new V2Error('BLOB_UNKNOWN', { digest });
    if (status === 401 || status === 403) throw this.refused(t, status);
    const len = Number(res.headers['content-length']);
    if (status !== 200 || !Number.isSafeInteger(len) || len < 0) throw this.unavailable(t, digest, new Error(`upstream answered ${status}`));
    return len;
  }

  /** The upstream's tags, or undefined when it cannot be asked (the caller lists the cached ones). */
  async tags(t: MirrorTarget): Promise<string[] | undefined> {
    try {
      const res = await t.upstream.request('GET', `/v2/${t.remote}/tags/list`, t.remote, { Accept: 'application/json' });
      const status = res.statusCode ?? 0;
      if (status === 404) {
        t.upstream.discard(res);
        throw new V2Error('NAME_UNKNOWN', { name: t.local });
      }
      if (status === 401 || status === 403) {
        t.upstream.discard(res);
        throw this.refused(t, status);
      }
      if (status !== 200) {
        t.upstream.discard(res);
        return undefined;
      }
      const doc = JSON.parse((await t.upstream.readBody(res, MAX_TAGS_BODY)).toString('utf8')) as { tags?: unknown };
      // only well-formed tags: the bridge asks upstream for each, and clients get them as names
      return Array.isArray(doc.tags) ? doc.tags.filter((x): x is string => typeof x === 'string' && parseTag(x) !== undefined).sort() : [];
    } catch (e) {
      if (e instanceof V2Error) throw e;
      return undefined;
    }
  }

  /**
   * Remove what expired: manifests (revision and the tags on it) and blobs (the repository's link;
   * the bytes too when no other cached repository holds them and no local repository links them).
   */
  async sweep(now = Date.now()): Promise<{ manifests: number; blobs: number }> {
    const { manifests, uploads } = this.deps;
    // wall clock (now may be set ahead): bytes written since are a push of the same content
    const startedAt = Date.now();
    let m = 0;
    let b = 0;
    for (const e of await this.schedule.entries('manifest')) {
      if (e.expires > now) continue;
      const name = parseV2Name(e.name);
      const tags = name ? await manifests.delete(name, { digest: e.digest }) : undefined;
      if (name && tags && tags.length > 0) await this.deps.toV1?.unpublish(name, tags);
      await this.schedule.remove(e);
      m++;
    }
    // layers v1 image records name (local v1 pushes, the bridge's v1 views): read once per sweep
    let v1Layers: Set<string> | undefined;
    for (const e of await this.schedule.entries('blob')) {
      if (e.expires > now) continue;
      const name = parseV2Name(e.name);
      if (name) await uploads.unlink(name, e.digest);
      await this.schedule.remove(e);
      b++;
      if (!(await this.schedule.blobElsewhere(e.digest, e.name)) && !(await this.linkedLocally(e.digest))) {
        // a v1 record naming the bytes keeps them: no v1 image is left pointing at a removed blob
        // (the records of an expired mirrored image go with garbage collection, then its bytes)
        v1Layers ??= await this.v1LayerDigests();
        if (v1Layers.has(e.digest)) continue;
        // unless written again since the sweep started (a local push of the same content, v1 or v2)
        await deleteBlobUnlessWritten(this.deps.driver, e.digest.slice('sha256:'.length), startedAt - 1000);
      }
    }
    if (m + b > 0) this.deps.log?.info('mirror: expired content removed', { manifests: m, blobs: b });
    return { manifests: m, blobs: b };
  }

  /** Every blob digest a v1 image record's layer link names (registry-wide and per repository). */
  private async v1LayerDigests(): Promise<Set<string>> {
    const { driver } = this.deps;
    const out = new Set<string>();
    const list = async (prefix: string): Promise<string[]> => {
      try {
        return await driver.list(prefix);
      } catch (e) {
        if (isNotFound(e)) return [];
        throw e;
      }
    };
    const readLinks = async (imagesRoot: string): Promise<void> => {
      for (const image of await list(imagesRoot)) {
        const raw = await readOptional(driver, `${image}/layer`, RECORD_MAX);
        if (!raw) continue;
        try {
          const d = (JSON.parse(raw.toString('utf8')) as { digest?: unknown }).digest;
          if (typeof d === 'string') out.add(d);
        } catch {
          // an unreadable link names nothing
        }
      }
    };
    await readLinks(keys.imagesRoot(null));
    for (const ns of await list(keys.repositoriesRoot)) {
      for (const repo of await list(ns)) await readLinks(`${repo}/_images`);
    }
    return out;
  }

  /** Whether a repository that is not mirrored (mixed mode: pushes) links the blob. */
  private async linkedLocally(digest: string): Promise<boolean> {
    const { driver } = this.deps;
    const walk = async (prefix: string, depth: number): Promise<boolean> => {
      let children: string[];
      try {
        children = await driver.list(prefix);
      } catch (e) {
        if (isNotFound(e)) return false;
        throw e;
      }
      const name = prefix.slice('v2/repositories/'.length);
      if (children.some((c) => c.endsWith('/_layers')) && name !== '' && !this.target(name)) {
        if (await keyExists(driver, linkKey(name, digest))) return true;
      }
      if (depth >= 8) return false;
      for (const c of children) {
        const base = c.slice(c.lastIndexOf('/') + 1);
        if (base.startsWith('_')) continue;
        if (await walk(c, depth + 1)) return true;
      }
      return false;
    };
    return walk('v2/repositories', 0);
  }

  /** Sweep expired content now and then (every node may; removals are idempotent). */
  start(): void {
    if (this.cfg.ttl <= 0) return;
    const every = (this.cfg.sweep_interval ?? Math.min(600, Math.max(10, this.cfg.ttl / 10))) * 1000;
    this.sweepTimer = setInterval(() => {
      this.sweep().catch((e: unknown) => this.deps.log?.warn('mirror: expiry sweep failed', { err: String(e) }));
    }, every);
    this.sweepTimer.unref();
  }

  /** Stop sweeping; let downloads in progress finish writing the cache (up to 15 s), then close. */
  async close(): Promise<void> {
    clearInterval(this.sweepTimer);
    const pending = [...this.fills.values()].map((f) => f.then((x) => x.done));
    if (pending.length > 0) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([Promise.allSettled(pending), new Promise((r) => (timer = setTimeout(r, 15_000)))]);
      clearTimeout(timer);
    }
    for (const u of this.ups) u.client.close();
  }
}
