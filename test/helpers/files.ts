import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';

/** Paths of the regular files below dir (none when it does not exist). */
export async function filesUnder(dir: string): Promise<string[]> {
  try {
    const entries = await readdir(dir, { recursive: true, withFileTypes: true });
    return entries.filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name));
  } catch {
    return [];
  }
}

/**
 * Every regular file below dir (paths relative to it) with what a write changes: its inode (a
 * replacing rename), modification time and size. Two snapshots that differ name what was written.
 */
export async function fileStates(dir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const rel of await readdir(dir, { recursive: true })) {
    const st = await stat(join(dir, rel)).catch(() => undefined);
    if (st?.isFile()) out.set(rel, `${st.ino} ${st.mtimeMs} ${st.size}`);
  }
  return out;
}
