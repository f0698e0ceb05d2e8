import { createHash } from 'node:crypto';
import { appendFileSync, closeSync, constants, fstatSync, openSync, readSync } from 'node:fs';
import { PassThrough, type Readable } from 'node:stream';
import { V2Error } from '../errors/v2.js';
import { isRegistryError } from '../errors/index.js';
import { StorageCatalog } from '../content/v2-catalog.js';
import { MT, type StoredManifest } from '../content/v2-manifests.js';
import { parseV2Name, type V2Name } from '../content/v2-names.js';
import type { Content } from './services.js';
import { describeError, TargetError, type TargetRegistry } from './registry-client.js';
import { printable } from '../util/text.js';
import { formatBytes, Progress } from './progress.js';
import { peakRssMiB, type Skipped } from './report.js';
import { mapPool, pool } from '../util/pool.js';
import { jsonDepthExceeds } from '../http/body.js';

export interface MigrateOptions {
  readonly filter?: (name: string) => boolean;
  /** Source tag → target tag; tags not in the map keep their name. */
  readonly tagMap?: ReadonlyMap<string, string>;
  /** Pushes running at once (tags; their blobs go one after the other). */
  readonly concurrency: number;
  readonly dryRun: boolean;
  /** JSON-lines file recording what reached the target; read back to resume. */
  readonly stateFile?: string;
  readonly progress?: boolean;
}

/** One tag moved (or, with --dry-run, to move). */
export interface Moved {
  readonly source: string;
  readonly target: string;
  readonly digest: string;
  readonly mediaType: string;
  readonly blobs: number;
  readonly bytes: number;
  /** Found done in the state file (same digest) and left alone. */
  readonly resumed?: boolean;
}

export class MigrateReport {
  readonly moved: Moved[] = [];
  readonly failed: Skipped[] = [];
  repositories = 0;
  repositoriesDone = 0;
  blobsUploaded = 0;
  blobsMounted = 0;
  blobsPresent = 0;
  bytesUploaded = 0;
  private readonly started = Date.now();
  constructor(
    readonly target: string,
    readonly dryRun: boolean,
  ) {}
  get seconds(): number {
    return (Date.now() - this.started) / 1000;
  }
  toJSON(): Record<string, unknown> {
    return {
      target: this.target,
      dryRun: this.dryRun,
      repositories: this.repositories,
      tags: this.moved.length,
      blobs: { uploaded: this.blobsUploaded, mounted: this.blobsMounted, present: this.blobsPresent },
      bytesUploaded: this.bytesUploaded,
      seconds: Number(this.seconds.toFixed(3)),
      peakRssMiB: peakRssMiB(),
      moved: this.moved,
      failed: this.failed,
    };
  }
  text(): string {
    const lines = [
      `${this.dryRun ? 'would migrate' : 'migrated'} to ${this.target} in ${this.seconds.toFixed(1)} s`,
      `  repositories: ${this.repositories}, tags ${this.dryRun ? 'to move' : 'moved'}: ${this.moved.length} (${this.moved.filter((m) => m.resumed).length} already done by an earlier run)`,
      `  blobs: ${this.blobsUploaded} uploaded (${formatBytes(this.bytesUploaded)}${this.seconds > 0 ? `, ${(this.bytesUploaded / (1024 * 1024) / this.seconds).toFixed(1)} MiB/s` : ''}), ${this.blobsMounted} mounted, ${this.blobsPresent} already there`,
      `  peak memory (RSS): ${peakRssMiB()} MiB`,
    ];
    for (const m of this.moved)
      if (!m.resumed)
        lines.push(`  ${this.dryRun ? '+' : '✓'} ${m.source} → ${m.target} ${m.digest}${this.dryRun ? ` (${m.blobs} blobs, ${formatBytes(m.bytes)})` : ''}`);
    lines.push(`  could not move: ${this.failed.length}`);
    for (const f of this.failed) lines.push(`    ${f.what}: ${f.reason}`);
    return lines.join('\n') + '\n';
  }
}

