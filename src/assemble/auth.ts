import { randomBytes } from 'node:crypto';
import { ConfigError } from '../config/load.js';
import type { StorageDriver } from '../storage/driver.js';
import { readOptional, RECORD_MAX } from '../content/small-objects.js';
import { V1TokenSigner } from '../auth/v1-token.js';
import { OPEN_ACCESS, type RegistryAuth } from '../auth/registry-auth.js';
import { TokenAuth } from '../auth/registry-token.js';
import { certBundleKeys, localKeys, remoteJwksKeys, V2TokenVerifier, type KeyResolver, type V2TokenIssuer } from '../auth/v2-jwt.js';
import { HtpasswdV2Authorizer, TokenV2Authorizer, V2_OPEN, type V2Authorizer } from '../auth/v2-registry-auth.js';
import { Htpasswd, HtpasswdRegistryAuth, type HtpasswdGate } from '../auth/htpasswd.js';
import { JWKS_PATH } from '../index/token-routes.js';
import type { Site } from './site.js';

/** Who may do what on the registry's routes. */
export interface AuthServices {
  /** v1 registry routes (spec §4.1): index tokens, the htpasswd gate, or open. */
  readonly registry: RegistryAuth;
  /** v2 routes (spec v2-bridge §4.4): Bearer tokens, htpasswd Basic, or open. */
  readonly v2: V2Authorizer;
  /** The standalone index's htpasswd gate (v1 logins of a registry without an index). */
  readonly gate: HtpasswdGate | undefined;
}

/**
 * The auth service: v2 authorizer and v1 registry auth from `v2_auth`, `standalone`,
 * `disable_token_auth`. `issuer` is this process's index's token issuer (when it runs one);
 * `selfUrl` is where this process listens (token checks against its own index over HTTP).
 */
export async function assembleAuth(site: Site, driver: StorageDriver, issuer: V2TokenIssuer | undefined, selfUrl: () => string): Promise<AuthServices> {
  const { config, role, standalone, v2Auth, log } = site;
  let v2: V2Authorizer = V2_OPEN;
  let htpasswd: Htpasswd | undefined;
  let gate: HtpasswdGate | undefined;
  if (v2Auth === 'htpasswd' && role !== 'index') {
    htpasswd = new Htpasswd(config.htpasswd_path!);
    if (standalone) {
      // No index to gate the v1 routes: the same file does (spec v2-bridge §4.6). The stand-in
      // index's tokens are signed with a secret kept in storage, shared by every node.
      const key = 'v1/_keys/standalone-token-secret';
      // two nodes starting at once: with exclusive create the first one's secret is everyone's
      if (!(await readOptional(driver, key, RECORD_MAX))) {
        if (driver.putContentIfAbsent) await driver.putContentIfAbsent(key, randomBytes(32));
        else await driver.putContent(key, randomBytes(32));
      }
      gate = { file: htpasswd, signer: new V1TokenSigner((await readOptional(driver, key, RECORD_MAX))!, config.token_ttl), realm: config.htpasswd_realm };
    }
  }
  if (site.runV2) {
    if (v2Auth === 'htpasswd') {
      v2 = new HtpasswdV2Authorizer(htpasswd!, config.htpasswd_realm);
    } else if (v2Auth === 'token') {
      // Whose signatures the registry trusts (§4.4): the bundle's certificates when configured
      // (an external token service), else this process's index key, else the index's JWKS.
      let keys: KeyResolver;
      if (config.token_rootcertbundle) keys = certBundleKeys(config.token_rootcertbundle);
      else if (issuer) keys = localKeys(issuer.key);
      else if (config.index_endpoint) keys = remoteJwksKeys(`${config.index_endpoint}${JWKS_PATH}`, log);
      else throw new ConfigError('invalid configuration:\n  v2_auth: token needs an index (index_endpoint) or token_rootcertbundle');
      v2 = new TokenV2Authorizer({
        // the bundle's signers are an external token service (its admin claim is its word); else the keys are our index's
        verifier: new V2TokenVerifier(keys, config.token_issuer, !config.token_rootcertbundle),
        config,
        indexBase: role === 'registry' ? config.index_endpoint : null,
      });
    }
  }
  // Spec §4.1: standalone or disable_token_auth ⇒ no token checks; otherwise every request's token is
  // validated against the index (over HTTP, as the protocol prescribes, with a short cache).
  const registry: RegistryAuth = gate
    ? new HtpasswdRegistryAuth(gate)
    : standalone || config.disable_token_auth
      ? OPEN_ACCESS
      : new TokenAuth({ indexEndpoint: () => config.index_endpoint ?? selfUrl(), cacheTtl: config.token_cache_ttl, log });
  return { registry, v2, gate };
}
