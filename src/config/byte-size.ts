/** A size in bytes: a number, or a string such as `8MiB`, `512k`, `2G` (powers of 1024). */
const UNITS: Record<string, number> = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 };

export function parseByteSize(v: number | string): number {
  if (typeof v === 'number') return v;
  const m = /^(\d+)\s*([kKmMgGtT]?)/.exec(v);
  if (!m) throw new Error(`bad size ${v}`);
  return Number(m[1]) * (UNITS[(m[2] ?? '').toLowerCase()] ?? 1);
}
