import { PathNotFoundError } from '../../../src/storage/driver.js';
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { PassThrough, Readable } from 'node:stream';
import { BlobStore } from '../../../src/content/blob-store.js';
import { linkKey, SESSION_BUSY, V2Uploads, type UploadLimits } from '../../../src/content/v2-uploads.js';
import { V1Images } from '../../../src/content/v1-images.js';
import { V1Repositories } from '../../../src/content/v1-repositories.js';
import { parseRepoName } from '../../../src/content/names.js';
import type { V2Name } from '../../../src/content/v2-names.js';
import { V2Error } from '../../../src/errors/v2.js';
import { createMemoryDriver } from '../../../src/storage/drivers/memory.js';
import type { StorageDriver } from '../../../src/storage/driver.js';

const sha = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const NAME = 'ns/unit' as V2Name;

/** One registry node's upload service over a shared driver. */
function node(driver: StorageDriver, limits: UploadLimits = { perRepository: 0, perOwner: 0 }): { uploads: V2Uploads; blobs: BlobStore } {
  const blobs = new BlobStore(driver);
  return { uploads: new V2Uploads(driver, blobs, 0, limits), blobs };
}

async function rejectsWith(p: Promise<unknown>, code: string, message?: string): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof V2Error, String(e));
    assert.equal(e.code, code);
    if (message) assert.equal(e.message, message);
    return true;
  });
}

describe('V2Uploads (security issue 10)', () => {
  it('keeps at most hashEntries sha256 states; a session whose state was dropped re-hashes and still verifies', async () => {
    const { uploads } = node(createMemoryDriver(), { perRepository: 0, perOwner: 0, hashEntries: 4 });
    const sessions: { uuid: string; data: Buffer }[] = [];
    for (let i = 0; i < 10; i++) {
      const uuid = await uploads.start(NAME, 'address:unit');
      const data = randomBytes(1000 + i);
      await uploads.append(NAME, uuid, Readable.from([data.subarray(0, 500)]));
      await uploads.append(NAME, uuid, Readable.from([data.subarray(500)]));
      sessions.push({ uuid, data });
      assert.ok(uploads.memory().hashes <= 4, `hashes ${uploads.memory().hashes}`);
    }
    assert.equal(uploads.memory().sessions, 10);
    for (const { uuid, data } of sessions) assert.equal(await uploads.finish(NAME, uuid, sha(data), undefined), data.length);
    assert.deepEqual(uploads.memory(), { sessions: 0, hashes: 0 });
  });

  it('a second node finds the session claimed while the first writes: BLOB_UPLOAD_INVALID, nothing changed', async () => {
    const driver = createMemoryDriver();
    const a = node(driver);
    const b = node(driver);
    const uuid = await a.uploads.start(NAME, 'address:unit');
    const body = new PassThrough();
    const first = a.uploads.append(NAME, uuid, body);
    body.write(Buffer.from('first half '));
    await new Promise((r) => setTimeout(r, 20));
    await rejectsWith(b.uploads.append(NAME, uuid, Readable.from([Buffer.from('intruder')])), 'BLOB_UPLOAD_INVALID', SESSION_BUSY);
    await rejectsWith(b.uploads.finish(NAME, uuid, sha(Buffer.from('x')), undefined), 'BLOB_UPLOAD_INVALID', SESSION_BUSY);
    await rejectsWith(b.uploads.cancel(NAME, uuid), 'BLOB_UPLOAD_INVALID', SESSION_BUSY);
    // the same node answers from memory
    await rejectsWith(a.uploads.append(NAME, uuid, Readable.from([Buffer.from('again')])), 'BLOB_UPLOAD_INVALID', SESSION_BUSY);
    body.end(Buffer.from('second half'));
    const whole = Buffer.from('first half second half');
    assert.equal(await first, whole.length);
    assert.equal(await b.uploads.finish(NAME, uuid, sha(whole), undefined), whole.length);
    await rejectsWith(a.uploads.append(NAME, uuid, Readable.from([Buffer.from('late')])), 'BLOB_UPLOAD_UNKNOWN');
    const stored = Buffer.concat(await (await a.blobs.open(sha(whole))).toArray());
    assert.deepEqual(stored, whole);
  });

  it('slots of sessions that ended on another node are given back: at the limit (storage is asked) and by the purge pass', async () => {
    const driver = createMemoryDriver();
    const a = node(driver, { perRepository: 1, perOwner: 0 });
    const b = node(driver);
    const data = Buffer.from('ended elsewhere');
    const first = await a.uploads.start(NAME, 'account:alice');
    await rejectsWith(a.uploads.start(NAME, 'account:alice'), 'TOOMANYREQUESTS');
    await b.uploads.finish(NAME, first, sha(data), Readable.from([data]));
    assert.equal(a.uploads.memory().sessions, 1, 'node A has not seen the end yet');
    await new Promise((r) => setTimeout(r, 2100)); // a full set is checked against storage at most every 2 s
    const second = await a.uploads.start(NAME, 'account:alice');
    assert.equal(a.uploads.memory().sessions, 1);
    await b.uploads.cancel(NAME, second);
    assert.equal(a.uploads.memory().sessions, 1);
    await new Promise((r) => setTimeout(r, 5)); // the pass must start after the session was written
    assert.equal(await a.blobs.purgeStaleUploads(3_600_000), 0);
    assert.deepEqual(a.uploads.memory(), { sessions: 0, hashes: 0 });
  });

  it('the purge removes a stale session and its memory; a request holding it then ends with 404 and leaves nothing', async () => {
    const driver = createMemoryDriver();
    const { uploads, blobs } = node(driver);
    const uuid = await uploads.start(NAME, 'address:unit');
    const body = new PassThrough();
    const held = uploads.append(NAME, uuid, body);
    body.write(Buffer.from('some bytes'));
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(await blobs.purgeStaleUploads(0, Date.now() + 1000), 1);
    assert.deepEqual(uploads.memory(), { sessions: 0, hashes: 0 });
    body.end();
    await rejectsWith(held, 'BLOB_UPLOAD_UNKNOWN');
    await assert.rejects(driver.list('uploads'), PathNotFoundError);
  });
});

