import type { Context } from 'koa';
import { V2Error, type V2Code } from '../errors/v2.js';
import { checkDigest, parseV2Name, type V2Name } from '../content/v2-names.js';
import type { V2Principal } from '../auth/v2-registry-auth.js';
import type { Notifier } from '../notifications/notifier.js';
import { requestRecord, urlBase, type Action, type Target } from '../notifications/events.js';
import type { MirrorTarget } from '../mirror/pull-through.js';
import type { V2Deps } from './deps.js';

/** A /v2/ path split by the last route keyword (spec §1.1: names contain '/'); see matchV2. */
export type V2Route =
  | { kind: 'base' }
  | { kind: 'catalog' }
  | { kind: 'blob'; name: string; digest: string }
  | { kind: 'uploads'; name: string }
  | { kind: 'upload'; name: string; uuid: string }
  | { kind: 'manifest'; name: string; reference: string }
  | { kind: 'tags'; name: string }
  | { kind: 'referrers'; name: string; digest: string }
  | { kind: 'other'; name: string };

export type V2RouteOf<K extends V2Route['kind']> = Extract<V2Route, { kind: K }>;

/** A request on one repository, its name checked and its mirror (if any) known. */
export interface RepoRequest<R extends V2Route = V2Route> {
  readonly route: R;
  readonly name: V2Name;
  /** `/v2/<name>`, the prefix of Location headers. */
  readonly base: string;
  /** The upstream this repository mirrors (issue 13), when it is a mirrored name. */
  readonly mt: MirrorTarget | undefined;
  /** distribution's notifications, when an endpoint is live. */
  readonly notifier: Notifier | undefined;
  /** An event of this request (after it succeeded), as distribution's listener emits it. */
  notify(action: Action, target: (origin: string) => Target): void;
}

/**
 * The repository part of a request: the name parsed, the notifier and mirror looked up; a mirrored
 * repository is read-only (v2-bridge §5.3): pushes, mounts and deletes are refused here.
 */
export function repoRequest<R extends Exclude<V2Route, { kind: 'base' | 'catalog' }>>(ctx: Context, route: R, deps: V2Deps): RepoRequest<R> {
  const name = v2Name(route.name);
  const notifier = deps.notifier?.active ? deps.notifier : undefined;
  const mt = deps.mirror?.target(name);
  if (mt && ctx.method !== 'GET' && ctx.method !== 'HEAD') {
    throw new V2Error('UNSUPPORTED', { name }, `${name} mirrors ${mt.upstream.base.origin}: pushes and deletes are not accepted here`);
  }
  return {
    route,
    name,
    base: `/v2/${name}`,
    mt,
    notifier,
    notify: (action, target) => {
      if (!notifier) return;
      notifier.emit({ action, target: target(urlBase(ctx)), request: requestRecord(ctx), actor: principalOf(ctx)?.account ?? null });
    },
  };
}

/** Who the authorizer let in (absent with no authorizer state). */
export function principalOf(ctx: Context): V2Principal | undefined {
  return ctx.state.v2Principal as V2Principal | undefined;
}

export const TAG = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/;

/**
 * A manifest <reference>: a digest when it has a ':', else a tag (spec §1.1). For a lookup (GET,
 * HEAD) a reference off both grammars names no manifest: 404 MANIFEST_UNKNOWN, as distribution
 * answers and the OCI conformance suite expects; elsewhere (PUT, DELETE) it is a 400.
 */
export function reference(raw: string, lookup = false): { tag?: string; digest?: string } {
  let r: string;
  try {
    r = raw.includes('%') ? decodeURIComponent(raw) : raw;
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
export function accepted(ctx: Context): Set<string> {
  const raw = ctx.headers.accept;
  const lines = Array.isArray(raw) ? raw : raw ? [raw] : [];
  return new Set(
    lines
      .flatMap((l) => l.split(','))
      .map((v) => v.split(';')[0]!.trim().toLowerCase())
      .filter(Boolean),
  );
}

/** A repository named in a query parameter (`from` of a mount), or undefined when it is no v2 name. */
export function scopeName(raw: string): V2Name | undefined {
  try {
    return parseV2Name(decodeURIComponent(raw));
  } catch {
    return undefined;
  }
}

export function renderV2Error(ctx: Context, e: V2Error): void {
  ctx.status = e.status;
  for (const [k, v] of Object.entries(e.headers)) ctx.set(k, v);
  ctx.type = 'application/json; charset=utf-8';
  ctx.body = JSON.stringify({ errors: [{ code: e.code, message: e.message, detail: e.detail ?? null }] });
}

export function v2Name(raw: string): V2Name {
  let decoded: string;
  try {
    decoded = raw.includes('%') ? decodeURIComponent(raw) : raw;
  } catch {
    throw new V2Error('NAME_INVALID');
  }
  const name = parseV2Name(decoded);
  if (!name) throw new V2Error('NAME_INVALID', { name: decoded });
  return name;
}

export function digestParam(raw: string | undefined, missing: V2Code = 'DIGEST_INVALID'): string {
  if (raw === undefined || raw === '') throw new V2Error(missing, undefined, 'digest missing');
  const c = checkDigest(raw);
  if (c === 'invalid') throw new V2Error('DIGEST_INVALID', { digest: raw }, 'invalid digest');
  if (c === 'unsupported') throw new V2Error('DIGEST_INVALID', { digest: raw }, 'only sha256 digests are supported');
  return raw;
}

export function declaredLength(ctx: Context): number | undefined {
  if (/chunked/i.test(ctx.get('Transfer-Encoding'))) return undefined;
  const v = ctx.get('Content-Length');
  return v === '' ? undefined : Number(v);
}

/** A 201 for a blob now in the repository (upload finished or mount). */
export function blobCreated(ctx: Context, base: string, digest: string): void {
  ctx.status = 201;
  ctx.set('Location', `${base}/blobs/${digest}`);
  ctx.set('Docker-Content-Digest', digest);
  ctx.body = '';
  ctx.length = 0;
}
