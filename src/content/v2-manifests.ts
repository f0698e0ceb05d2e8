import { createHash, createPublicKey, verify, type JsonWebKey } from 'node:crypto';
import { EnvelopeError, signedPayloadOf } from './schema1.js';
import { MANIFEST_FIELDS, parseStrict, readStrict, StrictJsonError, type TopMember } from './strict-json.js';
import type { StorageDriver } from '../storage/driver.js';
import { isNotFound } from '../storage/driver.js';
import { V2Error } from '../errors/v2.js';
import type { BlobStore } from './blob-store.js';
import { keys } from './keys.js';
import { keyExists, LINK_MAX, parseRecord, readOptional, RECORD_MAX, removeIfPresent } from './small-objects.js';
import type { V2Name } from './v2-names.js';
import type { V2Uploads } from './v2-uploads.js';

export const MT = {
  schema2: 'application/vnd.docker.distribution.manifest.v2+json',
  list: 'application/vnd.docker.distribution.manifest.list.v2+json',
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  schema1: 'application/vnd.docker.distribution.manifest.v1+json',
  schema1Signed: 'application/vnd.docker.distribution.manifest.v1+prettyjws',
} as const;

const IMAGE_TYPES: ReadonlySet<string> = new Set([MT.schema2, MT.ociManifest]);
const INDEX_TYPES: ReadonlySet<string> = new Set([MT.list, MT.ociIndex]);
const SHA256 = /^sha256:[a-f0-9]{64}$/;
/**
 * The route reads at most this much of a manifest PUT (spec §1.4: distribution's limit); every
 * stored manifest (pushed, mirrored, imported) went through readManifest, so none is larger, and
 * none is read back past it.
 */
export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;
/**
 * Bound of a revision record read back: its digest, media type and size, and the subject and
 * artifactType the manifest names, which a manifest of up to MAX_MANIFEST_BYTES may make as long as
 * it likes. Read within RECORD_MAX for a few hours on 2026-12-07: a manifest with an artifactType
 * past 64 KiB answered 500 for good, and every gc run failed on it.
 */
export const REVISION_MAX = MAX_MANIFEST_BYTES + RECORD_MAX;

/**
 * Bound of a schema1 document read back: a pushed one is held to MAX_MANIFEST_BYTES; one the
 * schema1 bridge derived carries JSON of at most max_config_size twice over (the top image's and
 * the history's), each escaped into a string (at most twice as long again), and its signature.
 */
export const schema1DocMax = (maxConfigSize: number): number => Math.max(MAX_MANIFEST_BYTES, 4 * maxConfigSize) + RECORD_MAX;
/**
 * Layers a registry does not store: the only descriptors that may carry `urls`, and the only ones
 * that need not be in the repository when they do (spec §1.4, §2.2, §2.4).
 */
const FOREIGN_LAYER_TYPES: ReadonlySet<string> = new Set([
  'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip',
  'application/vnd.oci.image.layer.nondistributable.v1.tar',
  'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip',
  'application/vnd.oci.image.layer.nondistributable.v1.tar+zstd',
]);

/** What is kept beside the manifest bytes (v2/repositories/<name>/_manifests/revisions/<hex>). */
export interface Revision {
  readonly digest: string;
  readonly mediaType: string;
  readonly size: number;
  readonly subject?: string;
  readonly artifactType?: string;
}

export interface StoredManifest extends Revision {
  readonly bytes: Buffer;
}

interface Descriptor {
  mediaType?: unknown;
  digest?: unknown;
  size?: unknown;
  urls?: unknown;
}

