import type Koa from 'koa';
import type { Context } from 'koa';
import type { RegistryAuth } from '../auth/registry-auth.js';
import type { HtpasswdGate } from '../auth/htpasswd.js';
import { parseRepoName, type RepoName } from '../content/names.js';
import { answerPrefix } from '../util/fetch-body.js';
import { IndexJournal, NoticeRefused, refusedForGood, V1_PENDING_ROOT, type V1PushNotice } from '../content/index-journal.js';
import { INDEX_CHECKSUM_PATH, INDEX_V1_PUSHED_PATH } from '../index/routes.js';
import { registryRouter, type V1IndexHook } from '../registry/routes.js';
import { standaloneIndexRouter } from '../registry/standalone-index.js';
import { v1Events } from '../notifications/v1-events.js';
import { v1Mirror, type V1MirrorUsage } from '../mirror/v1-mirror.js';
import type { StorageServices } from './storage.js';
import type { IndexServices } from './index.js';
import type { EventServices } from './events.js';
import type { V2Services } from './v2.js';
import type { Site } from './site.js';

/**
 * A split registry's notice of a v1 tag push to its index (`POST /_index/v1/pushed`, with the push's
 * write token): the index fires the repository's webhooks and answers the pusher's account. Sent
 * again at once only when the index could not have got it (connection refused); `notice` is its id
 * in the registry's journal, replayed later until the index answers: the index fires it at most once.
 */
export async function tellIndexOfV1Push(
  indexEndpoint: string,
  authorization: string,
  repo: RepoName,
  tag: string,
  chain: readonly string[],
  notice?: string,
): Promise<string | null> {
  const body = JSON.stringify({ name: repo.full, tag, images: chain, ...(notice ? { notice } : {}) });
  for (let attempt = 1; ; attempt++) {
    let r: Response;
    try {
      r = await fetch(`${indexEndpoint}${INDEX_V1_PUSHED_PATH}`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', Authorization: authorization },
        body,
        signal: AbortSignal.timeout(15000),
      });
    } catch (e) {
      const code = ((e as Error).cause as NodeJS.ErrnoException | undefined)?.code;
      if (attempt < 4 && code === 'ECONNREFUSED') {
        await new Promise((res) => setTimeout(res, 500 * 2 ** attempt));
        continue;
      }
      throw e;
    }
    if (r.status !== 200) {
      const why = `the index answered ${r.status}: ${await answerPrefix(r)}`;
      throw refusedForGood(r.status) ? new NoticeRefused(why) : new Error(why);
    }
    const answer = (await r.json().catch(() => ({}))) as { pusher?: unknown };
    return typeof answer.pusher === 'string' ? answer.pusher : null;
  }
}

/** The index learns each verified v1 checksum: directly in one process, else over HTTP. */
function checksumHook(site: Site, store: StorageServices, services: IndexServices | undefined): V1IndexHook | undefined {
  const { config } = site;
  if (!store.images.scoped) return undefined;
  const learn = services?.index;
  if (learn) return { checksum: async (repo, id, checksum, authorization) => void (await learn.learnChecksum(authorization, repo, id, checksum)) };
  if (!config.index_endpoint) return undefined;
  return {
    checksum: async (repo, id, checksum, authorization) => {
      const r = await fetch(`${config.index_endpoint}${INDEX_CHECKSUM_PATH}`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', Authorization: authorization },
        body: JSON.stringify({ name: repo.full, id, checksum }),
        signal: AbortSignal.timeout(15000),
      });
      if (r.status !== 204) throw new Error(`the index answered ${r.status}: ${await answerPrefix(r)}`);
      await r.body?.cancel();
    },
  };
}

/**
 * The v1 registry service (spec §2) on a registry node: v1 mirroring (issue 13), events of v1
 * pushes (webhooks, notifications), the registry routes, and on a standalone registry the
 * stand-in index.
 */
