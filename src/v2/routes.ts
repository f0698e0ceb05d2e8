import type { Context, Next } from 'koa';
import type { Config } from '../config/schema.js';
import { V2Error, type V2Code } from '../errors/v2.js';
import type { BlobStore } from '../content/blob-store.js';
import { checkDigest, parseV2Name, type V2Name } from '../content/v2-names.js';
import type { V2Uploads } from '../content/v2-uploads.js';
import { MT, V2Manifests, type StoredManifest } from '../content/v2-manifests.js';
import type { V1ToV2 } from '../content/v1-to-v2.js';
import type { V2ToV1 } from '../content/v2-to-v1.js';
import type { Schema1Bridge } from '../content/schema1-bridge.js';
import { readRawBody } from '../http/body.js';
import { isRegistryError } from '../errors/index.js';
import { accelUri, bodiless, sendBytes } from '../http/respond.js';
import { V2_OPEN, type V2Authorizer } from '../auth/v2-registry-auth.js';
import type { ResourceAccess } from '../auth/v2-scope.js';
import type { V2Principal } from '../auth/v2-registry-auth.js';
import type { CatalogSource } from '../content/v2-catalog.js';
import type { Logger } from '../log/logger.js';
import type { IndexJournal } from '../content/index-journal.js';
import { BoundedCache } from '../util/bounded-cache.js';
import type { Notifier } from '../notifications/notifier.js';
import { blobTarget, manifestReferences, manifestTarget, requestRecord, urlBase, type Action, type Target } from '../notifications/events.js';
import type { PullThrough } from '../mirror/pull-through.js';

/** The index learning of v2 pushes (issue 4): repository, tag and top v1 id of the bridge. */
export interface V2IndexHook {
  /** images: the derived v1 chain, root first (the last is the tagged one); empty without a v1 view. */
  pushed(principal: V2Principal, name: V2Name, tag: string, images: readonly { id: string; checksum?: string }[], authorization: string | undefined): Promise<void>;
  deleted(principal: V2Principal, name: V2Name, tags: readonly string[], authorization: string | undefined): Promise<void>;
}

export interface V2Deps {
  readonly config: Config;
  readonly blobs: BlobStore;
  readonly uploads: V2Uploads;
  readonly manifests: V2Manifests;
  /** v1-pushed tags seen through /v2/ (the bridge). */
  readonly fromV1?: V1ToV2;
  /** v2-pushed tags made visible to v1 clients (the bridge). */
  readonly toV1?: V2ToV1;
  /** signed schema1 for clients that take nothing newer. */
  readonly schema1?: Schema1Bridge;
  /** Who may do what (spec §4.4); default: everything (a standalone registry without auth). */
  readonly auth?: V2Authorizer;
  /** Where /v2/_catalog reads names; absent: the catalog answers UNSUPPORTED. */
  readonly catalog?: CatalogSource;
  /** Told of every tagged manifest push, when an index runs in this process. */
  readonly index?: V2IndexHook;
  readonly log?: Logger;
  /**
   * Answers derived from metadata (a tag's manifest for an Accept header, a tag list) are kept for
   * this long while `stamp()` (bumped by every write of this node) is unchanged; another node's
   * change shows within the time, as with the metadata cache. Absent or 0: nothing kept.
   */
  readonly answerCache?: { readonly ttlMs: number; readonly stamp: () => number };
  /** Write-ahead intents of index notices (with `index`), replayed by {@link replayIndexNotices}. */
  readonly journal?: IndexJournal;
  /** distribution's notifications (issue 15): events of pushes, pulls, mounts and deletes. */
  readonly notifier?: Notifier;
  /**
   * The pull-through mirror (issue 13): names under an upstream's prefix are read from it through
   * the local cache; writes to them answer UNSUPPORTED. Other names are local repositories.
   */
  readonly mirror?: PullThrough;
}

/**
 * Send the index the notices a crash or an unreachable index left pending, deciding from storage
 * what holds now: a pushed tag still there is announced with its current image (idempotent), a
 * deleted tag still absent is forgotten; anything else is done.
 */
export async function replayIndexNotices(deps: V2Deps): Promise<{ sent: number; dropped: number }> {
  const { journal, index, manifests, toV1, log } = deps;
  if (!journal || !index) return { sent: 0, dropped: 0 };
  return journal.replay(
    async (n) => {
      const name = parseV2Name(n.name);
      if (!name) return;
      const principal = { account: n.account, admin: n.admin };
      if (n.op === 'pushed' && n.tag) {
        const found = await manifests.get(name, { tag: n.tag });
        if (!found) return; // never landed, or deleted since: nothing to announce
        // a v1 push of the tag since then won: the index learnt that one from the v1 push
        if (toV1 && (await toV1.current(name, n.tag)) !== 'v2') return;
        const chain = toV1 ? await toV1.publish(name, n.tag, found.mediaType, found.bytes) : undefined;
        await index.pushed(principal, name, n.tag, chain?.images ?? [], n.authorization);
      } else if (n.op === 'deleted' && n.tags) {
        const gone: string[] = [];
        for (const t of n.tags) if (!(await manifests.resolve(name, { tag: t }))) gone.push(t);
        if (gone.length > 0) await index.deleted(principal, name, gone, n.authorization);
      }
    },
    (n, e) => log?.warn('index notice not delivered yet', { op: n.op, name: n.name, error: String(e) }),
  );
}

