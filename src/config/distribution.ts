import { parse } from 'yaml';
import { parseGoDuration } from './go-duration.js';

/**
 * distribution's `config.yml` (spec v2-bridge §5.1) and its `REGISTRY_*` environment overrides
 * (§5.2), mapped onto our flat configuration keys (src/config/schema.ts).
 *
 * The file is recognised by its top-level `version` key. Keys we implement are mapped; keys that
 * only tune distribution internals are accepted and reported as ignored; keys whose absence of an
 * implementation would change what the registry does (other storage drivers, a proxy upstream,
 * a URL prefix, unix sockets, Let's Encrypt) are errors, so a deployment never
 * starts doing something else than its file says.
 */

/** One mapping problem: where in the distribution tree, and what. */
export interface DistIssue {
  readonly path: readonly string[];
  readonly message: string;
}

export interface DistMapping {
  /** Our keys (src/config/schema.ts), before validation. */
  readonly values: Record<string, unknown>;
  /** Our key → the distribution path it came from (for error messages). */
  readonly origin: Record<string, readonly string[]>;
  readonly errors: DistIssue[];
  /** Accepted but without effect here, or environment variables that address nothing. */
  readonly warnings: string[];
}

// ---------------------------------------------------------------- the shape of distribution's Configuration

/**
 * How §5.2 walks the tree: a struct matches the variable's part against its Go field names
 * (case-insensitive) and descends into the field's YAML key; a map takes the part, lower-cased, as
 * the key (an existing key matching case-insensitively is reused); `any` is a leaf of any type.
 */
type Shape = { kind: 'struct'; fields: Record<string, [yamlKey: string, shape: Shape]> } | { kind: 'map' } | { kind: 'any' };

const ANY: Shape = { kind: 'any' };
const MAP: Shape = { kind: 'map' };
/** fields given as [GoFieldName, yamlKey?, shape?]; the YAML key defaults to the lower-cased name. */
function struct(...fields: [go: string, yaml?: string, shape?: Shape][]): Shape {
  const out: Record<string, [string, Shape]> = {};
  for (const [go, yaml, shape] of fields) out[go.toUpperCase()] = [yaml ?? go.toLowerCase(), shape ?? ANY];
  return { kind: 'struct', fields: out };
}
const leaves = (...names: string[]): [string][] => names.map((n) => [n]);

/** distribution 2.8's configuration.Configuration, with the 3.x additions users bring too. */
const CONFIGURATION: Shape = struct(
  ['Version'],
  ['Log', 'log', struct(['AccessLog', 'accesslog', struct(['Disabled'])], ['Level'], ['Formatter'], ['Fields', 'fields', MAP], ['Hooks'], ['ReportCaller'])],
  ['Loglevel'],
  ['Storage', 'storage', MAP],
  ['Auth', 'auth', MAP],
  ['Middleware', 'middleware', MAP],
  [
    'Reporting',
    'reporting',
    struct(
      ['Bugsnag', 'bugsnag', struct(...leaves('APIKey', 'ReleaseStage', 'Endpoint'))],
      ['NewRelic', 'newrelic', struct(...leaves('LicenseKey', 'Name', 'Verbose'))],
    ),
  ],
  [
    'HTTP',
    'http',
    struct(
      ...leaves('Addr', 'Net', 'Host', 'Prefix', 'Secret', 'RelativeURLs', 'DrainTimeout'),
      [
        'TLS',
        'tls',
        struct(...leaves('Certificate', 'Key', 'ClientCAs', 'MinimumTLS', 'CipherSuites', 'ClientAuth'), [
          'LetsEncrypt',
          'letsencrypt',
          struct(...leaves('CacheFile', 'Email', 'Hosts', 'DirectoryURL')),
        ]),
      ],
      ['Headers', 'headers', MAP],
      ['Debug', 'debug', struct(['Addr'], ['Prometheus', 'prometheus', struct(['Enabled'], ['Path'])])],
      ['HTTP2', 'http2', struct(['Disabled'])],
      ['H2C', 'h2c', struct(['Enabled'])],
    ),
  ],
  ['Notifications', 'notifications', struct(['Events', 'events', struct(['IncludeReferences'])], ['Endpoints'])],
  [
    'Redis',
    'redis',
    struct(
      ...leaves('Addr', 'Password', 'DB', 'DialTimeout', 'ReadTimeout', 'WriteTimeout'),
      ['Pool', 'pool', struct(...leaves('MaxIdle', 'MaxActive', 'IdleTimeout'))],
      ['TLS', 'tls', struct(['Enabled'])],
    ),
  ],
  [
    'Health',
    'health',
    struct(
      ['FileCheckers', 'file'],
      ['HTTPCheckers', 'http'],
      ['TCPCheckers', 'tcp'],
      ['StorageDriver', 'storagedriver', struct(...leaves('Enabled', 'Interval', 'Threshold'))],
    ),
  ],
  ['Proxy', 'proxy', struct(...leaves('RemoteURL', 'Username', 'Password', 'TTL'))],
  ['Compatibility', 'compatibility', struct(['Schema1', 'schema1', struct(['TrustKey', 'signingkeyfile'], ['Enabled'])])],
  ['Validation', 'validation', struct(['Enabled'], ['Disabled'], ['Manifests', 'manifests', struct(['URLs', 'urls', struct(['Allow'], ['Deny'])])])],
  ['Policy', 'policy', struct(['Repository', 'repository', struct(['Classes'])])],
  ['Catalog', 'catalog', struct(['MaxEntries'])],
  ['Tags', 'tags', struct(['MaxTags'])],
  /** Our own keys inside a distribution file (a map: REGISTRY_LEGACY_<KEY> for keys without `_`). */
  ['Legacy', 'legacy', MAP],
);

