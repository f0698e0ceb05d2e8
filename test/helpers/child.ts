import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { ROOT } from './paths.js';

export interface ChildServer {
  readonly proc: ChildProcess;
  readonly url: string;
  readonly output: () => string;
  /** Resolves with the exit code (or signal name). */
  readonly exited: Promise<number | string>;
}

/** `legacy-registry serve` as its own process (compiled CLI), on a free loopback port. */
export async function spawnServer(env: Record<string, string>, args: string[] = [], opts: { readonly startTimeoutMs?: number } = {}): Promise<ChildServer> {
  const cli = join(ROOT, 'bin', 'legacy-registry.cjs');
  const proc = spawn(process.execPath, [cli, 'serve', '--host', '127.0.0.1', '--port', '0', ...args], {
    env: { PATH: process.env.PATH ?? '', LOGLEVEL: 'info', STANDALONE: 'true', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | string>((resolve) => proc.once('exit', (code, signal) => resolve(code ?? signal ?? -1)));
  const url = await new Promise<string>((resolve, reject) => {
    const t = setTimeout(() => {
      // a server that starts after the deadline would keep the test process alive: it goes
      proc.kill('SIGKILL');
      reject(new Error(`server did not start within ${opts.startTimeoutMs ?? 20000} ms:\n${out}`));
    }, opts.startTimeoutMs ?? 20000);
    const check = (): void => {
      // text logs: address=host:port; json logs (log_format json): "address":"host:port"
      const m = /address=(\S+)/.exec(out) ?? /"address":"([^"]+)"/.exec(out);
      if (m) {
        clearTimeout(t);
        resolve(`${/"?tls"?[=:]"?true/.test(out) ? 'https' : 'http'}://${m[1]}`);
      }
    };
    proc.stderr!.on('data', check);
    proc.stdout!.on('data', check);
    void exited.then((code) => reject(new Error(`server exited (${code}):\n${out}`)));
  });
  return { proc, url, output: () => out, exited };
}

/** Stops a server started with spawnServer (SIGTERM) and waits for it to exit; one already gone is left. */
export async function stopChild(s: ChildServer | undefined): Promise<void> {
  if (!s || s.proc.exitCode !== null || s.proc.signalCode !== null) return;
  s.proc.kill('SIGTERM');
  await s.exited;
}
