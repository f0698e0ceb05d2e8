/**
 * One linear pass over JSON bytes before JSON.parse, so that a document has exactly one reading:
 * JSON.parse keeps the last of two equal keys, Go's encoding/json fills a struct field from any key
 * equal to its name under case folding, and a client reading a manifest with Go would then see other
 * content than we validated. The pass checks the total size and the nesting depth, refuses duplicate
 * keys in every object (after unescaping: "\u006cayers" is "layers"), and, given the field names of
 * the formats being read, refuses a key that is one of them under Go's folding but not spelled exactly.
 * Keys of free-form maps (annotations, a JWK) are exempt from the case rule, not from the duplicate rule.
 */

export const DEFAULT_MAX_DEPTH = 64;
export const DEFAULT_MAX_BYTES = 4 * 1024 * 1024;

export class StrictJsonError extends Error {
  constructor(
    message: string,
    /** byte offset where the problem was found */
    readonly offset: number,
  ) {
    super(message);
    this.name = 'StrictJsonError';
  }
}

/**
 * Go's case folding of a struct field name (encoding/json foldName: bytes.EqualFold semantics). For
 * ASCII names only three things matter: a-z and A-Z are one letter, U+212A (Kelvin sign) is "k" and
 * U+017F (long s) is "s"; every other non-ASCII character can never fold onto an ASCII name.
 */
export function goFold(key: string): string {
  let out = '';
  let start = 0;
  for (let i = 0; i < key.length; i++) {
    const c = key.charCodeAt(i);
    if (c === 0x212a || c === 0x17f) {
      out += key.slice(start, i) + (c === 0x212a ? 'k' : 's');
      start = i + 1;
    }
  }
  return (start === 0 ? key : out + key.slice(start)).replace(/[A-Z]+/g, (m) => m.toLowerCase());
}

/** The field names of a family of formats, and the members whose values are free-form maps. */
export class FieldNames {
  private readonly exact = new Set<string>();
  private readonly byFold = new Map<string, string>();
  readonly freeForm: ReadonlySet<string>;
  constructor(names: Iterable<string>, freeForm: Iterable<string> = []) {
    for (const n of names) {
      this.exact.add(n);
      this.byFold.set(goFold(n), n);
    }
    this.freeForm = new Set(freeForm);
  }
  /** The defined field `key` would fill in Go when it is not spelled exactly, else undefined. */
  variantOf(key: string): string | undefined {
    if (this.exact.has(key)) return undefined;
    return this.byFold.get(goFold(key));
  }
}

/**
 * Every field name of the manifest formats we accept (spec v2-bridge §2): schema1 (with the libtrust
 * signature envelope), schema2, Docker manifest list, OCI image manifest and index, descriptors and
 * platforms. One set for all: a case variant of any of them has no business in a manifest.
 */
export const MANIFEST_FIELDS = new FieldNames(
  [
    // schema 2, OCI manifest and index, manifest list
    'schemaVersion',
    'mediaType',
    'artifactType',
    'config',
    'layers',
    'manifests',
    'subject',
    'annotations',
    // descriptors and platforms
    'digest',
    'size',
    'urls',
    'data',
    'platform',
    'architecture',
    'os',
    'os.version',
    'os.features',
    'variant',
    'features',
    // schema 1 and its signatures
    'name',
    'tag',
    'fsLayers',
    'blobSum',
    'history',
    'v1Compatibility',
    'signatures',
    'header',
    'jwk',
    'alg',
    'x5c',
    'signature',
    'protected',
  ],
  ['annotations', 'jwk'],
);

export interface StrictJsonOptions {
  /** Largest document in bytes (default 4 MiB). */
  readonly maxBytes?: number;
  /** Deepest nesting of objects and arrays, the outermost counting 1 (default 64). */
  readonly maxDepth?: number;
  /** Refuse keys that are case variants of these field names (outside their free-form maps). */
  readonly fields?: FieldNames;
}

/** A member of the top-level object, by byte offsets into the document. */
export interface TopMember {
  readonly key: string;
  readonly keyStart: number;
  readonly valueStart: number;
  readonly valueEnd: number;
}