type Tree = Record<string, unknown>;
const isTree = (v: unknown): v is Tree => v !== null && typeof v === 'object' && !Array.isArray(v);

/** Sections that accept a bare string as "this provider with no parameters" (`REGISTRY_AUTH=htpasswd`). */
function sectionValue(path: readonly string[], value: unknown): unknown {
  if (path.length === 1 && (path[0] === 'auth' || path[0] === 'storage') && typeof value === 'string') return { [value]: {} };
  return value;
}

function yamlValue(raw: string): unknown {
  try {
    return parse(raw) as unknown;
  } catch {
    return raw;
  }
}

/**
 * Apply every `REGISTRY_*` variable of env to the tree (in place), in lexical order of the names
 * (§5.2). Returns the variables that addressed nothing, and the tree paths that were set.
 */
export function applyRegistryEnv(tree: Tree, env: NodeJS.ProcessEnv): { ignored: string[]; set: Map<string, string> } {
  const ignored: string[] = [];
  const set = new Map<string, string>();
  const names = Object.keys(env)
    .filter((n) => n.startsWith('REGISTRY_') && env[n] !== undefined)
    .sort();
  for (const name of names) {
    if (name === 'REGISTRY_CONFIGURATION_PATH') continue;
    const parts = name.slice('REGISTRY_'.length).split('_');
    if (parts.some((p) => p === '')) {
      ignored.push(name);
      continue;
    }
    const target = resolvePath(CONFIGURATION, tree, parts);
    if (!target) {
      ignored.push(name);
      continue;
    }
    const { node, key, path } = target;
    node[key] = sectionValue(path, yamlValue(env[name]!));
    set.set(path.join('.'), name);
  }
  return { ignored, set };
}

/** Find (creating maps on the way) the node and key a variable's parts address. */
function resolvePath(shape: Shape, tree: Tree, parts: string[]): { node: Tree; key: string; path: string[] } | undefined {
  let node = tree;
  let s: Shape = shape;
  const path: string[] = [];
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i]!.toUpperCase();
    let key: string;
    let next: Shape;
    if (s.kind === 'struct') {
      const f = s.fields[part];
      if (!f) return undefined;
      [key, next] = f;
      if (i === 0 && key === 'version') return undefined; // read from the file only
    } else if (s.kind === 'map' || s.kind === 'any') {
      key = Object.keys(node).find((k) => k.toUpperCase() === part) ?? part.toLowerCase();
      next = { kind: 'any' };
    } else return undefined;
    path.push(key);
    if (i === parts.length - 1) return { node, key, path };
    let child = node[key];
    if (!isTree(child)) {
      // a section given as a bare string (`auth: htpasswd`) is that provider with no parameters
      child = typeof child === 'string' && path.length === 1 ? { [child]: {} } : {};
      node[key] = child;
    }
    node = child as Tree;
    s = next;
  }
  return undefined;
}

// ---------------------------------------------------------------- mapping onto our keys

const DRIVERS_KNOWN = new Set(['s3', 's3-aws', 'azure', 'gcs', 'swift', 'oss', 'ossaws', 'cos', 'cloudfront']);
/** storage keys that configure the storage layer rather than name a driver. */
const STORAGE_PARAMS = new Set(['delete', 'cache', 'redirect', 'maintenance', 'tag']);
const TLS_VERSIONS: Record<string, string> = { 'tls1.0': 'TLSv1', 'tls1.1': 'TLSv1.1', 'tls1.2': 'TLSv1.2', 'tls1.3': 'TLSv1.3' };

/**
 * Map a parsed distribution configuration (after the environment overrides) onto our keys.
 * Our own keys under `legacy:` are applied last and win.
 */
