import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { CellCounter, CellGauge, CellHistogram } from './cells.js';

/**
 * Every metric of the process, in one prom-client registry served at /metrics on the debug
 * listener (docs/operations.md). Metrics are process-wide: several servers started in one process
 * (tests) add to the same series, so tests compare values before and after.
 *
 * Label values are always drawn from small fixed sets (route names, methods, status codes, driver
 * and action names, results): never a repository, tag, account or digest, so the number of series
 * stays bounded whatever clients send.
 *
 * Names: distribution 2.8's (docker/go-metrics with namespace `registry`) where it has one, so
 * dashboards built for it work unchanged; ours are prefixed `legacy_registry_`.
 */
export const registry = new Registry();

let defaultsStarted = false;
/** prom-client's process_* and nodejs_* metrics (once per process). */
export function startDefaultMetrics(): void {
  if (defaultsStarted) return;
  defaultsStarted = true;
  collectDefaultMetrics({ register: registry });
}

const LATENCY = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
const SIZES = [0, 512, 4096, 65536, 1 << 20, 16 << 20, 128 << 20, 1 << 30];

// ---- distribution's HTTP metrics (registry_http_*), labels as distribution has them; updated on
// every request, so they are cells (cells.ts): resolved once per label set, then plain arithmetic
export const httpRequests = new CellCounter({
  name: 'registry_http_requests_total',
  help: 'Total number of HTTP requests made.',
  labelNames: ['code', 'handler', 'method'],
  registry,
});
export const httpDuration = new CellHistogram({
  name: 'registry_http_request_duration_seconds',
  help: 'The HTTP request latencies in seconds.',
  labelNames: ['handler', 'method'],
  buckets: LATENCY,
  registry,
});
export const httpRequestSize = new CellHistogram({
  name: 'registry_http_request_size_bytes',
  help: 'The HTTP request sizes in bytes (Content-Length; 0 when the client sent none).',
  labelNames: ['handler'],
  buckets: SIZES,
  registry,
});
export const httpResponseSize = new CellHistogram({
  name: 'registry_http_response_size_bytes',
  help: 'The HTTP response sizes in bytes.',
  labelNames: ['handler'],
  buckets: SIZES,
  registry,
});
export const httpInFlight = new CellGauge({
  name: 'registry_http_in_flight_requests',
  help: 'The in-flight HTTP requests.',
  labelNames: ['handler'],
  registry,
});

// ---- storage (distribution's registry_storage_*): several per request, so cells too
export const storageAction = new CellHistogram({
  name: 'registry_storage_action_seconds',
  help: 'The number of seconds that the storage action takes.',
  labelNames: ['driver', 'action'],
  buckets: LATENCY,
  registry,
});
export const storageCacheRequests = new CellCounter({
  name: 'registry_storage_cache_requests_total',
  help: 'The number of metadata cache requests received (type: Request, Hit, Miss).',
  labelNames: ['type'],
  registry,
});

// ---- v1 protocol
export const v1Pushes = new CellCounter({
  name: 'legacy_registry_v1_pushes_total',
  help: 'v1 push requests by step (json, layer, checksum, tag) and result (success, refused: 4xx, failed: 5xx).',
  labelNames: ['step', 'result'],
  registry,
});
export const v1Pulls = new CellCounter({
  name: 'legacy_registry_v1_pulls_total',
  help: 'v1 pull requests by step (json, layer, ancestry, tags, images) and result (success, refused, failed).',
  labelNames: ['step', 'result'],
  registry,
});

// ---- tokens
export const tokenValidations = new CellCounter({
  name: 'legacy_registry_token_validations_total',
  help: 'Token validations by kind (v1: X-Docker-Token asked of the index; v2: Bearer JWT) and result (valid, invalid, unavailable).',
  labelNames: ['kind', 'result'],
  registry,
});
export const tokenCacheRequests = new CellCounter({
  name: 'legacy_registry_token_cache_requests_total',
  help: 'Lookups of the v1 token validation cache (type: hit, miss).',
  labelNames: ['type'],
  registry,
});

// ---- index
export const searchDuration = new Histogram({
  name: 'legacy_registry_index_search_duration_seconds',
  help: 'Index search latency (v1 /v1/search and the web UI), seconds.',
  buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
  registers: [registry],
});

// ---- v2 uploads
export const uploadSessions = new Gauge({
  name: 'legacy_registry_upload_sessions_in_flight',
  help: 'v2 blob upload sessions open on this node.',
  registers: [registry],
});

// ---- webhooks and notifications: set by src/events (issue 15, another part); defined here so
// dashboards and the /metrics test see them from the start. `queue` names a bounded set: `webhooks`
// or a configured notification endpoint's name (operator-defined, few).
/** Where the queue depths come from at scrape time (the webhook outbox, the notification queues). */
const queueDepthSources = new Set<() => Promise<Record<string, number>>>();
/** Registers a source of queue depths (queue name → waiting deliveries); returns its removal. */
export function addQueueDepthSource(fn: () => Promise<Record<string, number>>): () => void {
  queueDepthSources.add(fn);
  return () => queueDepthSources.delete(fn);
}
export const eventQueueDepth = new Gauge({
  name: 'legacy_registry_event_queue_depth',
  help: 'Deliveries waiting in an outbox queue (queue: webhooks, or notifications endpoint name).',
  labelNames: ['queue'] as const,
  registers: [registry],
  async collect() {
    for (const source of queueDepthSources) {
      // a source that cannot answer (database down) leaves its last values rather than failing the scrape
      const depths = await source().catch(() => undefined);
      for (const [queue, depth] of Object.entries(depths ?? {})) this.set({ queue }, depth);
    }
  },
});
export const eventDeliveries = new Counter({
  name: 'legacy_registry_event_deliveries_total',
  help: 'Delivery attempts by queue and result (success, retry, failed: given up).',
  labelNames: ['queue', 'result'] as const,
  registers: [registry],
});

// ---- garbage collection (src/content/gc.ts)
export const gcRuns = new Counter({
  name: 'legacy_registry_gc_runs_total',
  help: 'Garbage collection runs in this process by result (success, failed).',
  labelNames: ['result'] as const,
  registers: [registry],
});
export const gcFreed = new Counter({
  name: 'legacy_registry_gc_freed_bytes_total',
  help: 'Bytes of blobs deleted by garbage collection in this process.',
  registers: [registry],
});
export const gcObjects = new Counter({
  name: 'legacy_registry_gc_deleted_objects_total',
  help: 'Objects deleted by garbage collection in this process, by kind (blob, v1_image, v2_manifest, link).',
  labelNames: ['kind'] as const,
  registers: [registry],
});
export const gcDuration = new Gauge({
  name: 'legacy_registry_gc_last_duration_seconds',
  help: 'Duration of the last garbage collection run in this process.',
  registers: [registry],
});

/** The text exposition of every metric (Prometheus text format 0.0.4). */
export async function exposition(): Promise<{ contentType: string; body: string }> {
  return { contentType: registry.contentType, body: await registry.metrics() };
}
