import { mkdir } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { StorageDriver } from '../driver.js';
import { STALE_TEMP_AGE_MS, cleanStaleTempFiles, createFilesystemDriver, onLocalFs } from './filesystem.js';
import { createMemoryDriver } from './memory.js';
import type { RedirectingDriver, S3DriverOptions } from './s3.js';
import { createSwiftDriver, swiftOptions } from './swift.js';

export { cleanStaleTempFiles, createFilesystemDriver, isTempFileName, keyToPath, STALE_TEMP_AGE_MS } from './filesystem.js';
export type { FilesystemDriverOptions } from './filesystem.js';
export { createMemoryDriver } from './memory.js';
// s3.ts (and the AWS SDK under it, ~25 MiB of RSS) loads only when storage is s3: see createDriver.
export type { RedirectingDriver, S3DriverOptions } from './s3.js';

/** Whether a driver hands out pre-signed GET URLs (s3.ts's test, here so that asking loads no SDK). */
export function canRedirect(d: StorageDriver): d is RedirectingDriver {
  return typeof (d as Partial<RedirectingDriver>).redirectURL === 'function';
}
export { createSwiftDriver, swiftOptions, type SwiftDriverOptions } from './swift.js';

/** The configuration keys that choose and place the storage driver (same names as the config file). */
export interface DriverConfig {
  /** 'file' and 'local' are the same filesystem driver (both names exist in old configs). */
  readonly storage: 'file' | 'local' | 'memory' | 's3' | 'swift';
  /** Root directory of the filesystem driver (relative to the working directory if not absolute); key prefix of s3 and swift. */
  readonly storage_path: string;
  /** file: blocking calls on one name (FilesystemDriverOptions 'metadata'); null/absent: on a local file system. */
  readonly storage_blocking_calls?: boolean | null;
  readonly s3_bucket?: string | null;
  readonly boto_bucket?: string | null;
  readonly s3_region?: string | null;
  readonly s3_endpoint?: string | null;
  readonly boto_host?: string | null;
  readonly boto_port?: number | null;
  readonly s3_secure?: boolean | null;
  readonly boto_calling_format?: string | null;
  readonly s3_force_path_style?: boolean | null;
  readonly s3_access_key?: string | null;
  readonly s3_secret_key?: string | null;
  readonly s3_session_token?: string | null;
  readonly s3_encrypt?: boolean | null;
  readonly s3_kms_key_id?: string | null;
  readonly s3_storage_class?: string | null;
  readonly s3_part_size?: number;
  readonly s3_skip_verify?: boolean;
  readonly swift_authurl?: string | null;
  readonly swift_container?: string | null;
  readonly swift_user?: string | null;
  readonly swift_password?: string | null;
  readonly swift_auth_version?: 1 | 2 | 3 | null;
  readonly swift_tenant_name?: string | null;
  readonly swift_tenant_id?: string | null;
  readonly swift_domain_name?: string | null;
  readonly swift_domain_id?: string | null;
  readonly swift_tenant_domain_name?: string | null;
  readonly swift_tenant_domain_id?: string | null;
  readonly swift_trust_id?: string | null;
  readonly swift_region_name?: string | null;
  readonly swift_endpoint_type?: string | null;
  readonly swift_segment_size?: number;
  readonly swift_insecure_skip_verify?: boolean;
}

/** The key prefix of an object store from storage_path: `/registry` and `./registry/` give `registry`. */
export function objectPrefix(storagePath: string): string {
  return storagePath
    .replace(/^(\.\/)+/, '')
    .replace(/^\/+|\/+$/g, '')
    .replace(/^\.$/, '');
}