const repoKey = (name: string): string => `v2/repositories/${name}/_manifests`;
const revisionKey = (name: string, digest: string): string => `${repoKey(name)}/revisions/${digest.slice(7)}`;
const tagKey = (name: string, tag: string): string => `${repoKey(name)}/tags/${tag}`;
/** Where a v2 tag names its manifest's digest (read by the bridge: V2ToV1.publish). */
export const v2TagKey = tagKey;
const createdKey = (name: string): string => `v2/repositories/${name}/_created`;
/** A marker per manifest that names `subject` (the referrers API, spec §1.4 end-12). */
const referrerKey = (name: string, subject: string, digest: string): string => `${repoKey(name)}/referrers/${subject.slice(7)}/${digest.slice(7)}`;

/** One entry of a referrers index. */
export interface ReferrerDescriptor {
  readonly mediaType: string;
  readonly digest: string;
  readonly size: number;
  readonly artifactType?: string;
  readonly annotations?: Record<string, string>;
}
/** Schema1 documents are kept as sent, under the digest of their canonical payload. */
export const schema1DocKey = (name: string, digest: string): string => `${repoKey(name)}/schema1/${digest.slice(7)}`;

function verifySignature(sig: { header?: { jwk?: JsonWebKey; alg?: string }; signature?: string; protected?: string }, canonical: Buffer): boolean {
  try {
    const jwk = sig.header?.jwk;
    if (!jwk || typeof sig.signature !== 'string' || typeof sig.protected !== 'string') return false;
    const key = createPublicKey({ key: jwk, format: 'jwk' });
    const input = Buffer.from(`${sig.protected}.${canonical.toString('base64url')}`);
    const signature = Buffer.from(sig.signature, 'base64url');
    if (sig.header?.alg === 'ES256') return verify('sha256', input, { key, dsaEncoding: 'ieee-p1363' }, signature);
    if (sig.header?.alg === 'RS256') return verify('sha256', input, key, signature);
    return false;
  } catch {
    return false;
  }
}

function invalid(why: string): V2Error {
  return new V2Error('MANIFEST_INVALID', { reason: why }, `manifest invalid: ${why}`);
}

/** reference.NameTotalLengthMax: Go's len, so bytes of UTF-8. */
const SCHEMA1_NAME_MAX_BYTES = 255;

/**
 * The `name` and `tag` of a schema1 document, checked as distribution 2.8.2 checks them and no more
 * (signedmanifesthandler.go verifyManifest; handlers/manifests.go PutManifest). Neither is compared
 * with the URL: distribution dropped the name check in 2.2.1 and the tag check in 2.3.0, and 2.8.2
 * answers 201 to a signed schema1 whose name or tag is not the URL's, storing it under the URL's
 * repository and tag (measured against Debian's docker-registry 2.8.2). The name is matched against
 * reference.NameRegexp unanchored, so any name holding a lowercase letter or a digit passes
 * ("Foo", "localhost:5000/foo"), and must be at most 255 bytes; else 400 NAME_INVALID. A missing or
 * null name reads as "" (NAME_INVALID); a name or tag of another JSON type fails Go's unmarshalling
 * (400 MANIFEST_INVALID). Nothing here reads either field afterwards: the document is served as sent.
 */
function checkSchema1NameAndTag(m: Record<string, unknown>): void {
  for (const field of ['name', 'tag'] as const) {
    const v = m[field];
    if (v !== undefined && v !== null && typeof v !== 'string') throw invalid(`${field} must be a string`);
  }
  const name = typeof m.name === 'string' ? m.name : '';
  if (Buffer.byteLength(name, 'utf8') > SCHEMA1_NAME_MAX_BYTES || !/[a-z0-9]/.test(name)) throw new V2Error('NAME_INVALID', { name });
}

type Role = 'config' | 'layer' | 'child' | 'subject';

interface CheckedDescriptor {
  readonly where: string;
  readonly mediaType: string;
  readonly digest: string;
  readonly size: number;
  /** a foreign layer with urls: fetched from elsewhere, not looked for here */
  readonly foreign: boolean;
}

