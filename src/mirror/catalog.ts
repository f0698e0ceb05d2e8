import type { Knex } from 'knex';
import type { CatalogSource, V2Principal } from '../content/v2-catalog.js';
import { findRepository } from '../db/repositories.js';
import { findUserByName } from '../db/users.js';
import { rightsOn } from '../index/access.js';
import { indexNameOf } from '../index/token-routes.js';
import type { StorageDriver } from '../storage/driver.js';
import { listOptional } from '../content/small-objects.js';
import type { PullThrough } from './pull-through.js';

/**
 * /v2/_catalog of a mirror whose catalog comes from elsewhere (the index database, in the
 * one-process default): the index knows only what was pushed, so the repositories the mirror has
 * cached (a `_created` marker under v2/repositories, names under an upstream's prefix) are merged
 * in — each only for a caller who may read it, by the same rule as a pull of that name (`mayRead`).
 */
export class MirrorCatalog implements CatalogSource {
  constructor(
    private readonly inner: CatalogSource,
    private readonly mirror: PullThrough,
    private readonly driver: StorageDriver,
    private readonly mayRead: (principal: V2Principal, name: string) => Promise<boolean>,
  ) {}

  private list(prefix: string): Promise<string[]> {
    return listOptional(this.driver, prefix);
  }

  /** Cached mirrored names after `last`, in byte order (the walk stops at limit names). */
  private async cached(last: string | undefined, limit: number): Promise<string[]> {
    const out: string[] = [];
    const walk = async (prefix: string, depth: number): Promise<void> => {
      const children = await this.list(prefix);
      const name = prefix.slice('v2/repositories/'.length);
      if (name !== '' && children.some((c) => c.endsWith('/_created')) && this.mirror.target(name) && (last === undefined || name > last)) out.push(name);
      if (depth >= 8) return;
      for (const c of children) {
        if (c.slice(c.lastIndexOf('/') + 1).startsWith('_')) continue;
        await walk(c, depth + 1);
      }
    };
    await walk('v2/repositories', 0);
    return out.sort().slice(0, limit);
  }

  async names(principal: V2Principal, last: string | undefined, limit: number, authorization?: string): Promise<string[]> {
    const listed = await this.inner.names(principal, last, limit, authorization);
    const readable: string[] = [];
    // an admin claim of our own index's token is checked by mayRead (the account as the database has it now)
    for (const n of await this.cached(last, limit)) if ((principal.admin && !principal.indexIssued) || (await this.mayRead(principal, n))) readable.push(n);
    return [...new Set([...listed, ...readable])].sort().slice(0, limit);
  }
}

/**
 * The index's rule for a pull of `name` (index/access.ts, as its token service grants `pull`): a
 * public repository for anyone, a private one for who may read it, a name it has no record of
 * (a mirrored name nobody pushed) only for who could create it — never for everyone.
 */
export function indexReadRule(db: Knex): (principal: V2Principal, name: string) => Promise<boolean> {
  return async (principal, name) => {
    const n = indexNameOf(name);
    if (!n) return false;
    const user = principal.account !== null ? await findUserByName(db, principal.account) : undefined;
    const repo = await findRepository(db, n.namespace, n.repository);
    // an account deactivated since its token was issued reads as anonymous callers do (rightsOn
    // would let an inactive admin read everything)
    return (await rightsOn(db, user?.active ? user : undefined, n.namespace, repo)).read;
  };
}
