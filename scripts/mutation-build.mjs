// Stryker's buildCommand (stryker.conf.mjs): compile the instrumented sandbox into its dist/.
// Stryker links node_modules into the sandbox only after the build, and tsc needs the type
// packages, so the link is made here first (Stryker then finds it in place and goes on).
import { execFileSync } from 'node:child_process';
import { existsSync, realpathSync, symlinkSync } from 'node:fs';
import { join, resolve } from 'node:path';

const sandbox = process.cwd();
// the sandbox is <project>/.stryker-tmp/sandbox-XXXX
const project = resolve(sandbox, '..', '..');
if (!existsSync(join(sandbox, 'node_modules'))) symlinkSync(realpathSync(join(project, 'node_modules')), join(sandbox, 'node_modules'), 'dir');
execFileSync(process.execPath, [join(sandbox, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json'], { stdio: 'inherit' });
