import { isRegistryError } from '../errors/index.js';
import { isImageId } from '../digest/digest.js';
import { IMPORT_OVERTAKEN, MAX_ANCESTRY, tarsumMatches, type LayerLink } from '../content/v1-images.js';
import { jsonDepthExceeds, MAX_JSON_DEPTH } from '../http/body.js';
import type { ImageScope } from '../content/keys.js';
import { parseRepoName, parseTag, type RepoName, type Tag } from '../content/names.js';
import { sanitizeTagMetadata } from '../content/v1-repositories.js';
import { findRepository, mergeImages, saveRepository, setPushComplete } from '../db/repositories.js';
import type { Content } from './services.js';
import type { ImportReport } from './report.js';
import { orSkip, skipReason, SKIPPED, type SourceTree } from './source.js';
import { ImportBatches } from './import-batches.js';
import { LayerFileError, type LayerFiles } from '../digest/layer-files.js';
import { pool } from '../util/pool.js';

export interface ImportOptions {
  readonly dryRun: boolean;
  /** Index account id owning repositories this import creates (null: none). */
  readonly ownerId: number | null;
  /** Only repositories whose full name passes. */
  readonly filter?: (name: string) => boolean;
  /**
   * Repositories imported at once (default 4: with the layers copied and hashed in the worker, 4 lanes
   * keep it busier than 2, 8.5 / 8.6 s against 9.7 / 9.0 s for 2 GiB, +7 MiB peak RSS).
   */
  readonly concurrency?: number;
  /**
   * Copies and hashes the layers of a tree on the local disk in a worker thread (LayerFiles), when
   * the storage has local files too; without it (or for other trees) they stream through this thread.
   */
  readonly layerFiles?: LayerFiles;
}

/** Python's quote_plus undone: '+' is a space, %XX a byte (spec v1-protocol §10). */
export function unquotePlus(s: string): string {
  try {
    return decodeURIComponent(s.replace(/\+/g, ' '));
  } catch {
    return s;
  }
}

/** The recorded checksums of `images/<id>/_checksum`: a JSON list, or (older data) a bare string. */
export function recordedChecksums(raw: Buffer | undefined): string[] {
  if (!raw) return [];
  const text = raw.toString('utf8').trim();
  if (text === '') return [];
  // a list of strings is flat: anything nested is no list of checksums (and is not parsed: 8 MiB
  // of brackets cost JSON.parse ~1 s and ~300 MiB), so it is kept as one text, a form never written
  if (jsonDepthExceeds(raw, 1)) return [text];
  try {
    const v: unknown = JSON.parse(text);
    if (Array.isArray(v)) return v.filter((c): c is string => typeof c === 'string' && c !== '');
    if (typeof v === 'string') return v === '' ? [] : [v];
  } catch {
    // a bare string, not JSON
  }
  return [text];
}

/** The tarsum forms this registry computes (spec §6): the only ones a recorded tarsum can be checked against. */
const TARSUM_FORM = /^tarsum(\.v1|\.dev)?\+sha256:/;
const PAYLOAD_FORM = /^sha256:/;

/**
 * Whether the layer as stored matches what the Python registry recorded for it: every recorded
 * payload checksum (`sha256:…` of json + "\n" + layer) must equal ours; a tarsum is checked when no
 * payload checksum was recorded (Python's tarsum differs from Go's on some archives, spec §6.2;
 * the payload covers the exact bytes). A checksum in any other form (the Python registry records
 * only the forms it computed and verified: these two) cannot vouch for the bytes: when nothing else
 * does, the image is refused rather than imported unchecked. Returns the reason when it does not
 * match, and the tarsum to keep beside the image when one matched.
 */