/** A state file that is not about this migration's target (its records would skip work not done there). */
export class StateFileError extends Error {}

/**
 * A state file past this size is refused (StateFileError) rather than read: each record is one line
 * of about 100-200 bytes (a blob in a target repository, a verified tag), so 256 MiB holds well over
 * a million, more than a migration of 20,000 repositories writes; read whole, a file near V8's
 * largest string (512 MiB) would end the run with a crash instead of an error.
 */
export const STATE_FILE_MAX = 256 * 1024 * 1024;
/** How deep a state record nests (a flat object). */
const STATE_LINE_DEPTH = 1;

/** The state file's bytes (at most STATE_FILE_MAX), or undefined when there is none yet. */
function readStateFile(file: string): Buffer | undefined {
  let fd: number;
  try {
    fd = openSync(file, constants.O_RDONLY | (constants.O_NONBLOCK ?? 0));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new StateFileError(`the state file ${file} cannot be read: ${(e as Error).message}`);
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new StateFileError(`the state file ${file} is not a regular file`);
    const tooLarge = (): StateFileError =>
      new StateFileError(
        `the state file ${file} is larger than ${STATE_FILE_MAX / (1024 * 1024)} MiB, more than a migration records: give another --state file`,
      );
    if (st.size > STATE_FILE_MAX) throw tooLarge();
    // read to its end, never more than one byte past the cap (a file that grows since the fstat)
    const buf = Buffer.allocUnsafe(Math.min(st.size, STATE_FILE_MAX) + 1);
    let n = 0;
    for (;;) {
      const got = readSync(fd, buf, n, buf.length - n, null);
      if (got === 0) break;
      n += got;
      if (n === buf.length) break;
    }
    if (n > STATE_FILE_MAX) throw tooLarge();
    return buf.subarray(0, n);
  } finally {
    closeSync(fd);
  }
}

const DIGEST = /^sha256:[a-f0-9]{64}$|^sha512:[a-f0-9]{128}$/;

/** What earlier runs got onto the target (the state file), appended to as this run goes. */
export class State {
  /** target repository → blobs known there */
  readonly blobs = new Map<string, Set<string>>();
  /**
   * blob → the first two target repositories known to hold it (a mount source other than any one
   * repository is among them). holder() scanned every repository's set for each blob: a run over
   * 20,000 repositories spent seconds per blob.
   */
  private readonly holders = new Map<string, string[]>();
  /** `repo:tag` → manifest digest pushed and verified */
  readonly tags = new Map<string, string>();
  constructor(
    private readonly file: string | undefined,
    target: string,
  ) {
    if (!file) return;
    let named = false;
    const bytes = readStateFile(file);
    if (bytes) {
      let n = 0;
      for (let start = 0; start < bytes.length;) {
        const nl = bytes.indexOf(10, start);
        const end = nl < 0 ? bytes.length : nl;
        const raw = bytes.subarray(start, end);
        start = end + 1;
        n++;
        // a record is a flat object: a line nested deeper is no line this command wrote, and is not parsed
        if (jsonDepthExceeds(raw, STATE_LINE_DEPTH)) {
          throw new StateFileError(
            `the state file ${file}: line ${n} nests deeper than a state record (${STATE_LINE_DEPTH} level): not a state file of migrate`,
          );
        }
        const line = raw.toString('utf8');
        if (!line.trim()) continue;
        let e: { blob?: unknown; repo?: unknown; tag?: unknown; digest?: unknown; target?: unknown } | null;
        try {
          e = JSON.parse(line) as typeof e;
        } catch {
          continue; // a line cut by a kill
        }
        if (!e || typeof e !== 'object') continue;
        if (typeof e.target === 'string') {
          // its records say what reached that target, not this one
          if (e.target !== target)
            throw new StateFileError(`the state file ${file} records a migration to ${e.target}, not to ${target}: give another --state file`);
          named = true;
        } else if (typeof e.blob === 'string' && typeof e.repo === 'string') {
          if (DIGEST.test(e.blob) && parseV2Name(e.repo)) this.noteBlob(e.repo, e.blob);
        } else if (typeof e.tag === 'string' && typeof e.digest === 'string') {
          if (DIGEST.test(e.digest)) this.tags.set(e.tag, e.digest);
        }
      }
    }
    // a file from before the target was recorded is taken as it is; from now on it names the target
    if (!named) appendFileSync(file, `\n${JSON.stringify({ target })}\n`);
  }
  private noteBlob(repo: string, digest: string): void {
    let s = this.blobs.get(repo);
    if (!s) this.blobs.set(repo, (s = new Set()));
    if (s.has(digest)) return;
    s.add(digest);
    const h = this.holders.get(digest);
    if (!h) this.holders.set(digest, [repo]);
    else if (h.length < 2) h.push(repo);
  }
  blob(repo: string, digest: string): void {
    if (this.blobs.get(repo)?.has(digest)) return;
    this.noteBlob(repo, digest);
    if (this.file) appendFileSync(this.file, JSON.stringify({ blob: digest, repo }) + '\n');
  }
  tag(repoTag: string, digest: string): void {
    this.tags.set(repoTag, digest);
    if (this.file) appendFileSync(this.file, JSON.stringify({ tag: repoTag, digest }) + '\n');
  }
  /** Another target repository known to hold the blob (a mount source). */
  holder(digest: string, not: string): string | undefined {
    return this.holders.get(digest)?.find((repo) => repo !== not);
  }
}

