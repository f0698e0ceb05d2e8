import { findUserByName } from '../db/users.js';
import { importDistribution, distributionRoot } from './import-distribution.js';
import { importPython } from './import-python.js';
import { ImportReport } from './report.js';
import { mallocRetain, mapTextInPages } from '../util/malloc-trim.js';
import { LayerFiles } from '../digest/layer-files.js';
import { importDirectIo } from '../storage/direct-io.js';
import { StorageLock, type LockHolder } from '../content/storage-lock.js';
import type { Content } from './services.js';
import type { SourceTree } from './source.js';

export type Layout = 'python' | 'distribution';

/** Which registry wrote the tree: distribution has docker/registry/v2 (or repositories with _manifests), Python images/ + repositories/. */
export async function detectLayout(tree: SourceTree): Promise<Layout | undefined> {
  const top = await tree.list('');
  if (top.includes('docker') && (await distributionRoot(tree)) === 'docker/registry/v2') return 'distribution';
  if (top.includes('images') || top.includes('repositories')) {
    // distribution's data root given directly: repositories/<…>/_manifests, blobs/sha256
    if (top.includes('blobs') && !top.includes('images')) return 'distribution';
    return 'python';
  }
  return undefined;
}

export interface RunImportOptions {
  readonly layout?: Layout;
  readonly dryRun: boolean;
  readonly owner?: string;
  readonly filter?: (name: string) => boolean;
  readonly progress?: boolean;
  readonly concurrency?: number;
}

export class ImportError extends Error {}

/**
 * How often an import drops its resident pages of the executable (mapTextInPages). On a kernel that
 * maps files in large folios (2026-12-06: 6.18 with ext4), node's binary made up ~50 MiB of the
 * import's RSS; the bench's 1,000-image / 2 GiB import peaked at 195–196 MiB (bound 200) without it,
 * 176–178 MiB with it, in 9.3–9.7 s against 9.4–9.8 s (two alternating pairs).
 */
const TEXT_DROP_MS = 1000;

/** One import run (legacy-registry import): the tree into the content services, with its report. */
export async function runImport(tree: SourceTree, c: Content, opts: RunImportOptions): Promise<ImportReport> {
  const layout = opts.layout ?? (await detectLayout(tree));
  if (!layout)
    throw new ImportError(`${tree.describe}: neither a Python docker-registry tree (images/, repositories/) nor a distribution tree (docker/registry/v2/)`);
  let ownerId: number | null = null;
  if (opts.owner !== undefined) {
    if (!c.db) throw new ImportError('--owner needs an index (this configuration is standalone: repositories have no owners)');
    const u = await findUserByName(c.db, opts.owner);
    if (!u) throw new ImportError(`no such account: ${opts.owner} (create it first: legacy-registry user add)`);
    ownerId = u.id;
  }
  if (!opts.dryRun) {
    // one import at a time per storage, across processes and nodes: two at once each take the
    // other's in-progress images for a killed run's and rewrite them (measured: an image left visible
    // without its layer link, for good, and the other run stopped by "the image changed"). A killed
    // run's lock is broken by the next run (at once on the same machine, else after the lease).
    const r = await new StorageLock(c.driver, { leaseMs: 60_000 }).tryRun(IMPORT_LOCK, () => importLocked(tree, c, layout, ownerId, opts));
    if (!r.ran) throw new ImportError(`another import is running on this storage (${holderText(r.holder)}): run this one again once it is done`);
    return r.value;
  }
  return importLocked(tree, c, layout, ownerId, opts);
}

/** The storage lock a (non dry) import holds for its whole run. */
export const IMPORT_LOCK = 'import';

function holderText(h: LockHolder): string {
  if (h.here) return 'in this process';
  const parts = [h.host !== undefined ? `host ${h.host}` : undefined, h.pid !== undefined ? `pid ${h.pid}` : undefined];
  if (h.since !== undefined) parts.push(`since ${new Date(h.since).toISOString()}`);
  return parts.filter((p) => p !== undefined).join(', ') || 'holder unknown';
}

async function importLocked(tree: SourceTree, c: Content, layout: Layout, ownerId: number | null, opts: RunImportOptions): Promise<ImportReport> {
  const report = new ImportReport(tree.describe, layout, opts.dryRun, opts.progress ?? true);
  // the layers' buffers freed and taken again all through the run: kept, not faulted in anew
  if (!opts.dryRun) mallocRetain();
  // node's own binary resident only where used: this kernel maps it 2 MiB at a time (native/memory.c)
  const textTimer = opts.dryRun ? undefined : setInterval(mapTextInPages, TEXT_DROP_MS);
  textTimer?.unref();
  try {
    if (layout === 'python') {
      const layerFiles = !opts.dryRun && tree.localFile ? new LayerFiles({ direct: importDirectIo() }) : undefined;
      try {
        await importPython(tree, c, report, {
          dryRun: opts.dryRun,
          ownerId,
          ...(opts.filter ? { filter: opts.filter } : {}),
          ...(opts.concurrency ? { concurrency: opts.concurrency } : {}),
          ...(layerFiles ? { layerFiles } : {}),
        });
      } finally {
        await layerFiles?.close();
      }
    } else await importDistribution(tree, c, report, { dryRun: opts.dryRun, owner: opts.owner ?? null, ...(opts.filter ? { filter: opts.filter } : {}) });
  } finally {
    if (textTimer) clearInterval(textTimer);
    report.progress.done();
  }
  return report;
}

/** A shell-style pattern over repository names: `*` within a component, `**` across, `?` one character. */
export function globMatcher(patterns: readonly string[]): ((name: string) => boolean) | undefined {
  if (patterns.length === 0) return undefined;
  const res = patterns.map(
    (p) =>
      new RegExp(
        `^${p
          .split('**')
          .map((part) =>
            part
              .replace(/[.+^${}()|[\]\\]/g, '\\$&')
              .replace(/\*/g, '[^/]*')
              .replace(/\?/g, '[^/]'),
          )
          .join('.*')}$`,
      ),
  );
  return (name) => res.some((r) => r.test(name));
}

/** --namespace and --repo together: a name must pass both (each is a list of alternatives). */
export function nameFilter(namespaces: readonly string[], repos: readonly string[]): ((name: string) => boolean) | undefined {
  const ns = globMatcher(namespaces.map((n) => `${n}/**`));
  const rp = globMatcher(repos);
  if (!ns && !rp) return undefined;
  return (name) => (!ns || ns(name)) && (!rp || rp(name));
}