describe('V2Uploads against a repository delete (2026-12-07)', () => {
  /**
   * A session completes without a lock: it checks its session, writes its link, checks again. A
   * delete removes the repository's sessions first, then lists and removes its records. These run
   * the whole delete at each point of the completion, through a driver that pauses there.
   */
  for (const at of ['link write', 'second check'] as const) {
    it(`a delete run just before the completion's ${at} leaves no link, and the client gets 404`, async () => {
      const base = createMemoryDriver();
      const blobs = new BlobStore(base);
      const repos = new V1Repositories(base, new V1Images(base, blobs, { scoped: true, maxLayerSize: 0, verifyTarsum: false }));
      const data = randomBytes(3000);
      const digest = sha(data);
      const link = linkKey(NAME, digest);
      let armed = false;
      let ran = false;
      const deleteNow = async (): Promise<void> => {
        armed = false;
        ran = true;
        await repos.deleteRepository(parseRepoName(NAME)!);
      };
      // a driver that runs the delete once, at the chosen point of the completion
      const driver: StorageDriver = new Proxy(base, {
        get(target, prop, receiver) {
          const v = Reflect.get(target, prop, receiver) as unknown;
          if (typeof v !== 'function') return v;
          return async (...args: unknown[]) => {
            if (armed && at === 'link write' && prop === 'putContent' && args[0] === link) await deleteNow();
            const out = await (v as (...a: unknown[]) => Promise<unknown>).apply(target, args);
            if (armed && at === 'second check' && prop === 'putContent' && args[0] === link) await deleteNow();
            return out;
          };
        },
      });
      const uploads = new V2Uploads(driver, new BlobStore(driver), 0, { perRepository: 0, perOwner: 0 });
      // the repository holds something already, so the delete finds it
      const other = randomBytes(100);
      const first = await uploads.start(NAME, 'address:unit');
      await uploads.finish(NAME, first, sha(other), Readable.from([other]));
      const uuid = await uploads.start(NAME, 'address:unit');
      await uploads.append(NAME, uuid, Readable.from([data]));
      armed = true;
      await rejectsWith(uploads.finish(NAME, uuid, digest, undefined), 'BLOB_UPLOAD_UNKNOWN');
      assert.ok(ran, 'the delete ran');
      assert.equal(await uploads.linked(NAME, digest), false, 'linked into the deleted name');
      assert.equal(await uploads.linked(NAME, sha(other)), false);
    });
  }
});
