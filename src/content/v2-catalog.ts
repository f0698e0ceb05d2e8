import type { Knex } from 'knex';
import type { StorageDriver } from '../storage/driver.js';
import { listOptional } from './small-objects.js';
import { findUserByName } from '../db/users.js';
import { visibility } from '../db/search.js';
import type { V1Repositories } from './v1-repositories.js';
import { parseRepoName } from './names.js';
import { bodyCapped } from '../util/fetch-body.js';

/** Who lists the catalog, as the /v2/ routes' auth decided it (an auth V2Principal fits). */
export interface V2Principal {
  readonly account: string | null;
  readonly admin: boolean;
  /** A token of this server's own index: its admin claim is checked against the database. */
  readonly indexIssued?: boolean;
}

/**
 * Where /v2/_catalog gets its names (spec v2-bridge §1.4 catalog): repository names in byte order,
 * after `last`, at most `limit`, only those the caller may read.
 */
export interface CatalogSource {
  /** `authorization`: the client's header, for a source that asks the index over HTTP. */
  names(principal: V2Principal, last: string | undefined, limit: number, authorization?: string): Promise<string[]>;
}

/** How long a registry split from its index waits for a catalog page from it. */
const REMOTE_CATALOG_TIMEOUT_MS = 15_000;

/**
 * A registry split from its index: the index answers (it has the database), for the client whose
 * Authorization header is forwarded, so it filters exactly as it would in one process.
 */
export class RemoteCatalog implements CatalogSource {
  constructor(private readonly indexEndpoint: string) {}

  async names(_principal: V2Principal, last: string | undefined, limit: number, authorization?: string): Promise<string[]> {
    const q = new URLSearchParams({ limit: String(limit), ...(last !== undefined ? { last } : {}) });
    const r = await fetch(`${this.indexEndpoint}/_index/v2/catalog?${q}`, {
      headers: authorization ? { Authorization: authorization } : {},
      signal: AbortSignal.timeout(REMOTE_CATALOG_TIMEOUT_MS),
    });
    if (!r.ok) {
      await r.body?.cancel();
      throw new Error(`the index answered ${r.status} for the catalog`);
    }
    // a page of `limit` names of at most 256 characters each, JSON-quoted
    const body = await bodyCapped(r, 4096 + limit * 600);
    const names = (JSON.parse(body.toString('utf8')) as { repositories?: unknown }).repositories;
    if (!Array.isArray(names) || !names.every((n) => typeof n === 'string')) throw new Error('the index answered no list of names for the catalog');
    return names as string[];
  }
}

/**
 * Whom the catalog lists for: all of it (`admin`), an account's (`userId`), or what anonymous
 * callers see. Who the token names is the token's word; an account deactivated since the token was
 * issued (v2 tokens live v2_token_ttl) gets what anonymous callers see, as its logins and sessions
 * end. Whether it is an admin is the issuer's word for an external token service (token_rootcertbundle:
 * its accounts need not be ours); for a token of this server's own index (`indexIssued`) the
 * account must still exist, be active and be an admin now: before 2026-12-07 an admin deleted or
 * demoted since still listed every private repository until the token expired. One indexed lookup
 * by name (the one the account's view needs anyway).
 */
async function catalogViewer(db: Knex, principal: V2Principal): Promise<{ admin: boolean; userId?: number }> {
  if (principal.account === null) return { admin: principal.admin && !principal.indexIssued };
  const u = await findUserByName(db, principal.account);
  if (u && !u.active) return { admin: false };
  const admin = principal.admin && (!principal.indexIssued || u?.admin === true);
  return u ? { admin, userId: u.id } : { admin };
}

/**
 * With an index: its database (STYLE: the index owns the repository list), which learns of v1 and
 * v2 pushes alike; the visibility filter of /v1/search applied in the query.
 */
export class IndexCatalog implements CatalogSource {
  constructor(private readonly db: Knex) {}

  async names(principal: V2Principal, last: string | undefined, limit: number): Promise<string[]> {
    const { admin, userId } = await catalogViewer(this.db, principal);
    const v = visibility(admin ? { admin: true } : userId !== undefined ? { userId } : {});
    // names are compared as namespace/name; the pair's order equals the string's because both parts
    // are [a-z0-9._-] and '/' sorts below every one of them. Byte order on PostgreSQL too (collate "C").
    const c = /^(pg|postgres)/.test(String((this.db.client as { config?: { client?: unknown } }).config?.client)) ? ' collate "C"' : '';
    let q = this.db('repositories as r').select('r.namespace', 'r.name').whereRaw(v.sql, v.bindings);
    // No name holds a NUL, so every name sorts after `last` exactly when it sorts after the text
    // before its first NUL; PostgreSQL refuses NUL in text (it was a 503 UNAVAILABLE, review of
    // 2026-12-07), so that text is what is compared.
    if (last?.includes('\0')) last = last.slice(0, last.indexOf('\0'));
    if (last !== undefined) {
      const i = last.indexOf('/');
      const ns = i < 0 ? last : last.slice(0, i);
      const rest = i < 0 ? '' : last.slice(i + 1);
      q = q.whereRaw(`(r.namespace${c} > ? or (r.namespace = ? and r.name${c} > ?))`, [ns, ns, rest]);
    }
    const rows = (await q.orderByRaw(`r.namespace${c}, r.name${c}`).limit(limit)) as { namespace: string; name: string }[];
    return rows.map((r) => `${r.namespace}/${r.name}`);
  }
}

/**
 * A standalone registry (no index, no auth): every repository in storage, v1- and v2-pushed. A
 * one-component v2 name is listed as its v1 twin `library/<name>` (the same repository through
 * the bridge, and the name the index database keeps).
 */
export class StorageCatalog implements CatalogSource {
  constructor(
    private readonly driver: StorageDriver,
    private readonly v1: V1Repositories,
  ) {}

  private list(prefix: string): Promise<string[]> {
    return listOptional(this.driver, prefix);
  }

  /** v2 names: directories under v2/repositories holding a `_created` marker (a manifest was pushed). */
  private async v2Names(prefix: string, out: Set<string>): Promise<void> {
    for (const key of await this.list(prefix)) {
      const base = key.slice(key.lastIndexOf('/') + 1);
      if (base === '_created') {
        // one repository through the bridge: `alpha` is v1's library/alpha, and listed so (as the index does)
        const v2 = prefix.slice('v2/repositories/'.length);
        const v1 = parseRepoName(v2);
        out.add(v1 ? `${v1.namespace}/${v1.repository}` : v2);
      } else if (!base.startsWith('_')) await this.v2Names(key, out);
    }
  }

  async names(_principal: V2Principal, last: string | undefined, limit: number): Promise<string[]> {
    const all = new Set<string>();
    await this.v2Names('v2/repositories', all);
    for await (const r of this.v1.allRepositories()) all.add(`${r.namespace}/${r.repository}`);
    return [...all]
      .filter((n) => last === undefined || n > last)
      .sort()
      .slice(0, limit);
  }
}
