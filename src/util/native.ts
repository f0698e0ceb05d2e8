import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

/**
 * Loads one of the optional native modules that scripts/build-native.mjs builds into dist/native
 * (native/*.c): the module, or why there is none — turned off by its environment variable (`=0`),
 * not built, failed to load, or built but not usable here (its `available` export is false).
 */
export function loadNative<T extends { readonly available: boolean }>(
  name: string,
  offVariable: string,
  unavailable: string,
): { readonly native?: T; readonly reason: string } {
  if (process.env[offVariable] === '0') return { reason: `turned off (${offVariable}=0)` };
  // dist/native, two levels above dist/src/util
  const path = fileURLToPath(new URL(`../../native/${name}.node`, import.meta.url));
  if (!existsSync(path)) return { reason: `not built (${path})` };
  try {
    const m = createRequire(import.meta.url)(path) as T;
    if (!m.available) return { reason: unavailable };
    return { native: m, reason: 'loaded' };
  } catch (e) {
    return { reason: `failed to load: ${e instanceof Error ? e.message : String(e)}` };
  }
}
