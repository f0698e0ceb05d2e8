import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface Dockerd {
  /** Run the docker CLI against this daemon. */
  docker(...args: string[]): Promise<{ stdout: string; stderr: string }>;
  stop(): Promise<void>;
}

/** Why the real-client tests cannot run here, or undefined. E2E_REQUIRED (CI) turns a skip into a failure. */
export function dockerdMissing(): string | undefined {
  const ok = existsSync('/usr/sbin/dockerd') || existsSync('/usr/bin/dockerd');
  if (ok && process.getuid?.() === 0) return undefined;
  const why = ok ? 'dockerd needs root' : 'dockerd is not installed (apt-get install docker.io)';
  if (process.env.E2E_REQUIRED) throw new Error(`E2E_REQUIRED: ${why}`);
  return why;
}

/**
 * Debian's dockerd 20.10 on a private socket and data root, vfs storage, no networking of its own
 * (clients.md §3). 127.0.0.0/8 is an insecure registry by default.
 */
export async function startDockerd(extraArgs: readonly string[] = []): Promise<Dockerd> {
  const dir = await mkdtemp(join(tmpdir(), 'lr-dockerd-'));
  const sock = join(dir, 'docker.sock');
  const proc: ChildProcess = spawn(
    existsSync('/usr/sbin/dockerd') ? '/usr/sbin/dockerd' : '/usr/bin/dockerd',
    [
      '--iptables=false',
      '--ip6tables=false',
      '--bridge=none',
      '--storage-driver=vfs',
      '--data-root',
      join(dir, 'data'),
      '--exec-root',
      join(dir, 'exec'),
      '--pidfile',
      join(dir, 'dockerd.pid'),
      '--host',
      `unix://${sock}`,
      ...extraArgs,
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let log = '';
  proc.stderr!.on('data', (d: Buffer) => (log += d.toString()));
  const env = { PATH: process.env.PATH ?? '', DOCKER_HOST: `unix://${sock}`, DOCKER_CONFIG: join(dir, 'cli') };
  const docker = (...args: string[]) => run('docker', args, { env, timeout: 120_000 });
  for (let i = 0; ; i++) {
    try {
      await docker('version');
      break;
    } catch (e) {
      if (i > 60) {
        proc.kill('SIGKILL');
        throw new Error(`dockerd did not start: ${(e as Error).message}\n${log.slice(-2000)}`, { cause: e });
      }
      await new Promise((r) => setTimeout(r, 500));
    }
  }
  return {
    docker,
    async stop() {
      proc.kill('SIGTERM');
      await new Promise((r) => proc.once('exit', r));
      await rm(dir, { recursive: true, force: true }).catch(() => undefined);
    },
  };
}
