/**
 * A streaming tar reader that keeps the raw header fields tarsum needs (spec §6.2): name after
 * PAX path / GNU long name, numeric fields as stored, the raw typeflag byte, PAX xattrs. Content is
 * passed through in chunks, never accumulated.
 */
export interface TarHeader {
  name: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  typeflag: string;
  linkname: string;
  uname: string;
  gname: string;
  devmajor: number;
  devminor: number;
  /** SCHILY.xattr.<name> records, name without the prefix. */
  xattrs: [string, Buffer][];
}

export interface TarEvents {
  entry(h: TarHeader): void;
  data(chunk: Buffer): void;
  entryEnd(): void;
}

const MAX_META = 1 << 20;

function cstr(b: Buffer, off: number, len: number): string {
  const end = b.indexOf(0, off);
  return b.toString('utf8', off, end < 0 || end > off + len ? off + len : end);
}

function num(b: Buffer, off: number, len: number): number {
  if (b[off]! & 0x80) {
    // base-256 (GNU): big-endian, first byte's top bit is the marker
    let v = b[off]! & 0x7f;
    for (let i = 1; i < len; i++) v = v * 256 + b[off + i]!;
    return v;
  }
  const s = cstr(b, off, len).trim();
  if (s === '') return 0;
  if (!/^[0-7]+$/.test(s)) throw new Error(`bad numeric field ${JSON.stringify(s)}`);
  return parseInt(s, 8);
}

function checksumOk(h: Buffer): boolean {
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 32 : h[i]!;
  const stored = cstr(h, 148, 8).trim();
  return stored !== '' && /^[0-7]+$/.test(stored) && parseInt(stored, 8) === sum;
}

function parsePax(buf: Buffer): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  let off = 0;
  while (off < buf.length) {
    const sp = buf.indexOf(0x20, off);
    if (sp < 0) break;
    const len = Number(buf.toString('ascii', off, sp));
    if (!Number.isInteger(len) || len <= 0 || off + len > buf.length) throw new Error('bad PAX record');
    const rec = buf.subarray(sp + 1, off + len - 1); // drop trailing \n
    const eq = rec.indexOf(0x3d);
    if (eq > 0) out.set(rec.toString('utf8', 0, eq), Buffer.from(rec.subarray(eq + 1)));
    off += len;
  }
  return out;
}

type State = 'header' | 'data' | 'pad' | 'meta' | 'end' | 'error';

export class TarParser {
  private state: State = 'header';
  private hdr = Buffer.alloc(512);
  private hdrFill = 0;
  private remaining = 0;
  private padRemaining = 0;
  private meta: Buffer[] = [];
  private metaKind = '';
  private pax = new Map<string, Buffer>();
  private longName: string | undefined;
  private longLink: string | undefined;
  private zeroBlocks = 0;
  error: string | undefined;
  entries = 0;

  constructor(private readonly ev: TarEvents) {}

  get ended(): boolean {
    return this.state === 'end';
  }

  private fail(msg: string): void {
    this.state = 'error';
    this.error = msg;
  }

  write(chunk: Buffer): void {
    let off = 0;
    try {
      while (off < chunk.length) {
        switch (this.state) {
          case 'end':
          case 'error':
            return;
          case 'header': {
            const n = Math.min(512 - this.hdrFill, chunk.length - off);
            chunk.copy(this.hdr, this.hdrFill, off, off + n);
            this.hdrFill += n;
            off += n;
            if (this.hdrFill === 512) {
              this.hdrFill = 0;
              this.onHeader();
            }
            break;
          }
          case 'data': {
            const n = Math.min(this.remaining, chunk.length - off);
            this.ev.data(chunk.subarray(off, off + n));
            this.remaining -= n;
            off += n;
            if (this.remaining === 0) this.endEntry();
            break;
          }
          case 'meta': {
            const n = Math.min(this.remaining, chunk.length - off);
            this.meta.push(Buffer.from(chunk.subarray(off, off + n)));
            this.remaining -= n;
            off += n;
            if (this.remaining === 0) this.endMeta();
            break;
          }
          case 'pad': {
            const n = Math.min(this.padRemaining, chunk.length - off);
            this.padRemaining -= n;
            off += n;
            if (this.padRemaining === 0) this.state = 'header';
            break;
          }
        }
      }
    } catch (e) {
      this.fail((e as Error).message);
    }
  }

