import { Command } from 'commander';
import { ConfigError, loadConfig, redact } from '../config/load.js';

export function configCheckCommand(): Command {
  return new Command('config-check')
    .description('load and validate the configuration, print the effective values (secrets redacted)')
    .argument('[config]', 'configuration file (same as --config)')
    .option(
      '-c, --config <file>',
      'configuration file: flavored or distribution config.yml (default: $DOCKER_REGISTRY_CONFIG, else $REGISTRY_CONFIGURATION_PATH, else config_sample.yml)',
    )
    .option('-f, --flavor <name>', 'configuration flavor (default: $SETTINGS_FLAVOR, else dev)')
    .action((file: string | undefined, opts: { config?: string; flavor?: string }) => {
      try {
        const f = opts.config ?? file;
        const c = loadConfig({ ...(f ? { file: f } : {}), ...(opts.flavor ? { flavor: opts.flavor } : {}) });
        for (const w of c.warnings) process.stderr.write(`warning: ${w}\n`);
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
