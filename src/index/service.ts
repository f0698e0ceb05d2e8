import type { Knex } from 'knex';
import { RegistryError } from '../errors/index.js';
import type { RepoName } from '../content/names.js';
import { V1TokenSigner, parseBasic, type V1Access, type V1TokenClaims } from '../auth/v1-token.js';
import {
  clearLoginFailures,
  credentialOf,
  findUserById,
  findUserByName,
  isRetiredNamespace,
  loginAllowed,
  recordLoginFailure,
  saveUser,
  verifyPassword,
  type User,
} from '../db/users.js';
import {
  findRepository,
  listImages,
  markDeleted,
  mergeImages,
  purgeRepository,
  saveRepository,
  setPushComplete,
  type ImageEntry,
  type Repository,
  type RepositoryImage,
} from '../db/repositories.js';
import { DbConflictError } from '../db/errors.js';
import { rightsOn, type Rights } from './access.js';
import type { Logger } from '../log/logger.js';
import { CONTROL_CHARS } from '../util/text.js';

export interface IndexOptions {
  readonly signup: boolean;
  readonly signupActive: boolean;
  readonly bcryptCost: number;
  /** Where login lockouts are reported. */
  readonly log?: Logger;
  /**
   * The namespaces of the pull-through mirror's prefixes (`hub/` → `hub`): their names have no
   * record here, so the index's rule gives them to whoever owns the namespace. They belong to the
   * operator: nobody makes them theirs by signing up or creating an organization.
   */
  readonly mirroredNamespaces?: ReadonlySet<string>;
}

const USERNAME = /^[a-z0-9_]{4,30}$/;
const EMAIL = /^[^\s@]+@[^\s@]+\.[^\s@]+$|^[^\s@]+@[^\s@]+$/;
const RESERVED = new Set(['library', 'root', 'admin', 'v1', 'v2', 'users', 'search', 'repositories', 'images']);

/** An account's email address, at signup and on update: no control character (PostgreSQL refuses NUL: a 500 there). */
export function isValidEmail(email: string): boolean {
  return EMAIL.test(email) && email.length <= 254 && !CONTROL_CHARS.test(email);
}

/** Names nobody signs up as or names an organization (the official namespace, route words, admin). */
export function isReservedNamespace(name: string): boolean {
  return RESERVED.has(name);
}

/**
 * The index (spec §3): accounts, repositories and their image lists, tokens. Plain values in and
 * out; routes translate HTTP.
 */
export class IndexService {
  constructor(
    readonly db: Knex,
    readonly signer: V1TokenSigner,
    private readonly opts: IndexOptions,
  ) {}

  /** I2: create an account; the exact "already exists" string makes 1.x clients log in instead. */
  async signup(body: unknown): Promise<User> {
    if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new RegistryError('USER_INVALID', 'Invalid JSON body');
    const { username, password, email } = body as Record<string, unknown>;
    if (typeof username !== 'string' || typeof password !== 'string' || typeof email !== 'string') {
      if (!this.opts.signup) throw new RegistryError('SIGNUP_DISABLED');
      throw new RegistryError('USER_INVALID', 'username, password and email are required');
    }
    // An existing account is the normal login path of 1.x clients: answer that first.
    if (await findUserByName(this.db, username)) throw new RegistryError('USER_EXISTS');
    if (await this.namespaceHeld(username)) throw new RegistryError('USER_EXISTS');
    if (!this.opts.signup) throw new RegistryError('SIGNUP_DISABLED');
    if (!USERNAME.test(username)) throw new RegistryError('USER_INVALID', 'Invalid username: 4 to 30 characters of a-z, 0-9 and _');
    if (RESERVED.has(username)) throw new RegistryError('USER_INVALID', 'This username is reserved');
    if (password.length < 5) throw new RegistryError('USER_INVALID', 'Invalid password: at least 5 characters');
    if (!isValidEmail(email)) throw new RegistryError('USER_INVALID', 'Invalid email address');
    try {
      const user = await saveUser(this.db, { username, email, password, active: this.opts.signupActive }, { cost: this.opts.bcryptCost });
      if (!user) throw new RegistryError('USER_EXISTS');
      return user;
    } catch (e) {
      if (e instanceof DbConflictError) throw new RegistryError('USER_EXISTS');
      throw e;
    }
  }

