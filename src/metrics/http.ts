import type { IncomingMessage, ServerResponse } from 'node:http';
import { httpDuration, httpInFlight, httpRequests, httpRequestSize, httpResponseSize, v1Pulls, v1Pushes } from './registry.js';
import type { HistogramCell, ValueCell } from './cells.js';

/**
 * The route family of a request path, as a label: a fixed set of names (distribution's handler
 * names on /v2/, ours elsewhere), never anything taken from the path itself.
 */
export function handlerOf(path: string): string {
  if (path === '/v2' || path === '/v2/') return 'base';
  if (path.startsWith('/v2/')) {
    if (path === '/v2/token') return 'token';
    if (path === '/v2/_catalog') return 'catalog';
    if (/\/tags\/list$/.test(path)) return 'tags';
    if (/\/manifests\/[^/]+$/.test(path)) return 'manifest';
    if (/\/blobs\/uploads\/?$/.test(path)) return 'blob_upload';
    if (/\/blobs\/uploads\/[^/]+$/.test(path)) return 'blob_upload_chunk';
    if (/\/blobs\/[^/]+$/.test(path)) return 'blob';
    if (/\/referrers\/[^/]+$/.test(path)) return 'referrers';
    return 'v2_other';
  }
  if (path === '/_ping' || path === '/v1/_ping') return 'v1_ping';
  if (path.startsWith('/v1/images/')) {
    const m = /^\/v1\/images\/[^/]+\/(json|layer|checksum|ancestry|files|diff)$/.exec(path);
    return m ? `v1_image_${m[1]}` : 'v1_other';
  }
  if (path.startsWith('/v1/repositories/')) {
    if (/\/tags\/[^/]+\/json$/.test(path)) return 'v1_tag_json';
    if (/\/tags\/[^/]+$/.test(path)) return 'v1_tag';
    if (/\/tags\/?$/.test(path)) return 'v1_tags';
    if (/\/images\/?$/.test(path)) return 'v1_repository_images';
    if (/\/auth\/?$/.test(path)) return 'v1_repository_auth';
    if (/\/properties\/?$/.test(path)) return 'v1_repository_properties';
    if (/\/json\/?$/.test(path)) return 'v1_repository_json';
    return 'v1_repository';
  }
  if (path === '/v1/search') return 'v1_search';
  if (path.startsWith('/v1/users')) return 'v1_users';
  if (path.startsWith('/v1/')) return 'v1_other';
  if (path === '/') return 'root';
  return 'other';
}

const METHODS = new Set(['GET', 'HEAD', 'PUT', 'POST', 'PATCH', 'DELETE', 'OPTIONS']);

/** The v1 push or pull step a finished request was, if any. */
function v1Step(handler: string, method: string): { kind: 'push' | 'pull'; step: string } | undefined {
  const read = method === 'GET' || method === 'HEAD';
  switch (handler) {
    case 'v1_image_json':
      return { kind: read ? 'pull' : 'push', step: 'json' };
    case 'v1_image_layer':
      return { kind: read ? 'pull' : 'push', step: 'layer' };
    case 'v1_image_checksum':
      return method === 'PUT' ? { kind: 'push', step: 'checksum' } : undefined;
    case 'v1_image_ancestry':
      return read ? { kind: 'pull', step: 'ancestry' } : undefined;
    case 'v1_tag':
      return method === 'PUT' ? { kind: 'push', step: 'tag' } : read ? { kind: 'pull', step: 'tag' } : undefined;
    case 'v1_tags':
      return read ? { kind: 'pull', step: 'tags' } : undefined;
    case 'v1_repository_images':
      return read ? { kind: 'pull', step: 'images' } : method === 'PUT' ? { kind: 'push', step: 'images' } : undefined;
    default:
      return undefined;
  }
}

function result(code: number): string {
  return code < 400 ? 'success' : code < 500 ? 'refused' : 'failed';
}

