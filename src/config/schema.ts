import { z } from 'zod';
import { parseByteSize } from './byte-size.js';
import { parseNetwork } from '../util/network.js';

/** An IP address or a CIDR range of one (trusted_proxies, webhook_allowed_networks). */
export function isProxySpec(v: string): boolean {
  return parseNetwork(v) !== undefined;
}

/**
 * The typed configuration. Property names mirror the YAML keys exactly (STYLE: no renaming layer).
 * Keys and defaults follow the Python docker-registry (spec v1-protocol §8) where it had them.
 */
const nullableString = z.string().min(1).nullable().default(null);
const byteSize = z.union([z.number().int().nonnegative(), z.string().regex(/^\d+\s*([kKmMgGtT]i?[bB]?)?$/)]);

export const mirroringSchema = z
  .object({
    source: nullableString,
    source_index: nullableString,
    tags_cache_ttl: z.number().int().positive().default(172800),
  })
  .strict();

/**
 * One upstream of the pull-through mirror (issue 13, src/mirror/): repositories whose name starts
 * with `prefix` are served from `url` (the prefix is taken off before asking it). `prefix: ''`
 * mirrors every name (distribution's `proxy:`). `ns` is the host containerd names in `?ns=`.
 */
export const mirrorUpstreamSchema = z
  .object({
    /** Name prefix, '' (every name) or ending with '/': `docker.io/`, `ghcr.io/`. */
    prefix: z
      .string()
      .regex(/^([a-z0-9._-]+(\/[a-z0-9._-]+)*\/)?$/, 'a name prefix ending with / (or empty)')
      .default(''),
    /** The upstream registry's root URL (http or https, no path). */
    url: z.url(),
    /** Credentials for the upstream (Basic, or the Bearer token dance). */
    username: nullableString,
    password: nullableString,
    /** containerd's `?ns=<host>`: requests naming this host go to this upstream; default: none. */
    ns: nullableString,
  })
  .strict();

export const mirrorSchema = z
  .object({
    upstreams: z.array(mirrorUpstreamSchema).min(1),
    /** Seconds cached content lives (distribution's proxy.ttl, default 168h); 0 = never expires. */
    ttl: z.number().int().nonnegative().default(604800),
    /** Seconds an upstream 404 is remembered. */
    negative_ttl: z.number().nonnegative().default(15),
    /** Seconds to wait for an upstream's answer (headers) before it counts as down. */
    timeout: z.number().positive().default(20),
    /** Consecutive upstream failures that open the circuit breaker (0: no breaker). */
    breaker_failures: z.number().int().nonnegative().default(5),
    /** Seconds the breaker stays open (upstream not asked; cache served) before one trial. */
    breaker_seconds: z.number().positive().default(30),
    /** Seconds between expiry sweeps; unset: ttl/10 between 10 s and 10 min. */
    sweep_interval: z.number().positive().nullable().default(null),
  })
  .strict();
export type MirrorConfig = z.output<typeof mirrorSchema>;

const seconds = z.number().positive();
const checkTiming = { interval: seconds.default(10), threshold: z.number().int().nonnegative().default(0) };
/** distribution's health section: periodic checks; any failing one makes every request a 503. */
export const healthSchema = z
  .object({
    storagedriver: z
      .object({ enabled: z.boolean().default(false), ...checkTiming })
      .strict()
      .nullable()
      .default(null),
    /** Fails while the file exists (a maintenance switch). */
    file: z.array(z.object({ file: z.string().min(1), ...checkTiming }).strict()).default([]),
    /** Fails unless GET uri answers statuscode within timeout seconds. */
    http: z
      .array(
        z
          .object({
            uri: z.url(),
            headers: z.record(z.string(), z.array(z.string())).nullable().default(null),
            statuscode: z.number().int().min(100).max(599).default(200),
            timeout: seconds.default(1),
            ...checkTiming,
          })
          .strict(),
      )
      .default([]),
    /** Fails unless a TCP connection to addr (host:port) opens within timeout seconds. */
    tcp: z.array(z.object({ addr: z.string().min(1), timeout: seconds.default(1), ...checkTiming }).strict()).default([]),
  })
  .strict();

