import type { Knex } from 'knex';
import { DbNotFoundError } from './errors.js';
import { clampPage, forUpdate, toBool, toDate, toDateOrNull, toNum, tsValue, type Page, type PageRequest } from './rows.js';

/** A repository of the index (spec v1-protocol §3.6–3.9). */
export interface Repository {
  readonly id: number;
  readonly namespace: string;
  readonly name: string;
  /** `namespace/name` */
  readonly fullName: string;
  readonly description: string;
  readonly private: boolean;
  readonly ownerId: number | null;
  /** Set by the first DELETE (I6); such a repository is invisible unless asked for. */
  readonly deletedAt: Date | null;
  readonly pushComplete: boolean;
  readonly starCount: number;
  readonly createdAt: Date;
  readonly updatedAt: Date;
}

export interface SaveRepositoryInput {
  readonly namespace: string;
  readonly name: string;
  /** Changed only when given. */
  readonly description?: string;
  readonly private?: boolean;
  /** Set on creation; changed on update only when given. */
  readonly ownerId?: number | null;
}

export interface FindOptions {
  /** Also return a logically deleted repository. */
  readonly includeDeleted?: boolean;
}

/** One entry of an image list as the client sends it (spec §3.6: key `Tag` capitalised). */
export interface ImageEntry {
  readonly id: string;
  readonly checksum?: string | null;
  readonly Tag?: string | null;
}

export interface RepositoryImage {
  readonly id: string;
  readonly checksum: string | null;
  readonly tag: string | null;
}

export type CollaboratorAccess = 'read' | 'write';

export interface Collaborator {
  readonly userId: number;
  readonly username: string;
  readonly access: CollaboratorAccess;
}

export interface Comment {
  readonly id: number;
  readonly repoId: number;
  readonly userId: number;
  readonly username: string;
  readonly body: string;
  readonly createdAt: Date;
}

interface RepoRow {
  id: unknown;
  namespace: string;
  name: string;
  description: string | null;
  private: unknown;
  owner_id: unknown;
  deleted_at: unknown;
  push_complete: unknown;
  star_count: unknown;
  created_at: unknown;
  updated_at: unknown;
}

const COLUMNS = [
  'id',
  'namespace',
  'name',
  'description',
  'private',
  'owner_id',
  'deleted_at',
  'push_complete',
  'star_count',
  'created_at',
  'updated_at',
] as const;

function toRepository(r: RepoRow): Repository {
  return {
    id: toNum(r.id),
    namespace: r.namespace,
    name: r.name,
    fullName: `${r.namespace}/${r.name}`,
    description: r.description ?? '',
    private: toBool(r.private),
    ownerId: r.owner_id === null || r.owner_id === undefined ? null : toNum(r.owner_id),
    deletedAt: toDateOrNull(r.deleted_at),
    pushComplete: toBool(r.push_complete),
    starCount: toNum(r.star_count),
    createdAt: toDate(r.created_at),
    updatedAt: toDate(r.updated_at),
  };
}

export async function findRepository(db: Knex, namespace: string, name: string, opts: FindOptions = {}): Promise<Repository | undefined> {
  const q = db('repositories')
    .select([...COLUMNS])
    .where({ namespace, name });
  if (!opts.includeDeleted) void q.whereNull('deleted_at');
  const row = (await q.first()) as RepoRow | undefined;
  return row && toRepository(row);
}

export async function findRepositoryById(db: Knex, id: number, opts: FindOptions = {}): Promise<Repository | undefined> {
  const q = db('repositories')
    .select([...COLUMNS])
    .where({ id });
  if (!opts.includeDeleted) void q.whereNull('deleted_at');
  const row = (await q.first()) as RepoRow | undefined;
  return row && toRepository(row);
}

/**
 * Create the repository if absent, else update the fields given (spec §3.6: a failed earlier push simply
 * reuses it). Saving over a logically deleted repository purges the old one first and creates a fresh one:
 * a push after I6 starts from an empty image list, not from the deleted one's.
 */
