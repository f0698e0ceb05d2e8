#!/usr/bin/env node
// Heap snapshot summary (the soak's --heap-snapshots): self size and count per constructor or type,
// and with two snapshots, what grew between them. Reads V8's .heapsnapshot JSON (fields from its
// own meta section), so it needs no DevTools.
//
//   node scripts/heap-summary.mjs <snapshot> [<later snapshot>] [--top N]
import { readFileSync } from 'node:fs';

const args = process.argv.slice(2);
if (args.length === 0 || args.includes('--help') || args.includes('-h')) {
  console.log(`usage: node scripts/heap-summary.mjs <snapshot> [<later snapshot>] [--top N]
  one snapshot: the largest groups (constructor name, or the node type for strings, code, arrays…)
  two snapshots: the groups that grew most from the first to the second`);
  process.exit(args.length === 0 ? 2 : 0);
}
const topAt = args.indexOf('--top');
const TOP = topAt >= 0 ? Number(args[topAt + 1]) : 25;
const files = args.filter((a, i) => !a.startsWith('--') && !(topAt >= 0 && i === topAt + 1));

function summarize(path) {
  const snap = JSON.parse(readFileSync(path, 'utf8'));
  const meta = snap.snapshot.meta;
  const f = meta.node_fields;
  const types = meta.node_types[0];
  const width = f.length;
  const iType = f.indexOf('type');
  const iName = f.indexOf('name');
  const iSize = f.indexOf('self_size');
  const groups = new Map();
  let total = 0;
  for (let i = 0; i < snap.nodes.length; i += width) {
    const type = types[snap.nodes[i + iType]];
    const size = snap.nodes[i + iSize];
    total += size;
    // objects by constructor; everything else (string, code, array, hidden, closure…) by type,
    // closures by function name so a retained callback shows
    const key =
      type === 'object' || type === 'native'
        ? snap.strings[snap.nodes[i + iName]]
        : type === 'closure'
          ? `closure ${snap.strings[snap.nodes[i + iName]] || '(anonymous)'}`
          : `(${type})`;
    const g = groups.get(key) ?? { size: 0, count: 0 };
    g.size += size;
    g.count++;
    groups.set(key, g);
  }
  return { total, groups };
}

const mib = (n) => (n / 1048576).toFixed(2);
const a = summarize(files[0]);
if (files.length === 1) {
  console.log(`${files[0]}: ${mib(a.total)} MiB in ${[...a.groups.values()].reduce((n, g) => n + g.count, 0)} nodes`);
  const rows = [...a.groups].sort((x, y) => y[1].size - x[1].size).slice(0, TOP);
  for (const [k, g] of rows) console.log(`${mib(g.size).padStart(9)} MiB ${String(g.count).padStart(9)}  ${k.slice(0, 100)}`);
} else {
  const b = summarize(files[1]);
  console.log(`${mib(a.total)} → ${mib(b.total)} MiB (${mib(b.total - a.total)} MiB)`);
  const keys = new Set([...a.groups.keys(), ...b.groups.keys()]);
  const rows = [...keys]
    .map((k) => {
      const x = a.groups.get(k) ?? { size: 0, count: 0 };
      const y = b.groups.get(k) ?? { size: 0, count: 0 };
      return { k, ds: y.size - x.size, dc: y.count - x.count, size: y.size, count: y.count };
    })
    .sort((x, y) => y.ds - x.ds)
    .slice(0, TOP);
  for (const r of rows)
    console.log(`${(r.ds >= 0 ? '+' : '') + mib(r.ds)} MiB ${(r.dc >= 0 ? '+' : '') + r.dc} (now ${mib(r.size)} MiB, ${r.count})  ${r.k.slice(0, 100)}`);
}
