import { join } from 'node:path';

/**
 * podman's global options for a test: images and containers in `dir` (vfs storage, no root needed),
 * cgroups without systemd, events to a file (no journald). The subcommand and its options follow.
 */
export function podmanArgs(dir: string, names: { root: string; run: string } = { root: 'root', run: 'run' }): string[] {
  return [
    '--root',
    join(dir, names.root),
    '--runroot',
    join(dir, names.run),
    '--storage-driver',
    'vfs',
    '--cgroup-manager',
    'cgroupfs',
    '--events-backend',
    'file',
  ];
}
