import { createServer, request as httpRequest, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A reverse proxy in front of an upstream registry that counts what passes (issue 13: "count the
 * upstream's requests"): requests per method and path, and response bytes. `down()` makes it refuse
 * connections (the upstream killed), `up()` brings it back on the same port.
 */
export interface CountingProxy {
  readonly url: string;
  /** Every request seen, as `METHOD path`. */
  readonly seen: string[];
  /** Response body bytes sent to the mirror. */
  bytes: number;
  count(pattern: RegExp): number;
  down(): Promise<void>;
  up(): Promise<void>;
  close(): Promise<void>;
}

export async function startCountingProxy(target: string): Promise<CountingProxy> {
  const t = new URL(target);
  const seen: string[] = [];
  let server: Server | undefined;
  let port = 0;
  const sockets = new Set<import('node:net').Socket>();
  const state = { bytes: 0 };
  const listen = async (): Promise<void> => {
    server = createServer((req, res) => {
      seen.push(`${req.method} ${req.url}`);
      const up = httpRequest({ host: t.hostname, port: t.port, method: req.method, path: req.url, headers: { ...req.headers, host: t.host } }, (ur) => {
        res.writeHead(ur.statusCode ?? 502, ur.headers);
        ur.on('data', (c: Buffer) => (state.bytes += c.length));
        ur.pipe(res);
      });
      up.on('error', () => res.destroy());
      req.pipe(up);
    });
    server.on('connection', (s) => {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
    });
    await new Promise<void>((r) => server!.listen(port, '127.0.0.1', () => r()));
    port = (server.address() as AddressInfo).port;
  };
  const stop = async (): Promise<void> => {
    if (!server) return;
    const s = server;
    server = undefined;
    for (const c of sockets) c.destroy();
    await new Promise<void>((r) => s.close(() => r()));
  };
  await listen();
  return {
    url: `http://127.0.0.1:${port}`,
    seen,
    get bytes() {
      return state.bytes;
    },
    set bytes(v: number) {
      state.bytes = v;
    },
    count: (p) => seen.filter((s) => p.test(s)).length,
    down: stop,
    up: listen,
    close: stop,
  };
}

/**
 * Run every cleanup step, each bounded in time, whatever the others do: a step that fails or hangs
 * must not leave later servers listening (a test file whose process stays alive stalls the run).
 */
export async function cleanup(...steps: (() => Promise<unknown> | unknown)[]): Promise<void> {
  for (const step of steps) {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.resolve()
        .then(step)
        .catch((e: unknown) => console.error(`cleanup step failed: ${String(e)}`)),
      new Promise((r) => (timer = setTimeout(r, 20_000))),
    ]);
    clearTimeout(timer);
  }
}

/** Stop a child process: SIGTERM, SIGKILL after 5 s; resolves when it has exited. */
export async function stopChild(proc: import('node:child_process').ChildProcess | undefined): Promise<void> {
  if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = new Promise((r) => proc.once('exit', r));
  proc.kill('SIGTERM');
  const t = setTimeout(() => proc.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(t);
}
