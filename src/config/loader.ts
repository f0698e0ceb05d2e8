import { existsSync, readFileSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import { LineCounter, parse, parseDocument, isAlias, isMap, isSeq, isScalar, type Document, type Pair } from 'yaml';

import { configSchema, type Config } from './schema.js';
import { parseByteSize } from './byte-size.js';
import { ConfigError } from './config-error.js';
import { sampleConfigPath } from './sample.js';
import { applyRegistryEnv, isDistributionConfig, mapDistribution } from './distribution.js';
import { SUPPORTED_STORAGE, applyStorageEnv, pythonOnlyWarning, takePythonOnlyKeys, unsupportedStorage } from './python.js';

export interface LoadOptions {
  /** Environment to read (DOCKER_REGISTRY_CONFIG, SETTINGS_FLAVOR, _env: values). */
  env?: NodeJS.ProcessEnv;
  /** Explicit file (wins over DOCKER_REGISTRY_CONFIG). */
  file?: string;
  /** Explicit flavor (wins over SETTINGS_FLAVOR). */
  flavor?: string;
  /** Values applied last (CLI flags). */
  overrides?: Record<string, unknown>;
}

const ENV_REF = /^_env:([A-Za-z_][A-Za-z0-9_]*)(?::([\s\S]*))?$/;

/**
 * Spec §8.1: a string value `_env:NAME[:default]` is replaced by the environment variable (or the
 * default, which may contain ':'; none = empty), then YAML-parsed, so `true` → boolean, `5000` → number.
 */
export function interpolate(value: unknown, env: NodeJS.ProcessEnv): unknown {
  if (typeof value === 'string') {
    const m = ENV_REF.exec(value);
    if (!m) return value;
    const raw = env[m[1] as string] ?? m[2] ?? '';
    if (raw === '') return null;
    try {
      return parse(raw) as unknown;
    } catch {
      return raw;
    }
  }
  if (Array.isArray(value)) return value.map((v) => interpolate(v, env));
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = interpolate(v, env);
    return out;
  }
  return value;
}

/**
 * The pair of `key` in a map, or in the maps it merges (`<<: *common`, `<<: [*a, *b]`), however
 * deep the chain of merges goes (the Python registry's prod ← s3 ← common).
 */
function findPair(doc: Document, node: unknown, key: string, depth: number): Pair | undefined {
  if (!isMap(node) || depth > 20) return undefined;
  const own = node.items.find((p) => isScalar(p.key) && String(p.key.value) === key);
  if (own) return own;
  // with `merge: true` the parser keys a merge by Symbol(<<), else by the string
  const merge = node.items.find((p) => isScalar(p.key) && (p.key.value === '<<' || (typeof p.key.value === 'symbol' && p.key.value.description === '<<')));
  if (!merge) return undefined;
  const sources: unknown[] = isSeq(merge.value) ? merge.value.items : [merge.value];
  for (const src of sources) {
    const found = findPair(doc, isAlias(src) ? src.resolve(doc) : src, key, depth + 1);
    if (found) return found;
  }
  return undefined;
}

function lineOf(doc: ReturnType<typeof parseDocument>, lc: LineCounter, path: readonly (string | number)[]): number | undefined {
  let node: unknown = doc.contents;
  // the line of the last key on the path (a section's error points at its key, not its first child)
  let at: unknown = node;
  for (const key of path) {
    if (isMap(node)) {
      const pair = findPair(doc, node, String(key), 0);
      if (!pair) return undefined;
      at = pair.key ?? pair.value;
      node = pair.value;
    } else if (isSeq(node) && (typeof key === 'number' || /^\d+$/.test(key))) {
      node = node.items[Number(key)];
      at = node;
    } else break;
  }
  const range = (at as { range?: [number, number, number] } | undefined)?.range;
  return range ? lc.linePos(range[0]).line : undefined;
}

/**
 * Load, interpolate, validate and freeze the configuration. Throws ConfigError with the key path.
 *
 * The file is opts.file, else $DOCKER_REGISTRY_CONFIG, else $REGISTRY_CONFIGURATION_PATH (the
 * variable distribution reads), else the package's config_sample.yml. A file with a top-level
 * `version` key is a distribution config.yml (spec v2-bridge §5): its keys are mapped onto ours
 * after the `REGISTRY_*` environment overrides; any other file holds flavors (spec v1 §8).
 */