/**
 * Recent answers, each valid for the write stamp it was computed under and until it expires.
 * Concurrent requests for a missing answer share one computation (64 clients asking at the moment
 * an answer expires cost one computation, not 64). Bounded by entries and by bytes (a manifest
 * answer can be 4 MiB; security issue 10, finding 7): an answer is weighed once it has resolved.
 */
class AnswerCache<T> {
  private readonly cache: BoundedCache<{ readonly stamp: number; readonly value: Promise<T>; bytes: number }>;
  constructor(
    private readonly opts: { readonly ttlMs: number; readonly stamp: () => number },
    bounds: { readonly maxEntries: number; readonly maxBytes: number; readonly weigh: (value: T) => number },
  ) {
    this.cache = new BoundedCache({ maxEntries: bounds.maxEntries, maxBytes: bounds.maxBytes, weight: (e, key) => 128 + 2 * key.length + e.bytes });
    this.weigh = bounds.weigh;
  }
  private readonly weigh: (value: T) => number;

  get(key: string, compute: () => Promise<T>): Promise<T> {
    const stamp = this.opts.stamp();
    const e = this.cache.get(key);
    if (e && e.stamp === stamp) return e.value;
    const value = compute();
    const entry = { stamp, value, bytes: 0 };
    this.cache.set(key, entry, this.opts.ttlMs);
    // errors are not kept; a write while computing makes the entry stale by its stamp
    value.then(
      (v) => {
        entry.bytes = this.weigh(v);
        if (this.cache.peek(key) === entry) this.cache.reweigh(key);
      },
      () => {
        if (this.cache.peek(key) === entry) this.cache.delete(key);
      },
    );
    return value;
  }
}

/** Bounds of the answer caches: manifests up to 4 MiB each, tag lists. */
const MANIFEST_ANSWERS = { maxEntries: 5000, maxBytes: 32 * 1024 * 1024 } as const;
const TAG_ANSWERS = { maxEntries: 5000, maxBytes: 8 * 1024 * 1024 } as const;

const TAG = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/;

/**
 * A manifest <reference>: a digest when it has a ':', else a tag (spec §1.1). For a lookup (GET,
 * HEAD) a reference off both grammars names no manifest: 404 MANIFEST_UNKNOWN, as distribution
 * answers and the OCI conformance suite expects; elsewhere (PUT, DELETE) it is a 400.
 */
function reference(raw: string, lookup = false): { tag?: string; digest?: string } {
  let r: string;
  try {
    r = decodeURIComponent(raw);
  } catch {
    if (lookup) throw new V2Error('MANIFEST_UNKNOWN', { tag: raw });
    throw new V2Error('TAG_INVALID', { tag: raw }, 'invalid tag');
  }
  if (lookup && (r.includes(':') ? checkDigest(r) !== 'ok' : !TAG.test(r))) {
    throw new V2Error('MANIFEST_UNKNOWN', r.includes(':') ? { digest: r } : { tag: r });
  }
  if (r.includes(':')) return { digest: digestParam(r) };
  if (!TAG.test(r)) throw new V2Error('TAG_INVALID', { tag: r }, 'invalid tag');
  return { tag: r };
}

/** Every media type named in the Accept header lines, parameters stripped (spec §2.5 step 1). */
function accepted(ctx: Context): Set<string> {
  const raw = ctx.headers.accept;
  const lines = Array.isArray(raw) ? raw : raw ? [raw] : [];
  return new Set(lines.flatMap((l) => l.split(',')).map((v) => v.split(';')[0]!.trim().toLowerCase()).filter(Boolean));
}

const API_VERSION = 'registry/2.0';

/** Split a /v2/ path by the last route keyword (spec §1.1: names contain '/'). */
type V2Route =
  | { kind: 'base' }
  | { kind: 'catalog' }
  | { kind: 'blob'; name: string; digest: string }
  | { kind: 'uploads'; name: string }
  | { kind: 'upload'; name: string; uuid: string }
  | { kind: 'manifest'; name: string; reference: string }
  | { kind: 'tags'; name: string }
  | { kind: 'referrers'; name: string; digest: string }
  | { kind: 'other'; name: string };

