// Builds native/sha256x2.c (paired SHA-256 with the x86 SHA extensions, see src/digest/sha256.ts)
// into dist/native/sha256x2.node, as part of `npm run build`. It needs a C compiler ($CC, or cc,
// gcc or clang) and Node's headers (node_api.h), which sqlite3's build needs as well. The module is optional:
// where it cannot be built (another architecture, no compiler, no headers) the server hashes with
// node:crypto, and this script says why and exits 0 — unless LR_NATIVE=required, when it fails.
//
//   node scripts/build-native.mjs [--help]
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

if (process.argv.includes('--help')) {
  console.log('usage: node scripts/build-native.mjs   (CC: the compiler; LR_NATIVE=required: fail when it cannot be built)');
  process.exit(0);
}

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const source = join(root, 'native', 'sha256x2.c');
const out = join(root, 'dist', 'native', 'sha256x2.node');
const required = process.env.LR_NATIVE === 'required';

function skip(why) {
  // no module from an earlier build is left to be loaded in its place
  rmSync(out, { force: true });
  const msg = `sha256x2: not built (${why}); layers are hashed with node:crypto`;
  if (required) {
    console.error(`${msg} — LR_NATIVE=required`);
    process.exit(1);
  }
  console.log(msg);
  process.exit(0);
}

// dist/native exists either way (the container build copies it)
mkdirSync(dirname(out), { recursive: true });
if (process.arch !== 'x64' || process.platform !== 'linux') skip(`${process.platform}/${process.arch}: the module is for x86-64 Linux`);
// Node's headers: beside the node binary (official builds, Debian's /usr), or npm's nodedir
const includes = [
  join(dirname(process.execPath), '..', 'include', 'node'),
  process.env.npm_config_nodedir && join(process.env.npm_config_nodedir, 'include', 'node'),
  '/usr/include/node',
].filter(Boolean);
const include = includes.find((d) => existsSync(join(d, 'node_api.h')));
if (!include) skip(`no node_api.h in ${includes.join(', ')}`);

const tmp = `${out}.${process.pid}.tmp`;
// $CC, else the first C compiler found
const cc = process.env.CC || ['cc', 'gcc', 'clang'].find((c) => spawnSync(c, ['--version'], { stdio: 'ignore' }).status === 0) || 'cc';
const r = spawnSync(cc, ['-O3', '-Wall', '-Wextra', '-Werror', '-shared', '-fPIC', '-fvisibility=hidden', `-I${include}`, '-o', tmp, source], {
  encoding: 'utf8',
});
if (r.error) skip(`${cc}: ${r.error.message}`);
if (r.status !== 0) skip(`${cc} failed:\n${r.stderr}`);
renameSync(tmp, out);
console.log(`sha256x2: built ${out}`);
