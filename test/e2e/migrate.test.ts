import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { existsSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import bcrypt from 'bcryptjs';
import { request } from '../helpers/http.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { pyImage, writePythonTree } from '../helpers/python-tree.js';
import { writeOciLayout } from '../helpers/oci-layout.js';
import { cli, skopeo, startDistribution, toolsMissing, type Distribution } from '../helpers/migrate.js';
import { dockerdMissing, startDockerd } from '../helpers/dockerd.js';

interface Report {
  moved: { source: string; target: string; digest: string; resumed?: boolean }[];
  failed: { what: string; reason: string }[];
  blobs: { uploaded: number; mounted: number; present: number };
}

/** Digests of the blob uploads distribution completed (201 to a PUT …/blobs/uploads/…?digest=…), from its access log. */
function completedUploads(log: string): string[] {
  const out: string[] = [];
  for (const m of log.matchAll(/"PUT \/v2\/[^"]*\/blobs\/uploads\/[^"]*[?&]digest=(sha256(?::|%3A)[a-f0-9]{64})[^"]*" 201/gi))
    out.push(m[1]!.replace(/%3A/i, ':'));
  return out;
}

describe(
  'legacy-registry migrate: to distribution 2.8.2 (htpasswd) and to another legacy-registry (Bearer)',
  { skip: toolsMissing(), timeout: 900_000 },
  () => {
    let s: TestServer;
    let host: string;
    let work: string;
    let target: Distribution;
    const env = { MIGRATE_PASSWORD: 'bobpw' };

    before(async () => {
      work = await mkdtemp(join(tmpdir(), 'lr-migrate-'));
      s = await startTestServer({ v2: true, bcrypt_cost: 4 });
      host = new URL(s.url).host;
      assert.equal(
        (await request(s.url, '/v1/users/', { method: 'POST', body: JSON.stringify({ username: 'alice', password: 'alicepw', email: 'alice@example.com' }) }))
          .status,
        201,
      );
      // v1 content (imported from a Python tree) ...
      const base = pyImage({ gzip: false, label: 'base' });
      const mid = pyImage({ gzip: true, parent: base.id, size: 3000 });
      const top = pyImage({ gzip: true, parent: mid.id, size: 50_000 });
      await writePythonTree(
        join(work, 'py'),
        [base, mid, top],
        [
          { name: 'alice/web', tags: { latest: top.id, '1.0': mid.id } },
          { name: 'alice/secret', tags: { latest: mid.id }, private: true },
        ],
      );
      const imported = await cli(s.dataDir, ['import', '--owner', 'alice', join(work, 'py')]);
      assert.equal(imported.code, 0, imported.stdout + imported.stderr);
      // ... v2 content pushed as OCI, and a schema1-only tag
      const oci = await writeOciLayout(join(work, 'oci'), 'v1');
      await skopeo(work, 'copy', '--dest-tls-verify=false', '--dest-creds', 'alice:alicepw', `oci:${oci.dir}:v1`, `docker://${host}/alice/tool:2.0`);
      await skopeo(
        work,
        'copy',
        '--dest-tls-verify=false',
        '--dest-creds',
        'alice:alicepw',
        '--format',
        'v2s1',
        `oci:${oci.dir}:v1`,
        `docker://${host}/alice/old:s1`,
      );
      await writeFile(join(work, 'htpasswd'), `bob:${bcrypt.hashSync('bobpw', 5)}\n`);
      target = await startDistribution(work, 'target', join(work, 'target-data'), join(work, 'htpasswd'));
    });
    after(async () => {
      await target?.stop();
      await s?.stop();
      await rm(work, { recursive: true, force: true });
    });

    /** The digest our /v2/ serves for a tag (as skopeo, an admin-less reader with alice's rights, sees it). */
    async function ourDigest(name: string, tag: string): Promise<string> {
      return (
        JSON.parse((await skopeo(work, 'inspect', '--tls-verify=false', '--creds', 'alice:alicepw', `docker://${host}/${name}:${tag}`)).stdout) as {
          Digest: string;
        }
      ).Digest;
    }

    it('--dry-run lists every tag with its digest and contacts nothing', async () => {
      const r = await cli(s.dataDir, ['migrate', '--to', 'http://127.0.0.1:9', '--dry-run']);
      assert.equal(r.code, 3, 'the schema1 tag cannot move');
      assert.match(r.stdout, /\+ alice\/web:latest → alice\/web:latest sha256:[a-f0-9]{64} \(4 blobs/);
      assert.match(r.stdout, /alice\/old:s1: schema1-only content/);
    });

    it('migrates every tag (v1 through the bridge, v2 as stored) to distribution with htpasswd; skopeo reads the digests our /v2/ serves', async () => {
      const reportFile = join(work, 'report.json');
      const r = await cli(s.dataDir, ['migrate', '--to', `http://${target.host}`, '--username', 'bob', '--tag-map', '1.0=one', '--report', reportFile], env);
      assert.equal(r.code, 3, r.stdout + r.stderr);
      const report = JSON.parse(await readFile(reportFile, 'utf8')) as Report;
      assert.deepEqual(report.moved.map((m) => m.target).sort(), ['alice/secret:latest', 'alice/tool:2.0', 'alice/web:latest', 'alice/web:one']);
      assert.deepEqual(
        report.failed.map((f) => f.what),
        ['alice/old:s1'],
      );
      assert.ok(report.blobs.mounted > 0, 'a blob already pushed to one repository is mounted into the next');
      for (const [name, tag, targetTag] of [
        ['alice/web', 'latest', 'latest'],
        ['alice/web', '1.0', 'one'],
        ['alice/secret', 'latest', 'latest'],
        ['alice/tool', '2.0', '2.0'],
      ] as const) {
        const theirs = JSON.parse(
          (await skopeo(work, 'inspect', '--tls-verify=false', '--creds', 'bob:bobpw', `docker://${target.host}/${name}:${targetTag}`)).stdout,
        ) as { Digest: string };
        assert.equal(theirs.Digest, await ourDigest(name, tag), `${name}:${tag}`);
      }
      // and the image is whole there: skopeo copies it out
      await skopeo(work, 'copy', '--src-tls-verify=false', '--src-creds', 'bob:bobpw', `docker://${target.host}/alice/web:latest`, `dir:${join(work, 'out')}`);
      // a second run moves nothing (HEAD finds every blob; the manifests are re-put and verified)
      const again = await cli(
        s.dataDir,
        ['migrate', '--to', `http://${target.host}`, '--username', 'bob', '--tag-map', '1.0=one', '--report', reportFile],
        env,
      );
      assert.equal(again.code, 3);
      assert.equal((JSON.parse(await readFile(reportFile, 'utf8')) as Report).blobs.uploaded, 0);
    });

    it(
      'dockerd (Debian docker.io 20.10) logs in to the target and pulls every migrated tag: the digests our /v2/ serves',
      { skip: dockerdMissing() },
      async () => {
        const d = await startDockerd();
        try {
          await d.docker('login', '--username', 'bob', '--password', 'bobpw', target.host);
          for (const [name, tag, targetTag] of [
            ['alice/web', 'latest', 'latest'],
            ['alice/web', '1.0', 'one'],
            ['alice/secret', 'latest', 'latest'],
            ['alice/tool', '2.0', '2.0'],
          ] as const) {
            const ref = `${target.host}/${name}:${targetTag}`;
            await d.docker('pull', ref);
            const digests = JSON.parse((await d.docker('image', 'inspect', '--format', '{{json .RepoDigests}}', ref)).stdout) as string[];
            assert.ok(digests.includes(`${target.host}/${name}@${await ourDigest(name, tag)}`), `${ref}: ${digests.join(' ')}`);
            // the image dockerd built from the layers is the one our /v2/ describes (its config digest)
            const manifest = JSON.parse(
              (await skopeo(work, 'inspect', '--raw', '--tls-verify=false', '--creds', 'alice:alicepw', `docker://${host}/${name}:${tag}`)).stdout,
            ) as { config: { digest: string } };
            assert.equal((await d.docker('image', 'inspect', '--format', '{{.Id}}', ref)).stdout.trim(), manifest.config.digest, ref);
          }
        } finally {
          await d.stop();
        }
      },
    );

    it("refuses wrong credentials with the target's answer", async () => {
      const r = await cli(s.dataDir, ['migrate', '--to', `http://${target.host}`, '--username', 'bob'], { MIGRATE_PASSWORD: 'wrong' });
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /401/);
    });

    it('an interrupted migration resumes from its state file without uploading a finished blob again', async () => {
      // big incompressible layers, one tag at a time, killed once two blobs are recorded as done
      const layers = [pyImage({ gzip: false, size: 3_000_000 })];
      for (let i = 0; i < 4; i++) layers.push(pyImage({ gzip: true, parent: layers[layers.length - 1]!.id, size: 3_000_000 }));
      await writePythonTree(join(work, 'big'), layers, [{ name: 'alice/big', tags: { latest: layers[4]!.id, mid: layers[2]!.id } }]);
      assert.equal((await cli(s.dataDir, ['import', '--owner', 'alice', join(work, 'big')])).code, 0);
      const fresh = await startDistribution(work, 'fresh', join(work, 'fresh-data'), join(work, 'htpasswd'));
      try {
        const state = join(work, 'big.state');
        const args = ['migrate', '--to', `http://${fresh.host}`, '--username', 'bob', '--repo', 'alice/big', '--concurrency', '1', '--state', state];
        const first = await cli(s.dataDir, args, env, (p) => {
          const t = setInterval(() => {
            const done = existsSync(state)
              ? readFileSync(state, 'utf8')
                  .split('\n')
                  .filter((l) => l.includes('"blob"')).length
              : 0;
            if (done >= 2) {
              clearInterval(t);
              p.kill('SIGKILL');
            }
          }, 5);
          p.once('exit', () => clearInterval(t));
        });
        assert.equal(first.code, 128, `killed before finishing:\n${first.stdout}${first.stderr}`);
        const doneBefore = readFileSync(state, 'utf8')
          .split('\n')
          .filter((l) => l.includes('"blob"'))
          .map((l) => (JSON.parse(l) as { blob: string }).blob);
        const uploadedBefore = completedUploads(fresh.log());
        assert.ok(uploadedBefore.length >= 2 && uploadedBefore.length < 6, `some blobs uploaded before the kill: ${uploadedBefore.length}`);
        const reportFile = join(work, 'big.json');
        const second = await cli(s.dataDir, [...args, '--report', reportFile], env);
        assert.equal(second.code, 0, second.stdout + second.stderr);
        const report = JSON.parse(await readFile(reportFile, 'utf8')) as Report;
        assert.deepEqual(report.moved.map((m) => m.target).sort(), ['alice/big:latest', 'alice/big:mid']);
        const all = completedUploads(fresh.log());
        assert.equal(new Set(all).size, all.length, `no blob uploaded twice: ${all.join(' ')}`);
        assert.equal(all.length, 7, '5 layers and the 2 configs (one per tag), each uploaded once');
        for (const d of doneBefore) assert.ok(!all.slice(uploadedBefore.length).includes(d), `${d} finished before the kill, not uploaded again`);
        assert.equal(report.blobs.uploaded, all.length - uploadedBefore.length);
        for (const tag of ['latest', 'mid']) {
          const theirs = JSON.parse(
            (await skopeo(work, 'inspect', '--tls-verify=false', '--creds', 'bob:bobpw', `docker://${fresh.host}/alice/big:${tag}`)).stdout,
          ) as { Digest: string };
          assert.equal(theirs.Digest, await ourDigest('alice/big', tag));
        }
      } finally {
        await fresh.stop();
      }
    });

    it('migrates to a registry with Bearer tokens (another legacy-registry: the token dance, scopes per repository)', async () => {
      const other = await startTestServer({ v2: true, bcrypt_cost: 4 });
      try {
        assert.equal(
          (await request(other.url, '/v1/users/', { method: 'POST', body: JSON.stringify({ username: 'alice', password: 'otherpw', email: 'a@example.com' }) }))
            .status,
          201,
        );
        const reportFile = join(work, 'bearer.json');
        const r = await cli(
          s.dataDir,
          ['migrate', '--to', other.url, '--username', 'alice', '--namespace', 'alice', '--repo', 'alice/tool', '--report', reportFile],
          { MIGRATE_PASSWORD: 'otherpw' },
        );
        assert.equal(r.code, 0, r.stdout + r.stderr);
        const report = JSON.parse(await readFile(reportFile, 'utf8')) as Report;
        assert.deepEqual(
          report.moved.map((m) => m.target),
          ['alice/tool:2.0'],
        );
        const theirs = JSON.parse(
          (await skopeo(work, 'inspect', '--tls-verify=false', '--creds', 'alice:otherpw', `docker://${new URL(other.url).host}/alice/tool:2.0`)).stdout,
        ) as { Digest: string };
        assert.equal(theirs.Digest, await ourDigest('alice/tool', '2.0'));
      } finally {
        await other.stop();
      }
    });
  },
);
