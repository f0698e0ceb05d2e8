import { Command, Option } from 'commander';
import type { Knex } from 'knex';
import { fail, withConfigOptions, withDb, type ConfigOptions as Common } from './common.js';

/** The index queries, loaded when a command runs (not for --help or another command). */
async function queries() {
  const [users, organizations, repositories, errors] = await Promise.all([
    import('../db/users.js'),
    import('../db/organizations.js'),
    import('../db/repositories.js'),
    import('../db/errors.js'),
  ]);
  return { ...users, ...organizations, ...repositories, ...errors };
}
import { parseRepoName } from '../content/names.js';

async function user(db: Knex, name: string) {
  const { findUserByName } = await queries();
  return (await findUserByName(db, name)) ?? fail(`no such user: ${name}`);
}

const common = withConfigOptions;

/** Organizations: namespaces whose members may push (owners may also delete). */
export function orgCommand(): Command {
  const org = new Command('org').description('manage organizations (shared namespaces)');
  common(org.command('add <name> <owner>'))
    .description('create an organization with a first owner')
    .action(async (name: string, owner: string, opts: Common) => {
      if (!/^[a-z0-9_]{2,30}$/.test(name)) fail('organization name: 2 to 30 characters of a-z, 0-9 and _');
      await withDb(opts, async (db) => {
        const { addMember, saveOrganization, DbConflictError } = await queries();
        const u = await user(db, owner);
        let o;
        try {
          o = await saveOrganization(db, { name });
        } catch (e) {
          if (e instanceof DbConflictError) fail(`the name ${name} is taken (users and organizations share one name space)`);
          throw e;
        }
        if (!o) fail(`could not create ${name}`);
        await addMember(db, o.id, u.id, 'owner');
      });
      process.stdout.write(`created organization ${name}, owner ${owner}\n`);
    });
  common(org.command('rm <name>'))
    .description('delete an organization and its memberships (its repositories stay; the name is retired)')
    .action(async (name: string, opts: Common) => {
      await withDb(opts, async (db) => {
        const { findOrganizationByName, removeOrganization } = await queries();
        const o = (await findOrganizationByName(db, name)) ?? fail(`no such organization: ${name}`);
        await removeOrganization(db, o.id);
      });
      process.stdout.write(`removed organization ${name}\n`);
    });
  common(org.command('member <org> <username>'))
    .description('add (or with --remove, remove) a member')
    .option('--owner', 'as an owner (may delete repositories)')
    .option('--remove', 'remove the member')
    .action(async (name: string, username: string, opts: Common & { owner?: boolean; remove?: boolean }) => {
      await withDb(opts, async (db) => {
        const { addMember, changeMemberKeepingOwner, findMemberRole, findOrganizationByName, removeMember } = await queries();
        const o = (await findOrganizationByName(db, name)) ?? fail(`no such organization: ${name}`);
        const u = await user(db, username);
        const change = opts.remove ? 'remove' : opts.owner ? 'owner' : 'member';
        // an owner removed or made a member: not the last one (as the web UI's member forms); before
        // 2026-12-07 the CLI left the organization without an owner
        if (change !== 'owner' && (await findMemberRole(db, o.id, u.id)) === 'owner') {
          if ((await changeMemberKeepingOwner(db, o.id, u.id, change)) === 'last-owner')
            fail(
              `${username} is the only owner of ${name}: make another member an owner first (org member ${name} <username> --owner), or delete it (org rm ${name})`,
            );
        } else if (change === 'remove') {
          await removeMember(db, o.id, u.id);
        } else {
          await addMember(db, o.id, u.id, change);
        }
      });
      process.stdout.write(`${opts.remove ? 'removed' : 'added'} ${username} ${opts.remove ? 'from' : 'to'} ${name}\n`);
    });
  return org;
}

/** Repository settings an operator needs without a UI: collaborators and the private flag. */
export function repoCommand(): Command {
  const repo = new Command('repo').description('manage repositories in the index');
  common(repo.command('collaborator <repository> <username>'))
    .description('grant (or with --remove, revoke) access to a repository for a user')
    .addOption(new Option('--access <access>', 'read or write').choices(['read', 'write']).default('read'))
    .option('--remove', 'revoke')
    .action(async (repository: string, username: string, opts: Common & { access: 'read' | 'write'; remove?: boolean }) => {
      const name = parseRepoName(repository) ?? fail(`invalid repository name: ${repository}`);
      await withDb(opts, async (db) => {
        const { addCollaborator, findRepository, removeCollaborator } = await queries();
        const r = (await findRepository(db, name.namespace, name.repository)) ?? fail(`no such repository: ${name.full}`);
        const u = await user(db, username);
        if (opts.remove) await removeCollaborator(db, r.id, u.id);
        else await addCollaborator(db, r.id, u.id, opts.access);
      });
      process.stdout.write(opts.remove ? `revoked ${username} on ${name.full}\n` : `${username} may ${opts.access} ${name.full}\n`);
    });
  common(repo.command('private <repository>'))
    .description('make a repository private (or with --off, public); creates it when absent')
    .option('--off', 'make it public')
    .action(async (repository: string, opts: Common & { off?: boolean }) => {
      const name = parseRepoName(repository) ?? fail(`invalid repository name: ${repository}`);
      await withDb(opts, async (db) => {
        const { saveRepository } = await queries();
        await saveRepository(db, { namespace: name.namespace, name: name.repository, private: !opts.off });
      });
      process.stdout.write(`${name.full} is ${opts.off ? 'public' : 'private'}\n`);
    });
  return repo;
}
