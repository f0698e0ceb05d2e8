#!/usr/bin/env node
'use strict';
// The command-line entry. libuv sizes its thread pool from UV_THREADPOOL_SIZE once, when the pool
// first starts, which happens while ES modules load; so it is set here, in CommonJS, before any of
// them. File I/O runs in that pool and an upload's fsync holds a thread for milliseconds: with the
// default 4 threads, 8 parallel pushes wait on each other (measured: 64 x 1 MiB uploads, 8 at a
// time, 107 MiB/s with 4 threads, 137 MiB/s with 16).
if (!process.env.UV_THREADPOOL_SIZE) process.env.UV_THREADPOOL_SIZE = '16';
import('../dist/src/cli/main.js').catch((e) => {
  process.stderr.write(`legacy-registry: ${e && e.stack ? e.stack : e}\n`);
  process.exit(1);
});