export function matchV2(path: string): V2Route | undefined {
  if (path === '/v2' || path === '/v2/') return { kind: 'base' };
  if (path === '/v2/_catalog') return { kind: 'catalog' };
  if (!path.startsWith('/v2/')) return undefined;
  const rest = path.slice(4);
  let m = /^(.+)\/blobs\/uploads\/?$/.exec(rest);
  if (m) return { kind: 'uploads', name: m[1]! };
  m = /^(.+)\/blobs\/uploads\/([^/]+)$/.exec(rest);
  if (m) return { kind: 'upload', name: m[1]!, uuid: m[2]! };
  m = /^(.+)\/blobs\/([^/]+)$/.exec(rest);
  if (m) return { kind: 'blob', name: m[1]!, digest: m[2]! };
  m = /^(.+)\/manifests\/([^/]+)$/.exec(rest);
  if (m) return { kind: 'manifest', name: m[1]!, reference: m[2]! };
  m = /^(.+)\/tags\/list$/.exec(rest);
  if (m) return { kind: 'tags', name: m[1]! };
  m = /^(.+)\/referrers\/([^/]+)$/.exec(rest);
  if (m) return { kind: 'referrers', name: m[1]!, digest: m[2]! };
  return { kind: 'other', name: rest };
}

/** A repository named in a query parameter (`from` of a mount), or undefined when it is no v2 name. */
function scopeName(raw: string): V2Name | undefined {
  try {
    return parseV2Name(decodeURIComponent(raw));
  } catch {
    return undefined;
  }
}

/**
 * The access a request needs (spec §4.4, distribution app.go): GET/HEAD pull; POST/PUT/PATCH pull
 * and push; DELETE delete; a cross-repository mount also pull on `from`; the catalog
 * registry:catalog:*; `/v2/` only a valid token.
 */
export function requiredAccess(route: V2Route, method: string, query: Record<string, string | string[] | undefined>): ResourceAccess[] {
  if (route.kind === 'base') return [];
  if (route.kind === 'catalog') return [{ type: 'registry', name: 'catalog', actions: ['*'] }];
  // The path's name, tag and digest are checked here, before authentication (STYLE: validate
  // parameters, then authenticate): the name goes into the challenge's scope, and a control
  // character there made setting WWW-Authenticate throw (a 500; security issue 10, finding 11).
  const name = v2Name(route.name);
  // a GET/HEAD of a reference off both grammars is a 404 after authentication (OCI conformance:
  // "nonexistent manifest"); the reference never reaches a header
  if (route.kind === 'manifest' && method !== 'GET' && method !== 'HEAD') reference(route.reference, false);
  if (route.kind === 'blob' || route.kind === 'referrers') digestParam(route.digest);
  let actions: string[];
  if (method === 'GET' || method === 'HEAD') actions = ['pull'];
  else if (method === 'DELETE') actions = ['delete'];
  else actions = ['pull', 'push'];
  const needs: ResourceAccess[] = [{ type: 'repository', name, actions }];
  if (route.kind === 'uploads' && method === 'POST' && typeof query.mount === 'string' && typeof query.from === 'string') {
    // a `from` that is no repository name cannot be mounted from: the request is an ordinary upload
    const from = scopeName(query.from);
    if (from !== undefined && from !== name) needs.push({ type: 'repository', name: from, actions: ['pull'] });
  }
  return needs;
}

function renderV2Error(ctx: Context, e: V2Error): void {
  ctx.status = e.status;
  for (const [k, v] of Object.entries(e.headers)) ctx.set(k, v);
  ctx.type = 'application/json; charset=utf-8';
  ctx.body = JSON.stringify({ errors: [{ code: e.code, message: e.message, detail: e.detail ?? null }] });
}

function v2Name(raw: string): V2Name {
  let decoded: string;
  try {
    decoded = decodeURIComponent(raw);
  } catch {
    throw new V2Error('NAME_INVALID');
  }
  const name = parseV2Name(decoded);
  if (!name) throw new V2Error('NAME_INVALID', { name: decoded });
  return name;
}

function digestParam(raw: string | undefined, missing: V2Code = 'DIGEST_INVALID'): string {
  if (raw === undefined || raw === '') throw new V2Error(missing, undefined, 'digest missing');
  const c = checkDigest(raw);
  if (c === 'invalid') throw new V2Error('DIGEST_INVALID', { digest: raw }, 'invalid digest');
  if (c === 'unsupported') throw new V2Error('DIGEST_INVALID', { digest: raw }, 'only sha256 digests are supported');
  return raw;
}

function declaredLength(ctx: Context): number | undefined {
  if (/chunked/i.test(ctx.get('Transfer-Encoding'))) return undefined;
  const v = ctx.get('Content-Length');
  return v === '' ? undefined : Number(v);
}

/**
 * The v2 / OCI distribution API (spec v2-bridge §1): this slice serves `/v2/`, blobs and upload
 * sessions; manifests, tags, catalog and referrers answer NAME_UNKNOWN / UNSUPPORTED until built.
 * Only enabled with `v2: true`. Every request is authorised first by `deps.auth` (Bearer tokens of
 * the index, htpasswd, or nothing on a standalone registry; src/main.ts chooses).
 */
