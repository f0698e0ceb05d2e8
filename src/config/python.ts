/**
 * Keys of the Python registry's configuration (spec v1-protocol §8.2; its config_sample.yml and
 * config_mirror.yml) that this server does not implement. A flavored file may hold them, as the
 * files sites passed to the Python registry do: they are named in one warning at start and
 * ignored, the way distribution's internal tuning keys are. Any other unknown key still fails.
 */
export const PYTHON_ONLY_KEYS: ReadonlySet<string> = new Set([
  // Redis caches (tag mirror cache, small-file LRU), exception mail, Bugsnag
  'cache',
  'cache_lru',
  'email_exceptions',
  'bugsnag',
  // older releases: session signing key (≤ 0.6), /_versions switch (≤ 0.8)
  'secret_key',
  'debug_versions',
  // storage drivers' settings of storages this server does not have (s3_*, boto_* and swift_* are
  // our keys too: storage s3 and swift)
  'boto_debug',
  'cloudfront',
  'azure_storage_account_name',
  'azure_storage_account_key',
  'azure_storage_container',
  'azure_use_https',
  'gs_secure',
  'gs_access_key',
  'gs_secret_key',
  'oauth2',
  'storage_alternate',
  'elliptics_nodes',
  'elliptics_wait_timeout',
  'elliptics_check_timeout',
  'elliptics_io_thread_num',
  'elliptics_net_thread_num',
  'elliptics_nonblocking_io_thread_num',
  'elliptics_groups',
  'elliptics_verbosity',
  'elliptics_logfile',
  'elliptics_addr_family',
  'oss_host',
  'oss_bucket',
  'oss_accessid',
  'oss_accesskey',
]);

/**
 * Keys our schema accepts (they are the Python registry's, and the spec keeps their names) but whose
 * feature this server does not have: named in the same warning when the file gives them a value,
 * and kept (without effect).
 */
const NO_EFFECT_WHEN_SET: Readonly<Record<string, (v: unknown, values: Record<string, unknown>) => boolean>> = {
  // the standalone search always answers (spec Q7); there is no pluggable search backend
  search_backend: (v) => v !== null && v !== undefined,
  // X-Signature requests of a privileged caller (spec §4.5) are not supported
  privileged_key: (v) => v !== null && v !== undefined,
  // only the s3 driver can sign URLs: with the others layers are always streamed
  storage_redirect: (v, values) => v === true && values.storage !== 's3',
  // signature v4 is always used
  s3_use_sigv4: (v) => v === false,
};

/** Storages this build has (spec §8.2: `local` = `file`; `memory` for tests; s3 and swift: docs/storage.md). */
export const SUPPORTED_STORAGE: ReadonlySet<string> = new Set(['file', 'local', 'memory', 's3', 'swift']);

/** The message for a flavor whose storage is a plug-in this server does not have (gcs, glance, …). */
export function unsupportedStorage(storage: string): string {
  return `storage ${storage} is not supported (this build stores on the local filesystem, S3 or Swift: storage local, file, s3 or swift)`;
}

/**
 * The Python registry's environment variables for its s3 and swift flavors (its config_sample.yml
 * reads them with _env:): they fill the keys a flavor leaves unset.
 */
export const STORAGE_ENV: Readonly<Record<string, readonly [key: string, kind: 'string' | 'bool' | 'int']>> = {
  AWS_REGION: ['s3_region', 'string'],
  AWS_BUCKET: ['s3_bucket', 'string'],
  AWS_ENCRYPT: ['s3_encrypt', 'bool'],
  AWS_SECURE: ['s3_secure', 'bool'],
  AWS_KEY: ['s3_access_key', 'string'],
  AWS_SECRET: ['s3_secret_key', 'string'],
  AWS_USE_SIGV4: ['s3_use_sigv4', 'bool'],
  AWS_HOST: ['boto_host', 'string'],
  AWS_PORT: ['boto_port', 'int'],
  AWS_CALLING_FORMAT: ['boto_calling_format', 'string'],
  OS_AUTH_URL: ['swift_authurl', 'string'],
  OS_CONTAINER: ['swift_container', 'string'],
  OS_USERNAME: ['swift_user', 'string'],
  OS_PASSWORD: ['swift_password', 'string'],
  OS_TENANT_NAME: ['swift_tenant_name', 'string'],
  OS_REGION_NAME: ['swift_region_name', 'string'],
};

/** Fill unset s3_* / swift_* keys of a flavor using storage s3 or swift from STORAGE_ENV (in place). */
export function applyStorageEnv(values: Record<string, unknown>, env: NodeJS.ProcessEnv): void {
  const storage = values.storage;
  if (storage !== 's3' && storage !== 'swift') return;
  for (const [name, [key, kind]] of Object.entries(STORAGE_ENV)) {
    if (!key.startsWith(storage === 's3' ? 's3_' : 'swift_') && !(storage === 's3' && key.startsWith('boto_'))) continue;
    const raw = env[name];
    if (raw === undefined || raw === '' || (values[key] !== undefined && values[key] !== null)) continue;
    values[key] = kind === 'bool' ? /^(1|true|yes|on)$/i.test(raw) : kind === 'int' ? Number(raw) : raw;
  }
}

/**
 * Remove the Python-only keys from a flavor's values (in place) and return their names, with those
 * of our keys that are set but have no effect here, in file order, for the start-up warning.
 */
export function takePythonOnlyKeys(values: Record<string, unknown>): string[] {
  const taken: string[] = [];
  for (const k of Object.keys(values)) {
    if (PYTHON_ONLY_KEYS.has(k)) {
      taken.push(k);
      delete values[k];
    } else if (NO_EFFECT_WHEN_SET[k]?.(values[k], values) || storageKeyOfAnother(k, values.storage)) {
      taken.push(k);
    }
  }
  return taken;
}

/** An s3_ or boto_ key beside a storage other than s3, or a swift_ key beside one other than swift: no effect. */
function storageKeyOfAnother(key: string, storage: unknown): boolean {
  if (key.startsWith('s3_') || key.startsWith('boto_')) return storage !== 's3';
  if (key.startsWith('swift_')) return storage !== 'swift';
  return false;
}

/** The start-up warning naming the ignored keys. */
export function pythonOnlyWarning(keys: readonly string[]): string {
  return `${keys.join(', ')}: settings of the Python registry that this server does not implement, ignored`;
}