export function mountRegistry(
  app: Koa,
  site: Site,
  store: StorageServices,
  services: IndexServices | undefined,
  events: EventServices,
  v2: V2Services,
  auth: { readonly registry: RegistryAuth; readonly gate: HtpasswdGate | undefined },
): { stopTimers(): void; readonly v1Mirror: { usage(): V1MirrorUsage } | undefined } {
  const { role, effective, standalone, version, log, config } = site;
  const timers: NodeJS.Timeout[] = [];
  const stopTimers = (): void => timers.forEach((t) => clearInterval(t));
  if (role === 'index') return { stopTimers, v1Mirror: undefined };
  const { images, repos, repoLock } = store;
  const index = checksumHook(site, store, services);
  // v1 mirroring (issue 13): Python's mirroring.source, and v1 reads of v2-mirrored repositories
  const mirrorV2 = v2.mirror?.v1;
  let mirrorV1: ReturnType<typeof v1Mirror> | undefined;
  if (config.mirroring?.source || mirrorV2) {
    // the bridge's upstream fetches only for a caller the registry routes let read the repository
    const mayRead = (ctx: Context, repo: RepoName): Promise<boolean> =>
      auth.registry
        .authorize({ method: ctx.method, authorization: ctx.get('Authorization') || undefined, repo, headers: ctx.headers, path: ctx.path })
        // refused, or the index unreachable: no bridging; the route answers with its own check
        .then(
          () => true,
          () => false,
        );
    mirrorV1 = v1Mirror({ config: effective, images, repos, log, mayRead, ...(mirrorV2 ? { v2: mirrorV2 } : {}) });
    app.use(mirrorV1);
  }
  const inProcessIndex = services?.index;
  const { notifier, webhooks: hooks } = events;
  const fromV1 = v2.fromV1;
  // a registry split from its index tells it of each v1 tag push (its webhooks fire there)
  const splitIndex = images.scoped && !inProcessIndex ? config.index_endpoint : null;
  const indexPush = splitIndex ? durableIndexPush(site, store, splitIndex, timers) : undefined;
  const v1events =
    notifier || hooks || indexPush
      ? v1Events({
          images,
          log,
          ...(notifier ? { notifier } : {}),
          ...(fromV1 ? { fromV1 } : {}),
          ...(inProcessIndex
            ? {
                actor: async (authorization: string, repo: RepoName) => {
                  const valid = await inProcessIndex.tokenFor(authorization, repo);
                  if (!valid || valid.claims.userId <= 0) return null;
                  return (await inProcessIndex.findUser(valid.claims.userId))?.username ?? null;
                },
              }
            : {}),
          ...(hooks
            ? { webhooks: (repo: RepoName, tag: string, chain: readonly string[], pusher: string | null) => hooks.pushed(repo, tag, chain, pusher) }
            : {}),
          ...(indexPush ? { indexPush } : {}),
        })
      : undefined;
  app.use(
    registryRouter({
      config: effective,
      images,
      repos,
      auth: auth.registry,
      version,
      log,
      repoLock,
      ...(index ? { index } : {}),
      ...(v1events ? { events: v1events } : {}),
    }),
  );
  if (standalone) app.use(standaloneIndexRouter(effective, repos, auth.gate).routes());
  return { stopTimers, v1Mirror: mirrorV1 };
}

/**
 * A split registry's v1 push notices, never lost (issue 15): each is journalled in storage
 * (v1/_pending, before the push is answered), removed once the index answered 200 or refused it for
 * good, and replayed (any registry node, at start then every minute) while the index was unreachable
 * or failed; the index fires each notice id at most once, so a replay after a lost answer is harmless.
 */
function durableIndexPush(site: Site, store: StorageServices, indexEndpoint: string, timers: NodeJS.Timeout[]) {
  const { log, config } = site;
  const journal = new IndexJournal<V1PushNotice>(store.driver, V1_PENDING_ROOT);
  const send = async (n: Omit<V1PushNotice, 'at'>, id: string): Promise<string | null> => {
    const repo = parseRepoName(n.name);
    if (!repo) {
      await journal.end(id);
      return null;
    }
    try {
      const pusher = await tellIndexOfV1Push(indexEndpoint, n.authorization, repo, n.tag, n.images, id);
      await journal.end(id);
      return pusher;
    } catch (e) {
      if (!(e instanceof NoticeRefused)) throw e;
      log.warn('the index refused a v1 push notice: dropped', { repository: n.name, tag: n.tag, err: e.message });
      await journal.end(id);
      return null;
    }
  };
  if (!config.read_only) {
    const replay = (): void => {
      journal
        .replay(
          async (n, id) => void (await send(n, id)),
          (n, e) => log.warn('v1 push notice not delivered to the index yet', { repository: n.name, tag: n.tag, err: String(e) }),
        )
        .then(
          (r) => r.sent + r.dropped > 0 && log.info('pending v1 push notices replayed', r),
          (e: unknown) => log.warn('replaying v1 push notices failed', { err: String(e) }),
        );
    };
    timers.push(setTimeout(replay, 5500).unref(), setInterval(replay, 60_000).unref());
  }
  return async (authorization: string, repo: RepoName, tag: string, chain: readonly string[]) => {
    const notice = { name: repo.full, tag, images: chain, authorization };
    const id = await journal.begin(notice);
    return () => send(notice, id);
  };
}
