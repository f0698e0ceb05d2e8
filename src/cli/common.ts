import type { Command } from 'commander';
import type { Knex } from 'knex';
import { loadConfig } from '../config/load.js';
import type { Config } from '../config/schema.js';

/** The options every command that reads the configuration takes. */
export interface ConfigOptions {
  config?: string;
  flavor?: string;
}

export function withConfigOptions(c: Command): Command {
  return c
    .option('-c, --config <file>', 'configuration file (default: $DOCKER_REGISTRY_CONFIG, else $REGISTRY_CONFIGURATION_PATH, else config_sample.yml)')
    .option('-f, --flavor <name>', 'configuration flavor (default: $SETTINGS_FLAVOR, else dev)');
}

export function loadFrom(opts: ConfigOptions): Config {
  return loadConfig({ ...(opts.config ? { file: opts.config } : {}), ...(opts.flavor ? { flavor: opts.flavor } : {}) });
}

/** Open the index database of the configuration, migrated, for the length of fn. */
export async function withDb<T>(opts: ConfigOptions, fn: (db: Knex, config: Config) => Promise<T>): Promise<T> {
  const config = loadFrom(opts);
  const { closeDb, createDb, migrateLatest } = await import('../db/knex.js');
  const db = createDb(config.sqlalchemy_index_database, config.storage_path);
  try {
    await migrateLatest(db);
    return await fn(db, config);
  } finally {
    await closeDb(db);
  }
}

/** An operator error: message on stderr, exit 1. */
export function fail(message: string): never {
  process.stderr.write(`legacy-registry: ${message}\n`);
  process.exit(1);
}