export function loadConfig(opts: LoadOptions = {}): Config {
  const env = opts.env ?? process.env;
  const named = opts.file ?? env.DOCKER_REGISTRY_CONFIG ?? env.REGISTRY_CONFIGURATION_PATH;
  let file: string | null;
  if (named) {
    file = isAbsolute(named) ? named : resolve(named);
    if (!existsSync(file)) throw new ConfigError(`configuration file not found: ${file}`);
  } else {
    file = sampleConfigPath();
  }
  const text = readFileSync(file, 'utf8');
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, merge: true });
  if (doc.errors.length > 0) {
    const e = doc.errors[0]!;
    throw new ConfigError(`${file}: invalid YAML: ${e.message}`);
  }
  const all = doc.toJS({ maxAliasCount: 1000 }) as unknown;
  if (isDistributionConfig(all)) return loadDistribution(all, { doc, lc, file, env, opts });
  if (all === null || typeof all !== 'object' || Array.isArray(all)) {
    throw new ConfigError(`${file}: expected a mapping of flavors (common, dev, prod, …) or a distribution config.yml (version: 0.1)`);
  }
  const flavor = opts.flavor ?? env.SETTINGS_FLAVOR ?? 'dev';
  const section = (all as Record<string, unknown>)[flavor];
  if (section === undefined) {
    throw new ConfigError(`${file}: flavor "${flavor}" (SETTINGS_FLAVOR) is not defined`);
  }
  const values = (interpolate(section ?? {}, env) ?? {}) as Record<string, unknown>;
  // Launcher environment (spec §8.3) always applies, whatever the file says.
  if (env.REGISTRY_HOST) values.host = env.REGISTRY_HOST;
  if (env.REGISTRY_PORT) values.port = Number(env.REGISTRY_PORT);
  if (env.REGISTRY_HTTP_ADDR) values.http_addr = env.REGISTRY_HTTP_ADDR;
  // distribution's htpasswd variables (spec v2-bridge §5.2) also work with a flavored file, for
  // deployments that start from the registry:2 image's habits: auth.htpasswd.{realm,path}.
  if (env.REGISTRY_AUTH === 'htpasswd') values.v2_auth = 'htpasswd';
  if (env.REGISTRY_AUTH_HTPASSWD_REALM) values.htpasswd_realm = env.REGISTRY_AUTH_HTPASSWD_REALM;
  if (env.REGISTRY_AUTH_HTPASSWD_PATH) values.htpasswd_path = env.REGISTRY_AUTH_HTPASSWD_PATH;
  // The Python registry's own files (spec §8): object-storage flavors cannot run yet, and the keys
  // of its features we do not have are named once and dropped.
  const storage = values.storage;
  if (typeof storage === 'string' && !SUPPORTED_STORAGE.has(storage)) {
    const line = lineOf(doc, lc, [flavor, 'storage']);
    throw new ConfigError(`invalid configuration:\n  ${flavor}.storage${line ? ` (${file}:${line})` : ''}: ${unsupportedStorage(storage)}`);
  }
  applyStorageEnv(values, env);
  const pythonOnly = takePythonOnlyKeys(values);
  return finish(values, {
    opts,
    flavor,
    file: named ? file : null,
    where: (path) => {
      const line = lineOf(doc, lc, [flavor, ...path]);
      return { key: [flavor, ...path].join('.'), at: line ? ` (${file}:${line})` : '' };
    },
    warnings: pythonOnly.length > 0 ? [pythonOnlyWarning(pythonOnly)] : [],
  });
}

interface FinishContext {
  opts: LoadOptions;
  flavor: string;
  file: string | null;
  /** How to name a key of ours in an error: its path as the user wrote it, and where. */
  where: (path: (string | number)[]) => { key: string; at: string };
  warnings: string[];
}

