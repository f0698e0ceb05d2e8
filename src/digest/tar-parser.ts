/**
 * A streaming tar reader that keeps the raw header fields tarsum needs (spec §6.2): the name after
 * PAX `path` / GNU long name (ustar prefix joined with '/'), numeric fields as stored (octal or
 * base-256, not masked), the raw typeflag byte, PAX `SCHILY.xattr.*` records. Fed arbitrary chunks;
 * entry content is passed through as sub-views of the input, never accumulated. Only extension
 * payloads (PAX records, GNU long names) are buffered, up to `maxMetaSize`.
 *
 * Reading rules (where Python's tarfile and Go's archive/tar differ, the choice is noted):
 * - A header whose checksum (unsigned or signed sum, as both readers accept) does not match, a
 *   non-numeric numeric field, an oversized extension payload or input ending inside a block is an
 *   error: `error` is set, further input is ignored, nothing is thrown out of write()/end().
 * - The archive ends at the first all-zero header block (Python; Go also wants a second one or EOF
 *   but never reads past it); anything after it is ignored. Input ending cleanly at a block
 *   boundary, with or without an end marker, also ends the archive (both readers), so an empty
 *   input is an empty archive.
 * - PAX global headers ('g') are consumed and ignored; 'x' records apply to the next entry (path,
 *   linkpath, size, uid, gid, uname, gname, mtime — integer part —, SCHILY.xattr.*); GNU 'L'/'K'
 *   set the next entry's name/linkname. None of these is reported as an entry.
 * - Entries of type '1'…'6' (links, devices, directories, FIFOs) carry no data whatever their size
 *   field says (Python, Go ≥ 1.10); every other type is followed by `size` bytes of content.
 * - The ustar prefix (offset 345) is joined for 'ustar\0' and GNU 'ustar  \0' magic (both Python
 *   and the Go 1.4 reader do), 131 bytes of it for star archives; V7 headers have none.
 */

/** The text fields exactly as stored (before UTF-8 decoding), for byte-exact hashing. */
export interface TarRawFields {
  readonly name: Buffer;
  readonly linkname: Buffer;
  readonly uname: Buffer;
  readonly gname: Buffer;
}

export interface TarHeader {
  /** Entry name after GNU long name / PAX path, ustar prefix joined; `./` and trailing `/` kept. */
  name: string;
  /** The mode field as stored (octal → number), type bits included if the writer set them. */
  mode: number;
  uid: number;
  gid: number;
  /** The size field (or PAX size); the content length for types other than '1'…'6'. */
  size: number;
  /** Seconds since the epoch (PAX mtime: integer part). */
  mtime: number;
  /** The raw type byte as a one-character string; V7 regular files keep '\0'. */
  typeflag: string;
  linkname: string;
  uname: string;
  gname: string;
  devmajor: number;
  devminor: number;
  /** SCHILY.xattr.<name> records: [name without the prefix, raw value], sorted by name bytes. */
  xattrs: [string, Buffer][];
  /** The string fields as stored bytes. */
  raw: TarRawFields;
}

/**
 * What the parser reports, in archive order. After an error nothing more is reported (an entry cut
 * short gets no entryEnd()). An exception thrown by a handler stops parsing and becomes `error`.
 */
export interface TarEvents {
  /** A header; its content follows as data() calls, then entryEnd(). */
  entry(h: TarHeader): void;
  /** A piece of the current entry's content: a view of the input chunk, valid during the call. */
  data(chunk: Buffer): void;
  entryEnd(): void;
}

export interface TarParserOptions {
  /** Most extension payload bytes (PAX records, GNU long names) accepted before one entry (default 1 MiB). */
  readonly maxMetaSize?: number;
}

const BLOCK = 512;
const DEFAULT_MAX_META = 1 << 20;
const XATTR = 'SCHILY.xattr.';

class TarFormatError extends Error {}

/** Bytes up to the first NUL, within [off, off+len). */
function cbytes(b: Buffer, off: number, len: number): Buffer {
  const end = b.indexOf(0, off);
  return Buffer.from(b.subarray(off, end < 0 || end > off + len ? off + len : end));
}

function isBlank(c: number): boolean {
  return c === 0x20 || c === 0;
}