/** distribution's rule for foreign layer URLs: absolute http(s), no fragment. */
function httpUrl(u: unknown): boolean {
  if (typeof u !== 'string') return false;
  try {
    const url = new URL(u);
    return (url.protocol === 'http:' || url.protocol === 'https:') && url.hash === '' && !u.includes('#');
  } catch {
    return false;
  }
}

function descriptor(d: unknown, where: string, role: Role): CheckedDescriptor {
  if (d === null || typeof d !== 'object' || Array.isArray(d)) throw invalid(`${where} is not a descriptor`);
  const { mediaType, digest, size, urls } = d as Descriptor;
  if (typeof mediaType !== 'string' || typeof digest !== 'string' || typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) {
    throw invalid(`${where} needs mediaType, digest and size`);
  }
  if (!SHA256.test(digest)) throw invalid(`${where} digest ${digest} is not a sha256 digest`);
  const foreignType = role === 'layer' && FOREIGN_LAYER_TYPES.has(mediaType);
  if (urls !== undefined) {
    // urls would let a manifest name a blob this repository does not hold (issue 10, finding 14)
    if (!foreignType) throw invalid(`${where} may not carry urls: only foreign (non-distributable) layers do`);
    if (!Array.isArray(urls) || !urls.every(httpUrl)) throw invalid(`${where} urls must be absolute http or https URLs without a fragment`);
  }
  return { where, mediaType, digest, size, foreign: foreignType && Array.isArray(urls) && urls.length > 0 };
}

/** The size a descriptor names must be the size of what it points at (spec §2.4 descriptors). */
function sizeMismatch(d: CheckedDescriptor, stored: number): V2Error {
  return new V2Error(
    'MANIFEST_INVALID',
    { digest: d.digest, size: d.size, stored },
    `manifest invalid: ${d.where} size ${d.size} is not the size ${stored} of ${d.digest}`,
  );
}

/**
 * The one reading of a manifest (issue 10): strict JSON (no duplicate keys, no case variants of the
 * formats' field names that Go clients would read, bounded size and depth), then JSON.parse.
 */
function readManifest(bytes: Buffer): { doc: Record<string, unknown>; members: TopMember[] } {
  let read: { value: unknown; members: TopMember[] };
  try {
    read = readStrict(bytes, { maxBytes: MAX_MANIFEST_BYTES, fields: MANIFEST_FIELDS });
  } catch (e) {
    if (e instanceof StrictJsonError) throw invalid(e.message);
    throw e;
  }
  const doc = read.value;
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) throw invalid('not a JSON object');
  return { doc: doc as Record<string, unknown>, members: read.members };
}

/**
 * Image manifests and indexes of the v2 API (spec v2-bridge §1.4, §2): bytes stored as they came,
 * content-addressed in the blob store; per repository a revision record and tag links, each one
 * small object written atomically. Referenced blobs and child manifests must be in the repository.
 */
export class V2Manifests {
  constructor(
    private readonly driver: StorageDriver,
    private readonly blobs: BlobStore,
    private readonly uploads: V2Uploads,
  ) {}

  /** Media type from Content-Type, else from the body (`mediaType`, then its shape). */
  static mediaTypeOf(contentType: string, doc: Record<string, unknown>): string {
    const ct = contentType.split(';')[0]!.trim().toLowerCase();
    if (ct && ct !== 'application/json' && ct !== 'application/octet-stream') return ct;
    if (typeof doc.mediaType === 'string') return doc.mediaType;
    if ('fsLayers' in doc) return MT.schema1;
    if ('manifests' in doc) return MT.ociIndex;
    return MT.ociManifest;
  }

