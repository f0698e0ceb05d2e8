/**
 * The page cache's state decides what a write costs on this project's machines: Firecracker VMs
 * whose virtio-balloon reports free pages to the host. A page of page cache taken from free memory
 * is a page the host must map again (measured 2026-12-04 with `dd bs=1M count=512` into a new file:
 * 1.27–1.46 s of system time, ~2.7 ms per MiB); one reclaimed from a full cache is not (0.14–0.19 s,
 * ~0.3 ms per MiB). A registry host that has run for a while has its cache full of blobs; a bench on
 * a freshly booted VM, or after deleting gigabytes, does not, and then whichever server writes more
 * inside the measured window pays a cost no deployed server pays (the mirror's cold pull writes its
 * cache copy during the pull; distribution's proxy writes its copy from a second download that is
 * mostly still running when its client is done).
 *
 * `ensurePageCacheFull` writes a file as big as the free memory (less 1 GiB) into `dir` when more
 * than 1.5 GiB is free (the kernel takes free pages before it reclaims any), keeps it until the
 * returned cleanup runs (so both servers' writes reclaim cache pages as on a long-running host) and
 * waits for its write-back, so the measurements that follow do not compete with it for the disk.
 * Free memory, not a timed probe, decides: pages freed a moment ago (a deleted file) are still
 * mapped and fast until the balloon reports them.
 */
import { spawnSync } from 'node:child_process';
import { closeSync, openSync, readFileSync, rmSync, statfsSync, writeSync } from 'node:fs';
import { join } from 'node:path';

const MiB = 1024 * 1024;

/** MiB/s of writing `mib` MiB into a new file in dir (the file is removed). */
export function writeRate(dir: string, mib = 64): number {
  const path = join(dir, `probe-${process.pid}`);
  const buf = Buffer.alloc(MiB, 1);
  const fd = openSync(path, 'w');
  const t = process.hrtime.bigint();
  try {
    for (let i = 0; i < mib; i++) writeSync(fd, buf);
  } finally {
    closeSync(fd);
  }
  const sec = Number(process.hrtime.bigint() - t) / 1e9;
  rmSync(path, { force: true });
  return mib / sec;
}

function freeMiB(): number {
  const m = /MemFree:\s+(\d+) kB/.exec(readFileSync('/proc/meminfo', 'utf8'));
  return m ? Number(m[1]) / 1024 : 0;
}

/**
 * Fills the page cache when much memory is free (see above), unless the bench's arguments hold
 * `--no-fill-page-cache`. Returns what it did (for the result files) and the cleanup that removes
 * the fill file.
 */
export function ensurePageCacheFull(dir: string, log: (s: string) => void, argv: readonly string[]): { readonly note: string; readonly cleanup: () => void } {
  if (argv.includes('--no-fill-page-cache')) return { note: 'page cache: left as it was (--no-fill-page-cache)', cleanup: () => undefined };
  try {
    return fill(dir, log);
  } catch (e) {
    return { note: `page cache: not measured (${(e as Error).message}), left as it was`, cleanup: () => undefined };
  }
}

function fill(dir: string, log: (s: string) => void): { readonly note: string; readonly cleanup: () => void } {
  const before = writeRate(dir);
  // never fill the disk: the benches need room for their own files
  const fs = statfsSync(dir);
  const diskMiB = (fs.bavail * fs.bsize) / MiB - 16 * 1024;
  const mib = Math.floor(Math.min(freeMiB() - 1024, diskMiB));
  if (mib < 512)
    return {
      note: `page cache: not filled (${freeMiB().toFixed(0)} MiB of memory free, ${(diskMiB / 1024).toFixed(0)} GiB of disk to spare; new writes at ${before.toFixed(0)} MiB/s)`,
      cleanup: () => undefined,
    };
  const path = join(dir, 'page-cache-fill');
  log(`page cache: ${(mib / 1024).toFixed(1)} GiB more than 1 GiB free (new writes at ${before.toFixed(0)} MiB/s); writing that much to fill it…`);
  const t = process.hrtime.bigint();
  const buf = Buffer.alloc(8 * MiB, 7);
  const fd = openSync(path, 'w');
  try {
    for (let i = 0; i < mib / 8; i++) writeSync(fd, buf);
  } catch (e) {
    rmSync(path, { force: true });
    return { note: `page cache: could not fill it (${(e as Error).message}), left as it was`, cleanup: () => undefined };
  } finally {
    closeSync(fd);
  }
  spawnSync('sync');
  const after = writeRate(dir);
  const note = `page cache: new writes at ${before.toFixed(0)} MiB/s, filled with ${(mib / 1024).toFixed(1)} GiB in ${(Number(process.hrtime.bigint() - t) / 1e9).toFixed(0)} s, then ${after.toFixed(0)} MiB/s`;
  log(note);
  return { note, cleanup: () => rmSync(path, { force: true }) };
}
