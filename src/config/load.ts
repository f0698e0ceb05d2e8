import { createRequire } from 'node:module';
import { MessageChannel, receiveMessageOnPort, Worker } from 'node:worker_threads';
import { ConfigError } from './config-error.js';
import type { LoadOptions } from './loader.js';
import type { Config } from './schema.js';

export { ConfigError } from './config-error.js';
export { sampleConfigPath } from './sample.js';

/**
 * The configuration's entry points. The loader itself (src/config/loader.ts: the YAML parser, the
 * zod schema, the Python and distribution mappings) is loaded on first use, not with this module:
 * every command imports this one, and `serve` never loads the loader in its own isolate at all
 * (loadConfigApart), because what a module loads stays in the heap for the life of the process.
 */

export type { LoadOptions } from './loader.js';

type Loader = typeof import('./loader.js');
let loaderModule: Loader | undefined;
function loader(): Loader {
  // require(esm), synchronous (Node >= 20.19): loadConfig stays a plain function for its callers
  return (loaderModule ??= createRequire(import.meta.url)('./loader.js') as Loader);
}

/**
 * Load, interpolate, validate and freeze the configuration (src/config/loader.ts). Throws
 * ConfigError with the key path.
 */
export function loadConfig(opts: LoadOptions = {}): Config {
  return loader().loadConfig(opts);
}

/** Spec §8.1: `_env:NAME[:default]` values replaced (see src/config/loader.ts). */
export function interpolate(value: unknown, env: NodeJS.ProcessEnv): unknown {
  return loader().interpolate(value, env);
}

/** How long loadConfigApart waits for its thread. */
const APART_TIMEOUT_MS = 60_000;

type Answer = { readonly config: Config } | { readonly configError: string } | { readonly error: string };

/**
 * loadConfig in a thread of its own, which ends with it: the same Config (or the same
 * ConfigError), while the modules that make it (zod and its schema, the YAML parser, the mappings:
 * 4-7 MiB of a long-running server's resident memory, measured on the idle server of
 * test/protocol/idle-memory.test.ts) never enter this isolate. Synchronous like loadConfig: this
 * thread waits on a shared flag the loader's thread sets once its answer is posted.
 */
export function loadConfigApart(opts: LoadOptions = {}): Config {
  const flag = new Int32Array(new SharedArrayBuffer(4));
  const { port1, port2 } = new MessageChannel();
  const worker = new Worker(new URL('./load-worker.js', import.meta.url), {
    // process.env is no plain object: its entries are what the loader reads
    workerData: { opts: { ...opts, env: { ...(opts.env ?? process.env) } }, port: port2, flag },
    transferList: [port2],
    // not the parent's flags: with `node -e` they would run the parent's script in this thread too
    execArgv: [],
    stdout: false,
    stderr: false,
  });
  worker.unref();
  try {
    if (Atomics.wait(flag, 0, 0, APART_TIMEOUT_MS) === 'timed-out') throw new Error(`loading the configuration took more than ${APART_TIMEOUT_MS / 1000} s`);
    const answer = receiveMessageOnPort(port1)?.message as Answer | undefined;
    if (!answer) throw new Error('the configuration loader ended without an answer');
    if ('configError' in answer) throw new ConfigError(answer.configError);
    if ('error' in answer) throw new Error(`loading the configuration failed: ${answer.error}`);
    // a structured clone: frozen again as loadConfig freezes it
    return Object.freeze({ ...answer.config, warnings: Object.freeze([...answer.config.warnings]) });
  } finally {
    port1.close();
    void worker.terminate();
  }
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
  // the mirror's upstream credentials
  if (c.mirror) out.mirror = { ...c.mirror, upstreams: c.mirror.upstreams.map((u) => ({ ...u, password: u.password ? '<redacted>' : null })) };
  return out;
}
