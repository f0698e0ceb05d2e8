import { readFileSync } from 'node:fs';
import { Command } from 'commander';
import { fail, withConfigOptions, withDb, type ConfigOptions as Common } from './common.js';

/** The account queries, loaded when a command runs (not for --help or another command). */
const usersDb = () => import('../db/users.js');

/** Read a password from the option, or from the first line of stdin (so it stays out of `ps`). */
async function password(given: string | undefined): Promise<string> {
  if (given !== undefined) return given;
  if (process.stdin.isTTY) fail('give --password, or pipe the password on stdin');
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8').split(/\r?\n/)[0] ?? '';
}

const USERNAME = /^[a-z0-9_]{4,30}$/;

/**
 * Parse an htpasswd file: bcrypt lines (`user:$2y$…`) are kept, other hash kinds are reported and
 * skipped (they cannot be verified with bcrypt).
 */
export function parseHtpasswd(text: string): { users: { username: string; hash: string }[]; skipped: string[] } {
  const users: { username: string; hash: string }[] = [];
  const skipped: string[] = [];
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const i = line.indexOf(':');
    const username = line.slice(0, i);
    const hash = line.slice(i + 1);
    if (i <= 0 || !/^\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}$/.test(hash)) {
      skipped.push(`${username || line}: not a bcrypt entry`);
      continue;
    }
    if (!USERNAME.test(username)) {
      skipped.push(`${username}: not a valid account name (4-30 of a-z 0-9 _)`);
      continue;
    }
    users.push({ username, hash: hash.replace(/^\$2y\$/, '$2b$') });
  }
  return { users, skipped };
}

export function userCommand(): Command {
  const user = new Command('user').description('manage index accounts');
  const common = withConfigOptions;

  common(user.command('add <username> <email>'))
    .description('create an account (active); the password comes from --password or stdin')
    .option('-p, --password <password>', 'password (else read from stdin)')
    .option('--admin', 'administrator: may write library/ and any repository')
    .option('--inactive', 'create it inactive (logins answer 403 until activated)')
    .action(async (username: string, email: string, opts: Common & { password?: string; admin?: boolean; inactive?: boolean }) => {
      if (!USERNAME.test(username)) fail('username: 4 to 30 characters of a-z, 0-9 and _');
      const pw = await password(opts.password);
      if (pw.length < 5) fail('password: at least 5 characters');
      await withDb(opts, async (db, { bcrypt_cost: cost }) => {
        const [{ saveUser }, { DbConflictError }] = await Promise.all([usersDb(), import('../db/errors.js')]);
        try {
          await saveUser(db, { username, email, password: pw, active: !opts.inactive, admin: !!opts.admin }, { cost });
        } catch (e) {
          if (e instanceof DbConflictError) fail(`${e.field} already exists: ${e.value}`);
          throw e;
        }
      });
      process.stdout.write(`created ${username}${opts.admin ? ' (admin)' : ''}\n`);
    });

  common(user.command('passwd <username>'))
    .description('set a password (from --password or stdin)')
    .option('-p, --password <password>', 'password (else read from stdin)')
    .action(async (username: string, opts: Common & { password?: string }) => {
      const pw = await password(opts.password);
      if (pw.length < 5) fail('password: at least 5 characters');
      await withDb(opts, async (db, { bcrypt_cost: cost }) => {
        const { findUserByName, setPassword } = await usersDb();
        const u = await findUserByName(db, username);
        if (!u) fail(`no such user: ${username}`);
        await setPassword(db, u.id, pw, { cost });
      });
      process.stdout.write(`password set for ${username}\n`);
    });

  common(user.command('activate <username>'))
    .description('activate (or with --off, deactivate) an account')
    .option('--off', 'deactivate')
    .action(async (username: string, opts: Common & { off?: boolean }) => {
      await withDb(opts, async (db) => {
        const { findUserByName, setActive } = await usersDb();
        const u = await findUserByName(db, username);
        if (!u) fail(`no such user: ${username}`);
        await setActive(db, u.id, !opts.off);
      });
      process.stdout.write(`${username} ${opts.off ? 'deactivated' : 'activated'}\n`);
    });

  common(user.command('rm <username>'))
    .description('delete an account (refused while it is the only owner of an organization)')
    .option('--orphan-organizations', 'delete it even when it is the only owner of organizations: they are left without an owner (admins only manage them)')
    .action(async (username: string, opts: Common & { orphanOrganizations?: boolean }) => {
      await withDb(opts, async (db) => {
        const [{ findUserByName, removeUser }, { DbSoleOwnerError }] = await Promise.all([usersDb(), import('../db/errors.js')]);
        const u = await findUserByName(db, username);
        if (!u) fail(`no such user: ${username}`);
        try {
          await removeUser(db, u.id, { orphanOrganizations: !!opts.orphanOrganizations });
        } catch (e) {
          if (!(e instanceof DbSoleOwnerError)) throw e;
          const orgs = e.organizations.join(', ');
          fail(
            `${username} is the only owner of ${e.organizations.length === 1 ? 'the organization' : 'the organizations'} ${orgs}: ` +
              'make another member an owner (legacy-registry org member <org> <username> --owner) or delete the organization ' +
              '(legacy-registry org rm <org>) first, or give --orphan-organizations to leave it without an owner. Nothing was deleted.',
          );
        }
      });
      process.stdout.write(`removed ${username}\n`);
    });

  common(user.command('list'))
    .description('list accounts')
    .action(async (opts: Common) => {
      await withDb(opts, async (db) => {
        const { listUsers } = await usersDb();
        for (let page = 1; ; page++) {
          const res = await listUsers(db, { page, pageSize: 100 });
          for (const u of res.items) {
            process.stdout.write(`${u.username}\t${u.email}\t${u.active ? 'active' : 'inactive'}${u.admin ? '\tadmin' : ''}\n`);
          }
          if (page * 100 >= res.total) break;
        }
      });
    });

  common(user.command('import-htpasswd <file>'))
    .description('create accounts from an htpasswd file (bcrypt entries; existing names are updated)')
    .option('--domain <domain>', 'e-mail domain for the created accounts', 'localhost.localdomain')
    .action(async (file: string, opts: Common & { domain: string }) => {
      const { users, skipped } = parseHtpasswd(readFileSync(file, 'utf8'));
      for (const s of skipped) process.stderr.write(`skipped ${s}\n`);
      let created = 0;
      let updated = 0;
      await withDb(opts, async (db) => {
        const { findUserByName, saveUser } = await usersDb();
        for (const u of users) {
          const existing = await findUserByName(db, u.username);
          if (existing) {
            await db('users').where({ id: existing.id }).update({ password_hash: u.hash });
            updated++;
          } else {
            await saveUser(db, { username: u.username, email: `${u.username}@${opts.domain}`, password: 'placeholder', active: true }, { cost: 4 });
            await db('users').where({ username: u.username }).update({ password_hash: u.hash });
            created++;
          }
        }
      });
      process.stdout.write(`imported ${users.length} (${created} created, ${updated} updated), skipped ${skipped.length}\n`);
    });
  return user;
}
