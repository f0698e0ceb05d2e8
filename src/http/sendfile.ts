import type { ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { loadNative } from '../util/native.js';

/**
 * Downloads with sendfile(2) (native/sendfile.c): the kernel sends the file's page-cache pages to
 * the socket, instead of reading each chunk into a buffer that the socket then copies again.
 *
 * Used for a plain-HTTP response (no TLS) whose headers are all in the kernel already, so that the
 * body's bytes follow them on the wire and nothing else is written to the socket until the job
 * ends. On by default where the module is built; `LR_SENDFILE=0` turns it off.
 */

interface Native {
  readonly available: boolean;
  start(socketFd: number, fileFd: number, offset: number, length: number, done: (err: number, sent: number) => void): object;
  sent(job: object): number;
  cancel(job: object): void;
  readsAhead(): number;
}

/** Bodies shorter than this go through the buffers: one read and one write, no poll handle. */
export const SENDFILE_MIN = 256 << 10;
/** What the native callback reports when the file ended before the promised length. */
const SHORT_FILE = -1;
/**
 * … and when the next bytes are not all in the page cache even after reading them ahead in the
 * thread pool (a page cache under pressure): sendfile would read the disk on the loop's thread.
 */
const NOT_CACHED = -2;
const ECANCELED = 125;
/** errno values of a peer that is gone: EPIPE, ECONNRESET, ETIMEDOUT, ENOTCONN. */
const GONE = new Set([32, 104, 110, 107]);

let loaded: { readonly native?: Native; readonly reason: string } | undefined;
const load = (): { readonly native?: Native; readonly reason: string } =>
  (loaded ??= loadNative<Native>('sendfile', 'LR_SENDFILE', 'sendfile(2) is not usable here'));
let off = false;

/** Turns sendfile on or off in this process (tests of either path). */
export function setSendfile(on: boolean): void {
  off = !on;
}

/** Whether downloads use sendfile, and why not (for the start line and tests). */
export function sendfileStatus(): { readonly on: boolean; readonly reason: string } {
  const { native, reason } = load();
  return { on: native !== undefined && !off, reason: native === undefined ? reason : off ? 'turned off' : 'on' };
}

let jobs = 0;
let uncached = 0;
/** Downloads that went through sendfile since the start (tests). */
export function sendfileJobs(): number {
  return jobs;
}
/** Windows of files read into the page cache ahead of sendfile, in the thread pool, since the start (tests). */
export function sendfileReadsAhead(): number {
  return load().native?.readsAhead() ?? 0;
}
/** Downloads that met bytes out of the page cache that its read-ahead could not keep there, and left the rest to the reads (tests). */
export function sendfileUncached(): number {
  return uncached;
}

/** Where a download stands after sendWithSendfile: over (nothing more to send), or `sent` bytes of the body sent. */
export interface SendfileResult {
  readonly over: boolean;
  readonly sent: number;
}
const NOT_USED: SendfileResult = { over: false, sent: 0 };

/** The socket's descriptor when the response can be sent with sendfile from here, else undefined. */
function socketFd(res: ServerResponse): number | undefined {
  const socket = res.socket as (Socket & { encrypted?: boolean; _handle?: { fd?: unknown } | null }) | null;
  if (!socket || socket.encrypted || socket.destroyed || !socket.writable) return undefined;
  const fd = socket._handle?.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : undefined;
}

/**
 * Sends `length` bytes of the open file `fileFd` from `start` as the body of `res`, whose status
 * and headers (with Content-Length) are set and not yet sent. The result says what is left:
 * - `over`: the body was sent whole and the response ended, or the connection was cut for a client
 *   that went away or took nothing for the socket's idle timeout (as the buffered path cuts it);
 * - else `sent` bytes of the body went out (0 when sendfile cannot be used for this response, the
 *   headers possibly sent already), and the caller writes the rest through the response: the rest
 *   is not all in the page cache, and sendfile would read it from the disk on the loop's thread.
 * A file that ends short, or a failing sendfile, cuts the connection too (the length was
 * promised), and the promise rejects. The caller keeps the file open until the promise settles.
 */
export async function sendWithSendfile(res: ServerResponse, fileFd: number, start: number, length: number): Promise<SendfileResult> {
  const native = off ? undefined : load().native;
  if (!native || length < SENDFILE_MIN) return NOT_USED;
  const sockFd = socketFd(res);
  if (sockFd === undefined) return NOT_USED;
  res.flushHeaders();
  // the headers must be in the kernel, ahead of the body; behind a pipelined response, or with the
  // socket still busy, they are not: the caller writes the body through the stream instead
  if (res.writableLength !== 0 || res.socket?.writableLength !== 0 || socketFd(res) !== sockFd) return NOT_USED;
  const socket = res.socket as Socket;
  let clientGone = false;
  let sent = 0;
  const result = await new Promise<number>((resolve) => {
    let watch: NodeJS.Timeout | undefined;
    const finish = (err: number): void => {
      clearInterval(watch);
      res.off('close', onClose);
      resolve(err);
    };
    let job: object;
    try {
      job = native.start(sockFd, fileFd, start, length, (err, n) => {
        sent = n;
        finish(err);
      });
    } catch {
      // the socket could not be watched: nothing of the body was sent
      resolve(Number.NaN);
      return;
    }
    jobs++;
    const onClose = (): void => {
      clientGone = true;
      native.cancel(job);
    };
    res.on('close', onClose);
    // node sees no writes while the kernel sends: the socket's idle timeout is watched here, on
    // the bytes the job has sent
    const idle = socket.timeout ?? 0;
    if (idle > 0) {
      let last = 0;
      let lastAt = Date.now();
      watch = setInterval(
        () => {
          const now = native.sent(job);
          if (now !== last) {
            last = now;
            lastAt = Date.now();
          } else if (Date.now() - lastAt >= idle) {
            native.cancel(job);
          }
        },
        Math.max(250, Math.min(idle / 4, 5_000)),
      );
    }
  });
  if (Number.isNaN(result)) return NOT_USED;
  if (result === 0) {
    res.end();
    return { over: true, sent };
  }
  if (result === NOT_CACHED && !clientGone) {
    uncached++;
    return { over: false, sent };
  }
  if (result !== SHORT_FILE && (clientGone || GONE.has(result) || result === ECANCELED)) {
    // the client went away or stalled: the connection is cut, as the buffered path does
    res.destroy();
    return { over: true, sent };
  }
  const err = new Error(result === SHORT_FILE ? 'file ended before its length' : `sendfile failed (errno ${result})`);
  res.destroy(err);
  throw err;
}