  async put(name: V2Name, reference: { tag?: string; digest?: string }, bytes: Buffer, contentType: string): Promise<Revision> {
    const { doc: m, members } = readManifest(bytes);
    const mediaType = V2Manifests.mediaTypeOf(contentType, m);
    if (mediaType === MT.schema1 || mediaType === MT.schema1Signed) return this.putSchema1(name, reference, bytes, m, members, mediaType);
    if (!IMAGE_TYPES.has(mediaType) && !INDEX_TYPES.has(mediaType)) throw invalid(`unknown media type ${mediaType}`);
    if (m.schemaVersion !== 2) throw invalid('schemaVersion must be 2');
    // spec §1.4: docker types need mediaType equal to theirs; OCI types accept it absent or equal
    const declared = m.mediaType;
    if (mediaType === MT.schema2 || mediaType === MT.list ? declared !== mediaType : declared !== undefined && declared !== mediaType) {
      throw invalid(`mediaType ${String(declared)} does not match ${mediaType}`);
    }
    const missing: string[] = [];
    let wrongSize: V2Error | undefined;
    if (IMAGE_TYPES.has(mediaType)) {
      if ('manifests' in m) throw invalid('an image manifest has no manifests');
      const config = descriptor(m.config, 'config', 'config');
      if (!Array.isArray(m.layers)) throw invalid('layers must be an array');
      const layers = m.layers.map((l, i) => descriptor(l, `layers[${i}]`, 'layer'));
      for (const d of [config, ...layers]) {
        if (d.foreign) continue;
        const info = (await this.uploads.linked(name, d.digest)) ? await this.blobs.stat(d.digest) : undefined;
        if (!info) missing.push(d.digest);
        else if (info.size !== d.size) wrongSize ??= sizeMismatch(d, info.size);
      }
    } else {
      if ('config' in m || 'layers' in m) throw invalid('an index has no config or layers');
      if (!Array.isArray(m.manifests)) throw invalid('manifests must be an array');
      for (const [i, c] of m.manifests.entries()) {
        const d = descriptor(c, `manifests[${i}]`, 'child');
        const key = revisionKey(name, d.digest);
        const raw = await readOptional(this.driver, key, REVISION_MAX);
        if (!raw) missing.push(d.digest);
        else {
          const stored = parseRecord<Revision>(raw, key).size;
          if (stored !== d.size) wrongSize ??= sizeMismatch(d, stored);
        }
      }
    }
    if (missing.length > 0) {
      throw new V2Error(
        'MANIFEST_BLOB_UNKNOWN',
        missing.map((digest) => ({ digest })),
        `blob unknown to registry: ${missing[0]}`,
      );
    }
    if (wrongSize) throw wrongSize;
    const subject = m.subject !== undefined ? descriptor(m.subject, 'subject', 'subject').digest : undefined;
    const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
    if (reference.digest && reference.digest !== digest) {
      throw new V2Error('DIGEST_INVALID', { expected: reference.digest, actual: digest });
    }
    const artifactType = typeof m.artifactType === 'string' ? m.artifactType : undefined;
    const rev: Revision = {
      digest,
      mediaType,
      size: bytes.length,
      ...(subject ? { subject } : {}),
      ...(artifactType ? { artifactType } : {}),
    };
    // bytes first, then the revision record, then the tag: each step is visible only when complete
    // always the bytes just hashed: an object already at the digest is not trusted (security issue 10)
    await this.blobs.putSmall(digest, bytes);
    await this.driver.putContent(revisionKey(name, digest), Buffer.from(JSON.stringify(rev)));
    if (subject) await this.driver.putContent(referrerKey(name, subject, digest), Buffer.from(digest));
    if (reference.tag) await this.driver.putContent(tagKey(name, reference.tag), Buffer.from(digest));
    if (!(await this.exists(name))) await this.driver.putContent(createdKey(name), Buffer.from(String(Date.now())));
    return rev;
  }

