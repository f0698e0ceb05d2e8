import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, loadConfig } from '../../../src/config/load.js';
import { applyRegistryEnv } from '../../../src/config/distribution.js';
import { parseGoDuration } from '../../../src/config/go-duration.js';
import { FIXTURES } from '../../helpers/paths.js';

const fixture = (name: string): string => join(FIXTURES, 'config', name);

describe('Go durations', () => {
  it('parses what time.ParseDuration parses, in seconds', () => {
    const cases: [unknown, number][] = [
      ['10s', 10],
      ['1h30m', 5400],
      ['168h', 604800],
      ['1.5h', 5400],
      ['300ms', 0.3],
      ['2m3.5s', 123.5],
      ['1us', 1e-6],
      ['1µs', 1e-6],
      ['500ns', 5e-7],
      ['0', 0],
      ['-2m', -120],
      ['.5s', 0.5],
      [10_000_000_000, 10], // a bare number is nanoseconds
    ];
    for (const [input, seconds] of cases) assert.ok(Math.abs(parseGoDuration(input) - seconds) < 1e-12, `${String(input)} → ${parseGoDuration(input)}`);
  });

  it('rejects what Go rejects', () => {
    for (const bad of ['10', '10 s', 's', '1d', '', 'h1', '1h-30m', true, null, {}]) {
      assert.throws(() => parseGoDuration(bad), /expected a duration/, JSON.stringify(bad));
    }
  });
});

describe('REGISTRY_* overrides (spec v2-bridge §5.2)', () => {
  it('descends struct fields by Go field name and map keys lower-cased', () => {
    const tree: Record<string, unknown> = { version: 0.1, storage: { filesystem: { rootdirectory: '/a' } }, http: { addr: ':5000' } };
    const { ignored } = applyRegistryEnv(tree, {
      REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY: '/b',
      REGISTRY_STORAGE_DELETE_ENABLED: 'true',
      REGISTRY_HTTP_ADDR: '127.0.0.1:6000',
      REGISTRY_HTTP_TLS_CERTIFICATE: '/c.pem',
      'REGISTRY_HTTP_HEADERS_X-FRAME-OPTIONS': '[DENY]',
      REGISTRY_LOG_FIELDS_SERVICE: 'reg',
      REGISTRY_HEALTH_STORAGEDRIVER_INTERVAL: '5s',
      // Go field TrustKey carries the YAML key signingkeyfile
      REGISTRY_COMPATIBILITY_SCHEMA1_TRUSTKEY: '/k.json',
      // health.file is field FileCheckers: …_FILE addresses nothing
      REGISTRY_HEALTH_FILECHECKERS: '[{file: /tmp/down}]',
      REGISTRY_HEALTH_FILE: '[{file: /tmp/other}]',
      REGISTRY_NO_SUCH_THING: 'x',
      REGISTRY_VERSION: '0.2',
      PATH: '/bin',
    });
    assert.deepEqual(tree, {
      version: 0.1,
      storage: { filesystem: { rootdirectory: '/b' }, delete: { enabled: true } },
      http: { addr: '127.0.0.1:6000', tls: { certificate: '/c.pem' }, headers: { 'x-frame-options': ['DENY'] } },
      log: { fields: { service: 'reg' } },
      health: { storagedriver: { interval: '5s' }, file: [{ file: '/tmp/down' }] },
      compatibility: { schema1: { signingkeyfile: '/k.json' } },
    });
    assert.deepEqual(ignored.sort(), ['REGISTRY_HEALTH_FILE', 'REGISTRY_NO_SUCH_THING', 'REGISTRY_VERSION']);
  });

  it('applies variables in lexical order: a whole section first, then its keys', () => {
    const tree: Record<string, unknown> = { version: '0.1', auth: { token: { realm: 'x' } } };
    applyRegistryEnv(tree, {
      REGISTRY_AUTH_HTPASSWD_PATH: '/auth/htpasswd',
      REGISTRY_AUTH_HTPASSWD_REALM: 'Registry Realm',
      REGISTRY_AUTH: 'htpasswd',
    });
    assert.deepEqual(tree.auth, { htpasswd: { realm: 'Registry Realm', path: '/auth/htpasswd' } });
  });

  it('reuses an existing map key matching case-insensitively, and parses values as YAML', () => {
    const tree: Record<string, unknown> = { version: '0.1', storage: { FileSystem: { RootDirectory: '/a' } }, http: { headers: { 'X-Thing': ['a'] } } };
    applyRegistryEnv(tree, {
      REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY: '/b',
      'REGISTRY_HTTP_HEADERS_X-THING': '[b, c]',
      REGISTRY_CATALOG_MAXENTRIES: '50',
      REGISTRY_HTTP_DEBUG: '{addr: "127.0.0.1:5999"}',
    });
    assert.deepEqual(tree.storage, { FileSystem: { RootDirectory: '/b' } });
    assert.deepEqual((tree.http as Record<string, unknown>).headers, { 'X-Thing': ['b', 'c'] });
    assert.deepEqual((tree.http as Record<string, unknown>).debug, { addr: '127.0.0.1:5999' });
    assert.deepEqual(tree.catalog, { maxentries: 50 });
  });

  it('a scalar replaces a section given as a map, and a bare-string section gains keys', () => {
    const tree: Record<string, unknown> = { version: '0.1', auth: 'htpasswd' };
    applyRegistryEnv(tree, { REGISTRY_AUTH_HTPASSWD_PATH: '/p' });
    assert.deepEqual(tree.auth, { htpasswd: { path: '/p' } });
  });
});

