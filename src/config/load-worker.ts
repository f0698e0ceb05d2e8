import { workerData, type MessagePort } from 'node:worker_threads';
import { ConfigError } from './config-error.js';
import type { LoadOptions } from './loader.js';

/**
 * The thread of loadConfigApart (src/config/load.ts): runs loadConfig, posts the Config or the
 * error, then sets the flag the waiting thread sleeps on. The loader is imported here inside the
 * try, so a failure to load it is an answer too, never a wait until the timeout.
 */
const { opts, port, flag } = workerData as { opts: LoadOptions; port: MessagePort; flag: Int32Array };
try {
  let answer: unknown;
  try {
    const { loadConfig } = await import('./loader.js');
    answer = { config: loadConfig(opts) };
  } catch (e) {
    answer = e instanceof ConfigError ? { configError: e.message } : { error: e instanceof Error ? (e.stack ?? e.message) : String(e) };
  }
  try {
    port.postMessage(answer);
  } catch (e) {
    port.postMessage({ error: `the configuration could not be handed over: ${e instanceof Error ? e.message : String(e)}` });
  }
} finally {
  Atomics.store(flag, 0, 1);
  Atomics.notify(flag, 0);
  port.close();
}
