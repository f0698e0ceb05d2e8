/**
 * Issue 11 item 7: the Python registry's own config_sample.yml (spec v1-protocol §8) loads unchanged.
 * Its keys this server does not implement are named in one warning and ignored; `cors` is
 * implemented; flavors whose storage is not the local filesystem fail at start with a clear message.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { ConfigError, loadConfig } from '../../../src/config/load.js';
import { FIXTURES } from '../../helpers/paths.js';

const PY = join(FIXTURES, 'config', 'python-registry-config_sample.yml');
const load = (flavor: string, env: NodeJS.ProcessEnv = {}) => loadConfig({ env: { DOCKER_REGISTRY_CONFIG: PY, ...env }, flavor });
/** A cors resource's options when it sets none (null: the section's value). */
const NO_OPTIONS = {
  origins: null,
  methods: null,
  headers: null,
  allow_headers: null,
  expose_headers: null,
  supports_credentials: null,
  max_age: null,
  send_wildcard: null,
  always_send: null,
  automatic_options: null,
  vary_header: null,
};
const WARNING = ': settings of the Python registry that this server does not implement, ignored';
/** The warning of the flavors that leave SEARCH_BACKEND unset (common, local) and of dev/test, which set sqlalchemy. */
const IGNORED = `cache, cache_lru, email_exceptions, bugsnag${WARNING}`;
const IGNORED_DEV = `search_backend, cache, cache_lru, email_exceptions, bugsnag${WARNING}`;

/** The fixture's line where `key:` is written inside the flavor section `section:`. */
function lineOf(section: string, key: string, file = PY): number {
  const lines = readFileSync(file, 'utf8').split('\n');
  const start = lines.findIndex((l) => l.startsWith(`${section}:`));
  const i = lines.findIndex((l, n) => n > start && l.trim().startsWith(`${key}:`));
  return i + 1;
}