/** Apply CLI overrides, validate, and derive the frozen Config. */
function finish(values: Record<string, unknown>, f: FinishContext): Config {
  for (const [k, v] of Object.entries(f.opts.overrides ?? {})) if (v !== undefined) values[k] = v;
  // null in YAML means "use the default"
  for (const [k, v] of Object.entries(values)) if (v === null) delete values[k];

  const result = configSchema.safeParse(values);
  if (!result.success) {
    const lines = result.error.issues.map((issue) => {
      const { key, at } = f.where(issue.path.filter((p): p is string | number => typeof p !== 'symbol'));
      const msg = issue.code === 'unrecognized_keys' ? `unknown key(s) ${issue.keys.join(', ')}` : issue.message;
      return `${key}${at}: ${msg}`;
    });
    throw new ConfigError(`invalid configuration:\n  ${lines.join('\n  ')}`);
  }
  const c = result.data;
  // the listen addresses: host:port, [v6]:port or :port
  for (const name of ['http_addr', 'debug_addr'] as const) {
    const v = c[name];
    if (v !== null && !/^(\[[0-9a-fA-F:]+\]|[^:\s]*):\d{1,5}$/.test(v)) {
      const { key, at } = f.where([name]);
      throw new ConfigError(`invalid configuration:\n  ${key}${at}: expected host:port, got ${JSON.stringify(v)}`);
    }
  }
  if ((c.tls_certificate === null) !== (c.tls_key === null)) {
    const { key, at } = f.where([c.tls_certificate === null ? 'tls_certificate' : 'tls_key']);
    throw new ConfigError(`invalid configuration:\n  ${key}${at}: tls_certificate and tls_key go together`);
  }
  // object stores: what the driver cannot do without (reachability is checked when the driver starts)
  const required: Array<[boolean, string, string]> =
    c.storage === 's3'
      ? [
          [
            !c.s3_bucket && !c.boto_bucket,
            's3_bucket',
            'required with storage s3 (Python: s3_bucket, boto_bucket or AWS_BUCKET; distribution: storage.s3.bucket)',
          ],
        ]
      : c.storage === 'swift'
        ? [
            [!c.swift_authurl, 'swift_authurl', 'required with storage swift (OS_AUTH_URL; distribution: storage.swift.authurl)'],
            [!c.swift_container, 'swift_container', 'required with storage swift (OS_CONTAINER; distribution: storage.swift.container)'],
            [!c.swift_user, 'swift_user', 'required with storage swift (OS_USERNAME; distribution: storage.swift.username)'],
            [!c.swift_password, 'swift_password', 'required with storage swift (OS_PASSWORD; distribution: storage.swift.password)'],
          ]
        : [];
  const missing = required
    .filter(([bad]) => bad)
    .map(([, name, msg]) => {
      const { key, at } = f.where([name]);
      return `${key}${at}: ${msg}`;
    });
  if (missing.length > 0) throw new ConfigError(`invalid configuration:\n  ${missing.join('\n  ')}`);
  const partSize = parseByteSize(c.s3_part_size);
  if (c.storage === 's3' && (partSize < 5 * 1024 * 1024 || partSize > 5 * 1024 ** 3)) {
    const { key, at } = f.where(['s3_part_size']);
    throw new ConfigError(`invalid configuration:\n  ${key}${at}: between 5MiB and 5GiB (S3's part sizes)`);
  }
  if (c.storage === 'swift' && !/^https?:\/\/[^/\s]+/i.test(c.swift_authurl ?? '')) {
    const { key, at } = f.where(['swift_authurl']);
    throw new ConfigError(
      `invalid configuration:\n  ${key}${at}: expected an http(s) URL (…/auth/1.0, …/v2.0 or …/v3), got ${JSON.stringify(c.swift_authurl)}`,
    );
  }
  if (c.storage === 'swift' && parseByteSize(c.swift_segment_size) < 1024 * 1024) {
    const { key, at } = f.where(['swift_segment_size']);
    throw new ConfigError(`invalid configuration:\n  ${key}${at}: at least 1MiB`);
  }
  if (c.tls_client_cas !== null && c.tls_certificate === null) {
    const { key, at } = f.where(['tls_client_cas']);
    throw new ConfigError(`invalid configuration:\n  ${key}${at}: client certificates need TLS (tls_certificate and tls_key)`);
  }
  const endpoints =
    c.registry_endpoints === null
      ? null
      : (Array.isArray(c.registry_endpoints) ? c.registry_endpoints : c.registry_endpoints.split(',')).map((s) => s.trim()).filter((s) => s.length > 0);
  // CORS is on only with origins (spec §8.2: the Python registry started Flask-CORS when
  // cors.origins was set); a credentialed answer with Access-Control-Allow-Origin: * is refused
  // by browsers, which deserves a word at start.
  const cors = c.cors !== null && corsOrigins(c.cors.origins).length > 0 ? c.cors : null;
  if (cors?.supports_credentials && corsOrigins(cors.origins).includes('*') && cors.send_wildcard !== false) {
    f.warnings.push(
      'cors: supports_credentials with origins * answers Access-Control-Allow-Origin: *, which browsers refuse for credentialed requests; set send_wildcard: false to echo the Origin instead',
    );
  }
  const config: Config = {
    ...c,
    cors,
    index_endpoint: c.index_endpoint === null ? null : c.index_endpoint.replace(/\/+$/, ''),
    // a directory for the filesystem driver; a key prefix inside the bucket for the object stores
    storage_path: c.storage === 's3' || c.storage === 'swift' ? c.storage_path : resolve(c.storage_path),
    s3_part_size: parseByteSize(c.s3_part_size),
    swift_segment_size: parseByteSize(c.swift_segment_size),
    max_layer_size: parseByteSize(c.max_layer_size),
    max_json_size: parseByteSize(c.max_json_size),
    registry_endpoints: endpoints,
    token_audiences: (typeof c.token_audiences === 'string' ? c.token_audiences.split(',') : c.token_audiences)
      .map((s) => s.trim())
      .filter((s) => s.length > 0),
    webhook_allowed_networks: (typeof c.webhook_allowed_networks === 'string' ? c.webhook_allowed_networks.split(',') : c.webhook_allowed_networks)
      .map((s) => s.trim())
      .filter((s) => s.length > 0),
    flavor: f.flavor,
    file: f.file,
    warnings: Object.freeze([...f.warnings]),
  };
  return Object.freeze(config);
}

