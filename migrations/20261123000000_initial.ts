import type { Knex } from 'knex';

/**
 * The index database: accounts, organizations, repositories and their image lists (spec v1-protocol §3),
 * collaborators, stars, comments and login throttling. Runs unchanged on SQLite and PostgreSQL.
 * Migrations are history: never edit one that has shipped, add a new file instead.
 */

function isPg(knex: Knex): boolean {
  return (knex.client as { config?: { client?: unknown } }).config?.client === 'pg';
}

export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('users', (t) => {
    t.increments('id').primary();
    t.string('username', 255).notNullable().unique('users_username_unique');
    // Stored lower-cased by the data layer, so this unique index is case-insensitive in effect.
    t.string('email', 320).notNullable().unique('users_email_unique');
    t.string('password_hash', 100).notNullable();
    // Spec §3.3: accounts start inactive.
    t.boolean('active').notNullable().defaultTo(false);
    t.boolean('admin').notNullable().defaultTo(false);
    t.timestamp('created_at').notNullable().defaultTo(knex.fn.now());
  });

  await knex.schema.createTable('organizations', (t) => {
    t.increments('id').primary();
    t.string('name', 255).notNullable().unique('organizations_name_unique');
    t.timestamp('created_at').notNullable().defaultTo(knex.fn.now());
  });

  await knex.schema.createTable('organization_members', (t) => {
    t.integer('org_id').unsigned().notNullable().references('id').inTable('organizations').onDelete('CASCADE');
    t.integer('user_id').unsigned().notNullable().references('id').inTable('users').onDelete('CASCADE');
    t.enu('role', ['owner', 'member']).notNullable().defaultTo('member');
    t.primary(['org_id', 'user_id']);
    t.index(['user_id'], 'organization_members_user_idx');
  });

  await knex.schema.createTable('repositories', (t) => {
    t.increments('id').primary();
    t.string('namespace', 255).notNullable();
    t.string('name', 64).notNullable();
    t.text('description').notNullable().defaultTo('');
    t.boolean('private').notNullable().defaultTo(false);
    t.integer('owner_id').unsigned().nullable().references('id').inTable('users').onDelete('SET NULL');
    // Spec §3.9 (I6): the first DELETE only marks the repository; the second purges it.
    t.timestamp('deleted_at').nullable();
    t.boolean('push_complete').notNullable().defaultTo(false);
    t.timestamp('created_at').notNullable().defaultTo(knex.fn.now());
    t.timestamp('updated_at').notNullable().defaultTo(knex.fn.now());
    t.integer('star_count').notNullable().defaultTo(0);
    t.unique(['namespace', 'name'], { indexName: 'repositories_namespace_name_unique' });
    t.index(['owner_id'], 'repositories_owner_idx');
    // Listing by popularity (search with an empty query).
    t.index(['star_count', 'namespace', 'name'], 'repositories_stars_idx');
  });

  await knex.schema.createTable('collaborators', (t) => {
    t.integer('repo_id').unsigned().notNullable().references('id').inTable('repositories').onDelete('CASCADE');
    t.integer('user_id').unsigned().notNullable().references('id').inTable('users').onDelete('CASCADE');
    t.enu('access', ['read', 'write']).notNullable().defaultTo('read');
    t.primary(['repo_id', 'user_id']);
    t.index(['user_id'], 'collaborators_user_idx');
  });

  await knex.schema.createTable('stars', (t) => {
    t.integer('repo_id').unsigned().notNullable().references('id').inTable('repositories').onDelete('CASCADE');
    t.integer('user_id').unsigned().notNullable().references('id').inTable('users').onDelete('CASCADE');
    t.timestamp('created_at').notNullable().defaultTo(knex.fn.now());
    t.primary(['repo_id', 'user_id']);
    t.index(['user_id'], 'stars_user_idx');
  });

  await knex.schema.createTable('comments', (t) => {
    t.increments('id').primary();
    t.integer('repo_id').unsigned().notNullable().references('id').inTable('repositories').onDelete('CASCADE');
    t.integer('user_id').unsigned().notNullable().references('id').inTable('users').onDelete('CASCADE');
    t.text('body').notNullable();
    t.timestamp('created_at').notNullable().defaultTo(knex.fn.now());
    t.index(['repo_id', 'id'], 'comments_repo_idx');
  });

  await knex.schema.createTable('repository_images', (t) => {
    t.integer('repo_id').unsigned().notNullable().references('id').inTable('repositories').onDelete('CASCADE');
    // 64 hex (16 for very old registries, spec §7.1). varchar, not char: char(64) would space-pad short ids.
    t.string('image_id', 64).notNullable();
    t.string('checksum', 255).nullable();
    t.string('tag', 128).nullable();
    t.integer('position').notNullable();
    t.primary(['repo_id', 'image_id']);
    t.index(['repo_id', 'position'], 'repository_images_order_idx');
    // I11 layer access: which repositories hold an image.
    t.index(['image_id'], 'repository_images_image_idx');
  });

  await knex.schema.createTable('login_failures', (t) => {
    t.string('username', 255).primary();
    t.integer('failures').notNullable().defaultTo(0);
    t.timestamp('window_start').notNullable();
    t.timestamp('locked_until').nullable();
  });

  // star_count follows the stars table in the database itself, so every path that adds or removes a star
  // (including cascades when a user is deleted) keeps it right.
  if (isPg(knex)) {
    await knex.raw(`
      create function stars_count_sync() returns trigger language plpgsql set search_path from current as $$
      begin
        if tg_op = 'INSERT' then
          update repositories set star_count = star_count + 1 where id = new.repo_id;
          return new;
        end if;
        update repositories set star_count = star_count - 1 where id = old.repo_id;
        return old;
      end $$`);
    await knex.raw(
      'create trigger stars_count_sync after insert or delete on stars for each row execute function stars_count_sync()',
    );
  } else {
    await knex.raw(`
      create trigger stars_count_insert after insert on stars begin
        update repositories set star_count = star_count + 1 where id = new.repo_id;
      end`);
    await knex.raw(`
      create trigger stars_count_delete after delete on stars begin
        update repositories set star_count = star_count - 1 where id = old.repo_id;
      end`);
  }
}

export async function down(knex: Knex): Promise<void> {
  if (isPg(knex)) {
    await knex.raw('drop trigger if exists stars_count_sync on stars');
    await knex.raw('drop function if exists stars_count_sync()');
  } else {
    await knex.raw('drop trigger if exists stars_count_insert');
    await knex.raw('drop trigger if exists stars_count_delete');
  }
  for (const table of [
    'login_failures',
    'repository_images',
    'comments',
    'stars',
    'collaborators',
    'repositories',
    'organization_members',
    'organizations',
    'users',
  ]) {
    await knex.schema.dropTableIfExists(table);
  }
}
