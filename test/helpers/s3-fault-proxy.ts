import { createServer, request as httpRequest, type IncomingHttpHeaders, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

/**
 * A fault-injecting proxy in front of an S3 endpoint (Ceph RGW in the tests). The registry is
 * configured with the proxy's URL; the Host header is passed on as it came, so the signatures
 * (computed for the proxy's host) hold. Every request goes through to the store unless `fault`
 * returns a handler for it: the handler then answers on the raw socket however it likes (a cut
 * body, a wrong status, an endless error document, a listing that loops), with `forward` to ask
 * the store itself first.
 */
export interface S3Exchange {
  readonly method: string;
  /** Path and query as received (bucket first: path-style). */
  readonly url: URL;
  readonly headers: IncomingHttpHeaders;
  readonly body: Buffer;
  /** The raw client socket: a handler writes the whole answer itself. */
  readonly socket: Socket;
  /** Sends the request (optionally changed) to the store; its whole answer. */
  forward(change?: { path?: string; headers?: Record<string, string | undefined> }): Promise<{ status: number; headers: IncomingHttpHeaders; body: Buffer }>;
}

export type FaultHandler = (x: S3Exchange) => Promise<void> | void;

export interface FaultProxy {
  readonly url: string;
  /** Chooses a handler for a request, or undefined: passed through. */
  fault: ((x: S3Exchange) => FaultHandler | undefined) | undefined;
  /** Every request seen, as `METHOD path?query`. */
  readonly seen: string[];
  /** Runs fn with `fault` chosen, and passes everything through again afterwards, whatever happened. */
  withFault<T>(fault: NonNullable<FaultProxy['fault']>, fn: () => Promise<T>): Promise<T>;
  close(): Promise<void>;
}

/** An HTTP/1.1 answer head (Connection: close), for handlers. */
export function head(status: number, headers: Record<string, string | number>): string {
  const lines = Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`);
  return `HTTP/1.1 ${status} X\r\n${lines.join('')}Connection: close\r\n\r\n`;
}

export async function startFaultProxy(target: string): Promise<FaultProxy> {
  const t = new URL(target);
  const sockets = new Set<Socket>();
  const proxy: FaultProxy = {
    url: '',
    fault: undefined,
    seen: [],
    withFault: async (fault, fn) => {
      proxy.fault = fault;
      try {
        return await fn();
      } finally {
        proxy.fault = undefined;
      }
    },
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
  const upstream = (req: IncomingMessage, body: Buffer, change: { path?: string; headers?: Record<string, string | undefined> } = {}) =>
    new Promise<{ status: number; headers: IncomingHttpHeaders; body: Buffer }>((resolve, reject) => {
      const headers: Record<string, string | string[]> = {};
      for (const [k, v] of Object.entries(req.headers)) if (v !== undefined) headers[k] = v;
      for (const [k, v] of Object.entries(change.headers ?? {})) {
        if (v === undefined) delete headers[k.toLowerCase()];
        else headers[k.toLowerCase()] = v;
      }
      headers['content-length'] = String(body.length);
      delete headers['transfer-encoding'];
      const up = httpRequest({ host: t.hostname, port: t.port, method: req.method, path: change.path ?? req.url, headers, agent: false }, (ur) => {
        const parts: Buffer[] = [];
        ur.on('data', (c: Buffer) => parts.push(c));
        ur.once('end', () => resolve({ status: ur.statusCode ?? 0, headers: ur.headers, body: Buffer.concat(parts) }));
        ur.once('error', reject);
      });
      up.once('error', reject);
      up.end(body);
    });
  const server: Server = createServer((req, res) => {
    const parts: Buffer[] = [];
    req.on('data', (c: Buffer) => parts.push(c));
    req.once('end', () => {
      const body = Buffer.concat(parts);
      proxy.seen.push(`${req.method} ${req.url}`);
      const x: S3Exchange = {
        method: req.method ?? 'GET',
        url: new URL(req.url ?? '/', 'http://proxy'),
        headers: req.headers,
        body,
        socket: req.socket,
        forward: (change) => upstream(req, body, change),
      };
      const handler = proxy.fault?.(x);
      if (handler) {
        Promise.resolve()
          .then(() => handler(x))
          .catch(() => req.socket.destroy());
        return;
      }
      upstream(req, body).then(
        (a) => {
          const h: Record<string, string | string[]> = {};
          for (const [k, v] of Object.entries(a.headers)) if (v !== undefined && k !== 'transfer-encoding' && k !== 'connection') h[k] = v;
          if (req.method !== 'HEAD') h['content-length'] = String(a.body.length);
          res.writeHead(a.status, h);
          res.end(req.method === 'HEAD' ? undefined : a.body);
        },
        () => res.destroy(),
      );
    });
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  (proxy as { url: string }).url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return proxy;
}