export async function saveRepository(db: Knex, input: SaveRepositoryInput): Promise<{ repository: Repository; created: boolean }> {
  return db.transaction(async (trx) => {
    const now = tsValue(trx, new Date());
    const key = { namespace: input.namespace, name: input.name };
    await trx('repositories').where(key).whereNotNull('deleted_at').delete();
    const inserted = (await trx('repositories')
      .insert({
        ...key,
        description: input.description ?? '',
        private: input.private ?? false,
        owner_id: input.ownerId ?? null,
        push_complete: false,
        star_count: 0,
        created_at: now,
        updated_at: now,
      })
      .onConflict(['namespace', 'name'])
      .ignore()
      .returning([...COLUMNS])) as RepoRow[];
    const fresh = inserted[0];
    if (fresh) return { repository: toRepository(fresh), created: true };

    const patch: Record<string, unknown> = {};
    if (input.description !== undefined) patch.description = input.description;
    if (input.private !== undefined) patch.private = input.private;
    if (input.ownerId !== undefined) patch.owner_id = input.ownerId;
    if (Object.keys(patch).length > 0)
      await trx('repositories')
        .where(key)
        .update({ ...patch, updated_at: now });
    const row = (await trx('repositories')
      .select([...COLUMNS])
      .where(key)
      .first()) as RepoRow;
    return { repository: toRepository(row), created: false };
  });
}

/** I6 first step: hide the repository (I8 then answers 404). Returns false if absent or already deleted. */
export async function markDeleted(db: Knex, repoId: number): Promise<boolean> {
  const now = tsValue(db, new Date());
  return (await db('repositories').where({ id: repoId }).whereNull('deleted_at').update({ deleted_at: now, updated_at: now })) > 0;
}

/** I6 second step: remove the repository and everything attached to it (images, stars, comments, grants). */
export async function purgeRepository(db: Knex, repoId: number): Promise<boolean> {
  return (await db('repositories').where({ id: repoId }).delete()) > 0;
}

/** I7: the push finished (or, with false, a new push started). */
export async function setPushComplete(db: Knex, repoId: number, complete = true): Promise<boolean> {
  return (
    (await db('repositories')
      .where({ id: repoId })
      .update({ push_complete: complete, updated_at: tsValue(db, new Date()) })) > 0
  );
}

const nonEmpty = (s: string | null | undefined): s is string => typeof s === 'string' && s !== '';

/**
 * Merge an image list into the repository's (spec §3.6 I5, §3.7 I7, §3.12): ids not yet listed are appended
 * in the order given; an id already listed keeps its position and its checksum; a non-empty checksum fills
 * an empty one (first one given wins); a non-empty `Tag` replaces the stored one (last one given wins).
 * Returns how many ids were added and how many existing entries changed.
 */
