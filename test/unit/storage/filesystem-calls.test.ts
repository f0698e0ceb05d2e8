import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, statfs } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { filesystemCalls } from '../../../src/storage/drivers/index.js';
import { isLocalFsType, onLocalFs } from '../../../src/storage/drivers/filesystem.js';

describe('filesystem driver: which calls block (storage_blocking_calls)', () => {
  it('counts local Linux file systems as local and network or unknown ones as not', () => {
    for (const [type, name] of [
      [0xef53, 'ext4'],
      [0x58465342, 'xfs'],
      [0x9123683e, 'btrfs'],
      [0x01021994, 'tmpfs'],
      [0x2fc12fc1, 'zfs'],
      [0x794c7630, 'overlayfs'],
    ] as const)
      assert.equal(isLocalFsType(type, 'linux'), true, name);
    for (const [type, name] of [
      [0x6969, 'nfs'],
      [0xfe534d42, 'smb2'],
      [0xff534d42, 'cifs'],
      [0x65735546, 'fuse'],
      [0x00c36400, 'cephfs'],
      [0x01161970, 'gfs2'],
      [0, 'unknown'],
    ] as const)
      assert.equal(isLocalFsType(type, 'linux'), false, name);
    // statfs types are Linux's magic numbers: elsewhere nothing counts as known
    assert.equal(isLocalFsType(0xef53, 'darwin'), false);
    // statfs may report the type as a negative 32-bit number
    assert.equal(isLocalFsType(0xef53 | 0, 'linux'), true);
    assert.equal(isLocalFsType(0x9123683e | 0, 'linux'), true);
  });

  it('the import blocks on everything; a server on one name when configured or on a local disk; never on a path it cannot tell', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'fs-calls-'));
    try {
      const local = isLocalFsType((await statfs(dir)).type);
      assert.equal(await onLocalFs(dir), local);
      assert.equal(await filesystemCalls({ storage_blocking_calls: false }, dir, { blocking: true }), true);
      assert.equal(await filesystemCalls({ storage_blocking_calls: true }, dir), 'metadata');
      assert.equal(await filesystemCalls({ storage_blocking_calls: false }, dir), false);
      assert.equal(await filesystemCalls({ storage_blocking_calls: null }, dir), local ? 'metadata' : false);
      assert.equal(await filesystemCalls({}, dir), local ? 'metadata' : false);
      // a root that statfs cannot read: the thread pool
      assert.equal(await onLocalFs(join(dir, 'missing', 'root')), false);
      assert.equal(await filesystemCalls({}, join(dir, 'missing', 'root')), false);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
