import { readdirSync } from 'node:fs';
import { request as httpRequest } from 'node:http';

/** This process's open descriptors (a test server in this process: its sockets and files too). */
export const openFds = (): number => readdirSync('/proc/self/fd').length;

/** GETs `path` from the server at `url` and cuts the connection once more than `after` bytes of the body arrived. */
export function getAndGoAway(url: string, path: string, after: number): Promise<void> {
  const u = new URL(url);
  return new Promise<void>((resolve) => {
    const req = httpRequest({ host: u.hostname, port: u.port, path, agent: false }, (res) => {
      let got = 0;
      res.on('data', (c: Buffer) => {
        got += c.length;
        if (got > after) req.destroy();
      });
      res.on('error', () => undefined);
      res.on('close', () => resolve());
    });
    req.on('error', () => resolve());
    req.end();
  });
}

/** Waits up to `ms` for the open descriptors to fall back to `before` (the server closing what it held); returns the count. */
export async function settledFds(before: number, ms: number): Promise<number> {
  let now = openFds();
  for (let waited = 0; waited < ms && now > before; waited += 20) {
    await new Promise((r) => setTimeout(r, 20));
    now = openFds();
  }
  return now;
}
