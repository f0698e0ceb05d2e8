import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import type { StorageDriver } from '../storage/driver.js';
import { goString } from './go-json.js';
import { readOptional } from './small-objects.js';

/** One schema1 layer entry, top first: its blob and its v1Compatibility JSON. */
export interface Schema1Layer {
  readonly blobSum: string;
  readonly v1Compatibility: string;
}

/**
 * The payload distribution signs (spec v2-bridge §2.1): Go's MarshalIndent with 3 spaces, so the
 * digest (sha256 of this canonical payload) is the one distribution and Docker compute.
 */
export function schema1Payload(name: string, tag: string, architecture: string, layersTopFirst: readonly Schema1Layer[]): string {
  const fs = layersTopFirst.map((l) => `      {\n         "blobSum": ${goString(l.blobSum)}\n      }`).join(',\n');
  const hist = layersTopFirst.map((l) => `      {\n         "v1Compatibility": ${goString(l.v1Compatibility)}\n      }`).join(',\n');
  return (
    `{\n   "schemaVersion": 1,\n   "name": ${goString(name)},\n   "tag": ${goString(tag)},\n   "architecture": ${goString(architecture)},\n` +
    `   "fsLayers": [\n${fs}\n   ],\n   "history": [\n${hist}\n   ]\n}`
  );
}

const b64url = (b: Buffer | string): string => Buffer.from(b).toString('base64url');

/** libtrust key id (spec §4.3): sha256 of the SPKI DER, first 30 bytes, base32, 12 groups of 4. */
export function libtrustKid(pub: KeyObject): string {
  const der = pub.export({ type: 'spki', format: 'der' });
  const h = createHash('sha256').update(der).digest().subarray(0, 30);
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = 0;
  let value = 0;
  let out = '';
  for (const byte of h) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += alphabet[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  return out.match(/.{4}/g)!.join(':');
}

/** The registry's schema1 signing key (ES256), created once and kept in storage for every node. */
export async function schema1Key(driver: StorageDriver): Promise<KeyObject> {
  const key = 'v2/_keys/schema1-es256.pem';
  const existing = await readOptional(driver, key);
  if (existing) return createPrivateKey(existing);
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  await driver.putContent(key, Buffer.from(privateKey.export({ type: 'pkcs8', format: 'pem' })));
  return createPrivateKey((await readOptional(driver, key))!);
}

/** Sign a canonical payload as a libtrust "pretty JWS" (spec §2.1). */
export function signSchema1(payload: string, key: KeyObject, now = new Date()): Buffer {
  const close = payload.lastIndexOf('\n}');
  const formatLength = close;
  const formatTail = payload.slice(close);
  const protectedHeader = b64url(JSON.stringify({ formatLength, formatTail: b64url(formatTail), time: now.toISOString().replace(/\.\d+Z$/, 'Z') }));
  const signature = sign('sha256', Buffer.from(`${protectedHeader}.${b64url(payload)}`), { key, dsaEncoding: 'ieee-p1363' });
  const pub = createPublicKey(key);
  const jwk = pub.export({ format: 'jwk' }) as { crv: string; x: string; y: string };
  const sig =
    `   "signatures": [\n      {\n         "header": {\n            "jwk": {\n               "crv": "${jwk.crv}",\n               "kid": "${libtrustKid(pub)}",\n` +
    `               "kty": "EC",\n               "x": "${jwk.x}",\n               "y": "${jwk.y}"\n            },\n            "alg": "ES256"\n         },\n` +
    `         "signature": "${b64url(signature)}",\n         "protected": "${protectedHeader}"\n      }\n   ]`;
  return Buffer.from(`${payload.slice(0, formatLength)},\n${sig}\n}`);
}

/** The canonical payload of a signed schema1 document (first formatLength bytes + formatTail). */
export function canonicalOf(signed: Buffer): string {
  const doc = JSON.parse(signed.toString('utf8')) as { signatures: { protected: string }[] };
  const prot = JSON.parse(Buffer.from(doc.signatures[0]!.protected, 'base64url').toString('utf8')) as { formatLength: number; formatTail: string };
  return signed.subarray(0, prot.formatLength).toString('utf8') + Buffer.from(prot.formatTail, 'base64url').toString('utf8');
}
