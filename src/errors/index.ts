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

export const v1Error = (code: V1Code, message?: string, headers?: Record<string, string>): RegistryError =>
  new RegistryError(code, message, headers);

export function isRegistryError(e: unknown): e is RegistryError {
  return e instanceof RegistryError;
}
