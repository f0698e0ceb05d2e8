import { createHash, type Hash } from 'node:crypto';
import { Transform, Writable, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { V2Error } from '../errors/v2.js';
import { isRegistryError } from '../errors/index.js';
import { Meter, ShortBodyError, SizeLimitError, type HashingStage } from '../content/blob-store.js';
import { indexRepoName } from '../content/names.js';
import { MT } from '../content/v2-manifests.js';
import { jsonDepthExceeds, MAX_JSON_DEPTH } from '../http/body.js';
import { MAX_V2_NAME, parseV2Name, type V2Name } from '../content/v2-names.js';
import type { Content } from './services.js';
import type { ImportReport } from './report.js';
import { orSkip, SKIPPED, type SourceTree } from './source.js';

const SHA256 = /^sha256:[a-f0-9]{64}$/;
const HEX = /^[a-f0-9]{64}$/;
/** distribution's own limit on a manifest (and ours, spec v2-bridge §1.4) */
const MAX_MANIFEST = 4 * 1024 * 1024;

export class DigestMismatchError extends Error {}

/** sha256 of the bytes going through; the stream fails at its end when they do not hash to `expected`. */
export class ExpectSha256 extends Transform implements HashingStage {
  private readonly h: Hash = createHash('sha256');
  private result: string | undefined;
  constructor(private readonly expected: string) {
    super({ highWaterMark: 1 << 20 });
  }
  override _transform(chunk: Buffer, _e: BufferEncoding, cb: TransformCallback): void {
    this.h.update(chunk);
    cb(null, chunk);
  }
  override _flush(cb: TransformCallback): void {
    this.result = `sha256:${this.h.digest('hex')}`;
    cb(this.result === this.expected ? null : new DigestMismatchError(`the bytes hash to ${this.result}, not ${this.expected}`));
  }
  sha256(): string {
    return this.result!;
  }
}

export interface DistributionImportOptions {
  readonly dryRun: boolean;
  /** Account named as the pusher for the index (owner of repositories created). */
  readonly owner: string | null;
  readonly filter?: (name: string) => boolean;
}

interface Revision {
  readonly digest: string;
  readonly bytes: Buffer;
  readonly mediaType: string;
  readonly doc: Record<string, unknown>;
}

/**
 * Why a blob of the tree is skipped, for an error of reading it in (undefined: any other error, which
 * stops the import): bytes that do not hash to their digest, past max_layer_size, or another size
 * than listed (a file that changed while it was read).
 */
function blobRefused(digest: string, e: unknown): string | undefined {
  if (e instanceof DigestMismatchError || e instanceof SizeLimitError || e instanceof ShortBodyError) return `blob ${digest}: ${e.message}`;
  return undefined;
}

/** distribution's data root: the tree itself or its docker/registry/v2 below. */
export async function distributionRoot(tree: SourceTree): Promise<string | undefined> {
  for (const root of ['docker/registry/v2', '']) {
    const names = await tree.list(root);
    if (names.includes('repositories') || (names.includes('blobs') && root !== '')) return root;
  }
  return undefined;
}

const under = (root: string, p: string): string => (root ? `${root}/${p}` : p);
const blobPath = (root: string, digest: string): string => under(root, `blobs/sha256/${digest.slice(7, 9)}/${digest.slice(7)}/data`);

/** The media type a stored manifest declares, or its shape says. */
function mediaTypeOf(doc: Record<string, unknown>): string {
  if (typeof doc.mediaType === 'string') return doc.mediaType;
  if ('fsLayers' in doc) return 'signatures' in doc ? MT.schema1Signed : MT.schema1;
  if ('manifests' in doc) return MT.ociIndex;
  return MT.ociManifest;
}

/** Digests of the blobs an image manifest (or schema1) needs in its repository. */
function blobsOf(r: Revision): string[] {
  const out: string[] = [];
  const push = (d: unknown): void => {
    if (d && typeof d === 'object' && typeof (d as { digest?: unknown }).digest === 'string' && !(d as { urls?: unknown }).urls)
      out.push((d as { digest: string }).digest);
  };
  if (r.mediaType === MT.schema1 || r.mediaType === MT.schema1Signed) {
    for (const l of Array.isArray(r.doc.fsLayers) ? r.doc.fsLayers : []) {
      const s = (l as { blobSum?: unknown } | null)?.blobSum;
      if (typeof s === 'string') out.push(s);
    }
  } else {
    push(r.doc.config);
    for (const l of Array.isArray(r.doc.layers) ? r.doc.layers : []) push(l);
  }
  return [...new Set(out)];
}

/**
 * Import a distribution storage tree (spec operations §4: `docker/registry/v2/{blobs,repositories}`).
 * Per repository: every revision's referenced blobs (streamed into the blob store, each verified
 * against its digest), then the manifest through V2Manifests (the same checks as a push: blobs
 * linked, sizes right), image manifests before the indexes that name them; then each tag, its v1
 * view derived by the bridge, and the index told as for a v2 push. Digests stay as they were.
 */
export async function importDistribution(tree: SourceTree, c: Content, report: ImportReport, opts: DistributionImportOptions): Promise<void> {
  const root = (await distributionRoot(tree)) ?? '';
  const repos: string[] = [];
  /** Directories walked (real path → name): a link inside the tree back to a directory is walked once */
  const walked = new Map<string, string>();
  const walk = async (dir: string, name: string): Promise<void> => {
    // nothing below can be a repository (a v2 name has at most 255 characters): a tree of directories
    // nested thousands deep is not walked down to where its paths pass what the system opens
    if (name.length > MAX_V2_NAME) {
      report.skip(`${name.slice(0, 100)}…`, `directories nested deeper than a repository name can be (${MAX_V2_NAME} characters): not walked`);
      return;
    }
    const names = await orSkip(tree.list(under(root, dir)), (why) => report.skip(name || dir, why));
    if (names === SKIPPED) return;
    // a tree on the local disk may link a directory to itself or an ancestor (repositories/a/self ->
    // .): walked as written, the names would grow until realpath fails (ELOOP) or, with two such
    // links, double at every level
    const real = tree.localPath?.(under(root, dir));
    if (real !== undefined) {
      const seen = walked.get(real);
      if (seen !== undefined) {
        report.skip(name || dir, `the same directory as ${seen || 'repositories'} (a symbolic link): not walked again`);
        return;
      }
      walked.set(real, name);
    }
    if (names.includes('_manifests')) repos.push(name);
    for (const n of names) if (!n.startsWith('_')) await walk(`${dir}/${n}`, name ? `${name}/${n}` : n);
  };
  await walk('repositories', '');
  const chosen = repos.filter((n) => !opts.filter || opts.filter(n));
  report.repositories = chosen.length;
  const badBlob = new Map<string, string>();
  /** Blobs whose bytes in the tree hashed to their digest in this run (read in, or checked) */
  const treeVerified = new Set<string>();

  const importBlob = async (name: V2Name, digest: string): Promise<string | undefined> => {
    if (!SHA256.test(digest)) return `blob ${digest}: not a sha256 digest`;
    const known = badBlob.get(digest);
    if (known) return known;
    if ((await c.uploads.linked(name, digest)) && (await c.blobs.stat(digest))) {
      report.blobsPresent++;
      return undefined;
    }
    /** The blob refused for why: reported once for the digest, and for every manifest needing it. */
    const bad = (why: string): string => {
      badBlob.set(digest, why);
      return why;
    };
    /** A refusal of the tree's bytes (the digest, the size, the limit); anything else is thrown. */
    const refused = (e: unknown): string => {
      const why = blobRefused(digest, e);
      if (why === undefined) throw e;
      return bad(why);
    };
    const size = await orSkip(tree.size(blobPath(root, digest)), (why) => bad(`blob ${digest}: ${why}`));
    if (size === SKIPPED) return badBlob.get(digest);
    if (size === undefined) return bad(`blob ${digest}: missing from the source tree`);
    const maxSize = c.config.max_layer_size;
    if (maxSize > 0 && size > maxSize) return bad(`blob ${digest}: ${size} bytes, more than max_layer_size (${maxSize})`);
    const mine = await c.blobs.stat(digest);
    if (mine && mine.size === size) {
      // stored here already (pushed or imported into another repository, verified then): linked into
      // this repository only once the tree's own bytes hash to the digest (once a run). A file of the
      // right size is no proof that the tree holds the blob: a tree that knows only a digest and a
      // size (from a manifest) would otherwise get another repository's bytes readable in its own.
      if (!opts.dryRun && !treeVerified.has(digest)) {
        try {
          const sink = new Writable({ write: (_c, _e, cb) => cb() });
          await pipeline(tree.open(blobPath(root, digest)), new Meter(Math.max(1, size)), new ExpectSha256(digest), sink);
        } catch (e) {
          return refused(e);
        }
        treeVerified.add(digest);
      }
      if (!opts.dryRun) await c.uploads.link(name, digest);
      report.blobsPresent++;
      return undefined;
    }
    if (opts.dryRun) {
      report.blobsImported++;
      report.bytes += size;
      report.planned.push(`blob ${digest} (${size} bytes) into ${name}`);
      return undefined;
    }
    try {
      await c.blobs.ingest(tree.open(blobPath(root, digest)), new ExpectSha256(digest), { maxSize: Math.max(1, size), expectedSize: size });
    } catch (e) {
      return refused(e);
    }
    treeVerified.add(digest);
    await c.uploads.link(name, digest);
    report.blobsImported++;
    report.bytes += size;
    report.tick();
    return undefined;
  };

  for (const repoName of chosen) {
    report.tick();
    const name = parseV2Name(repoName);
    if (!name) {
      report.skip(repoName, 'not a valid v2 repository name');
      report.repositoriesDone++;
      continue;
    }
    const base = `repositories/${repoName}/_manifests`;
    const revisions: Revision[] = [];
    const hexes = await orSkip(tree.list(under(root, `${base}/revisions/sha256`)), (why) => report.skip(repoName, why));
    for (const hex of hexes === SKIPPED ? [] : hexes) {
      const digest = `sha256:${hex}`;
      const what = `${repoName}@${digest}`;
      const raw = await orSkip(tree.read(under(root, `${base}/revisions/sha256/${hex}/link`), 1024), (why) => report.skip(what, why));
      if (raw === SKIPPED) continue;
      const link = raw?.toString('utf8').trim();
      if (!HEX.test(hex) || link !== digest) {
        report.skip(what, `revision link ${JSON.stringify(link ?? null)} does not name ${digest}`);
        continue;
      }
      let bytes: Buffer | undefined;
      try {
        bytes = await tree.read(blobPath(root, digest), MAX_MANIFEST);
      } catch (e) {
        report.skip(what, (e as Error).message);
        continue;
      }
      if (!bytes) {
        report.skip(what, 'the manifest blob is missing from the source tree');
        continue;
      }
      const actual = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
      // depth before parsing, as for a push: 4 MiB of brackets cost JSON.parse ~0.5 s and ~150 MiB
      if (jsonDepthExceeds(bytes, MAX_JSON_DEPTH)) {
        report.skip(what, `the manifest is JSON nested deeper than ${MAX_JSON_DEPTH} levels`);
        continue;
      }
      let doc: unknown;
      try {
        doc = JSON.parse(bytes.toString('utf8'));
      } catch {
        doc = undefined;
      }
      const isSchema1 = doc !== null && typeof doc === 'object' && 'fsLayers' in (doc as object);
      // a schema1 manifest's digest is that of its signed payload: V2Manifests.put checks it
      if (actual !== digest && !isSchema1) {
        report.skip(what, `the manifest bytes hash to ${actual}`);
        continue;
      }
      if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) {
        report.skip(what, 'the manifest is not a JSON object');
        continue;
      }
      const d = doc as Record<string, unknown>;
      revisions.push({ digest, bytes, doc: d, mediaType: mediaTypeOf(d) });
    }
    // images (and schema1) first, then the lists/indexes naming them
    const isIndex = (r: Revision): boolean => r.mediaType === MT.list || r.mediaType === MT.ociIndex;
    revisions.sort((a, b) => Number(isIndex(a)) - Number(isIndex(b)));
    const good = new Map<string, Revision>();
    for (const r of revisions) {
      const what = `${repoName}@${r.digest}`;
      if (await c.manifests.get(name, { digest: r.digest })) {
        report.manifestsPresent++;
        good.set(r.digest, r);
        continue;
      }
      if (isIndex(r)) {
        const children = (Array.isArray(r.doc.manifests) ? r.doc.manifests : []).map((m) => (m as { digest?: unknown } | null)?.digest);
        const missing = children.find((d) => typeof d !== 'string' || !good.has(d));
        if (missing !== undefined) {
          report.skip(what, `child manifest ${String(missing)} was not imported`);
          continue;
        }
      }
      let why: string | undefined;
      for (const b of blobsOf(r)) {
        why = await importBlob(name, b);
        if (why) break;
      }
      if (why) {
        report.skip(what, why);
        continue;
      }
      if (opts.dryRun) {
        report.manifestsImported++;
        report.planned.push(`manifest ${what} (${r.mediaType})`);
        good.set(r.digest, r);
        continue;
      }
      try {
        await c.manifests.put(name, { digest: r.digest }, r.bytes, r.mediaType);
      } catch (e) {
        if (e instanceof V2Error) {
          report.skip(what, `refused as a push would be: ${e.message}`);
          continue;
        }
        throw e;
      }
      report.manifestsImported++;
      good.set(r.digest, r);
    }
    let tagsHere = 0;
    const tags = await orSkip(tree.list(under(root, `${base}/tags`)), (why) => report.skip(repoName, why));
    for (const tag of tags === SKIPPED ? [] : tags) {
      const what = `${repoName}:${tag}`;
      const raw = await orSkip(tree.read(under(root, `${base}/tags/${tag}/current/link`), 1024), (why) => report.skip(what, why));
      if (raw === SKIPPED) continue;
      const digest = raw?.toString('utf8').trim();
      if (!digest) {
        report.skip(what, 'no current link (the tag was deleted)');
        continue;
      }
      const r = good.get(digest);
      if (!r) {
        report.skip(what, `its manifest ${digest} was not imported`);
        continue;
      }
      if (!/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/.test(tag)) {
        report.skip(what, 'not a valid tag name');
        continue;
      }
      tagsHere++;
      if (opts.dryRun) {
        report.planned.push(`tag ${what} → ${digest}`);
        continue;
      }
      if ((await c.manifests.resolve(name, { tag })) === digest && (await c.toV1.current(name, tag)) === 'v2') continue;
      let put: string;
      try {
        put = (await c.manifests.put(name, { tag }, r.bytes, r.mediaType)).digest;
      } catch (e) {
        if (e instanceof V2Error) {
          report.skip(what, `refused as a push would be: ${e.message}`);
          tagsHere--;
          continue;
        }
        throw e;
      }
      // the v1 view (the bridge's ids) and the index, as after a v2 push of the tag
      const chain = await c.toV1.publish(name, tag, r.mediaType, r.bytes, put).catch((e: unknown) => {
        if (isRegistryError(e) || e instanceof V2Error) return undefined;
        throw e;
      });
      const repo = indexRepoName(name);
      if (c.index && repo) {
        await c.index.learnV2Push(opts.owner, repo, tag, chain?.images ?? []);
      }
    }
    report.tags += tagsHere;
    report.repositoriesDone++;
    report.tick();
  }
  report.tick(true);
}
