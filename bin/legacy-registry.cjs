#!/usr/bin/env node
'use strict';
// The command-line entry. libuv sizes its thread pool from UV_THREADPOOL_SIZE once, when the pool
// first starts, which happens while ES modules load; so it is set here, in CommonJS, before any of
// them. File I/O runs in that pool and an upload's fsync holds a thread for milliseconds: with the
// default 4 threads, 8 parallel pushes wait on each other (measured: 64 x 1 MiB uploads, 8 at a
// time, 107 MiB/s with 4 threads, 137 MiB/s with 16).
if (!process.env.UV_THREADPOOL_SIZE) process.env.UV_THREADPOOL_SIZE = '16';
// V8 starts a full GC from a task as soon as the old generation's headroom is less than the new
// space's capacity. Our heap is small (~20 MB live, limit ~45 MB) and the new space grows to 32 MB,
// so right after each full GC the headroom is "short" again, and a Mark-Compact ran every ~70 ms
// under uploads whatever they allocated (22 per 4 x 64 MiB of 1 MiB uploads, no scavenge at all).
// Without the task, marking starts when the old generation reaches its limit: 4-5 full GCs for the
// same uploads, 20-35 % less server CPU (docs/benchmarks.md, "Eighth look"). Set before any module
// loads; V8 reads the flag each time it would schedule the task.
require('node:v8').setFlagsFromString('--no-incremental-marking-task');
import('../dist/src/cli/main.js').catch((e) => {
  process.stderr.write(`legacy-registry: ${e && e.stack ? e.stack : e}\n`);
  process.exit(1);
});