  /**
   * Basic credentials → active user. Absent ⇒ undefined (anonymous); wrong ⇒ 401; inactive ⇒ 403;
   * too many failures ⇒ 429 (the lock expires, so the owner is never locked out for good).
   * An anonymous 1.x client sends `Basic Og==` (empty user): that is anonymous, too.
   */
  async authenticate(authorization: string | undefined, opts: { allowInactive?: boolean; address?: string } = {}): Promise<User | undefined> {
    if (!authorization || !/^\s*basic\b/i.test(authorization)) return undefined;
    const creds = parseBasic(authorization);
    if (!creds) throw new RegistryError('LOGIN_REQUIRED', 'Malformed Authorization header');
    if (creds.username === '' && creds.password === '') return undefined;
    // failures count per (account, client address) and, with a higher ceiling, per account (db/users.ts)
    const address = opts.address;
    const gate = await loginAllowed(this.db, creds.username, { address });
    if (!gate.allowed) {
      throw new RegistryError('TOO_MANY_LOGINS', undefined, { 'Retry-After': String(Math.ceil(gate.retryAfterMs / 1000)) });
    }
    const user = await verifyPassword(this.db, creds.username, creds.password);
    if (!user) {
      await recordLoginFailure(this.db, creds.username, {
        address,
        onLockout: (scope, ms) =>
          this.opts.log?.warn('login locked after repeated failures', {
            account: creds.username.slice(0, 255),
            address: address ?? 'unknown',
            scope,
            seconds: Math.ceil(ms / 1000),
          }),
      });
      throw new RegistryError('LOGIN_REQUIRED', 'Wrong login/password');
    }
    await clearLoginFailures(this.db, creds.username, { address });
    if (!user.active && !opts.allowInactive) throw new RegistryError('ACCOUNT_INACTIVE');
    return user;
  }

  /**
   * Whether a namespace belongs to someone though no account or organization has its name: it
   * holds repositories (an admin's push, a deleted account's or organization's leftovers), it was a
   * deleted account's or organization's name (db/users.ts retireNamespace: what it stored without a
   * record of the index stays under it), or it is a mirror prefix's (cached upstream images, and
   * what the mirror's credentials fetch). Nobody inherits it by signing up or creating an
   * organization after the fact.
   */
  async namespaceHeld(namespace: string): Promise<boolean> {
    if (this.opts.mirroredNamespaces?.has(namespace)) return true;
    if ((await this.db('repositories').where({ namespace }).first('id')) !== undefined) return true;
    // a deleted account's or organization's name: its namespace may hold content the index has no
    // record of (a manifest pushed by digest, blobs never tagged), which goes to the namespace's owner
    return isRetiredNamespace(this.db, namespace);
  }

  async findUser(id: number): Promise<User | undefined> {
    return id > 0 ? findUserById(this.db, id) : undefined;
  }

  async repository(name: RepoName, includeDeleted = false): Promise<Repository | undefined> {
    return findRepository(this.db, name.namespace, name.repository, { includeDeleted });
  }

  rights(user: User | undefined, name: RepoName, repo: Repository | undefined): Promise<Rights> {
    return rightsOn(this.db, user, name.namespace, repo);
  }

  /** A v1 token; an account's carries the fingerprint of its password, so a password change ends it. */
  async token(name: RepoName, access: V1Access, user: User | undefined): Promise<string> {
    if (!user) return this.signer.issue(name.full, access, 0);
    return this.signer.issue(name.full, access, user.id, Date.now(), await this.credential(user.id));
  }

  /** The fingerprint of an account's credential (password hash and epoch, never shown) its v1 tokens carry. */
  private async credential(uid: number): Promise<string> {
    return this.signer.credential(await credentialOf(this.db, uid));
  }

