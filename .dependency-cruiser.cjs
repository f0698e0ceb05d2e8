/**
 * Dependency rules checked in CI (`npm run depcheck`, issue 17), the layering of the project's
 * architecture notes: storage knows bytes and keys only; content knows storage and formats, not
 * HTTP routing, auth or the index; nothing imports in a cycle.
 */
module.exports = {
  forbidden: [
    { name: 'no-circular', severity: 'error', comment: 'import cycles make modules impossible to change alone', from: {}, to: { circular: true } },
    {
      name: 'storage-knows-bytes-only',
      severity: 'error',
      comment: 'storage drivers know keys and bytes: no HTTP, content, auth, index, registry, v2 or web',
      from: { path: '^src/storage/' },
      to: { path: '^src/(http|content|auth|index|registry|v2|web|db|mirror|cli)/' },
    },
    {
      name: 'content-knows-no-auth-or-routes',
      severity: 'error',
      comment: 'content services are called by the routes after auth decided; they never decide access',
      from: { path: '^src/content/' },
      to: { path: '^src/(auth|index|registry|v2|web|cli)/' },
    },
    {
      name: 'db-knows-no-http',
      severity: 'error',
      from: { path: '^src/db/' },
      to: { path: '^src/(http|registry|v2|web|cli|index)/' },
    },
    {
      name: 'util-is-leaf',
      severity: 'error',
      comment: 'src/util holds dependency-free helpers every layer may use',
      from: { path: '^src/util/' },
      to: { path: '^src/(?!util/)' },
    },
    {
      name: 'src-not-from-tests',
      severity: 'error',
      from: { path: '^src/' },
      to: { path: '^(test|bench|campaigns)/' },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '^(dist|node_modules)/' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { extensions: ['.ts', '.tsx', '.js'] },
  },
};
