/**
 * v2 / OCI distribution errors (spec v2-bridge §1.5): each code declared once with its status and
 * default message; rendered as {"errors":[{"code","message","detail"}]}.
 */
export const V2_CODES = {
  BLOB_UNKNOWN: [404, 'blob unknown to registry'],
  BLOB_UPLOAD_INVALID: [400, 'blob upload invalid'],
  BLOB_UPLOAD_UNKNOWN: [404, 'blob upload unknown to registry'],
  DIGEST_INVALID: [400, 'provided digest did not match uploaded content'],
  MANIFEST_BLOB_UNKNOWN: [400, 'blob unknown to registry'],
  MANIFEST_INVALID: [400, 'manifest invalid'],
  MANIFEST_UNKNOWN: [404, 'manifest unknown'],
  MANIFEST_UNVERIFIED: [400, 'manifest failed signature verification'],
  NAME_INVALID: [400, 'invalid repository name'],
  NAME_UNKNOWN: [404, 'repository name not known to registry'],
  SIZE_INVALID: [400, 'provided length did not match content length'],
  TAG_INVALID: [400, 'manifest tag did not match URI'],
  MANIFEST_TOO_LARGE: [413, 'manifest too large'],
  RANGE_INVALID: [416, 'invalid content range'],
  PAGINATION_NUMBER_INVALID: [400, 'invalid number of results requested'],
  UNAUTHORIZED: [401, 'authentication required'],
  DENIED: [403, 'requested access to the resource is denied'],
  UNSUPPORTED: [405, 'The operation is unsupported.'],
  TOOMANYREQUESTS: [429, 'too many requests'],
  UNAVAILABLE: [503, 'service unavailable'],
  /** not a distribution code (it answers 500): storage or the index database is full (issue 17) */
  INSUFFICIENT_STORAGE: [507, "the registry's storage is full"],
} as const satisfies Record<string, readonly [number, string]>;

export type V2Code = keyof typeof V2_CODES;

export class V2Error extends Error {
  readonly status: number;
  constructor(
    readonly code: V2Code,
    readonly detail?: unknown,
    message?: string,
    readonly headers: Readonly<Record<string, string>> = {},
  ) {
    const [status, text] = V2_CODES[code];
    super(message ?? text);
    this.name = 'V2Error';
    this.status = status;
  }
}