export async function mergeImages(db: Knex, repoId: number, entries: readonly ImageEntry[]): Promise<{ added: number; updated: number }> {
  return db.transaction(async (trx) => {
    // Serialize merges of one repository (positions are computed from what is already there).
    const repo = await forUpdate(trx, trx('repositories').where({ id: repoId }).first('id'));
    if (!repo) throw new DbNotFoundError('repository', String(repoId));
    const rows = (await trx('repository_images').where({ repo_id: repoId }).select('image_id', 'checksum', 'tag', 'position')) as {
      image_id: string;
      checksum: string | null;
      tag: string | null;
      position: unknown;
    }[];
    const existing = new Map(rows.map((r) => [r.image_id, { checksum: r.checksum, tag: r.tag }]));
    let position = rows.reduce((max, r) => Math.max(max, toNum(r.position)), -1);
    const added = new Map<string, { checksum: string | null; tag: string | null; position: number }>();
    const changed = new Map<string, { checksum: string | null; tag: string | null }>();
    for (const e of entries) {
      const checksum = nonEmpty(e.checksum) ? e.checksum : null;
      const tag = nonEmpty(e.Tag) ? e.Tag : null;
      const fresh = added.get(e.id);
      if (fresh) {
        fresh.checksum ??= checksum;
        fresh.tag = tag ?? fresh.tag;
        continue;
      }
      const old = existing.get(e.id);
      if (!old) {
        added.set(e.id, { checksum, tag, position: ++position });
        continue;
      }
      const next = changed.get(e.id) ?? { ...old };
      next.checksum ??= checksum;
      next.tag = tag ?? next.tag;
      if (next.checksum !== old.checksum || next.tag !== old.tag) changed.set(e.id, next);
    }
    const inserts = [...added].map(([id, v]) => ({
      repo_id: repoId,
      image_id: id,
      checksum: v.checksum,
      tag: v.tag,
      position: v.position,
    }));
    // Chunks stay under SQLite's bound-parameter limit (999 on old builds).
    for (let i = 0; i < inserts.length; i += 150) await trx('repository_images').insert(inserts.slice(i, i + 150));
    for (const [id, v] of changed) {
      await trx('repository_images').where({ repo_id: repoId, image_id: id }).update({ checksum: v.checksum, tag: v.tag });
    }
    if (inserts.length > 0 || changed.size > 0) {
      await trx('repositories')
        .where({ id: repoId })
        .update({ updated_at: tsValue(trx, new Date()) });
    }
    return { added: inserts.length, updated: changed.size };
  });
}

/** The image list in push order (I8). */
export async function listImages(db: Knex, repoId: number): Promise<RepositoryImage[]> {
  const rows = (await db('repository_images').where({ repo_id: repoId }).orderBy('position').select('image_id', 'checksum', 'tag')) as {
    image_id: string;
    checksum: string | null;
    tag: string | null;
  }[];
  return rows.map((r) => ({ id: r.image_id, checksum: r.checksum, tag: r.tag }));
}

/**
 * One page of the tagged entries of the image list, by tag name, and how many there are: what the
 * web UI of an index without a registry in its process shows (listImages reads every entry).
 */
export async function listTaggedImages(
  db: Knex,
  repoId: number,
  page: { offset: number; limit: number },
): Promise<{ items: { tag: string; id: string }[]; total: number }> {
  const tagged = () => db('repository_images').where({ repo_id: repoId }).whereNotNull('tag');
  const [count] = (await tagged().count({ n: '*' })) as { n: unknown }[];
  const rows = (await tagged().orderBy('tag').orderBy('image_id').offset(page.offset).limit(page.limit).select('image_id', 'tag')) as {
    image_id: string;
    tag: string;
  }[];
  return { items: rows.map((r) => ({ tag: r.tag, id: r.image_id })), total: Number(count?.n ?? 0) };
}

/** One image of the list, if the repository lists it (I11 layer access). */
export async function findRepositoryImage(db: Knex, repoId: number, imageId: string): Promise<RepositoryImage | undefined> {
  const r = (await db('repository_images').where({ repo_id: repoId, image_id: imageId }).first('image_id', 'checksum', 'tag')) as
    { image_id: string; checksum: string | null; tag: string | null } | undefined;
  return r && { id: r.image_id, checksum: r.checksum, tag: r.tag };
}

// ---------------------------------------------------------------------------------------------------
// Collaborators

/** Grant (or change) a user's access to a repository. */
export async function addCollaborator(db: Knex, repoId: number, userId: number, access: CollaboratorAccess = 'read'): Promise<void> {
  await db('collaborators').insert({ repo_id: repoId, user_id: userId, access }).onConflict(['repo_id', 'user_id']).merge({ access });
}

export async function removeCollaborator(db: Knex, repoId: number, userId: number): Promise<boolean> {
  return (await db('collaborators').where({ repo_id: repoId, user_id: userId }).delete()) > 0;
}