/**
 * CORS, as the Python registry offered it through Flask-CORS 1.x (spec v1-protocol §8.2: every
 * `cors.<key>` became Flask-CORS's `CORS_<KEY>`). null = Flask-CORS's default (src/http/cors.ts).
 */
const corsList = z
  .union([z.string(), z.array(z.string())])
  .nullable()
  .default(null);
const corsFlag = z.boolean().nullable().default(null);
const corsOptions = {
  /** Allowed origins: exact origins, regular expressions (a value with ?, *, [ or ]), or '*'. */
  origins: corsList,
  /** Methods a preflight may ask for (Access-Control-Allow-Methods); default all. */
  methods: corsList,
  /** Access-Control-Allow-Headers of preflight answers (Flask-CORS's CORS_HEADERS). */
  headers: corsList,
  /** The same, under Flask-CORS's later name; `headers` wins. */
  allow_headers: corsList,
  /** Access-Control-Expose-Headers. */
  expose_headers: corsList,
  /** Access-Control-Allow-Credentials: true. */
  supports_credentials: corsFlag,
  /** Access-Control-Max-Age of preflight answers, seconds. */
  max_age: z
    .union([z.number().int().nonnegative(), z.string().regex(/^\d+$/)])
    .nullable()
    .default(null),
  /** With origins '*': answer '*' (true, default) or echo the request's Origin. */
  send_wildcard: corsFlag,
  /** Send Access-Control-Allow-Origin (the listed origins) even without an Origin header; default true. */
  always_send: corsFlag,
  /** Answer OPTIONS requests here (200, empty) instead of passing them to the routes; default true. */
  automatic_options: corsFlag,
  /** Vary: Origin when the allowed origin is not '*'; default true. */
  vary_header: corsFlag,
};
export const corsResourceSchema = z.object(corsOptions).strict();
export const corsSchema = z
  .object({
    ...corsOptions,
    /**
     * Paths CORS applies to: a regular expression (matched at the start of the path), a list of
     * them, or a map of them to options overriding the ones above; default every path.
     */
    resources: z
      .union([z.string(), z.array(z.string()), z.record(z.string(), corsResourceSchema.nullable())])
      .nullable()
      .default(null),
  })
  .strict();
export type CorsConfig = z.output<typeof corsSchema>;
export type CorsResourceConfig = z.output<typeof corsResourceSchema>;

/**
 * distribution's notifications (spec v2-bridge §5.4): endpoints receiving event envelopes. Durations
 * are seconds here (a distribution config.yml's Go durations are converted when it is read).
 */
const stringList = z.array(z.string()).default([]);
export const notificationEndpointSchema = z
  .object({
    name: z.string().min(1).max(200),
    url: z.url(),
    /** Added to each POST: name → values (distribution's map of lists). */
    headers: z
      .record(z.string(), z.array(z.string()))
      .nullable()
      .default(null)
      .transform((v) => v ?? {}),
    /** Seconds one POST may take (distribution's default 1s). */
    timeout: z.number().positive().default(1),
    /** Failures in a row after which each retry waits `backoff` (default 10). */
    threshold: z.number().int().min(1).default(10),
    /** Seconds between retries once `threshold` is reached (default 1s). */
    backoff: z.number().nonnegative().default(1),
    /** Targets of these media types are not sent (also ignore.mediatypes). */
    ignoredmediatypes: stringList,
    ignore: z.object({ mediatypes: stringList, actions: stringList }).strict().nullable().default(null),
    disabled: z.boolean().default(false),
  })
  .strict();
export const notificationsSchema = z
  .object({
    endpoints: z.array(notificationEndpointSchema).default([]),
    events: z
      .object({ includereferences: z.boolean().default(false) })
      .strict()
      .nullable()
      .default(null),
    /** Name this node's queues are kept under in storage (default: the host name). */
    node: z.string().min(1).max(100).nullable().default(null),
  })
  .strict();

