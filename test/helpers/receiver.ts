import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface Received {
  readonly method: string;
  readonly path: string;
  readonly headers: IncomingHttpHeaders;
  readonly body: string;
  /** performance.now() when the body was complete. */
  readonly at: number;
}

/**
 * A webhook / notification receiver on loopback: records every request, answers with
 * `status(req)` (200 by default). `down()` closes the port (connections refused), `up()` opens the
 * same port again: a receiver that is away for a while.
 */
export class Receiver {
  readonly received: Received[] = [];
  status: (r: Received) => number = () => 200;
  private server: Server | undefined;
  private waiters: (() => void)[] = [];
  port = 0;

  async up(): Promise<this> {
    const server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const r: Received = {
          method: req.method ?? '',
          path: req.url ?? '',
          headers: req.headers,
          body: Buffer.concat(chunks).toString('utf8'),
          at: performance.now(),
        };
        const status = this.status(r);
        if (status >= 200 && status < 400) this.received.push(r);
        else this.refused++;
        res.writeHead(status, { 'Content-Type': 'text/plain' });
        res.end(status < 400 ? 'thanks' : 'not now');
        for (const w of this.waiters.splice(0)) w();
      });
    });
    server.keepAliveTimeout = 1000;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, '127.0.0.1', () => resolve());
    });
    this.port = (server.address() as AddressInfo).port;
    this.server = server;
    return this;
  }

  /** Requests answered with an error status. */
  refused = 0;

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  async down(): Promise<void> {
    const s = this.server;
    this.server = undefined;
    if (!s) return;
    s.closeAllConnections();
    await new Promise<void>((r) => s.close(() => r()));
  }

  /** Wait until `pred` holds over what was received (checked after each request), or fail after ms. */
  async until(pred: (r: readonly Received[]) => boolean, ms = 30_000, what = 'deliveries'): Promise<void> {
    const deadline = Date.now() + ms;
    while (!pred(this.received)) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${what}: got ${this.received.length}`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, Math.min(left, 250));
        this.waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
  }
}