describe('distribution config.yml (spec v2-bridge §5.1)', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'lr-distcfg-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));
  const write = async (name: string, text: string): Promise<string> => {
    const f = join(dir, name);
    await writeFile(f, text);
    return f;
  };

  it("maps Debian's shipped /etc/docker/registry/config.yml", () => {
    const c = loadConfig({ env: {}, file: fixture('debian-distribution.yml') });
    assert.equal(c.flavor, 'distribution');
    assert.equal(c.v2, true);
    assert.equal(c.standalone, true, 'a distribution file describes a registry without an index');
    assert.deepEqual(c.log_fields, { service: 'registry' });
    assert.equal(c.storage, 'file');
    assert.equal(c.storage_path, '/var/lib/docker-registry');
    assert.equal(c.storage_delete, true);
    assert.equal(c.http_addr, ':5000');
    assert.deepEqual(c.http_headers, { 'X-Content-Type-Options': ['nosniff'] });
    assert.equal(c.v2_auth, 'htpasswd');
    assert.equal(c.htpasswd_realm, 'basic-realm');
    assert.equal(c.htpasswd_path, '/etc/docker/registry');
    assert.deepEqual(c.health?.storagedriver, { enabled: true, interval: 10, threshold: 3 });
    assert.deepEqual(c.warnings, ['storage.cache: ignored (metadata is cached by metadata_cache_ttl)']);
  });

  it('maps every implemented section', () => {
    const c = loadConfig({ env: {}, file: fixture('distribution-full.yml') });
    assert.equal(c.loglevel, 'debug');
    assert.equal(c.log_format, 'json');
    assert.deepEqual(c.log_fields, { service: 'registry', environment: 'test' });
    assert.equal(c.access_log, false);
    assert.equal(c.storage_path, '/srv/registry');
    assert.equal(c.storage_delete, true);
    assert.equal(c.upload_purging, true);
    assert.equal(c.upload_purge_age, 168 * 3600);
    assert.equal(c.upload_purge_interval, 24 * 3600);
    assert.equal(c.read_only, false);
    assert.equal(c.http_addr, '127.0.0.1:5001');
    assert.equal(c.shutdown_timeout, 90);
    assert.deepEqual(c.http_headers, { 'X-Content-Type-Options': ['nosniff'], 'Cache-Control': ['no-cache', 'no-store'] });
    assert.equal(c.debug_addr, '127.0.0.1:5002');
    assert.equal(c.v2_auth, 'token');
    assert.equal(c.token_realm, 'https://auth.example.com/token');
    assert.equal(c.token_service, 'registry.example.com');
    assert.equal(c.token_issuer, 'auth.example.com');
    assert.equal(c.token_rootcertbundle, '/certs/bundle.pem');
    assert.deepEqual(c.health, {
      storagedriver: { enabled: true, interval: 30, threshold: 2 },
      file: [{ file: '/tmp/maintenance', interval: 5, threshold: 0 }],
      http: [{ uri: 'http://127.0.0.1:8080/health', headers: null, statuscode: 204, timeout: 3, interval: 15, threshold: 3 }],
      tcp: [{ addr: '127.0.0.1:6379', timeout: 0.5, interval: 10, threshold: 0 }],
    });
    assert.equal(c.catalog_max_entries, 250);
    assert.deepEqual(c.warnings, [
      'storage.filesystem.maxthreads: ignored (I/O runs on the libuv thread pool)',
      'storage.cache: ignored (metadata is cached by metadata_cache_ttl)',
      'http.secret: ignored (upload state lives in storage, so every node can continue an upload)',
      'compatibility.schema1.enabled: ignored (signed schema1 is always accepted on push and served to clients that ask for it)',
      'redis: ignored (not implemented)',
    ]);
  });

  it('applies REGISTRY_* variables over the file and names them in errors', () => {
    const c = loadConfig({
      env: {
        REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY: '/data/reg',
        REGISTRY_AUTH: 'htpasswd',
        REGISTRY_AUTH_HTPASSWD_REALM: 'Registry Realm',
        REGISTRY_AUTH_HTPASSWD_PATH: '/auth/htpasswd',
        REGISTRY_STORAGE_MAINTENANCE_READONLY: '{enabled: true}',
        REGISTRY_LOG_LEVEL: 'warn',
        REGISTRY_PORT: 'tcp://10.0.0.1:5000', // as Kubernetes sets for a service named registry
      },
      file: fixture('distribution-full.yml'),
    });
    assert.equal(c.storage_path, '/data/reg');
    assert.equal(c.v2_auth, 'htpasswd');
    assert.equal(c.htpasswd_realm, 'Registry Realm');
    assert.equal(c.htpasswd_path, '/auth/htpasswd');
    assert.equal(c.token_realm, null, 'REGISTRY_AUTH replaced the whole auth section');
    assert.equal(c.read_only, true);
    assert.equal(c.loglevel, 'warn');
    assert.ok(c.warnings.includes('REGISTRY_PORT: environment variable addresses no configuration key, ignored'));

    assert.throws(
      () => loadConfig({ env: { REGISTRY_HTTP_DRAINTIMEOUT: 'soon' }, file: fixture('distribution-full.yml') }),
      (e: unknown) => e instanceof ConfigError && /http\.draintimeout \(from REGISTRY_HTTP_DRAINTIMEOUT\): expected a duration/.test(e.message),
    );
    assert.throws(
      () => loadConfig({ env: { REGISTRY_CATALOG_MAXENTRIES: '-5' }, file: fixture('distribution-full.yml') }),
      (e: unknown) => e instanceof ConfigError && /catalog\.maxentries \(from REGISTRY_CATALOG_MAXENTRIES\): /.test(e.message),
    );
  });

  it('is found through REGISTRY_CONFIGURATION_PATH', () => {
    const c = loadConfig({ env: { REGISTRY_CONFIGURATION_PATH: fixture('debian-distribution.yml') } });
    assert.equal(c.flavor, 'distribution');
    assert.equal(c.file, fixture('debian-distribution.yml'));
  });

  it('takes our own keys under legacy:, applied last', async () => {
    const f = await write(
      'legacy.yml',
      'version: 0.1\nstorage:\n  inmemory: {}\nlegacy:\n  standalone: false\n  signup: false\n  token_ttl: 600\n  catalog_max_entries: 10\ncatalog:\n  maxentries: 99\n',
    );
    const c = loadConfig({ env: {}, file: f });
    assert.equal(c.storage, 'memory');
    assert.equal(c.standalone, false);
    assert.equal(c.signup, false);
    assert.equal(c.token_ttl, 600);
    assert.equal(c.catalog_max_entries, 10);
    await writeFile(f, 'version: 0.1\nstorage:\n  inmemory:\nlegacy:\n  nonsense_key: 1\n');
    assert.throws(() => loadConfig({ env: {}, file: f }), /legacy\.nonsense_key|unknown key\(s\) nonsense_key/);
  });

  it('proxy: becomes the pull-through mirror (one upstream for every name), REGISTRY_PROXY_* override it', async () => {
    const f = await write(
      'proxy.yml',
      'version: 0.1\nstorage:\n  inmemory:\nproxy:\n  remoteurl: https://registry-1.docker.io\n  username: u\n  password: p\n  ttl: 1h\n',
    );
    const c = loadConfig({ env: {}, file: f });
    assert.deepEqual(c.mirror?.upstreams, [{ prefix: '', url: 'https://registry-1.docker.io', username: 'u', password: 'p', ns: null }]);
    assert.equal(c.mirror?.ttl, 3600);
    const e = loadConfig({ env: { REGISTRY_PROXY_REMOTEURL: 'http://127.0.0.1:5001', REGISTRY_PROXY_TTL: '0' }, file: f });
    assert.equal(e.mirror?.upstreams[0]?.url, 'http://127.0.0.1:5001');
    assert.equal(e.mirror?.ttl, 0);
    const d = loadConfig({ env: {}, file: await write('proxy2.yml', 'version: 0.1\nstorage:\n  inmemory:\nproxy:\n  remoteurl: https://r.example\n') });
    assert.equal(d.mirror?.ttl, 604800, "distribution's default 168h");
  });

  it('storage.swift: the Keystone keys of distribution (ncw/swift) map onto swift_*, REGISTRY_STORAGE_SWIFT_* override them; bad values are refused', async () => {
    const f = await write(
      'swift-ks.yml',
      [
        'version: 0.1',
        'storage:',
        '  swift:',
        '    authurl: https://keystone.example:5000/v3',
        '    username: svc',
        '    password: secret',
        '    container: reg',
        '    region: RegionTwo',
        '    tenant: 12345',
        '    domain: Services',
        '    tenantdomain: Tenants',
        '    trustid: t-1',
        '    endpointtype: internal',
        '    tempurlmethods: [GET]',
        '',
      ].join('\n'),
    );
    const c = loadConfig({ env: {}, file: f });
    assert.equal(c.storage, 'swift');
    assert.equal(c.swift_authurl, 'https://keystone.example:5000/v3');
    assert.equal(c.swift_tenant_name, '12345', 'a numeric tenant stays a string (as distribution sanitizes it)');
    assert.equal(c.swift_domain_name, 'Services');
    assert.equal(c.swift_tenant_domain_name, 'Tenants');
    assert.equal(c.swift_trust_id, 't-1');
    assert.equal(c.swift_endpoint_type, 'internal');
    assert.equal(c.swift_region_name, 'RegionTwo');
    assert.equal(c.swift_auth_version, null, 'from the URL');
    assert.ok(c.warnings.some((w) => /storage\.swift\.tempurlmethods: ignored/.test(w)));
    const e = loadConfig({
      env: {
        REGISTRY_STORAGE_SWIFT_AUTHVERSION: '2',
        REGISTRY_STORAGE_SWIFT_TENANTID: 'p-1',
        REGISTRY_STORAGE_SWIFT_DOMAINID: 'd-1',
        REGISTRY_STORAGE_SWIFT_TENANTDOMAINID: 'd-2',
      },
      file: f,
    });
    assert.equal(e.swift_auth_version, 2);
    assert.equal(e.swift_tenant_id, 'p-1');
    assert.equal(e.swift_domain_id, 'd-1');
    assert.equal(e.swift_tenant_domain_id, 'd-2');
    const bad: [string, RegExp][] = [
      ['    authversion: 4\n', /storage\.swift\.authversion.*expected 1, 2 or 3, got 4/],
      ['    endpointtype: private\n', /storage\.swift\.endpointtype.*expected public, internal or admin, got "private"/],
    ];
    for (const [line, re] of bad) {
      const g = await write(
        'swift-bad.yml',
        `version: 0.1\nstorage:\n  swift:\n    authurl: https://k/v3\n    username: u\n    password: p\n    container: c\n${line}`,
      );
      assert.throws(() => loadConfig({ env: {}, file: g }), re);
    }
    const h = await write(
      'swift-url.yml',
      'version: 0.1\nstorage:\n  swift:\n    authurl: keystone:5000\n    username: u\n    password: p\n    container: c\n',
    );
    assert.throws(() => loadConfig({ env: {}, file: h }), /storage\.swift\.authurl \(.*:4\): expected an http\(s\) URL/);
  });

  it('refuses what would silently change behaviour, naming the key and line', async () => {
    const cases: [string, RegExp][] = [
      [
        'version: 0.1\nstorage:\n  gcs:\n    bucket: b\n',
        /storage\.gcs \(.*:3\): storage driver "gcs" is not supported by this build \(filesystem, inmemory, s3 and swift are\)/,
      ],
      ['version: 0.1\nstorage:\n  s3:\n    region: us-east-1\n', /storage\.s3\.bucket.*required/],
      ['version: 0.1\nstorage:\n  s3:\n    bucket: b\n    chunksize: 1024\n', /storage\.s3\.chunksize.*at least 5242880/],
      ['version: 0.1\nstorage:\n  s3:\n    bucket: b\n    bukket: c\n', /storage\.s3\.bukket.*unknown key/],
      [
        'version: 0.1\nstorage:\n  filesystem: {}\n  inmemory: {}\n',
        /storage \(.*:2\): exactly one storage driver must be configured, found filesystem, inmemory/,
      ],
      ['version: 0.1\nstorage:\n  delete:\n    enabled: true\n', /storage \(.*:2\): no storage driver configured/],
      ['version: 0.1\nlog:\n  level: info\n', /storage: required/],
      ['version: 0.2\nstorage:\n  inmemory:\n', /version \(.*:1\): unsupported configuration version 0.2/],
      ['version: 0.1\nstorage:\n  inmemory:\nauth:\n  silly:\n    realm: x\n', /auth\.silly.*not supported/],
      [
        'version: 0.1\nstorage:\n  inmemory:\nauth:\n  htpasswd:\n    realm: x\n  token:\n    realm: y\n',
        /auth.*at most one auth provider, found htpasswd, token/,
      ],
      ['version: 0.1\nstorage:\n  inmemory:\nauth:\n  htpasswd:\n    realm: x\n', /auth\.htpasswd\.path.*required/],
      [
        'version: 0.1\nstorage:\n  inmemory:\nauth:\n  token:\n    realm: https://a/token\n',
        /auth\.token\.service.*required[\s\S]*auth\.token\.issuer.*required[\s\S]*auth\.token\.rootcertbundle.*required/,
      ],
      ['version: 0.1\nstorage:\n  inmemory:\nproxy:\n  remoteurl: https://registry-1.docker.io\n  ttl: forever\n', /proxy\.ttl.*expected a duration/],
      [
        'version: 0.1\nstorage:\n  inmemory:\nnotifications:\n  endpoints:\n    - name: a\n      timeout: soon\n',
        /notifications\.endpoints\.0\.url.*required[\s\S]*notifications\.endpoints\.0\.timeout.*expected a duration/,
      ],
      ['version: 0.1\nstorage:\n  inmemory:\nhttp:\n  prefix: /registry/\n', /http\.prefix.*not supported/],
      [
        'version: 0.1\nstorage:\n  inmemory:\nhttp:\n  addr: /run/registry.sock\n  net: unix\n',
        /http\.net.*"unix" listeners are not supported[\s\S]*http\.addr.*unix socket/,
      ],
      ['version: 0.1\nstorage:\n  inmemory:\nhttp:\n  tls:\n    certificate: /c.pem\n', /http\.tls\.key.*required with http\.tls\.certificate/],
      ['version: 0.1\nstorage:\n  inmemory:\nhttp:\n  tls:\n    letsencrypt:\n      email: a@b\n', /http\.tls\.letsencrypt.*not supported/],
      [
        'version: 0.1\nstorage:\n  inmemory:\nhttp:\n  tls:\n    certificate: /c\n    key: /k\n    minimumtls: tls9\n',
        /http\.tls\.minimumtls.*expected tls1\.0/,
      ],
      ['version: 0.1\nstorage:\n  inmemory:\nhealth:\n  storagedriver:\n    enabled: yes-please\n', /health\.storagedriver\.enabled.*expected true or false/],
      ['version: 0.1\nstorage:\n  inmemory:\nhealth:\n  http:\n    - timeout: 1s\n', /health\.http\.0\.uri.*required/],
      ['version: 0.1\nstorage:\n  inmemory:\nlog:\n  level: loud\n', /log\.level \(.*:5\): unknown log level "loud"/],
      ['version: 0.1\nstorage:\n  inmemory:\nhttp:\n  addr: nonsense\n', /http\.addr \(.*:5\): expected host:port/],
    ];
    for (const [text, re] of cases) {
      const f = await write('bad.yml', text);
      assert.throws(
        () => loadConfig({ env: {}, file: f }),
        (e: unknown) => {
          assert.ok(e instanceof ConfigError, String(e));
          assert.match(e.message, re, text);
          return true;
        },
      );
    }
  });

  it('accepts disabled notification endpoints and a disabled upload purge', async () => {
    const f = await write(
      'ok.yml',
      'version: "0.1"\nstorage:\n  filesystem:\n    rootdirectory: /x\n  maintenance:\n    uploadpurging:\n      enabled: false\nnotifications:\n  endpoints:\n    - name: a\n      url: http://x/\n      disabled: true\n',
    );
    const c = loadConfig({ env: {}, file: f });
    assert.equal(c.upload_purging, false);
    assert.equal(c.storage_path, '/x');
  });

  it('maps notifications.endpoints (issue 15): Go durations to seconds, headers as lists, ignore rules, distribution defaults', async () => {
    const f = await write(
      'notify.yml',
      [
        'version: 0.1',
        'storage:',
        '  inmemory:',
        'notifications:',
        '  events:',
        '    includereferences: true',
        '  endpoints:',
        '    - name: alistener',
        '      url: https://listener.example/event',
        '      headers:',
        '        Authorization: [Bearer abc]',
        '      timeout: 500ms',
        '      threshold: 5',
        '      backoff: 1m',
        '      ignoredmediatypes:',
        '        - application/octet-stream',
        '      ignore:',
        '        mediatypes: [application/vnd.oci.image.manifest.v1+json]',
        '        actions: [pull]',
        '    - name: plain',
        '      url: http://127.0.0.1:9/',
        '',
      ].join('\n'),
    );
    const c = loadConfig({ env: {}, file: f });
    const [a, b] = c.notifications!.endpoints;
    assert.deepEqual(a, {
      name: 'alistener',
      url: 'https://listener.example/event',
      headers: { Authorization: ['Bearer abc'] },
      timeout: 0.5,
      threshold: 5,
      backoff: 60,
      ignoredmediatypes: ['application/octet-stream'],
      ignore: { mediatypes: ['application/vnd.oci.image.manifest.v1+json'], actions: ['pull'] },
      disabled: false,
    });
    // distribution's defaults: 1s timeout, threshold 10, 1s backoff
    assert.deepEqual([b!.timeout, b!.threshold, b!.backoff, b!.headers], [1, 10, 1, {}]);
    assert.equal(c.notifications!.events?.includereferences, true);
  });

  it('leaves flavored files alone (no version key)', () => {
    const c = loadConfig({ env: { DOCKER_REGISTRY_CONFIG: fixture('flavors.yml'), REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY: '/ignored' } });
    assert.equal(c.flavor, 'dev');
    assert.equal(c.storage_path, '/tmp/lr-common');
    assert.deepEqual(c.warnings, []);
  });
});