/**
 * A numeric header field: base-256 when the first byte has its top bit set (two's complement when
 * the next bit is set too), else octal text with leading and trailing spaces/NULs ignored and
 * an empty field reading as 0.
 */
function numeric(b: Buffer, off: number, len: number, field: string): number {
  const first = b[off]!;
  if (first & 0x80) {
    const neg = (first & 0x40) !== 0;
    let v = 0;
    for (let i = 0; i < len; i++) {
      let c = b[off + i]!;
      if (i === 0) c &= 0x7f;
      if (neg) c ^= i === 0 ? 0x7f : 0xff;
      v = v * 256 + c;
    }
    if (neg) v = -(v + 1);
    if (!Number.isSafeInteger(v)) throw new TarFormatError(`${field} out of range`);
    return v;
  }
  let s = off;
  let e = off + len;
  while (s < e && isBlank(b[s]!)) s++;
  // Trailing part: cut at the first space or NUL after the digits.
  let d = s;
  while (d < e && !isBlank(b[d]!)) d++;
  for (let i = d; i < e; i++) {
    if (!isBlank(b[i]!)) throw new TarFormatError(`bad ${field} field`);
  }
  e = d;
  let v = 0;
  for (let i = s; i < e; i++) {
    const c = b[i]! - 0x30;
    if (c < 0 || c > 7) throw new TarFormatError(`bad ${field} field`);
    v = v * 8 + c;
  }
  return v;
}

function checksumOk(h: Buffer): boolean {
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK; i++) {
    const c = i >= 148 && i < 156 ? 0x20 : h[i]!;
    unsigned += c;
    signed += c > 127 ? c - 256 : c;
  }
  let stored: number;
  try {
    stored = numeric(h, 148, 8, 'checksum');
  } catch {
    return false;
  }
  // An all-blank checksum field reads as 0, which no real header sums to.
  return stored === unsigned || stored === signed;
}

function isZeroBlock(h: Buffer): boolean {
  for (let i = 0; i < BLOCK; i += 4) if (h.readUInt32LE(i) !== 0) return false;
  return true;
}

/** "len key=value\n" records; the value stays raw bytes. Later records override earlier ones. */
function parsePax(buf: Buffer, into: Map<string, Buffer>): void {
  let off = 0;
  while (off < buf.length) {
    // Some writers pad the payload with NULs.
    if (buf[off] === 0) break;
    const sp = buf.indexOf(0x20, off);
    if (sp < 0 || sp - off > 20) throw new TarFormatError('bad PAX record');
    const lenText = buf.toString('latin1', off, sp);
    if (!/^[0-9]+$/.test(lenText)) throw new TarFormatError('bad PAX record length');
    const len = Number(lenText);
    const recEnd = off + len;
    if (len <= sp - off + 1 || recEnd > buf.length || buf[recEnd - 1] !== 0x0a) throw new TarFormatError('bad PAX record');
    const eq = buf.indexOf(0x3d, sp + 1);
    if (eq < 0 || eq >= recEnd - 1) throw new TarFormatError('bad PAX record');
    into.set(buf.toString('utf8', sp + 1, eq), Buffer.from(buf.subarray(eq + 1, recEnd - 1)));
    off = recEnd;
  }
}

function paxInt(v: Buffer, key: string): number {
  const s = v.toString('latin1');
  if (!/^-?[0-9]+$/.test(s)) throw new TarFormatError(`bad PAX ${key}`);
  const n = Number(s);
  if (!Number.isSafeInteger(n)) throw new TarFormatError(`PAX ${key} out of range`);
  return n;
}

/** PAX time: "seconds[.fraction]"; the integer part, as spec §6.2 says. */
function paxSeconds(v: Buffer): number {
  const s = v.toString('latin1');
  const m = /^(-?[0-9]+)(\.[0-9]*)?$/.exec(s);
  if (!m) throw new TarFormatError('bad PAX mtime');
  const n = Number(m[1]);
  if (!Number.isSafeInteger(n)) throw new TarFormatError('PAX mtime out of range');
  return n;
}

const cmpBytes = (a: [string, Buffer], b: [string, Buffer]): number => Buffer.compare(Buffer.from(a[0]), Buffer.from(b[0]));

type State = 'header' | 'data' | 'pad' | 'meta' | 'end' | 'error';