  /** I5: create or claim the repository, merge the declared ids. */
  async claim(user: User, name: RepoName, entries: readonly ImageEntry[]): Promise<Repository> {
    const existing = await this.repository(name);
    const rights = await this.rights(user, name, existing);
    if (!rights.write) throw new RegistryError('ACCESS_DENIED');
    const { repository } = await saveRepository(this.db, {
      namespace: name.namespace,
      name: name.repository,
      ...(existing ? {} : { ownerId: user.id }),
    });
    await mergeImages(this.db, repository.id, entries);
    await setPushComplete(this.db, repository.id, false);
    return repository;
  }

  /**
   * Issue 4: a tag pushed through /v2/ becomes a repository of the index (created as v1's
   * PUT /v1/repositories/<repo>/ would, owned by the pusher) with the bridge's top v1 id, so
   * /v1/search, the v1 image list and the catalog see it. Idempotent: a repeated push merges.
   */
  /**
   * A tagged v2 push (issue 4): the repository exists (owned by the pusher when new), and its image
   * list holds the derived v1 chain, root first, with payload checksums and the tag on the top, as
   * a v1 push's I7 would have left it; then v1 clients pull it through the token flow.
   */
  async learnV2Push(
    account: string | null,
    name: RepoName,
    tag: string,
    images: readonly { id: string; checksum?: string }[],
    opts: { readonly admin?: boolean } = {},
  ): Promise<void> {
    const existing = await this.repository(name);
    const owner = account !== null ? await findUserByName(this.db, account) : undefined;
    // A push with a v2 token (opts.admin given: the token's admin claim) that creates the record,
    // by an account that may not create this repository now, used a token that outlived its rights
    // (tokens are good for v2_token_ttl): typically a write collaborator's token for a private
    // repository deleted since. The push lands, as the token allows, but the repository it
    // creates is private: before 2026-12-07 it was public, so the delete of a private repository
    // let a collaborator publish under the owner's name whatever the token could push (its
    // content included). test/protocol/delete-races.test.ts
    const outlived = !existing && opts.admin === false && !(await this.rights(owner?.active ? owner : undefined, name, undefined)).write;
    const { repository } = await saveRepository(this.db, {
      namespace: name.namespace,
      name: name.repository,
      ...(existing ? {} : { ownerId: owner?.id ?? null }),
      ...(outlived ? { private: true } : {}),
    });
    if (images.length > 0) {
      const last = images.length - 1;
      await mergeImages(
        this.db,
        repository.id,
        images.map((e, i) => ({ id: e.id, ...(e.checksum ? { checksum: e.checksum } : {}), ...(i === last ? { Tag: tag } : {}) })),
      );
    }
    if (!existing || !existing.pushComplete) await setPushComplete(this.db, repository.id, true);
  }

  /**
   * The verified payload checksum of a v1 image the registry completed (issue 11): merged into the
   * repository's image list (an empty checksum is filled, a recorded one kept), so I8 lists
   * `{"id", "checksum"}` as Docker Hub did. `authorization` must be a write token for the repository.
   */
  async learnChecksum(authorization: string | undefined, name: RepoName, id: string, checksum: string): Promise<boolean> {
    const valid = await this.tokenFor(authorization, name);
    if (!valid || valid.claims.access !== 'write') return false;
    await mergeImages(this.db, valid.repo.id, [{ id, checksum }]);
    return true;
  }

  /** Tags deleted through /v2/ leave the index's image list too (the images stay, untagged). */
  async forgetV2Tags(name: RepoName, tags: readonly string[]): Promise<void> {
    const repo = await this.repository(name);
    if (!repo || tags.length === 0) return;
    await this.db('repository_images')
      .where({ repo_id: repo.id })
      .whereIn('tag', [...tags])
      .update({ tag: null });
  }

