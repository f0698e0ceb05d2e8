import type { IncomingMessage, ServerResponse } from 'node:http';
import { httpDuration, httpInFlight, httpRequests, httpRequestSize, httpResponseSize, v1Pulls, v1Pushes } from './registry.js';

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

/**
 * Count one request in the HTTP metrics once its response is over (finished or cut): status,
 * latency, sizes, in-flight per handler, and the v1 push/pull step it was.
 */
export function instrumentRequest(req: IncomingMessage, res: ServerResponse): void {
  const started = process.hrtime.bigint();
  const path = (req.url ?? '/').split('?')[0]!;
  const handler = handlerOf(path);
  const method = METHODS.has(req.method ?? '') ? req.method! : 'OTHER';
  httpInFlight.inc({ handler });
  let sent = 0;
  // response bytes as written (streamed blobs have no Content-Length we could read afterwards)
  const write = res.write.bind(res) as (...a: unknown[]) => boolean;
  const end = res.end.bind(res) as (...a: unknown[]) => ServerResponse;
  const count = (chunk: unknown): void => {
    if (typeof chunk === 'string') sent += Buffer.byteLength(chunk);
    else if (chunk instanceof Uint8Array) sent += chunk.length;
  };
  res.write = ((...a: unknown[]) => {
    count(a[0]);
    return write(...a);
  }) as typeof res.write;
  res.end = ((...a: unknown[]) => {
    if (typeof a[0] !== 'function') count(a[0]);
    return end(...a);
  }) as typeof res.end;
  res.once('close', () => {
    httpInFlight.dec({ handler });
    // a response cut before its head was sent counts as the client going away (499, as nginx)
    const code = res.headersSent ? res.statusCode : 499;
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    httpRequests.inc({ code: String(code), handler, method });
    httpDuration.observe({ handler, method }, seconds);
    const len = Number(req.headers['content-length']);
    httpRequestSize.observe({ handler }, Number.isSafeInteger(len) && len >= 0 ? len : 0);
    httpResponseSize.observe({ handler }, sent);
    const v1 = v1Step(handler, method);
    if (v1) (v1.kind === 'push' ? v1Pushes : v1Pulls).inc({ step: v1.step, result: result(code) });
  });
}
