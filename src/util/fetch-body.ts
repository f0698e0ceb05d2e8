/**
 * The body of a fetch() answer from a peer (the index, for a registry split from it), read up to a
 * bound: a peer that answers without end, or far more than the call needs, is cut off there.
 */
import { printable } from './text.js';

/** The answer is larger than the caller reads. */
export class AnswerTooLarge extends Error {
  constructor(max: number) {
    super(`the answer is larger than ${max} bytes`);
    this.name = 'AnswerTooLarge';
  }
}

/** At most `max` bytes of the body; `whole`: whether that was all of it (the rest is not read). */
async function readUpTo(r: Response, max: number): Promise<{ bytes: Buffer; whole: boolean }> {
  const chunks: Buffer[] = [];
  let size = 0;
  const reader = r.body?.getReader();
  if (!reader) return { bytes: Buffer.alloc(0), whole: true };
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return { bytes: Buffer.concat(chunks, size), whole: true };
      const take = Math.min(value.byteLength, max - size);
      chunks.push(Buffer.from(value.buffer, value.byteOffset, take));
      size += take;
      if (take < value.byteLength || size >= max) {
        // exactly max bytes and nothing after them is whole too
        const next = take < value.byteLength ? { done: false } : await reader.read();
        return { bytes: Buffer.concat(chunks, size), whole: next.done === true };
      }
    }
  } finally {
    await reader.cancel().catch(() => undefined);
  }
}

/** The body, at most `max` bytes; AnswerTooLarge past that. */
export async function bodyCapped(r: Response, max: number): Promise<Buffer> {
  const { bytes, whole } = await readUpTo(r, max);
  if (!whole) throw new AnswerTooLarge(max);
  return bytes;
}

/** The start of an error answer's text for a message (printable: `max` characters at most, no control characters). */
export async function answerPrefix(r: Response, max = 300): Promise<string> {
  const { bytes, whole } = await readUpTo(r, max * 4).catch(() => ({ bytes: Buffer.alloc(0), whole: true }));
  const text = printable(bytes.toString('utf8'), max);
  return whole || text.endsWith('…') ? text : `${text}…`;
}
