import { connect, type LookupFunction, type Socket } from 'node:net';
import { Readable } from 'node:stream';
import { withRecycler } from '../recycle.js';

/**
 * A bare HTTP/1.1 GET over plain TCP for the S3 driver's reads (an object store on loopback or a
 * private network, `http:` endpoints only; TLS endpoints take node:http). Why not node:http: its
 * client allocates a Buffer and runs the stream machinery for every 64 KiB the socket delivers;
 * measured on Ceph RGW here, receiving a body cost ~3 s CPU/GiB through node:http and ~0.4 s/GiB
 * with the socket reading into buffers of our own (`onread`). The body arrives in pieces of `piece`
 * bytes (the last one smaller), which is also what the registry's response socket wants (few large
 * writes): the socket reads straight into the free end of the piece being filled, so body bytes
 * are not copied in this process (only those that came in one read with the answer's headers).
 *
 * Scope, kept small on purpose: one request per connection (`Connection: close`), answers with a
 * Content-Length (S3 GETs always have one; a chunked answer is refused with an error so the caller
 * can use node:http instead), no redirects, no 100-continue. Backpressure: the socket is paused
 * while the consumer does not read. `lookup`: how the host name is resolved (net.connect's option;
 * the mirror's guarded lookup for a URL an upstream handed out). `headersTimeoutMs`: the answer's
 * headers must be complete this long after the call (connecting included), however steadily their
 * bytes come; `timeoutMs` bounds each silence.
 */
export interface PlainAnswer {
  readonly status: number;
  readonly headers: Map<string, string>;
  readonly body: Readable;
}

export class ChunkedAnswerError extends Error {}

/** What the socket reads into until the answer's headers are complete. */
const HEAD_BUFFER = 64 * 1024;
const MAX_HEAD = 64 * 1024;

/**
 * Piece buffers given back by consumers that recycle (recycle.ts), reused by later pieces of the
 * same size: a fresh 1 MiB buffer per piece costs page faults and garbage collection (profile of
 * a download on RGW: ~40 % of the CPU went to the copy into fresh pages and to GC). Bounded.
 */
const POOL_MAX = 32;
const pools = new Map<number, Buffer[]>();
function fromPool(size: number): Buffer {
  return pools.get(size)?.pop() ?? Buffer.allocUnsafeSlow(size);
}
function toPool(size: number, piece: Buffer): void {
  // only whole pool-sized buffers of their own (allocUnsafeSlow) come back: a piece is a view of one
  if (piece.byteOffset !== 0 || piece.buffer.byteLength !== size) return;
  let pool = pools.get(size);
  if (!pool) pools.set(size, (pool = []));
  if (pool.length < POOL_MAX) pool.push(Buffer.from(piece.buffer, 0, size));
}

