import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

function findRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const up = dirname(dir);
    if (up === dir) throw new Error('project root not found');
    dir = up;
  }
  return dir;
}

/** The project root (the folder holding package.json), whether run from src or dist. */
export const ROOT = findRoot();
export const FIXTURES = join(ROOT, 'test', 'fixtures');
export const VECTORS = join(FIXTURES, 'vectors');
