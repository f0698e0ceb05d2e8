import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import type { Readable } from 'node:stream';

export interface Response {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly body: Buffer;
  readonly text: string;
  json<T = unknown>(): T;
}

export interface RequestOptions {
  readonly method?: string;
  readonly headers?: Record<string, string | string[]>;
  /** A Buffer/string is sent with Content-Length; a Readable is sent chunked unless headers give a length. */
  readonly body?: Buffer | string | Readable;
  /** Write the request target in absolute form (http://host:port/path). */
  readonly absolute?: boolean;
}

/** One HTTP exchange with the server under test, nothing hidden: raw status, headers and bytes. */
export function request(base: string, path: string, opts: RequestOptions = {}): Promise<Response> {
  const u = new URL(base);
  return new Promise((resolve, reject) => {
    const headers: Record<string, string | string[]> = { ...(opts.headers ?? {}) };
    const body = opts.body;
    if (typeof body === 'string' || Buffer.isBuffer(body)) {
      const hasLength = Object.keys(headers).some((k) => k.toLowerCase() === 'content-length');
      if (!hasLength) headers['Content-Length'] = String(Buffer.byteLength(body));
    }
    const req = httpRequest(
      {
        host: u.hostname,
        port: u.port,
        method: opts.method ?? 'GET',
        path: opts.absolute ? `${u.origin}${path}` : path,
        headers,
        agent: false,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () => {
          const buf = Buffer.concat(chunks);
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: buf,
            text: buf.toString('utf8'),
            json<T>() {
              return JSON.parse(buf.toString('utf8')) as T;
            },
          });
        });
      },
    );
    req.on('error', reject);
    if (body === undefined) req.end();
    else if (typeof body === 'string' || Buffer.isBuffer(body)) req.end(body);
    else body.pipe(req);
  });
}
