import { Command } from 'commander';
import { ConfigError, loadConfig, redact } from '../config/load.js';

export function configCheckCommand(): Command {
  return new Command('config-check')
    .description('load and validate the configuration, print the effective values (secrets redacted)')
    .option('-c, --config <file>', 'configuration file (default: $DOCKER_REGISTRY_CONFIG, else config_sample.yml)')
    .option('-f, --flavor <name>', 'configuration flavor (default: $SETTINGS_FLAVOR, else dev)')
    .action((opts: { config?: string; flavor?: string }) => {
      try {
        const c = loadConfig({ ...(opts.config ? { file: opts.config } : {}), ...(opts.flavor ? { flavor: opts.flavor } : {}) });
        process.stdout.write(JSON.stringify(redact(c), null, 2) + '\n');
      } catch (e) {
        if (e instanceof ConfigError) {
          process.stderr.write(`legacy-registry: ${e.message}\n`);
          process.exit(2);
        }
        throw e;
      }
    });
}
