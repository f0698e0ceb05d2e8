/**
 * JSON as Go's encoding/json writes it (spec v2-bridge §3.2 step 4), so a config built from v1 JSON
 * has the bytes — and so the image ID — Docker computed: map keys sorted, raw values compacted,
 * `<` `>` `&` U+2028 U+2029 escaped, only \" \\ \n \r \t as short escapes.
 */
export function goString(s: string): string {
  let out = '"';
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    const ch = s[i]!;
    if (ch === '"') out += '\\"';
    else if (ch === '\\') out += '\\\\';
    else if (ch === '\n') out += '\\n';
    else if (ch === '\r') out += '\\r';
    else if (ch === '\t') out += '\\t';
    else if (c < 0x20 || ch === '<' || ch === '>' || ch === '&' || c === 0x2028 || c === 0x2029) {
      out += `\\u${c.toString(16).padStart(4, '0')}`;
    } else out += ch;
  }
  return out + '"';
}

/** Compact raw JSON text (whitespace outside strings removed) and escape HTML characters in strings. */
export function goCompact(raw: string): string {
  let out = '';
  let inString = false;
  for (let i = 0; i < raw.length; i++) {
    const ch = raw[i]!;
    if (inString) {
      if (ch === '\\') {
        out += ch + raw[i + 1]!;
        i++;
        continue;
      }
      if (ch === '"') inString = false;
      if (ch === '<' || ch === '>' || ch === '&' || ch === '\u2028' || ch === '\u2029') {
        out += `\\u${ch.charCodeAt(0).toString(16).padStart(4, '0')}`;
      } else out += ch;
      continue;
    }
    if (ch === '"') {
      inString = true;
      out += ch;
    } else if (ch !== ' ' && ch !== '\n' && ch !== '\r' && ch !== '\t') out += ch;
  }
  return out;
}

/** The top-level members of a JSON object as raw text, in order (a later duplicate wins, as in Go). */
export function topLevelMembers(text: string): Map<string, string> {
  const members = new Map<string, string>();
  let i = 0;
  const ws = (): void => {
    while (i < text.length && ' \n\r\t'.includes(text[i]!)) i++;
  };
  const stringEnd = (start: number): number => {
    let j = start + 1;
    while (j < text.length && text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
    if (j >= text.length) throw new Error('unterminated string');
    return j + 1;
  };
  const valueEnd = (start: number): number => {
    const c = text[start];
    if (c === '"') return stringEnd(start);
    if (c === '{' || c === '[') {
      let depth = 0;
      let j = start;
      while (j < text.length) {
        const d = text[j]!;
        if (d === '"') {
          j = stringEnd(j);
          continue;
        }
        if (d === '{' || d === '[') depth++;
        else if (d === '}' || d === ']') {
          depth--;
          if (depth === 0) return j + 1;
        }
        j++;
      }
      throw new Error('unterminated value');
    }
    let j = start;
    while (j < text.length && !',}] \n\r\t'.includes(text[j]!)) j++;
    return j;
  };
  ws();
  if (text[i] !== '{') throw new Error('not a JSON object');
  i++;
  ws();
  if (text[i] === '}') return members;
  for (;;) {
    ws();
    const ke = stringEnd(i);
    const key = JSON.parse(text.slice(i, ke)) as string;
    i = ke;
    ws();
    if (text[i] !== ':') throw new Error('expected :');
    i++;
    ws();
    const ve = valueEnd(i);
    members.delete(key);
    members.set(key, text.slice(i, ve));
    i = ve;
    ws();
    if (text[i] === ',') {
      i++;
      continue;
    }
    if (text[i] === '}') break;
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
