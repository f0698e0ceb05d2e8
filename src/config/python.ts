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
  // storage drivers' settings (meaningless beside storage local; other storages fail at start)
  's3_region',
  's3_bucket',
  's3_encrypt',
  's3_secure',
  's3_access_key',
  's3_secret_key',
  's3_use_sigv4',
  'boto_bucket',
  'boto_host',
  'boto_port',
  'boto_debug',
  'boto_calling_format',
  'cloudfront',
  'azure_storage_account_name',
  'azure_storage_account_key',
  'azure_storage_container',
  'azure_use_https',
  'gs_secure',
  'gs_access_key',
  'gs_secret_key',
  'oauth2',
  'swift_authurl',
  'swift_container',
  'swift_user',
  'swift_password',
  'swift_tenant_name',
  'swift_region_name',
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
const NO_EFFECT_WHEN_SET: Readonly<Record<string, (v: unknown) => boolean>> = {
  // the standalone search always answers (spec Q7); there is no pluggable search backend
  search_backend: (v) => v !== null && v !== undefined,
  // X-Signature requests of a privileged caller (spec §4.5) are not supported
  privileged_key: (v) => v !== null && v !== undefined,
  // the file storage cannot sign URLs: layers are always streamed
  storage_redirect: (v) => v === true,
};

/** Storages this build has (spec §8.2: `local` = `file`; `memory` for tests). */
export const SUPPORTED_STORAGE: ReadonlySet<string> = new Set(['file', 'local', 'memory']);

/** The message for a flavor whose storage is an object store or plug-in (s3, gcs, swift, glance, …). */
export function unsupportedStorage(storage: string): string {
  return `storage ${storage} is not supported yet (this build stores on the local filesystem: storage local or file)`;
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
    } else if (NO_EFFECT_WHEN_SET[k]?.(values[k])) {
      taken.push(k);
    }
  }
  return taken;
}

/** The start-up warning naming the ignored keys. */
export function pythonOnlyWarning(keys: readonly string[]): string {
  return `${keys.join(', ')}: settings of the Python registry that this server does not implement, ignored`;
}