  /** I7: merge checksums, mark the push complete. */
  async finishPush(user: User, name: RepoName, entries: readonly ImageEntry[]): Promise<void> {
    const repo = await this.repository(name);
    if (!repo) throw new RegistryError('REPOSITORY_NOT_FOUND');
    if (!(await this.rights(user, name, repo)).write) throw new RegistryError('ACCESS_DENIED');
    await mergeImages(this.db, repo.id, entries);
    await setPushComplete(this.db, repo.id, true);
  }

  async images(repo: Repository): Promise<RepositoryImage[]> {
    return listImages(this.db, repo.id);
  }

  /**
   * A token presented by the registry (I8 with `Authorization: Token …`): valid for this repository
   * only. Tokens the delete call issued stay valid for the logically deleted repository (spec §3.9).
   */
  async tokenFor(authorization: string | undefined, name: RepoName): Promise<{ claims: V1TokenClaims; repo: Repository } | undefined> {
    const claims = this.signer.verify(authorization);
    if (!claims || claims.repository !== name.full) return undefined;
    const repo = await this.repository(name, claims.access === 'delete');
    if (!repo) return undefined;
    if (claims.userId > 0) {
      const user = await this.findUser(claims.userId);
      if (!user || !user.active) return undefined;
      // issued under a password changed since, or an epoch counted up by a deactivation; a token
      // without one (issued before 2026-12-07, when only anonymous ones went without) is refused
      if (claims.credential !== (await this.credential(user.id))) return undefined;
      const rights = await this.rights(user, name, repo);
      if (!rights[claims.access]) return undefined;
    } else if (claims.access !== 'read' || repo.private) {
      return undefined;
    }
    return { claims, repo };
  }

  /**
   * I11, as this registry uses it: the repositories (other than the token's own) whose image list
   * names `imageId` and whose content the holder of a write token may reuse instead of uploading it:
   * repositories it may write as an account (content it or its team controls; an admin's power to
   * write everywhere does not count) and official `library/` ones (written by admins). Merely readable repositories are not sources: a v1 id is a name anyone can
   * push content under, so linking from someone else's public repository would let them choose the
   * bytes of any image built on a well-known base (the id of a public base image is public). The
   * registry links only from a source that truly holds the image (the lists are written by
   * clients); a read or anonymous token gets none.
   */
  async linkSources(claims: V1TokenClaims, imageId: string): Promise<string[]> {
    if (claims.access !== 'write' || claims.userId <= 0) return [];
    const user = await this.findUser(claims.userId);
    if (!user || !user.active) return [];
    const rows = (await this.db('repository_images as ri')
      .join('repositories as r', 'r.id', 'ri.repo_id')
      .whereNull('r.deleted_at')
      .where('ri.image_id', imageId)
      .select('r.namespace', 'r.name')
      .orderBy('r.id')
      .limit(50)) as { namespace: string; name: string }[];
    const out: string[] = [];
    for (const row of rows) {
      const full = `${row.namespace}/${row.name}`;
      if (full === claims.repository) continue;
      const repo = await findRepository(this.db, row.namespace, row.name);
      if (!repo) continue;
      // an admin may write everything, but what others pushed stays theirs: judged as an account
      const rights = await rightsOn(this.db, { ...user, admin: false }, row.namespace, repo);
      if (rights.write || (row.namespace === 'library' && !repo.private) || (row.namespace === 'library' && user.admin)) out.push(full);
    }
    return out;
  }

  /** I6: first call marks deleted (202), a second purges (200). */
  async deleteRepository(user: User, name: RepoName): Promise<'marked' | 'purged'> {
    const repo = await this.repository(name, true);
    const rights = repo ? await this.rights(user, name, repo) : undefined;
    // one answer for absent and unreadable
    if (!repo || !rights?.read) throw new RegistryError('REPOSITORY_NOT_FOUND');
    if (!rights.delete) throw new RegistryError('ACCESS_DENIED');
    if (repo.deletedAt === null) {
      await markDeleted(this.db, repo.id);
      return 'marked';
    }
    await purgeRepository(this.db, repo.id);
    return 'purged';
  }
}
