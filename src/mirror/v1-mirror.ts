import http, { type IncomingMessage } from 'node:http';
import https from 'node:https';
import { PassThrough } from 'node:stream';
import type { Context, Next } from 'koa';
import type { Config } from '../config/schema.js';
import { BoundedCache } from '../util/bounded-cache.js';
import { parseRepoName, type RepoName } from '../content/names.js';
import { MAX_ANCESTRY, type V1Images } from '../content/v1-images.js';
import type { V1Repositories } from '../content/v1-repositories.js';
import { MT, type V2Manifests } from '../content/v2-manifests.js';
import type { V2ToV1 } from '../content/v2-to-v1.js';
import { isImageId } from '../digest/digest.js';
import { isRegistryError } from '../errors/index.js';
import type { Logger } from '../log/logger.js';
import type { PullThrough } from './pull-through.js';
import { discard, Upstream } from './upstream.js';

/**
 * v1 mirroring (issue 13; spec v1-protocol §9), in front of the v1 registry and stand-in index
 * routes, two ways:
 *
 * 1. The Python registry's `mirroring.source` (a v1 upstream): a request the local handlers answer
 *    404 is asked upstream (same path and query, the client's headers but Host). Image json and
 *    ancestry are answered from upstream (and kept briefly in memory); a layer is streamed to the
 *    client while it is stored, and the image becomes a complete local record once the layer's
 *    payload checksum is the one upstream announced — the last bytes reach the client only then.
 *    Tags are answered from upstream and kept for `tags_cache_ttl` (never written locally, so a tag
 *    moved upstream shows after the ttl). Search merges upstream results into local ones.
 *
 * 2. The bridge (no other mirror does this): a v1 client asking the tags of a repository that a v2
 *    upstream mirrors (`mirror.upstreams`) gets the v1 view of the upstream's image — the tag's
 *    manifest and blobs are pulled through the v2 cache, then the bridge writes the v1 records
 *    (json, ancestry, layer links to the same blobs) and the v1 tag, as for a v2 push.
 */

const MAX_JSON = 4 * 1024 * 1024;
/** Tags of one repository materialised per v1 tags-list request (each costs its blobs). */
const MAX_BRIDGED_TAGS = 8;
const IMAGE_ROUTE = /^\/v1\/images\/([^/]+)\/(json|ancestry|layer)$/;
const REPO_ROUTE = /^\/v1\/repositories\/(.+?)\/(tags(?:\/([^/]+))?|json|images)\/?$/;

export interface V1MirrorDeps {
  readonly config: Config;
  readonly images: V1Images;
  readonly repos: V1Repositories;
  readonly log?: Logger;
  /** The v2 pull-through and the bridge, for v1 reads of v2-mirrored repositories. */
  readonly v2?: { readonly mirror: PullThrough; readonly manifests: V2Manifests; readonly toV1: V2ToV1 };
  /**
   * Whether the request may read the repository on the registry routes (its token, htpasswd
   * credentials, or open access): the bridge fetches from the upstream and writes only for such a
   * request. Without it, every request may.
   */
  readonly mayRead?: (ctx: Context, repo: RepoName) => Promise<boolean>;
}

interface Cached {
  readonly status: number;
  readonly headers: Record<string, string>;
  readonly body: Buffer;
}

