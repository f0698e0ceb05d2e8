import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer, type ServerOptions as TlsServerOptions } from 'node:https';
import type { Socket } from 'node:net';
import type { Logger } from '../log/logger.js';

export interface ServerOptions {
  readonly idleTimeoutSec: number;
  /** Seconds a client has to send a request's headers (default 60). */
  readonly headersTimeoutSec?: number;
  /** Serve HTTPS with these (cert, key, ca, requestCert, minVersion…); unset: plain HTTP. */
  readonly tls?: TlsServerOptions;
  /** Open connections at most (max_connections); past it a new one is closed at once. 0 or unset: no cap. */
  readonly maxConnections?: number;
}

/** Refused connections are logged at most this often (a flood of them is one line a minute). */
const DROP_LOG_EVERY_MS = 60_000;

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

/** 'close' (or 'finish') listeners a response may have before node warns of a leak (see onRequest). */
const RESPONSE_MAX_LISTENERS = 20;

/**
 * The HTTP server around a request handler:
 * - an absolute-form request target (`PUT http://host:port/v1/… HTTP/1.1`, sent by Node clients that
 *   follow an absolute Location) is reduced to its path and query;
 * - no timeout on a request that keeps moving (layers of gigabytes), only an idle timeout;
 * - garbage on the socket, such as a TLS ClientHello from a client probing https first, gets a 400
 *   and a closed connection, and nothing else happens.
 */
