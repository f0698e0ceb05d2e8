import type { Context } from 'koa';
import { V2Error } from '../errors/v2.js';
import { checkDigest, type V2Name } from '../content/v2-names.js';
import { MT, type StoredManifest, type V2Manifests } from '../content/v2-manifests.js';
import type { V2ToV1 } from '../content/v2-to-v1.js';
import { readRawBody } from '../http/body.js';
import { isRegistryError } from '../errors/index.js';
import { bodiless } from '../http/respond.js';
import { manifestReferences, manifestTarget } from '../notifications/events.js';
import type { V2Deps } from './deps.js';
import { AnswerCache, answerCacheOn, MANIFEST_ANSWERS } from './answer-cache.js';
import { accepted, principalOf, reference, type RepoRequest, type V2RouteOf } from './request.js';

type ManifestRequest = RepoRequest<V2RouteOf<'manifest'>>;

/** /v2/<name>/manifests/<reference>: GET/HEAD (content negotiation), PUT, DELETE (spec v2-bridge §2, §3.7). */
export function manifestHandlers(deps: V2Deps) {
  const { manifests } = deps;
  const cacheOn = answerCacheOn(deps.answerCache);
  const manifestAnswers = cacheOn ? new AnswerCache<StoredManifest>(cacheOn, { ...MANIFEST_ANSWERS, weigh: (m) => 256 + m.bytes.length }) : undefined;
  const refs = (req: RepoRequest, bytes: Buffer) => (req.notifier?.includeReferences ? manifestReferences(bytes) : undefined);

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
    // a v1 tag that is only the bridge's view of a v2 push whose tag is absent (cut push or delete)
    // is not bridged back: that would serve a manifest nobody pushed
    const orphanView = !stored && ref.tag && deps.toV1 ? await deps.toV1.isDerivedView(name, ref.tag) : false;
    let found = stored ?? (ref.tag && deps.fromV1 && !orphanView ? await deps.fromV1.manifestForTag(name, ref.tag) : undefined);
    if (!found && ref.digest && deps.schema1) found = await deps.schema1.byDigest(name, ref.digest);
    if (!found) throw new V2Error('MANIFEST_UNKNOWN', ref);
    const accept = accepted(ctx);
    let fromList = false;
    // spec §2.5 step 5: a manifest list by tag for a client that does not accept lists gets
    // its linux/amd64 image (converted below when schema2 is not accepted either), else 404
    if (ref.tag && found.mediaType === MT.list && !accept.has(MT.list) && !accept.has('*/*')) {
      const entries =
        (JSON.parse(found.bytes.toString('utf8')) as { manifests?: { digest?: unknown; platform?: { os?: unknown; architecture?: unknown } }[] }).manifests ??
        [];
      const pick = entries.find((e) => e.platform?.os === 'linux' && e.platform.architecture === 'amd64');
      // a mirrored list is only as well-formed as its upstream made it: a child digest is checked before use
      const childDigest = typeof pick?.digest === 'string' && checkDigest(pick.digest) === 'ok' ? pick.digest : undefined;
      let child = childDigest ? await manifests.get(name, { digest: childDigest }) : undefined;
      const mt = deps.mirror?.target(name);
      if (!child && mt && childDigest) {
        // a mirrored list: its child is fetched like any manifest by digest
        await deps.mirror!.manifest(mt, { digest: childDigest });
        child = await manifests.get(name, { digest: childDigest });
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

  /** GET/HEAD: by tag or digest, as the client's Accept header allows; a mirrored one revalidated first. */
  async function get(ctx: Context, req: ManifestRequest): Promise<void> {
    const { route, name, mt, notify } = req;
    const ref = reference(route.reference, true);
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
    notify('pull', (o) => manifestTarget(o, name, found, ref.tag, refs(req, found.bytes)));
    const inm = ctx.get('If-None-Match').replace(/"/g, '').trim();
    if (inm && inm === found.digest) {
      ctx.status = 304;
      return;
    }
    if (ctx.method === 'HEAD') {
      bodiless(ctx, 200, found.size, found.mediaType);
      return;
    }
    ctx.status = 200;
    ctx.body = found.bytes;
    ctx.type = found.mediaType;
  }

  /** PUT: store the manifest (by tag or digest), publish the tag to v1 clients, tell the index. */
  async function put(ctx: Context, req: ManifestRequest): Promise<void> {
    const { route, name, base, notify } = req;
    const ref = reference(route.reference, false);
    let bytes: Buffer;
    try {
      bytes = await readRawBody(ctx, 4 * 1024 * 1024);
    } catch (e) {
      if (isRegistryError(e) && e.code === 'BODY_TOO_LARGE') throw new V2Error('MANIFEST_TOO_LARGE');
      throw e;
    }
    const principal = principalOf(ctx) ?? { account: null, admin: true };
    const authorization = ctx.get('Authorization') || undefined;
    // the index's notice is written ahead (issue 17): a kill between the tag and the notice
    // leaves the intent, replayed at the next start
    const intent =
      ref.tag && deps.index && deps.journal
        ? await deps.journal.begin({
            op: 'pushed',
            name,
            tag: ref.tag,
            account: principal.account,
            admin: principal.admin,
            ...(authorization ? { authorization } : {}),
          })
        : undefined;
    let rev: Awaited<ReturnType<V2Manifests['put']>>;
    let chain: Awaited<ReturnType<V2ToV1['publish']>>;
    try {
      rev = await manifests.put(name, ref, bytes, ctx.get('Content-Type'));
      chain = ref.tag && deps.toV1 ? await deps.toV1.publish(name, ref.tag, rev.mediaType, bytes, rev.digest) : undefined;
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
    notify('push', (o) => manifestTarget(o, name, { mediaType: rev.mediaType, digest: rev.digest, size: bytes.length }, ref.tag, refs(req, bytes)));
    ctx.status = 201;
    ctx.set('Location', `${base}/manifests/${rev.digest}`);
    ctx.set('Docker-Content-Digest', rev.digest);
    if (rev.subject) ctx.set('OCI-Subject', rev.subject);
    ctx.body = '';
    ctx.length = 0;
  }

  /** DELETE: by tag or by digest (every tag on it), v1-pushed tags included (spec §3.7); the index told. */
  async function remove(ctx: Context, { route, name, notify }: ManifestRequest): Promise<void> {
    const ref = reference(route.reference, false);
    if (!deps.config.storage_delete) throw new V2Error('UNSUPPORTED', undefined, 'deletes are disabled (storage_delete)');
    const principal = principalOf(ctx) ?? { account: null, admin: true };
    const authorization = ctx.get('Authorization') || undefined;
    // by tag, the index's notice is written ahead; by digest the tags are known after the delete
    const intent =
      ref.tag && deps.index && deps.journal
        ? await deps.journal.begin({
            op: 'deleted',
            name,
            tags: [ref.tag],
            account: principal.account,
            admin: principal.admin,
            ...(authorization ? { authorization } : {}),
          })
        : undefined;
    // both steps under the lock the bridge moves v1 tags under (V2ToV1.publish): a push's v1 view
    // written between them would stay, for a v2 tag this delete removes
    const steps = async (): Promise<{ v1Tags: string[]; deleted: string[] | undefined }> => {
      // spec §3.7: a v1-pushed tag is deleted through v2 too, by tag or by its derived digest
      const v1Tags =
        deps.fromV1 && deps.toV1
          ? ref.tag
            ? (await deps.fromV1.hasTag(name, ref.tag)) // one tag read, not every v1 tag's
              ? [ref.tag]
              : []
            : await deps.fromV1.tagsWithDigest(name, ref.digest!)
          : [];
      // The v1 side goes first (issue 17 crash campaign): a kill between the two steps then leaves the
      // v2 tag stored but its v1 view gone, which both APIs read as deleted (V2ToV1.current: 'gone');
      // the other order left the v1 view, bridged back over v2 as a manifest nobody pushed.
      const unpublished = new Set<string>(v1Tags);
      if (deps.toV1) {
        for (const t of ref.tag ? [ref.tag] : await manifests.tagsPointingTo(name, ref.digest!)) unpublished.add(t);
        await deps.toV1.unpublish(name, [...unpublished]);
      }
      const deleted = await manifests.delete(name, ref);
      // A PUT of a tag to this digest writes the v2 tag without the lock: one written after the tags
      // were read above is untagged by the delete all the same, and its v1 view (still the tag's
      // previous image: the PUT's publish waits for the lock, then finds the v2 tag gone) goes too.
      const late = (deleted ?? []).filter((t) => !unpublished.has(t));
      if (deps.toV1 && late.length > 0) await deps.toV1.unpublish(name, late);
      return { v1Tags, deleted };
    };
    const { v1Tags, deleted } = deps.toV1 ? await deps.toV1.exclusive(name, steps) : await steps();
    let removed = deleted;
    if (v1Tags.length > 0 && (ref.digest || !removed)) removed = [...new Set([...(removed ?? []), ...v1Tags])];
    if (!removed) {
      if (intent) await deps.journal!.end(intent);
      throw new V2Error('MANIFEST_UNKNOWN', ref);
    }
    // distribution: a delete by digest names the digest, then each tag it untagged; by tag, the tag
    if (ref.digest) notify('delete', () => ({ digest: ref.digest!, repository: name }));
    for (const t of ref.digest ? removed : [ref.tag!]) notify('delete', () => ({ repository: name, tag: t }));
    if (deps.index && removed.length > 0) {
      const after =
        !intent && deps.journal
          ? await deps.journal.begin({
              op: 'deleted',
              name,
              tags: removed,
              account: principal.account,
              admin: principal.admin,
              ...(authorization ? { authorization } : {}),
            })
          : intent;
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
  }

  return { get, put, delete: remove };
}