describe("the Python registry's config_sample.yml", () => {
  it('the default flavor (dev) loads, with its values', () => {
    const c = loadConfig({ env: { DOCKER_REGISTRY_CONFIG: PY } });
    assert.equal(c.flavor, 'dev');
    assert.equal(c.file, PY);
    assert.equal(c.storage, 'local');
    assert.equal(c.storage_path, '/tmp/registry');
    assert.equal(c.loglevel, 'debug');
    assert.equal(c.debug, true);
    assert.equal(c.standalone, true);
    assert.equal(c.index_endpoint, 'https://index.docker.io');
    assert.equal(c.search_backend, 'sqlalchemy');
    assert.equal(c.sqlalchemy_index_database, 'sqlite:////tmp/docker-registry.db');
    assert.deepEqual(c.mirroring, { source: null, source_index: null, tags_cache_ttl: 172800 });
    assert.equal(c.issue, '"docker-registry server"');
    assert.equal(c.cors, null, 'CORS stays off while origins is unset');
  });

  it('every local flavor loads; the unimplemented keys are named in one warning', () => {
    for (const flavor of ['common', 'local', 'dev', 'test']) {
      const c = load(flavor);
      assert.equal(c.flavor, flavor);
      assert.deepEqual(c.warnings, [flavor === 'dev' || flavor === 'test' ? IGNORED_DEV : IGNORED], flavor);
    }
    // keys of ours without effect are named only when given a value
    assert.deepEqual(load('local', { SEARCH_BACKEND: 'sqlalchemy', STORAGE_REDIRECT: 'true', PRIVILEGED_KEY: '/etc/key.pem' }).warnings, [
      `storage_redirect, privileged_key, search_backend, cache, cache_lru, email_exceptions, bugsnag${WARNING}`,
    ]);
    assert.deepEqual(load('local', { STORAGE_REDIRECT: 'false' }).warnings, [IGNORED]);
    const test = load('test');
    assert.equal(test.index_endpoint, 'https://registry-stage.hub.docker.com');
    assert.equal(test.storage_path, resolve('./tmp/test'));
    assert.equal(load('common').storage, 'file', 'common names no storage: the default');
  });

  const objectStorage: [string, string][] = [
    ['azureblob', 'azureblob'],
    ['gcs', 'gcs'],
    ['glance', 'glance'],
    ['openstack', 'glance'],
    ['glance-swift', 'glance'],
    ['openstack-swift', 'glance'],
    ['elliptics', 'elliptics'],
    ['oss', 'alioss'],
  ];
  for (const [flavor, storage] of objectStorage) {
    it(`${flavor}: fails at start, "storage ${storage} is not supported", with the line`, () => {
      try {
        load(flavor);
        assert.fail('should throw');
      } catch (e) {
        assert.ok(e instanceof ConfigError);
        // the line of the storage key itself, in the section a merge key brought it from
        const from: Record<string, string> = { openstack: 'glance', prod: 's3', 'openstack-swift': 'glance-swift' };
        const section = from[flavor] ?? flavor;
        assert.equal(
          e.message,
          `invalid configuration:\n  ${flavor}.storage (${PY}:${lineOf(section, 'storage')}): storage ${storage} is not supported (this build stores on the local filesystem, S3 or Swift: storage local, file, s3 or swift)`,
        );
      }
    });
  }

  it('s3, ceph-s3, prod and swift load with the AWS_* / OS_* variables their flavors read (issue 12)', () => {
    const aws = {
      AWS_BUCKET: 'images',
      AWS_KEY: 'AK',
      AWS_SECRET: 'SK',
      AWS_HOST: 'rgw.example',
      AWS_PORT: '7480',
      AWS_CALLING_FORMAT: 'boto.s3.connection.OrdinaryCallingFormat',
    };
    const s3 = load('s3', aws);
    assert.equal(s3.storage, 's3');
    assert.equal(s3.s3_bucket, 'images');
    assert.equal(s3.boto_bucket, 'images');
    assert.equal(s3.storage_path, '/registry', 'storage_path is the key prefix, not resolved as a directory');
    assert.equal(s3.s3_encrypt, true);
    assert.equal(s3.s3_secure, true);
    assert.equal(s3.boto_port, 7480);
    assert.equal(s3.s3_access_key, 'AK');
    const ceph = load('ceph-s3', aws);
    assert.equal(ceph.s3_encrypt, false, 'ceph-s3: no encryption by default');
    assert.equal(ceph.s3_secure, false);
    assert.equal(ceph.boto_host, 'rgw.example');
    assert.deepEqual(ceph.warnings, [`cache, cache_lru, email_exceptions, bugsnag, boto_debug${WARNING}`]);
    assert.equal(load('prod', aws).storage_path, '/prod');
    const swift = load('swift', { OS_AUTH_URL: 'http://127.0.0.1:1/auth/1.0', OS_CONTAINER: 'c', OS_USERNAME: 'u:swift', OS_PASSWORD: 'p' });
    assert.equal(swift.storage, 'swift');
    assert.equal(swift.swift_user, 'u:swift');
    assert.equal(swift.swift_container, 'c');
    // Keystone v2 as the Python driver's swiftclient did it (its swift_auth_version defaults to 2)
    const ks = load('swift', {
      OS_AUTH_URL: 'https://identity.api.rackspacecloud.com/v2.0/',
      OS_CONTAINER: 'c',
      OS_USERNAME: 'u',
      OS_PASSWORD: 'p',
      OS_TENANT_NAME: 'MossoCloudFS_1',
      OS_REGION_NAME: 'DFW',
    });
    assert.equal(ks.swift_authurl, 'https://identity.api.rackspacecloud.com/v2.0/');
    assert.equal(ks.swift_tenant_name, 'MossoCloudFS_1');
    assert.equal(ks.swift_region_name, 'DFW');
    assert.equal(ks.swift_auth_version, null);
  });

  it('s3 and swift flavors without their bucket or credentials fail at start naming the keys', () => {
    assert.throws(
      () => load('s3'),
      (e: Error) =>
        e instanceof ConfigError &&
        new RegExp(`s3\\.s3_bucket \\(${PY.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:${lineOf('s3', 's3_bucket')}\\): required with storage s3`).test(e.message),
    );
    assert.throws(() => load('prod'), /s3_bucket.*required with storage s3/);
    assert.throws(
      () => load('swift'),
      /swift\.swift_authurl.*required[\s\S]*swift_container.*required[\s\S]*swift_user.*required[\s\S]*swift_password.*required/,
    );
  });

  it('flavors of the last upstream version (spec §8.2): cloudfronts3, s3_use_sigv4, storage oss', () => {
    const dir = mkdtempSync(join(tmpdir(), 'lr-pycfg-'));
    try {
      const file = join(dir, 'config.yml');
      writeFileSync(
        file,
        `${readFileSync(PY, 'utf8')}
s3v4: &s3v4
    <<: *s3
    s3_use_sigv4: _env:AWS_USE_SIGV4

cloudfronts3:
    <<: *s3v4
    cloudfront:
        base: _env:CF_BASE_URL
        keyid: _env:CF_KEYID
        keysecret: _env:CF_KEYSECRET

oss2:
    <<: *oss
    storage: oss
    oss_host: _env:OSS_HOST

local-leftovers:
    <<: *local
    s3_bucket: leftover
    boto_host: _env:AWS_HOST
    secret_key: from-0.6
`,
      );
      const env = { DOCKER_REGISTRY_CONFIG: file };
      // cloudfronts3 is s3 (its cloudfront keys are named and ignored): it needs its bucket
      assert.throws(() => loadConfig({ env, flavor: 'cloudfronts3' }), /cloudfronts3\.s3_bucket \(.*\): required with storage s3/);
      const cf = loadConfig({ env: { ...env, AWS_BUCKET: 'b' }, flavor: 'cloudfronts3' });
      assert.equal(cf.storage, 's3');
      assert.match(cf.warnings[0] ?? '', /cloudfront/);
      assert.throws(() => loadConfig({ env, flavor: 'oss2' }), /oss2\.storage \(.*\): storage oss is not supported/);
      // storage-driver keys beside a local storage have no effect: named, ignored
      const c = loadConfig({ env, flavor: 'local-leftovers' });
      assert.deepEqual(c.warnings, [
        'cache, cache_lru, email_exceptions, bugsnag, s3_bucket, boto_host, secret_key: settings of the Python registry that this server does not implement, ignored',
      ]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("a key that is neither ours nor the Python registry's still fails (typos are caught)", () => {
    const dir = mkdtempSync(join(tmpdir(), 'lr-pycfg-'));
    try {
      const file = join(dir, 'config.yml');
      writeFileSync(file, `${readFileSync(PY, 'utf8')}\ntypo:\n    <<: *local\n    storage_pth: /x\n`);
      assert.throws(() => loadConfig({ env: { DOCKER_REGISTRY_CONFIG: file }, flavor: 'typo' }), /typo \(.*\): unknown key\(s\) storage_pth/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('cors: enabled by CORS_ORIGINS, every option from its CORS_* variable (YAML-parsed)', () => {
    const star = load('dev', { CORS_ORIGINS: '*' });
    assert.deepEqual(star.cors, {
      origins: '*',
      methods: null,
      headers: ['Content-Type'],
      allow_headers: null,
      expose_headers: null,
      supports_credentials: null,
      max_age: null,
      send_wildcard: null,
      always_send: null,
      automatic_options: null,
      vary_header: null,
      resources: null,
    });
    assert.deepEqual(star.warnings, [IGNORED_DEV], 'cors is not in the ignored list');
    const full = load('local', {
      CORS_ORIGINS: "[https://ui.example, 'https://[a-z]+\\.corp\\.example']",
      CORS_METHODS: '[GET, HEAD, PUT]',
      CORS_HEADERS: '[Content-Type, Authorization]',
      CORS_EXPOSE_HEADERS: 'Docker-Content-Digest',
      CORS_SUPPORTS_CREDENTIALS: 'true',
      CORS_MAX_AGE: '600',
      CORS_SEND_WILDCARD: 'false',
      CORS_ALWAYS_SEND: 'false',
      CORS_AUTOMATIC_OPTIONS: 'true',
      CORS_VARY_HEADER: 'false',
      CORS_RESOURCES: '{"/v1/.*": {max_age: 60}, "/v2/.*": {}}',
    });
    assert.deepEqual(full.cors, {
      origins: ['https://ui.example', 'https://[a-z]+\\.corp\\.example'],
      methods: ['GET', 'HEAD', 'PUT'],
      headers: ['Content-Type', 'Authorization'],
      allow_headers: null,
      expose_headers: 'Docker-Content-Digest',
      supports_credentials: true,
      max_age: 600,
      send_wildcard: false,
      always_send: false,
      automatic_options: true,
      vary_header: false,
      resources: { '/v1/.*': { ...NO_OPTIONS, max_age: 60 }, '/v2/.*': NO_OPTIONS },
    });
  });

  it('cors: bad values fail with the key path', () => {
    assert.throws(
      () => load('dev', { CORS_ORIGINS: '*', CORS_SEND_WILDCARD: 'maybe' }),
      /dev\.cors\.send_wildcard \(.*python-registry-config_sample\.yml:\d+\)/,
    );
    assert.throws(() => load('dev', { CORS_ORIGINS: '*', CORS_MAX_AGE: '-5' }), /dev\.cors\.max_age/);
    assert.throws(() => load('dev', { CORS_ORIGINS: '*', CORS_RESOURCES: '{"/v1/.*": {colour: blue}}' }), /unknown key\(s\) colour/);
  });

  it('cors: credentials with a wildcard origin sent as * get a warning (browsers refuse that answer)', () => {
    const c = load('dev', { CORS_ORIGINS: '*', CORS_SUPPORTS_CREDENTIALS: 'true' });
    assert.equal(c.warnings.length, 2);
    assert.match(c.warnings[1]!, /^cors: supports_credentials with origins \*/);
    assert.equal(load('dev', { CORS_ORIGINS: '*', CORS_SUPPORTS_CREDENTIALS: 'true', CORS_SEND_WILDCARD: 'false' }).warnings.length, 1);
  });
});

describe("this server's config_sample.yml: the cors section", () => {
  it('is off by default, on with CORS_ORIGINS', () => {
    assert.equal(loadConfig({ env: {} }).cors, null);
    assert.deepEqual(loadConfig({ env: {} }).warnings, []);
    const c = loadConfig({ env: { CORS_ORIGINS: 'https://ui.example' } });
    assert.equal(c.cors?.origins, 'https://ui.example');
    assert.deepEqual(c.cors?.headers, ['Content-Type']);
  });

  it('storage other than file/local/s3/swift fails with the same message; s3 needs its bucket', () => {
    assert.throws(
      () => loadConfig({ env: { STORAGE: 'gcs' }, flavor: 'common' }),
      /common\.storage \(.*config_sample\.yml:\d+\): storage gcs is not supported/,
    );
    assert.throws(() => loadConfig({ env: { STORAGE: 's3' }, flavor: 'common' }), /s3_bucket.*required with storage s3/);
  });
});
