/**
 * Build anchor, not runtime code: tsconfig.json's `include` covers src/, test/ and bench/ only, so the
 * top-level migrations/ are compiled (to dist/migrations/, where `migrateLatest` loads them from) because
 * this file imports them. Add every new migration here — test/db checks none is missing — until
 * `"migrations/**\/*.ts"` joins tsconfig's `include`; then this file can go.
 */
export * as initial from '../../migrations/20261123000000_initial.js';
export * as searchIndex from '../../migrations/20261123000001_search_index.js';
export * as settings from '../../migrations/20261123000002_settings.js';