  /**
   * Store a manifest a pull-through mirror fetched from its upstream (src/mirror/). The bytes are
   * read as strictly as a push, and stored at the digest they hash to (which must be the one asked
   * for, when by digest). The blobs it names are not required: the mirror fetches them when a
   * client asks. Signed schema1 (an upstream that has nothing newer) is checked as a push is,
   * signatures included, and kept as sent, as distribution's proxy does.
   */
  async putCached(name: V2Name, reference: { tag?: string; digest?: string }, bytes: Buffer, contentType: string): Promise<Revision> {
    const { doc: m, members } = readManifest(bytes);
    const mediaType = V2Manifests.mediaTypeOf(contentType, m);
    if (mediaType === MT.schema1 || mediaType === MT.schema1Signed)
      return this.putSchema1(name, reference, bytes, m, members, mediaType, { blobsCached: false });
    if (!IMAGE_TYPES.has(mediaType) && !INDEX_TYPES.has(mediaType)) throw invalid(`the mirror does not cache ${mediaType} manifests`);
    if (m.schemaVersion !== 2) throw invalid('schemaVersion must be 2');
    const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
    if (reference.digest && reference.digest !== digest) throw new V2Error('DIGEST_INVALID', { expected: reference.digest, actual: digest });
    const subject = m.subject !== undefined ? descriptor(m.subject, 'subject', 'subject').digest : undefined;
    const artifactType = typeof m.artifactType === 'string' ? m.artifactType : undefined;
    const rev: Revision = { digest, mediaType, size: bytes.length, ...(subject ? { subject } : {}), ...(artifactType ? { artifactType } : {}) };
    await this.blobs.putSmall(digest, bytes);
    await this.driver.putContent(revisionKey(name, digest), Buffer.from(JSON.stringify(rev)));
    if (subject) await this.driver.putContent(referrerKey(name, subject, digest), Buffer.from(digest));
    if (reference.tag) await this.driver.putContent(tagKey(name, reference.tag), Buffer.from(digest));
    if (!(await this.exists(name))) await this.driver.putContent(createdKey(name), Buffer.from(String(Date.now())));
    return rev;
  }

  /**
   * The digests of the manifests of this repository whose `subject` is `subject` (spec §1.4
   * end-12), in digest order, those after `after` only: names from the marker list, nothing read.
   */
  async referrerDigests(name: V2Name, subject: string, after?: string): Promise<string[]> {
    let markers: string[];
    try {
      markers = await this.driver.list(`${repoKey(name)}/referrers/${subject.slice(7)}`);
    } catch (e) {
      if (isNotFound(e)) return [];
      throw e;
    }
    const out: string[] = [];
    for (const key of markers) {
      const hex = key.slice(key.lastIndexOf('/') + 1);
      if (!/^[0-9a-f]{64}$/.test(hex)) continue;
      const digest = `sha256:${hex}`;
      if (after === undefined || digest > after) out.push(digest);
    }
    return out.sort();
  }

  /**
   * One referrer read (the referrers API reads them one at a time): its descriptor, undefined when
   * it is gone or does not pass the filter; `artifactType` is the manifest's own, else its config's
   * media type (images only). `read` is the bytes read for it.
   */
  async referrer(name: V2Name, digest: string, artifactType?: string): Promise<{ readonly descriptor?: ReferrerDescriptor; readonly read: number }> {
    const found = await this.get(name, { digest });
    if (!found) return { read: 0 }; // deleted: the marker went with it, or is about to
    const read = found.bytes.length;
    const doc = JSON.parse(found.bytes.toString('utf8')) as { artifactType?: unknown; config?: { mediaType?: unknown }; annotations?: unknown };
    const type =
      typeof doc.artifactType === 'string'
        ? doc.artifactType
        : IMAGE_TYPES.has(found.mediaType) && typeof doc.config?.mediaType === 'string'
          ? doc.config.mediaType
          : undefined;
    if (artifactType !== undefined && type !== artifactType) return { read };
    const annotations =
      doc.annotations !== null && typeof doc.annotations === 'object' && !Array.isArray(doc.annotations)
        ? (doc.annotations as Record<string, string>)
        : undefined;
    return {
      read,
      descriptor: {
        mediaType: found.mediaType,
        digest: found.digest,
        size: found.size,
        ...(type ? { artifactType: type } : {}),
        ...(annotations ? { annotations } : {}),
      },
    };
  }