export function plainGet(
  url: URL,
  headers: Record<string, string>,
  opts: { piece: number; timeoutMs: number; headersTimeoutMs?: number; lookup?: LookupFunction },
): Promise<PlainAnswer> {
  return new Promise<PlainAnswer>((resolve, reject) => {
    let head: Buffer | undefined = Buffer.alloc(0);
    let answer: PlainAnswer | undefined;
    let remaining = 0;
    let out: Buffer | undefined;
    let outLen = 0;
    /** The free end of `out` handed to the socket for its next read (see onread below). */
    let direct: Buffer | undefined;
    const headBuffer = Buffer.allocUnsafe(HEAD_BUFFER);
    let settled = false;
    let recycling = false;
    const fail = (e: Error): void => {
      clearTimeout(headersDeadline);
      if (!settled) {
        settled = true;
        reject(e);
      } else if (answer && !answer.body.destroyed) answer.body.destroy(e);
      socket.destroy();
    };
    /** When the socket last went on reading after a pause: the idle time counts from there. */
    let resumedAt = 0;
    const body = new Readable({
      highWaterMark: 2 * opts.piece,
      read: () => {
        if (socket.isPaused()) {
          resumedAt = Date.now();
          socket.resume();
        }
      },
      destroy: (err, cb) => {
        socket.destroy();
        cb(err);
      },
    });
    const flush = (): void => {
      if (!out || outLen === 0) return;
      const piece = outLen === out.length ? out : out.subarray(0, outLen);
      out = undefined;
      outLen = 0;
      if (!body.push(piece)) socket.pause();
    };
    /** The piece being filled, started when there is none: never longer than the body left. */
    const current = (): Buffer => {
      if (!out) {
        // a recycled buffer is piece-sized: the last piece is a view of its start
        out = recycling ? fromPool(opts.piece).subarray(0, Math.min(opts.piece, remaining)) : Buffer.allocUnsafe(Math.min(opts.piece, remaining));
        outLen = 0;
      }
      return out;
    };
    let ended = false;
    const finish = (): void => {
      if (ended) return;
      ended = true;
      flush();
      body.push(null);
      socket.destroy();
    };
    /** n more body bytes are in the current piece: hand it on when full, end with the body. */
    const filled = (n: number): void => {
      outLen += n;
      remaining -= n;
      if (out && outLen === out.length) flush();
      if (remaining === 0) finish();
    };
    /** Copies body bytes that came with the headers into pieces. */
    const take = (buf: Buffer, start: number, end: number): void => {
      let at = start;
      const stop = Math.min(end, start + remaining);
      while (at < stop) {
        const piece = current();
        const n = Math.min(piece.length - outLen, stop - at);
        buf.copy(piece, outLen, at, at + n);
        at += n;
        filled(n);
      }
      if (remaining === 0) finish();
    };
    const onHead = (buf: Buffer, n: number): void => {
      head = Buffer.concat([head!, buf.subarray(0, n)]);
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) {
        if (head.length > MAX_HEAD) fail(new Error('s3: answer headers too large'));
        return;
      }
      const lines = head.subarray(0, end).toString('latin1').split('\r\n');
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? '');
      if (!m) return fail(new Error(`s3: not an HTTP answer: ${JSON.stringify((lines[0] ?? '').slice(0, 80))}`));
      const hs = new Map<string, string>();
      for (const l of lines.slice(1)) {
        const i = l.indexOf(':');
        if (i > 0) hs.set(l.slice(0, i).trim().toLowerCase(), l.slice(i + 1).trim());
      }
      if (/chunked/i.test(hs.get('transfer-encoding') ?? '')) return fail(new ChunkedAnswerError('s3: chunked answer'));
      const status = Number(m[1]);
      const len = Number(hs.get('content-length') ?? (status === 204 || status === 304 ? '0' : 'NaN'));
      if (!Number.isSafeInteger(len) || len < 0) return fail(new ChunkedAnswerError('s3: answer without Content-Length'));
      remaining = len;
      const rest = head;
      head = undefined;
      answer = {
        status,
        headers: hs,
        body: withRecycler(body, {
          enable: () => {
            recycling = true;
          },
          give: (piece) => toPool(opts.piece, piece),
        }),
      };
      settled = true;
      clearTimeout(headersDeadline);
      resolve(answer);
      take(rest, end + 4, rest.length);
    };
    const socket: Socket = connect({
      host: url.hostname.replace(/^\[|\]$/g, ''),
      port: Number(url.port || 80),
      ...(opts.lookup ? { lookup: opts.lookup } : {}),
      noDelay: true,
      onread: {
        // asked before every read: the headers go to headBuffer, the body straight into the free
        // end of the current piece (at most the body left: a read never runs past the body)
        buffer: (): Uint8Array => {
          direct = head || remaining <= 0 ? undefined : current().subarray(outLen);
          return direct ?? headBuffer;
        },
        callback: (n: number, buf: Uint8Array): boolean => {
          if (direct !== undefined && buf === direct) {
            direct = undefined;
            if (n > 0) filled(n);
          } else if (head) onHead(buf as Buffer, n);
          // (not reached while the buffer generator is asked before each read, as Node does:
          // body bytes that land elsewhere would be copied into the piece all the same)
          else if (remaining > 0) take(buf as Buffer, 0, n);
          return !socket.destroyed;
        },
      },
    });
    // idle while the consumer holds us paused is not the store's fault, nor is the time since it let
    // us go on; then the timer is armed again (a socket's timeout fires once per idle stretch, so a
    // store that stalls after a pause would otherwise never be caught)
    const idle = (): void => {
      if (socket.isPaused() || Date.now() - resumedAt < opts.timeoutMs) socket.setTimeout(opts.timeoutMs, idle);
      else fail(new Error(`s3: no data for ${opts.timeoutMs / 1000} s on GET`));
    };
    socket.setTimeout(opts.timeoutMs, idle);
    // a store that trickles its headers, each byte within the idle timeout, would hold us for ever
    const headersDeadline =
      opts.headersTimeoutMs === undefined
        ? undefined
        : setTimeout(() => fail(new Error(`s3: no complete answer headers to GET within ${opts.headersTimeoutMs! / 1000} s`)), opts.headersTimeoutMs);
    socket.once('error', (e) => fail(e));
    socket.once('close', () => {
      if (!settled) fail(new Error('s3: connection closed before the answer'));
      else if (remaining > 0) fail(new Error(`s3: connection closed with ${remaining} bytes of the body missing`));
    });
    socket.once('connect', () => {
      const extra = Object.entries(headers)
        .map(([k, v]) => `${k}: ${v}\r\n`)
        .join('');
      socket.write(`GET ${url.pathname}${url.search} HTTP/1.1\r\nHost: ${url.host}\r\n${extra}Connection: close\r\n\r\n`);
    });
  });
}
