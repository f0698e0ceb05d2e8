import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { filesUnder } from '../helpers/files.js';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from '../helpers/http.js';
import { spawnServer } from '../helpers/child.js';
import { makeImage, pushImage } from '../helpers/v1-client.js';

describe('the server process: kill, restart, graceful stop', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'lr-proc-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('leaves no visible partial layer when killed mid-upload, and purges the upload after restart', async () => {
    const s1 = await spawnServer({ STORAGE_PATH: dir, UPLOAD_PURGE_AGE: '1' });
    const img = makeImage();
    assert.equal((await request(s1.url, `/v1/images/${img.id}/json`, { method: 'PUT', body: img.json })).status, 200);
    const u = new URL(s1.url);
    const req = httpRequest({ host: u.hostname, port: u.port, method: 'PUT', path: `/v1/images/${img.id}/layer`, headers: { 'Transfer-Encoding': 'chunked' } });
    req.on('error', () => undefined);
    req.write(Buffer.alloc(1 << 20, 3));
    // wait until the upload file exists, then kill -9
    for (let i = 0; i < 100 && (await filesUnder(join(dir, 'uploads'))).length === 0; i++) await new Promise((r) => setTimeout(r, 20));
    assert.equal((await filesUnder(join(dir, 'uploads'))).length, 1, 'the upload was in progress');
    s1.proc.kill('SIGKILL');
    await s1.exited;
    req.destroy();
    assert.deepEqual(await filesUnder(join(dir, 'blobs')), [], 'no blob was published');

    await new Promise((r) => setTimeout(r, 1100)); // older than upload_purge_age
    const s2 = await spawnServer({ STORAGE_PATH: dir, UPLOAD_PURGE_AGE: '1' });
    try {
      assert.deepEqual(await filesUnder(join(dir, 'uploads')), [], 'abandoned upload purged at start');
      const layer = await request(s2.url, `/v1/images/${img.id}/layer`);
      assert.equal(layer.status, 400);
      assert.equal(layer.text, '{"error": "Image is being uploaded, retry later"}');
      // the client's retry completes the push
      const rs = await pushImage(s2.url, img);
      assert.deepEqual(
        rs.map((r) => r.status),
        [400, 200, 200, 200],
      );
      assert.deepEqual((await request(s2.url, `/v1/images/${img.id}/layer`)).body, img.layer);
    } finally {
      s2.proc.kill('SIGTERM');
      await s2.exited;
    }
  });

  it('finishes an in-flight upload on SIGTERM, refuses new connections, then exits 0', async () => {
    const s = await spawnServer({ STORAGE_PATH: dir });
    const img = makeImage();
    await request(s.url, `/v1/images/${img.id}/json`, { method: 'PUT', body: img.json });
    const u = new URL(s.url);
    const response = new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = httpRequest(
        { host: u.hostname, port: u.port, method: 'PUT', path: `/v1/images/${img.id}/layer`, headers: { 'Transfer-Encoding': 'chunked' } },
        (res) => {
          let body = '';
          res.on('data', (d: Buffer) => (body += d.toString()));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        },
      );
      req.on('error', reject);
      req.write(img.layer.subarray(0, 10));
      setTimeout(() => {
        s.proc.kill('SIGTERM');
        setTimeout(() => req.end(img.layer.subarray(10)), 300);
      }, 200);
    });
    const r = await response;
    assert.equal(r.status, 200);
    assert.equal(r.body, 'true');
    assert.equal(await s.exited, 0);
    assert.match(s.output(), /shutting down/);
    await assert.rejects(request(s.url, '/_ping'));
    // the data written before the stop is complete and usable by the next process
    const s2 = await spawnServer({ STORAGE_PATH: dir });
    try {
      const cs = await request(s2.url, `/v1/images/${img.id}/checksum`, { method: 'PUT', headers: { 'X-Docker-Checksum-Payload': img.payload } });
      assert.equal(cs.status, 200);
      const layer = await request(s2.url, `/v1/images/${img.id}/layer`);
      assert.deepEqual(layer.body, img.layer);
    } finally {
      s2.proc.kill('SIGINT');
      assert.equal(await s2.exited, 0);
    }
  });

  it('fails at start with the key path when the configuration is wrong', async () => {
    await assert.rejects(spawnServer({ STORAGE_PATH: dir, REGISTRY_HTTP_ADDR: 'nonsense' }), /dev\.http_addr \(.*config_sample\.yml:\d+\): expected host:port/);
    await assert.rejects(spawnServer({ STORAGE_PATH: dir, VERIFY_TARSUM: 'maybe' }), /dev\.verify_tarsum/);
  });

  it('serves a push through the chunked stream helper end to end', async () => {
    const s = await spawnServer({ STORAGE_PATH: dir });
    try {
      const img = makeImage();
      const rs = await pushImage(s.url, img);
      assert.deepEqual(
        rs.map((r) => r.status),
        [404, 200, 200, 200],
      );
      const layer = await request(s.url, `/v1/images/${img.id}/layer`);
      assert.deepEqual(layer.body, img.layer);
    } finally {
      s.proc.kill('SIGTERM');
      await s.exited;
    }
  });
});
