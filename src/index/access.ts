import type { Knex } from 'knex';
import type { User } from '../db/users.js';
import type { Repository } from '../db/repositories.js';
import { findCollaboratorAccess } from '../db/repositories.js';
import { findMemberRole, findOrganizationByName } from '../db/organizations.js';

export interface Rights {
  readonly read: boolean;
  readonly write: boolean;
  /** Delete the repository or its tags. */
  readonly delete: boolean;
}

const NONE: Rights = { read: false, write: false, delete: false };
const ALL: Rights = { read: true, write: true, delete: true };

/**
 * Who may do what on a repository (existing or to be created in `namespace`):
 * - admins: everything; `library` is written by admins only (spec §3.13);
 * - the namespace's own user, and owners of the namespace's organization: everything;
 * - organization members: read and write;
 * - collaborators: read, or read and write;
 * - anyone, anonymous included: read on a public repository.
 */
export async function rightsOn(db: Knex, user: User | undefined, namespace: string, repo: Repository | undefined): Promise<Rights> {
  const publicRead = repo !== undefined && !repo.private;
  if (user?.admin) return ALL;
  if (!user || !user.active) return publicRead ? { ...NONE, read: true } : NONE;
  if (namespace === 'library') return publicRead ? { ...NONE, read: true } : NONE;
  if (namespace === user.username) return ALL;
  const org = await findOrganizationByName(db, namespace);
  if (org) {
    const role = await findMemberRole(db, org.id, user.id);
    if (role === 'owner') return ALL;
    if (role === 'member') return { read: true, write: true, delete: false };
  }
  if (repo) {
    const collab = await findCollaboratorAccess(db, repo.id, user.id);
    if (collab === 'write') return { read: true, write: true, delete: false };
    if (collab === 'read') return { read: true, write: false, delete: false };
  }
  return publicRead ? { ...NONE, read: true } : NONE;
}