  /** The input ended: anything but a clean end (or a header boundary after entries) is an error. */
  end(): void {
    if (this.state === 'end' || this.state === 'error') return;
    // End at a block boundary is a clean end, also with no end marker or for empty input (Go's
    // reader returns io.EOF there, so tarsum of an empty layer is sha256(extra)).
    if (this.state === 'header' && this.hdrFill === 0) {
      this.state = 'end';
      return;
    }
    this.fail('truncated tar archive');
  }

  private padAfter(size: number): void {
    this.padRemaining = (512 - (size % 512)) % 512;
    this.state = this.padRemaining > 0 ? 'pad' : 'header';
  }

  private onHeader(): void {
    const h = this.hdr;
    let zero = true;
    for (let i = 0; i < 512; i++) if (h[i] !== 0) { zero = false; break; }
    if (zero) {
      this.zeroBlocks++;
      if (this.zeroBlocks >= 2) this.state = 'end';
      return;
    }
    if (this.zeroBlocks > 0) {
      // a single zero block followed by more headers: tolerated, as Go's reader does
      this.zeroBlocks = 0;
    }
    if (!checksumOk(h)) throw new Error('bad tar header checksum');
    const typeflag = String.fromCharCode(h[156]!);
    const size = num(h, 124, 12);
    if (typeflag === 'x' || typeflag === 'g' || typeflag === 'L' || typeflag === 'K') {
      if (size > MAX_META) throw new Error('tar extension header too large');
      this.metaKind = typeflag;
      this.meta = [];
      this.remaining = size;
      this.metaSize = size;
      if (size === 0) this.endMeta();
      else this.state = 'meta';
      return;
    }
    const magic = h.toString('latin1', 257, 263);
    let name = cstr(h, 0, 100);
    if (magic === 'ustar\u0000' || magic === 'ustar ') {
      const prefix = magic === 'ustar\u0000' ? cstr(h, 345, 155) : '';
      if (prefix) name = `${prefix}/${name}`;
    }
    let linkname = cstr(h, 157, 100);
    const header: TarHeader = {
      name,
      mode: num(h, 100, 8),
      uid: num(h, 108, 8),
      gid: num(h, 116, 8),
      size,
      mtime: num(h, 136, 12),
      typeflag,
      linkname,
      uname: cstr(h, 265, 32),
      gname: cstr(h, 297, 32),
      devmajor: num(h, 329, 8),
      devminor: num(h, 337, 8),
      xattrs: [],
    };
    if (this.longName !== undefined) header.name = this.longName;
    if (this.longLink !== undefined) header.linkname = linkname = this.longLink;
    const xattrs: [string, Buffer][] = [];
    for (const [k, v] of this.pax) {
      const s = v.toString('utf8');
      switch (k) {
        case 'path': header.name = s; break;
        case 'linkpath': header.linkname = s; break;
        case 'size': header.size = Number(s); break;
        case 'uid': header.uid = Number(s); break;
        case 'gid': header.gid = Number(s); break;
        case 'uname': header.uname = s; break;
        case 'gname': header.gname = s; break;
        case 'mtime': header.mtime = Math.trunc(Number(s)); break;
        default:
          if (k.startsWith('SCHILY.xattr.')) xattrs.push([k.slice('SCHILY.xattr.'.length), v]);
      }
    }
    header.xattrs = xattrs.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    this.pax = new Map();
    this.longName = undefined;
    this.longLink = undefined;
    if (!Number.isSafeInteger(header.size) || header.size < 0) throw new Error('bad entry size');
    this.entries++;
    this.ev.entry(header);
    // Links, directories and devices carry no data whatever size says (Go: only for regular files).
    const hasData = !['1', '2', '3', '4', '5', '6'].includes(typeflag);
    this.remaining = hasData ? header.size : 0;
    this.entrySize = this.remaining;
    if (this.remaining === 0) this.endEntry();
    else this.state = 'data';
  }

  private entrySize = 0;
  private metaSize = 0;

  private endEntry(): void {
    this.ev.entryEnd();
    this.padAfter(this.entrySize);
  }

  private endMeta(): void {
    const buf = Buffer.concat(this.meta);
    this.meta = [];
    if (this.metaKind === 'x') for (const [k, v] of parsePax(buf)) this.pax.set(k, v);
    else if (this.metaKind === 'L') this.longName = cstr(buf, 0, buf.length);
    else if (this.metaKind === 'K') this.longLink = cstr(buf, 0, buf.length);
    // 'g' (global) records are not applied per entry by tarsum's reader either
    this.padAfter(this.metaSize);
  }
}
