/**
 * JSON as Go's encoding/json writes it (spec v2-bridge §3.2 step 4), so a config built from v1 JSON
 * has the bytes — and so the image ID — Docker computed: map keys sorted, raw values compacted,
 * `<` `>` `&` U+2028 U+2029 escaped, only \" \\ \n \r \t as short escapes.
 *
 * Linear in the input whatever it holds (issue 10, finding 5: a config of 60 M `<` characters, each
 * appended to a string on its own, exhausted the heap): the encoders work on UTF-8 bytes, measure
 * the output in a first pass, write it into one buffer of that size in a second, and copy runs of
 * bytes that need no change in one piece.
 */

const HEX = '0123456789abcdef';
const QUOTE = 0x22;
const BACKSLASH = 0x5c;

/** Bytes a Go JSON string holds as they are (UTF-8 lead and continuation bytes included). */
const PLAIN = new Uint8Array(256);
for (let c = 0x20; c < 256; c++) PLAIN[c] = c === QUOTE || c === BACKSLASH || c === 0x3c || c === 0x3e || c === 0x26 ? 0 : 1;

/** Extra output bytes for a byte that is escaped in goString. */
function stringExtra(c: number): number {
  return c === QUOTE || c === BACKSLASH || c === 0x0a || c === 0x0d || c === 0x09 ? 1 : 5;
}

/** E2 80 A8 / E2 80 A9: U+2028 / U+2029, which Go escapes as \u2028 / \u2029. */
function isLineSeparator(src: Uint8Array, i: number): boolean {
  return src[i] === 0xe2 && src[i + 1] === 0x80 && (src[i + 2] === 0xa8 || src[i + 2] === 0xa9);
}

/** Copy src[from, to) to out at o; short runs byte by byte (a native call costs more). */
function copyRun(src: Buffer, from: number, to: number, out: Buffer, o: number): number {
  if (to - from > 16) return o + src.copy(out, o, from, to);
  for (let i = from; i < to; i++) out[o++] = src[i]!;
  return o;
}

function writeUnicodeEscape(out: Buffer, o: number, code: number): number {
  out[o++] = BACKSLASH;
  out[o++] = 0x75;
  out[o++] = HEX.charCodeAt((code >> 12) & 15);
  out[o++] = HEX.charCodeAt((code >> 8) & 15);
  out[o++] = HEX.charCodeAt((code >> 4) & 15);
  out[o++] = HEX.charCodeAt(code & 15);
  return o;
}

const NEEDS_ESCAPE = /["\\\u0000-\u001f<>&\u2028\u2029]/;

/** A string as Go's encoding/json encodes it (with HTML escaping), quotes included. */
export function goString(s: string): string {
  if (!NEEDS_ESCAPE.test(s)) return `"${s}"`;
  const src = Buffer.from(s, 'utf8');
  const n = src.length;
  let size = n + 2;
  for (let i = 0; i < n; i++) {
    const c = src[i]!;
    if (PLAIN[c] === 0) size += stringExtra(c);
    else if (c === 0xe2 && isLineSeparator(src, i)) {
      size += 3;
      i += 2;
    }
  }
  const out = Buffer.allocUnsafe(size);
  out[0] = QUOTE;
  let o = 1;
  let run = 0;
  for (let i = 0; i < n; i++) {
    const c = src[i]!;
    if (PLAIN[c] === 1) {
      if (c !== 0xe2 || !isLineSeparator(src, i)) continue;
      o = copyRun(src, run, i, out, o);
      o = writeUnicodeEscape(out, o, src[i + 2] === 0xa8 ? 0x2028 : 0x2029);
      i += 2;
      run = i + 1;
      continue;
    }
    o = copyRun(src, run, i, out, o);
    run = i + 1;
    if (c === QUOTE || c === BACKSLASH) {
      out[o++] = BACKSLASH;
      out[o++] = c;
    } else if (c === 0x0a || c === 0x0d || c === 0x09) {
      out[o++] = BACKSLASH;
      out[o++] = c === 0x0a ? 0x6e : c === 0x0d ? 0x72 : 0x74;
    } else o = writeUnicodeEscape(out, o, c);
  }
  o = copyRun(src, run, n, out, o);
  out[o++] = QUOTE;
  return out.toString('utf8', 0, o);
}

const COMPACT_WORK = /[ \t\n\r<>&\u2028\u2029]/;

/**
 * One pass of goCompact over src: with `out`, writes and returns the end offset; without, returns
 * the output length. Outside strings the four JSON whitespace bytes go; inside strings `<` `>` `&`
 * U+2028 U+2029 are escaped and an escape sequence (backslash and the next byte) is kept as it is.
 */
function compactPass(src: Buffer, out: Buffer | undefined): number {
  const n = src.length;
  let size = 0;
  let o = 0;
  let run = 0;
  let inString = false;
  for (let i = 0; i < n; i++) {
    const c = src[i]!;
    if (inString) {
      if (c === BACKSLASH) i++;
      else if (c === QUOTE) inString = false;
      else if (c === 0x3c || c === 0x3e || c === 0x26) {
        if (out) {
          o = copyRun(src, run, i, out, o);
          o = writeUnicodeEscape(out, o, c);
        } else size += 5;
        run = i + 1;
      } else if (c === 0xe2 && isLineSeparator(src, i)) {
        if (out) {
          o = copyRun(src, run, i, out, o);
          o = writeUnicodeEscape(out, o, src[i + 2] === 0xa8 ? 0x2028 : 0x2029);
        } else size += 3;
        i += 2;
        run = i + 1;
      }
    } else if (c === QUOTE) inString = true;
    else if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) {
      if (out) o = copyRun(src, run, i, out, o);
      else size--;
      run = i + 1;
    }
  }
  if (!out) return n + size;
  return copyRun(src, run, n, out, o);
}

