// Mutation testing (issue 17, docs/campaigns.md "Mutation testing"): StrykerJS with its command runner.
//
// How it works: Stryker copies the project to a sandbox (.stryker-tmp/), instruments the TypeScript
// sources listed in `mutate` (every mutant compiled in at once, switched on by the environment
// variable __STRYKER_ACTIVE_MUTANT__; the instrumented files get `// @ts-nocheck`), runs
// `buildCommand` once (tsc of the sandbox into its dist/), then runs the group's `command` once per
// mutant. The command is a small set of compiled test files (node --test) chosen to reach the
// mutated code through HTTP, so one mutant costs seconds, not minutes.
//
// One group per run: MUTATION_GROUP=access|tokens|checksums|uploads (npm run mutation runs all four).
//   MUTATION_GROUP=access nice -n 19 ionice -c3 npx stryker run stryker.conf.mjs
// Reports: reports/mutation/<group>.json and .html. Survivors and their explanations: docs/campaigns.md.

import { readFileSync } from 'node:fs';

/**
 * Ranges are found in the sources when Stryker starts, by the text that opens them, so edits and
 * reformatting elsewhere in a file do not move them onto other code (line numbers written here did).
 *   fn(file, opening): from the line containing `opening` to the closing brace at its indentation;
 *   span(file, first, last, next?): from the line containing `first` (and, when given, followed by a
 *   line containing `next`) to the first line from there containing `last`.
 */
const linesOf = (file) => readFileSync(new URL(file, import.meta.url), 'utf8').split('\n');
function find(file, lines, text, from = 0, next) {
  for (let i = from; i < lines.length; i++) if (lines[i].includes(text) && (next === undefined || (lines[i + 1] ?? '').includes(next))) return i;
  throw new Error(`stryker.conf.mjs: "${text}" not found in ${file}: update the mutation range`);
}
function fn(file, opening) {
  const lines = linesOf(file);
  const i = find(file, lines, opening);
  const indent = /^\s*/.exec(lines[i])[0];
  let j = i + 1;
  while (j < lines.length && !(lines[j].startsWith(`${indent}}`) && /^\s*\}/.test(lines[j]))) j++;
  return `${file}:${i + 1}-${j + 1}`;
}
function span(file, first, last, next) {
  const lines = linesOf(file);
  const i = find(file, lines, first, 0, next);
  return `${file}:${i + 1}-${find(file, lines, last, i) + 1}`;
}

const GROUPS = {
  // Who may do what: index/access.ts (rightsOn) and the registry's token-mode decision
  // (TokenAuth.authorize). Time-boxed (2 cores, shared): parseTokenHeader, ask() and the validation
  // cache are exercised by mutation-access.test.ts but not mutated.
  access: {
    mutate: ['src/index/access.ts', fn('src/auth/registry-token.ts', 'async authorize(req: AuthRequest)')],
    tests: ['dist/test/protocol/mutation-access.test.js'],
  },
  // Token verification: the MAC and expiry checks of V1TokenSigner.verify, TokenV2Authorizer.authorize
  // and missingAccess. Time-boxed (2 shared cores at load 20-30): the header parsing of verify,
  // V2TokenVerifier.check, issue, parseBasic, accessOf and the challenge text are exercised by
  // mutation-tokens.test.ts but not mutated; widen the ranges on a quiet machine.
  tokens: {
    mutate: [
      span('src/auth/v1-token.ts', 'const body = `${m[1]}.${m[2]}.${m[3]}`;', 'return { repository, access, userId: Number(m[2]), expires };'),
      fn('src/auth/v2-registry-auth.ts', 'async authorize(ctx: Context'),
      fn('src/auth/v2-scope.ts', 'export function missingAccess('),
    ],
    tests: ['dist/test/unit/auth/v1-token.test.js', 'dist/test/protocol/mutation-tokens.test.js'],
  },
  // Checksums: the payload/tarsum verification of PUT checksum (R7). Time-boxed: tarsumMatches and
  // digest.ts (their unit tests run in the command) are not mutated.
  checksums: {
    mutate: [fn('src/content/v1-images.ts', 'async putChecksum(')],
    tests: ['dist/test/unit/digest/digest.test.js', 'dist/test/unit/content/tarsum-matches.test.js', 'dist/test/protocol/mutation-checksums.test.js'],
  },
  // Upload commit: the digest check before a v2 upload is published (V2Uploads.finish), and the blob
  // store's ingest, publish and putSmall (nothing is published at a digest its bytes do not hash to).
  uploads: {
    mutate: [
      // finish(): from the digest check to the publish of the claimed file
      span('src/content/v2-uploads.ts', 'this.hashes.delete(uuid);', '} finally {', 'const actual = '),
      fn('src/content/blob-store.ts', 'async ingest(source'),
      fn('src/content/blob-store.ts', 'private async ingestAt('),
      fn('src/content/blob-store.ts', 'async publish(uploadKey'),
      fn('src/content/blob-store.ts', 'async putSmall('),
    ],
    tests: ['dist/test/protocol/mutation-uploads.test.js'],
  },
};

const name = process.env.MUTATION_GROUP ?? 'access';
const group = GROUPS[name];
if (!group) throw new Error(`MUTATION_GROUP=${name}: one of ${Object.keys(GROUPS).join(', ')}`);

/** @type {import('@stryker-mutator/api/core').PartialStrykerOptions} */
export default {
  testRunner: 'command',
  commandRunner: { command: `node --test --test-concurrency=1 ${group.tests.join(' ')}` },
  buildCommand: 'node scripts/mutation-build.mjs',
  mutate: group.mutate,
  // dist is rebuilt in the sandbox from the instrumented sources
  ignorePatterns: ['dist', 'data', 'reports', 'bench/results', 'docs', '.stryker-tmp'],
  coverageAnalysis: 'off',
  concurrency: 1,
  timeoutMS: 60000,
  timeoutFactor: 2,
  reporters: ['clear-text', 'json', 'html', 'progress'],
  jsonReporter: { fileName: `reports/mutation/${name}.json` },
  htmlReporter: { fileName: `reports/mutation/${name}.html` },
  tempDirName: '.stryker-tmp',
  cleanTempDir: true,
};
