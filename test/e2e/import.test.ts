import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { readdir, readFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { request } from '../helpers/http.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { pyImage, sha256, writePythonTree, type PyImage } from '../helpers/python-tree.js';
import { writeOciLayout } from '../helpers/oci-layout.js';
import { cli, skopeo, startDistribution, toolsMissing } from '../helpers/migrate.js';

/* The npm docker-registry-client 3.4: a real v1 client (clients.md §1). */
const require = createRequire(import.meta.url);
type Cb<T> = (err: Error | null, res: T) => void;
interface V1Client {
  listRepoTags(cb: Cb<Record<string, string>>): void;
  getImgAncestry(opts: { imgId: string }, cb: Cb<string[]>): void;
  getImgJson(opts: { imgId: string }, cb: Cb<Record<string, unknown>>): void;
  getImgLayerStream(opts: { imgId: string }, cb: Cb<Readable>): void;
  search(opts: { term: string }, cb: Cb<{ results: { name: string }[] }>): void;
  close(): void;
}
const drc = require('docker-registry-client') as { createClientV1(o: { name: string; username?: string; password?: string; log?: unknown }): V1Client };
const bunyan = require('bunyan') as { createLogger(o: { name: string; level: string }): unknown };
const log = bunyan.createLogger({ name: 'import-test', level: 'fatal' });
const call = <T>(fn: (cb: Cb<T>) => void): Promise<T> => new Promise((res, rej) => fn((e, r) => (e ? rej(e) : res(r))));
async function readAll(s: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of s) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}
const basic = (u: string, p: string): string => `Basic ${Buffer.from(`${u}:${p}`).toString('base64')}`;