export class TarParser {
  private state: State = 'header';
  private readonly hdr = Buffer.alloc(BLOCK);
  private hdrFill = 0;
  /** Content (or extension payload) bytes still to come for the current record. */
  private remaining = 0;
  /** Padding after the current record, skipped after `remaining` reaches 0. */
  private pad = 0;
  private meta: Buffer[] = [];
  private metaKind = 0;
  /** Extension payload bytes read since the last entry. */
  private metaBytes = 0;
  private pax = new Map<string, Buffer>();
  private longName: Buffer | undefined;
  private longLink: Buffer | undefined;
  private readonly maxMeta: number;
  private err: string | undefined;
  private count = 0;

  constructor(
    private readonly ev: TarEvents,
    opts: TarParserOptions = {},
  ) {
    this.maxMeta = opts.maxMetaSize ?? DEFAULT_MAX_META;
  }

  /** Why the input is not a (complete) tar archive; undefined while it still looks fine. */
  get error(): string | undefined {
    return this.err;
  }

  /** The end of the archive was seen (end marker, or end() at a block boundary). */
  get ended(): boolean {
    return this.state === 'end';
  }

  /** Entries reported so far (extension headers not counted). */
  get entries(): number {
    return this.count;
  }

  write(chunk: Buffer): void {
    if (this.state === 'end' || this.state === 'error') return;
    try {
      this.consume(chunk);
    } catch (e) {
      this.fail(e instanceof Error ? e.message : String(e));
    }
  }

  /** The input is over: an end at a block boundary is a clean end, anything else truncation. */
  end(): void {
    if (this.state === 'end' || this.state === 'error') return;
    if (this.state === 'header' && this.hdrFill === 0 && !this.pendingExtension()) {
      this.state = 'end';
      return;
    }
    this.fail('truncated tar archive');
  }

  /** Extension headers were read whose entry has not come yet. */
  private pendingExtension(): boolean {
    return this.pax.size > 0 || this.longName !== undefined || this.longLink !== undefined;
  }

  private fail(msg: string): void {
    this.state = 'error';
    this.err = msg;
    this.meta = [];
    this.pax.clear();
  }

  private consume(chunk: Buffer): void {
    const len = chunk.length;
    let off = 0;
    while (off < len) {
      switch (this.state) {
        case 'header': {
          if (this.hdrFill === 0 && len - off >= BLOCK) {
            this.onHeader(chunk.subarray(off, off + BLOCK));
            off += BLOCK;
            break;
          }
          const n = Math.min(BLOCK - this.hdrFill, len - off);
          chunk.copy(this.hdr, this.hdrFill, off, off + n);
          this.hdrFill += n;
          off += n;
          if (this.hdrFill === BLOCK) {
            this.hdrFill = 0;
            this.onHeader(this.hdr);
          }
          break;
        }
        case 'data': {
          const n = Math.min(this.remaining, len - off);
          this.remaining -= n;
          this.ev.data(n === len ? chunk : chunk.subarray(off, off + n));
          off += n;
          if (this.remaining === 0) this.afterData();
          break;
        }
        case 'meta': {
          const n = Math.min(this.remaining, len - off);
          this.meta.push(Buffer.from(chunk.subarray(off, off + n)));
          this.remaining -= n;
          off += n;
          if (this.remaining === 0) this.endMeta();
          break;
        }
        case 'pad': {
          const n = Math.min(this.pad, len - off);
          this.pad -= n;
          off += n;
          if (this.pad === 0) this.state = 'header';
          break;
        }
        case 'end':
        case 'error':
          return;
      }
    }
  }

  private afterData(): void {
    this.ev.entryEnd();
    this.state = this.pad > 0 ? 'pad' : 'header';
  }

  private onHeader(h: Buffer): void {
    if (isZeroBlock(h)) {
      if (this.pendingExtension()) throw new TarFormatError('end of archive after an extension header');
      this.state = 'end';
      return;
    }
    if (!checksumOk(h)) throw new TarFormatError('bad tar header checksum');
    const type = h[156]!;
    const size = numeric(h, 124, 12, 'size');
    // x: PAX record set, g: PAX global (ignored), L/K: GNU long name / long link name
    if (type === 0x78 || type === 0x67 || type === 0x4c || type === 0x4b) {
      // The cap covers all extension payloads before one entry, so a run of them cannot grow the
      // pending PAX records without bound either.
      this.metaBytes += size;
      if (this.metaBytes > this.maxMeta) throw new TarFormatError('tar extension header too large');
      this.metaKind = type;
      this.meta = [];
      this.remaining = size;
      this.pad = (BLOCK - (size % BLOCK)) % BLOCK;
      if (size === 0) this.endMeta();
      else this.state = 'meta';
      return;
    }
    this.onEntry(h, type, size);
  }

