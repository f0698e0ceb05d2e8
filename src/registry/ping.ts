import type { Context } from 'koa';
import { hostname, release, type as osType, arch } from 'node:os';
import type { Config } from '../config/schema.js';
import { sendJson } from '../http/respond.js';
import type { RegistryDeps } from './deps.js';

/** The value of X-Docker-Registry-Standalone (spec §2.3, Q5). */
export function standaloneHeader(c: Config): string {
  if (c.mirroring?.source) return 'mirror';
  return c.standalone ? 'True' : 'False';
}

/** `/` (R1), `/_ping` and `/v1/_ping` (R2), `/_status` and `/v1/_status`. */
export function pingHandlers(deps: RegistryDeps) {
  const { config } = deps;

  /** GET /: the configured greeting. */
  const root = (ctx: Context): void => sendJson(ctx, 200, config.issue);

  /** GET /_ping: standalone or not; with `debug`, host and versions. */
  const ping = (ctx: Context): void => {
    ctx.set('X-Docker-Registry-Standalone', standaloneHeader(config));
    if (config.debug) {
      ctx.set('X-Docker-Registry-Config', config.flavor);
      sendJson(ctx, 200, {
        host: [osType(), hostname(), release(), arch()],
        launch: process.argv,
        versions: { 'legacy-registry': deps.version, node: process.version },
      });
      return;
    }
    sendJson(ctx, 200, {});
  };

  /** GET /_status: the Python registry's status answer. */
  const status = (ctx: Context): void => sendJson(ctx, 200, { failures: {}, host: hostname(), services: ['storage'] });

  return { root, ping, status };
}