/** Compact raw JSON text (whitespace outside strings removed) and escape HTML characters in strings. */
export function goCompact(raw: string): string {
  if (!COMPACT_WORK.test(raw)) return raw;
  const src = Buffer.from(raw, 'utf8');
  const out = Buffer.allocUnsafe(compactPass(src, undefined));
  const end = compactPass(src, out);
  return out.toString('utf8', 0, end);
}

const isWs = (c: number): boolean => c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;

/** The top-level members of a JSON object as raw text, in order (a later duplicate wins, as in Go). */
export function topLevelMembers(text: string): Map<string, string> {
  const members = new Map<string, string>();
  const n = text.length;
  let i = 0;
  const ws = (): void => {
    while (i < n && isWs(text.charCodeAt(i))) i++;
  };
  /** Just past the string starting at `start`: the first quote not escaped (an even run of backslashes before it). */
  const stringEnd = (start: number): number => {
    let q = text.indexOf('"', start + 1);
    for (;;) {
      if (q < 0) throw new Error('unterminated string');
      let b = q - 1;
      while (b > start && text.charCodeAt(b) === BACKSLASH) b--;
      if ((q - 1 - b) % 2 === 0) return q + 1;
      q = text.indexOf('"', q + 1);
    }
  };
  const valueEnd = (start: number): number => {
    const c = text.charCodeAt(start);
    if (c === QUOTE) return stringEnd(start);
    if (c === 0x7b || c === 0x5b) {
      let depth = 0;
      let j = start;
      while (j < n) {
        const d = text.charCodeAt(j);
        if (d === QUOTE) {
          j = stringEnd(j);
          continue;
        }
        if (d === 0x7b || d === 0x5b) depth++;
        else if (d === 0x7d || d === 0x5d) {
          depth--;
          if (depth === 0) return j + 1;
        }
        j++;
      }
      throw new Error('unterminated value');
    }
    let j = start;
    while (j < n) {
      const d = text.charCodeAt(j);
      if (d === 0x2c || d === 0x7d || d === 0x5d || isWs(d)) break;
      j++;
    }
    return j;
  };
  ws();
  if (text.charCodeAt(i) !== 0x7b) throw new Error('not a JSON object');
  i++;
  ws();
  if (text.charCodeAt(i) === 0x7d) return members;
  for (;;) {
    ws();
    if (text.charCodeAt(i) !== QUOTE) throw new Error('expected a key');
    const ke = stringEnd(i);
    const key = JSON.parse(text.slice(i, ke)) as string;
    i = ke;
    ws();
    if (text.charCodeAt(i) !== 0x3a) throw new Error('expected :');
    i++;
    ws();
    const ve = valueEnd(i);
    members.delete(key);
    members.set(key, text.slice(i, ve));
    i = ve;
    ws();
    if (text.charCodeAt(i) === 0x2c) {
      i++;
      continue;
    }
    if (text.charCodeAt(i) === 0x7d) break;
    throw new Error('expected , or }');
  }
  return members;
}

/** A Go time.Time as encoding/json writes it: RFC 3339, fraction without trailing zeros, zone kept. */
export function goTime(s: string): string {
  const m = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$/.exec(s);
  if (!m) return s;
  const frac = (m[2] ?? '').replace(/0+$/, '');
  return `${m[1]}${frac ? `.${frac}` : ''}${m[3]}`;
}
