/**
 * JSON as the Python registry writes it: json.dumps(sort_keys=True) — separators ", " and ": ",
 * keys sorted, non-ASCII escaped as \uXXXX (ensure_ascii), no trailing newline (spec §1.2).
 */
export function pyJson(value: unknown): string {
  if (value === null || value === undefined) return 'null';
  if (typeof value === 'string') return pyString(value);
  if (typeof value === 'number') return Number.isFinite(value) ? String(value) : 'null';
  if (typeof value === 'boolean') return value ? 'true' : 'false';
  if (Array.isArray(value)) return `[${value.map(pyJson).join(', ')}]`;
  // a Date is an instant, written as ISO-8601 UTC (as JSON.stringify does; its fields would give {})
  if (value instanceof Date) return Number.isNaN(value.getTime()) ? 'null' : pyString(value.toISOString());
  if (typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${pyString(k)}: ${pyJson(v)}`).join(', ')}}`;
  }
  return 'null';
}

function pyString(s: string): string {
  return JSON.stringify(s).replace(/[\u0080-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}
