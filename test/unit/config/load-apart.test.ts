import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { ConfigError, loadConfig, loadConfigApart, type LoadOptions } from '../../../src/config/load.js';
import { FIXTURES, ROOT } from '../../helpers/paths.js';

const DIST = join(ROOT, 'dist');

const file = (name: string): string => join(FIXTURES, 'config', name);

/** The error loadConfig throws for opts, or undefined. */
function errorOf(load: () => unknown): unknown {
  try {
    load();
  } catch (e) {
    return e;
  }
  return undefined;
}

/**
 * Issue 18 (idle RSS): `serve` loads its configuration in a thread of its own (loadConfigApart), so
 * zod, the YAML parser and the mappings never stay in the server's heap. The answer must be exactly
 * loadConfig's, errors included.
 */
describe('loadConfigApart', () => {
  const cases: [string, LoadOptions][] = [
    ['the shipped sample', { env: {} }],
    ['the sample with the spec variables', { env: { STORAGE_PATH: '/srv/reg', REGISTRY_PORT: '5555', STANDALONE: 'false', MAX_LAYER_SIZE: '2GiB' } }],
    ['the prod flavor', { env: {}, flavor: 'prod' }],
    ['overrides as serve passes them', { env: {}, overrides: { host: '127.0.0.1', http_addr: undefined, port: 0 } }],
    ["the Python registry's own sample", { env: {}, file: file('python-registry-config_sample.yml') }],
    [
      "distribution's config.yml with REGISTRY_ variables",
      { env: { REGISTRY_HTTP_ADDR: '127.0.0.1:5999', REGISTRY_STORAGE_DELETE_ENABLED: 'true' }, file: file('distribution-full.yml') },
    ],
  ];
  for (const [what, opts] of cases) {
    it(`gives loadConfig's Config, frozen: ${what}`, () => {
      const here = loadConfig(opts);
      const apart = loadConfigApart(opts);
      assert.deepEqual(apart, here);
      assert.ok(Object.isFrozen(apart) && Object.isFrozen(apart.warnings));
    });
  }

  it("throws loadConfig's ConfigError, message and all", () => {
    const bad: LoadOptions[] = [
      { env: {}, file: file('bad.yml') },
      { env: {}, file: '/nonexistent/config.yml' },
      { env: {}, flavor: 'no-such-flavor' },
      { env: { REGISTRY_PORT: 'not-a-port' } },
    ];
    for (const opts of bad) {
      const here = errorOf(() => loadConfig(opts));
      const apart = errorOf(() => loadConfigApart(opts));
      assert.ok(here instanceof ConfigError, `loadConfig ${JSON.stringify(opts)}: ${String(here)}`);
      assert.ok(apart instanceof ConfigError, `loadConfigApart ${JSON.stringify(opts)}: ${String(apart)}`);
      assert.equal(apart.message, here.message);
    }
  });

  it('leaves zod out of the serving process: `legacy-registry serve` up and answering, no zod loaded', () => {
    const dir = mkdtempSync(join(tmpdir(), 'lr-apart-'));
    try {
      // the CLI as bin/legacy-registry.cjs runs it, in a process of its own; once the server
      // answers, the process reports whether zod ever ran in its main isolate (zod v4 sets
      // globalThis.__zod_globalConfig when its core module is evaluated)
      const main = pathToFileURL(join(DIST, 'src', 'cli', 'main.js')).href;
      const script = `
        process.argv = [process.argv[0], 'legacy-registry', 'serve', '--host', '127.0.0.1', '--port', '0'];
        await import(${JSON.stringify(main)});
        const net = await import('node:net');
        for (let i = 0; i < 600; i++) {
          const server = process._getActiveHandles().find((h) => h instanceof net.Server && h.listening);
          if (server) {
            const res = await fetch('http://127.0.0.1:' + server.address().port + '/v2/');
            console.log(JSON.stringify({ status: res.status, zod: '__zod_globalConfig' in globalThis }));
            process.exit(0);
          }
          await new Promise((r) => setTimeout(r, 100));
        }
        console.log(JSON.stringify({ error: 'not listening after 60 s' }));
        process.exit(1);
      `;
      const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
        env: { PATH: process.env.PATH ?? '', STORAGE_PATH: join(dir, 'data'), STANDALONE: 'true', LOGLEVEL: 'error' },
        encoding: 'utf8',
        timeout: 90_000,
      });
      assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
      const seen = JSON.parse(r.stdout.trim().split('\n').pop()!) as { status: number; zod: boolean };
      assert.equal(seen.status, 200);
      assert.equal(seen.zod, false, 'zod was loaded in the serving isolate');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('the check above can fail: loadConfig in the same process does load zod', () => {
    const script = `
      const { loadConfig } = await import(${JSON.stringify(pathToFileURL(join(DIST, 'src', 'config', 'load.js')).href)});
      const before = '__zod_globalConfig' in globalThis;
      loadConfig({ env: {} });
      console.log(JSON.stringify({ before, after: '__zod_globalConfig' in globalThis }));
    `;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 60_000 });
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout.trim()), { before: false, after: true });
  });
});
