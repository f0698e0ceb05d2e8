import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConfigError } from './config-error.js';

/** The package's config_sample.yml: the built-in defaults when no file is named. */
export function sampleConfigPath(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const candidate = join(dir, 'config_sample.yml');
    if (existsSync(candidate) && existsSync(join(dir, 'package.json'))) return candidate;
    const up = dirname(dir);
    if (up === dir) throw new ConfigError('config_sample.yml not found next to package.json');
    dir = up;
  }
}
