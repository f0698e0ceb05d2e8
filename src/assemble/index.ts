import type { Knex } from 'knex';
import { createDb, migrateLatest } from '../db/knex.js';
import { warmSearch } from '../db/search.js';
import { tokenSecret } from '../db/settings.js';
import { V1TokenSigner } from '../auth/v1-token.js';
import { IndexService } from '../index/service.js';
import { loadSigningKey, localKeys, V2TokenIssuer, V2TokenVerifier } from '../auth/v2-jwt.js';
import type Koa from 'koa';
import { indexRouter } from '../index/routes.js';
import { tokenRouter } from '../index/token-routes.js';
import { v2BridgeRouter } from '../index/v2-bridge-routes.js';
import { webhookRouter } from '../webhooks/routes.js';
import type { RepoName } from '../content/names.js';
import { isRegistryError } from '../errors/index.js';
import type { StorageServices } from './storage.js';
import type { EventServices } from './events.js';
import type { Site } from './site.js';

/** The index service of this process: its database, accounts, v1 tokens and v2 Bearer tokens. */
export interface IndexServices {
  readonly db: Knex;
  readonly index: IndexService;
  /** Issues v2 Bearer tokens (the token service of §4). */
  readonly issuer: V2TokenIssuer;
  /** Verifies the v2 Bearer tokens this index issued. */
  readonly v2Tokens: V2TokenVerifier;
}

/** The index (when `site.runIndex`): database migrated, search warming in the background, token keys loaded. */
export async function assembleIndex(site: Site): Promise<IndexServices | undefined> {
  const { config, log } = site;
  if (!site.runIndex) return undefined;
  const db = createDb(config.sqlalchemy_index_database, config.storage_path);
  const applied = await migrateLatest(db);
  if (applied.length > 0) log.info('index database migrated', { applied });
  // the in-memory search of a SQLite index loads in the background (seconds at 100k repositories)
  const started = Date.now();
  warmSearch(db).then(
    (done) => done && log.info('search index loaded', { ms: Date.now() - started }),
    (e: unknown) => log.warn('search index not loaded yet (the first search will)', { err: String(e) }),
  );
  const secret = await tokenSecret(db, config.token_secret);
  const index = new IndexService(db, new V1TokenSigner(secret, config.token_ttl), {
    signup: config.signup,
    signupActive: config.signup_active,
    bcryptCost: config.bcrypt_cost,
    log,
    mirroredNamespaces: new Set((config.mirror?.upstreams ?? []).map((u) => u.prefix.split('/')[0]!).filter((ns) => ns !== '')),
  });
  const key = await loadSigningKey(db, config.token_signing_key);
  const issuer = new V2TokenIssuer(key, { issuer: config.token_issuer, ttl: config.v2_token_ttl });
  return { db, index, issuer, v2Tokens: new V2TokenVerifier(localKeys(key), config.token_issuer, true) };
}

/** The token service answers before /v2/ (its realm path is under /v2/ and needs no token). */
export function mountTokenService(app: Koa, site: Site, services: IndexServices | undefined): void {
  if (services) app.use(tokenRouter(site.effective, services.index, services.issuer).routes());
}

/**
 * The index's routes (spec §3), its v2 bridge notices and the webhooks API. The index goes before
 * the registry: on a path both serve (DELETE repository, properties) it answers requests with Basic
 * credentials and leaves those with a Token to the registry.
 */
export function mountIndexRoutes(app: Koa, site: Site, services: IndexServices | undefined, store: StorageServices, events: EventServices): void {
  if (!services) return;
  const { role, effective, log } = site;
  const { index, db, v2Tokens } = services;
  const { repos, repoLock } = store;
  const removeContent =
    role === 'all'
      ? async (name: RepoName): Promise<void> => {
          await repoLock
            .run(name.full, () => repos.deleteRepository(name))
            .catch((e: unknown) => {
              if (!(isRegistryError(e) && e.code === 'REPOSITORY_NOT_FOUND')) throw e;
            });
        }
      : undefined;
  const hooks = events.webhooks;
  // a split registry's v1 tag pushes (POST /_index/v1/pushed) fire this index's webhooks
  const onV1Push = hooks
    ? (name: RepoName, tag: string, chain: readonly string[], pusher: string | null, noticeId?: string) => hooks.pushed(name, tag, chain, pusher, noticeId)
    : undefined;
  app.use(indexRouter(effective, index, { ping: role === 'index', ...(removeContent ? { removeContent } : {}), ...(onV1Push ? { onV1Push } : {}) }).routes());
  const onPushed = hooks
    ? async (repo: RepoName, tag: string, ids: readonly string[], account: string | null): Promise<void> => {
        await hooks
          .pushed(repo, tag, ids, account)
          .catch((e: unknown) => log.warn('webhooks not queued for a v2 push', { repository: repo.full, tag, err: String(e) }));
      }
    : undefined;
  app.use(v2BridgeRouter(db, index, v2Tokens, onPushed).routes());
  // webhooks (issue 15): the owner's JSON API and Hub's callback_url, before the web UI's /u/ pages
  if (hooks) app.use(webhookRouter(index, hooks).routes());
}