export const configSchema = z
  .object({
    /** Body of GET / (JSON-encoded string). */
    issue: z.string().default('"docker-registry server"'),
    loglevel: z.enum(['debug', 'info', 'warn', 'warning', 'error', 'critical', 'silent']).default('info'),
    /** Log line format: `text` (time LEVEL message key=value…) or `json` (one object per line). */
    log_format: z.enum(['text', 'json']).default('text'),
    /** Static fields added to every log line (distribution's log.fields). */
    log_fields: z.record(z.string(), z.unknown()).nullable().default(null),
    /** One log line per request (distribution's log.accesslog.disabled: false). */
    access_log: z.boolean().default(true),
    debug: z.boolean().default(false),
    /**
     * No index: no token checks, stand-in index routes served (spec §3.12). Unset: `serve` (index and
     * registry together) checks tokens against its own index; `serve --only registry` is standalone
     * unless index_endpoint is set.
     */
    standalone: z.boolean().nullable().default(null),
    /** Base URL of the index the registry validates tokens against (spec §4.2); unset: this process. */
    index_endpoint: z.url().nullable().default(null),
    disable_token_auth: z.boolean().nullable().default(null),
    privileged_key: nullableString,
    /**
     * Storage driver: file (alias local), s3 (any S3-compatible store), swift (OpenStack Swift / Rackspace
     * Cloud Files) or memory (tests only). docs/storage.md.
     */
    storage: z.enum(['file', 'local', 'memory', 's3', 'swift']).default('file'),
    /** file: the root directory. s3 / swift: the key prefix inside the bucket or container (Python's storage_path). */
    storage_path: z.string().min(1).default('./data'),
    /**
     * Blob and v1 layer GETs answer 307/302 to a pre-signed URL of the object store (s3), so the bytes
     * do not pass through the registry. null: off, except for a distribution config with storage.s3
     * (distribution redirects by default; storage.redirect.disable turns it off).
     */
    storage_redirect: z.boolean().nullable().default(null),
    /**
     * file: make the small calls on one name (lstat, open, rename, mkdir, unlink…) as blocking calls
     * instead of handing each to libuv's thread pool (19 % less CPU per 1 MiB v2 upload; docs/storage-layout.md).
     * null: on when storage_path lies on a local Linux file system (ext4, XFS, Btrfs, tmpfs, ZFS…),
     * off on a network one (NFS, SMB, FUSE, CephFS…), where one slow call would stall every request.
     */
    storage_blocking_calls: z.boolean().nullable().default(null),

    // --- S3 (storage: s3): the Python registry's keys (s3_*, boto_*), distribution's storage.s3 maps onto them
    /** Bucket (boto_bucket is the older name of the same key). */
    s3_bucket: nullableString,
    boto_bucket: nullableString,
    /** Region used for signing; us-east-1 when unset (RGW and most S3-compatible stores accept any). */
    s3_region: nullableString,
    /** Endpoint URL of an S3-compatible store (distribution's regionendpoint); unset: AWS (or boto_host). */
    s3_endpoint: nullableString,
    /** Python: host and port of the store (the endpoint is http(s)://boto_host:boto_port, https unless s3_secure is false). */
    boto_host: nullableString,
    boto_port: z.number().int().min(1).max(65535).nullable().default(null),
    /** Python: https to boto_host (default true). */
    s3_secure: z.boolean().nullable().default(null),
    /** Python: boto's calling format; OrdinaryCallingFormat means path-style addressing. */
    boto_calling_format: nullableString,
    /** Path-style addressing (bucket in the path); default: on with an endpoint, off for AWS. */
    s3_force_path_style: z.boolean().nullable().default(null),
    /** Static credentials; unset: the AWS SDK's chain (AWS_ACCESS_KEY_ID…, ~/.aws, instance roles). */
    s3_access_key: nullableString,
    s3_secret_key: nullableString,
    s3_session_token: nullableString,
    /** Server-side encryption (AES256; aws:kms with s3_kms_key_id). */
    s3_encrypt: z.boolean().nullable().default(null),
    s3_kms_key_id: nullableString,
    /** Python: signature v4 (always used here; kept so old files load). */
    s3_use_sigv4: z.boolean().nullable().default(null),
    s3_storage_class: nullableString,
    /** Multipart part size of uploads (≥ 5 MiB): a writer holds at most two parts in memory. */
    s3_part_size: byteSize.default('10MiB'),
    /** Accept any TLS certificate of the endpoint (distribution's skipverify). */
    s3_skip_verify: z.boolean().default(false),

    // --- Swift (storage: swift): the Python registry's keys; distribution's storage.swift maps onto them
    /** Auth URL: v1 (…/auth/1.0, …/auth/v1.0) or Keystone v2/v3 (…/v2.0, …/v3). */
    swift_authurl: nullableString,
    swift_container: nullableString,
    swift_user: nullableString,
    swift_password: nullableString,
    /** 1, 2 (Keystone v2) or 3 (Keystone v3); unset: from the URL (…/auth/1.0, …v2…, …v3…), else 2 as the Python registry. */
    swift_auth_version: z
      .union([z.literal(1), z.literal(2), z.literal(3)])
      .nullable()
      .default(null),
    /** Project (tenant) name; with auth v1 the user becomes tenant:user. */
    swift_tenant_name: nullableString,
    /** Keystone: the project (tenant) id, instead of the name. */
    swift_tenant_id: nullableString,
    /** Keystone v3: the user's domain (name or id), and the project's unless swift_tenant_domain_* are set (default: Default). */
    swift_domain_name: nullableString,
    swift_domain_id: nullableString,
    swift_tenant_domain_name: nullableString,
    swift_tenant_domain_id: nullableString,
    /** Keystone v3: scope the token to this trust instead of a project. */
    swift_trust_id: nullableString,
    /** Keystone: region of the object-store endpoint in the catalog (unset: the first listed). */
    swift_region_name: nullableString,
    /** Keystone: which catalog URL: public (default), internal or admin (publicURL… accepted). */
    swift_endpoint_type: z
      .string()
      .regex(/^(public|internal|admin)(url)?$/i, 'public, internal or admin')
      .nullable()
      .default(null),
    /** Segment size of large objects (Static Large Object segments; ≥ 1 MiB). */
    swift_segment_size: byteSize.default('10MiB'),
    swift_insecure_skip_verify: z.boolean().default(false),
    /**
     * URI prefix of an nginx `internal` location serving the filesystem storage's root (alias): blob
     * and v1 layer GETs then answer with `X-Accel-Redirect: <prefix>/blobs/sha256/…/data` and nginx
     * sends the bytes (sendfile, Range included). Only for requests nginx marks with
     * `X-Sendfile-Type: X-Accel-Redirect` (from a trusted_proxies peer when that is set): direct
     * clients still get the bytes. File storage only.
     */
    nginx_x_accel_redirect: z
      .string()
      .regex(/^\/[A-Za-z0-9._~/-]*$/, 'an absolute URI path (/_storage)')
      .nullable()
      .default(null),
    /** X-Docker-Endpoints value (host[:port] list); default: a Host naming this machine, else the listen address. */
    registry_endpoints: z
      .union([z.string().min(1), z.array(z.string().min(1)).min(1)])
      .nullable()
      .default(null),
    search_backend: nullableString,
    sqlalchemy_index_database: nullableString,
    mirroring: mirroringSchema.nullable().default(null),
    /**
     * The v2 pull-through mirror (issue 13): upstreams by name prefix beside local repositories.
     * distribution's `proxy:` section becomes one upstream with prefix ''.
     */
    mirror: mirrorSchema.nullable().default(null),
    /** Listen address (spec §8.3 REGISTRY_HOST / REGISTRY_PORT; REGISTRY_HTTP_ADDR host:port wins). */
    host: z.string().min(1).default('0.0.0.0'),
    port: z.number().int().min(0).max(65535).default(5000),
    http_addr: nullableString,
    /**
     * Reverse proxies (IP addresses or CIDR ranges, e.g. 127.0.0.1, 10.0.0.0/8) whose
     * X-Forwarded-For, X-Forwarded-Proto and X-Forwarded-Host are believed: the client address
     * (login throttling, anonymous upload limits) and the scheme and host the client used (web UI
     * origin checks, Secure cookies). From any other peer those headers are dropped. Empty: none.
     */
    trusted_proxies: z.array(z.string().refine(isProxySpec, 'an IP address or CIDR range (10.0.0.0/8, fd00::/8)')).default([]),
    /** Serve HTTPS with this PEM certificate (chain) and key (distribution's http.tls). */
    tls_certificate: nullableString,
    tls_key: nullableString,
    /** Require client certificates signed by one of these PEM CA files (http.tls.clientcas). */
    tls_client_cas: z.array(z.string().min(1)).min(1).nullable().default(null),
    tls_minimum_version: z.enum(['TLSv1', 'TLSv1.1', 'TLSv1.2', 'TLSv1.3']).nullable().default(null),
    /** A second listener (host:port) serving /debug/health (distribution's http.debug.addr). */
    debug_addr: nullableString,
    /** Prometheus metrics on the debug listener (distribution's http.debug.prometheus.enabled). */
    metrics: z.boolean().default(true),
    /** Path of the metrics on the debug listener (http.debug.prometheus.path). */
    metrics_path: z
      .string()
      .regex(/^\/[A-Za-z0-9._~/-]*$/)
      .default('/metrics'),
    /** Periodic health checks (distribution's health section); null: none. */
    health: healthSchema.nullable().default(null),
    /**
     * Registry writes (pushes, tags, deletes; v1 and v2) answer 405 and change nothing, reads go on
     * (distribution's storage.maintenance.readonly, for garbage collection or migration).
     */
    read_only: z.boolean().default(false),
    /** Largest accepted layer in bytes (0 = no limit). Accepts 512MiB style suffixes. */
    max_layer_size: byteSize.default(0),
    /** Largest accepted image json / JSON request body. */
    max_json_size: byteSize.default('4MiB'),
    /** Largest image config the v1⇄v2 bridge reads (v1 view, schema1 view); larger ones get neither. Accepts 8MiB style suffixes. */
    max_config_size: byteSize.default('8MiB').transform((v) => parseByteSize(v)),
    /** Verify X-Docker-Checksum (tarsum) on PUT checksum when the layer could be read as a tar. */
    verify_tarsum: z.boolean().default(true),
    /** Seconds a connection may stay idle (no bytes either way) before it is closed. */
    idle_timeout: z.number().int().positive().default(120),
    /** Seconds a client has to send a request's headers (a client trickling them byte by byte is cut off). */
    headers_timeout: z.number().int().positive().default(60),
    /** Open connections at most; one past it is closed at once, unanswered (a WARN a minute says how many). 0 = no cap. */
    max_connections: z.number().int().nonnegative().default(2048),
    /** Seconds in-flight requests get to finish on SIGTERM/SIGINT before the process exits. */
    shutdown_timeout: z.number().int().nonnegative().default(30),
    /** Seconds after which an abandoned upload (no write for that long) is purged. */
    upload_purge_age: z.number().int().positive().default(3600),
    /** Purge abandoned uploads at start and periodically (storage.maintenance.uploadpurging.enabled). */
    upload_purging: z.boolean().default(true),
    /** Seconds between purges; unset: upload_purge_age, at most an hour. */
    upload_purge_interval: z.number().int().positive().nullable().default(null),
    /** Open v2 upload sessions per repository on each node; past it POST answers 429 (0 = no limit). */
    max_uploads_per_repository: z.number().int().nonnegative().default(64),
    /** Open v2 upload sessions per account (anonymous: per client address) on each node (0 = no limit). */
    max_uploads_per_account: z.number().int().nonnegative().default(256),
    /**
     * Serve the v2 / OCI API on /v2/ (on by default: current docker, podman and skopeo speak only
     * v2). Docker 1.6+ prefers v2 whenever /v2/ answers; sites that must keep 1.6–1.9 clients on v1
     * turn it off, and /v2/* then answers 404 so they fall back.
     */
    v2: z.boolean().default(true),
    /**
     * How /v2/ requests are authorised (spec v2-bridge §4). null = derived: `token` when an index
     * is configured (this process's or index_endpoint), `none` on a standalone registry.
     * token: Bearer JWTs issued by the index's token service; htpasswd: Basic against htpasswd_path.
     */
    v2_auth: z.enum(['none', 'token', 'htpasswd']).nullable().default(null),
    /** htpasswd mode: the file (bcrypt entries) and the Basic realm. */
    htpasswd_path: nullableString,
    htpasswd_realm: z.string().min(1).default('Registry Realm'),
    /** Token mode: the realm clients are sent to (absolute URL); unset: <index URL>/v2/token at a Host naming this machine, else the listen address. */
    token_realm: nullableString,
    /** Token mode: the `service` (JWT aud); unset: the first registry_endpoints entry, else the listen address (config/advertise.ts). */
    token_service: nullableString,
    /** Index: services besides its own it issues v2 tokens for (registries using it as their token service). */
    token_audiences: z.union([z.string().min(1), z.array(z.string().min(1))]).default([]),
    /** Token mode: the JWT issuer (iss) the index writes and the registry trusts. */
    token_issuer: z.string().min(1).default('legacy-registry'),
    /** Registry: PEM certificate bundle of trusted token signers (an external token service); unset: the index's own key. */
    token_rootcertbundle: nullableString,
    /** Index: PEM private key signing v2 JWTs (EC P-256 or RSA); unset: generated once and kept in the database. */
    token_signing_key: nullableString,
    /** Index: lifetime of v2 Bearer tokens, seconds (clients raise anything under 60 to 60). */
    v2_token_ttl: z.number().int().min(60).max(86400).default(300),
    /** Extra headers on every response (distribution's http.headers): name → values. */
    http_headers: z.record(z.string(), z.array(z.string())).nullable().default(null),
    /** Largest `n` of /v2/_catalog (distribution's catalog.maxentries). */
    catalog_max_entries: z.number().int().positive().default(1000),
    /** Allow DELETE of v2 blobs (distribution's storage.delete.enabled). */
    storage_delete: z.boolean().default(false),
    /** Index: POST /v1/users creates accounts (false: 401, clients go on to log in). */
    signup: z.boolean().default(true),
    /** Index: accounts created by signup are active at once (false: an admin activates them). */
    signup_active: z.boolean().default(true),
    /** Index: lifetime of X-Docker-Token values, seconds. */
    token_ttl: z
      .number()
      .int()
      .positive()
      .max(86400 * 7)
      .default(3600),
    /** Index: secret signing the tokens; unset: generated once and kept in the database. */
    token_secret: z.string().min(16).nullable().default(null),
    /** Index: bcrypt cost of stored passwords. */
    bcrypt_cost: z.number().int().min(4).max(15).default(10),
    /**
     * Seconds small metadata (tag links, manifest revisions, tag listings) is served from memory.
     * Only found objects are kept and this node's writes drop them at once; a change made through
     * another registry node on the same storage is seen within this time. 0 turns the cache off.
     */
    metadata_cache_ttl: z.number().nonnegative().max(60).default(1),
    /** Seconds between garbage collections inside the server (0: none; run `legacy-registry gc` instead). */
    gc_interval: z.number().int().nonnegative().default(0),
    /** Seconds: garbage collection never deletes what was written less than this long ago. */
    gc_grace: z.number().int().nonnegative().default(3600),
    /** Periodic garbage collection also deletes untagged manifests and v1 images (gc --delete-untagged). */
    gc_delete_untagged: z.boolean().default(false),
    /** Seconds a positive token validation answer from the index is cached (spec Q14: ≤ 60). */
    token_cache_ttl: z.number().int().nonnegative().max(60).default(30),
    /** CORS headers (Flask-CORS semantics, as the Python registry had them); null or no origins: off. */
    cors: corsSchema.nullable().default(null),

    // --- web UI (issue 14, src/web/) ---
    /** Index: serve the web UI (explore, search, repository pages, accounts) beside the API. */
    web_ui: z.boolean().default(true),
    /** Index: seconds a web UI session lives without use (sliding; default 14 days). */
    web_session_ttl: z
      .number()
      .int()
      .positive()
      .max(86400 * 366)
      .default(1209600),
    /**
     * Index: seconds a web UI session lives at most from its sign-in, however often it is used
     * (default 30 days): a stolen session cookie kept alive by use ends then too.
     */
    web_session_max_age: z
      .number()
      .int()
      .positive()
      .max(86400 * 3660)
      .default(2592000),

    // --- webhooks and notifications (issue 15, src/webhooks/, src/notifications/) ---
    /** Index: send repository webhooks (Docker Hub's push payload) after each tag push. */
    webhooks: z.boolean().default(true),
    /** Index: seconds one webhook delivery attempt may take. */
    webhook_timeout: z.number().positive().max(300).default(10),
    /** Index: attempts before a delivery is marked failed. */
    webhook_max_attempts: z.number().int().min(1).max(100).default(10),
    /** Index: seconds before the second attempt, doubled after each failure up to webhook_retry_max. */
    webhook_retry_base: z.number().positive().max(86400).default(10),
    webhook_retry_max: z.number().positive().max(86400).default(3600),
    /** Index: seconds between looks at the outbox (new pushes on this node are sent at once). */
    webhook_poll_interval: z.number().positive().max(60).default(2),
    /** Index: deliveries this node sends at once. */
    webhook_concurrency: z.number().int().min(1).max(64).default(4),
    /** Index: absolute URL receivers reach the index at (callback_url, repo_url); unset: the pushing request's origin. */
    webhook_base_url: z.url().nullable().default(null),
    /**
     * Index: networks webhooks may reach although not public (loopback, private, link-local, …), as
     * addresses or CIDRs. Hook URLs are the repository owners' choice: by default no delivery goes
     * to this machine or its network (src/webhooks/outgoing.ts).
     */
    webhook_allowed_networks: z
      .union([z.string(), z.array(z.string().refine(isProxySpec, 'an IP address or CIDR network (10.0.0.0/8, ::1/128)')).max(100)])
      .refine((v) => typeof v !== 'string' || v.split(',').every((n) => n.trim() === '' || isProxySpec(n)), 'IP addresses or CIDR networks, comma separated')
      .default([]),
    /** Registry: distribution's notifications (endpoints, events.includereferences). */
    notifications: notificationsSchema.nullable().default(null),
  })
  .strict();

export type ConfigInput = z.input<typeof configSchema>;
type Parsed = z.output<typeof configSchema>;
export type Config = Readonly<
  Omit<
    Parsed,
    'max_layer_size' | 'max_json_size' | 'registry_endpoints' | 'token_audiences' | 's3_part_size' | 'swift_segment_size' | 'webhook_allowed_networks'
  >
> & {
  readonly webhook_allowed_networks: readonly string[];
  readonly s3_part_size: number;
  readonly swift_segment_size: number;
  readonly token_audiences: readonly string[];
  readonly max_layer_size: number;
  readonly max_json_size: number;
  readonly registry_endpoints: readonly string[] | null;
  /** The flavor the values were read from. */
  readonly flavor: string;
  /** The file the values were read from, or null for built-in defaults. */
  readonly file: string | null;
  /** What the file holds that has no effect here (distribution keys we accept and ignore). */
  readonly warnings: readonly string[];
};