export function v2Routes(deps: V2Deps) {
  const { blobs, uploads, manifests } = deps;
  const cacheOn = deps.answerCache && deps.answerCache.ttlMs > 0 ? deps.answerCache : undefined;
  const manifestAnswers = cacheOn ? new AnswerCache<StoredManifest>(cacheOn, { ...MANIFEST_ANSWERS, weigh: (m) => 256 + m.bytes.length }) : undefined;
  const tagAnswers = cacheOn ? new AnswerCache<string[]>(cacheOn, { ...TAG_ANSWERS, weigh: (tags) => tags.reduce((a, t) => a + 32 + t.length, 0) }) : undefined;

  /** Every tag of a repository, v2 and v1 (spec §3.7: a tag deleted through v1 is gone). */
  async function allTags(name: V2Name): Promise<string[]> {
    const v1Tags = deps.fromV1 ? await deps.fromV1.tags(name) : [];
    if (!(await manifests.exists(name)) && v1Tags.length === 0) throw new V2Error('NAME_UNKNOWN', { name });
    let v2Tags = await manifests.tags(name);
    if (deps.toV1) {
      const toV1 = deps.toV1;
      const sides = await Promise.all(v2Tags.map((t) => toV1.current(name, t)));
      v2Tags = v2Tags.filter((_, i) => sides[i] !== 'gone');
    }
    return [...new Set([...v2Tags, ...v1Tags])].sort();
  }

  /**
   * The manifest a GET/HEAD of ref answers with for this client's Accept header (spec §2.5, §3.7):
   * v2-pushed or bridged from v1, a list's linux/amd64 child, or signed schema1.
   */
  async function resolveManifest(ctx: Context, name: V2Name, ref: { tag?: string; digest?: string }): Promise<StoredManifest> {
    let stored = await manifests.get(name, ref);
    if (stored && ref.tag && deps.toV1) {
      // spec §3.7: a later v1 push of the tag wins; a delete through v1 deletes it here too
      const side = await deps.toV1.current(name, ref.tag);
      if (side === 'gone') throw new V2Error('MANIFEST_UNKNOWN', ref);
      if (side === 'v1') stored = undefined;
    }
    let found = stored ?? (ref.tag && deps.fromV1 ? await deps.fromV1.manifestForTag(name, ref.tag) : undefined);
    if (!found && ref.digest && deps.schema1) found = await deps.schema1.byDigest(name, ref.digest);
    if (!found) throw new V2Error('MANIFEST_UNKNOWN', ref);
    const accept = accepted(ctx);
    let fromList = false;
    // spec §2.5 step 5: a manifest list by tag for a client that does not accept lists gets
    // its linux/amd64 image (converted below when schema2 is not accepted either), else 404
    if (ref.tag && found.mediaType === MT.list && !accept.has(MT.list) && !accept.has('*/*')) {
      const entries = (JSON.parse(found.bytes.toString('utf8')) as { manifests?: { digest?: unknown; platform?: { os?: unknown; architecture?: unknown } }[] }).manifests ?? [];
      const pick = entries.find((e) => e.platform?.os === 'linux' && e.platform.architecture === 'amd64');
      let child = typeof pick?.digest === 'string' ? await manifests.get(name, { digest: pick.digest }) : undefined;
      const mt = deps.mirror?.target(name);
      if (!child && mt && typeof pick?.digest === 'string') {
        // a mirrored list: its child is fetched like any manifest by digest
        await deps.mirror!.manifest(mt, { digest: pick.digest });
        child = await manifests.get(name, { digest: pick.digest });
      }
      if (!child) throw new V2Error('MANIFEST_UNKNOWN', ref, 'the manifest list has no linux/amd64 image');
      found = child;
      fromList = true;
    }
    // spec §2.5 step 4: by tag, a client that accepts no schema2/list/OCI gets signed schema1
    const modern = (fromList ? [MT.schema2, '*/*'] : [MT.schema2, MT.list, MT.ociManifest, MT.ociIndex, '*/*']).some((t) => accept.has(t));
    if (!modern && ref.tag && deps.schema1 && found.mediaType === MT.schema2) {
      const s1 = await deps.schema1.forTag(name, ref.tag, found, stored === undefined);
      if (!s1) throw new V2Error('MANIFEST_UNKNOWN', ref, 'this image has no schema1 form');
      found = s1;
    }
    // spec §2.5 step 3: an OCI manifest/index is only served to clients that accept it
    else if (!accept.has('*/*') && (found.mediaType === MT.ociManifest || found.mediaType === MT.ociIndex) && !accept.has(found.mediaType)) {
      throw new V2Error('MANIFEST_UNKNOWN', ref, `${found.mediaType} found, but the Accept header does not allow it`);
    }
    return found;
  }

  async function handle(ctx: Context, route: V2Route): Promise<void> {
    const method = ctx.method;
    if (route.kind === 'base') {
      if (method !== 'GET' && method !== 'HEAD') throw new V2Error('UNSUPPORTED');
      ctx.status = 200;
      ctx.type = 'application/json; charset=utf-8';
      ctx.body = '{}';
      return;
    }
    if (route.kind === 'catalog') {
      if (method !== 'GET' && method !== 'HEAD') throw new V2Error('UNSUPPORTED');
      if (!deps.catalog) throw new V2Error('UNSUPPORTED', undefined, 'the catalog is not available on this node');
      const max = deps.config.catalog_max_entries;
      const nRaw = ctx.query.n;
      let n = max;
      if (nRaw !== undefined) {
        // distribution: n above catalog.maxentries (or not a number) is PAGINATION_NUMBER_INVALID
        if (typeof nRaw !== 'string' || !/^\d+$/.test(nRaw) || Number(nRaw) > max) throw new V2Error('PAGINATION_NUMBER_INVALID', { n: nRaw });
        n = Number(nRaw);
      }
      const last = typeof ctx.query.last === 'string' && ctx.query.last !== '' ? ctx.query.last : undefined;
      const principal = (ctx.state.v2Principal as V2Principal | undefined) ?? { account: null, admin: false };
      let repositories: string[] = [];
      try {
        if (n > 0) repositories = await deps.catalog.names(principal, last, n + 1, ctx.get('Authorization') || undefined);
      } catch (e) {
        // a split registry whose index is down or refuses: a v2 error, not a crash
        deps.log?.warn('catalog not available', { error: String(e) });
        throw new V2Error('UNAVAILABLE', undefined, 'the catalog is not available right now');
      }
      if (repositories.length > n) {
        repositories = repositories.slice(0, n);
        ctx.set('Link', `</v2/_catalog?last=${encodeURIComponent(repositories[n - 1]!)}&n=${n}>; rel="next"`);
      }
      ctx.status = 200;
      ctx.type = 'application/json; charset=utf-8';
      ctx.body = JSON.stringify({ repositories });
      return;
    }
    const name = v2Name(route.name);
    const base = `/v2/${name}`;
    const notifier = deps.notifier?.active ? deps.notifier : undefined;
    /** An event of this request (after it succeeded), as distribution's listener emits it. */
    const notify = (action: Action, target: (origin: string) => Target): void => {
      if (!notifier) return;
      const account = (ctx.state.v2Principal as V2Principal | undefined)?.account ?? null;
      notifier.emit({ action, target: target(urlBase(ctx)), request: requestRecord(ctx), actor: account });
    };
    // a mirrored repository is read-only (v2-bridge §5.3): pushes, mounts and deletes are refused
    const mt = deps.mirror?.target(name);
    if (mt && method !== 'GET' && method !== 'HEAD') {
      throw new V2Error('UNSUPPORTED', { name }, `${name} mirrors ${mt.upstream.base.origin}: pushes and deletes are not accepted here`);
    }
    const sessionHeaders = (uuid: string, offset: number): void => {
      ctx.set('Location', `${base}/blobs/uploads/${uuid}`);
      ctx.set('Docker-Upload-UUID', uuid);
      ctx.set('Range', offset > 0 ? `0-${offset - 1}` : '0-0');
    };
    const created = (digest: string): void => {
      ctx.status = 201;
      ctx.set('Location', `${base}/blobs/${digest}`);
      ctx.set('Docker-Content-Digest', digest);
      ctx.body = '';
      ctx.length = 0;
    };

    const notifyBlobPush = async (digest: string): Promise<void> => {
      if (!notifier) return;
      const info = await blobs.stat(digest);
      if (info) notify('push', (o) => blobTarget(o, name, digest, info.size));
    };
    const refs = (bytes: Buffer) => (notifier?.includeReferences ? manifestReferences(bytes) : undefined);

    switch (route.kind) {
      case 'blob': {
        const digest = digestParam(route.digest);
        if (method === 'GET' || method === 'HEAD') {
          let info = (await uploads.linked(name, digest)) ? await blobs.stat(digest) : undefined;
          if (!info && mt) {
            // not cached: from the upstream, streamed to the client while it is cached
            const blobHeaders = (): void => {
              ctx.set('Docker-Content-Digest', digest);
              ctx.set('Etag', `"${digest}"`);
            };
            if (method === 'HEAD') {
              const size = await deps.mirror!.blobSize(mt, digest);
              blobHeaders();
              bodiless(ctx, 200, size, 'application/octet-stream');
              return;
            }
            const fetched = await deps.mirror!.blob(mt, digest);
            if (fetched) {
              blobHeaders();
              ctx.status = 200;
              ctx.type = 'application/octet-stream';
              // a blob that fails verification must not look complete: the connection is cut
              fetched.stream.once('error', () => ctx.res.destroy());
              ctx.body = fetched.stream;
              if (fetched.size !== undefined) ctx.length = fetched.size;
              return;
            }
            info = await blobs.stat(digest);
          }
          if (!info) throw new V2Error('BLOB_UNKNOWN', { digest });
          ctx.set('Docker-Content-Digest', digest);
          ctx.set('Etag', `"${digest}"`);
          ctx.set('Cache-Control', 'max-age=31536000');
          // storage_redirect: as distribution with S3, a GET goes to a pre-signed URL (307 keeps the method)
          const url = method === 'GET' ? await blobs.redirectURL(digest) : undefined;
          if (url) {
            ctx.status = 307;
            ctx.set('Location', url);
            ctx.body = '';
            return;
          }
          await sendBytes(ctx, info.size, (start, length) => blobs.open(digest, start, length), { accel: accelUri(deps.config, digest, ctx) });
          // distribution: GET and HEAD of a blob both serve it through the listener (a pull)
          notify('pull', (o) => blobTarget(o, name, digest, info.size));
          return;
        }
        if (method === 'DELETE') {
          if (!deps.config.storage_delete) throw new V2Error('UNSUPPORTED', undefined, 'deletes are disabled (storage_delete)');
          if (!(await uploads.unlink(name, digest))) throw new V2Error('BLOB_UNKNOWN', { digest });
          notify('delete', () => ({ digest, repository: name }));
          ctx.status = 202;
          ctx.body = '';
          ctx.length = 0;
          return;
        }
        throw new V2Error('UNSUPPORTED');
      }
      case 'uploads': {
        if (method !== 'POST') throw new V2Error('UNSUPPORTED');
        const mount = typeof ctx.query.mount === 'string' ? ctx.query.mount : undefined;
        const from = typeof ctx.query.from === 'string' ? ctx.query.from : undefined;
        if (mount !== undefined) {
          const digest = digestParam(mount);
          const source = from !== undefined ? parseV2Name(from) : undefined;
          const stat = source && (await uploads.linked(source, digest)) ? await blobs.stat(digest) : undefined;
          if (source && stat) {
            await uploads.link(name, digest);
            created(digest);
            notify('mount', (o) => {
              // distribution's field order: fromRepository before url
              const { url, ...t } = blobTarget(o, name, digest, stat.size);
              return { ...t, fromRepository: source, url: url! };
            });
            return;
          }
          // not mountable: an ordinary session instead (spec end-11)
        }
        const digestQ = typeof ctx.query.digest === 'string' ? ctx.query.digest : undefined;
        // sessions are counted per repository and per account, per client address when anonymous
        const account = (ctx.state.v2Principal as V2Principal | undefined)?.account ?? null;
        const uuid = await uploads.start(name, account !== null ? `account:${account}` : `address:${ctx.ip}`);
        if (digestQ !== undefined) {
          // single POST with the whole blob (end-4b)
          const digest = digestParam(digestQ);
          await uploads.finish(name, uuid, digest, ctx.req, declaredLength(ctx));
          created(digest);
          await notifyBlobPush(digest);
          return;
        }
        ctx.status = 202;
        sessionHeaders(uuid, 0);
        ctx.body = '';
        ctx.length = 0;
        return;
      }
      case 'upload': {
        const uuid = route.uuid;
        if (method === 'GET') {
          const st = await uploads.state(name, uuid);
          ctx.status = 204;
          sessionHeaders(uuid, st.offset);
          return;
        }
        if (method === 'PATCH') {
          const cr = ctx.get('Content-Range');
          const len = declaredLength(ctx);
          let start: number | undefined;
          if (cr) {
            const m = /^(?:bytes[ =])?(\d+)-(\d+)$/.exec(cr.trim());
            if (!m) throw new V2Error('RANGE_INVALID', { 'Content-Range': cr });
            start = Number(m[1]);
            const end = Number(m[2]);
            if (end < start || (len !== undefined && len !== end - start + 1)) throw new V2Error('RANGE_INVALID', { 'Content-Range': cr });
          }
          const offset = await uploads.append(name, uuid, ctx.req, {
            ...(start !== undefined ? { start } : {}),
            ...(len !== undefined ? { contentLength: len } : {}),
          });
          ctx.status = 202;
          sessionHeaders(uuid, offset);
          ctx.body = '';
          ctx.length = 0;
          return;
        }
        if (method === 'PUT') {
          const digest = digestParam(typeof ctx.query.digest === 'string' ? ctx.query.digest : undefined);
          const len = declaredLength(ctx);
          const hasBody = len === undefined ? /chunked/i.test(ctx.get('Transfer-Encoding')) : len > 0;
          await uploads.finish(name, uuid, digest, hasBody ? ctx.req : undefined, hasBody ? len : undefined);
          created(digest);
          await notifyBlobPush(digest);
          return;
        }
        if (method === 'DELETE') {
          await uploads.cancel(name, uuid);
          ctx.status = 204;
          ctx.body = null;
          return;
        }
        throw new V2Error('UNSUPPORTED');
      }
      case 'manifest': {
        const ref = reference(route.reference, method === 'GET' || method === 'HEAD');
        if (method === 'GET' || method === 'HEAD') {
          if (mt) {
            // by tag revalidated upstream, by digest from the cache (fetched once when missing)
            const fresh = await deps.mirror!.manifest(mt, ref);
            if (fresh.stale) ctx.set('Warning', fresh.stale);
          }
          const answerKey = `${name}\n${route.reference}\n${String(ctx.headers.accept ?? '')}`;
          const found = await (manifestAnswers ? manifestAnswers.get(answerKey, () => resolveManifest(ctx, name, ref)) : resolveManifest(ctx, name, ref));
          ctx.set('Docker-Content-Digest', found.digest);
          ctx.set('Etag', `"${found.digest}"`);
          // distribution: HEAD and GET share the handler that loads the manifest: both are pulls
          notify('pull', (o) => manifestTarget(o, name, found, ref.tag, refs(found.bytes)));
          const inm = ctx.get('If-None-Match').replace(/"/g, '').trim();
          if (inm && inm === found.digest) {
            ctx.status = 304;
            return;
          }
          if (method === 'HEAD') {
            bodiless(ctx, 200, found.size, found.mediaType);
            return;
          }
          ctx.status = 200;
          ctx.body = found.bytes;
          ctx.type = found.mediaType;
          return;
        }
        if (method === 'PUT') {
          let bytes: Buffer;
          try {
            bytes = await readRawBody(ctx, 4 * 1024 * 1024);
          } catch (e) {
            if (isRegistryError(e) && e.code === 'BODY_TOO_LARGE') throw new V2Error('MANIFEST_TOO_LARGE');
            throw e;
          }
          const principal = (ctx.state.v2Principal as V2Principal | undefined) ?? { account: null, admin: true };
          const authorization = ctx.get('Authorization') || undefined;
          // the index's notice is written ahead (issue 17): a kill between the tag and the notice
          // leaves the intent, replayed at the next start
          const intent = ref.tag && deps.index && deps.journal ? await deps.journal.begin({ op: 'pushed', name, tag: ref.tag, account: principal.account, admin: principal.admin, ...(authorization ? { authorization } : {}) }) : undefined;
          let rev: Awaited<ReturnType<V2Manifests['put']>>;
          let chain: Awaited<ReturnType<V2ToV1['publish']>>;
          try {
            rev = await manifests.put(name, ref, bytes, ctx.get('Content-Type'));
            chain = ref.tag && deps.toV1 ? await deps.toV1.publish(name, ref.tag, rev.mediaType, bytes) : undefined;
          } catch (e) {
            if (intent) await deps.journal!.end(intent);
            throw e;
          }
          if (ref.tag && deps.index) {
            // the push stands even if the index cannot record it: the intent stays and is replayed
            // (the notice is idempotent: it creates the repository once and merges the image)
            try {
              await deps.index.pushed(principal, name, ref.tag, chain?.images ?? [], authorization);
              if (intent) await deps.journal!.end(intent);
            } catch (e) {
              deps.log?.warn('index not updated for a v2 push (kept to retry)', { name, tag: ref.tag, error: String(e) });
            }
          }
          notify('push', (o) => manifestTarget(o, name, { mediaType: rev.mediaType, digest: rev.digest, size: bytes.length }, ref.tag, refs(bytes)));
          ctx.status = 201;
          ctx.set('Location', `${base}/manifests/${rev.digest}`);
          ctx.set('Docker-Content-Digest', rev.digest);
          if (rev.subject) ctx.set('OCI-Subject', rev.subject);
          ctx.body = '';
          ctx.length = 0;
          return;
        }
        if (method === 'DELETE') {
          if (!deps.config.storage_delete) throw new V2Error('UNSUPPORTED', undefined, 'deletes are disabled (storage_delete)');
          const principal = (ctx.state.v2Principal as V2Principal | undefined) ?? { account: null, admin: true };
          const authorization = ctx.get('Authorization') || undefined;
          // by tag, the index's notice is written ahead; by digest the tags are known after the delete
          const intent = ref.tag && deps.index && deps.journal ? await deps.journal.begin({ op: 'deleted', name, tags: [ref.tag], account: principal.account, admin: principal.admin, ...(authorization ? { authorization } : {}) }) : undefined;
          let removed = await manifests.delete(name, ref);
          // spec §3.7: a v1-pushed tag is deleted through v2 too, by tag or by its derived digest
          if (deps.fromV1 && deps.toV1) {
            const v1Tags = ref.tag ? (removed ? [] : (await deps.fromV1.tags(name)).filter((t) => t === ref.tag)) : await deps.fromV1.tagsWithDigest(name, ref.digest!);
            if (v1Tags.length > 0) removed = [...(removed ?? []), ...v1Tags];
          }
          if (!removed) {
            if (intent) await deps.journal!.end(intent);
            throw new V2Error('MANIFEST_UNKNOWN', ref);
          }
          if (deps.toV1) await deps.toV1.unpublish(name, removed);
          // distribution: a delete by digest names the digest, then each tag it untagged; by tag, the tag
          if (ref.digest) notify('delete', () => ({ digest: ref.digest!, repository: name }));
          for (const t of ref.digest ? removed : [ref.tag!]) notify('delete', () => ({ repository: name, tag: t }));
          if (deps.index && removed.length > 0) {
            const after = !intent && deps.journal ? await deps.journal.begin({ op: 'deleted', name, tags: removed, account: principal.account, admin: principal.admin, ...(authorization ? { authorization } : {}) }) : intent;
            try {
              await deps.index.deleted(principal, name, removed, authorization);
              if (after) await deps.journal!.end(after);
            } catch (e) {
              deps.log?.warn('index not updated for a v2 delete (kept to retry)', { name, tags: removed, error: String(e) });
            }
          } else if (intent) await deps.journal!.end(intent);
          ctx.status = 202;
          ctx.body = '';
          ctx.length = 0;
          return;
        }
        throw new V2Error('UNSUPPORTED');
      }
      case 'tags': {
        if (method !== 'GET' && method !== 'HEAD') throw new V2Error('UNSUPPORTED');
        let tags: string[] | undefined = mt ? await deps.mirror!.tags(mt) : undefined;
        if (mt && !tags) ctx.set('Warning', '110 legacy-registry "Response is Stale (upstream unavailable): cached tags"');
        tags ??= await (tagAnswers ? tagAnswers.get(name, () => allTags(name)) : allTags(name));
        const last = typeof ctx.query.last === 'string' ? ctx.query.last : undefined;
        if (last !== undefined) tags = tags.filter((t) => t > last);
        const nRaw = ctx.query.n;
        if (nRaw !== undefined) {
          const n = Number(nRaw);
          if (typeof nRaw !== 'string' || !/^\d+$/.test(nRaw) || n > 10000) throw new V2Error('PAGINATION_NUMBER_INVALID', { n: nRaw });
          if (tags.length > n && n > 0) {
            tags = tags.slice(0, n);
            ctx.set('Link', `<${base}/tags/list?n=${n}&last=${encodeURIComponent(tags[tags.length - 1]!)}>; rel="next"`);
          } else if (n === 0) {
            tags = [];
          }
        }
        ctx.status = 200;
        ctx.type = 'application/json; charset=utf-8';
        ctx.body = JSON.stringify({ name, tags });
        return;
      }
      case 'referrers': {
        if (method !== 'GET' && method !== 'HEAD') throw new V2Error('UNSUPPORTED');
        const digest = digestParam(route.digest);
        const artifactType = typeof ctx.query.artifactType === 'string' ? ctx.query.artifactType : undefined;
        // a repository that does not exist (never pushed, or deleted) is NAME_UNKNOWN, as tags/list
        if (!(await manifests.exists(name)) && (deps.fromV1 ? await deps.fromV1.tags(name) : []).length === 0) throw new V2Error('NAME_UNKNOWN', { name });
        const manifestsOf = await manifests.referrers(name, digest, artifactType);
        if (artifactType !== undefined) ctx.set('OCI-Filters-Applied', 'artifactType');
        ctx.status = 200;
        ctx.type = MT.ociIndex;
        ctx.body = JSON.stringify({ schemaVersion: 2, mediaType: MT.ociIndex, manifests: manifestsOf });
        return;
      }
      case 'other':
        if (method === 'GET' || method === 'HEAD') throw new V2Error('NAME_UNKNOWN', { name: route.name });
        throw new V2Error('UNSUPPORTED');
    }
  }

  return async (ctx: Context, next: Next): Promise<void> => {
    // containerd's mirror requests carry ?ns=<upstream host>: the name is read under that upstream's prefix
    const ns = deps.mirror && typeof ctx.query.ns === 'string' ? deps.mirror.nsPrefix(ctx.query.ns) : undefined;
    if (ns && ctx.path.startsWith('/v2/') && ctx.path !== '/v2/_catalog' && ctx.path.length > 4) ctx.path = `/v2/${ns}${ctx.path.slice(4)}`;
    const route = matchV2(ctx.path);
    if (!route) return next();
    ctx.set('Docker-Distribution-API-Version', API_VERSION);
    try {
      // Authenticate and authorise first (STYLE: at the edge), then the handlers see a principal.
      ctx.state.v2Principal = await (deps.auth ?? V2_OPEN).authorize(ctx, requiredAccess(route, ctx.method, ctx.query));
      await handle(ctx, route);
    } catch (e) {
      if (e instanceof V2Error) {
        renderV2Error(ctx, e);
        return;
      }
      throw e;
    }
  };
}