  /**
   * Schema1 push (spec §1.4, distribution's signed manifest handler): name and tag as distribution
   * checks them (checkSchema1NameAndTag: not compared with the URL's), fsLayers and
   * history of equal length with v1 ids, every signature verifies, every blobSum in the repository.
   * A signed document is read once (issue 10): every field comes from the signed payload, parsed
   * strictly, and the payload must be exactly the document without its signatures (spec §2.1). The
   * digest is that of the payload; the document is kept and served as sent.
   */
  private async putSchema1(
    name: V2Name,
    reference: { tag?: string; digest?: string },
    bytes: Buffer,
    whole: Record<string, unknown>,
    members: readonly TopMember[],
    mediaType: string,
    /** A mirror's copy: its blobs are fetched when asked for, not required now. */
    opts: { readonly blobsCached?: boolean } = {},
  ): Promise<Revision> {
    const signatures = whole.signatures;
    const signed = signatures !== undefined || mediaType === MT.schema1Signed;
    if (signatures !== undefined && (!Array.isArray(signatures) || signatures.length === 0)) throw new V2Error('MANIFEST_UNVERIFIED');
    let canonical: Buffer = bytes;
    let m = whole;
    if (Array.isArray(signatures)) {
      try {
        canonical = signedPayloadOf(bytes, members, signatures);
      } catch (e) {
        if (e instanceof EnvelopeError) throw invalid(e.message);
        throw e;
      }
      m = readManifest(canonical).doc;
    }
    if (m.schemaVersion !== 1) throw invalid('schemaVersion must be 1');
    checkSchema1NameAndTag(m);
    const fsLayers = m.fsLayers;
    const history = m.history;
    if (!Array.isArray(fsLayers) || !Array.isArray(history) || fsLayers.length === 0 || fsLayers.length !== history.length) {
      throw invalid('fsLayers and history must be non-empty arrays of the same length');
    }
    for (const h of history) {
      const compat = (h as { v1Compatibility?: unknown } | null)?.v1Compatibility;
      let id: unknown;
      try {
        // strictly too: a v1 JSON with two ids would be two images
        id =
          typeof compat === 'string' ? (parseStrict(Buffer.from(compat, 'utf8'), { maxBytes: MAX_MANIFEST_BYTES }) as { id?: unknown } | null)?.id : undefined;
      } catch (e) {
        if (!(e instanceof StrictJsonError)) throw e;
        id = undefined;
      }
      if (typeof id !== 'string' || !/^[a-f0-9]{64}$/.test(id)) throw invalid('every v1Compatibility needs a 64-hex id');
    }
    const sums = fsLayers.map((l) => (l as { blobSum?: unknown } | null)?.blobSum);
    if (!sums.every((d): d is string => typeof d === 'string' && SHA256.test(d))) throw invalid('every blobSum must be a sha256 digest');
    if (signed) {
      if (!Array.isArray(signatures)) throw new V2Error('MANIFEST_UNVERIFIED');
      for (const sig of signatures as { header?: { jwk?: JsonWebKey; alg?: string }; signature?: string; protected?: string }[]) {
        if (!verifySignature(sig, canonical)) throw new V2Error('MANIFEST_UNVERIFIED');
      }
    }
    const unknown: string[] = [];
    if (opts.blobsCached !== false) for (const d of new Set(sums)) if (!(await this.uploads.linked(name, d))) unknown.push(d);
    if (unknown.length > 0)
      throw new V2Error(
        'MANIFEST_BLOB_UNKNOWN',
        unknown.map((digest) => ({ digest })),
        `blob unknown to registry: ${unknown[0]}`,
      );
    const digest = `sha256:${createHash('sha256').update(canonical).digest('hex')}`;
    if (reference.digest && reference.digest !== digest) throw new V2Error('DIGEST_INVALID', { expected: reference.digest, actual: digest });
    const rev: Revision = { digest, mediaType: signatures !== undefined ? MT.schema1Signed : MT.schema1, size: bytes.length };
    await this.driver.putContent(schema1DocKey(name, digest), bytes);
    await this.driver.putContent(revisionKey(name, digest), Buffer.from(JSON.stringify(rev)));
    if (reference.tag) await this.driver.putContent(tagKey(name, reference.tag), Buffer.from(digest));
    if (!(await this.exists(name))) await this.driver.putContent(createdKey(name), Buffer.from(String(Date.now())));
    return rev;
  }