export function verifyRecorded(recorded: readonly string[], link: LayerLink): { bad?: string; tarsum?: string } {
  const payloads = recorded.filter((c) => PAYLOAD_FORM.test(c));
  const tarsums = recorded.filter((c) => TARSUM_FORM.test(c));
  const unknown = recorded.filter((c) => !PAYLOAD_FORM.test(c) && !TARSUM_FORM.test(c));
  for (const p of payloads) if (p !== link.payload) return { bad: `payload checksum ${p} recorded, the bytes give ${link.payload}` };
  const matching = link.tarsum ? tarsums.find((t) => tarsumMatches(t, link.tarsum!) === true) : undefined;
  if (payloads.length === 0 && tarsums.length > 0 && !matching) {
    // nothing else vouches for these bytes: a tarsum that cannot be computed is no match either
    if (!link.tarsum) return { bad: `tarsum ${tarsums[0]} recorded, and the layer (${link.compression}) is not a tar archive this registry can read` };
    return { bad: `tarsum ${tarsums[0]} recorded, the layer gives ${link.tarsum.v0}` };
  }
  if (payloads.length === 0 && !matching && unknown.length > 0)
    return { bad: `checksum ${JSON.stringify(unknown[0]!.slice(0, 100))} recorded, in a form the Python registry never wrote: the layer cannot be verified` };
  return matching ? { tarsum: matching } : {};
}

/**
 * Whether the layer's tarsums must be computed to check it: only when the tree recorded a tarsum
 * and no payload checksum (the payload covers the exact bytes; a tarsum is then not compared).
 */
export function needsTarsums(recorded: readonly string[]): boolean {
  return !recorded.some((c) => PAYLOAD_FORM.test(c)) && recorded.some((c) => TARSUM_FORM.test(c));
}

/** Tag and repository metadata objects are small: past this a tree's file is not one. */
export const METADATA_MAX = 64 * 1024;
/** The image ids of `_index_images` in a tree: at most this many are read per repository. */
export const INDEX_IMAGES_MAX = 100_000;

/** A tag without metadata in the tree: R15's default (nothing known about the pusher). */
const DEFAULT_IMPORTED_METADATA: Record<string, unknown> = { last_update: null };

/** A metadata file of the tree (`tag<name>_json`, `json`), sanitized; undefined when unusable. */
export async function readMetadata(tree: SourceTree, path: string): Promise<Record<string, unknown> | undefined> {
  const raw = await orSkip(tree.read(path, METADATA_MAX), () => undefined);
  return raw !== SKIPPED && raw ? sanitizeTagMetadata(raw) : undefined;
}

/**
 * The image ids of a repository's `_index_images` (a JSON list of `{"id", "checksum"?}`, spec
 * §3.12), in order, once each; a string saying why when the file is not such a list.
 */
export async function readIndexImages(tree: SourceTree, path: string): Promise<string[] | string> {
  let refused = '';
  const raw = await orSkip(tree.read(path), (why) => (refused = why));
  if (raw === SKIPPED) return refused;
  let v: unknown;
  try {
    // a list of objects: anything nested deeper is not one, and is not parsed
    v = raw && !jsonDepthExceeds(raw, 2) ? JSON.parse(raw.toString('utf8')) : null;
  } catch {
    v = null;
  }
  if (!Array.isArray(v)) return 'not a JSON list of images';
  const ids = new Set<string>();
  for (const e of v.slice(0, INDEX_IMAGES_MAX)) {
    const id = e !== null && typeof e === 'object' ? (e as { id?: unknown }).id : undefined;
    if (typeof id === 'string' && isImageId(id)) ids.add(id);
  }
  return [...ids];
}

/** The parent an image json names (null: none); undefined when it is no JSON object or names no id. */
function parentIn(raw: Buffer): string | null | undefined {
  if (jsonDepthExceeds(raw, MAX_JSON_DEPTH)) return undefined;
  let obj: unknown;
  try {
    obj = JSON.parse(raw.toString('utf8'));
  } catch {
    return undefined;
  }
  if (obj === null || typeof obj !== 'object' || Array.isArray(obj)) return undefined;
  const p = (obj as { parent?: unknown }).parent;
  return p === undefined || p === null || p === '' ? null : typeof p === 'string' ? p : undefined;
}

