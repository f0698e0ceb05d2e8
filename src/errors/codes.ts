/**
 * Every error a client can see, declared once: code → HTTP status and default message.
 * v1 messages are the exact strings old clients and the Python registry use (spec v1-protocol §2, §3).
 */
export const V1_CODES = {
  NOT_FOUND: [404, 'Not found'],
  INSUFFICIENT_STORAGE: [507, "Insufficient storage: the registry's storage is full"],
  IMAGE_NOT_FOUND: [404, 'Image not found'],
  INVALID_IMAGE_ID: [404, 'Invalid image ID'],
  IMAGE_UPLOADING: [400, 'Image is being uploaded, retry later'],
  INVALID_JSON: [400, 'Invalid JSON'],
  MISSING_ID: [400, "Missing key `id' in JSON"],
  ID_MISMATCH: [400, 'JSON data contains invalid id'],
  NOT_IN_REPOSITORY: [400, 'This image does not belong to the repository'],
  PARENT_MISSING: [400, 'Image depends on a non existing parent'],
  PARENT_UNAUTHORIZED: [400, 'Image depends on an unauthorized parent'],
  ANCESTRY_TOO_LONG: [400, 'Image ancestry too long'],
  IMAGE_EXISTS: [409, 'Image already exists'],
  OLD_CLIENT: [412, 'This endpoint does not support Docker daemons older than 0.10'],
  PAYLOAD_NOT_SET: [412, 'X-Docker-Checksum-Payload not set.  If you are using the Docker daemon, you should upgrade to version 0.10 or later'],
  CHECKSUM_MISSING: [400, "Missing Image's checksum"],
  CHECKSUM_CANNOT_SET: [409, 'Cannot set this image checksum'],
  CHECKSUM_MISMATCH: [400, 'Checksum mismatch'],
  LAYER_MISSING: [400, 'Image has no layer: PUT /v1/images/<id>/layer first'],
  LAYER_TOO_LARGE: [413, 'Layer too large'],
  LAYER_FORMAT: [400, 'Layer format not supported'],
  BODY_TOO_LARGE: [413, 'Request body too large'],
  UNSUPPORTED_MEDIA_TYPE: [415, 'Unsupported Content-Type'],
  UPLOAD_INCOMPLETE: [400, 'Upload incomplete: the body ended before Content-Length bytes'],
  REPOSITORY_NOT_FOUND: [404, 'Repository not found'],
  TAG_NOT_FOUND: [404, 'Tag not found'],
  INVALID_TAG: [400, 'Invalid tag name (must match ^[\\w][\\w.-]{0,127}$)'],
  INVALID_DATA: [400, 'Invalid data'],
  DECODE_JSON: [400, 'Error Decoding JSON'],
  INVALID_REPOSITORY_NAME: [400, 'Invalid repository name'],
  IMAGES_NOT_FOUND: [404, 'images not found'],
  IMAGE_LIST_TOO_LARGE: [413, 'Repository image list too large'],
  DIFF_DISABLED: [400, 'Diff queue is disabled'],
  REQUIRES_AUTHORIZATION: [401, 'Requires authorization'],
  METHOD_NOT_ALLOWED: [405, 'Method not allowed'],
  // Index (spec §3): these answer with a bare JSON string body, as the Hub did.
  USER_EXISTS: [400, 'Username or email already exists'],
  USER_INVALID: [400, 'Invalid account data'],
  SIGNUP_DISABLED: [401, 'Account creation is disabled on this index'],
  LOGIN_REQUIRED: [401, 'Authentication is required'],
  ACCOUNT_INACTIVE: [403, 'Account is not Active'],
  ACCESS_DENIED: [403, 'Access denied'],
  TOO_MANY_LOGINS: [429, 'Too many failed logins: retry later'],
  TOO_MANY_DELIVERIES: [429, 'Too many deliveries of this webhook are still unfinished (tests or pushes): retry later'],
  USER_NOT_FOUND: [404, 'User not found'],
  BAD_REQUEST: [400, 'Bad request'],
  UNAVAILABLE: [503, 'Service unavailable'],
  INTERNAL: [500, 'Internal server error'],
} as const satisfies Record<string, readonly [number, string]>;

export type V1Code = keyof typeof V1_CODES;

/** Codes whose body is the message as a JSON string (`"Account is not Active"`), not `{"error": …}`. */
export const STRING_BODY_CODES: ReadonlySet<V1Code> = new Set<V1Code>([
  'USER_EXISTS',
  'USER_INVALID',
  'SIGNUP_DISABLED',
  'LOGIN_REQUIRED',
  'ACCOUNT_INACTIVE',
  'ACCESS_DENIED',
  'TOO_MANY_LOGINS',
  'USER_NOT_FOUND',
]);