export async function listCollaborators(db: Knex, repoId: number): Promise<Collaborator[]> {
  const rows = (await db('collaborators as c')
    .join('users as u', 'u.id', 'c.user_id')
    .where('c.repo_id', repoId)
    .orderBy('u.username')
    .select('c.user_id', 'u.username', 'c.access')) as { user_id: unknown; username: string; access: CollaboratorAccess }[];
  return rows.map((r) => ({ userId: toNum(r.user_id), username: r.username, access: r.access }));
}

export async function findCollaboratorAccess(db: Knex, repoId: number, userId: number): Promise<CollaboratorAccess | undefined> {
  const r = (await db('collaborators').where({ repo_id: repoId, user_id: userId }).first('access')) as { access: CollaboratorAccess } | undefined;
  return r?.access;
}

// ---------------------------------------------------------------------------------------------------
// Stars (star_count is kept by triggers on the stars table)

/** Star a repository; idempotent. Returns true if this call added the star. */
export async function starRepository(db: Knex, repoId: number, userId: number): Promise<boolean> {
  return db.transaction(async (trx) => {
    const had = await trx('stars').where({ repo_id: repoId, user_id: userId }).first('repo_id');
    if (had) return false;
    await trx('stars')
      .insert({ repo_id: repoId, user_id: userId, created_at: tsValue(trx, new Date()) })
      .onConflict(['repo_id', 'user_id'])
      .ignore();
    return true;
  });
}

/** Remove a star; idempotent. Returns true if there was one. */
export async function unstarRepository(db: Knex, repoId: number, userId: number): Promise<boolean> {
  return (await db('stars').where({ repo_id: repoId, user_id: userId }).delete()) > 0;
}

export async function isStarred(db: Knex, repoId: number, userId: number): Promise<boolean> {
  return (await db('stars').where({ repo_id: repoId, user_id: userId }).first('repo_id')) !== undefined;
}

// ---------------------------------------------------------------------------------------------------
// Comments

interface CommentRow {
  id: unknown;
  repo_id: unknown;
  user_id: unknown;
  username: string;
  body: string;
  created_at: unknown;
}

function toComment(r: CommentRow): Comment {
  return {
    id: toNum(r.id),
    repoId: toNum(r.repo_id),
    userId: toNum(r.user_id),
    username: r.username,
    body: r.body,
    createdAt: toDate(r.created_at),
  };
}

export async function addComment(db: Knex, repoId: number, userId: number, body: string): Promise<Comment> {
  return db.transaction(async (trx) => {
    const [row] = (await trx('comments')
      .insert({ repo_id: repoId, user_id: userId, body, created_at: tsValue(trx, new Date()) })
      .returning(['id'])) as { id: unknown }[];
    const full = (await trx('comments as c')
      .join('users as u', 'u.id', 'c.user_id')
      .where('c.id', toNum(row?.id))
      .first('c.id', 'c.repo_id', 'c.user_id', 'u.username', 'c.body', 'c.created_at')) as CommentRow;
    return toComment(full);
  });
}

/** Comments oldest first, one page. */
export async function listComments(db: Knex, repoId: number, req: PageRequest = {}): Promise<Page<Comment>> {
  const { page, pageSize } = clampPage(req, 50, 500);
  const [count] = (await db('comments').where({ repo_id: repoId }).count({ n: '*' })) as { n: unknown }[];
  const rows = (await db('comments as c')
    .join('users as u', 'u.id', 'c.user_id')
    .where('c.repo_id', repoId)
    .orderBy('c.id')
    .limit(pageSize)
    .offset((page - 1) * pageSize)
    .select('c.id', 'c.repo_id', 'c.user_id', 'u.username', 'c.body', 'c.created_at')) as CommentRow[];
  return { total: toNum(count?.n), items: rows.map(toComment) };
}

export async function removeComment(db: Knex, commentId: number): Promise<boolean> {
  return (await db('comments').where({ id: commentId }).delete()) > 0;
}