/**
 * Image jsons read once for the chain checks and kept for their import, up to this many bytes in all
 * (past it a json is read again): each was read twice before 2026-12-07, and an image whose json
 * changed in between was refused although the json checked was good.
 */
const JSONS_KEPT_BYTES = 16 * 1024 * 1024;

class KeptBytes {
  private readonly kept = new Map<string, Buffer>();
  private bytes = 0;
  constructor(private readonly max: number) {}
  put(key: string, b: Buffer): void {
    if (this.kept.has(key) || this.bytes + b.length > this.max) return;
    this.kept.set(key, b);
    this.bytes += b.length;
  }
  take(key: string): Buffer | undefined {
    const b = this.kept.get(key);
    if (b) {
      this.kept.delete(key);
      this.bytes -= b.length;
    }
    return b;
  }
}

type ImageOutcome = { ok: true; imported: boolean } | { ok: false; reason: string };

/**
 * Import a Python docker-registry storage tree (spec v1-protocol §10): `images/<id>/{json,layer,
 * ancestry,_checksum,_inprogress}` and `repositories/<ns>/<repo>/{tag_<tag>,_private,…}`. Each
 * tagged chain goes in root first through V1Images — putJson, putLayer (streamed, hashed, tarsum
 * and diff_id computed), then the checksum step, which is where the recorded checksums are
 * compared — so an image exists here only once complete and verified, exactly as after a v1 push.
 * A bad image is discarded and reported, and with it every tag that needs it.
 */
