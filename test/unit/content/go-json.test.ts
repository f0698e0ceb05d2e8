import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { goCompact, goString, topLevelMembers } from '../../../src/content/go-json.js';

/*
 * go-json was rewritten to be linear (issue 10, finding 5). The character-by-character encoders it
 * replaced are kept here as the reference: on every input the new ones must give the same bytes.
 */

// ---- reference: the previous implementation, unchanged ----
function refGoString(s: string): string {
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
function refGoCompact(raw: string): string {
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
function refTopLevelMembers(text: string): Map<string, string> {
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

// ---- end of reference ----

/** A small seeded PRNG (mulberry32), so a failure can be replayed. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const ALPHABET = [
  'a',
  'Z',
  ' ',
  '<',
  '>',
  '&',
  '"',
  '\\',
  '/',
  '\n',
  '\r',
  '\t',
  '\u0000',
  '\u001f',
  '\u007f',
  'é',
  '€',
  '\u2028',
  '\u2029',
  '\u2027',
  '😀',
  '{',
  '}',
  '[',
  ']',
  ':',
  ',',
];

function randomString(r: () => number, max: number): string {
  const len = Math.floor(r() * max);
  let s = '';
  for (let i = 0; i < len; i++) {
    // runs of one character too, as in the finding (60 M of "<")
    const ch = ALPHABET[Math.floor(r() * ALPHABET.length)]!;
    s += r() < 0.1 ? ch.repeat(1 + Math.floor(r() * 40)) : ch;
  }
  return s;
}

function randomValue(r: () => number, depth: number): unknown {
  const k = r();
  if (depth > 3 || k < 0.35) return randomString(r, 12);
  if (k < 0.45) return Math.floor(r() * 1e6) / 100;
  if (k < 0.5) return [true, false, null][Math.floor(r() * 3)];
  if (k < 0.75) return Array.from({ length: Math.floor(r() * 4) }, () => randomValue(r, depth + 1));
  const o: Record<string, unknown> = {};
  for (let i = Math.floor(r() * 4); i > 0; i--) o[randomString(r, 6)] = randomValue(r, depth + 1);
  return o;
}

/** JSON text of v with random insignificant whitespace. */
function randomText(r: () => number, v: unknown): string {
  const ws = (): string => [' ', '\n', '\t', '\r', '', '', ''][Math.floor(r() * 7)]!.repeat(1 + Math.floor(r() * 2));
  if (Array.isArray(v)) return `[${ws()}${v.map((x) => `${ws()}${randomText(r, x)}${ws()}`).join(',')}${ws()}]`;
  if (v !== null && typeof v === 'object') {
    return `{${ws()}${Object.entries(v)
      .map(([k, x]) => `${ws()}${JSON.stringify(k)}${ws()}:${ws()}${randomText(r, x)}${ws()}`)
      .join(',')}${ws()}}`;
  }
  return JSON.stringify(v);
}

const bytes = (s: string): Buffer => Buffer.from(s, 'utf8');

describe('go-json encoders: the same bytes as before, in linear time', () => {
  it('goString equals the reference on 5000 random strings (HTML characters, controls, U+2028/9, astral, runs)', () => {
    const r = rng(1);
    for (let n = 0; n < 5000; n++) {
      const s = randomString(r, 60);
      assert.deepEqual(bytes(goString(s)), bytes(refGoString(s)), JSON.stringify(s));
      assert.equal(JSON.parse(goString(s)), s);
    }
  });
  it('goString keeps a lone surrogate as the reference does once written as UTF-8', () => {
    for (const s of ['\ud800', 'a\udc00<', '<\ud83d']) assert.deepEqual(bytes(goString(s)), bytes(refGoString(s)));
  });
  it('goCompact equals the reference on 3000 random JSON texts with random whitespace', () => {
    const r = rng(2);
    for (let n = 0; n < 3000; n++) {
      const text = randomText(r, randomValue(r, 0));
      assert.deepEqual(bytes(goCompact(text)), bytes(refGoCompact(text)), text);
    }
  });
  it('goCompact keeps escape sequences as written and escapes only <, >, &, U+2028, U+2029 in strings', () => {
    const text = ' { "a" : "\\u003c<\\"&\\\\" , "b\u2028" : [ 1 , "\u2029" ] } ';
    assert.equal(goCompact(text), '{"a":"\\u003c\\u003c\\"\\u0026\\\\","b\\u2028":[1,"\\u2029"]}');
    assert.equal(goCompact(text), refGoCompact(text));
  });
  it('topLevelMembers equals the reference (order, raw values, a later duplicate wins)', () => {
    const r = rng(3);
    for (let n = 0; n < 2000; n++) {
      const v = randomValue(r, 1);
      const obj = v !== null && typeof v === 'object' && !Array.isArray(v) ? v : { v };
      let text = randomText(r, obj);
      if (r() < 0.2 && text.length > 2) text = `${text.slice(0, -1)}${Object.keys(obj).length ? ',' : ''}${JSON.stringify(Object.keys(obj)[0] ?? 'k')}:"dup"}`;
      assert.deepEqual([...topLevelMembers(text)], [...refTopLevelMembers(text)], text);
    }
  });
  it('an 8 MiB string of "<" is encoded whole (the v1 view and schema1 of finding 5)', () => {
    const s = '<'.repeat(8 * 1024 * 1024);
    const enc = goString(s);
    assert.equal(enc.length, 2 + 6 * s.length);
    assert.equal(enc.slice(0, 13), '"\\u003c\\u003c');
    const config = `{"config":{"Env":["${s}"]},"z":1}`;
    const members = topLevelMembers(config);
    assert.deepEqual([...members.keys()], ['config', 'z']);
    const compact = goCompact(members.get('config')!);
    assert.equal(compact.length, '{"Env":["'.length + 6 * s.length + '"]}'.length);
    // quotes around the string, a backslash before each of the 4 quotes and each of the s.length backslashes
    assert.equal(goString(compact).length, 2 + compact.length + 4 + s.length);
  });
});
