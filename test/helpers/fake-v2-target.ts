import { createHash, randomUUID } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';

/**
 * Fake v2 registries on 127.0.0.1 for the migration's hostile-target tests: a handler that lies,
 * stalls or floods, in front of a small honest registry in memory for whatever it leaves.
 */
export type Handler = (req: http.IncomingMessage, res: http.ServerResponse, body: Buffer) => boolean | void;

export interface Hostile {
  readonly url: string;
  readonly port: number;
  /** Every request, in order, with its Authorization header. */
  readonly seen: { method: string; url: string; authorization?: string }[];
  close(): Promise<void>;
}

export async function listen(server: http.Server | https.Server, handler: Handler, fallback?: Handler): Promise<Hostile> {
  const seen: Hostile['seen'] = [];
  server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
    seen.push({ method: req.method!, url: req.url!, ...(req.headers.authorization ? { authorization: req.headers.authorization } : {}) });
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      if (handler(req, res, body) === true) return;
      if (!fallback || fallback(req, res, body) !== true) {
        res.statusCode = 404;
        res.end();
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `${server instanceof https.Server ? 'https' : 'http'}://127.0.0.1:${port}`,
    port,
    seen,
    close: () =>
      new Promise((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

/** A handler's `return answered(res.end())`: it answered. */
export const answered = (_: unknown): true => true;

export const sha = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/** A small honest v2 registry in memory (the fallback of every hostile one): what it was given, it holds. */
export function honest(): Handler {
  const blobs = new Map<string, Buffer>();
  const manifests = new Map<string, { type: string; bytes: Buffer }>();
  return (req, res, body) => {
    const u = new URL(req.url!, 'http://x');
    let m: RegExpExecArray | null;
    if (u.pathname === '/v2/') return answered(res.end('{}'));
    if ((m = /^\/v2\/(.+)\/blobs\/(sha256:[a-f0-9]{64})$/.exec(u.pathname)) && req.method === 'HEAD') {
      const b = blobs.get(m[2]!);
      res.writeHead(b ? 200 : 404, b ? { 'Content-Length': b.length, 'Docker-Content-Digest': m[2]! } : {}).end();
      return true;
    }
    if ((m = /^\/v2\/(.+)\/blobs\/uploads\/$/.exec(u.pathname)) && req.method === 'POST') {
      res.writeHead(202, { Location: `/v2/${m[1]}/blobs/uploads/${randomUUID()}` }).end();
      return true;
    }
    if (/^\/v2\/(.+)\/blobs\/uploads\/[^/]+$/.exec(u.pathname) && req.method === 'PUT') {
      const d = sha(body);
      if (d !== u.searchParams.get('digest')) return answered(res.writeHead(400).end('{"errors":[{"code":"DIGEST_INVALID"}]}'));
      blobs.set(d, body);
      res.writeHead(201, { 'Docker-Content-Digest': d }).end();
      return true;
    }
    if ((m = /^\/v2\/(.+)\/manifests\/([^/]+)$/.exec(u.pathname))) {
      if (req.method === 'PUT') {
        const entry = { type: String(req.headers['content-type']), bytes: body };
        manifests.set(`${m[1]}:${m[2]}`, entry);
        manifests.set(`${m[1]}:${sha(body)}`, entry);
        res.writeHead(201, { 'Docker-Content-Digest': sha(body) }).end();
        return true;
      }
      const e = manifests.get(`${m[1]}:${m[2]}`);
      // a GET answers the manifest itself (the migration hashes what it reads back)
      res.writeHead(e ? 200 : 404, e ? { 'Docker-Content-Digest': sha(e.bytes), 'Content-Type': e.type, 'Content-Length': e.bytes.length } : {});
      res.end(e && req.method === 'GET' ? e.bytes : undefined);
      return true;
    }
    return false;
  };
}

/** A target: `handler` first, the honest registry for whatever it leaves. */
export const target = (handler: Handler, server: http.Server | https.Server = http.createServer()): Promise<Hostile> => listen(server, handler, honest());
