import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { AnswerTooLarge, answerPrefix, bodyCapped } from '../../../src/util/fetch-body.js';

/** A fetch Response whose body is these chunks, then (endless) more of the last one for ever. */
function answer(chunks: readonly Uint8Array[], endless = false): { res: Response; pulled: () => number } {
  let i = 0;
  let pulled = 0;
  const stream = new ReadableStream<Uint8Array>({
    pull(c) {
      if (i < chunks.length) c.enqueue(chunks[i++]!);
      else if (endless) c.enqueue(chunks[chunks.length - 1]!);
      else return c.close();
      pulled++;
    },
  });
  return { res: new Response(stream), pulled: () => pulled };
}

describe('bodies of a peer’s answers, read up to a bound (src/util/fetch-body.ts)', () => {
  it('a body of exactly the bound is whole; one byte more is refused', async () => {
    assert.deepEqual(await bodyCapped(answer([Buffer.from('abc'), Buffer.from('de')]).res, 5), Buffer.from('abcde'));
    await assert.rejects(bodyCapped(answer([Buffer.from('abc'), Buffer.from('def')]).res, 5), AnswerTooLarge);
    await assert.rejects(bodyCapped(answer([Buffer.from('abcdef')]).res, 5), AnswerTooLarge);
    assert.deepEqual(await bodyCapped(answer([]).res, 5), Buffer.alloc(0));
  });

  it('an endless body is cut at the bound, not read on', async () => {
    const a = answer([Buffer.alloc(64 * 1024, 1)], true);
    await assert.rejects(bodyCapped(a.res, 1024 * 1024), AnswerTooLarge);
    assert.ok(a.pulled() <= 20, `${a.pulled()} chunks pulled for a 1 MiB bound`);
    const b = answer([Buffer.from('x'.repeat(1000))], true);
    const text = await answerPrefix(b.res, 300);
    assert.equal(text, `${'x'.repeat(300)}…`);
    assert.ok(b.pulled() <= 3);
  });

  it('an error text is shown without control characters (a run of them as one space, trimmed)', async () => {
    assert.equal(await answerPrefix(answer([Buffer.from('denied\r\n\u001b[31mred\u0000')]).res), 'denied [31mred');
    assert.equal(await answerPrefix(answer([Buffer.from('a\u202eb\u2028c')]).res), 'a b c');
  });
});
