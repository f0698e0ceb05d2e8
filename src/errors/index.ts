import { STRING_BODY_CODES, V1_CODES, type V1Code } from './codes.js';

export { STRING_BODY_CODES, V1_CODES, type V1Code };

/**
 * The one error type a client can see. Handlers choose a code (and optionally a message or detail);
 * status and default message come from the code table. Rendered per surface by http/.
 */
export class RegistryError extends Error {
  readonly status: number;
  constructor(
    readonly code: V1Code,
    message?: string,
    readonly headers: Readonly<Record<string, string>> = {},
    readonly detail?: unknown,
  ) {
    const [status, text] = V1_CODES[code];
    super(message ?? text);
    this.name = 'RegistryError';
    this.status = status;
  }
}

export const v1Error = (code: V1Code, message?: string, headers?: Record<string, string>): RegistryError => new RegistryError(code, message, headers);

export function isRegistryError(e: unknown): e is RegistryError {
  return e instanceof RegistryError;
}

/**
 * A write refused because a disk is full: storage (ENOSPC, EDQUOT, or a driver's StorageFullError)
 * or the index database (SQLite SQLITE_FULL, PostgreSQL 53100). Looks through `cause` chains.
 */
export function isStorageFull(e: unknown): boolean {
  for (let x: unknown = e, depth = 0; x && typeof x === 'object' && depth < 8; x = (x as { cause?: unknown }).cause, depth++) {
    const code = String((x as { code?: unknown }).code ?? '');
    if (code === 'ENOSPC' || code === 'EDQUOT' || code === 'SQLITE_FULL' || code === '53100') return true;
    if ((x as { name?: unknown }).name === 'StorageFullError') return true;
    if (/SQLITE_FULL|No space left on device/i.test(String((x as { message?: unknown }).message ?? ''))) return true;
  }
  return false;
}

/** The storage cannot be reached (a driver's StorageUnavailableError, also as a `cause`): 503. */
export function isStorageUnavailable(e: unknown): boolean {
  for (let x: unknown = e, depth = 0; x && typeof x === 'object' && depth < 8; x = (x as { cause?: unknown }).cause, depth++) {
    if ((x as { name?: unknown }).name === 'StorageUnavailableError') return true;
  }
  return false;
}