/** The cells of one (handler, method): resolved on the first request of that kind. */
interface RouteCells {
  readonly handler: string;
  readonly method: string;
  readonly inFlight: ValueCell;
  readonly duration: HistogramCell;
  readonly requestSize: HistogramCell;
  readonly responseSize: HistogramCell;
  readonly v1: { kind: 'push' | 'pull'; step: string } | undefined;
  /** registry_http_requests_total by status code */
  readonly codes: Map<number, ValueCell>;
}

const routeCells = new Map<string, RouteCells>();

function cellsOf(handler: string, method: string): RouteCells {
  const key = `${handler} ${method}`;
  let r = routeCells.get(key);
  if (!r) {
    r = {
      handler,
      method,
      inFlight: httpInFlight.cell(handler),
      duration: httpDuration.cell(handler, method),
      requestSize: httpRequestSize.cell(handler),
      responseSize: httpResponseSize.cell(handler),
      v1: v1Step(handler, method),
      codes: new Map(),
    };
    routeCells.set(key, r);
  }
  return r;
}

/** One response's count of body bytes, and the write/end it had before they were counted. */
interface Counted {
  sent: number;
  readonly write: (...a: unknown[]) => boolean;
  readonly end: (...a: unknown[]) => ServerResponse;
}
const COUNTED = Symbol('responseBytes');
type CountedResponse = ServerResponse & { [COUNTED]: Counted };

function bytesOf(chunk: unknown): number {
  return typeof chunk === 'string' ? Buffer.byteLength(chunk) : chunk instanceof Uint8Array ? chunk.length : 0;
}
// shared by every response (no closures made per request): the counts live on the response
function countedWrite(this: CountedResponse, ...a: unknown[]): boolean {
  const c = this[COUNTED];
  c.sent += bytesOf(a[0]);
  return c.write.apply(this, a);
}
function countedEnd(this: CountedResponse, ...a: unknown[]): ServerResponse {
  const c = this[COUNTED];
  if (typeof a[0] !== 'function') c.sent += bytesOf(a[0]);
  return c.end.apply(this, a);
}

/**
 * Count one request in the HTTP metrics once its response is over (finished or cut): status,
 * latency, sizes, in-flight per handler, and the v1 push/pull step it was.
 */
export function instrumentRequest(req: IncomingMessage, res: ServerResponse): void {
  const started = process.hrtime.bigint();
  const url = req.url ?? '/';
  const q = url.indexOf('?');
  const cells = cellsOf(handlerOf(q < 0 ? url : url.slice(0, q)), METHODS.has(req.method ?? '') ? req.method! : 'OTHER');
  cells.inFlight.value++;
  // response bytes as written (streamed blobs have no Content-Length we could read afterwards)
  const counted = res as CountedResponse;
  counted[COUNTED] = { sent: 0, write: res.write as Counted['write'], end: res.end as Counted['end'] };
  res.write = countedWrite as typeof res.write;
  res.end = countedEnd as typeof res.end;
  // a response's 'close' comes once, whether it finished or was cut
  res.on('close', () => {
    cells.inFlight.value--;
    // a response cut before its head was sent counts as the client going away (499, as nginx)
    const code = res.headersSent ? res.statusCode : 499;
    let codeCell = cells.codes.get(code);
    if (!codeCell) cells.codes.set(code, (codeCell = httpRequests.cell(String(code), cells.handler, cells.method)));
    codeCell.value++;
    httpDuration.observe(cells.duration, Number(process.hrtime.bigint() - started) / 1e9);
    const len = Number(req.headers['content-length']);
    httpRequestSize.observe(cells.requestSize, Number.isSafeInteger(len) && len >= 0 ? len : 0);
    httpResponseSize.observe(cells.responseSize, counted[COUNTED].sent);
    const v1 = cells.v1;
    if (v1) (v1.kind === 'push' ? v1Pushes : v1Pulls).cell(v1.step, result(code)).value++;
  });
}
