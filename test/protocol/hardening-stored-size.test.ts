import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from '../helpers/http.js';
import { type ChildServer, spawnServer, stopChild } from '../helpers/child.js';
import { rssMiB } from '../helpers/process-memory.js';
import { makeImage, pushImage } from '../helpers/v1-client.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { pushV2 } from '../helpers/v2-client.js';
import { endpointKey } from '../../src/notifications/notifier.js';

const MiB = 1024 * 1024;
/** The planted object: sparse, so it costs no disk, but a reader that takes it whole holds 300 MiB. */
const HUGE = 300 * MiB;
/** How much the server's VmRSS may grow over a request that meets it. */
const RSS_GROWTH_MIB = 64;

/** Every file below `dir` whose path ends with `suffix`. */
async function find(dir: string, suffix: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { recursive: true, withFileTypes: true })) {
    const p = join(e.parentPath, e.name);
    if (e.isFile() && p.endsWith(suffix)) out.push(p);
  }
  return out;
}

/**
 * A small record of the store (a v1 ancestry, a manifest, a queued notification batch) that became
 * huge (a 300 MiB file on disk, an S3 object of anything) is refused at its bound, not read whole:
 * the request answers an error within seconds, the server's memory stays where it was, and it goes
 * on answering. Before: each was read whole into memory (and JSON.parse'd).
 */
describe('stored records past their bound are not read whole', { timeout: 180_000 }, () => {
  let dir: string;
  const servers: ChildServer[] = [];
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'lr-stored-size-'));
  });
  after(async () => {
    for (const s of servers) await stopChild(s);
    await rm(dir, { recursive: true, force: true });
  });

  const start = async (env: Record<string, string>): Promise<ChildServer> => {
    const s = await spawnServer({ V2: 'true', ...env }, [], { startTimeoutMs: 60_000 });
    servers.push(s);
    return s;
  };
  /** `path` answered an error status quickly, the server's RSS did not grow past the bound, and /_ping still answers. */
  async function refusedLightly(s: ChildServer, path: string, headers: Record<string, string> = {}): Promise<void> {
    const rss0 = rssMiB(s.proc.pid!);
    const t0 = Date.now();
    const got = await request(s.url, path, { headers });
    const ms = Date.now() - t0;
    const grown = rssMiB(s.proc.pid!) - rss0;
    assert.ok(got.status >= 400, `${path}: an error, not ${got.status}`);
    assert.ok(ms < 5000, `${path}: answered in ${ms} ms`);
    assert.ok(grown < RSS_GROWTH_MIB, `${path}: VmRSS grew by ${grown.toFixed(1)} MiB`);
    assert.equal((await request(s.url, '/v1/_ping')).status, 200);
  }

  it('a v1 ancestry record and a v2 manifest of 300 MiB: an error, not read', async () => {
    const data = join(dir, 'data');
    const a = await start({ STORAGE_PATH: data });
    const img = makeImage();
    const pushed = await pushImage(a.url, img);
    assert.deepEqual(
      pushed.map((r) => r.status),
      [404, 200, 200, 200],
    );
    const { digest } = await pushV2(a.url, 'big/manifest', 'v1');
    await stopChild(a);

    const [ancestry] = await find(data, `/${img.id}/ancestry`);
    assert.ok(ancestry, 'the ancestry record on disk');
    await truncate(ancestry, HUGE);
    const [manifest] = await find(data, `/${digest.slice(7)}/data`);
    assert.ok(manifest, 'the manifest bytes on disk');
    await truncate(manifest, HUGE);

    const b = await start({ STORAGE_PATH: data });
    await refusedLightly(b, `/v2/big/manifest/manifests/${digest}`, { Accept: 'application/vnd.docker.distribution.manifest.v2+json' });
    await refusedLightly(b, `/v1/images/${img.id}/ancestry`);
    assert.match(b.output(), /holds more than the \d+ bytes expected/);
  });

  it('a queued notification batch of 300 MiB: left in place (logged), the server starts and answers', async () => {
    const data = join(dir, 'events');
    const queue = join(data, 'events', 'notifications', endpointKey('hook'), 'n1');
    await mkdir(queue, { recursive: true });
    const batch = join(queue, '000001700000000-000000000-abcd');
    await writeFile(batch, '');
    await truncate(batch, HUGE);
    const config = join(dir, 'events.yml');
    await writeFile(
      config,
      [
        'dev:',
        `  storage_path: ${JSON.stringify(data)}`,
        '  standalone: true',
        '  notifications:',
        '    node: n1',
        '    endpoints:',
        '      - name: hook',
        '        url: http://127.0.0.1:9/',
        '',
      ].join('\n'),
    );
    const t0 = Date.now();
    const s = await start({ DOCKER_REGISTRY_CONFIG: config });
    const ms = Date.now() - t0;
    const rss = rssMiB(s.proc.pid!);
    assert.match(s.output(), /stored notification batch unreadable/);
    assert.ok(rss < 200, `VmRSS ${rss.toFixed(1)} MiB after the start`);
    assert.ok(ms < 30_000, `started in ${ms} ms`);
    assert.equal((await request(s.url, '/v1/_ping')).status, 200);
  });
});

