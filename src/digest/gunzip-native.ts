import { loadNative } from '../util/native.js';

/**
 * native/gunzip.c: gzip inflated on libuv's thread pool by Node's own zlib, with each member's
 * CRC-32 folded with PCLMULQDQ (3.5× zlib's table CRC on this project's machines) and checked
 * against its trailer together with its length; everything else as node:zlib's Gunzip (members
 * read through, 0x00 padding after a member ends the stream, a stream ending inside a member is
 * "unexpected end of file"). Built by scripts/build-native.mjs; LR_NATIVE_GUNZIP=0 turns it off.
 */
export interface NativeGunzipModule {
  readonly available: boolean;
  create(): object;
  /**
   * Inflate `input` into `output` on the pool. cb(err, consumed, produced, atEnd): err is zlib's
   * message when the stream is broken (it stays broken); atEnd: a member ended and none is open.
   */
  run(handle: object, input: Uint8Array, output: Uint8Array, cb: (err: string | null, consumed: number, produced: number, atEnd: boolean) => void): void;
  close(handle: object): void;
  crc32(crc: number, bytes: Uint8Array): number;
}

const loaded = loadNative<NativeGunzipModule>('gunzip', 'LR_NATIVE_GUNZIP', 'this CPU has no PCLMULQDQ');

/** The module when it is built and usable here. */
export const nativeGunzip: NativeGunzipModule | undefined = loaded.native;
/** Whether it is used, and why not when it is not. */
export const nativeGunzipReason = loaded.reason;
