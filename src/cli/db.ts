import { Command } from 'commander';
import { loadFrom, withConfigOptions, type ConfigOptions } from './common.js';

export function dbCommand(): Command {
  const db = new Command('db').description('index database maintenance');
  withConfigOptions(db.command('migrate'))
    .description('apply pending migrations to the index database (serve does this at start too)')
    .action(async (opts: ConfigOptions) => {
      const config = loadFrom(opts);
      const { closeDb, createDb, migrateLatest } = await import('../db/knex.js');
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
