import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import type { StorageDriver } from '../storage/driver.js';
import { goString } from './go-json.js';
import { readOptional, RECORD_MAX } from './small-objects.js';
import { parseStrict, readStrict, type TopMember } from './strict-json.js';

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
  const existing = await readOptional(driver, key, RECORD_MAX);
  if (existing) return createPrivateKey(existing);
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  await driver.putContent(key, Buffer.from(privateKey.export({ type: 'pkcs8', format: 'pem' })));
  return createPrivateKey((await readOptional(driver, key, RECORD_MAX))!);
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

/** A signed schema1 document that is not what libtrust makes of its payload (spec §2.1). */
export class EnvelopeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'EnvelopeError';
  }
}

const B64URL = /^[A-Za-z0-9_-]*$/;
const CLOSING = /^[ \t\r\n]*\}$/;

/**
 * The signed (canonical) payload of a pretty-signed schema1 document, as libtrust computes it: the
 * document's first formatLength bytes and the decoded formatTail of the protected headers, which
 * every signature must give alike (spec §2.1). So that the document has one reading, the payload must
 * be exactly the document without its signatures member: `signatures` is the last member, the
 * payload is the document's bytes up to the end of the member before it, then optional whitespace
 * and the closing brace. `members` are the document's top-level members (strict-json scanJson).
 */
export function signedPayloadOf(doc: Buffer, members: readonly TopMember[], signatures: readonly unknown[]): Buffer {
  const last = members[members.length - 1];
  if (last?.key !== 'signatures') throw new EnvelopeError('the signed payload must be the document without its signatures, which come last');
  let format: { length: number; tail: Buffer } | undefined;
  for (const sig of signatures) {
    const prot = (sig as { protected?: unknown } | null)?.protected;
    if (typeof prot !== 'string' || !B64URL.test(prot)) throw new EnvelopeError('a signature has no protected header');
    let header: { formatLength?: unknown; formatTail?: unknown };
    try {
      header = parseStrict(Buffer.from(prot, 'base64url'), { maxBytes: 64 * 1024 }) as typeof header;
    } catch {
      throw new EnvelopeError('a protected header is not JSON');
    }
    const { formatLength, formatTail } = header ?? {};
    if (typeof formatLength !== 'number' || !Number.isSafeInteger(formatLength) || formatLength < 1 || formatLength > doc.length) {
      throw new EnvelopeError('a protected header has no valid formatLength');
    }
    if (typeof formatTail !== 'string' || !B64URL.test(formatTail)) throw new EnvelopeError('a protected header has no valid formatTail');
    const tail = Buffer.from(formatTail, 'base64url');
    if (format && (format.length !== formatLength || !format.tail.equals(tail))) throw new EnvelopeError('the signatures name different signed payloads');
    format ??= { length: formatLength, tail };
  }
  if (!format) throw new EnvelopeError('no signatures');
  const payload = Buffer.concat([doc.subarray(0, format.length), format.tail]);
  const prev = members[members.length - 2];
  const cut = prev ? prev.valueEnd : doc.indexOf(0x7b) + 1;
  if (payload.length <= cut || !payload.subarray(0, cut).equals(doc.subarray(0, cut)) || !CLOSING.test(payload.toString('latin1', cut))) {
    throw new EnvelopeError('the signed payload is not exactly the document without its signatures');
  }
  return payload;
}

/** The canonical payload of a signed schema1 document (first formatLength bytes + formatTail). */
export function canonicalOf(signed: Buffer): string {
  const { value, members } = readStrict(signed, { maxBytes: Number.MAX_SAFE_INTEGER });
  return signedPayloadOf(signed, members, (value as { signatures: unknown[] }).signatures).toString('utf8');
}
