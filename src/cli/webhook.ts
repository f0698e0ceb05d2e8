import { Command } from 'commander';
import type { Knex } from 'knex';
import { fail, withConfigOptions, withDb, type ConfigOptions as Common } from './common.js';
import type { Repository } from '../db/repositories.js';
import { parseRepoName } from '../content/names.js';
import { RegistryError } from '../errors/index.js';
import { createLogger } from '../log/logger.js';
import { defaultAuthority } from '../config/advertise.js';

/** The index queries and the webhook service, loaded when a command runs (not for --help or another command). */
async function queries() {
  const [repositories, rows, store, routes, service, outgoing] = await Promise.all([
    import('../db/repositories.js'),
    import('../db/rows.js'),
    import('../webhooks/store.js'),
    import('../webhooks/routes.js'),
    import('../webhooks/service.js'),
    import('../webhooks/outgoing.js'),
  ]);
  return { ...repositories, ...rows, ...store, ...routes, ...service, ...outgoing };
}

async function findRepo(db: Knex, name: string): Promise<Repository> {
  const n = parseRepoName(name) ?? fail(`invalid repository name: ${name}`);
  const { findRepository } = await queries();
  return (await findRepository(db, n.namespace, n.repository)) ?? fail(`no such repository: ${n.full}`);
}

async function hookNamed(db: Knex, repo: Repository, name: string) {
  const { listHooks } = await queries();
  return (await listHooks(db, repo.id)).find((h) => h.name === name) ?? fail(`no webhook named ${name} on ${repo.fullName}`);
}

const iso = (ms: number | null): string => (ms === null ? '-' : new Date(ms).toISOString());

/** Repository webhooks from the command line (the same rules as the owner's JSON API). */
export function webhookCommand(): Command {
  const cmd = new Command('webhook').description('manage repository webhooks (Docker Hub payload after each tag push) and read their deliveries');
  withConfigOptions(cmd.command('list <repository>'))
    .description('list the webhooks of a repository (name, URL, signed, chained)')
    .action(async (repository: string, opts: Common) => {
      await withDb(opts, async (db) => {
        const { listHooks } = await queries();
        const r = await findRepo(db, repository);
        for (const h of await listHooks(db, r.id)) process.stdout.write(`${h.name}\t${h.url}${h.hasSecret ? '\tsigned' : ''}${h.chained ? '\tchained' : ''}\n`);
      });
    });
  withConfigOptions(cmd.command('add <repository> <name> <url>'))
    .description('add a webhook to a repository')
    .option('--secret <secret>', 'sign each delivery: X-Registry-Signature-256: sha256=<HMAC-SHA256 of the body>')
    .option('--chained', "fire only after the previous hook's success callback (Hub's chains)")
    .action(async (repository: string, name: string, url: string, opts: Common & { secret?: string; chained?: boolean }) => {
      await withDb(opts, async (db, config) => {
        const { countHooks, createHook, MAX_HOOKS_PER_REPOSITORY, validHook, isUniqueViolation, DestinationPolicy } = await queries();
        const r = await findRepo(db, repository);
        let h;
        try {
          h = validHook({ name, url, secret: opts.secret, chained: opts.chained === true }, new DestinationPolicy(config.webhook_allowed_networks));
        } catch (e) {
          fail(e instanceof RegistryError ? e.message : String(e));
        }
        if ((await countHooks(db, r.id)) >= MAX_HOOKS_PER_REPOSITORY) fail(`at most ${MAX_HOOKS_PER_REPOSITORY} webhooks per repository`);
        try {
          await createHook(db, r.id, h);
        } catch (e) {
          if (isUniqueViolation(e)) fail(`${r.fullName} already has a webhook named ${name}`);
          throw e;
        }
        process.stdout.write(`added webhook ${name} to ${r.fullName}\n`);
      });
    });
  withConfigOptions(cmd.command('remove <repository> <name>'))
    .description('remove a webhook (and its delivery history)')
    .action(async (repository: string, name: string, opts: Common) => {
      await withDb(opts, async (db) => {
        const { deleteHook } = await queries();
        const r = await findRepo(db, repository);
        await deleteHook(db, r.id, (await hookNamed(db, r, name)).id);
        process.stdout.write(`removed webhook ${name} from ${r.fullName}\n`);
      });
    });
  withConfigOptions(cmd.command('deliveries <repository> <name>'))
    .description('the newest deliveries of a webhook: id, queued at, event, tag, state, attempts, last status, callback')
    .option('-n <count>', 'how many (at most 200)', '20')
    .action(async (repository: string, name: string, opts: Common & { n: string }) => {
      await withDb(opts, async (db) => {
        const { listDeliveries } = await queries();
        const r = await findRepo(db, repository);
        const h = await hookNamed(db, r, name);
        for (const d of await listDeliveries(db, h.id, Math.min(200, Math.max(1, Number(opts.n) || 20)))) {
          const last = d.attemptsLog[d.attemptsLog.length - 1];
          process.stdout.write(
            `${d.id}\t${iso(d.createdAt)}\t${d.event}\t${d.tag ?? '-'}\t${d.state}\t${d.attempts}\t${last ? (last.status ?? last.error) : '-'}\t${d.callback?.state ?? '-'}\n`,
          );
        }
      });
    });
  withConfigOptions(cmd.command('test <repository> <name>'))
    .description('queue a "test" delivery (a running index node sends it)')
    .action(async (repository: string, name: string, opts: Common) => {
      await withDb(opts, async (db, config) => {
        const { Webhooks, webhookOptions } = await queries();
        const r = await findRepo(db, repository);
        const h = await hookNamed(db, r, name);
        const hooks = new Webhooks(
          db,
          webhookOptions(config, { concurrency: 1, userAgent: 'legacy-registry (webhooks)' }),
          () => `${config.tls_certificate ? 'https' : 'http'}://${defaultAuthority(config, config.port)}`,
          createLogger('silent'),
        );
        const id = await hooks.test(h, r, 'cli');
        if (id === undefined) fail('too many deliveries of this webhook are still unfinished (tests or pushes): retry later');
        process.stdout.write(`queued test delivery ${id}\n`);
      });
    });
  withConfigOptions(cmd.command('status'))
    .description('deliveries in the outbox by state (waiting, pending, sending, delivered, failed, skipped)')
    .action(async (opts: Common) => {
      await withDb(opts, async (db) => {
        const { deliveryCounts } = await queries();
        const counts = await deliveryCounts(db);
        for (const s of ['waiting', 'pending', 'sending', 'delivered', 'failed', 'skipped']) process.stdout.write(`${s}\t${counts[s] ?? 0}\n`);
      });
    });
  return cmd;
}