export function createHttpServer(handler: Handler, log: Logger, opts: ServerOptions): Server {
  const headersTimeout = (opts.headersTimeoutSec ?? 60) * 1000;
  // Node checks the headers deadline on this interval: a quarter of it, so a trickling client is cut
  // off within 1.25× the deadline
  const httpOptions = {
    requestTimeout: 0,
    headersTimeout,
    keepAliveTimeout: 5_000,
    connectionsCheckingInterval: Math.max(250, Math.min(30_000, headersTimeout / 4)),
  };
  /**
   * Each socket's request in progress. The idle timeout is for clients that stall; a request the server
   * is working on (its body all read, its answer not finished: waiting on a queue, a slow upstream or
   * index) is not cut by it while the client has taken everything sent so far.
   */
  const current = new WeakMap<Socket, { readonly req: IncomingMessage; readonly res: ServerResponse }>();
  const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    // A response whose body is a stream (GET /v1/images/<id>/files) has 11 'close' listeners: ours
    // (this one, the in-flight count, the metrics, the access log), node's own, and the six that
    // koa's stream.pipeline puts on its destination. Past 10, node prints "Possible EventEmitter
    // memory leak detected" for every such response: a warning per request in the operator's log
    // for a count that is fixed. The limit is raised to what a response can have, not removed.
    res.setMaxListeners(RESPONSE_MAX_LISTENERS);
    const socket = req.socket;
    const entry = { req, res };
    current.set(socket, entry);
    const stop = (): void => {
      if (current.get(socket) === entry) current.delete(socket);
    };
    // a response always ends with 'close' (after 'finish' when it was sent whole), and only once
    res.on('close', stop);
    const url = req.url ?? '/';
    if (!url.startsWith('/')) {
      try {
        const u = new URL(url);
        req.url = (u.pathname || '/') + u.search;
      } catch {
        res.writeHead(400, { 'Content-Type': 'application/json', 'X-Content-Type-Options': 'nosniff', Connection: 'close' });
        res.end('{"error": "Bad request target"}');
        return;
      }
    }
    handler(req, res);
  };
  const server: Server = opts.tls ? createHttpsServer({ ...httpOptions, ...opts.tls }, onRequest) : createServer(httpOptions, onRequest);
  // A client that half-closes after its request (shutdown of its write side: `nc -N`, some proxies
  // and scripts) still wants the answer, and distribution 2.8.2 (Go) gives it (checked by hand).
  // Node's default drops every request in flight at the client's FIN: an answer that needed storage
  // or index I/O never came. With this (node's own switch, http.Server#httpAllowHalfOpen) the answers
  // owed go out, in order, and then the connection ends; a body cut by the FIN is still a parse error
  // that aborts its request.
  (server as Server & { httpAllowHalfOpen: boolean }).httpAllowHalfOpen = true;
  // Expect: 100-continue. Node writes the 100 as the request is parsed; for a request pipelined
  // behind another, that response is not on the socket yet, the 100 waits in its buffer, and a body
  // written as a Buffer puts the headers ahead of it: the client read `HTTP/1.1 100 Continue` as the
  // body's first bytes. The 100 goes out when the response is on the socket, and only while nothing
  // of the final response was written (it is optional then, RFC 9110 §10.1.1).
  server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => {
    if (res.socket) res.writeContinue();
    else res.once('socket', () => void (res.headersSent || res.writeContinue()));
    server.emit('request', req, res);
  });
  if (opts.maxConnections) {
    // Each connection costs memory (its socket, parser and buffers) whether it sends anything or
    // not: without a cap, anonymous clients opening thousands of idle connections grow the process
    // without bound. Node closes a connection past the cap as it is accepted (no answer: there is
    // nothing it could be sent as yet) and emits 'drop'; the operator learns of it once a minute.
    server.maxConnections = opts.maxConnections;
    let dropped = 0;
    let lastLog = -Infinity;
    server.on('drop', (data?: { remoteAddress?: string }) => {
      dropped++;
      const now = Date.now();
      if (now - lastLog < DROP_LOG_EVERY_MS) return;
      lastLog = now;
      log.warn('connections refused: max_connections reached', { max_connections: opts.maxConnections, refused: dropped, last_remote: data?.remoteAddress });
      dropped = 0;
    });
  }
  server.setTimeout(opts.idleTimeoutSec * 1000);
  server.on('timeout', (socket: Socket) => {
    const w = current.get(socket);
    if (w && w.req.complete && !w.res.writableFinished && !w.res.destroyed && socket.writableLength === 0) {
      // the server owes the answer and the client is not behind: wait another period
      socket.setTimeout(opts.idleTimeoutSec * 1000);
      return;
    }
    socket.destroy();
  });
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
    log.debug('client error', { code: err.code, remote: socket.remoteAddress });
    // A response in flight on this connection (a bad request pipelined behind a good one): an answer
    // written now would land in that response's body (or stand in for its status), so none is.
    // Bytes after a `Connection: close` request are ignored: the responses owed go out whole, then
    // the connection closes (RFC 9112 §9.6); any other error cuts it.
    if ((socket as Socket & { _httpMessage?: ServerResponse | null })._httpMessage) {
      if (err.code !== 'HPE_CLOSED_CONNECTION') socket.destroy();
      return;
    }
    if (socket.writable && err.code !== 'ECONNRESET') {
      // Node's own answers for these two: headers too slow (headers_timeout), headers too large
      const status =
        err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
          ? '408 Request Timeout'
          : err.code === 'HPE_HEADER_OVERFLOW'
            ? '431 Request Header Fields Too Large'
            : '400 Bad Request';
      socket.end(`HTTP/1.1 ${status}\r\nContent-Length: 0\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n`);
    } else {
      socket.destroy();
    }
  });
  return server;
}

/** Tracks in-flight requests so shutdown can wait for them. */
export class InFlight {
  private count = 0;
  private started = 0;
  private waiters: (() => void)[] = [];
  private closing = false;

  track(req: IncomingMessage, res: ServerResponse): void {
    this.count++;
    this.started++;
    if (this.closing) res.setHeader('Connection', 'close');
    let done = false;
    const end = (): void => {
      if (done) return;
      done = true;
      this.count--;
      if (this.count === 0) for (const w of this.waiters.splice(0)) w();
    };
    res.on('close', end);
    req.once('error', end);
  }

  get size(): number {
    return this.count;
  }

  /** Requests tracked since the start (only grows). */
  get total(): number {
    return this.started;
  }

  /** Resolve when nothing is in flight or after ms (false). */
  drain(ms: number): Promise<boolean> {
    this.closing = true;
    if (this.count === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const t = setTimeout(() => resolve(false), ms);
      this.waiters.push(() => {
        clearTimeout(t);
        resolve(true);
      });
    });
  }
}
