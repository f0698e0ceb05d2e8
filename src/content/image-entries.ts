import { RegistryError } from '../errors/index.js';
import { isImageId } from '../digest/digest.js';
import { CONTROL_CHARS } from '../util/text.js';

/** One entry of an image list as a client sends it (spec §3.6: key `Tag` capitalised). */
export interface ClientImageEntry {
  readonly id: string;
  readonly checksum?: string;
  readonly Tag?: string;
}

/**
 * The body of PUT /v1/repositories/<name>/ and …/images (spec §3.6, §7.4): a JSON array of
 * {id, checksum?, Tag?}, for the index and for a standalone registry's stand-in index alike. An id
 * that is no image id, or a checksum or tag the index's image list cannot hold (its columns: 255 and
 * 128 characters; no control character, PostgreSQL refuses NUL), is INVALID_DATA (400), before
 * anything is written. The stand-in index took any string before 2026-12-07: a list of 4 MiB
 * checksums reached its 64 MiB bound in a few requests.
 */
export function clientImageEntries(body: unknown): ClientImageEntry[] {
  if (!Array.isArray(body)) throw new RegistryError('INVALID_DATA');
  // a checksum or tag that is no string is dropped, as before (only text can break a column)
  const storable = (v: unknown, max: number): boolean => typeof v !== 'string' || (v.length <= max && !CONTROL_CHARS.test(v));
  return body.map((e: unknown) => {
    if (e === null || typeof e !== 'object') throw new RegistryError('INVALID_DATA');
    const { id, checksum, Tag } = e as Record<string, unknown>;
    if (typeof id !== 'string' || !isImageId(id)) throw new RegistryError('INVALID_DATA');
    if (!storable(checksum, 255) || !storable(Tag, 128)) throw new RegistryError('INVALID_DATA');
    return {
      id,
      ...(typeof checksum === 'string' && checksum !== '' ? { checksum } : {}),
      ...(typeof Tag === 'string' && Tag !== '' ? { Tag } : {}),
    };
  });
}
