const UNIT_NS: Record<string, number> = { ns: 1, us: 1e3, µs: 1e3, μs: 1e3, ms: 1e6, s: 1e9, m: 60e9, h: 3600e9 };

/**
 * A Go duration (`10s`, `1h30m`, `1.5h`, `300ms`, `-2m`) in seconds. A number is nanoseconds, as
 * when Go decodes a bare integer into a time.Duration. Throws on anything else.
 */
export function parseGoDuration(v: unknown): number {
  if (typeof v === 'number' && Number.isFinite(v)) return v / 1e9;
  if (typeof v !== 'string') throw new Error(`expected a duration such as 10s or 1h30m, got ${JSON.stringify(v)}`);
  const s = v.trim();
  if (s === '0') return 0;
  const m = /^([-+]?)((?:(?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|μs|ms|s|m|h))+)$/.exec(s);
  if (!m) throw new Error(`expected a duration such as 10s or 1h30m, got ${JSON.stringify(v)}`);
  let ns = 0;
  for (const part of m[2]!.matchAll(/(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)/g)) ns += Number(part[1]) * UNIT_NS[part[2]!]!;
  return (m[1] === '-' ? -ns : ns) / 1e9;
}