export async function importPython(tree: SourceTree, c: Content, report: ImportReport, opts: ImportOptions): Promise<void> {
  // repositories/<ns>/<repo>
  const repoDirs: { dir: string; name: RepoName | undefined; shown: string }[] = [];
  for (const ns of await tree.list('repositories')) {
    const names = await orSkip(tree.list(`repositories/${ns}`), (why) => report.skip(unquotePlus(ns), why));
    if (names === SKIPPED) continue;
    for (const r of names) {
      const shown = `${unquotePlus(ns)}/${unquotePlus(r)}`;
      if (opts.filter && !opts.filter(shown)) continue;
      repoDirs.push({ dir: `repositories/${ns}/${r}`, name: parseRepoName(shown), shown });
    }
  }
  report.repositories = repoDirs.length;
  /** image id → the scope it was imported into in this run (to link it into the next repository) */
  const importedIn = new Map<string, ImageScope>();
  const failed = new Map<string, string>();
  /** --dry-run: images already counted (nothing is written, so the store cannot tell) */
  const planned = new Set<string>();
  const batches = new ImportBatches(c.driver, c.images);
  /** The image jsons the chain checks read (parentOf), kept for the import of each (bounded). */
  const jsonsRead = new KeptBytes(JSONS_KEPT_BYTES);

  const importImageOnce = async (repo: RepoName, id: string, ancestry: readonly string[]): Promise<ImageOutcome> => {
    const scope = c.images.scopeOf(repo);
    const known = failed.get(id);
    if (known) return { ok: false, reason: known };
    const fail = (reason: string): ImageOutcome => {
      failed.set(id, reason);
      return { ok: false, reason };
    };
    // the bytes whose parent the chain was checked against (one reading of each json), read again
    // only when they were not kept (stageImport refuses a json naming another parent than the
    // ancestry, as a push's PUT json is refused)
    // capped as a push's PUT json is (413 past max_json_size)
    const json = jsonsRead.take(id) ?? (await tree.read(`images/${id}/json`, c.config.max_json_size));
    if (!json) return fail('no json in the source tree');
    if (await tree.size(`images/${id}/_inprogress`).then((s) => s !== undefined)) {
      const mark = (await tree.read(`images/${id}/_inprogress`))?.toString('utf8').trim();
      if (mark !== 'false') return fail('the upload never finished in the source registry (_inprogress)');
    }
    const layerSize = await tree.size(`images/${id}/layer`);
    if (layerSize === undefined) return fail('no layer in the source tree');
    if (await c.images.isComplete(scope, id)) {
      const mine = await c.images.readJson(scope, id);
      if (mine && mine.equals(json)) {
        report.imagesPresent++;
        return { ok: true, imported: false };
      }
      return fail(`${repo.full} already holds another image under this id`);
    }
    if (opts.dryRun) {
      const key = `${scope?.full ?? ''}\n${id}`;
      if (planned.has(key)) return { ok: true, imported: false };
      planned.add(key);
      report.imagesImported++;
      report.bytes += layerSize;
      report.planned.push(`image ${id} (${layerSize} bytes) into ${repo.full}`);
      return { ok: true, imported: true };
    }
    // imported into another repository in this run: link its records (no second hashing)
    const from = importedIn.get(id);
    if (from !== undefined && from !== null && from.full !== repo.full && (await c.images.link(from, repo, id))) {
      report.imagesPresent++;
      return { ok: true, imported: false };
    }
    const recorded = recordedChecksums(await tree.read(`images/${id}/_checksum`));
    let staged;
    try {
      // one pass over the layer: sha256 (its address), the payload checksum, and for gzip/tar the
      // diff_id (the bridge's) and the tar check; the tarsums only when they are what the tree
      // recorded. The records are made durable and the image visible by the batch (import-batches.ts).
      const layer = `images/${id}/layer`;
      const file = opts.layerFiles && tree.localFile ? { src: tree.localFile(layer), workers: opts.layerFiles } : undefined;
      staged = await c.images.stageImport(scope, id, json, ancestry, () => tree.open(layer), layerSize, {
        tarsums: needsTarsums(recorded),
        tarsumV1: true,
        verify: (link) => verifyRecorded(recorded, link),
        ...(file ? { file } : {}),
      });
    } catch (e) {
      if (isRegistryError(e)) return fail(`refused: ${e.message}`);
      if (e instanceof LayerFileError && e.failure.kind === 'refused') return fail(e.message);
      throw e;
    }
    if ('bad' in staged) return fail(staged.bad);
    batches.add(staged.staged);
    const link = staged.staged.link;
    importedIn.set(id, scope);
    report.imagesImported++;
    report.bytes += link.size;
    return { ok: true, imported: true };
  };

  /**
   * One import of an image per scope: repositories run in parallel and share ancestors, and an
   * image staged in this run is not visible (isComplete) until its batch is flushed.
   */
  const running = new Map<string, Promise<ImageOutcome>>();
  const importImage = (repo: RepoName, id: string, ancestry: readonly string[]): Promise<ImageOutcome> => {
    const key = `${c.images.scopeOf(repo)?.full ?? ''}\n${id}`;
    let p = running.get(key);
    if (!p) {
      // an object of the image that leads outside the tree, or a json past the cap: the image is
      // skipped, with why
      p = importImageOnce(repo, id, ancestry).catch((e: unknown) => {
        const why = skipReason(e);
        if (why === undefined) throw e;
        failed.set(id, why);
        return { ok: false as const, reason: why };
      });
      running.set(key, p);
      // a success is remembered for the run (the image is not visible before its batch is flushed);
      // a failure is remembered in `failed`
      void p.then(
        (r) => (r.ok ? undefined : running.delete(key)),
        () => running.delete(key),
      );
    }
    return p;
  };

  /** The chain `[id, parent, …]` of an image as the tree recorded it, or why there is none. */
  const chainOf = async (id: string): Promise<string[] | string> => {
    let chain: unknown;
    try {
      const raw = await tree.read(`images/${id}/ancestry`);
      // a list of ids is flat: anything nested is not one, and is not parsed
      chain = raw && !jsonDepthExceeds(raw, 1) ? JSON.parse(raw.toString('utf8')) : null;
    } catch {
      chain = null;
    }
    if (!Array.isArray(chain) || chain[0] !== id || !chain.every((x) => typeof x === 'string' && isImageId(x))) {
      return `image ${id}: no readable ancestry in the source tree`;
    }
    // as a push is held to (PUT json): each image's ancestry lists all below it, O(n²) bytes in all
    if (chain.length > MAX_ANCESTRY) return `image ${id}: an ancestry of ${chain.length} images, more than the ${MAX_ANCESTRY} a chain may hold`;
    return chain as string[];
  };

  /**
   * The parent each image's json names (null: none), undefined when there is no json object to read
   * (importImage then says why). Each image is stored with the ancestry of the chain that brought it
   * in, so a chain must agree with every json of it: an ancestry file naming another parent would
   * be served as the image's layers (R8) although its ancestors were imported with their own.
   */
  const parents = new Map<string, string | null | undefined>();
  const parentOf = async (id: string): Promise<string | null | undefined> => {
    if (parents.has(id)) return parents.get(id);
    let parent: string | null | undefined;
    try {
      // as importImage reads it (capped), and its depth checked before parsing as for a push: a json
      // that is neither is refused there, with why
      const raw = await orSkip(tree.read(`images/${id}/json`, c.config.max_json_size), () => undefined);
      parent = raw === SKIPPED || !raw ? undefined : parentIn(raw);
      if (raw !== SKIPPED && raw && parent !== undefined) jsonsRead.put(id, raw);
    } catch {
      parent = undefined;
    }
    parents.set(id, parent);
    return parent;
  };

  /** Import a chain root first; the reason of the first image that failed, if one did. */
  const importChain = async (repo: RepoName, top: string, chain: readonly string[]): Promise<string | undefined> => {
    for (let i = 0; i < chain.length; i++) {
      const parent = await parentOf(chain[i]!);
      const expected = chain[i + 1] ?? null;
      if (parent !== undefined && parent !== expected)
        return `image ${chain[i]}: its json names parent ${String(parent)}, the ancestry of ${top} says ${String(expected)}`;
    }
    try {
      for (let i = chain.length - 1; i >= 0; i--) {
        const id = chain[i]!;
        const r = await importImage(repo, id, chain.slice(i));
        report.tick();
        if (!r.ok) return id === top ? `image ${id}: ${r.reason}` : `image ${id} (an ancestor of ${top}): ${r.reason}`;
      }
      return undefined;
    } finally {
      // what the chain did not use (an image present already, one that failed) is not kept
      for (const id of chain) jsonsRead.take(id);
    }
  };

  const repositories = pool(repoDirs, Math.max(1, opts.concurrency ?? 4), async ({ dir, name: repo, shown }) => {
    report.tick();
    if (!repo) {
      report.skip(shown, 'not a valid repository name here (namespace: a-z 0-9 _ -, name: a-z 0-9 _ . -, up to 64)');
      report.repositoriesDone++;
      return;
    }
    const entries = await orSkip(tree.list(dir), (why) => report.skip(shown, why));
    if (entries === SKIPPED) {
      report.repositoriesDone++;
      return;
    }
    const isPrivate = entries.includes('_private');
    const tagged: { tag: Tag; id: string; chain: string[]; meta?: Record<string, unknown> }[] = [];
    for (const e of entries) {
      if (!e.startsWith('tag_')) continue;
      const tagName = unquotePlus(e.slice(4));
      const what = `${repo.full}:${tagName}`;
      const tag = parseTag(tagName);
      if (!tag) {
        report.skip(what, 'not a valid tag name');
        continue;
      }
      const raw = await orSkip(tree.read(`${dir}/${e}`, 4096), (why) => report.skip(what, why));
      if (raw === SKIPPED) continue;
      const id = raw?.toString('utf8').trim().replace(/^"|"$/g, '') ?? '';
      if (!isImageId(id)) {
        report.skip(what, `the tag names ${JSON.stringify(id.slice(0, 80))}, not an image id`);
        continue;
      }
      const chain = await chainOf(id);
      if (typeof chain === 'string') {
        report.skip(what, chain);
        continue;
      }
      // the tag's metadata (R15: written by the Python registry from the pusher's User-Agent)
      let meta: Record<string, unknown> | undefined;
      const metaName = `tag${e.slice(4)}_json`;
      if (entries.includes(metaName)) {
        meta = await readMetadata(tree, `${dir}/${metaName}`);
        if (!meta) report.skip(`${what} metadata`, `${metaName} is not a JSON object of at most ${METADATA_MAX} bytes: the tag gets default metadata`);
      }
      tagged.push({ tag, id, chain, ...(meta ? { meta } : {}) });
    }
    const good: typeof tagged = [];
    for (const t of tagged) {
      const reason = await importChain(repo, t.id, t.chain);
      if (reason) {
        report.skip(`${repo.full}:${t.tag}`, reason);
        continue;
      }
      good.push(t);
    }
    report.tags += good.length;

    // the fake index's image list (_index_images, spec §3.12): images of the repository that no tag
    // reaches any more (a moved or deleted tag) are imported into it as well, with their chains
    // (those of the tags were dealt with above, imported or reported)
    const inChains = new Set(tagged.flatMap((t) => t.chain));
    const listed: { id: string; chain: string[] }[] = [];
    if (entries.includes('_index_images')) {
      const ids = await readIndexImages(tree, `${dir}/_index_images`);
      if (typeof ids === 'string') report.skip(`${repo.full} _index_images`, ids);
      else {
        for (const id of ids) {
          if (inChains.has(id)) continue;
          const chain = await chainOf(id);
          const reason = typeof chain === 'string' ? chain : await importChain(repo, id, chain);
          if (reason || typeof chain === 'string') {
            report.skip(`${repo.full} image ${id} (in _index_images)`, reason ?? 'no chain');
            continue;
          }
          for (const c of chain) inChains.add(c);
          listed.push({ id, chain });
        }
      }
    }
    const repoMeta = entries.includes('json') ? await readMetadata(tree, `${dir}/json`) : undefined;
    if (entries.includes('json') && !repoMeta)
      report.skip(`${repo.full} json`, `not a JSON object of at most ${METADATA_MAX} bytes: the repository gets default metadata`);

    if (opts.dryRun) {
      for (const t of good) report.planned.push(`tag ${repo.full}:${t.tag} → ${t.id}${t.meta ? ' (with its metadata)' : ''}`);
      for (const l of listed) report.planned.push(`untagged image ${l.id} of ${repo.full} (in _index_images)`);
      if ((good.length > 0 || listed.length > 0) && isPrivate) report.planned.push(`${repo.full} private`);
      report.repositoriesDone++;
      return;
    }
    if (good.length === 0 && listed.length === 0) {
      report.repositoriesDone++;
      return;
    }
    // tags and the index only once every image they name is durable and visible (import-batches.ts)
    const scopeName = c.images.scopeOf(repo)?.full;
    const needs = [...good, ...listed].flatMap((t) => t.chain.map((id) => ({ scope: scopeName, id })));
    await batches.afterVisible(needs, () =>
      c.repoLock.run(repo.full, async () => {
        // an image a client's push of the same id took over while it was staged (a live server on the
        // same storage) is that push's: tags and index entries that need it wait for a next run
        const visible = <T extends { readonly chain: readonly string[] }>(items: readonly T[], what: (t: T) => string): T[] =>
          items.filter((t) => {
            const id = t.chain.find((x) => batches.isOvertaken(scopeName, x));
            if (id !== undefined) report.skip(what(t), `image ${id}: ${IMPORT_OVERTAKEN}; run the import again`);
            return id === undefined;
          });
        const tags = visible(good, (t) => `${repo.full}:${t.tag}`);
        const untagged = visible(listed, (l) => `${repo.full} image ${l.id} (in _index_images)`);
        report.tags -= good.length - tags.length;
        if (tags.length === 0 && untagged.length === 0) {
          report.repositoriesDone++;
          return;
        }
        // the private flag before any tag: a server running beside the import never shows the new tags
        // of a private repository as public in between; and an import never makes a repository that
        // is private here public (the source's flag is reported as not applied)
        const known = c.db ? await findRepository(c.db, repo.namespace, repo.repository) : undefined;
        const privateInStorage = await c.repos.isPrivate(repo);
        const privateHere = privateInStorage || known?.private === true;
        const makePrivate = isPrivate || privateHere;
        if (privateHere && !isPrivate) report.skip(`${repo.full} (public in the source)`, 'private here: an import does not make a repository public');
        if (makePrivate && !privateInStorage) await c.repos.setPrivate(repo, true);
        if (c.db && known && makePrivate && !known.private) await saveRepository(c.db, { namespace: repo.namespace, name: repo.repository, private: true });
        const scope = c.images.scopeOf(repo);
        const entriesForIndex: { id: string; checksum?: string; Tag?: string }[] = [];
        const indexEntries = async (chain: readonly string[]): Promise<void> => {
          for (const id of [...chain].reverse()) {
            const link = await c.images.layerLink(scope, id);
            entriesForIndex.push({ id, ...(link ? { checksum: link.payload } : {}) });
          }
        };
        for (const t of tags) {
          const current = await c.repos.getTag(repo, t.tag).catch((e: unknown) => (isRegistryError(e) ? undefined : Promise.reject(e)));
          const meta = t.meta ?? DEFAULT_IMPORTED_METADATA;
          const stored = await c.repos.readTagJson(repo, t.tag);
          if (current !== t.id || !stored || !stored.equals(Buffer.from(JSON.stringify(meta)))) await c.repos.putTagWithMetadata(repo, t.tag, t.id, meta);
          await indexEntries(t.chain);
          entriesForIndex.push({ id: t.id, Tag: t.tag });
        }
        for (const l of untagged) await indexEntries(l.chain);
        if (repoMeta) {
          const stored = await c.repos.readRepoJson(repo);
          if (!stored || !stored.equals(Buffer.from(JSON.stringify(repoMeta)))) await c.repos.putRepoJson(repo, repoMeta);
        }
        if (c.db) {
          // the index: the repository (owner when new, private flag as the source had it), its image
          // list with the verified payload checksums and the tags, push complete; search finds it
          const existing = await findRepository(c.db, repo.namespace, repo.repository);
          const { repository } = await saveRepository(c.db, {
            namespace: repo.namespace,
            name: repo.repository,
            private: makePrivate,
            ...(existing ? {} : { ownerId: opts.ownerId }),
          });
          await mergeImages(c.db, repository.id, entriesForIndex);
          if (!repository.pushComplete) await setPushComplete(c.db, repository.id, true);
        } else {
          // standalone: the stand-in index's image list (its search reads storage)
          await c.repos.mergeIndexImages(
            repo,
            entriesForIndex.filter((e) => e.checksum).map((e) => ({ id: e.id, checksum: e.checksum! })),
          );
        }
        report.repositoriesDone++;
        report.tick();
      }),
    );
  });
  try {
    await repositories;
  } catch (e) {
    // what was staged and verified is made visible all the same (a re-run then has less to do)
    await batches.flush().catch(() => undefined);
    throw e;
  }
  await batches.flush();
  // images a client's push took over before their batch made them visible were counted as imported
  for (const s of batches.overtaken.values()) {
    report.imagesImported--;
    report.bytes -= s.link.size;
    report.skip(`image ${s.id}${s.scope ? ` in ${s.scope.full}` : ''}`, `${IMPORT_OVERTAKEN}; run the import again`);
  }
  report.tick(true);
}
