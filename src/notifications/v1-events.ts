import type { Context } from 'koa';
import type { RepoName } from '../content/names.js';
import { parseV2Name } from '../content/v2-names.js';
import type { V1Images } from '../content/v1-images.js';
import type { V1ToV2 } from '../content/v1-to-v2.js';
import type { RegistryAccess } from '../auth/registry-auth.js';
import type { V1Events } from '../registry/routes.js';
import type { Logger } from '../log/logger.js';
import type { Notifier } from './notifier.js';
import { manifestReferences, manifestTarget, requestRecord, urlBase, type Target } from './events.js';

export interface V1EventDeps {
  readonly images: V1Images;
  readonly log: Logger;
  /** distribution's notifications; events of v1 tags name the bridge's manifest (spec v2-bridge §3.3). */
  readonly notifier?: Notifier;
  /** The bridge: a v1 tag's derived manifest (absent when /v2/ is off: the event names the tag only). */
  readonly fromV1?: V1ToV2;
  /** The account behind a v1 token (an index in this process), for actor.name and Hub's pusher. */
  readonly actor?: (authorization: string, repo: RepoName) => Promise<string | null>;
  /** Hub webhooks of a pushed tag: the v1 chain, top last (an index in this process). */
  readonly webhooks?: (repo: RepoName, tag: string, chain: readonly string[], pusher: string | null) => Promise<unknown>;
  /**
   * A registry split from its index: the index is told of a pushed tag (the chain, top last) with
   * the push's credentials, fires its webhooks, and answers the pusher's account (actor.name).
   * The returned promise settles once the notice is durable (journalled in storage, awaited before
   * the push is answered); the function it gives sends it (in the background).
   */
  readonly indexPush?: (authorization: string, repo: RepoName, tag: string, chain: readonly string[]) => Promise<() => Promise<string | null>>;
}

/**
 * v1 tag pushes, pulls and deletes as webhooks and distribution events. Runs after the answer is
 * decided, in the background: a slow storage read or database never holds the client.
 */
export function v1Events(deps: V1EventDeps): V1Events {
  const notifier = deps.notifier?.active ? deps.notifier : undefined;
  const manifestOf = async (repo: RepoName, tag: string) => {
    const name = parseV2Name(repo.full);
    return name && deps.fromV1 ? deps.fromV1.manifestForTag(name, tag) : undefined;
  };
  const actorOf = async (authorization: string | undefined, repo: RepoName): Promise<string | null> =>
    authorization && deps.actor ? await deps.actor(authorization, repo).catch(() => null) : null;
  const background = (what: string, fn: () => Promise<void>): void => {
    fn().catch((e: unknown) => deps.log.warn(`${what}: event not sent`, { err: String(e) }));
  };
  /** The request part and URL base are read now: the context is gone once the answer is sent. */
  const snapshot = (ctx: Context) => ({ request: requestRecord(ctx), origin: urlBase(ctx), authorization: ctx.get('Authorization') || undefined });
  const tagTarget = async (origin: string, repo: RepoName, tag: string): Promise<Target> => {
    const m = await manifestOf(repo, tag).catch(() => undefined);
    if (!m) return { repository: repo.full, tag };
    return manifestTarget(origin, repo.full, m, tag, notifier?.includeReferences ? manifestReferences(m.bytes) : undefined);
  };

  return {
    async tagPushed(ctx, repo, tag, id, access: RegistryAccess) {
      const s = snapshot(ctx);
      // Hub's push_data.images: the pushed chain, top last
      const chainOf = async (): Promise<string[]> => [...(await deps.images.getAncestry(access.scope, id))].reverse();
      // a split registry's notice to the index is journalled before the push is answered (never lost)
      const tellIndex = deps.indexPush && s.authorization ? await deps.indexPush(s.authorization, repo, tag, await chainOf()) : undefined;
      background('v1 tag push', async () => {
        let actor: string | null;
        if (deps.indexPush) {
          // the index checks the push's token, queues its webhooks and names the pusher
          actor = tellIndex
            ? await tellIndex().catch(
                (e: unknown) => (
                  deps.log.warn('the index was not told of a v1 push yet: the notice stays pending', { repository: repo.full, tag, err: String(e) }),
                  null
                ),
              )
            : null;
        } else {
          actor = await actorOf(s.authorization, repo);
          if (deps.webhooks) {
            await deps
              .webhooks(repo, tag, await chainOf(), actor)
              .catch((e: unknown) => deps.log.warn('webhooks not queued for a v1 push', { repository: repo.full, tag, err: String(e) }));
          }
        }
        if (notifier) notifier.emit({ action: 'push', target: await tagTarget(s.origin, repo, tag), request: s.request, actor });
      });
    },
    tagPulled(ctx, repo, tag) {
      if (!notifier) return;
      const s = snapshot(ctx);
      background('v1 tag pull', async () => {
        notifier.emit({ action: 'pull', target: await tagTarget(s.origin, repo, tag), request: s.request, actor: await actorOf(s.authorization, repo) });
      });
    },
    tagDeleted(ctx, repo, tag, _access, manifest) {
      if (!notifier) return;
      const s = snapshot(ctx);
      background('v1 tag delete', async () => {
        notifier.emit({
          action: 'delete',
          target: { ...(manifest ? { digest: manifest.digest } : {}), repository: repo.full, tag },
          request: s.request,
          actor: await actorOf(s.authorization, repo),
        });
      });
    },
    repositoryDeleted(ctx, repo) {
      if (!notifier) return;
      const s = snapshot(ctx);
      background('v1 repository delete', async () => {
        notifier.emit({ action: 'delete', target: { repository: repo.full }, request: s.request, actor: await actorOf(s.authorization, repo) });
      });
    },
    describe: (repo, tag) => (notifier ? manifestOf(repo, tag) : Promise.resolve(undefined)),
  };
}