describe(
  'legacy-registry import: a Python docker-registry tree and a distribution 2.8.2 tree, pulled back by real clients',
  { skip: toolsMissing(), timeout: 600_000 },
  () => {
    let s: TestServer;
    let host: string;
    let work: string;
    let py: string;
    let base: PyImage, mid: PyImage, top: PyImage, other: PyImage, bad: PyImage, child: PyImage, noSum: PyImage, untagged: PyImage, ts: PyImage, tsBad: PyImage;

    before(async () => {
      work = await mkdtemp(join(tmpdir(), 'lr-import-'));
      s = await startTestServer({ v2: true, bcrypt_cost: 4 });
      host = new URL(s.url).host;
      assert.equal(
        (await request(s.url, '/v1/users/', { method: 'POST', body: JSON.stringify({ username: 'alice', password: 'alicepw', email: 'alice@example.com' }) }))
          .status,
        201,
      );
      // the tree: plain and gzip layers, parents, several tags, a private repository, a layer damaged
      // after its checksum was recorded (and an image built on it), the old bare-string _checksum,
      // an image without any recorded checksum
      base = pyImage({ gzip: false, label: 'base' });
      mid = pyImage({ gzip: true, parent: base.id, size: 3000 });
      top = pyImage({ gzip: true, parent: mid.id, size: 200_000 });
      other = pyImage({ gzip: false, parent: base.id, size: 5000 });
      noSum = pyImage({ gzip: true, parent: base.id });
      bad = pyImage({ gzip: true, parent: base.id, size: 4000 });
      child = pyImage({ gzip: true, parent: bad.id });
      untagged = pyImage({ gzip: true, parent: mid.id, size: 2000 });
      ts = pyImage({ gzip: true, parent: base.id, size: 1500 });
      tsBad = pyImage({ gzip: false, parent: base.id, size: 1500 });
      py = join(work, 'python');
      await writePythonTree(
        py,
        [base, mid, top, other, noSum, bad, child, untagged, ts, tsBad],
        [
          { name: 'alice/web', tags: { latest: top.id, '1.0': mid.id }, untagged: [untagged.id] },
          { name: 'alice/secret', tags: { latest: other.id }, private: true },
          { name: 'tools', tags: { latest: noSum.id, bad: bad.id, child: child.id, ts: ts.id, tsbad: tsBad.id } },
        ],
        {
          bareChecksum: new Set([mid.id]),
          noChecksum: new Set([noSum.id]),
          corrupt: new Set([bad.id]),
          tarsumOnly: new Set([ts.id]),
          wrongTarsum: new Set([tsBad.id]),
        },
      );
    });
    after(async () => {
      await s?.stop();
      await rm(work, { recursive: true, force: true });
    });

    it('--dry-run lists what would be imported and writes nothing', async () => {
      const r = await cli(s.dataDir, ['import', '--owner', 'alice', '--dry-run', py]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /would import from .* \(python layout\)/);
      assert.match(r.stdout, new RegExp(`tag alice/web:latest → ${top.id}`));
      assert.match(r.stdout, /alice\/secret private/);
      assert.deepEqual(await readdir(join(s.dataDir, 'v1', 'repositories')).catch(() => []), [], 'no v1 records written');
      assert.deepEqual(await readdir(join(s.dataDir, 'blobs')).catch(() => []), [], 'no blobs written');
      assert.equal((await request(s.url, '/v1/search?q=web')).json<{ num_results: number }>().num_results, 0);
    });

    it('imports the tree: verified images and tags, the damaged image and what needs it skipped with the reason', async () => {
      const reportFile = join(work, 'report.json');
      const r = await cli(s.dataDir, ['import', '--owner', 'alice', '--report', reportFile, py]);
      assert.equal(r.code, 3, `exit 3: something was skipped\n${r.stdout}${r.stderr}`);
      // nothing but the import's own lines: no warning of the process (2026-12-07: one per layer file
      // the worker closed, "closed but not opened in unmanaged mode")
      assert.doesNotMatch(r.stderr, /Warning/);
      const report = JSON.parse(await readFile(reportFile, 'utf8')) as {
        tags: number;
        images: { imported: number; present: number };
        skipped: { what: string; reason: string }[];
        bytes: number;
      };
      assert.equal(report.tags, 5, 'web:latest, web:1.0, secret:latest, tools:latest, tools:ts');
      assert.deepEqual(report.skipped.map((x) => x.what).sort(), ['library/tools:bad', 'library/tools:child', 'library/tools:tsbad']);
      for (const x of report.skipped.filter((x) => x.what !== 'library/tools:tsbad')) assert.match(x.reason, /payload checksum .* recorded, the bytes give/);
      // a tree that recorded only a tarsum (PY ≤ 0.8): the tarsum is computed and compared
      assert.match(
        report.skipped.find((x) => x.what === 'library/tools:tsbad')!.reason,
        /tarsum tarsum\+sha256:0{64} recorded, the layer gives tarsum\+sha256:/,
      );
      assert.ok(report.bytes > 200_000);
    });

    it('npm docker-registry-client pulls over v1 (index → token → registry): ids, ancestry, json and layer bytes as in the tree', async () => {
      const c = drc.createClientV1({ name: `${host}/alice/web`, username: 'alice', password: 'alicepw', log });
      try {
        assert.deepEqual(await call<Record<string, string>>((cb) => c.listRepoTags(cb)), { '1.0': mid.id, latest: top.id });
        assert.deepEqual(await call<string[]>((cb) => c.getImgAncestry({ imgId: top.id }, cb)), [top.id, mid.id, base.id]);
        for (const img of [top, mid, base]) {
          assert.deepEqual(await call<Record<string, unknown>>((cb) => c.getImgJson({ imgId: img.id }, cb)), JSON.parse(img.json.toString()));
          assert.ok(
            (await readAll(await call<Readable>((cb) => c.getImgLayerStream({ imgId: img.id }, cb)))).equals(img.layer),
            `layer of ${img.id} byte-identical`,
          );
        }
      } finally {
        c.close();
      }
      // the private repository stays private: the owner reads it, anonymous gets nothing
      const owner = drc.createClientV1({ name: `${host}/alice/secret`, username: 'alice', password: 'alicepw', log });
      const anon = drc.createClientV1({ name: `${host}/alice/secret`, log });
      try {
        assert.deepEqual(await call<Record<string, string>>((cb) => owner.listRepoTags(cb)), { latest: other.id });
        await assert.rejects(call((cb) => anon.listRepoTags(cb)));
      } finally {
        owner.close();
        anon.close();
      }
      // the damaged image was never published, not even in progress
      const t = await request(s.url, '/v1/repositories/library/tools/images', { headers: { 'X-Docker-Token': 'true' } });
      assert.equal(t.status, 200);
      assert.deepEqual(
        t
          .json<{ id: string }[]>()
          .map((e) => e.id)
          .sort(),
        [base.id, noSum.id, ts.id].sort(),
      );
    });

    it('tag and repository metadata (tag<name>_json, json) and the untagged images of _index_images are imported', async () => {
      // the index's image list has the untagged image (and its chain), and a v1 client reads it by id
      const list = await request(s.url, '/v1/repositories/alice/web/images', {
        headers: { Authorization: basic('alice', 'alicepw'), 'X-Docker-Token': 'true' },
      });
      assert.equal(list.status, 200);
      const token = { Authorization: `Token ${String(list.headers['x-docker-token'])}` };
      const tagJson = await request(s.url, '/v1/repositories/alice/web/tags/latest/json', { headers: token });
      assert.equal(tagJson.status, 200);
      // as the Python registry served that file: what it holds, nothing added
      assert.deepEqual(tagJson.json(), { arch: 'amd64', docker_version: '1.3.2', last_update: 1400000000, os: 'linux' });
      const repoJson = await request(s.url, '/v1/repositories/alice/web/json', { headers: token });
      assert.equal(repoJson.status, 200);
      assert.equal(repoJson.json<{ last_update: unknown }>().last_update, 1400000000);
      const ids = list.json<{ id: string; checksum?: string }[]>();
      assert.deepEqual(ids.map((e) => e.id).sort(), [base.id, mid.id, top.id, untagged.id].sort());
      assert.equal(ids.find((e) => e.id === untagged.id)?.checksum, untagged.payload, 'the verified payload checksum');
      const c = drc.createClientV1({ name: `${host}/alice/web`, username: 'alice', password: 'alicepw', log });
      try {
        assert.deepEqual(await call<string[]>((cb) => c.getImgAncestry({ imgId: untagged.id }, cb)), [untagged.id, mid.id, base.id]);
        assert.ok((await readAll(await call<Readable>((cb) => c.getImgLayerStream({ imgId: untagged.id }, cb)))).equals(untagged.layer));
      } finally {
        c.close();
      }
    });

    it('search finds the imported repositories (the private one only for its owner)', async () => {
      const anon = (await request(s.url, '/v1/search?q=alice')).json<{ results: { name: string }[] }>();
      assert.deepEqual(
        anon.results.map((x) => x.name),
        ['alice/web'],
      );
      const mine = (await request(s.url, '/v1/search?q=alice', { headers: { Authorization: basic('alice', 'alicepw') } })).json<{
        results: { name: string }[];
      }>();
      assert.deepEqual(mine.results.map((x) => x.name).sort(), ['alice/secret', 'alice/web']);
    });

    it('skopeo pulls the imported v1 images over v2 (the bridge): gzip and plain layers byte-identical', async () => {
      await skopeo(work, 'copy', '--src-tls-verify=false', `docker://${host}/alice/web:latest`, `dir:${join(work, 'web')}`);
      for (const img of [base, mid, top]) assert.ok((await readFile(join(work, 'web', sha256(img.layer).slice(7)))).equals(img.layer));
      const inspect = JSON.parse(
        (await skopeo(work, 'inspect', '--tls-verify=false', '--creds', 'alice:alicepw', `docker://${host}/alice/secret:latest`)).stdout,
      ) as { Layers: string[] };
      assert.deepEqual(inspect.Layers, [sha256(base.layer), sha256(other.layer)]);
      await assert.rejects(skopeo(work, 'inspect', '--tls-verify=false', `docker://${host}/alice/secret:latest`), 'private over v2 too');
    });

    it('a second run imports nothing new', async () => {
      const reportFile = join(work, 'report2.json');
      const r = await cli(s.dataDir, ['import', '--owner', 'alice', '--report', reportFile, py]);
      assert.equal(r.code, 3);
      const report = JSON.parse(await readFile(reportFile, 'utf8')) as { images: { imported: number; present: number }; bytes: number };
      assert.equal(report.images.imported, 0);
      assert.equal(report.bytes, 0);
      assert.ok(report.images.present >= 5);
    });

    it('imports a tree written by distribution 2.8.2 (pushed with skopeo): digests kept, blobs verified, v1 view derived', async () => {
      const droot = join(work, 'dist-data');
      const d = await startDistribution(work, 'source', droot);
      const a = await writeOciLayout(join(work, 'oci-a'), 'v1');
      const b = await writeOciLayout(join(work, 'oci-b'), 'v1');
      try {
        await skopeo(work, 'copy', '--dest-tls-verify=false', `oci:${a.dir}:v1`, `docker://${d.host}/team/app:1.0`);
        await skopeo(work, 'copy', '--dest-tls-verify=false', '--format', 'v2s2', `oci:${a.dir}:v1`, `docker://${d.host}/team/app:s2`);
        await skopeo(work, 'copy', '--dest-tls-verify=false', `oci:${b.dir}:v1`, `docker://${d.host}/team/broken:1.0`);
      } finally {
        await d.stop();
      }
      const s2digest = sha256(
        await readFile(
          join(
            droot,
            'docker/registry/v2/blobs/sha256',
            (await readFile(join(droot, 'docker/registry/v2/repositories/team/app/_manifests/tags/s2/current/link'), 'utf8')).slice(7, 9),
            (await readFile(join(droot, 'docker/registry/v2/repositories/team/app/_manifests/tags/s2/current/link'), 'utf8')).slice(7),
            'data',
          ),
        ),
      );
      // damage b's layer in the tree: that blob, its manifest and tag are reported and skipped
      const bl = sha256(b.layer).slice(7);
      const blPath = join(droot, 'docker/registry/v2/blobs/sha256', bl.slice(0, 2), bl, 'data');
      const bytes = await readFile(blPath);
      bytes[10] = bytes[10]! ^ 0xff;
      await writeFile(blPath, bytes);

      const reportFile = join(work, 'report-dist.json');
      const r = await cli(s.dataDir, ['import', '--owner', 'alice', '--report', reportFile, droot]);
      assert.equal(r.code, 3, r.stdout + r.stderr);
      const report = JSON.parse(await readFile(reportFile, 'utf8')) as {
        layout: string;
        manifests: { imported: number };
        tags: number;
        skipped: { what: string; reason: string }[];
      };
      assert.equal(report.layout, 'distribution');
      assert.equal(report.tags, 2);
      assert.ok(
        report.skipped.some((x) => x.what.startsWith('team/broken@') && /hash to/.test(x.reason)),
        JSON.stringify(report.skipped),
      );
      assert.ok(report.skipped.some((x) => x.what === 'team/broken:1.0'));

      // skopeo reads the same digests from us as distribution served, and the same bytes
      const oci = JSON.parse((await skopeo(work, 'inspect', '--tls-verify=false', '--creds', 'alice:alicepw', `docker://${host}/team/app:1.0`)).stdout) as {
        Digest: string;
      };
      assert.equal(oci.Digest, sha256(a.manifest));
      const s2 = JSON.parse((await skopeo(work, 'inspect', '--tls-verify=false', '--creds', 'alice:alicepw', `docker://${host}/team/app:s2`)).stdout) as {
        Digest: string;
      };
      assert.equal(s2.Digest, s2digest);
      await skopeo(work, 'copy', '--src-tls-verify=false', '--src-creds', 'alice:alicepw', `docker://${host}/team/app:1.0`, `dir:${join(work, 'app')}`);
      assert.ok((await readFile(join(work, 'app', sha256(a.layer).slice(7)))).equals(a.layer));
      assert.equal(
        (await skopeo(work, 'inspect', '--tls-verify=false', '--creds', 'alice:alicepw', `docker://${host}/team/broken:1.0`).catch((e: Error) => e)) instanceof
          Error,
        true,
      );
      // the index knows the repository (owned by alice) and a v1 client pulls the bridge's view
      const c = drc.createClientV1({ name: `${host}/team/app`, username: 'alice', password: 'alicepw', log });
      try {
        const tags = await call<Record<string, string>>((cb) => c.listRepoTags(cb));
        assert.deepEqual(Object.keys(tags).sort(), ['1.0', 's2']);
        const layer = await readAll(await call<Readable>((cb) => c.getImgLayerStream({ imgId: tags['1.0']! }, cb)));
        assert.ok(layer.equals(a.layer));
      } finally {
        c.close();
      }
      // again: nothing new
      const again = await cli(s.dataDir, ['import', '--owner', 'alice', '--report', reportFile, droot]);
      assert.equal(again.code, 3);
      const r2 = JSON.parse(await readFile(reportFile, 'utf8')) as { manifests: { imported: number }; blobs: { imported: number } };
      assert.equal(r2.manifests.imported, 0);
      assert.equal(r2.blobs.imported, 0);
    });
  },
);
