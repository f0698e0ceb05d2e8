import { Command } from 'commander';
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { ConfigError } from '../config/load.js';
import { fail, loadFrom, withConfigOptions, type ConfigOptions } from './common.js';

interface MigrateCliOptions extends ConfigOptions {
  to?: string;
  namespace: string[];
  repo: string[];
  tagMap: string[];
  username?: string;
  passwordStdin?: boolean;
  caCert?: string;
  insecure?: boolean;
  concurrency: number;
  timeout: number;
  state?: string;
  dryRun?: boolean;
  report?: string;
  progress: boolean;
}

const collect = (v: string, prev: string[]): string[] => [...prev, v];

export function migrateCommand(): Command {
  return withConfigOptions(new Command('migrate'))
    .description('push every repository and tag of this registry to another v2 registry')
    .requiredOption('--to <url>', 'the target registry, e.g. https://registry.example.com')
    .option('--namespace <ns>', 'only repositories in this namespace (repeatable)', collect, [])
    .option(
      '--repo <glob>',
      'only repositories whose name matches (repeatable; * within a component, ** across; with --namespace, both must match)',
      collect,
      [],
    )
    .option('--tag-map <from=to>', 'push tag <from> as <to> (repeatable)', collect, [])
    .option('--username <name>', 'account on the target (Basic, or for its token service); password from $MIGRATE_PASSWORD or --password-stdin')
    .option('--password-stdin', 'read the target password from stdin')
    .option('--ca-cert <file>', "PEM CA certificate(s) the target's TLS certificate is signed by (besides the system ones)")
    .option('--insecure', "do not verify the target's TLS certificate")
    .option('--concurrency <n>', 'tags pushed at once', (v) => Number(v), 4)
    .option(
      '--timeout <seconds>',
      'per request to the target: the most it may stay silent, and to answer in full (uploads: plus 100 s per MiB)',
      (v) => Number(v),
      300,
    )
    .option('--state <file>', 'resume file: what reached the target is appended here, and skipped by the next run (default: none)')
    .option('--dry-run', 'list what would move, contact nothing')
    .option('--report <file>', 'also write the final report as JSON to this file')
    .option('--no-progress', 'no progress bar (it is shown only on a terminal anyway)')
    .addHelpText(
      'after',
      `
v1-pushed images move in the v2 form this registry serves on /v2/ (the bridge's schema2 manifest
and config, same digests); v2 manifests move as stored. Per tag: each blob is HEAD-checked, then
mounted from a target repository already holding it, else uploaded; then the manifest is pushed by
tag and read back to check its digest. Target auth: none, Basic, or Bearer (the token dance),
whichever the target asks for. Exit status 3 when something could not move (see the report).

Examples:
  MIGRATE_PASSWORD=… legacy-registry migrate -c config.yml --to https://harbor.example.com --username bot --state migrate.state
  legacy-registry migrate -c config.yml --to http://127.0.0.1:5000 --namespace alice --tag-map latest=stable --dry-run`,
    )
    .action(async (opts: MigrateCliOptions) => {
      let config;
      try {
        config = loadFrom(opts);
      } catch (e) {
        if (e instanceof ConfigError) fail(e.message);
        throw e;
      }
      let url: URL;
      try {
        url = new URL(opts.to!);
        if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error('not http(s)');
      } catch {
        fail(`--to: not an http(s) URL: ${opts.to!.replace(/\/\/[^/@]*@/, '//…@')}`);
      }
      // an account in the URL would be printed in the report, the state file and errors (and sent,
      // by Node, to every URL resolved against it): it has its own options
      if (url.username || url.password)
        fail('--to: the URL holds an account: give it with --username (password in $MIGRATE_PASSWORD or --password-stdin) instead');
      if (!Number.isInteger(opts.concurrency) || opts.concurrency < 1 || opts.concurrency > 64) fail('--concurrency: 1 to 64');
      if (!Number.isFinite(opts.timeout) || opts.timeout <= 0 || opts.timeout > 86_400) fail('--timeout: seconds, more than 0 and at most 86400');
      const tagMap = new Map<string, string>();
      for (const m of opts.tagMap) {
        const [from, to, ...rest] = m.split('=');
        if (!from || !to || rest.length > 0 || !/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/.test(to))
          fail(`--tag-map: expected <from>=<to> with a valid tag, got ${m}`);
        tagMap.set(from, to);
      }
      let password = process.env.MIGRATE_PASSWORD;
      if (opts.passwordStdin) password = readFileSync(0, 'utf8').replace(/\r?\n$/, '');
      // the migration's modules only now (lazy: every other command, and --help, starts without them)
      const [{ openContent }, { nameFilter }, { runMigrate, StateFileError }, { TargetError, TargetRegistry }] = await Promise.all([
        import('../migrate/services.js'),
        import('../migrate/import.js'),
        import('../migrate/migrate.js'),
        import('../migrate/registry-client.js'),
      ]);
      const filter = nameFilter(opts.namespace, opts.repo);
      const target = opts.dryRun
        ? undefined
        : new TargetRegistry({
            url: url.href,
            ...(opts.username !== undefined ? { username: opts.username, password: password ?? '' } : {}),
            ...(opts.caCert ? { caFile: opts.caCert } : {}),
            ...(opts.insecure ? { insecure: true } : {}),
            maxSockets: opts.concurrency,
            timeoutMs: opts.timeout * 1000,
          });
      const content = await openContent(config);
      let report;
      try {
        report = await runMigrate(content, target, {
          concurrency: opts.concurrency,
          dryRun: opts.dryRun === true,
          progress: opts.progress,
          tagMap,
          ...(filter ? { filter } : {}),
          ...(opts.state ? { stateFile: opts.state } : {}),
        });
      } catch (e) {
        if (e instanceof TargetError && /ECONNREFUSED|ENOTFOUND|EAI_AGAIN|certificate|EPROTO|self.signed/i.test(`${e.code ?? ''} ${e.message}`))
          fail(`cannot reach ${url.href}: ${e.message}`);
        if (e instanceof TargetError || e instanceof StateFileError) fail(e.message);
        if (e instanceof Error && /ECONNREFUSED|ENOTFOUND|certificate|EPROTO|self.signed/i.test(`${(e as NodeJS.ErrnoException).code ?? ''} ${e.message}`))
          fail(`cannot reach ${url.href}: ${e.message}`);
        throw e;
      } finally {
        target?.close();
        await content.close();
      }
      process.stdout.write(report.text());
      if (opts.report) await writeFile(opts.report, JSON.stringify(report, null, 2) + '\n');
      process.exitCode = report.failed.length > 0 ? 3 : 0;
    });
}