function send(url: URL, headers: Record<string, string>, timeoutMs: number): Promise<IncomingMessage> {
  const mod = url.protocol === 'https:' ? https : http;
  return new Promise((resolve, reject) => {
    const req = mod.request(url, { method: 'GET', headers }, (res) => {
      clearTimeout(timer);
      resolve(res);
    });
    const timer = setTimeout(() => req.destroy(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
    req.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    req.end();
  });
}

/** Upstream headers worth passing on (Python copied all but Content-Encoding; hop-by-hop ones cannot be). */
const PASS = new Set([
  'x-docker-size',
  'x-docker-checksum-payload',
  'x-docker-checksum',
  'x-docker-token',
  'www-authenticate',
  'content-type',
  'last-modified',
  'etag',
  'cache-control',
  'expires',
]);

const SMALL_MAX_BYTES = 32 * 1024 * 1024;
const TAGS_MAX_BYTES = 16 * 1024 * 1024;

/**
 * Bytes a cached answer holds: its key, body and the upstream headers kept with it (up to the 16 KiB
 * an answer's headers may take, as much as a small body or more), plus a fixed overhead per entry
 * and per header. Without the headers, 5000 small answers with 16 KiB of headers each held ~78 MiB
 * past a cache's byte bound.
 */
function weighCached(v: Cached, key: string): number {
  let n = 256 + key.length + v.body.length;
  for (const [k, h] of Object.entries(v.headers)) n += 32 + k.length + h.length;
  return n;
}

/** What the v1 mirror's caches hold now (for tests and diagnostics). */
export interface V1MirrorUsage {
  readonly small: { readonly entries: number; readonly bytes: number; readonly maxBytes: number };
  readonly tags: { readonly entries: number; readonly bytes: number; readonly maxBytes: number };
}

export function v1Mirror(deps: V1MirrorDeps) {
  const { config, images, repos, log } = deps;
  const source = config.mirroring?.source ? new URL(config.mirroring.source) : undefined;
  const sourceIndex = config.mirroring?.source_index ? new URL(config.mirroring.source_index) : source;
  const tagsTtl = (config.mirroring?.tags_cache_ttl ?? 172800) * 1000;
  const timeoutMs = (config.mirror?.timeout ?? 20) * 1000;
  // json/ancestry answers of images not complete here yet, and tags (never stored: the ttl decides)
  const small = new BoundedCache<Cached>({ maxEntries: 5000, maxBytes: SMALL_MAX_BYTES, weight: weighCached });
  const tags = new BoundedCache<Cached>({ maxEntries: 5000, maxBytes: TAGS_MAX_BYTES, weight: weighCached });
  const bridging = new Map<string, Promise<void>>();

  const forwardHeaders = (ctx: Context): Record<string, string> => {
    const h: Record<string, string> = {};
    for (const [k, v] of Object.entries(ctx.headers)) {
      if (
        v === undefined ||
        k === 'host' ||
        k === 'location' ||
        k === 'connection' ||
        k === 'content-length' ||
        k === 'if-none-match' ||
        k === 'if-modified-since' ||
        k === 'range' ||
        // credentials of this site, not of the source: the web UI's session cookies (a browser
        // sends them with a GET of /v1/…) and a proxy's own Proxy-Authorization (tokens-review)
        k === 'cookie' ||
        k === 'proxy-authorization'
      )
        continue;
      h[k] = Array.isArray(v) ? v.join(', ') : v;
    }
    return h;
  };

  const answer = (ctx: Context, c: Cached): void => {
    ctx.status = c.status;
    for (const [k, v] of Object.entries(c.headers)) ctx.set(k, v);
    ctx.body = c.body;
  };

  const upstreamSmall = async (ctx: Context, base: URL): Promise<Cached | undefined> => {
    const url = new URL(ctx.url, base);
    const res = await send(url, forwardHeaders(ctx), timeoutMs);
    if (res.statusCode !== 200) {
      discard(res, timeoutMs);
      return undefined;
    }
    const body = await Upstream.readCapped(res, MAX_JSON, timeoutMs);
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(res.headers)) if (PASS.has(k) && typeof v === 'string') headers[k] = v;
    headers['content-type'] ??= 'application/json';
    return { status: 200, headers, body };
  };

  /** The v1 view of a v2-mirrored repository's tags (tag: one; else up to MAX_BRIDGED_TAGS). */
  const bridgeTags = async (repo: RepoName, tag: string | undefined): Promise<void> => {
    const v2 = deps.v2!;
    const t = v2.mirror.target(repo.full);
    if (!t) return;
    let wanted: string[];
    if (tag !== undefined) wanted = [tag];
    else {
      const all = (await v2.mirror.tags(t).catch(() => undefined)) ?? (await v2.manifests.tags(t.local));
      wanted = [...(all.includes('latest') ? ['latest'] : []), ...all.filter((x) => x !== 'latest')].slice(0, MAX_BRIDGED_TAGS);
    }
    for (const tg of wanted) {
      const key = `${repo.full}:${tg}`;
      let p = bridging.get(key);
      if (!p) {
        p = (async () => {
          await v2.mirror.manifest(t, { tag: tg });
          let m = await v2.manifests.get(t.local, { tag: tg });
          if (!m) return;
          if (m.mediaType === MT.list || m.mediaType === MT.ociIndex) {
            // the v1 view is of the linux/amd64 image, as a 1.x client (linux/amd64 only) pulls
            const entries =
              (JSON.parse(m.bytes.toString('utf8')) as { manifests?: { digest?: string; platform?: { os?: string; architecture?: string } }[] }).manifests ??
              [];
            const pick = entries.find((e) => e.platform?.os === 'linux' && e.platform.architecture === 'amd64');
            if (!pick?.digest) return;
            await v2.mirror.manifest(t, { digest: pick.digest });
            m = await v2.manifests.get(t.local, { digest: pick.digest });
            if (!m) return;
          }
          const doc = JSON.parse(m.bytes.toString('utf8')) as { config?: { digest?: string }; layers?: { digest?: string }[] };
          const digests = [doc.config?.digest, ...(doc.layers ?? []).map((l) => l.digest)].filter((d): d is string => typeof d === 'string');
          // every blob in the cache first: the v1 records carry payload checksums over the layer bytes
          for (const d of digests) {
            const s = await v2.mirror.blob(t, d).catch(async (e: unknown) => {
              // already cached and linked: nothing to fetch
              if (await images.blobs.stat(d)) return undefined;
              throw e;
            });
            if (s) {
              s.stream.resume();
              await new Promise<void>((resolve, reject) => {
                s.stream.once('end', resolve);
                s.stream.once('error', reject);
              });
              // the bridge reads the published blob (payload checksums)
              await s.cached;
            }
          }
          const chain = await v2.toV1.publish(t.local, tg, m.mediaType, m.bytes);
          // the stand-in index's image list (a 1.x pull asks it first)
          if (chain && chain.images.length > 0)
            await repos.mergeIndexImages(
              repo,
              chain.images.map((i) => (i.checksum ? { id: i.id, checksum: i.checksum } : { id: i.id })),
            );
        })().finally(() => bridging.delete(key));
        bridging.set(key, p);
      }
      await p;
    }
  };

  const usage = (): V1MirrorUsage => ({
    small: { entries: small.size, bytes: small.bytes, maxBytes: SMALL_MAX_BYTES },
    tags: { entries: tags.size, bytes: tags.bytes, maxBytes: TAGS_MAX_BYTES },
  });

  const middleware = async (ctx: Context, next: Next): Promise<void> => {
    if (ctx.method !== 'GET' && ctx.method !== 'HEAD') return next();
    const path = ctx.path;
    const repoRoute = REPO_ROUTE.exec(path);
    const imageRoute = repoRoute ? undefined : IMAGE_ROUTE.exec(path);
    const isSearch = path === '/v1/search';
    if (!repoRoute && !imageRoute && !isSearch) return next();

    // (2) v1 reads of a v2-mirrored repository: materialise its v1 view first, then answer locally
    if (repoRoute && deps.v2 && (repoRoute[2]!.startsWith('tags') || repoRoute[2] === 'images')) {
      let repo: RepoName | undefined;
      try {
        repo = parseRepoName(decodeURIComponent(repoRoute[1]!));
      } catch {
        repo = undefined;
      }
      // Only for a caller the registry lets read the repository: the route's own check comes after
      // this, and an anonymous request would otherwise make the mirror download up to
      // MAX_BRIDGED_TAGS images from the upstream and write their records (its answer still 401).
      // A caller it refuses gets that refusal from the route, as without a mirror.
      if (repo && deps.v2.mirror.target(repo.full) && (!deps.mayRead || (await deps.mayRead(ctx, repo)))) {
        try {
          await bridgeTags(repo, repoRoute[3] !== undefined ? decodeURIComponent(repoRoute[3]) : undefined);
        } catch (e) {
          // the cached view (if any) answers; a miss stays the local 404
          log?.warn('mirror: v1 view of a v2 upstream image not refreshed', { repo: repo.full, err: String(e) });
        }
      }
    }
    if (!source) return next();

    // (1) Python mirroring: local first; a local 404 goes upstream
    let local404: boolean;
    let localError: unknown;
    try {
      await next();
      local404 = ctx.status === 404;
    } catch (e) {
      if (!(isRegistryError(e) && e.status === 404)) throw e;
      local404 = true;
      localError = e;
    }
    if (isSearch) {
      if (ctx.status !== 200 || !sourceIndex) return;
      try {
        const up = await upstreamSmall(ctx, sourceIndex);
        if (!up) return;
        const mine = JSON.parse(Buffer.isBuffer(ctx.body) ? ctx.body.toString('utf8') : String(ctx.body)) as {
          results: { name: string }[];
          num_results: number;
        };
        const theirs = (JSON.parse(up.body.toString('utf8')) as { results?: { name: string }[] }).results ?? [];
        const byName = new Map(mine.results.map((r) => [r.name, r]));
        for (const r of theirs) byName.set(r.name, r);
        const results = [...byName.values()];
        ctx.body = JSON.stringify({ ...mine, results, num_results: results.length });
      } catch (e) {
        log?.warn('mirror: upstream search not merged', { err: String(e) });
      }
      return;
    }
    if (!local404) return;
    if (!(await fromUpstream(ctx, repoRoute, imageRoute)) && localError) throw localError;
  };
  return Object.assign(middleware, { usage });

  /** Python's proxy rule for a local 404; true when the upstream answered the request. */
  async function fromUpstream(ctx: Context, repoRoute: RegExpExecArray | null, imageRoute: RegExpExecArray | null | undefined): Promise<boolean> {
    try {
      if (repoRoute) {
        const kind = repoRoute[2]!;
        const base = kind === 'images' ? sourceIndex! : source!;
        if (kind.startsWith('tags')) {
          const key = ctx.url;
          let c = tags.get(key);
          if (!c) {
            c = await upstreamSmall(ctx, base);
            if (c) tags.set(key, c, tagsTtl);
          }
          if (!c) return false;
          answer(ctx, c);
          return true;
        }
        const c = await upstreamSmall(ctx, base);
        if (!c) return false;
        answer(ctx, c);
        return true;
      }
      const id = imageRoute![1]!;
      const what = imageRoute![2]!;
      if (!isImageId(id)) return false;
      // records are cached in the registry-wide scope (a standalone mirror, as Python ran it);
      // with per-repository scopes the answers are passed through, not stored
      const scope = images.scoped ? undefined : null;
      if (what !== 'layer') {
        // Kept in memory only in the registry-wide scope, where every caller may read every image
        // anyway. Behind an index the upstream answered with this caller's Authorization, and the
        // local check let in any valid token (an image route names no repository): keyed by id, the
        // answer would go to callers the upstream refuses (a private image's json to anonymous).
        const key = `${what}\n${id}`;
        let c = scope === null ? small.get(key) : undefined;
        if (!c) {
          c = await upstreamSmall(ctx, source!);
          if (c && scope === null) small.set(key, c, 10 * 60_000);
        }
        if (!c) return false;
        answer(ctx, c);
        return true;
      }
      // the layer: json and ancestry first (the record is written complete, with the payload)
      const jsonUrl = new URL(`/v1/images/${id}/json`, source);
      const ancUrl = new URL(`/v1/images/${id}/ancestry`, source);
      const headers = forwardHeaders(ctx);
      const jr = await send(jsonUrl, headers, timeoutMs);
      if (jr.statusCode !== 200) {
        discard(jr, timeoutMs);
        return false;
      }
      const json = await Upstream.readCapped(jr, MAX_JSON, timeoutMs);
      const payload = typeof jr.headers['x-docker-checksum-payload'] === 'string' ? jr.headers['x-docker-checksum-payload'] : undefined;
      const ar = await send(ancUrl, headers, timeoutMs);
      const ancestry: unknown = ar.statusCode === 200 ? JSON.parse((await Upstream.readCapped(ar, MAX_JSON, timeoutMs)).toString('utf8')) : [id];
      if (ar.statusCode !== 200) discard(ar, timeoutMs);
      // the records become local images other clients pull: only a consistent image is taken
      const inconsistent = whyInconsistent(id, json, ancestry);
      if (inconsistent !== undefined) {
        log?.warn('mirror: v1 image from upstream refused', { id, reason: inconsistent });
        return false;
      }
      const lr = await send(new URL(`/v1/images/${id}/layer`, source), headers, timeoutMs);
      if (lr.statusCode !== 200) {
        discard(lr, timeoutMs);
        return false;
      }
      const len = Number(lr.headers['content-length']);
      const toClient = new PassThrough({ highWaterMark: 1024 * 1024 });
      const toStore = new PassThrough({ highWaterMark: 1024 * 1024 });
      const stored = scope === null ? images.putMirrored(null, id, json, ancestry as string[], toStore, payload) : undefined;
      let storeFailed = false;
      stored?.catch(() => {
        // (the store stopped reading: the download must not wait for it)
        storeFailed = true;
        toStore.destroy();
      });
      ctx.status = 200;
      ctx.type = 'application/octet-stream';
      if (Number.isSafeInteger(len) && len >= 0) ctx.length = len;
      toClient.once('error', () => ctx.res.destroy());
      ctx.body = toClient;
      void (async () => {
        let held: Buffer | undefined;
        // an upstream body that stalls is cut (time spent waiting for the client or the store does not count)
        let last = Date.now();
        let waiting = false;
        const stall = setInterval(
          () => {
            if (!waiting && Date.now() - last > timeoutMs) lr.destroy(new Error(`upstream layer stalled for ${timeoutMs} ms`));
          },
          Math.max(50, timeoutMs / 4),
        );
        try {
          for await (const c of lr as AsyncIterable<Buffer>) {
            waiting = true;
            if (stored && !storeFailed && !toStore.write(c)) await drainedOrGone(toStore);
            if (held && !toClient.destroyed && !toClient.write(held)) await drainedOrGone(toClient);
            waiting = false;
            last = Date.now();
            // nobody left to give the bytes to: stop downloading
            if ((!stored || storeFailed) && toClient.destroyed) throw new Error('the client went away');
            held = c;
          }
          clearInterval(stall);
          toStore.end();
          // the record is complete and verified before the client gets its last bytes
          if (stored) await stored;
          if (held) toClient.write(held);
          toClient.end();
        } catch (e) {
          clearInterval(stall);
          lr.destroy();
          toStore.destroy(e as Error);
          toClient.destroy(e as Error);
          log?.warn('mirror: v1 layer from upstream not cached', { id, err: String(e) });
        }
      })();
      return true;
    } catch (e) {
      // the upstream is unreachable: the local 404 stands
      log?.warn('mirror: v1 upstream unavailable', { path: ctx.path, err: String(e) });
      return false;
    }
  }
}

/** Resolves when the stream can take more, or will never again (closed, failed). */
function drainedOrGone(w: PassThrough): Promise<void> {
  if (w.destroyed) return Promise.resolve();
  return new Promise((resolve) => {
    const go = (): void => {
      w.off('drain', go);
      w.off('close', go);
      w.off('error', go);
      resolve();
    };
    w.on('drain', go);
    w.on('close', go);
    w.on('error', go);
  });
}

/**
 * Why an upstream's image is not one consistent v1 image, or undefined when it is: json an object
 * whose id is `id` (and parent, if any, an image id), ancestry a list of image ids starting with
 * `id`, then its parent (spec v1-protocol §2.5: what a push is held to).
 */
export function whyInconsistent(id: string, json: Buffer, ancestry: unknown): string | undefined {
  let doc: unknown;
  try {
    doc = JSON.parse(json.toString('utf8'));
  } catch {
    return 'image json is not JSON';
  }
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) return 'image json is not an object';
  const { id: jid, parent } = doc as { id?: unknown; parent?: unknown };
  if (jid !== id) return 'image json of another id';
  if (parent !== undefined && parent !== null && parent !== '' && (typeof parent !== 'string' || !isImageId(parent))) return 'invalid parent id';
  if (!Array.isArray(ancestry) || ancestry.length === 0) return 'ancestry is not a list of ids';
  if (ancestry.length > MAX_ANCESTRY) return `ancestry of ${ancestry.length} images, more than the ${MAX_ANCESTRY} a chain may hold`;
  if (!ancestry.every((a) => typeof a === 'string' && isImageId(a))) return 'ancestry holds an invalid id';
  if (ancestry[0] !== id) return 'ancestry does not start with the image';
  if (new Set(ancestry).size !== ancestry.length) return 'ancestry repeats an id';
  const hasParent = typeof parent === 'string' && parent !== '';
  if (hasParent ? ancestry[1] !== parent : ancestry.length !== 1) return 'ancestry does not follow the parent';
  return undefined;
}
