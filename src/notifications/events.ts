import { randomUUID } from 'node:crypto';
import type { Context } from 'koa';
import { clientAddress } from '../http/app.js';

/**
 * distribution's notification events (spec v2-bridge §5.4), field for field: what a receiver of
 * distribution's `notifications.endpoints` parses. Field order follows distribution's structs, so
 * our envelopes read like its own.
 */
/** What distribution 2.8.2 sends (measured; 3.x sends …events.v2+json). */
export const EVENTS_MEDIA_TYPE = 'application/vnd.docker.distribution.events.v1+json';

export type Action = 'push' | 'pull' | 'mount' | 'delete';

export interface Descriptor {
  readonly mediaType: string;
  readonly digest: string;
  readonly size: number;
}

export interface Target {
  mediaType?: string;
  size?: number;
  digest?: string;
  length?: number;
  repository?: string;
  fromRepository?: string;
  url?: string;
  tag?: string;
  references?: Descriptor[];
}

export interface RequestRecord {
  id: string;
  addr: string;
  host: string;
  method: string;
  useragent: string;
}

export interface Event {
  id: string;
  timestamp: string;
  action: Action;
  target: Target;
  request: RequestRecord;
  actor: { name?: string };
  source: { addr: string; instanceID: string };
}

/** An event as the routes give it: the notifier adds id, timestamp and source. */
export interface EventInput {
  readonly action: Action;
  readonly target: Target;
  readonly request: RequestRecord;
  readonly actor?: string | null;
}

/** Go's RFC3339Nano: fractional seconds without trailing zeros, `Z` for UTC. */
export function rfc3339Nano(ms: number, extraNs = 0): string {
  const iso = new Date(ms).toISOString(); // 2026-12-03T12:00:00.123Z
  const frac = `${iso.slice(20, 23)}${String(extraNs).padStart(6, '0')}`.replace(/0+$/, '');
  return `${iso.slice(0, 19)}${frac ? `.${frac}` : ''}Z`;
}

/** The request part of an event (distribution: the request's id, remote address, Host, method, User-Agent). */
export function requestRecord(ctx: Context): RequestRecord {
  const ip = clientAddress(ctx);
  const port = ctx.req.socket.remotePort;
  return {
    id: typeof ctx.state.requestId === 'string' ? ctx.state.requestId : randomUUID(),
    addr: ip.includes(':') ? `[${ip}]:${port ?? 0}` : `${ip}:${port ?? 0}`,
    host: ctx.host,
    method: ctx.method,
    useragent: ctx.get('User-Agent'),
  };
}

/** Absolute URLs of targets, as distribution builds them from the request. */
export function urlBase(ctx: Context): string {
  return `${ctx.protocol}://${ctx.host}`;
}

export const manifestUrl = (base: string, name: string, digest: string): string => `${base}/v2/${name}/manifests/${digest}`;
export const blobUrl = (base: string, name: string, digest: string): string => `${base}/v2/${name}/blobs/${digest}`;

/** A manifest's target (push and pull): media type, size/length, digest, repository, url, tag. */
export function manifestTarget(
  base: string,
  name: string,
  m: { mediaType: string; digest: string; size: number },
  tag?: string,
  references?: Descriptor[],
): Target {
  return {
    mediaType: m.mediaType,
    size: m.size,
    digest: m.digest,
    length: m.size,
    repository: name,
    url: manifestUrl(base, name, m.digest),
    ...(tag ? { tag } : {}),
    ...(references ? { references } : {}),
  };
}

/** A blob's target; distribution reports blobs as application/octet-stream. */
export function blobTarget(base: string, name: string, digest: string, size: number, mediaType = 'application/octet-stream'): Target {
  return { mediaType, size, digest, length: size, repository: name, url: blobUrl(base, name, digest) };
}

/** The descriptors a manifest references (notifications.events.includereferences). */
export function manifestReferences(bytes: Buffer): Descriptor[] {
  try {
    const m = JSON.parse(bytes.toString('utf8')) as { config?: unknown; layers?: unknown; manifests?: unknown; fsLayers?: unknown };
    const out: Descriptor[] = [];
    const add = (d: unknown): void => {
      const o = d as { mediaType?: unknown; digest?: unknown; size?: unknown } | null;
      if (o && typeof o.digest === 'string')
        out.push({ mediaType: typeof o.mediaType === 'string' ? o.mediaType : '', digest: o.digest, size: typeof o.size === 'number' ? o.size : 0 });
    };
    if (m.config) add(m.config);
    if (Array.isArray(m.layers)) m.layers.forEach(add);
    if (Array.isArray(m.manifests)) m.manifests.forEach(add);
    return out;
  } catch {
    return [];
  }
}
