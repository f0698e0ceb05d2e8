// Builds the optional native modules into dist/native, as part of `npm run build`:
//   native/sha256x2.c -> dist/native/sha256x2.node   paired SHA-256 with the x86 SHA extensions (src/digest/sha256.ts)
//   native/gunzip.c   -> dist/native/gunzip.node     gunzip with a PCLMULQDQ CRC-32 (src/digest/gunzip-native.ts)
//   native/memory.c   -> dist/native/memory.node     malloc_trim once the server is idle (src/util/malloc-trim.ts)
//   native/directio.c -> dist/native/directio.node   aligned buffers for O_DIRECT blob writes (src/storage/direct-io.ts)
//   native/sendfile.c -> dist/native/sendfile.node   sendfile(2) for downloads over plain HTTP (src/http/sendfile.ts)
//   native/beneath.c  -> dist/native/beneath.node    opens a source tree's files without leaving it (src/util/open-beneath.ts)
// They need a C compiler ($CC, or cc, gcc or clang) and Node's headers (node_api.h), which sqlite3's
// build needs as well. Each module is optional: where one cannot be built (another architecture or
// system, no compiler, no headers) the server does without it (node:crypto; no trim), and this
// script says why and exits 0 — unless LR_NATIVE=required, when it fails.
//
//   node scripts/build-native.mjs [--help]
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

if (process.argv.includes('--help')) {
  console.log('usage: node scripts/build-native.mjs   (CC: the compiler; LR_NATIVE=required: fail when a module cannot be built)');
  process.exit(0);
}

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const required = process.env.LR_NATIVE === 'required';
const modules = [
  { name: 'sha256x2', without: 'layers are hashed with node:crypto', arch: ['x64'] },
  { name: 'gunzip', without: "layers are inflated with node:zlib (zlib's table CRC)", arch: ['x64'] },
  { name: 'memory', without: 'an idle server does not trim the C heap', arch: ['x64', 'arm64'] },
  { name: 'directio', without: 'big blobs are written through the page cache', arch: ['x64', 'arm64'] },
  { name: 'sendfile', without: 'downloads are read into buffers and written to the socket', arch: ['x64', 'arm64'] },
  {
    name: 'beneath',
    without: 'an import checks each file it opened of a local tree afterwards (/proc/self/fd), or only beforehand off Linux',
    arch: ['x64', 'arm64'],
  },
];

// dist/native exists either way (the container build copies it)
mkdirSync(join(root, 'dist', 'native'), { recursive: true });
// Node's headers: beside the node binary (official builds, Debian's /usr), or npm's nodedir
const includes = [
  join(dirname(process.execPath), '..', 'include', 'node'),
  process.env.npm_config_nodedir && join(process.env.npm_config_nodedir, 'include', 'node'),
  '/usr/include/node',
].filter(Boolean);
const include = includes.find((d) => existsSync(join(d, 'node_api.h')));
// $CC, else the first C compiler found
const cc = process.env.CC || ['cc', 'gcc', 'clang'].find((c) => spawnSync(c, ['--version'], { stdio: 'ignore' }).status === 0) || 'cc';

let failed = false;
for (const m of modules) {
  const out = join(root, 'dist', 'native', `${m.name}.node`);
  const why = build(m, out);
  if (why === undefined) {
    console.log(`${m.name}: built ${out}`);
    continue;
  }
  // no module from an earlier build is left to be loaded in its place
  rmSync(out, { force: true });
  console.log(`${m.name}: not built (${why}); ${m.without}`);
  failed = true;
}
if (failed && required) {
  console.error('LR_NATIVE=required: a native module was not built');
  process.exit(1);
}

/** Compiles one module into `out`; returns why not, or undefined when built. */
function build(m, out) {
  if (process.platform !== 'linux' || !m.arch.includes(process.arch))
    return `${process.platform}/${process.arch}: the module is for Linux on ${m.arch.join(', ')}`;
  if (!include) return `no node_api.h in ${includes.join(', ')}`;
  const tmp = `${out}.${process.pid}.tmp`;
  const r = spawnSync(
    cc,
    ['-O3', '-Wall', '-Wextra', '-Werror', '-shared', '-fPIC', '-fvisibility=hidden', `-I${include}`, '-o', tmp, join(root, 'native', `${m.name}.c`)],
    {
      encoding: 'utf8',
    },
  );
  if (r.error) return `${cc}: ${r.error.message}`;
  if (r.status !== 0) {
    rmSync(tmp, { force: true });
    return `${cc} failed:\n${r.stderr}`;
  }
  renameSync(tmp, out);
  return undefined;
}
