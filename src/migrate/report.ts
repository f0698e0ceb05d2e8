import { readFileSync } from 'node:fs';
import { formatBytes, Progress } from './progress.js';

/** One thing not imported (or not moved), and why. */
export interface Skipped {
  readonly what: string;
  readonly reason: string;
}

/**
 * What an import run did: counted as it goes, printed at the end (and as JSON with --report).
 * `imported` counts objects written now; `present` those found already there (a re-run imports
 * nothing new: everything is `present`).
 */
export class ImportReport {
  repositories = 0;
  repositoriesDone = 0;
  tags = 0;
  imagesImported = 0;
  imagesPresent = 0;
  manifestsImported = 0;
  manifestsPresent = 0;
  blobsImported = 0;
  blobsPresent = 0;
  bytes = 0;
  readonly skipped: Skipped[] = [];
  /** --dry-run: what would be imported, one line each. */
  readonly planned: string[] = [];
  private readonly started = Date.now();
  readonly progress: Progress;

  constructor(
    readonly source: string,
    readonly layout: string,
    readonly dryRun: boolean,
    showProgress = true,
  ) {
    this.progress = new Progress(dryRun ? 'import (dry run)' : 'import', showProgress);
  }

  skip(what: string, reason: string): void {
    this.skipped.push({ what, reason });
  }

  tick(force = false): void {
    this.progress.update(
      {
        done: this.repositoriesDone,
        total: this.repositories,
        items: this.imagesImported + this.imagesPresent + this.manifestsImported + this.manifestsPresent + this.blobsImported + this.blobsPresent,
        bytes: this.bytes,
      },
      force,
    );
  }

  get seconds(): number {
    return (Date.now() - this.started) / 1000;
  }

  toJSON(): Record<string, unknown> {
    return {
      source: this.source,
      layout: this.layout,
      dryRun: this.dryRun,
      repositories: this.repositories,
      tags: this.tags,
      images: { imported: this.imagesImported, present: this.imagesPresent },
      manifests: { imported: this.manifestsImported, present: this.manifestsPresent },
      blobs: { imported: this.blobsImported, present: this.blobsPresent },
      bytes: this.bytes,
      seconds: Number(this.seconds.toFixed(3)),
      peakRssMiB: peakRssMiB(),
      skipped: this.skipped,
      ...(this.dryRun ? { planned: this.planned } : {}),
    };
  }

  text(): string {
    const lines = [
      `${this.dryRun ? 'would import' : 'imported'} from ${this.source} (${this.layout} layout) in ${this.seconds.toFixed(1)} s`,
      `  repositories: ${this.repositories}, tags: ${this.tags}`,
      `  v1 images: ${this.imagesImported} ${this.dryRun ? 'to import' : 'imported'}, ${this.imagesPresent} already present`,
      `  v2 manifests: ${this.manifestsImported} ${this.dryRun ? 'to import' : 'imported'}, ${this.manifestsPresent} already present`,
      `  blobs: ${this.blobsImported} ${this.dryRun ? 'to import' : 'imported'}, ${this.blobsPresent} already present`,
      `  peak memory (RSS): ${peakRssMiB()} MiB`,
      `  bytes: ${formatBytes(this.bytes)}${this.seconds > 0 && !this.dryRun ? ` (${(this.bytes / (1024 * 1024) / this.seconds).toFixed(1)} MiB/s)` : ''}`,
    ];
    if (this.dryRun) for (const p of this.planned) lines.push(`  + ${p}`);
    lines.push(`  skipped: ${this.skipped.length}`);
    for (const s of this.skipped) lines.push(`    ${s.what}: ${s.reason}`);
    return lines.join('\n') + '\n';
  }
}

/**
 * The process's peak resident memory so far, MiB (the import and migrate reports show it). On Linux
 * the program's own high-water mark (VmHWM): getrusage's maxRSS also keeps, across exec, the peak of
 * the process that forked it (a bench that had generated 3 GiB of layers made an import of 147 MiB
 * report 1,521).
 */
export function peakRssMiB(): number {
  try {
    const m = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync('/proc/self/status', 'utf8'));
    if (m) return Math.round(Number(m[1]) / 1024);
  } catch {
    // not Linux: getrusage's figure
  }
  return Math.round(process.resourceUsage().maxRSS / 1024);
}
