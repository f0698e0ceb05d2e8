import { existsSync, readFileSync } from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { LineCounter, parse, parseDocument, isMap, isSeq, isScalar, type Node } from 'yaml';

import { configSchema, parseByteSize, type Config } from './schema.js';

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

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

/** The package's config_sample.yml: the built-in defaults when no file is named. */
export function sampleConfigPath(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const candidate = join(dir, 'config_sample.yml');
    if (existsSync(candidate) && existsSync(join(dir, 'package.json'))) return candidate;
    const up = dirname(dir);
    if (up === dir) throw new ConfigError('config_sample.yml not found next to package.json');
    dir = up;
  }
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

function lineOf(doc: ReturnType<typeof parseDocument>, lc: LineCounter, path: (string | number)[]): number | undefined {
  let node: unknown = doc.contents;
  for (const key of path) {
    if (isMap(node)) {
      const pair = node.items.find((p) => isScalar(p.key) && p.key.value === key);
      if (!pair) {
        // the key may come from a merged anchor (`<<: *common`): look there
        const merge = node.items.find((p) => isScalar(p.key) && p.key.value === '<<');
        const src = merge?.value as { source?: Node } | undefined;
        node = src?.source;
        if (isMap(node)) {
          const p2 = node.items.find((p) => isScalar(p.key) && p.key.value === key);
          node = p2?.value ?? p2?.key;
          continue;
        }
        return undefined;
      }
      node = pair.value ?? pair.key;
    } else if (isSeq(node) && typeof key === 'number') {
      node = node.items[key];
    } else break;
  }
  const range = (node as { range?: [number, number, number] } | undefined)?.range;
  return range ? lc.linePos(range[0]).line : undefined;
}

/** Load, interpolate, validate and freeze the configuration. Throws ConfigError with the key path. */
export function loadConfig(opts: LoadOptions = {}): Config {
  const env = opts.env ?? process.env;
  const named = opts.file ?? env.DOCKER_REGISTRY_CONFIG;
  let file: string | null;
  if (named) {
    file = isAbsolute(named) ? named : resolve(named);
    if (!existsSync(file)) throw new ConfigError(`configuration file not found: ${file}`);
  } else {
    file = sampleConfigPath();
  }
  const flavor = opts.flavor ?? env.SETTINGS_FLAVOR ?? 'dev';
  const text = readFileSync(file, 'utf8');
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, merge: true });
  if (doc.errors.length > 0) {
    const e = doc.errors[0]!;
    throw new ConfigError(`${file}: invalid YAML: ${e.message}`);
  }
  const all = doc.toJS({ maxAliasCount: 1000 }) as unknown;
  if (all === null || typeof all !== 'object' || Array.isArray(all)) {
    throw new ConfigError(`${file}: expected a mapping of flavors (common, dev, prod, …)`);
  }
  const section = (all as Record<string, unknown>)[flavor];
  if (section === undefined) {
    throw new ConfigError(`${file}: flavor "${flavor}" (SETTINGS_FLAVOR) is not defined`);
  }
  const values = (interpolate(section ?? {}, env) ?? {}) as Record<string, unknown>;
  // Launcher environment (spec §8.3) always applies, whatever the file says.
  if (env.REGISTRY_HOST) values.host = env.REGISTRY_HOST;
  if (env.REGISTRY_PORT) values.port = Number(env.REGISTRY_PORT);
  if (env.REGISTRY_HTTP_ADDR) values.http_addr = env.REGISTRY_HTTP_ADDR;
  // distribution's htpasswd variables (spec v2-bridge §5.2), read here directly until the general
  // REGISTRY_* override mechanism (distcfg) covers them: auth.htpasswd.{realm,path}.
  if (env.REGISTRY_AUTH === 'htpasswd') values.v2_auth = 'htpasswd';
  if (env.REGISTRY_AUTH_HTPASSWD_REALM) values.htpasswd_realm = env.REGISTRY_AUTH_HTPASSWD_REALM;
  if (env.REGISTRY_AUTH_HTPASSWD_PATH) values.htpasswd_path = env.REGISTRY_AUTH_HTPASSWD_PATH;
  for (const [k, v] of Object.entries(opts.overrides ?? {})) if (v !== undefined) values[k] = v;
  // null in YAML means "use the default"
  for (const [k, v] of Object.entries(values)) if (v === null) delete values[k];

  const result = configSchema.safeParse(values);
  if (!result.success) {
    const lines = result.error.issues.map((issue) => {
      const path = issue.path.map(String);
      const keyPath = [flavor, ...path].join('.');
      const line = lineOf(doc, lc, [flavor, ...issue.path.filter((p): p is string | number => typeof p !== 'symbol')]);
      const where = line ? ` (${file}:${line})` : '';
      const msg = issue.code === 'unrecognized_keys' ? `unknown key(s) ${issue.keys.join(', ')}` : issue.message;
      return `${keyPath}${where}: ${msg}`;
    });
    throw new ConfigError(`invalid configuration:\n  ${lines.join('\n  ')}`);
  }
  const c = result.data;
  if (c.http_addr !== null && !/^(\[[0-9a-fA-F:]+\]|[^:\s]*):\d{1,5}$/.test(c.http_addr)) {
    throw new ConfigError(`invalid configuration:\n  ${flavor}.http_addr: expected host:port, got ${JSON.stringify(c.http_addr)}`);
  }
  const endpoints =
    c.registry_endpoints === null
      ? null
      : (Array.isArray(c.registry_endpoints) ? c.registry_endpoints : c.registry_endpoints.split(','))
          .map((s) => s.trim())
          .filter((s) => s.length > 0);
  const config: Config = {
    ...c,
    index_endpoint: c.index_endpoint === null ? null : c.index_endpoint.replace(/\/+$/, ''),
    storage_path: resolve(c.storage_path),
    max_layer_size: parseByteSize(c.max_layer_size),
    max_json_size: parseByteSize(c.max_json_size),
    registry_endpoints: endpoints,
    flavor,
    file: named ? file : null,
  };
  return Object.freeze(config);
}

/** host and port to listen on. */
export function listenAddress(c: Config): { host: string; port: number } {
  if (c.http_addr) {
    const i = c.http_addr.lastIndexOf(':');
    const host = c.http_addr.slice(0, i).replace(/^\[|\]$/g, '') || '0.0.0.0';
    return { host, port: Number(c.http_addr.slice(i + 1)) };
  }
  return { host: c.host, port: c.port };
}

/** A copy safe to log (secrets redacted). */
export function redact(c: Config): Record<string, unknown> {
  const out: Record<string, unknown> = { ...c };
  for (const k of Object.keys(out)) if (/password|secret|key$/i.test(k) && out[k]) out[k] = '<redacted>';
  return out;
}

