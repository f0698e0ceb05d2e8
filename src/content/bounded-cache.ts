// moved to src/util/bounded-cache.ts (storage uses it too); kept for code written against the old path
export * from '../util/bounded-cache.js';
