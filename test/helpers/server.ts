import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../../src/config/load.js';
import type { Config } from '../../src/config/schema.js';
import { createLogger } from '../../src/log/logger.js';
import { startServer, type Role, type RunningServer } from '../../src/main.js';

export interface TestServer extends RunningServer {
  readonly dataDir: string;
  stop(): Promise<void>;
}

/** The real server on an ephemeral loopback port with a fresh data directory. */
export async function startTestServer(overrides: Record<string, unknown> = {}, opts: { role?: Role; dataDir?: string } = {}): Promise<TestServer> {
  const dataDir = opts.dataDir ?? (await mkdtemp(join(tmpdir(), 'lr-test-')));
  const config: Config = loadConfig({
    env: {},
    flavor: 'test',
    overrides: { host: '127.0.0.1', port: 0, storage_path: dataDir, loglevel: 'silent', ...overrides },
  });
  const level = process.env.TEST_LOG ? 'debug' : 'silent';
  const running = await startServer(config, { role: opts.role ?? 'all', logger: createLogger(level) });
  return {
    ...running,
    dataDir,
    async stop() {
      await running.close();
      if (!opts.dataDir) await rm(dataDir, { recursive: true, force: true });
    },
  };
}
