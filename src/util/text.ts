/** C0 and C1 control characters (NUL among them, which PostgreSQL refuses in text): never in a stored name, text or query. */
export const CONTROL_CHARS = /[\u0000-\u001f\u007f-\u009f]/;

/**
 * Text from a peer (a migrate target, an index) for an operator's terminal, log or report: runs of
 * control characters and of line, paragraph and bidirectional-override marks as one space, trimmed,
 * at most `max` characters (then an ellipsis).
 */
export function printable(s: string, max = 300): string {
  const t = s.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]+/g, ' ').trim();
  return t.length > max ? `${t.slice(0, max)}…` : t;
}
