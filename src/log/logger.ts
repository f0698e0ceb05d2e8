/** A small leveled logger writing one line per event to stderr: `time LEVEL message key=value…`. */
export type Level = 'debug' | 'info' | 'warn' | 'error' | 'silent';
const ORDER: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 };

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
  child(fields: Record<string, unknown>): Logger;
  /** Whether lines of this level are written (absent: assume they are). */
  enabled?(level: Exclude<Level, 'silent'>): boolean;
}

/** Map the PY loglevel names (warning, critical) onto ours. */
export function toLevel(name: string): Level {
  if (name === 'warning') return 'warn';
  if (name === 'critical') return 'error';
  return (name in ORDER ? name : 'info') as Level;
}

function fmt(v: unknown): string {
  if (v instanceof Error) return JSON.stringify(v.stack ?? v.message);
  if (typeof v === 'string') return /^[^\s"=]+$/.test(v) ? v : JSON.stringify(v);
  return JSON.stringify(v) ?? String(v);
}

function jsonValue(v: unknown): unknown {
  if (v instanceof Error) return v.stack ?? v.message;
  return v;
}

/**
 * format `text`: `time LEVEL message key=value…`; `json`: one object per line with time, level,
 * msg and the fields (distribution's log.formatter json; logstash maps here too).
 */
export function createLogger(
  level: Level,
  base: Record<string, unknown> = {},
  write: (line: string) => void = (l) => process.stderr.write(l),
  format: 'text' | 'json' = 'text',
): Logger {
  const min = ORDER[level];
  const emit = (lvl: Exclude<Level, 'silent'>, msg: string, fields?: Record<string, unknown>): void => {
    if (ORDER[lvl] < min) return;
    if (format === 'json') {
      const o: Record<string, unknown> = { time: new Date().toISOString(), level: lvl, msg };
      for (const [k, v] of Object.entries({ ...base, ...fields })) if (v !== undefined && !(k in o)) o[k] = jsonValue(v);
      write(JSON.stringify(o) + '\n');
      return;
    }
    let line = `${new Date().toISOString()} ${lvl.toUpperCase().padEnd(5)} ${msg}`;
    for (const [k, v] of Object.entries({ ...base, ...fields })) if (v !== undefined) line += ` ${k}=${fmt(v)}`;
    write(line + '\n');
  };
  return {
    debug: (m, f) => emit('debug', m, f),
    info: (m, f) => emit('info', m, f),
    warn: (m, f) => emit('warn', m, f),
    error: (m, f) => emit('error', m, f),
    child: (fields) => createLogger(level, { ...base, ...fields }, write, format),
    enabled: (lvl) => ORDER[lvl] >= min,
  };
}

/** The logger a configuration asks for (loglevel, log_format, log_fields). */
export function loggerFor(c: { loglevel: string; log_format: 'text' | 'json'; log_fields: Record<string, unknown> | null }): Logger {
  return createLogger(toLevel(c.loglevel), c.log_fields ?? {}, undefined, c.log_format);
}
