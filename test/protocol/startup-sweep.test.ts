import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { loadConfig } from '../../src/config/load.js';
import { createLogger } from '../../src/log/logger.js';
import { startServer, type RunningServer } from '../../src/main.js';

/**
 * The filesystem storage's sweep of stale temporary files (`*~tmp-*` a killed process left, older
 * than an hour) walks the whole key tree: the server runs it while it serves, not before it listens.
 * Here a stale file and a young one (another node's write in flight) lie in the storage of a server
 * being started: the stale one goes after the start and the log says so, the young one stays, and
 * the registry answers meanwhile.
 */
describe('startup sweep of stale temporary files', () => {
  let dir: string;
  let server: RunningServer;
  const lines: string[] = [];
  const stale = (): string => join(dir, 'v1', 'repositories', 'library', 'x', 'tag_latest~tmp-0123456789abcdef');
  const young = (): string => join(dir, 'v1', 'repositories', 'library', 'x', '_index_images~tmp-fedcba9876543210');

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'lr-sweep-'));
    await mkdir(join(dir, 'v1', 'repositories', 'library', 'x'), { recursive: true });
    await writeFile(stale(), 'partial');
    const old = new Date(Date.now() - 2 * 60 * 60 * 1000);
    await utimes(stale(), old, old);
    await writeFile(young(), 'in flight on another node');
    const config = loadConfig({ env: {}, flavor: 'test', overrides: { host: '127.0.0.1', port: 0, storage_path: dir, loglevel: 'info' } });
    server = await startServer(config, { role: 'all', logger: createLogger('info', {}, (l) => lines.push(l)) });
  });
  after(async () => {
    await server?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('removes the stale file after the start, keeps the young one, and logs what it removed', async () => {
    const ping = await fetch(`http://127.0.0.1:${server.port}/_ping`);
    assert.equal(ping.status, 200);
    for (let i = 0; i < 100 && existsSync(stale()); i++) await sleep(50);
    assert.equal(existsSync(stale()), false, 'the stale temporary file was swept');
    assert.equal(existsSync(young()), true, 'a young temporary file stays');
    for (let i = 0; i < 40 && !lines.some((l) => l.includes('removed stale temporary files')); i++) await sleep(50);
    const line = lines.find((l) => l.includes('removed stale temporary files'));
    assert.ok(line, `log: ${lines.join('')}`);
    assert.match(line, /count=1\b/);
  });
});
