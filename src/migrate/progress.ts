/**
 * One status line on stderr, redrawn at most 10 times a second, when stderr is a terminal (nothing
 * otherwise: logs and CI output stay clean). Counters are whatever the command tracks.
 */
export class Progress {
  private last = 0;
  private shown = false;
  private readonly tty: boolean;
  private readonly started = Date.now();
  constructor(
    private readonly label: string,
    enabled = true,
  ) {
    this.tty = enabled && process.stderr.isTTY === true;
  }

  update(counts: { done: number; total: number; items: number; bytes: number; note?: string }, force = false): void {
    if (!this.tty) return;
    const now = Date.now();
    if (!force && now - this.last < 100) return;
    this.last = now;
    const width = 24;
    const frac = counts.total > 0 ? Math.min(1, counts.done / counts.total) : 0;
    const bar = '#'.repeat(Math.round(frac * width)).padEnd(width, '.');
    const secs = Math.max(0.001, (now - this.started) / 1000);
    const mib = counts.bytes / (1024 * 1024);
    const line = `${this.label} [${bar}] ${counts.done}/${counts.total} repositories, ${counts.items} objects, ${mib.toFixed(1)} MiB (${(mib / secs).toFixed(1)} MiB/s)${counts.note ? ` ${counts.note}` : ''}`;
    const cols = process.stderr.columns || 120;
    process.stderr.write(`\r${line.slice(0, cols - 1).padEnd(cols - 1)}`);
    this.shown = true;
  }

  done(): void {
    if (this.tty && this.shown) process.stderr.write('\n');
  }
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1024 * 1024 * 1024) return `${(n / (1024 * 1024)).toFixed(1)} MiB`;
  return `${(n / (1024 * 1024 * 1024)).toFixed(2)} GiB`;
}
