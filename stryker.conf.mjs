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

const GROUPS = {
  // Who may do what: index/access.ts (rightsOn) and the registry's token-mode decision
  // (TokenAuth.authorize). Time-boxed (2 cores, shared): parseTokenHeader, ask() and the validation
  // cache are exercised by mutation-access.test.ts but not mutated.
  access: {
    mutate: ['src/index/access.ts', 'src/auth/registry-token.ts:72-96'],
    tests: ['dist/test/protocol/mutation-access.test.js'],
  },
  // Token verification: the MAC and expiry checks of V1TokenSigner.verify, TokenV2Authorizer.authorize
  // and missingAccess. Time-boxed (2 shared cores at load 20-30): the header parsing of verify,
  // V2TokenVerifier.check, issue, parseBasic, accessOf and the challenge text are exercised by
  // mutation-tokens.test.ts but not mutated; widen the ranges on a quiet machine.
  tokens: {
    mutate: [
      'src/auth/v1-token.ts:49-55',
      'src/auth/v2-registry-auth.ts:87-95',
      'src/auth/v2-scope.ts:69-77',
    ],
    tests: ['dist/test/unit/auth/v1-token.test.js', 'dist/test/protocol/mutation-tokens.test.js'],
  },
  // Checksums: the payload/tarsum verification of PUT checksum (R7). Time-boxed: tarsumMatches and
  // digest.ts (their unit tests run in the command) are not mutated.
  checksums: {
    mutate: ['src/content/v1-images.ts:233-262'],
    tests: ['dist/test/unit/digest/digest.test.js', 'dist/test/unit/content/tarsum-matches.test.js', 'dist/test/protocol/mutation-checksums.test.js'],
  },
  // Upload commit: the digest check before a v2 upload is published (V2Uploads.finish), and the blob
  // store's ingest, publish and putSmall (nothing is published at a digest its bytes do not hash to).
  uploads: {
    mutate: ['src/content/v2-uploads.ts:310-322', 'src/content/blob-store.ts:119-148', 'src/content/blob-store.ts:157-170'],
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
