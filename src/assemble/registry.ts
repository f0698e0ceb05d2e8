import type Koa from 'koa';
import type { RegistryAuth } from '../auth/registry-auth.js';
import type { HtpasswdGate } from '../auth/htpasswd.js';
import type { RepoName } from '../content/names.js';
import { INDEX_CHECKSUM_PATH, INDEX_V1_PUSHED_PATH } from '../index/routes.js';
import { registryRouter, type V1IndexHook } from '../registry/routes.js';
import { standaloneIndexRouter } from '../registry/standalone-index.js';
import { v1Events } from '../notifications/v1-events.js';
import { v1Mirror } from '../mirror/v1-mirror.js';
import type { StorageServices } from './storage.js';
import type { IndexServices } from './index.js';
import type { EventServices } from './events.js';
import type { V2Services } from './v2.js';
import type { Site } from './site.js';

/**
 * A split registry's notice of a v1 tag push to its index (`POST /_index/v1/pushed`, with the push's
 * write token): the index fires the repository's webhooks and answers the pusher's account. Sent
 * again only when the index could not have got it (connection refused),
 * so a receiver never gets a push twice; otherwise one attempt, and the caller logs the failure.
 */
export async function tellIndexOfV1Push(indexEndpoint: string, authorization: string, repo: RepoName, tag: string, chain: readonly string[]): Promise<string | null> {
  const body = JSON.stringify({ name: repo.full, tag, images: chain });
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
    if (r.status !== 200) throw new Error(`the index answered ${r.status}: ${(await r.text()).slice(0, 300)}`);
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
      if (r.status !== 204) throw new Error(`the index answered ${r.status}: ${await r.text()}`);
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
): void {
  const { role, effective, standalone, version, log, config } = site;
  if (role === 'index') return;
  const { images, repos, repoLock } = store;
  const index = checksumHook(site, store, services);
  // v1 mirroring (issue 13): Python's mirroring.source, and v1 reads of v2-mirrored repositories
  const mirrorV2 = v2.mirror?.v1;
  if (config.mirroring?.source || mirrorV2) app.use(v1Mirror({ config: effective, images, repos, log, ...(mirrorV2 ? { v2: mirrorV2 } : {}) }));
  const inProcessIndex = services?.index;
  const { notifier, webhooks: hooks } = events;
  const fromV1 = v2.fromV1;
  // a registry split from its index tells it of each v1 tag push (its webhooks fire there)
  const splitIndex = images.scoped && !inProcessIndex ? config.index_endpoint : null;
  const indexPush = splitIndex ? (authorization: string, repo: RepoName, tag: string, chain: readonly string[]) => tellIndexOfV1Push(splitIndex, authorization, repo, tag, chain) : undefined;
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
          ...(hooks ? { webhooks: (repo: RepoName, tag: string, chain: readonly string[], pusher: string | null) => hooks.pushed(repo, tag, chain, pusher) } : {}),
          ...(indexPush ? { indexPush } : {}),
        })
      : undefined;
  app.use(registryRouter({ config: effective, images, repos, auth: auth.registry, version, log, repoLock, ...(index ? { index } : {}), ...(v1events ? { events: v1events } : {}) }).routes());
  if (standalone) app.use(standaloneIndexRouter(effective, repos, auth.gate).routes());
}
