import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { createServer, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { plainGet } from '../../../src/storage/drivers/s3-get.js';
import { recyclerOf } from '../../../src/storage/recycle.js';

/**
 * The bare GET of the S3 driver and the mirror's upstream reads the body straight into its pieces
 * (the socket's next read goes into the free end of the piece being filled). These tests serve
 * answers in awkward writes from a raw TCP server on loopback and check every byte.
 */

/** A server that answers each connection with `writes` (Buffers, written one per turn). */
async function serve(writes: (sock: Socket) => Promise<void>): Promise<{ url: URL; server: Server }> {
  const server = createServer((sock) => {
    sock.once('data', () => void writes(sock).catch(() => sock.destroy()));
    sock.on('error', () => undefined);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return { url: new URL(`http://127.0.0.1:${(server.address() as AddressInfo).port}/bucket/key`), server };
}

const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

/** Writes `data` in pieces of the given sizes (cycled), a turn of the event loop between them. */
async function writeInPieces(sock: Socket, data: Buffer, sizes: readonly number[]): Promise<void> {
  let at = 0;
  for (let i = 0; at < data.length; i++) {
    const n = Math.min(sizes[i % sizes.length]!, data.length - at);
    sock.write(data.subarray(at, at + n));
    at += n;
    if (i % 3 === 0) await turn();
  }
}

async function readAll(
  body: NodeJS.ReadableStream & { on: (e: string, f: (...a: unknown[]) => void) => unknown },
  give?: (piece: Buffer) => void,
): Promise<{ data: Buffer; pieces: number[] }> {
  const parts: Buffer[] = [];
  const pieces: number[] = [];
  await new Promise<void>((resolve, reject) => {
    body.on('data', (c) => {
      const piece = c as Buffer;
      pieces.push(piece.length);
      // a copy: a recycled piece is reused by the reader once given back
      parts.push(Buffer.from(piece));
      if (give) give(piece);
    });
    body.on('end', () => resolve());
    body.on('error', (e) => reject(e as Error));
  });
  return { data: Buffer.concat(parts), pieces };
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

describe('plainGet: the body read straight into pieces', () => {
  for (const [label, sizes] of [
    ['one byte at a time at first, then large writes', [1, 1, 1, 7, 1000, 65536, 200_000, 3]],
    ['writes smaller than a piece', [4093, 10_007]],
    ['writes larger than a piece', [300_001]],
  ] as const) {
    it(`gives exactly the body, in pieces of at most the piece size (${label})`, async () => {
      const body = randomBytes(1_000_003);
      const head = Buffer.from(`HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\nX-Other: a\r\n\r\n`);
      const { url, server } = await serve((sock) => writeInPieces(sock, Buffer.concat([head, body]), sizes));
      try {
        const a = await plainGet(url, {}, { piece: 65_536, timeoutMs: 5000 });
        assert.equal(a.status, 200);
        assert.equal(a.headers.get('x-other'), 'a');
        const { data, pieces } = await readAll(a.body);
        assert.equal(data.length, body.length);
        assert.equal(sha(data), sha(body));
        assert.ok(pieces.every((n) => n > 0 && n <= 65_536));
        // every piece but the last is full: reads do not leave holes
        assert.ok(pieces.slice(0, -1).every((n) => n === 65_536));
      } finally {
        server.close();
      }
    });
  }

  it('pieces given back are reused, and a reused piece never carries old bytes into the body', async () => {
    const body = randomBytes(3 * 1024 * 1024 + 17);
    const head = Buffer.from(`HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n`);
    const { url, server } = await serve((sock) => writeInPieces(sock, Buffer.concat([head, body]), [70_000, 1, 5000, 123_457]));
    try {
      const a = await plainGet(url, {}, { piece: 131_072, timeoutMs: 5000 });
      const pool = recyclerOf(a.body)!;
      pool.enable();
      const seen = new Set<ArrayBufferLike>();
      let reused = 0;
      const { data } = await readAll(a.body, (piece) => {
        if (seen.has(piece.buffer)) reused++;
        seen.add(piece.buffer);
        // scribble over the piece before giving it back: stale bytes must never reach the body
        piece.fill(0xee);
        pool.give(piece);
      });
      assert.equal(sha(data), sha(body));
      assert.ok(reused > 0, 'pieces came back from the pool');
    } finally {
      server.close();
    }
  });

  it('an empty body ends at once', async () => {
    const { url, server } = await serve(async (sock) => {
      sock.write('HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n');
    });
    try {
      const a = await plainGet(url, {}, { piece: 65_536, timeoutMs: 5000 });
      const { data } = await readAll(a.body);
      assert.equal(data.length, 0);
    } finally {
      server.close();
    }
  });

  it('a connection closed before the end of the body is an error, not a short body', async () => {
    const body = randomBytes(500_000);
    const { url, server } = await serve(async (sock) => {
      sock.write(`HTTP/1.1 200 OK\r\nContent-Length: ${body.length + 10}\r\n\r\n`);
      await writeInPieces(sock, body, [65_536]);
      await turn();
      sock.destroy();
    });
    try {
      const a = await plainGet(url, {}, { piece: 65_536, timeoutMs: 5000 });
      await assert.rejects(readAll(a.body), /bytes of the body missing/);
    } finally {
      server.close();
    }
  });

  it('bytes sent past Content-Length are not part of the body', async () => {
    const body = randomBytes(200_000);
    const { url, server } = await serve(async (sock) => {
      sock.write(Buffer.concat([Buffer.from(`HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n`), body, Buffer.alloc(4096, 1)]));
    });
    try {
      const a = await plainGet(url, {}, { piece: 65_536, timeoutMs: 5000 });
      const { data } = await readAll(a.body);
      assert.equal(sha(data), sha(body));
    } finally {
      server.close();
    }
  });
  it('a consumer that pauses longer than the timeout: no error when it reads on, and a stall after the pause is still caught', async () => {
    const piece = 65_536;
    const first = randomBytes(8 * piece);
    const rest = randomBytes(3 * piece);
    let readOn!: () => void;
    const resumed = new Promise<void>((r) => (readOn = r));
    let stall = false;
    const { url, server } = await serve(async (sock) => {
      sock.write(`HTTP/1.1 200 OK\r\nContent-Length: ${first.length + rest.length + (stall ? 1 : 0)}\r\n\r\n`);
      sock.write(first);
      // the rest a moment after the consumer reads on: less than the timeout after it, more after the
      // last bytes before the pause
      await resumed;
      await new Promise((r) => setTimeout(r, 150));
      sock.write(rest);
      // (stall: one byte never comes)
    });
    try {
      for (const stalls of [false, true]) {
        stall = stalls;
        const a = await plainGet(url, {}, { piece, timeoutMs: 300 });
        a.body.pause();
        // more than the timeout without reading: the socket is paused meanwhile
        await new Promise((r) => setTimeout(r, 600));
        readOn();
        a.body.resume();
        const t = Date.now();
        if (!stalls) {
          const { data } = await readAll(a.body);
          assert.equal(sha(data), sha(Buffer.concat([first, rest])));
        } else {
          let timer: NodeJS.Timeout | undefined;
          const outcome = await Promise.race([
            readAll(a.body).then(
              () => 'ended',
              (e: Error) => e.message,
            ),
            new Promise<string>((r) => (timer = setTimeout(() => r('still waiting after 3 s'), 3_000))),
          ]);
          clearTimeout(timer);
          a.body.destroy();
          assert.match(outcome, /no data for 0.3 s/, 'a stall after the pause is an error within a few timeouts');
          assert.ok(Date.now() - t < 3_000);
        }
      }
    } finally {
      server.close();
    }
  });
});
