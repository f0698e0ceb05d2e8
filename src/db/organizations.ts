import type { Knex } from 'knex';
import { DbConflictError, DbNotFoundError } from './errors.js';
import { forUpdate, isUniqueViolation, lockName, toDate, toNum, tsValue } from './rows.js';
import { retireNamespace } from './users.js';

/** An organization: a namespace shared by its members (names share one space with usernames). */
export interface Organization {
  readonly id: number;
  readonly name: string;
  readonly createdAt: Date;
}

export type MemberRole = 'owner' | 'member';

export interface Membership extends Organization {
  readonly role: MemberRole;
}

export interface OrganizationMember {
  readonly userId: number;
  readonly username: string;
  readonly role: MemberRole;
}

interface OrgRow {
  id: unknown;
  name: string;
  created_at: unknown;
}

function toOrganization(r: OrgRow): Organization {
  return { id: toNum(r.id), name: r.name, createdAt: toDate(r.created_at) };
}

export async function findOrganizationByName(db: Knex, name: string): Promise<Organization | undefined> {
  // PostgreSQL refuses a NUL in text (an error, a 500 on the web UI's /orgs/<name>/… routes): no
  // organization has one
  if (name.includes('\0')) return undefined;
  const row = (await db('organizations').select('id', 'name', 'created_at').where({ name }).first()) as OrgRow | undefined;
  return row && toOrganization(row);
}

export async function findOrganizationById(db: Knex, id: number): Promise<Organization | undefined> {
  const row = (await db('organizations').select('id', 'name', 'created_at').where({ id }).first()) as OrgRow | undefined;
  return row && toOrganization(row);
}

/**
 * Create an organization (no `id`) or rename one (`id`). Throws DbConflictError `namespace` when a user
 * has the name, `organization` when another organization does. Returns undefined when renaming an unknown id.
 */
export async function saveOrganization(db: Knex, input: { readonly id?: number; readonly name: string }): Promise<Organization | undefined> {
  try {
    return await db.transaction(async (trx) => {
      await lockName(trx, input.name);
      if (await trx('users').where({ username: input.name }).first('id')) {
        throw new DbConflictError('namespace', input.name);
      }
      const other = trx('organizations').where({ name: input.name });
      if (input.id !== undefined) void other.whereNot({ id: input.id });
      if (await other.first('id')) throw new DbConflictError('organization', input.name);
      if (input.id === undefined) {
        const [row] = (await trx('organizations')
          .insert({ name: input.name, created_at: tsValue(trx, new Date()) })
          .returning(['id', 'name', 'created_at'])) as OrgRow[];
        return toOrganization(row as OrgRow);
      }
      const n = await trx('organizations').where({ id: input.id }).update({ name: input.name });
      return n > 0 ? findOrganizationById(trx, input.id) : undefined;
    });
  } catch (e) {
    if (isUniqueViolation(e)) throw new DbConflictError('organization', input.name);
    throw e;
  }
}

/**
 * Delete an organization and its memberships (its repositories stay, under the same namespace). Its
 * name is retired, as a deleted account's (db/users.ts removeUser): nobody takes the namespace, and
 * what is stored under it, by signing up or creating an organization with the name.
 */
export async function removeOrganization(db: Knex, orgId: number): Promise<boolean> {
  return db.transaction(async (trx) => {
    const row = (await trx('organizations').where({ id: orgId }).first('name')) as { name: string } | undefined;
    if (!row) return false;
    await lockName(trx, row.name);
    const n = await trx('organizations').where({ id: orgId }).delete();
    await retireNamespace(trx, row.name);
    return n > 0;
  });
}

/** Add a member, or change the role of an existing one. */
export async function addMember(db: Knex, orgId: number, userId: number, role: MemberRole = 'member'): Promise<void> {
  try {
    await db('organization_members').insert({ org_id: orgId, user_id: userId, role }).onConflict(['org_id', 'user_id']).merge({ role });
  } catch (e) {
    // A foreign-key failure: say which side is missing.
    const code = (e as { code?: unknown }).code;
    if (code === '23503' || (code === 'SQLITE_CONSTRAINT' && /FOREIGN KEY/.test(String((e as Error).message)))) {
      if (!(await findOrganizationById(db, orgId))) throw new DbNotFoundError('organization', String(orgId));
      throw new DbNotFoundError('user', String(userId));
    }
    throw e;
  }
}

/**
 * Give a member another role, or remove them ('remove'), unless that leaves the organization
 * without an owner: 'last-owner' then, and nothing changes. The owners are read and the change made
 * in one transaction, the organization's row locked (PostgreSQL; SQLite runs one writer at a time):
 * two owners removing each other at once left the organization with none, each request having seen
 * the other still there.
 */
export async function changeMemberKeepingOwner(db: Knex, orgId: number, userId: number, change: MemberRole | 'remove'): Promise<'ok' | 'last-owner'> {
  return db.transaction(async (trx) => {
    await forUpdate(trx, trx('organizations').where({ id: orgId }).first('id'));
    if (change !== 'owner') {
      const owners = (await trx('organization_members').where({ org_id: orgId, role: 'owner' }).select('user_id')) as { user_id: unknown }[];
      if (owners.every((o) => toNum(o.user_id) === userId)) return 'last-owner';
    }
    if (change === 'remove') await removeMember(trx, orgId, userId);
    else await addMember(trx, orgId, userId, change);
    return 'ok';
  });
}

export async function removeMember(db: Knex, orgId: number, userId: number): Promise<boolean> {
  return (await db('organization_members').where({ org_id: orgId, user_id: userId }).delete()) > 0;
}

export async function findMemberRole(db: Knex, orgId: number, userId: number): Promise<MemberRole | undefined> {
  const row = (await db('organization_members').where({ org_id: orgId, user_id: userId }).first('role')) as { role: MemberRole } | undefined;
  return row?.role;
}

export async function isMember(db: Knex, orgId: number, userId: number): Promise<boolean> {
  return (await findMemberRole(db, orgId, userId)) !== undefined;
}

/** The organizations a user belongs to, by name, with the user's role in each. */
export async function listOrganizationsForUser(db: Knex, userId: number): Promise<Membership[]> {
  const rows = (await db('organizations as o')
    .join('organization_members as m', 'm.org_id', 'o.id')
    .where('m.user_id', userId)
    .orderBy('o.name')
    .select('o.id', 'o.name', 'o.created_at', 'm.role')) as (OrgRow & { role: MemberRole })[];
  return rows.map((r) => ({ ...toOrganization(r), role: r.role }));
}

/** Members of an organization, by username. */
export async function listMembers(db: Knex, orgId: number): Promise<OrganizationMember[]> {
  const rows = (await db('organization_members as m')
    .join('users as u', 'u.id', 'm.user_id')
    .where('m.org_id', orgId)
    .orderBy('u.username')
    .select('m.user_id', 'u.username', 'm.role')) as { user_id: unknown; username: string; role: MemberRole }[];
  return rows.map((r) => ({ userId: toNum(r.user_id), username: r.username, role: r.role }));
}