  async resolve(name: V2Name, reference: { tag?: string; digest?: string }): Promise<string | undefined> {
    if (reference.digest) return reference.digest;
    const raw = await readOptional(this.driver, tagKey(name, reference.tag!), LINK_MAX);
    return raw?.toString('utf8');
  }

  async get(name: V2Name, reference: { tag?: string; digest?: string }): Promise<StoredManifest | undefined> {
    const digest = await this.resolve(name, reference);
    if (!digest) return undefined;
    const key = revisionKey(name, digest);
    const raw = await readOptional(this.driver, key, REVISION_MAX);
    if (!raw) return undefined;
    const rev = parseRecord<Revision>(raw, key);
    const schema1 = rev.mediaType === MT.schema1 || rev.mediaType === MT.schema1Signed;
    const bytes = await readOptional(this.driver, schema1 ? schema1DocKey(name, digest) : keys.blob(digest.slice(7)), MAX_MANIFEST_BYTES);
    if (!bytes) return undefined;
    return { ...rev, bytes };
  }

  /**
   * By digest: the revision and every tag on it. By tag: the tag only (spec §1.4 Deletes).
   * Returns the tags removed, or undefined when there was nothing to delete.
   */
  async delete(name: V2Name, reference: { tag?: string; digest?: string }): Promise<string[] | undefined> {
    if (reference.tag) return (await removeIfPresent(this.driver, tagKey(name, reference.tag))) ? [reference.tag] : undefined;
    const digest = reference.digest!;
    const raw = await readOptional(this.driver, revisionKey(name, digest), REVISION_MAX);
    if (!(await removeIfPresent(this.driver, revisionKey(name, digest)))) return undefined;
    const subject = raw ? parseRecord<Revision>(raw, revisionKey(name, digest)).subject : undefined;
    if (subject) await removeIfPresent(this.driver, referrerKey(name, subject, digest));
    const removed: string[] = [];
    for (const tag of await this.tags(name)) {
      const at = await readOptional(this.driver, tagKey(name, tag), LINK_MAX);
      if (at?.toString('utf8') === digest) {
        await removeIfPresent(this.driver, tagKey(name, tag));
        removed.push(tag);
      }
    }
    return removed;
  }

  /** The tags that name `digest` now (read only: what a delete by digest will untag). */
  async tagsPointingTo(name: V2Name, digest: string): Promise<string[]> {
    const out: string[] = [];
    for (const tag of await this.tags(name)) {
      const at = await readOptional(this.driver, tagKey(name, tag), LINK_MAX);
      if (at?.toString('utf8') === digest) out.push(tag);
    }
    return out;
  }

  /** Tags in byte order; undefined when the repository has no manifest at all. */
  async tags(name: V2Name): Promise<string[]> {
    try {
      return (await this.driver.list(`${repoKey(name)}/tags`)).map((k) => k.slice(k.lastIndexOf('/') + 1)).sort();
    } catch (e) {
      if (isNotFound(e)) return [];
      throw e;
    }
  }

  /** A repository exists once a manifest was pushed to it (it stays when its tags are deleted). */
  async exists(name: V2Name): Promise<boolean> {
    return keyExists(this.driver, createdKey(name));
  }
}
