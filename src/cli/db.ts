import { Command } from 'commander';
import { loadConfig } from '../config/load.js';
import { closeDb, createDb, migrateLatest } from '../db/knex.js';

export function dbCommand(): Command {
  const db = new Command('db').description('index database maintenance');
  db.command('migrate')
    .description('apply pending migrations to the index database (serve does this at start too)')
    .option('-c, --config <file>', 'configuration file')
    .option('-f, --flavor <name>', 'configuration flavor')
    .action(async (opts: { config?: string; flavor?: string }) => {
      const config = loadConfig({ ...(opts.config ? { file: opts.config } : {}), ...(opts.flavor ? { flavor: opts.flavor } : {}) });
      const knex = createDb(config.sqlalchemy_index_database, config.storage_path);
      try {
        const applied = await migrateLatest(knex);
        process.stdout.write(applied.length ? `applied: ${applied.join(', ')}\n` : 'already up to date\n');
      } finally {
        await closeDb(knex);
      }
    });
  return db;
}
