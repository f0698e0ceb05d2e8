import { Command, Option } from 'commander';
import { writeFile } from 'node:fs/promises';
import { ConfigError } from '../config/load.js';
import { fail, loadFrom, withConfigOptions, type ConfigOptions } from './common.js';
import type { SourceTree } from '../migrate/source.js';
import type { Layout } from '../migrate/import.js';

interface ImportCliOptions extends ConfigOptions {
  layout?: Layout;
  owner?: string;
  namespace: string[];
  repo: string[];
  dryRun?: boolean;
  report?: string;
  progress: boolean;
  concurrency: number;
  s3Endpoint?: string;
  s3Region?: string;
  timeout: number;
}

const collect = (v: string, prev: string[]): string[] => [...prev, v];

export function importCommand(): Command {
  return withConfigOptions(new Command('import'))
    .description("import an existing registry's storage tree (Python docker-registry or distribution) into this registry")
    .argument(
      '<source>',
      'the storage tree: a Python docker-registry storage_path, a distribution root directory (holding docker/registry/v2), or s3://bucket/prefix',
    )
    .option(
      '--s3-endpoint <url>',
      'S3 endpoint for an s3:// source (Ceph RGW, MinIO; default AWS; also $AWS_ENDPOINT_URL); credentials from $AWS_ACCESS_KEY_ID / $AWS_SECRET_ACCESS_KEY',
    )
    .option('--s3-region <region>', 'S3 region (default $AWS_REGION, else us-east-1)')
    .option('--timeout <seconds>', 'an s3:// source: the most the store may stay silent, or take for a listing page or metadata object', (v) => Number(v), 120)
    .addOption(new Option('--layout <layout>', "the tree's layout (default: detected)").choices(['python', 'distribution']))
    .option('--owner <account>', 'index account that owns the repositories the import creates')
    .option('--namespace <ns>', 'only repositories in this namespace (repeatable)', collect, [])
    .option(
      '--repo <glob>',
      'only repositories whose name matches (repeatable; * within a component, ** across; with --namespace, both must match)',
      collect,
      [],
    )
    .option('--concurrency <n>', 'repositories imported at once (Python trees)', (v) => Number(v), 4)
    .option('--dry-run', 'list what would be imported, write nothing')
    .option('--report <file>', 'also write the final report as JSON to this file')
    .option('--no-progress', 'no progress bar (it is shown only on a terminal anyway)')
    .addHelpText(
      'after',
      `
The import writes through the registry's own content services (as pushes would), so it may run
beside a live server on the same storage and index database. Every v1 layer is hashed and checked
against the checksums the Python registry recorded (_checksum), every v2 blob and manifest against
its digest; a bad object is reported and skipped with whatever depends on it, never half-imported.
Running it again imports nothing new (an interrupted run is resumed by running it again).
Layers copied from a tree on the local disk into filesystem storage are written with O_DIRECT
where the file system takes it (they do not fill the page cache); LR_DIRECT_IO=0 turns that off.

Examples:
  legacy-registry import -c config.yml --owner alice /var/lib/docker-registry
  legacy-registry import -c config.yml --dry-run /srv/distribution`,
    )
    .action(async (source: string, opts: ImportCliOptions) => {
      let config;
      try {
        config = loadFrom(opts);
      } catch (e) {
        if (e instanceof ConfigError) fail(e.message);
        throw e;
      }
      if (config.read_only) fail('the configuration is read_only: nothing can be imported');
      if (!Number.isInteger(opts.concurrency) || opts.concurrency < 1 || opts.concurrency > 64) fail('--concurrency: 1 to 64');
      if (!Number.isFinite(opts.timeout) || opts.timeout <= 0 || opts.timeout > 86_400) fail('--timeout: seconds, more than 0 and at most 86400');
      // the import's modules only now (lazy: every other command, and --help, starts without them)
      const [{ openContent }, { DirectoryTree }, { ImportError, nameFilter, runImport }] = await Promise.all([
        import('../migrate/services.js'),
        import('../migrate/source.js'),
        import('../migrate/import.js'),
      ]);
      const filter = nameFilter(opts.namespace, opts.repo);
      let tree: SourceTree;
      /** An S3 store's failure as one line for the operator (undefined: not the store's doing). */
      let storeFailure: ((e: unknown) => string | undefined) | undefined;
      if (source.startsWith('s3://')) {
        // the AWS SDK is loaded only for an S3 source (it weighs ~20 MiB of memory)
        const { parseS3Url, S3Tree, storeFailure: s3Failure } = await import('../migrate/source-s3.js');
        const s3 = parseS3Url(source) ?? fail(`not an s3://bucket/prefix URL: ${source}`);
        const endpoint = opts.s3Endpoint ?? process.env.AWS_ENDPOINT_URL;
        const region = opts.s3Region ?? process.env.AWS_REGION;
        tree = new S3Tree({ ...s3, ...(endpoint ? { endpoint } : {}), ...(region ? { region } : {}), timeoutMs: opts.timeout * 1000 });
        storeFailure = (e) => s3Failure(e, opts.timeout * 1000);
      } else tree = new DirectoryTree(source);
      const content = await openContent(config, undefined, { digestWorkers: 0, blockingFs: true });
      let report;
      try {
        report = await runImport(tree, content, {
          dryRun: opts.dryRun === true,
          progress: opts.progress,
          concurrency: opts.concurrency,
          ...(opts.layout ? { layout: opts.layout } : {}),
          ...(opts.owner !== undefined ? { owner: opts.owner } : {}),
          ...(filter ? { filter } : {}),
        });
      } catch (e) {
        if (e instanceof ImportError) fail(e.message);
        const why = storeFailure?.(e);
        if (why !== undefined) fail(`${source}: ${why}`);
        throw e;
      } finally {
        (tree as { close?: () => void }).close?.();
        await content.close();
      }
      process.stdout.write(report.text());
      if (opts.report) await writeFile(opts.report, JSON.stringify(report, null, 2) + '\n');
      process.exitCode = report.skipped.length > 0 ? 3 : 0;
    });
}
