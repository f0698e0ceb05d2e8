import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { hostname } from 'node:os';
import { advertisedAuthority, defaultAuthority, localAuthority, requireAdvertisedNames, tokenService } from '../../../src/config/advertise.js';
import { ConfigError, loadConfig } from '../../../src/config/load.js';

const config = (overrides: Record<string, unknown> = {}) => loadConfig({ env: {}, overrides });
const HOST = hostname().toLowerCase();

describe('names this server gives itself (config/advertise.ts)', () => {
  it('the default is the listen address; a wildcard host becomes the host name', () => {
    assert.equal(defaultAuthority(config(), 5000), `${HOST}:5000`, 'host 0.0.0.0 (the default)');
    assert.equal(defaultAuthority(config({ host: '::' }), 5000), `${HOST}:5000`);
    assert.equal(defaultAuthority(config({ http_addr: ':6000' }), 6000), `${HOST}:6000`);
    assert.equal(defaultAuthority(config({ host: '10.1.2.3' }), 5000), '10.1.2.3:5000');
    assert.equal(defaultAuthority(config({ http_addr: '[::1]:5001' }), 5001), '[::1]:5001');
    assert.equal(defaultAuthority(config({ host: 'Registry.Example' }), 80), 'registry.example:80');
  });

  it('the token service: token_service, else the first registry_endpoints entry, else the listen address', () => {
    assert.equal(tokenService(config({ host: '127.0.0.1' }), 5000), '127.0.0.1:5000');
    assert.equal(tokenService(config({ registry_endpoints: 'reg1:5001, reg2:5001' }), 5000), 'reg1:5001');
    assert.equal(tokenService(config({ registry_endpoints: ['reg1:5001'], token_service: 'registry.example' }), 5000), 'registry.example');
  });

  it('token_audiences: a list or a comma separated string; empty by default', () => {
    assert.deepEqual(config().token_audiences, []);
    assert.deepEqual(config({ token_audiences: 'a.example, b.example' }).token_audiences, ['a.example', 'b.example']);
    assert.deepEqual(config({ token_audiences: ['dist.example'] }).token_audiences, ['dist.example']);
    assert.deepEqual(loadConfig({ env: { TOKEN_AUDIENCES: 'x.example,y.example' } }).token_audiences, ['x.example', 'y.example']);
  });

  it('a Host header is kept only when it names this machine on our port', () => {
    assert.equal(localAuthority('localhost:5000', 5000, false), 'localhost:5000');
    assert.equal(localAuthority('LOCALHOST:5000', 5000, false), 'localhost:5000');
    assert.equal(localAuthority(`${HOST}:5000`, 5000, false), `${HOST}:5000`);
    assert.equal(localAuthority('127.0.0.1:5000', 5000, false), '127.0.0.1:5000');
    assert.equal(localAuthority('[127.0.0.1]:5000', 5000, false), '127.0.0.1:5000');
    assert.equal(localAuthority('[::1]:5000', 5000, false), '[::1]:5000');
    assert.equal(localAuthority('[0:0:0:0:0:0:0:1]:5000', 5000, false), '[::1]:5000');
    // no port: the scheme's default must be ours
    assert.equal(localAuthority('localhost', 80, false), 'localhost');
    assert.equal(localAuthority('localhost', 443, true), 'localhost');
    assert.equal(localAuthority('localhost', 443, false), undefined);
    assert.equal(localAuthority('localhost', 5000, false), undefined);
    // other ports, other names, addresses of other machines, anything malformed
    for (const h of [
      'localhost:5001',
      'evil.example:5000',
      'evil.example',
      '203.0.113.9:5000',
      '[2001:db8::1]:5000',
      '127.1:5000',
      'localhost.:5000',
      'localhost:05000',
      'localhost:5000,evil.example',
      'localhost:5000"',
      'a b:5000',
      '',
      ':5000',
    ]) {
      assert.equal(localAuthority(h, 5000, false), undefined, h);
    }
  });

  it('advertisedAuthority falls back to the listen address', () => {
    const c = config({ host: '127.0.0.1' });
    assert.equal(advertisedAuthority(c, 'evil.example', 5000), '127.0.0.1:5000');
    assert.equal(advertisedAuthority(c, 'localhost:5000', 5000), 'localhost:5000');
    assert.equal(advertisedAuthority(c, 'localhost', 5000), '127.0.0.1:5000');
  });

  it('the prod flavor requires token_service with v2 tokens and registry_endpoints with an index', () => {
    const prod = loadConfig({ env: {}, flavor: 'prod' });
    assert.throws(
      () => requireAdvertisedNames(prod, { v2Tokens: true, index: true }),
      (e: unknown) => e instanceof ConfigError && /token_service: required/.test(e.message) && /registry_endpoints: required/.test(e.message),
    );
    assert.throws(
      () => requireAdvertisedNames(prod, { v2Tokens: false, index: true }),
      /^ConfigError: invalid configuration \(flavor prod\):\n {2}registry_endpoints: required/,
    );
    requireAdvertisedNames(prod, { v2Tokens: false, index: false });
    requireAdvertisedNames(loadConfig({ env: { TOKEN_SERVICE: 'r.example', REGISTRY_ENDPOINTS: 'r.example:5000' }, flavor: 'prod' }), {
      v2Tokens: true,
      index: true,
    });
    // other flavors derive the names
    requireAdvertisedNames(config(), { v2Tokens: true, index: true });
  });
});