/**
 * The stand-in index's image list (standalone, `_index_images`) is read back within 64 MiB, but each
 * PUT images merged its entries in whatever the size: a merge past 64 MiB wrote a list that GET
 * images (and every later merge) then refused with a 500, for good. Such a merge is now refused.
 */
describe("the stand-in index's image list stays within the bound it is read back with", () => {
  let s: TestServer;
  before(async () => {
    s = await startTestServer({ standalone: true, metadata_cache_ttl: 0 });
  });
  after(() => s?.stop());

  it('a PUT images that would take the list past 64 MiB: 413, the stored list unchanged; one that fits is merged', async () => {
    const hex = (n: number): string => String(n).padStart(64, '0');
    // ~63.5 MiB already listed: 15 entries of 4 MiB and one of 3.5 MiB (checksums of any length are kept)
    const stored = [
      ...Array.from({ length: 15 }, (_, i) => ({ id: hex(i), checksum: `sha256:${'a'.repeat(4 * MiB)}` })),
      { id: hex(15), checksum: `sha256:${'b'.repeat(3.5 * MiB)}` },
    ];
    const dir = join(s.dataDir, 'v1', 'repositories', 'big', 'list');
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, '_index_images'), JSON.stringify(stored));
    const path = '/v1/repositories/big/list/images';
    const before = await request(s.url, path);
    assert.equal(before.status, 200, before.text.slice(0, 200));
    assert.equal(before.json<unknown[]>().length, 16);

    // ~1.1 MiB more of entries the index takes (an image id and a sha256 checksum each, ~110 bytes;
    // within max_json_size): the merged list would be past 64 MiB
    const over = await request(s.url, path, {
      method: 'PUT',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(Array.from({ length: 10_500 }, (_, i) => ({ id: hex(100 + i), checksum: `sha256:${hex(i)}` }))),
    });
    assert.equal(over.status, 413, over.text.slice(0, 200));
    assert.match(over.json<{ error: string }>().error, /^Repository image list too large/);
    const after = await request(s.url, path);
    assert.equal(after.status, 200, `the list is still read: ${after.text.slice(0, 200)}`);
    assert.deepEqual(
      after.json<{ id: string }[]>().map((e) => e.id),
      stored.map((e) => e.id),
    );

    // an entry that fits is merged as before
    const small = await request(s.url, path, { method: 'PUT', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify([{ id: hex(17) }]) });
    assert.equal(small.status, 204, small.text);
    const last = await request(s.url, path);
    assert.equal(last.status, 200);
    assert.deepEqual(
      last.json<{ id: string }[]>().map((e) => e.id),
      [hex(17), ...stored.map((e) => e.id)],
    );
  });
});
