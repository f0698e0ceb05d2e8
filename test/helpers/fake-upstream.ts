import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createTlsServer } from 'node:https';
import type { AddressInfo, Server, Socket } from 'node:net';
import { after, before } from 'node:test';
import { cleanup } from './counting-proxy.js';
import type { Response } from './http.js';
import { startTestServer, type TestServer } from './server.js';

/**
 * A fake upstream registry for the mirror's hostile-upstream tests: a node server whose answers a
 * test sets by replacing `handler`, recording every request.
 */
export type Handler = (req: IncomingMessage, res: ServerResponse) => void;

export interface Hostile {
  readonly url: string;
  /** Every request line and its Authorization header, in order. */
  readonly seen: { line: string; auth: string | undefined }[];
  handler: Handler;
  /** Sockets currently open to the server. */
  open(): number;
  close(): Promise<void>;
}

/** A fake upstream on 127.0.0.1 or `host` (https with `tls`: a certificate and its key), answering 404 until told otherwise. */
export async function hostile(opts: { readonly tls?: { key: Buffer; cert: Buffer }; readonly host?: string } = {}): Promise<Hostile> {
  const { tls, host = '127.0.0.1' } = opts;
  const sockets = new Set<Socket>();
  const h: Hostile = {
    url: '',
    seen: [],
    handler: (_req, res) => {
      res.statusCode = 404;
      res.end();
    },
    open: () => sockets.size,
    close: () =>
      new Promise((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
  const listener = (req: IncomingMessage, res: ServerResponse): void => {
    h.seen.push({ line: `${req.method} ${req.url}`, auth: req.headers.authorization });
    h.handler(req, res);
  };
  const server: Server = tls ? createTlsServer({ ...tls, maxHeaderSize: 64 * 1024 }, listener) : createServer({ maxHeaderSize: 64 * 1024 }, listener);
  server.on(tls ? 'secureConnection' : 'connection', (s: Socket) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  server.on('clientError', (_e, s: Socket) => s.destroy());
  await new Promise<void>((r) => server.listen(0, host, () => r()));
  (h as { url: string }).url = `${tls ? 'https' : 'http'}://${host.includes(':') ? `[${host}]` : host}:${(server.address() as AddressInfo).port}`;
  return h;
}

/** A request with a deadline: the answer, or 'timeout'. */
export async function within(ms: number, p: Promise<Response>): Promise<Response | 'timeout' | Error> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p.catch((e: unknown) => e as Error),
      new Promise<'timeout'>((r) => {
        timer = setTimeout(() => r('timeout'), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * For the describe it is called in: a hostile upstream and a standalone v1 mirror of it (Python's
 * mirroring.source and source_index, tags cached 60 s; a v2 pull-through prefix nobody uses, with a
 * 1 s timeout), both stopped after the suite.
 */
export function v1MirrorOfHostile(): { readonly up: Hostile; readonly mirror: TestServer } {
  let up: Hostile | undefined;
  let mirror: TestServer | undefined;
  before(async () => {
    up = await hostile();
    mirror = await startTestServer({
      standalone: true,
      v2: false,
      mirroring: { source: up.url, source_index: up.url, tags_cache_ttl: 60 },
      mirror: { upstreams: [{ url: up.url, prefix: 'nothing/' }], timeout: 1 },
    });
  });
  after(() =>
    cleanup(
      () => mirror?.stop(),
      () => up?.close(),
    ),
  );
  return {
    get up() {
      return up!;
    },
    get mirror() {
      return mirror!;
    },
  };
}
