import { Command, Option } from 'commander';
import { ConfigError, loadConfigApart } from '../config/load.js';
import type { Role } from '../main.js';
import { loggerFor } from '../log/logger.js';

export function serveCommand(): Command {
  return new Command('serve')
    .description('start the server: index and registry in one process (default), or one of them')
    .argument('[config]', 'configuration file, as `registry serve <config.yml>` takes it (same as --config)')
    .addOption(new Option('--only <role>', 'run only one service').choices(['registry', 'index']))
    .option(
      '-c, --config <file>',
      'configuration file: flavored (config_sample.yml style) or distribution config.yml (version: 0.1); default: $DOCKER_REGISTRY_CONFIG, else $REGISTRY_CONFIGURATION_PATH, else config_sample.yml',
    )
    .option('-f, --flavor <name>', 'configuration flavor (default: $SETTINGS_FLAVOR, else dev)')
    .option('--host <host>', 'listen host (overrides REGISTRY_HOST and the file)')
    .option('-p, --port <port>', 'listen port (overrides REGISTRY_PORT and the file)', (v) => Number(v))
    .option('--storage-path <dir>', 'storage root (overrides STORAGE_PATH and the file)')
    .addHelpText(
      'after',
      `
Environment: DOCKER_REGISTRY_CONFIG, SETTINGS_FLAVOR, STORAGE_PATH, REGISTRY_HOST, REGISTRY_PORT,
REGISTRY_HTTP_ADDR (host:port), LOGLEVEL, STANDALONE, INDEX_ENDPOINT, … (see config_sample.yml).
With a distribution config.yml, every REGISTRY_<SECTION>_<KEY> variable overrides the file the way
distribution's does (e.g. REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY, REGISTRY_AUTH=htpasswd).
SIGTERM or SIGINT stops accepting connections and lets in-flight requests finish.`,
    )
    .action(async (file: string | undefined, opts: { only?: Role; config?: string; flavor?: string; host?: string; port?: number; storagePath?: string }) => {
      if (file && opts.config && file !== opts.config) {
        process.stderr.write('legacy-registry: give the configuration file once (argument or --config)\n');
        process.exit(2);
      }
      const configFile = opts.config ?? file;
      let config;
      try {
        config = loadConfigApart({
          ...(configFile ? { file: configFile } : {}),
          ...(opts.flavor ? { flavor: opts.flavor } : {}),
          overrides: {
            ...(opts.host ? { host: opts.host, http_addr: undefined } : {}),
            ...(opts.port !== undefined ? { port: opts.port } : {}),
            ...(opts.storagePath ? { storage_path: opts.storagePath } : {}),
            // `--only registry` is a registry without an index on this process: standalone unless
            // the file points it at an index (spec §4.1).
          },
        });
      } catch (e) {
        if (e instanceof ConfigError) {
          process.stderr.write(`legacy-registry: ${e.message}\n`);
          process.exit(2);
        }
        throw e;
      }
      if (opts.host || opts.port !== undefined) config = { ...config, http_addr: null };
      const log = loggerFor(config);
      let running;
      try {
        const { startServer } = await import('../main.js');
        running = await startServer(config, { role: opts.only ?? 'all', logger: log });
      } catch (e) {
        if (e instanceof ConfigError) {
          process.stderr.write(`legacy-registry: ${e.message}\n`);
          process.exit(2);
        }
        throw e;
      }
      let stopping = false;
      const stop = (signal: string): void => {
        if (stopping) {
          log.warn('second signal: exiting now', { signal });
          process.exit(1);
        }
        stopping = true;
        log.info('shutting down', { signal });
        running.close().then(
          () => {
            log.info('stopped');
            process.exit(0);
          },
          (e: unknown) => {
            log.error('shutdown failed', { err: e });
            process.exit(1);
          },
        );
      };
      process.on('SIGTERM', () => stop('SIGTERM'));
      process.on('SIGINT', () => stop('SIGINT'));
    });
}