export function mapDistribution(tree: Tree): DistMapping {
  const values: Record<string, unknown> = {};
  const origin: Record<string, readonly string[]> = {};
  const errors: DistIssue[] = [];
  const warnings: string[] = [];
  const put = (key: string, value: unknown, from: string[]): void => {
    values[key] = value;
    origin[key] = from;
  };
  const err = (path: string[], message: string): void => {
    errors.push({ path, message });
  };
  const ignore = (path: string[], why: string): void => {
    warnings.push(`${path.join('.')}: ignored (${why})`);
  };
  const obj = (v: unknown, path: string[]): Tree | undefined => {
    if (v === undefined || v === null) return undefined;
    if (!isTree(v)) {
      err(path, `expected a mapping, got ${JSON.stringify(v)}`);
      return undefined;
    }
    return v;
  };
  const duration = (v: unknown, path: string[]): number | undefined => {
    if (v === undefined || v === null) return undefined;
    try {
      return parseGoDuration(v);
    } catch (e) {
      err(path, (e as Error).message);
      return undefined;
    }
  };
  const bool = (v: unknown, path: string[]): boolean | undefined => {
    if (v === undefined || v === null) return undefined;
    if (typeof v === 'boolean') return v;
    if (v === 'true' || v === 'false') return v === 'true';
    err(path, `expected true or false, got ${JSON.stringify(v)}`);
    return undefined;
  };

  // version (§5.1): required, 0.1
  const version = tree.version;
  if (version === undefined || version === null) err(['version'], 'required (0.1)');
  else if (String(version) !== '0.1') err(['version'], `unsupported configuration version ${JSON.stringify(version)} (0.1 is)`);

  // A distribution file describes a v2 registry on its own: no index unless `legacy:` adds one.
  put('v2', true, ['version']);
  put('standalone', true, ['version']);

  // ---- log
  const log = obj(tree.log, ['log']);
  const level = log?.level ?? tree.loglevel;
  if (level !== undefined && level !== null) {
    const from = log?.level !== undefined ? ['log', 'level'] : ['loglevel'];
    const map: Record<string, string> = {
      debug: 'debug',
      info: 'info',
      warn: 'warn',
      warning: 'warn',
      error: 'error',
      fatal: 'error',
      panic: 'error',
      trace: 'debug',
    };
    const ours = map[String(level).toLowerCase()];
    if (ours) put('loglevel', ours, from);
    else err(from, `unknown log level ${JSON.stringify(level)} (error, warn, info or debug)`);
  }
  if (log) {
    if (log.formatter !== undefined && log.formatter !== null) {
      const f = String(log.formatter);
      if (f === 'text') put('log_format', 'text', ['log', 'formatter']);
      else if (f === 'json' || f === 'logstash') put('log_format', 'json', ['log', 'formatter']);
      else err(['log', 'formatter'], `unknown formatter ${JSON.stringify(f)} (text, json or logstash)`);
    }
    const fields = obj(log.fields, ['log', 'fields']);
    if (fields) put('log_fields', fields, ['log', 'fields']);
    const access = obj(log.accesslog, ['log', 'accesslog']);
    const disabled = bool(access?.disabled, ['log', 'accesslog', 'disabled']);
    if (disabled !== undefined) put('access_log', !disabled, ['log', 'accesslog', 'disabled']);
    if (log.hooks) ignore(['log', 'hooks'], 'log hooks (mail) are not implemented');
    if (log.reportcaller) ignore(['log', 'reportcaller'], 'not implemented');
  }

  const str = (v: unknown, path: string[]): string | undefined => {
    if (v === undefined || v === null || v === '') return undefined;
    if (typeof v === 'string' || typeof v === 'number') return String(v);
    err(path, `expected a string, got ${JSON.stringify(v)}`);
    return undefined;
  };
  const size = (v: unknown, path: string[], min: number): number | undefined => {
    if (v === undefined || v === null || v === '') return undefined;
    const n = typeof v === 'number' ? v : /^\d+$/.test(String(v)) ? Number(v) : NaN;
    if (!Number.isSafeInteger(n) || n < min) {
      err(path, `expected a size in bytes of at least ${min}, got ${JSON.stringify(v)}`);
      return undefined;
    }
    return n;
  };
  /** storage.s3 (distribution 2.8 docs/storage-drivers/s3.md, and 3.x's forcepathstyle) onto our s3_* keys. */
  const mapS3 = (p: Tree, at: string[]): void => {
    const k = (name: string): string[] => [...at, name];
    put('storage', 's3', at);
    const bucket = str(p.bucket, k('bucket'));
    if (!bucket) err(k('bucket'), 'required');
    else put('s3_bucket', bucket, k('bucket'));
    const region = str(p.region, k('region'));
    if (region) put('s3_region', region, k('region'));
    const endpoint = str(p.regionendpoint, k('regionendpoint'));
    if (endpoint) {
      // distribution accepts a bare host too; the scheme then follows `secure`
      const secure = bool(p.secure, k('secure')) ?? true;
      put('s3_endpoint', /^[a-z][a-z0-9+.-]*:\/\//i.test(endpoint) ? endpoint : `${secure ? 'https' : 'http'}://${endpoint}`, k('regionendpoint'));
    } else if (bool(p.secure, k('secure')) === false) {
      ignore(k('secure'), 'AWS is reached over https');
    }
    const fps = bool(p.forcepathstyle, k('forcepathstyle'));
    // 2.8 always uses path style with regionendpoint; 3.x made it a key
    put('s3_force_path_style', fps ?? (endpoint ? true : null), fps === undefined ? k('regionendpoint') : k('forcepathstyle'));
    const ak = str(p.accesskey, k('accesskey'));
    const sk = str(p.secretkey, k('secretkey'));
    if (ak) put('s3_access_key', ak, k('accesskey'));
    if (sk) put('s3_secret_key', sk, k('secretkey'));
    const st = str(p.sessiontoken, k('sessiontoken'));
    if (st) put('s3_session_token', st, k('sessiontoken'));
    const enc = bool(p.encrypt, k('encrypt'));
    if (enc !== undefined) put('s3_encrypt', enc, k('encrypt'));
    const keyid = str(p.keyid, k('keyid'));
    if (keyid) put('s3_kms_key_id', keyid, k('keyid'));
    const skip = bool(p.skipverify, k('skipverify'));
    if (skip !== undefined) put('s3_skip_verify', skip, k('skipverify'));
    const chunk = size(p.chunksize, k('chunksize'), 5 * 1024 * 1024);
    if (chunk !== undefined) put('s3_part_size', chunk, k('chunksize'));
    const sc = str(p.storageclass, k('storageclass'));
    if (sc) put('s3_storage_class', sc, k('storageclass'));
    const root = str(p.rootdirectory, k('rootdirectory'));
    put('storage_path', root ?? '/', root === undefined ? at : k('rootdirectory'));
    if (bool(p.v4auth, k('v4auth')) === false) ignore(k('v4auth'), 'signature v4 is always used');
    for (const tuning of [
      'multipartcopychunksize',
      'multipartcopymaxconcurrency',
      'multipartcopythresholdsize',
      'useragent',
      'usedualstack',
      'loglevel',
      'objectacl',
      'accelerate',
    ]) {
      if (p[tuning] !== undefined && p[tuning] !== null) ignore(k(tuning), 'the SDK chooses');
    }
    const known = new Set([
      'bucket',
      'region',
      'regionendpoint',
      'secure',
      'forcepathstyle',
      'accesskey',
      'secretkey',
      'sessiontoken',
      'encrypt',
      'keyid',
      'skipverify',
      'chunksize',
      'storageclass',
      'rootdirectory',
      'v4auth',
      'multipartcopychunksize',
      'multipartcopymaxconcurrency',
      'multipartcopythresholdsize',
      'useragent',
      'usedualstack',
      'loglevel',
      'objectacl',
      'accelerate',
    ]);
    for (const key of Object.keys(p)) if (!known.has(key)) err(k(key), 'unknown key');
  };
  /** storage.swift (distribution 2.8 docs/storage-drivers/swift.md) onto our swift_* keys. */
  const mapSwift = (p: Tree, at: string[]): void => {
    const k = (name: string): string[] => [...at, name];
    put('storage', 'swift', at);
    for (const [from, to] of [
      ['authurl', 'swift_authurl'],
      ['username', 'swift_user'],
      ['password', 'swift_password'],
      ['container', 'swift_container'],
      ['region', 'swift_region_name'],
    ] as const) {
      const v = str(p[from], k(from));
      if (v) put(to, v, k(from));
      else if (from !== 'region') err(k(from), 'required');
    }
    // Keystone (ncw/swift's Connection fields, as distribution passes them)
    for (const [from, to] of [
      ['tenant', 'swift_tenant_name'],
      ['tenantid', 'swift_tenant_id'],
      ['domain', 'swift_domain_name'],
      ['domainid', 'swift_domain_id'],
      ['tenantdomain', 'swift_tenant_domain_name'],
      ['tenantdomainid', 'swift_tenant_domain_id'],
      ['trustid', 'swift_trust_id'],
    ] as const) {
      const v = str(p[from], k(from));
      if (v) put(to, v, k(from));
    }
    const version = p.authversion;
    if (version !== undefined && version !== null && version !== '' && version !== 0 && version !== '0') {
      const n = Number(version);
      if (n === 1 || n === 2 || n === 3) put('swift_auth_version', n, k('authversion'));
      else err(k('authversion'), `expected 1, 2 or 3, got ${JSON.stringify(version)}`);
    }
    const endpointType = str(p.endpointtype, k('endpointtype'));
    if (endpointType) {
      if (/^(public|internal|admin)$/i.test(endpointType)) put('swift_endpoint_type', endpointType.toLowerCase(), k('endpointtype'));
      else err(k('endpointtype'), `expected public, internal or admin, got ${JSON.stringify(endpointType)}`);
    }
    const skip = bool(p.insecureskipverify, k('insecureskipverify'));
    if (skip !== undefined) put('swift_insecure_skip_verify', skip, k('insecureskipverify'));
    const chunk = size(p.chunksize, k('chunksize'), 1024 * 1024);
    if (chunk !== undefined) put('swift_segment_size', chunk, k('chunksize'));
    const prefix = str(p.prefix, k('prefix'));
    put('storage_path', prefix ?? '/', prefix === undefined ? at : k('prefix'));
    for (const unsupported of ['accesskey', 'secretkey', 'tempurlcontainerkey', 'tempurlmethods']) {
      if (p[unsupported] !== undefined && p[unsupported] !== null) ignore(k(unsupported), 'temp URLs are not used by this build: layers are streamed');
    }
    const known = new Set([
      'authurl',
      'username',
      'password',
      'container',
      'region',
      'tenant',
      'tenantid',
      'domain',
      'domainid',
      'tenantdomain',
      'tenantdomainid',
      'trustid',
      'authversion',
      'endpointtype',
      'insecureskipverify',
      'chunksize',
      'prefix',
      'accesskey',
      'secretkey',
      'tempurlcontainerkey',
      'tempurlmethods',
    ]);
    for (const key of Object.keys(p)) if (!known.has(key)) err(k(key), 'unknown key');
  };

  // ---- storage: exactly one driver, plus the storage layer's own parameters
  const storage = obj(tree.storage, ['storage']);
  if (!storage) err(['storage'], 'required: one storage driver (filesystem or inmemory)');
  else {
    const drivers = Object.keys(storage).filter((k) => !STORAGE_PARAMS.has(k));
    if (drivers.length === 0) err(['storage'], 'no storage driver configured (filesystem or inmemory)');
    else if (drivers.length > 1) err(['storage'], `exactly one storage driver must be configured, found ${drivers.join(', ')}`);
    else {
      const name = drivers[0]!;
      const params = storage[name];
      if (name === 'filesystem') {
        const fs = params === null || params === undefined || params === '' ? {} : obj(params, ['storage', 'filesystem']);
        const root = fs?.rootdirectory ?? '/var/lib/registry';
        if (typeof root !== 'string' || root === '') err(['storage', 'filesystem', 'rootdirectory'], 'expected a directory path');
        else {
          put('storage', 'file', ['storage', 'filesystem']);
          put('storage_path', root, ['storage', 'filesystem', 'rootdirectory']);
        }
        if (fs?.maxthreads !== undefined) ignore(['storage', 'filesystem', 'maxthreads'], 'I/O runs on the libuv thread pool');
      } else if (name === 'inmemory') {
        put('storage', 'memory', ['storage', 'inmemory']);
      } else if (name === 's3' || name === 's3-aws') {
        mapS3(obj(params, ['storage', name]) ?? {}, ['storage', name]);
      } else if (name === 'swift') {
        mapSwift(obj(params, ['storage', name]) ?? {}, ['storage', name]);
      } else {
        err(
          ['storage', name],
          `storage driver ${JSON.stringify(name)} is not supported${DRIVERS_KNOWN.has(name) ? ' by this build' : ''} (filesystem, inmemory, s3 and swift are)`,
        );
      }
    }
    const del = obj(storage.delete, ['storage', 'delete']);
    const delOn = bool(del?.enabled, ['storage', 'delete', 'enabled']);
    if (delOn !== undefined) put('storage_delete', delOn, ['storage', 'delete', 'enabled']);
    if (storage.cache !== undefined) ignore(['storage', 'cache'], 'metadata is cached by metadata_cache_ttl');
    const redirect = obj(storage.redirect, ['storage', 'redirect']);
    const redirectOff = bool(redirect?.disable, ['storage', 'redirect', 'disable']);
    if (values.storage === 's3') {
      // distribution sends blob GETs to a pre-signed URL by default with S3
      put('storage_redirect', redirectOff !== true, redirectOff === undefined ? ['storage', 's3'] : ['storage', 'redirect', 'disable']);
    } else if (redirect !== undefined && redirectOff !== true) {
      ignore(['storage', 'redirect'], 'only the s3 driver redirects; blobs are served by the registry');
    }
    if (storage.tag !== undefined) ignore(['storage', 'tag'], 'not implemented');
    const maint = obj(storage.maintenance, ['storage', 'maintenance']);
    if (maint) {
      const purging = maint.uploadpurging;
      const up = obj(purging, ['storage', 'maintenance', 'uploadpurging']);
      if (up) {
        const p = ['storage', 'maintenance', 'uploadpurging'];
        const enabled = bool(up.enabled, [...p, 'enabled']);
        const dry = bool(up.dryrun, [...p, 'dryrun']);
        if (enabled === false || dry === true) put('upload_purging', false, [...p, enabled === false ? 'enabled' : 'dryrun']);
        if (dry === true) warnings.push(`${p.join('.')}.dryrun: uploads are not purged at all (a dry run lists nothing here)`);
        const age = duration(up.age, [...p, 'age']);
        if (age !== undefined) {
          if (age < 1) err([...p, 'age'], 'must be at least 1s');
          else put('upload_purge_age', Math.round(age), [...p, 'age']);
        }
        const interval = duration(up.interval, [...p, 'interval']);
        if (interval !== undefined) {
          if (interval < 1) err([...p, 'interval'], 'must be at least 1s');
          else put('upload_purge_interval', Math.round(interval), [...p, 'interval']);
        }
      }
      const ro = obj(maint.readonly, ['storage', 'maintenance', 'readonly']);
      const roOn = bool(ro?.enabled, ['storage', 'maintenance', 'readonly', 'enabled']);
      if (roOn !== undefined) put('read_only', roOn, ['storage', 'maintenance', 'readonly', 'enabled']);
    }
  }

  // ---- auth: at most one provider
  const auth = obj(tree.auth, ['auth']);
  if (auth) {
    const providers = Object.keys(auth);
    if (providers.length > 1) err(['auth'], `at most one auth provider, found ${providers.join(', ')}`);
    else if (providers.length === 1) {
      const name = providers[0]!;
      const p = (auth[name] === null || auth[name] === undefined ? {} : obj(auth[name], ['auth', name])) ?? {};
      if (name === 'htpasswd') {
        put('v2_auth', 'htpasswd', ['auth', 'htpasswd']);
        if (p.realm !== undefined) put('htpasswd_realm', String(p.realm), ['auth', 'htpasswd', 'realm']);
        if (typeof p.path !== 'string' || p.path === '') err(['auth', 'htpasswd', 'path'], 'required: the htpasswd file');
        else put('htpasswd_path', p.path, ['auth', 'htpasswd', 'path']);
      } else if (name === 'token') {
        put('v2_auth', 'token', ['auth', 'token']);
        for (const k of ['realm', 'service', 'issuer', 'rootcertbundle'] as const) {
          const v = p[k];
          if (typeof v !== 'string' || v === '') err(['auth', 'token', k], 'required');
          else put(`token_${k}`, v, ['auth', 'token', k]);
        }
        if (p.autoredirect !== undefined) ignore(['auth', 'token', 'autoredirect'], 'the realm is used as given');
        if (p.jwks !== undefined) err(['auth', 'token', 'jwks'], 'not supported: give the signers as rootcertbundle');
        if (p.signingalgorithms !== undefined) ignore(['auth', 'token', 'signingalgorithms'], 'ES256/384/512, RS256/384/512 and PS256 are accepted');
      } else if (name === 'none') {
        put('v2_auth', 'none', ['auth', 'none']);
      } else if (name === 'silly') {
        err(['auth', 'silly'], 'the silly provider (any Authorization header passes) is not supported: use htpasswd, token or no auth section');
      } else {
        err(['auth', name], `auth provider ${JSON.stringify(name)} is not supported (htpasswd and token are)`);
      }
    }
  }

  // ---- http
  const http = obj(tree.http, ['http']);
  if (http) {
    if (http.net !== undefined && http.net !== null && http.net !== 'tcp' && http.net !== '') {
      err(['http', 'net'], `${JSON.stringify(http.net)} listeners are not supported (tcp is)`);
    }
    if (http.addr !== undefined && http.addr !== null) {
      const addr = String(http.addr);
      if (addr.startsWith('/')) err(['http', 'addr'], 'unix socket paths are not supported: use host:port');
      else put('http_addr', addr, ['http', 'addr']);
    }
    if (http.prefix !== undefined && http.prefix !== null && http.prefix !== '' && http.prefix !== '/') {
      err(['http', 'prefix'], 'serving under a URL prefix is not supported: mount the registry at the host root (a proxy can strip the prefix)');
    }
    if (http.host !== undefined) ignore(['http', 'host'], 'Location headers are relative to the request');
    if (http.relativeurls !== undefined) ignore(['http', 'relativeurls'], 'Location headers are always relative');
    if (http.secret !== undefined) ignore(['http', 'secret'], 'upload state lives in storage, so every node can continue an upload');
    const drain = duration(http.draintimeout, ['http', 'draintimeout']);
    if (drain !== undefined) put('shutdown_timeout', Math.ceil(Math.max(0, drain)), ['http', 'draintimeout']);
    const tls = obj(http.tls, ['http', 'tls']);
    if (tls) {
      const p = ['http', 'tls'];
      if (tls.letsencrypt !== undefined && tls.letsencrypt !== null) err([...p, 'letsencrypt'], "Let's Encrypt is not supported: give certificate and key");
      const cert = tls.certificate;
      const key = tls.key;
      if (cert || key) {
        if (typeof cert !== 'string' || cert === '') err([...p, 'certificate'], 'required with http.tls.key');
        else put('tls_certificate', cert, [...p, 'certificate']);
        if (typeof key !== 'string' || key === '') err([...p, 'key'], 'required with http.tls.certificate');
        else put('tls_key', key, [...p, 'key']);
      }
      if (tls.clientcas !== undefined && tls.clientcas !== null) {
        const cas = Array.isArray(tls.clientcas) ? tls.clientcas : [tls.clientcas];
        if (cas.some((c) => typeof c !== 'string' || c === '')) err([...p, 'clientcas'], 'expected a list of CA certificate files');
        else put('tls_client_cas', cas, [...p, 'clientcas']);
      }
      if (tls.minimumtls !== undefined && tls.minimumtls !== null && tls.minimumtls !== '') {
        const v = TLS_VERSIONS[String(tls.minimumtls).toLowerCase()];
        if (!v) err([...p, 'minimumtls'], `expected tls1.0, tls1.1, tls1.2 or tls1.3, got ${JSON.stringify(tls.minimumtls)}`);
        else put('tls_minimum_version', v, [...p, 'minimumtls']);
      }
      if (tls.ciphersuites !== undefined) ignore([...p, 'ciphersuites'], "Node's default cipher list is used");
      if (tls.clientauth !== undefined) ignore([...p, 'clientauth'], 'clients presenting a certificate are verified against clientcas');
    }
    const headers = obj(http.headers, ['http', 'headers']);
    if (headers) {
      const out: Record<string, string[]> = {};
      for (const [name, v] of Object.entries(headers)) {
        const list = Array.isArray(v) ? v : [v];
        if (list.some((x) => x === null || typeof x === 'object')) err(['http', 'headers', name], 'expected a list of values');
        else out[name] = list.map(String);
      }
      put('http_headers', out, ['http', 'headers']);
    }
    const debug = obj(http.debug, ['http', 'debug']);
    if (debug) {
      if (debug.addr !== undefined && debug.addr !== null && debug.addr !== '') put('debug_addr', String(debug.addr), ['http', 'debug', 'addr']);
      const prom = obj(debug.prometheus, ['http', 'debug', 'prometheus']);
      if (prom) {
        const on = bool(prom.enabled, ['http', 'debug', 'prometheus', 'enabled']);
        if (on !== undefined) put('metrics', on, ['http', 'debug', 'prometheus', 'enabled']);
        if (prom.path !== undefined && prom.path !== null && prom.path !== '') put('metrics_path', String(prom.path), ['http', 'debug', 'prometheus', 'path']);
      }
    }
    if (http.http2 !== undefined || http.h2c !== undefined) ignore(['http', http.http2 !== undefined ? 'http2' : 'h2c'], 'HTTP/1.1 only');
  }

  // ---- health
  const health = obj(tree.health, ['health']);
  if (health) {
    const out: Record<string, unknown> = {};
    const checkTiming = (c: Tree, p: string[], into: Record<string, unknown>): void => {
      const interval = duration(c.interval, [...p, 'interval']);
      if (interval !== undefined) {
        if (interval <= 0) err([...p, 'interval'], 'must be positive');
        else into.interval = interval;
      }
      if (c.threshold !== undefined && c.threshold !== null) {
        if (typeof c.threshold !== 'number' || !Number.isInteger(c.threshold) || c.threshold < 0) err([...p, 'threshold'], 'expected a whole number');
        else into.threshold = c.threshold;
      }
    };
    const sd = obj(health.storagedriver, ['health', 'storagedriver']);
    if (sd) {
      const p = ['health', 'storagedriver'];
      const check: Record<string, unknown> = { enabled: bool(sd.enabled, [...p, 'enabled']) ?? false };
      checkTiming(sd, p, check);
      out.storagedriver = check;
    }
    const lists: [string, string, string[]][] = [
      ['file', 'file', []],
      ['http', 'uri', ['headers', 'statuscode', 'timeout']],
      ['tcp', 'addr', ['timeout']],
    ];
    for (const [kind, main, extra] of lists) {
      const raw = health[kind];
      if (raw === undefined || raw === null) continue;
      if (!Array.isArray(raw)) {
        err(['health', kind], 'expected a list of checks');
        continue;
      }
      out[kind] = raw.map((c: unknown, i) => {
        const p = ['health', kind, String(i)];
        const t = obj(c, p) ?? {};
        const check: Record<string, unknown> = {};
        if (typeof t[main] !== 'string' || t[main] === '') err([...p, main], 'required');
        else check[main] = t[main];
        checkTiming(t, p, check);
        if (extra.includes('timeout')) {
          const to = duration(t.timeout, [...p, 'timeout']);
          if (to !== undefined) check.timeout = to;
        }
        if (extra.includes('statuscode') && t.statuscode !== undefined) check.statuscode = t.statuscode;
        if (extra.includes('headers') && t.headers !== undefined) check.headers = t.headers;
        return check;
      });
    }
    put('health', out, ['health']);
  }

  // ---- catalog, compatibility and what is accepted without effect
  const catalog = obj(tree.catalog, ['catalog']);
  if (catalog?.maxentries !== undefined && catalog.maxentries !== null) put('catalog_max_entries', catalog.maxentries, ['catalog', 'maxentries']);
  const compat = obj(tree.compatibility, ['compatibility']);
  const schema1 = obj(compat?.schema1, ['compatibility', 'schema1']);
  if (schema1?.signingkeyfile) ignore(['compatibility', 'schema1', 'signingkeyfile'], 'the schema1 signing key is generated once and kept in storage');
  if (schema1?.enabled !== undefined)
    ignore(['compatibility', 'schema1', 'enabled'], 'signed schema1 is always accepted on push and served to clients that ask for it');

  const proxy = obj(tree.proxy, ['proxy']);
  if (proxy && proxy.remoteurl) {
    // v2-bridge §5.3: one upstream for every name; 2.8 ignores ttl (always 168h), we honour it (as v3)
    const p = ['proxy'];
    const up: Record<string, unknown> = { prefix: '', url: String(proxy.remoteurl) };
    if (proxy.username !== undefined && proxy.username !== null && proxy.username !== '') up.username = String(proxy.username);
    if (proxy.password !== undefined && proxy.password !== null && proxy.password !== '') up.password = String(proxy.password);
    const mirror: Record<string, unknown> = { upstreams: [up] };
    const ttl = duration(proxy.ttl, [...p, 'ttl']);
    if (ttl !== undefined) {
      if (ttl < 0) err([...p, 'ttl'], 'must not be negative');
      else mirror.ttl = Math.ceil(ttl);
    }
    put('mirror', mirror, p);
    // expiry deletes content (§5.3: storage.delete.enabled is needed there; here the mirror's own deletes)
  }
  const notifications = obj(tree.notifications, ['notifications']);
  if (notifications) {
    const out: Record<string, unknown> = {};
    const raw = notifications.endpoints;
    if (raw !== undefined && raw !== null && !Array.isArray(raw)) err(['notifications', 'endpoints'], 'expected a list of endpoints');
    else if (Array.isArray(raw)) {
      out.endpoints = raw.map((e: unknown, i) => {
        const p = ['notifications', 'endpoints', String(i)];
        const t = obj(e, p) ?? {};
        const ep: Record<string, unknown> = {};
        for (const k of ['name', 'url'] as const) {
          if (typeof t[k] !== 'string' || t[k] === '') err([...p, k], 'required');
          else ep[k] = t[k];
        }
        if (t.headers !== undefined && t.headers !== null) {
          const h = obj(t.headers, [...p, 'headers']) ?? {};
          const headers: Record<string, string[]> = {};
          for (const [name, v] of Object.entries(h)) {
            const list = Array.isArray(v) ? v : [v];
            if (list.some((x) => x === null || typeof x === 'object')) err([...p, 'headers', name], 'expected a list of values');
            else headers[name] = list.map(String);
          }
          ep.headers = headers;
        }
        for (const k of ['timeout', 'backoff'] as const) {
          const d = duration(t[k], [...p, k]);
          // distribution: zero means the default
          if (d !== undefined && d > 0) ep[k] = d;
          else if (d !== undefined && d < 0) err([...p, k], 'must not be negative');
        }
        if (t.threshold !== undefined && t.threshold !== null) {
          if (typeof t.threshold !== 'number' || !Number.isInteger(t.threshold) || t.threshold < 0) err([...p, 'threshold'], 'expected a whole number');
          else if (t.threshold > 0) ep.threshold = t.threshold;
        }
        if (t.ignoredmediatypes !== undefined && t.ignoredmediatypes !== null) ep.ignoredmediatypes = t.ignoredmediatypes;
        const ig = obj(t.ignore, [...p, 'ignore']);
        if (ig) ep.ignore = { mediatypes: ig.mediatypes ?? [], actions: ig.actions ?? [] };
        const off = bool(t.disabled, [...p, 'disabled']);
        if (off !== undefined) ep.disabled = off;
        return ep;
      });
    }
    const events = obj(notifications.events, ['notifications', 'events']);
    const refs = bool(events?.includereferences, ['notifications', 'events', 'includereferences']);
    if (refs !== undefined) out.events = { includereferences: refs };
    put('notifications', out, ['notifications']);
  }
  for (const k of ['redis', 'middleware', 'reporting', 'validation', 'policy', 'tags']) {
    if (tree[k] !== undefined && tree[k] !== null) ignore([k], 'not implemented');
  }
  const known = new Set([
    'version',
    'log',
    'loglevel',
    'storage',
    'auth',
    'http',
    'health',
    'catalog',
    'compatibility',
    'proxy',
    'notifications',
    'redis',
    'middleware',
    'reporting',
    'validation',
    'policy',
    'tags',
    'legacy',
  ]);
  for (const k of Object.keys(tree)) if (!known.has(k)) warnings.push(`${k}: unknown section, ignored`);

  // ---- our own keys, last
  const legacy = obj(tree.legacy, ['legacy']);
  if (legacy) for (const [k, v] of Object.entries(legacy)) put(k, v, ['legacy', k]);

  return { values, origin, errors, warnings };
}

/** Whether a parsed YAML document is a distribution configuration (it has a top-level `version`). */
export function isDistributionConfig(doc: unknown): doc is Tree {
  return isTree(doc) && 'version' in doc;
}