class MoveError extends Error {}

/**
 * legacy-registry migrate: every repository and tag of this registry pushed to another v2
 * registry, in the v2 form our /v2/ serves (v2 manifests as stored; the bridge's schema2 manifest
 * and config for v1-pushed tags, spec v2-bridge §3.3): blobs first — HEAD, then a cross-repository
 * mount from a target repository known to hold the blob, else an upload — then the manifest by
 * tag, checked against the digest the target answers and reads back.
 */
export async function runMigrate(c: Content, target: TargetRegistry | undefined, opts: MigrateOptions): Promise<MigrateReport> {
  const report = new MigrateReport(target?.base.href ?? '(dry run)', opts.dryRun);
  const state = new State(opts.dryRun ? undefined : opts.stateFile, target?.base.href ?? '');
  const progress = new Progress(opts.dryRun ? 'migrate (dry run)' : 'migrate', opts.progress ?? true);
  const tick = (force = false): void =>
    progress.update(
      {
        done: report.repositoriesDone,
        total: report.repositories,
        items: report.blobsUploaded + report.blobsMounted + report.blobsPresent + report.moved.length,
        bytes: report.bytesUploaded,
      },
      force,
    );
  if (target && !opts.dryRun) await target.ping();

  const catalog = new StorageCatalog(c.driver, c.repos);
  const names = (await catalog.names({ account: null, admin: true }, undefined, Number.MAX_SAFE_INTEGER)).filter((n) => !opts.filter || opts.filter(n));
  report.repositories = names.length;

  /** blob uploads in flight, per target repository and digest: one upload however many tags need it */
  const inflight = new Map<string, Promise<void>>();
  /** the first push of each digest in flight (to any repository): later ones mount from it */
  const uploading = new Map<string, Promise<void>>();

  const pushBlob = async (repo: string, digest: string, size: number): Promise<void> => {
    if (state.blobs.get(repo)?.has(digest)) {
      report.blobsPresent++;
      return;
    }
    const key = `${repo}\n${digest}`;
    const running = inflight.get(key);
    if (running) return running;
    const me: { p?: Promise<void> } = {};
    const p = (async () => {
      const t = target!;
      const push = `repository:${repo}:pull,push`;
      const blobUrl = new URL(`v2/${repo}/blobs/${digest}`, t.base).href;
      let head = await t.request('HEAD', blobUrl, { scopes: [push] });
      // distribution on object storage redirects a HEAD of a blob it holds to the store: one hop,
      // followed without credentials unless it stays on the target (request() sees to that)
      if ([301, 302, 303, 307, 308].includes(head.status) && typeof head.headers.location === 'string')
        head = await t.request('HEAD', new URL(head.headers.location, blobUrl).href, { scopes: [push] });
      if (head.status === 200) {
        // a target claiming the blob must at least describe it as ours (the manifest PUT then has
        // the target check that every blob is there, and the read-back checks the manifest)
        const len = head.headers['content-length'];
        const got = head.headers['docker-content-digest'];
        if ((len !== undefined && Number(len) !== size) || (got !== undefined && got !== digest))
          throw new MoveError(
            `the target says it holds blob ${digest} but describes it as ${got !== undefined ? printable(String(got), 80) : digest}, ${len ?? '?'} bytes (not ${size})`,
          );
        report.blobsPresent++;
        state.blob(repo, digest);
        return;
      }
      if (head.status !== 404) throw new MoveError(`HEAD blob ${digest}: ${describeError(head).text}`);
      let location: string | undefined;
      // the same blob on its way to another target repository: wait for it, then mount from there
      const elsewhere = uploading.get(digest);
      if (elsewhere && elsewhere !== me.p) await elsewhere.catch(() => undefined);
      const from = state.holder(digest, repo);
      if (from) {
        const m = await t.request('POST', `v2/${repo}/blobs/uploads/?mount=${encodeURIComponent(digest)}&from=${encodeURIComponent(from)}`, {
          scopes: [push, `repository:${from}:pull`],
        });
        if (m.status === 201) {
          report.blobsMounted++;
          state.blob(repo, digest);
          return;
        }
        if (m.status === 202) location = m.headers.location;
      }
      if (!location) {
        const s = await t.request('POST', `v2/${repo}/blobs/uploads/`, { scopes: [push] });
        if (s.status !== 202) throw new MoveError(`starting an upload: ${describeError(s).text}`);
        if (!s.headers.location) throw new MoveError(`starting an upload: the target answered 202 without a Location to upload to`);
        location = s.headers.location;
      }
      const url = new URL(location, t.base);
      url.searchParams.set('digest', digest);
      const put = await t.request('PUT', url.href, {
        scopes: [push],
        headers: { 'Content-Type': 'application/octet-stream' },
        length: size,
        body: () => {
          // a stream per attempt; the Readable is opened lazily by the driver call below
          return streamLater(() => c.blobs.open(digest));
        },
      });
      if (put.status !== 201) throw new MoveError(`uploading blob ${digest}: ${describeError(put).text}`);
      const got = put.headers['docker-content-digest'];
      if (got !== undefined && got !== digest) throw new MoveError(`the target stored blob ${digest} as ${printable(String(got), 80)}`);
      report.blobsUploaded++;
      report.bytesUploaded += size;
      state.blob(repo, digest);
      tick();
    })();
    me.p = p;
    inflight.set(key, p);
    if (!uploading.has(digest)) uploading.set(digest, p);
    try {
      await p;
    } finally {
      inflight.delete(key);
      if (uploading.get(digest) === p) uploading.delete(digest);
    }
  };

  const putManifest = async (repo: string, ref: string, m: StoredManifest): Promise<void> => {
    const t = target!;
    const put = await t.request('PUT', `v2/${repo}/manifests/${ref}`, {
      scopes: [`repository:${repo}:pull,push`],
      headers: { 'Content-Type': m.mediaType },
      body: () => m.bytes,
      length: m.bytes.length,
    });
    if (put.status !== 201) throw new MoveError(`manifest ${ref}: ${describeError(put).text}`);
    const got = put.headers['docker-content-digest'];
    if (got !== undefined && got !== m.digest) throw new MoveError(`the target answered digest ${printable(String(got), 80)} for manifest ${m.digest}`);
    // read back: the reference must now name exactly this manifest
    const head = await t.request('HEAD', `v2/${repo}/manifests/${ref}`, { scopes: [`repository:${repo}:pull`], headers: { Accept: m.mediaType } });
    if (head.status !== 200 || head.headers['docker-content-digest'] !== m.digest) {
      throw new MoveError(
        `after the push, ${repo}:${ref} reads back as ${head.status === 200 ? printable(String(head.headers['docker-content-digest']), 80) : describeError(head).text}, not ${m.digest}`,
      );
    }
    // a header is only what the target says: the bytes it serves under the reference must hash to
    // the digest (a rewriting proxy, or a target answering the tag from somewhere else)
    const get = await t.request('GET', `v2/${repo}/manifests/${ref}`, { scopes: [`repository:${repo}:pull`], headers: { Accept: m.mediaType } });
    const algorithm = m.digest.slice(0, m.digest.indexOf(':'));
    const served = get.status === 200 ? `${algorithm}:${createHash(algorithm).update(get.body).digest('hex')}` : undefined;
    if (served !== m.digest) throw new MoveError(`after the push, ${repo}:${ref} reads back as ${served ?? describeError(get).text}, not ${m.digest}`);
  };

  /** Blobs (config first, then layers) of an image manifest, with their sizes. */
  const blobsOf = (m: StoredManifest): { digest: string; size: number }[] => {
    const doc = JSON.parse(m.bytes.toString('utf8')) as {
      config?: { digest: string; size: number };
      layers?: { digest: string; size: number; urls?: unknown }[];
    };
    return [...(doc.config ? [doc.config] : []), ...(doc.layers ?? []).filter((l) => !l.urls)].map((d) => ({ digest: d.digest, size: d.size }));
  };

  /** An image manifest, or an index with its children (by digest first), onto the target. */
  const pushManifest = async (source: V2Name, repo: string, ref: string, m: StoredManifest, counted: { blobs: number; bytes: number }): Promise<void> => {
    if (m.mediaType === MT.schema1 || m.mediaType === MT.schema1Signed)
      throw new MoveError('schema1-only content (a signed schema1 manifest): v2 registries refuse schema1 pushes');
    if (m.mediaType === MT.list || m.mediaType === MT.ociIndex) {
      const doc = JSON.parse(m.bytes.toString('utf8')) as { manifests?: { digest: string }[] };
      for (const child of doc.manifests ?? []) {
        const cm = await c.manifests.get(source, { digest: child.digest });
        if (!cm) throw new MoveError(`child manifest ${child.digest} is not stored here`);
        await pushManifest(source, repo, child.digest, cm, counted);
      }
    } else {
      for (const b of blobsOf(m)) {
        counted.blobs++;
        counted.bytes += b.size;
        if (!opts.dryRun) await pushBlob(repo, b.digest, b.size);
      }
    }
    if (!opts.dryRun) await putManifest(repo, ref, m);
  };

  /** The manifest our /v2/ serves for the tag to a client accepting every modern type (routes.ts resolveManifest). */
  const manifestOf = async (name: V2Name, tag: string): Promise<StoredManifest | undefined> => {
    let stored = await c.manifests.get(name, { tag });
    if (stored) {
      const side = await c.toV1.current(name, tag);
      if (side === 'gone') return undefined;
      if (side === 'v1') stored = undefined;
    }
    return stored ?? (await c.fromV1.manifestForTag(name, tag));
  };

  const jobs: { source: V2Name; shown: string; tag: string }[] = [];
  for (const shown of names) {
    // the catalog lists a one-component v2 name as library/<name>: find the name it is stored under
    const candidates = [shown, ...(shown.startsWith('library/') ? [shown.slice(8)] : [])];
    let source: V2Name | undefined;
    let tags: string[] = [];
    for (const cand of candidates) {
      const n = parseV2Name(cand);
      if (!n) continue;
      const v1Tags = await c.fromV1.tags(n);
      let v2Tags = await c.manifests.tags(n);
      // 16 checks at a time: a repository of 100,000 v2 tags started them all at once (EMFILE)
      const sides = await mapPool(v2Tags, 16, (t) => c.toV1.current(n, t));
      v2Tags = v2Tags.filter((_, i) => sides[i] !== 'gone');
      const all = [...new Set([...v2Tags, ...v1Tags])].sort();
      if (all.length > 0 || (await c.manifests.exists(n))) {
        source = n;
        tags = all;
        break;
      }
    }
    if (!source) {
      report.failed.push({
        what: shown,
        reason: parseV2Name(shown) ? 'no tags' : 'the name is not a valid v2 repository name (v2 allows a-z 0-9 and single separators . _ __ - between them)',
      });
      continue;
    }
    // two tags pushed as one (--tag-map onto a tag the repository has, or two maps onto one name):
    // the target would keep whichever came last while the report said both moved
    const as = new Map<string, string[]>();
    for (const tag of tags) {
      const to = opts.tagMap?.get(tag) ?? tag;
      as.set(to, [...(as.get(to) ?? []), tag]);
    }
    for (const [to, from] of as) {
      if (from.length === 1) jobs.push({ source, shown, tag: from[0]! });
      else
        for (const tag of from)
          report.failed.push({
            what: `${shown}:${tag}`,
            reason: `${from.map((f) => `${shown}:${f}`).join(' and ')} would both be pushed as ${source}:${to} (--tag-map): none of them is, choose one`,
          });
    }
  }
  const perRepo = new Map<string, number>();
  for (const j of jobs) perRepo.set(j.shown, (perRepo.get(j.shown) ?? 0) + 1);
  report.repositoriesDone = report.repositories - perRepo.size;

  await pool(jobs, opts.concurrency, async ({ source, shown, tag }) => {
    const targetTag = opts.tagMap?.get(tag) ?? tag;
    const repo = source; // the target repository keeps the name
    const what = `${shown}:${tag}`;
    try {
      let m: StoredManifest | undefined;
      try {
        m = await manifestOf(source, tag);
      } catch (e) {
        if (e instanceof V2Error || isRegistryError(e)) throw new MoveError(e.message);
        throw e;
      }
      if (!m) throw new MoveError('no manifest (an incomplete image)');
      const key = `${repo}:${targetTag}`;
      if (state.tags.get(key) === m.digest) {
        report.moved.push({ source: what, target: key, digest: m.digest, mediaType: m.mediaType, blobs: 0, bytes: 0, resumed: true });
      } else {
        const counted = { blobs: 0, bytes: 0 };
        await pushManifest(source, repo, targetTag, m, counted);
        if (!opts.dryRun) state.tag(key, m.digest);
        report.moved.push({ source: what, target: key, digest: m.digest, mediaType: m.mediaType, ...counted });
      }
    } catch (e) {
      if (e instanceof MoveError || e instanceof TargetError) report.failed.push({ what, reason: e.message });
      else if (
        e instanceof Error &&
        'code' in e &&
        typeof (e as NodeJS.ErrnoException).code === 'string' &&
        /^E[A-Z]/.test((e as NodeJS.ErrnoException).code!)
      ) {
        report.failed.push({ what, reason: `network: ${e.message}` });
      } else throw e;
    }
    const left = perRepo.get(shown)! - 1;
    perRepo.set(shown, left);
    if (left === 0) report.repositoriesDone++;
    tick();
  });
  tick(true);
  progress.done();
  return report;
}

/** A Readable that opens its source on first read (the request body is created before auth is known). */
function streamLater(open: () => Promise<Readable>): Readable {
  const out = new PassThrough({ highWaterMark: 1 << 20 });
  open().then(
    (src) => {
      // the request gave up on this body (an error, a timeout, a challenge answered before it was read)
      if (out.destroyed) return void src.destroy();
      out.once('close', () => src.destroy());
      src.on('error', (e) => out.destroy(e));
      src.pipe(out);
    },
    (e: unknown) => out.destroy(e as Error),
  );
  return out;
}
