import type { Config } from '../config/schema.js';
import { ConfigError } from '../config/load.js';
import { requireAdvertisedNames } from '../config/advertise.js';
import type { Logger } from '../log/logger.js';

export type Role = 'all' | 'registry' | 'index';

/** Which services run in this process and how they authenticate, decided once from the config. */
export interface Site {
  readonly config: Config;
  /** The config with `standalone` resolved: what the routes see. */
  readonly effective: Config;
  readonly role: Role;
  readonly standalone: boolean;
  /** v2 authentication (spec v2-bridge §4). */
  readonly v2Auth: 'none' | 'token' | 'htpasswd';
  /** This process runs the index (accounts, database, tokens). */
  readonly runIndex: boolean;
  /** This process serves /v2/. */
  readonly runV2: boolean;
  readonly version: string;
  readonly log: Logger;
}

/**
 * Which services run here (spec §4.1), with the configuration errors of their combination: unset
 * `standalone` means token checks against this process's index for `serve`, and a standalone
 * registry for `serve --only registry` unless an index_endpoint is configured.
 */
export function resolveSite(config: Config, role: Role, opts: { readonly version: string; readonly log: Logger; readonly ownDriver: boolean }): Site {
  const standalone = config.standalone ?? (role === 'registry' ? config.index_endpoint === null : false);
  if (role === 'registry' && !standalone && !config.disable_token_auth && config.index_endpoint === null) {
    throw new ConfigError('invalid configuration:\n  index_endpoint: required when a registry runs alone with standalone: false');
  }
  // spec v2-bridge §4: unset v2_auth ⇒ Bearer tokens of the index when there is one, nothing on a
  // standalone registry (or when another layer does the auth: disable_token_auth).
  const v2Auth = config.v2_auth ?? (standalone || config.disable_token_auth ? 'none' : 'token');
  if (v2Auth === 'htpasswd' && !config.htpasswd_path) {
    throw new ConfigError('invalid configuration:\n  htpasswd_path: required with v2_auth: htpasswd');
  }
  if (v2Auth === 'htpasswd' && !standalone && role !== 'index') {
    // The index's accounts decide who may do what (v1 tokens, v2 Bearer tokens, repository owners);
    // a second account list beside them would create repositories nobody in the index owns.
    throw new ConfigError(
      'invalid configuration:\n  v2_auth: htpasswd is for a registry without an index (standalone: true); with an index, v2 clients log in with index accounts (v2_auth: token)',
    );
  }
  if (config.nginx_x_accel_redirect !== null && (opts.ownDriver || (config.storage !== 'file' && config.storage !== 'local'))) {
    throw new ConfigError('invalid configuration:\n  nginx_x_accel_redirect: needs the filesystem storage (nginx serves its files)');
  }
  const runIndex = role === 'index' || (role === 'all' && !standalone);
  requireAdvertisedNames(config, { v2Tokens: config.v2 && role !== 'index' && v2Auth === 'token', index: runIndex || standalone });
  if (runIndex && (config.storage === 's3' || config.storage === 'swift') && !config.sqlalchemy_index_database) {
    throw new ConfigError(
      `invalid configuration:\n  sqlalchemy_index_database: required with storage ${config.storage} when this process runs the index (its database cannot live in the bucket): postgresql://… or sqlite:////path/index.db`,
    );
  }
  return {
    config,
    effective: Object.freeze({ ...config, standalone }),
    role,
    standalone,
    v2Auth,
    runIndex,
    runV2: config.v2 && role !== 'index',
    version: opts.version,
    log: opts.log,
  };
}
