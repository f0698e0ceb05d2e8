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
  // Who may do what: index/access.ts (rightsOn) and the registry's token mode (parseTokenHeader,
  // TokenAuth.authorize, and the index's answer in ask()). The validation cache (validate) is left out.
  access: {
    mutate: ['src/index/access.ts', 'src/auth/registry-token.ts:135-211', 'src/auth/registry-token.ts:240-258'],
    tests: ['dist/test/protocol/mutation-access.test.js'],
  },
  // Token verification: v1 tokens (sign, verify, Basic parsing), v2 JWTs (verify/check, the access
  // claim), the /v2/ authorizer's decision and challenge, and the scope comparison.
  tokens: {
    mutate: [
      'src/auth/v1-token.ts',
      'src/auth/v2-jwt.ts:227-285',
      'src/auth/v2-registry-auth.ts:376-394',
      'src/auth/v2-scope.ts:477-489',
    ],
    tests: ['dist/test/protocol/mutation-tokens.test.js'],
  },
  // Checksums: the payload/tarsum verification of PUT checksum (R7) and tarsumMatches, the digest
  // grammar and hashing helpers.
  checksums: {
    mutate: ['src/content/v1-images.ts:232-262', 'src/content/v1-images.ts:469-479', 'src/digest/digest.ts'],
    tests: ['dist/test/unit/digest/digest.test.js', 'dist/test/unit/content/tarsum-matches.test.js', 'dist/test/protocol/mutation-checksums.test.js'],
  },
  // Upload commit: the digest check before publishing a v2 upload, and the blob store's ingest,
  // publish and putSmall (nothing is published at a digest its bytes do not hash to).
  uploads: {
    mutate: ['src/content/v2-uploads.ts:279-325', 'src/content/blob-store.ts:112-170'],
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
