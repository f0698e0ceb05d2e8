import { findUserByName } from '../db/users.js';
import { importDistribution, distributionRoot } from './import-distribution.js';
import { importPython } from './import-python.js';
import { ImportReport } from './report.js';
import { mallocRetain } from '../util/malloc-trim.js';
import { LayerFiles } from '../digest/layer-files.js';
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
  const report = new ImportReport(tree.describe, layout, opts.dryRun, opts.progress ?? true);
  // the layers' buffers freed and taken again all through the run: kept, not faulted in anew
  if (!opts.dryRun) mallocRetain();
  try {
    if (layout === 'python') {
      const layerFiles = !opts.dryRun && tree.localPath ? new LayerFiles() : undefined;
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
