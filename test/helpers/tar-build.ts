/**
 * A small tar writer for tests: ustar / GNU / V7 headers written field by field, GNU long names
 * ('L'/'K'), PAX record sets ('x' and global 'g'), base-256 numbers, signed checksums. Every field
 * can be set by hand, so tests can build exactly the odd archives the reader must cope with.
 */

export type Bytes = string | Buffer;

export interface TarEntrySpec {
  name: Bytes;
  /** Content; its length is the size field unless `size` is given. */
  data?: Bytes;
  /** Typeflag character; default '0'. */
  type?: string;
  /** The size field, when it must differ from the data length (e.g. a directory with a size). */
  size?: number;
  mode?: number;
  uid?: number;
  gid?: number;
  mtime?: number;
  linkname?: Bytes;
  uname?: Bytes;
  gname?: Bytes;
  devmajor?: number;
  devminor?: number;
  /** ustar prefix field (offset 345). */
  prefix?: Bytes;
  /** Header flavour: POSIX 'ustar\0' + '00' (default), GNU 'ustar  \0', or V7 (no magic). */
  format?: 'ustar' | 'gnu' | 'v7';
  /** Numeric fields to write in base-256 (GNU binary) form. */
  base256?: readonly ('uid' | 'gid' | 'size' | 'mtime' | 'mode')[];
  /** Write the checksum as the signed byte sum (old Sun tar). */
  signedChecksum?: boolean;
  /** PAX records in an 'x' header before this entry. */
  pax?: Record<string, Bytes>;
  /** A GNU 'L' header before this entry (the name field then gets a truncated copy). */
  gnuLongName?: Bytes;
  /** A GNU 'K' header before this entry. */
  gnuLongLink?: Bytes;
}

export const BLOCK = 512;
export const MTIME = 1420070400;

const buf = (b: Bytes): Buffer => (typeof b === 'string' ? Buffer.from(b, 'utf8') : b);

export function padding(n: number): Buffer {
  return Buffer.alloc((BLOCK - (n % BLOCK)) % BLOCK);
}

function octal(h: Buffer, off: number, len: number, v: number): void {
  h.write(`${v.toString(8).padStart(len - 1, '0')}\0`, off, 'latin1');
}

function base256(h: Buffer, off: number, len: number, v: number): void {
  let x = BigInt(v);
  if (x < 0n) x += 1n << BigInt(len * 8);
  for (let i = len - 1; i >= 0; i--) {
    h[off + i] = Number(x & 0xffn);
    x >>= 8n;
  }
  h[off] = v < 0 ? h[off]! | 0xc0 : 0x80;
}

/** One 512-byte header block. */
export function tarHeader(spec: TarEntrySpec): Buffer {
  const h = Buffer.alloc(BLOCK);
  const name = buf(spec.name);
  name.copy(h, 0, 0, Math.min(100, name.length));
  const data = spec.data === undefined ? Buffer.alloc(0) : buf(spec.data);
  const num = (field: 'uid' | 'gid' | 'size' | 'mtime' | 'mode', off: number, len: number, v: number): void => {
    if (spec.base256?.includes(field)) base256(h, off, len, v);
    else octal(h, off, len, v);
  };
  const type = spec.type ?? '0';
  num('mode', 100, 8, spec.mode ?? (type === '5' ? 0o755 : 0o644));
  num('uid', 108, 8, spec.uid ?? 0);
  num('gid', 116, 8, spec.gid ?? 0);
  num('size', 124, 12, spec.size ?? data.length);
  num('mtime', 136, 12, spec.mtime ?? MTIME);
  h.fill(0x20, 148, 156);
  h.write(type, 156, 'latin1');
  if (spec.linkname !== undefined) buf(spec.linkname).copy(h, 157, 0, 100);
  const format = spec.format ?? 'ustar';
  if (format === 'ustar') {
    h.write('ustar\0', 257, 'latin1');
    h.write('00', 263, 'latin1');
  } else if (format === 'gnu') {
    h.write('ustar  \0', 257, 'latin1');
  }
  if (format !== 'v7') {
    buf(spec.uname ?? 'root').copy(h, 265, 0, 32);
    buf(spec.gname ?? 'root').copy(h, 297, 0, 32);
    octal(h, 329, 8, spec.devmajor ?? 0);
    octal(h, 337, 8, spec.devminor ?? 0);
    if (spec.prefix !== undefined) buf(spec.prefix).copy(h, 345, 0, 155);
  }
  let sum = 0;
  for (const b of h) sum += spec.signedChecksum && b > 127 ? b - 256 : b;
  if (sum < 0) throw new Error('tar-build: a negative signed checksum is not supported');
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
  return h;
}

/** PAX records: "len key=value\n", len counting itself. */
export function paxRecords(records: Record<string, Bytes>): Buffer {
  const out: Buffer[] = [];
  for (const [k, v] of Object.entries(records)) {
    const body = Buffer.concat([Buffer.from(` ${k}=`), buf(v), Buffer.from('\n')]);
    let len = body.length + 1;
    while (String(len).length + body.length !== len) len = String(len).length + body.length;
    out.push(Buffer.from(String(len)), body);
  }
  return Buffer.concat(out);
}

/** An extension header ('x', 'g', 'L', 'K') with its payload and padding. */
export function extensionBlocks(type: 'x' | 'g' | 'L' | 'K', payload: Buffer): Buffer[] {
  const name = type === 'L' || type === 'K' ? '././@LongLink' : type === 'g' ? 'pax_global_header' : 'PaxHeaders/x';
  return [tarHeader({ name, type, data: payload, format: type === 'L' || type === 'K' ? 'gnu' : 'ustar' }), payload, padding(payload.length)];
}

/** An entry with its extension headers, header, content and padding. */
export function tarEntry(spec: TarEntrySpec): Buffer[] {
  const out: Buffer[] = [];
  if (spec.gnuLongName !== undefined) out.push(...extensionBlocks('L', Buffer.concat([buf(spec.gnuLongName), Buffer.alloc(1)])));
  if (spec.gnuLongLink !== undefined) out.push(...extensionBlocks('K', Buffer.concat([buf(spec.gnuLongLink), Buffer.alloc(1)])));
  if (spec.pax) out.push(...extensionBlocks('x', paxRecords(spec.pax)));
  const data = spec.data === undefined ? Buffer.alloc(0) : buf(spec.data);
  out.push(tarHeader(spec), data, padding(data.length));
  return out;
}

/** The end-of-archive marker: two zero blocks. */
export const END = Buffer.alloc(2 * BLOCK);

/** A whole archive: entries then the end marker (unless `end: false`). */
export function buildTar(entries: readonly TarEntrySpec[], opts: { end?: boolean } = {}): Buffer {
  const parts = entries.flatMap((e) => tarEntry(e));
  if (opts.end !== false) parts.push(END);
  return Buffer.concat(parts);
}