  private endMeta(): void {
    const buf = this.meta.length === 1 ? this.meta[0]! : Buffer.concat(this.meta);
    this.meta = [];
    if (this.metaKind === 0x78) parsePax(buf, this.pax);
    else if (this.metaKind === 0x4c) this.longName = cbytes(buf, 0, buf.length);
    else if (this.metaKind === 0x4b) this.longLink = cbytes(buf, 0, buf.length);
    // 0x67 ('g'): global records are not applied (spec §6.2 reader)
    this.metaKind = 0;
    this.state = this.pad > 0 ? 'pad' : 'header';
  }

  private onEntry(h: Buffer, type: number, headerSize: number): void {
    const magic = h.toString('latin1', 257, 265);
    let prefixLen = 0;
    if (magic.startsWith('ustar\0')) prefixLen = h.toString('latin1', 508, 512) === 'tar\0' ? 131 : 155;
    else if (magic === 'ustar  \0') prefixLen = 155;
    let name = cbytes(h, 0, 100);
    if (prefixLen > 0 && h[345] !== 0) name = Buffer.concat([cbytes(h, 345, prefixLen), Buffer.from('/'), name]);
    let linkname = cbytes(h, 157, 100);
    let uname = cbytes(h, 265, 32);
    let gname = cbytes(h, 297, 32);
    let size = headerSize;
    let uid = numeric(h, 108, 8, 'uid');
    let gid = numeric(h, 116, 8, 'gid');
    let mtime = numeric(h, 136, 12, 'mtime');
    const device = type === 0x33 || type === 0x34;
    // Only devices need the device numbers; elsewhere a writer may have left anything there.
    const dev = (o: number, f: string): number => {
      try {
        return numeric(h, o, 8, f);
      } catch (e) {
        if (device) throw e;
        return 0;
      }
    };
    const devmajor = dev(329, 'devmajor');
    const devminor = dev(337, 'devminor');
    if (this.longName) name = this.longName;
    if (this.longLink) linkname = this.longLink;
    const xattrs: [string, Buffer][] = [];
    for (const [k, v] of this.pax) {
      switch (k) {
        case 'path':
          name = v;
          break;
        case 'linkpath':
          linkname = v;
          break;
        case 'uname':
          uname = v;
          break;
        case 'gname':
          gname = v;
          break;
        case 'uid':
          uid = paxInt(v, k);
          break;
        case 'gid':
          gid = paxInt(v, k);
          break;
        case 'size':
          size = paxInt(v, k);
          break;
        case 'mtime':
          mtime = paxSeconds(v);
          break;
        default:
          if (k.startsWith(XATTR)) xattrs.push([k.slice(XATTR.length), v]);
      }
    }
    if (xattrs.length > 1) xattrs.sort(cmpBytes);
    this.pax.clear();
    this.longName = undefined;
    this.longLink = undefined;
    this.metaBytes = 0;
    if (size < 0) throw new TarFormatError('negative entry size');
    const header: TarHeader = {
      name: name.toString('utf8'),
      mode: numeric(h, 100, 8, 'mode'),
      uid,
      gid,
      size,
      mtime,
      typeflag: String.fromCharCode(type),
      linkname: linkname.toString('utf8'),
      uname: uname.toString('utf8'),
      gname: gname.toString('utf8'),
      devmajor,
      devminor,
      xattrs,
      raw: { name, linkname, uname, gname },
    };
    this.count++;
    // Links, devices, directories and FIFOs have no content, whatever their size says.
    const content = type >= 0x31 && type <= 0x36 ? 0 : size;
    this.remaining = content;
    this.pad = (BLOCK - (content % BLOCK)) % BLOCK;
    this.ev.entry(header);
    if (content > 0) this.state = 'data';
    else this.afterData();
  }
}