interface Frame {
  readonly object: boolean;
  /** keys seen so far (objects only): a short list, a Set once the object is large */
  keys: string[] | Set<string> | undefined;
  /** inside a free-form map: no case rule */
  readonly free: boolean;
  /** the key of the member being read (objects only) */
  key: string;
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;

const isWs = (c: number): boolean => c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
/** Bytes of numbers and of true/false/null; JSON.parse decides whether they form a valid token. */
const isLiteral = (c: number): boolean =>
  (c >= 0x30 && c <= 0x39) || (c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || c === 0x2d || c === 0x2b || c === 0x2e;

/** Offset just past the string that starts (with its quote) at `start`. */
function stringEnd(buf: Buffer, start: number): number {
  const n = buf.length;
  // short strings (keys, media types, digests) in JS: a native call costs more than the bytes
  const stop = Math.min(n, start + 129);
  let j = start + 1;
  for (; j < stop; j++) {
    const c = buf[j];
    if (c === QUOTE) return j + 1;
    if (c === BACKSLASH) return escapedStringEnd(buf, start);
  }
  // a long string: most have no escaped quote, and the first quote found (natively) ends them
  const q = buf.indexOf(QUOTE, j);
  if (q < 0) throw new StrictJsonError('unterminated string', start);
  if (buf[q - 1] !== BACKSLASH) return q + 1;
  return escapedStringEnd(buf, start);
}

/** A string with escapes: walked once, byte by byte (an indexOf per escaped quote would cost a call each). */
function escapedStringEnd(buf: Buffer, start: number): number {
  const n = buf.length;
  for (let j = start + 1; j < n; j++) {
    const c = buf[j];
    if (c === BACKSLASH) j++;
    else if (c === QUOTE) return j + 1;
  }
  throw new StrictJsonError('unterminated string', start);
}

/**
 * Keys recur (a manifest says "mediaType", "digest", "size" thousands of times): the last ASCII key
 * of each (length, first byte, last byte) is kept and reused when its bytes match, which saves
 * decoding a string per key and hashing it again in every Set and Map lookup.
 */
class KeyDecoder {
  private readonly recent = new Map<number, string>();
  constructor(private readonly buf: Buffer) {}

  /** The key whose string (with its quotes) spans start..end. */
  decode(start: number, end: number): string {
    const buf = this.buf;
    const len = end - start - 2;
    const slot = len <= 0 ? 0 : (len << 16) | (buf[start + 1]! << 8) | buf[end - 2]!;
    const cached = this.recent.get(slot);
    if (cached !== undefined && cached.length === len) {
      let j = 0;
      while (j < len && cached.charCodeAt(j) === buf[start + 1 + j]) j++;
      if (j === len) return cached;
    }
    let plain = true;
    for (let j = start + 1; j < end - 1; j++) {
      const c = buf[j]!;
      if (c === BACKSLASH) {
        try {
          return JSON.parse(buf.toString('utf8', start, end)) as string;
        } catch {
          throw new StrictJsonError('malformed key', start);
        }
      }
      if (c >= 0x80) plain = false;
    }
    const key = buf.toString(plain ? 'latin1' : 'utf8', start + 1, end - 1);
    if (plain) this.recent.set(slot, key);
    return key;
  }
}

const enum State {
  Value,
  ValueOrClose,
  Key,
  KeyOrClose,
  After,
}

/**
 * Check `buf` (see the module comment) in one pass without building anything but key sets. Returns
 * the members of the top-level object with their offsets (empty when the document is not an object).
 * Throws StrictJsonError; anything it lets through still has to pass JSON.parse.
 */
export function scanJson(buf: Buffer, opts: StrictJsonOptions = {}): TopMember[] {
  const maxBytes = opts.maxBytes ?? DEFAULT_MAX_BYTES;
  const maxDepth = opts.maxDepth ?? DEFAULT_MAX_DEPTH;
  const fields = opts.fields;
  if (buf.length > maxBytes) throw new StrictJsonError(`document larger than ${maxBytes} bytes`, maxBytes);
  const keys = new KeyDecoder(buf);
  const stack: Frame[] = [];
  const top: TopMember[] = [];
  let keyStart = 0;
  let valueStart = 0;
  let state = State.Value;
  let i = 0;
  const n = buf.length;
  for (;;) {
    while (i < n && isWs(buf[i]!)) i++;
    if (i >= n) {
      if (state === State.After && stack.length === 0) return top;
      throw new StrictJsonError('unexpected end of document', i);
    }
    const c = buf[i]!;
    let ended: boolean; // a value ended just before i (every branch that goes on sets it)
    if (state === State.ValueOrClose && c === 0x5d) {
      stack.pop();
      i++;
      ended = true;
    } else if (state === State.KeyOrClose && c === 0x7d) {
      stack.pop();
      i++;
      ended = true;
    } else if (state === State.Value || state === State.ValueOrClose) {
      if (stack.length === 1 && stack[0]!.object) valueStart = i;
      if (c === 0x7b || c === 0x5b) {
        if (stack.length >= maxDepth) throw new StrictJsonError(`nested deeper than ${maxDepth} levels`, i);
        const parent = stack[stack.length - 1];
        const free = parent !== undefined && (parent.free || (parent.object && fields !== undefined && fields.freeForm.has(parent.key)));
        const object = c === 0x7b;
        stack.push({ object, keys: object ? [] : undefined, free, key: '' });
        state = object ? State.KeyOrClose : State.ValueOrClose;
        i++;
        continue;
      }
      if (c === QUOTE) i = stringEnd(buf, i);
      else {
        const from = i;
        while (i < n && isLiteral(buf[i]!)) i++;
        if (i === from) throw new StrictJsonError(`unexpected character ${JSON.stringify(String.fromCharCode(c))}`, i);
      }
      ended = true;
    } else if (state === State.Key || state === State.KeyOrClose) {
      if (c !== QUOTE) throw new StrictJsonError('expected a key', i);
      const frame = stack[stack.length - 1]!;
      const end = stringEnd(buf, i);
      const key = keys.decode(i, end);
      const seen = frame.keys!;
      if (Array.isArray(seen) ? seen.includes(key) : seen.has(key)) throw new StrictJsonError(`duplicate key ${JSON.stringify(key)}`, i);
      if (!Array.isArray(seen)) seen.add(key);
      else if (seen.length < 16) seen.push(key);
      else frame.keys = new Set([...seen, key]);
      if (fields !== undefined && !frame.free) {
        const field = fields.variantOf(key);
        if (field !== undefined) throw new StrictJsonError(`key ${JSON.stringify(key)} is a case variant of the field ${JSON.stringify(field)}`, i);
      }
      frame.key = key;
      if (stack.length === 1) keyStart = i;
      i = end;
      while (i < n && isWs(buf[i]!)) i++;
      if (buf[i] !== 0x3a) throw new StrictJsonError('expected ":"', i);
      i++;
      state = State.Value;
      continue;
    } else {
      // State.After: a comma or the end of the enclosing container
      const frame = stack[stack.length - 1];
      if (frame === undefined) throw new StrictJsonError('data after the document', i);
      if (c === 0x2c) {
        state = frame.object ? State.Key : State.Value;
        i++;
        continue;
      }
      if (c !== (frame.object ? 0x7d : 0x5d)) throw new StrictJsonError(`expected "," or "${frame.object ? '}' : ']'}"`, i);
      stack.pop();
      i++;
      ended = true;
    }
    if (ended) {
      state = State.After;
      // a member of the top-level object ends here
      if (stack.length === 1 && stack[0]!.object) top.push({ key: stack[0]!.key, keyStart, valueStart, valueEnd: i });
    }
  }
}

/** scanJson, then JSON.parse of the same bytes: the value and the top-level members' offsets. */
export function readStrict(buf: Buffer, opts: StrictJsonOptions = {}): { value: unknown; members: TopMember[] } {
  const members = scanJson(buf, opts);
  try {
    return { value: JSON.parse(buf.toString('utf8')) as unknown, members };
  } catch (e) {
    throw new StrictJsonError((e as Error).message, 0);
  }
}

/** scanJson, then JSON.parse of the same bytes. Throws StrictJsonError for either. */
export function parseStrict(buf: Buffer, opts: StrictJsonOptions = {}): unknown {
  return readStrict(buf, opts).value;
}