/** A distribution config.yml: REGISTRY_* overrides (§5.2), then the mapping onto our keys (§5.1). */
function loadDistribution(
  tree: Record<string, unknown>,
  ctx: { doc: ReturnType<typeof parseDocument>; lc: LineCounter; file: string; env: NodeJS.ProcessEnv; opts: LoadOptions },
): Config {
  const { doc, lc, file, env } = ctx;
  const { ignored, set } = applyRegistryEnv(tree, env);
  const mapped = mapDistribution(tree);
  const where = (path: readonly string[]): string => {
    // a value set by a variable names the variable (the closest set ancestor), else the file line
    for (let i = path.length; i > 0; i--) {
      const v = set.get(path.slice(0, i).join('.'));
      if (v) return ` (from ${v})`;
    }
    const line = lineOf(doc, lc, [...path]);
    return line ? ` (${file}:${line})` : '';
  };
  if (mapped.errors.length > 0) {
    const lines = mapped.errors.map((e) => `${e.path.join('.')}${where(e.path)}: ${e.message}`);
    throw new ConfigError(`invalid configuration:\n  ${lines.join('\n  ')}`);
  }
  const warnings = [...mapped.warnings, ...ignored.map((n) => `${n}: environment variable addresses no configuration key, ignored`)];
  return finish(
    { ...mapped.values },
    {
      opts: ctx.opts,
      flavor: 'distribution',
      file,
      where: (path) => {
        const [top, ...rest] = path.map(String);
        const from = top !== undefined ? mapped.origin[top] : undefined;
        const p = from ? [...from, ...rest] : path.map(String);
        return { key: p.join('.'), at: where(p) };
      },
      warnings,
    },
  );
}

/** cors.origins as a list (a string is one origin, as Flask-CORS takes it). */
function corsOrigins(v: string | string[] | null): string[] {
  if (v === null) return [];
  return (Array.isArray(v) ? v : [v]).filter((o) => o !== '');
}