/** The S3 driver's options from the config keys (Python's s3_* / boto_*, distribution's mapped onto them). */
export function s3Options(config: DriverConfig): S3DriverOptions {
  const bucket = config.s3_bucket ?? config.boto_bucket;
  if (!bucket) throw new Error('storage s3: s3_bucket is required (distribution: storage.s3.bucket; Python: s3_bucket, boto_bucket or AWS_BUCKET)');
  let endpoint = config.s3_endpoint ?? undefined;
  if (!endpoint && config.boto_host) {
    const secure = config.s3_secure ?? true;
    endpoint = `${secure ? 'https' : 'http'}://${config.boto_host}${config.boto_port ? `:${config.boto_port}` : ''}`;
  }
  if (endpoint) {
    try {
      const u = new URL(endpoint);
      if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error('not http(s)');
    } catch {
      throw new Error(`storage s3: endpoint ${JSON.stringify(endpoint)} is not an http(s) URL`);
    }
  }
  // boto's OrdinaryCallingFormat puts the bucket in the path; SubdomainCallingFormat in the host name
  const calling = config.boto_calling_format ?? '';
  const pathStyle = config.s3_force_path_style ?? (/ordinary/i.test(calling) ? true : /subdomain|vhost/i.test(calling) ? false : undefined);
  if ((config.s3_access_key && !config.s3_secret_key) || (!config.s3_access_key && config.s3_secret_key)) {
    throw new Error('storage s3: give both s3_access_key and s3_secret_key, or neither (the AWS credential chain is used then)');
  }
  return {
    bucket,
    rootDirectory: objectPrefix(config.storage_path),
    ...(config.s3_region ? { region: config.s3_region } : {}),
    ...(endpoint ? { endpoint } : {}),
    ...(pathStyle !== undefined ? { forcePathStyle: pathStyle } : {}),
    ...(config.s3_access_key && config.s3_secret_key ? { accessKeyId: config.s3_access_key, secretAccessKey: config.s3_secret_key } : {}),
    ...(config.s3_session_token ? { sessionToken: config.s3_session_token } : {}),
    ...(config.s3_encrypt ? { encrypt: true } : {}),
    ...(config.s3_kms_key_id ? { kmsKeyId: config.s3_kms_key_id } : {}),
    ...(config.s3_storage_class ? { storageClass: config.s3_storage_class } : {}),
    ...(config.s3_part_size ? { partSize: config.s3_part_size } : {}),
    ...(config.s3_skip_verify ? { skipVerify: true } : {}),
  };
}

/** An object store driver once its container answers (bad settings fail at start, clearly). */
async function checked<D extends StorageDriver & { check(): Promise<void> }>(driver: D): Promise<D> {
  try {
    await driver.check();
  } catch (e) {
    await driver.close?.();
    throw e;
  }
  return driver;
}

/**
 * The sweep of a filesystem driver's stale temporary files (cleanStaleTempFiles over the whole
 * root), handed to the caller to run when it wants; `signal` stops it between two directories.
 */
export type TempFileSweep = (signal: AbortSignal) => Promise<number>;

export interface CreateDriverOptions {
  /** The filesystem driver's small calls made as blocking calls (FilesystemDriverOptions.blocking). */
  readonly blocking?: boolean;
  /**
   * Given: the filesystem driver's startup sweep is handed to it instead of run before createDriver
   * returns (a server runs it while it serves: the walk takes ~1.6 s per 30,000 v1 images).
   */
  readonly deferSweep?: (sweep: TempFileSweep) => void;
}

/**
 * Which calls of the filesystem driver block (FilesystemDriverOptions.blocking): all the small ones
 * for the import (it alone uses its event loop); for a server, those on one name when
 * storage_blocking_calls says so or, unset, when root lies on a local file system (onLocalFs), and
 * none on a network one.
 */
export async function filesystemCalls(
  config: Pick<DriverConfig, 'storage_blocking_calls'>,
  root: string,
  options: CreateDriverOptions = {},
): Promise<boolean | 'metadata'> {
  if (options.blocking === true) return true;
  return (config.storage_blocking_calls ?? (await onLocalFs(root))) ? 'metadata' : false;
}

/**
 * Builds the configured driver. For the filesystem driver it also creates the root directory and
 * removes temporary files a killed process left there (older than STALE_TEMP_AGE_MS, so files of
 * other nodes sharing the directory, or of this process's own writes, are safe): a walk of the
 * whole key tree, before it returns unless `deferSweep` takes it. Object stores are checked once
 * (bucket reachable, credentials accepted): a bad setting fails here with a message naming it,
 * rather than on the first push.
 */
export async function createDriver(config: DriverConfig, options: CreateDriverOptions = {}): Promise<StorageDriver> {
  const storage: unknown = config.storage; // the config may come from anywhere at runtime
  switch (config.storage) {
    case 'file':
    case 'local': {
      const root = resolve(config.storage_path);
      await mkdir(root, { recursive: true });
      const driver = createFilesystemDriver({ root, blocking: await filesystemCalls(config, root, options) });
      await driver.list(''); // fails early when the root cannot be used
      const sweep: TempFileSweep = (signal) => cleanStaleTempFiles(root, STALE_TEMP_AGE_MS, Date.now(), signal);
      if (options.deferSweep) options.deferSweep(sweep);
      else await sweep(new AbortController().signal);
      return driver;
    }
    case 'memory':
      return createMemoryDriver();
    case 's3': {
      const options = s3Options(config);
      const { createS3Driver } = await import('./s3.js');
      return checked(createS3Driver(options));
    }
    case 'swift':
      return checked(createSwiftDriver(swiftOptions(config)));
    default:
      config.storage satisfies never; // a new name in DriverConfig must get a case above
      throw new Error(`storage: unknown storage driver ${JSON.stringify(storage)} (expected file, local, s3, swift or memory)`);
  }
}
