import type { Context } from 'koa';
import type { Locks } from '../content/mutex.js';
import type { Config } from '../config/schema.js';
import type { RegistryAuth, RegistryAccess } from '../auth/registry-auth.js';
import type { RepoName } from '../content/names.js';
import type { V1Images } from '../content/v1-images.js';
import type { V1Repositories } from '../content/v1-repositories.js';
import type { Logger } from '../log/logger.js';

export interface RegistryDeps {
  readonly config: Config;
  readonly images: V1Images;
  readonly repos: V1Repositories;
  readonly auth: RegistryAuth;
  readonly version: string;
  /** Tells the index of each verified v1 image (issue 11: its image list then carries checksums). */
  readonly index?: V1IndexHook;
  readonly log?: Logger;
  /**
   * Serialises what publishes into a repository (tag writes, image checksums) with its deletion.
   * main.ts shares one with the index's delete in a one-process site.
   */
  readonly repoLock?: Locks;
  /** Told of tag pushes, pulls and deletes and of repository deletes (webhooks, notifications; issue 15). */
  readonly events?: V1Events;
}

/**
 * What happened to a repository's tags through v1, after it succeeded. Implementations never
 * make the request wait for a receiver (src/main.ts), and throw only when what must be durable
 * before the answer (tagPushed's index notice) could not be written.
 */
export interface V1Events {
  /** May wait for what must be durable before the push is answered (a split registry's index notice). */
  tagPushed(ctx: Context, repo: RepoName, tag: string, id: string, access: RegistryAccess): void | Promise<void>;
  tagPulled(ctx: Context, repo: RepoName, tag: string, id: string, access: RegistryAccess): void;
  tagDeleted(ctx: Context, repo: RepoName, tag: string, access: RegistryAccess, manifest: { digest: string } | undefined): void;
  /** The bridge's manifest of a tag (read before a delete, for the event's digest). */
  describe(repo: RepoName, tag: string): Promise<{ digest: string } | undefined>;
  repositoryDeleted(ctx: Context, repo: RepoName, access: RegistryAccess): void;
}

/**
 * The index learning the payload checksum of an image a v1 push just completed: Docker 1.x clients
 * send `[]` in the final PUT …/images, so only the registry knows it. `authorization` is the push's
 * write token, which the index checks again (the registry may run in another process).
 */
export interface V1IndexHook {
  checksum(repo: RepoName, id: string, checksum: string, authorization: string): Promise<void>;
}
