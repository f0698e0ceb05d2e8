import { Command, Option } from 'commander';
import { ConfigError, loadConfig } from '../config/load.js';
import { startServer, type Role } from '../main.js';
import { createLogger, toLevel } from '../log/logger.js';

export function serveCommand(): Command {
  return new Command('serve')
    .description('start the server: index and registry in one process (default), or one of them')
    .addOption(new Option('--only <role>', 'run only one service').choices(['registry', 'index']))
    .option('-c, --config <file>', 'configuration file (default: $DOCKER_REGISTRY_CONFIG, else config_sample.yml)')
    .option('-f, --flavor <name>', 'configuration flavor (default: $SETTINGS_FLAVOR, else dev)')
    .option('--host <host>', 'listen host (overrides REGISTRY_HOST and the file)')
    .option('-p, --port <port>', 'listen port (overrides REGISTRY_PORT and the file)', (v) => Number(v))
    .option('--storage-path <dir>', 'storage root (overrides STORAGE_PATH and the file)')
    .addHelpText(
      'after',
      `
Environment: DOCKER_REGISTRY_CONFIG, SETTINGS_FLAVOR, STORAGE_PATH, REGISTRY_HOST, REGISTRY_PORT,
REGISTRY_HTTP_ADDR (host:port), LOGLEVEL, STANDALONE, INDEX_ENDPOINT, … (see config_sample.yml).
SIGTERM or SIGINT stops accepting connections and lets in-flight requests finish.`,
    )
    .action(async (opts: { only?: Role; config?: string; flavor?: string; host?: string; port?: number; storagePath?: string }) => {
      let config;
      try {
        config = loadConfig({
          ...(opts.config ? { file: opts.config } : {}),
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
      const log = createLogger(toLevel(config.loglevel));
      const running = await startServer(config, { role: opts.only ?? 'all', logger: log });
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
