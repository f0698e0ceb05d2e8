import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { ConfigError, interpolate, listenAddress, loadConfig } from '../../../src/config/load.js';
import { FIXTURES } from '../../helpers/paths.js';

const file = (name: string): string => join(FIXTURES, 'config', name);

describe('config loading', () => {
  it('runs on the shipped config_sample.yml with zero setup: ./data, port 5000', () => {
    const c = loadConfig({ env: {} });
    assert.equal(c.flavor, 'dev');
    assert.equal(c.file, null);
    assert.equal(c.port, 5000);
    assert.equal(c.host, '0.0.0.0');
    assert.equal(c.storage, 'file');
    assert.match(c.storage_path, /\/data$/);
    assert.equal(c.standalone, null, 'unset: decided by the role (serve: index + token checks)');
    assert.equal(c.index_endpoint, null);
    assert.equal(c.signup, true);
    assert.equal(c.token_ttl, 3600);
    assert.equal(c.issue, '"docker-registry server"');
    assert.equal(c.max_json_size, 4 * 1024 * 1024);
    assert.ok(Object.isFrozen(c));
  });

  it('reads every flavor of the sample', () => {
    for (const flavor of ['common', 'local', 'dev', 'test', 'prod']) assert.equal(loadConfig({ env: {}, flavor }).flavor, flavor);
  });

  it('applies _env:NAME:default values, YAML-parsed, and the spec environment variables', () => {
    const c = loadConfig({ env: { STORAGE_PATH: '/srv/reg', REGISTRY_PORT: '5555', STANDALONE: 'false', LOGLEVEL: 'debug', MAX_LAYER_SIZE: '2GiB' } });
    assert.equal(c.storage_path, '/srv/reg');
    assert.equal(c.port, 5555);
    assert.equal(c.standalone, false);
    assert.equal(c.loglevel, 'debug');
    assert.equal(c.max_layer_size, 2 * 1024 ** 3);
  });

  it('interpolates defaults that contain colons and empties to null', () => {
    assert.equal(interpolate('_env:NOPE:http://x:1/y', {}), 'http://x:1/y');
    assert.equal(interpolate('_env:NOPE', {}), null);
    assert.deepEqual(interpolate('_env:L:[a, b]', {}), ['a', 'b']);
    assert.equal(interpolate('_env:N:5000', {}), 5000);
    assert.equal(interpolate('plain', { plain: 'x' }), 'plain');
  });

  it('picks the file from DOCKER_REGISTRY_CONFIG and the flavor from SETTINGS_FLAVOR, with merge keys', () => {
    const dev = loadConfig({ env: { DOCKER_REGISTRY_CONFIG: file('flavors.yml') } });
    assert.equal(dev.debug, true);
    assert.equal(dev.loglevel, 'warn');
    assert.deepEqual(dev.registry_endpoints, ['reg1.example:5000', 'reg2.example']);
    assert.equal(dev.max_layer_size, 512 * 1024 * 1024);
    const prod = loadConfig({ env: { DOCKER_REGISTRY_CONFIG: file('flavors.yml'), SETTINGS_FLAVOR: 'prod' } });
    assert.equal(prod.standalone, false);
    assert.equal(prod.index_endpoint, 'https://index.example.com', 'trailing / stripped (spec §8.1)');
    assert.equal(prod.port, 6000);
    assert.equal(prod.debug, false);
  });

  it('honours REGISTRY_HTTP_ADDR over host and port', () => {
    const c = loadConfig({ env: { REGISTRY_HTTP_ADDR: '127.0.0.1:7000', REGISTRY_PORT: '1' } });
    assert.deepEqual(listenAddress(c), { host: '127.0.0.1', port: 7000 });
    const v6 = loadConfig({ env: { REGISTRY_HTTP_ADDR: '[::1]:7001' } });
    assert.deepEqual(listenAddress(v6), { host: '::1', port: 7001 });
    assert.throws(() => loadConfig({ env: { REGISTRY_HTTP_ADDR: 'nonsense' } }), /dev\.http_addr \(.*config_sample\.yml:\d+\): expected host:port/);
  });

  it('fails with the key path and line on bad values and unknown keys', () => {
    try {
      loadConfig({ env: { DOCKER_REGISTRY_CONFIG: file('bad.yml') } });
      assert.fail('should throw');
    } catch (e) {
      assert.ok(e instanceof ConfigError);
      assert.match(e.message, /dev\.standalone \(.*bad\.yml:6\)/);
      assert.match(e.message, /unknown key\(s\) colour/);
    }
    assert.throws(() => loadConfig({ env: { REGISTRY_PORT: '70000' } }), /dev\.port/);
    assert.throws(() => loadConfig({ env: { LOGLEVEL: 'loud' } }), /dev\.loglevel/);
    assert.throws(() => loadConfig({ env: { MAX_LAYER_SIZE: 'huge' } }), /dev\.max_layer_size/);
  });

  it('fails clearly on a missing file or flavor', () => {
    assert.throws(() => loadConfig({ env: { DOCKER_REGISTRY_CONFIG: '/nonexistent/x.yml' } }), /configuration file not found/);
    assert.throws(() => loadConfig({ env: { SETTINGS_FLAVOR: 'nope' } }), /flavor "nope"/);
  });
});
