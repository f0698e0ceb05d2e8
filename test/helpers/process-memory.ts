import { readFileSync } from 'node:fs';

/** VmRSS of a process, MiB. */
export function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

/** Minor page faults of a process so far (/proc/<pid>/stat, field 10). */
export function minorFaults(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[7]);
}

/**
 * VmRSS of an idle process each second (MiB, one decimal) until it is at or under `boundMiB` or
 * `withinMs` have passed; the last entry is where it ended.
 */
export async function rssWhileIdle(pid: number, boundMiB: number, withinMs: number): Promise<number[]> {
  const seen: number[] = [];
  const end = Date.now() + withinMs;
  while (Date.now() < end) {
    await new Promise((r) => setTimeout(r, 1000));
    seen.push(Math.round(rssMiB(pid) * 10) / 10);
    if (seen.at(-1)! <= boundMiB) break;
  }
  return seen;
}
