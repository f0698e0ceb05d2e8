import { Command } from 'commander';
import { ConfigError, loadConfig } from '../config/load.js';
import { parseGoDuration } from '../config/go-duration.js';
import type { GarbageCollector, GcProgress, GcResult } from '../content/gc.js';

/** A Go duration (1h30m, 10s, 0) or a plain number of seconds, in ms. */
export function durationMs(v: string): number {
  const s = /^\d+(\.\d+)?$/.test(v) ? Number(v) : parseGoDuration(v);
  if (!Number.isFinite(s) || s < 0) throw new Error(`expected a duration such as 1h, 30m or 0, got ${JSON.stringify(v)}`);
  return Math.round(s * 1000);
}

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(1)} ${units[i]}`;
}

const PHASES: Record<GcProgress['phase'], string> = {
  mark: 'mark',
  scan: 'scan blobs',
  records: 'delete records',
  settle: 'settle',
  remark: 'mark again',
  sweep: 'delete blobs',
};

/** A one-line progress bar on a terminal (stderr), redrawn at most every 100 ms. */
function progressBar(stream: NodeJS.WriteStream): { update: (p: GcProgress) => void; done: () => void } {
  let last = 0;
  let shown = false;
  return {
    update(p) {
      const now = Date.now();
      if (now - last < 100 && p.done !== p.total) return;
      last = now;
      const width = 30;
      const frac = p.total > 0 ? Math.min(1, p.done / p.total) : 1;
      const fill = Math.round(frac * width);
      stream.write(`\r\x1b[2K${PHASES[p.phase].padEnd(14)} [${'#'.repeat(fill)}${'-'.repeat(width - fill)}] ${p.done}/${p.total}`);
      shown = true;
    },
    done() {
      if (shown) stream.write('\r\x1b[2K');
    },
  };
}

export function summary(r: GcResult): string {
  const verb = r.dryRun ? 'would delete' : 'deleted';
  return [
    `${verb} ${r.blobs.deleted} of ${r.blobs.total} blobs (${formatBytes(r.blobs.bytesFreed)}${r.dryRun ? '' : ' freed'}), ${r.blobs.marked} in use`,
    `${verb} ${r.v1Images.deleted} of ${r.v1Images.total} v1 image records, ${r.v2Manifests.deleted} of ${r.v2Manifests.total} v2 manifests, ${r.links.deleted} of ${r.links.total} layer links`,
    ...(r.blobs.keptByRecheck > 0 ? [`kept ${r.blobs.keptByRecheck} blobs a concurrent push used meanwhile`] : []),
    `took ${(r.durationMs / 1000).toFixed(1)} s`,
  ].join('\n');
}

/** Exit status of a gc that found another one running (EX_TEMPFAIL: try again later). */
export const GC_BUSY_EXIT = 75;

/** Run once; with `wait`, while another run holds the lock, try again every few seconds. */
async function runWaiting(gc: GarbageCollector, wait: boolean, opts: Parameters<GarbageCollector['run']>[0]): Promise<GcResult> {
  const { GcBusyError } = await import('../content/gc.js');
  let told = false;
  for (;;) {
    try {
      return await gc.run(opts);
    } catch (e) {
      if (!wait || !(e instanceof GcBusyError)) throw e;
      if (!told) process.stderr.write(`legacy-registry gc: ${e.message}; waiting for it to finish\n`);
      told = true;
      await new Promise((r) => setTimeout(r, 2000));
    }
  }
}

export function gcCommand(): Command {
  return new Command('gc')
    .description('delete blobs nothing references (garbage collection), while the registry keeps serving')
    .option('-c, --config <file>', 'configuration file (default: $DOCKER_REGISTRY_CONFIG, else $REGISTRY_CONFIGURATION_PATH, else config_sample.yml)')
    .option('-f, --flavor <name>', 'configuration flavor (default: $SETTINGS_FLAVOR, else dev)')
    .option('--storage-path <dir>', 'storage root (overrides STORAGE_PATH and the file)')
    .option('-n, --dry-run', 'print what would be deleted, change nothing')
    .option('-m, --delete-untagged', 'also delete v2 manifests no tag reaches and v1 images no tag ancestry reaches')
    .option('--grace <duration>', 'never delete anything written less than this long ago (Go duration: 1h, 30m, 0)')
    .option('--settle <duration>', "pause between deleting records and the second mark (longer than any node's metadata_cache_ttl)")
    .option('-q, --quiet', 'print only the summary')
    .option('-w, --wait', 'when another gc is running on this storage, wait for it to finish (default: exit with status 75)')
    .addHelpText(
      'after',
      `
Runs against live storage: no read-only window is needed. Defaults: --grace = gc_grace of the
configuration (1h), --settle = metadata_cache_ttl + 5s. Objects written within the grace period and
blobs of uploads in flight are never deleted; see docs/operations.md for how concurrent pushes are
kept safe. One run at a time per storage, across processes and nodes: a run holds a lock object in
the storage (locks/), and a second run exits at once with status 75 and a message naming the
holder, or with --wait waits for it. Output: with --dry-run one line per object that would go ("blob eligible for deletion:
sha256:…", as distribution prints), then a summary (objects and bytes). A progress bar is drawn on
stderr when it is a terminal.`,
    )
    .action(
      async (opts: {
        config?: string;
        flavor?: string;
        storagePath?: string;
        dryRun?: boolean;
        deleteUntagged?: boolean;
        grace?: string;
        settle?: string;
        quiet?: boolean;
        wait?: boolean;
      }) => {
        let config;
        let graceMs: number;
        let settleMs: number;
        try {
          config = loadConfig({
            ...(opts.config ? { file: opts.config } : {}),
            ...(opts.flavor ? { flavor: opts.flavor } : {}),
            overrides: { ...(opts.storagePath ? { storage_path: opts.storagePath } : {}) },
          });
          graceMs = opts.grace !== undefined ? durationMs(opts.grace) : config.gc_grace * 1000;
          settleMs = opts.settle !== undefined ? durationMs(opts.settle) : (config.metadata_cache_ttl + 5) * 1000;
        } catch (e) {
          process.stderr.write(`legacy-registry gc: ${e instanceof ConfigError ? e.message : (e as Error).message}\n`);
          process.exit(2);
        }
        if (config.storage === 'memory') {
          process.stderr.write('legacy-registry gc: storage: memory lives inside a server process; nothing to collect here\n');
          process.exit(2);
        }
        // the collector's modules only now (lazy: every other command, and --help, starts without them)
        const [{ GarbageCollector, GcBusyError }, { createDriver }] = await Promise.all([import('../content/gc.js'), import('../storage/drivers/index.js')]);
        const driver = await createDriver(config);
        const bar = process.stderr.isTTY ? progressBar(process.stderr) : undefined;
        const out = (line: string): void => {
          bar?.done();
          process.stdout.write(`${line}\n`);
        };
        const gc = new GarbageCollector(driver, config.max_config_size, config.max_json_size);
        if (!gc.exclusiveAcrossProcesses)
          process.stderr.write(`legacy-registry gc: storage ${config.storage} cannot hold a lock across processes: make sure no other gc runs on it\n`);
        try {
          const r = await runWaiting(gc, opts.wait ?? false, {
            dryRun: opts.dryRun ?? false,
            deleteUntagged: opts.deleteUntagged ?? false,
            graceMs,
            settleMs,
            ...(bar ? { progress: bar.update } : {}),
            ...(opts.quiet
              ? {}
              : {
                  onItem: (kind, name, bytes) => {
                    if (kind === 'blob')
                      out(`blob ${opts.dryRun ? 'eligible for deletion' : 'deleted'}: ${name}${bytes !== undefined ? ` (${formatBytes(bytes)})` : ''}`);
                    else out(`${kind.replace('_', ' ')} ${opts.dryRun ? 'eligible for deletion' : 'deleted'}: ${name}`);
                  },
                }),
          });
          bar?.done();
          process.stdout.write(`${summary(r)}\n`);
        } catch (e) {
          if (!(e instanceof GcBusyError)) throw e;
          bar?.done();
          process.stderr.write(`legacy-registry gc: ${e.message}; nothing done (run again when it has finished, or pass --wait)\n`);
          process.exitCode = GC_BUSY_EXIT;
        } finally {
          await driver.close?.();
        }
      },
    );
}
