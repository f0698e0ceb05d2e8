/**
 * Typed failures of the data layer. Services translate them into client-visible errors (STYLE: a raw knex
 * or driver error never reaches a client).
 */

/** What a conflicting write collided with. `namespace`: users and organizations share one name space. */
export type ConflictField = 'username' | 'email' | 'namespace' | 'organization' | 'repository';

/** A uniqueness rule refused the write. */
export class DbConflictError extends Error {
  constructor(
    readonly field: ConflictField,
    readonly value: string,
  ) {
    super(`${field} already exists: ${value}`);
    this.name = 'DbConflictError';
  }
}

/** A row the operation needs does not exist (e.g. adding a member to an unknown organization). */
export class DbNotFoundError extends Error {
  constructor(
    readonly entity: 'user' | 'organization' | 'repository',
    readonly key: string,
  ) {
    super(`${entity} not found: ${key}`);
    this.name = 'DbNotFoundError';
  }
}

/**
 * Deleting the account would leave organizations without an owner (it is the only one of each):
 * nobody but an admin could manage them any more. `organizations`: their names, sorted.
 */
export class DbSoleOwnerError extends Error {
  constructor(
    readonly username: string,
    readonly organizations: readonly string[],
  ) {
    super(`${username} is the only owner of ${organizations.join(', ')}`);
    this.name = 'DbSoleOwnerError';
  }
}

/** The configured database URL is not one we can open. */
export class DbUrlError extends Error {
  constructor(readonly url: string) {
    super(`unsupported database URL (expected sqlite:… or postgresql://…): ${url.replace(/\/\/[^@/]*@/, '//***@')}`);
    this.name = 'DbUrlError';
  }
}

export function isDbConflictError(e: unknown): e is DbConflictError {
  return e instanceof DbConflictError;
}
