import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** The version in package.json (0.0.0 when it cannot be read). Light: the CLI reads it before it loads any command's modules. */
export function packageVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(fileURLToPath(new URL('../../package.json', import.meta.url)), 'utf8')) as {
      version?: string;
    };
    return pkg.version ?? '0.0.0';
  } catch {
    return '0.0.0';
  }
}
