// A one-line progress bar on stderr (redrawn in place on a terminal, one line per 10% otherwise).
export class Progress {
  private start = Date.now();
  private lastPct = -1;
  constructor(private label: string, private stream: NodeJS.WriteStream = process.stderr) {}

  update(done: number, total: number, extra = '') {
    const frac = total > 0 ? done / total : 1;
    const secs = (Date.now() - this.start) / 1000;
    const eta = frac > 0 ? (secs / frac) * (1 - frac) : 0;
    const width = 24;
    const bar = '#'.repeat(Math.round(frac * width)).padEnd(width, '.');
    const line = `${this.label} [${bar}] ${done}/${total} ${extra} eta ${eta.toFixed(0)}s`;
    if (this.stream.isTTY) {
      this.stream.write(`\r${line}\x1b[K`);
      if (done >= total) this.stream.write('\n');
    } else {
      const pct = Math.floor(frac * 10);
      if (pct !== this.lastPct) {
        this.lastPct = pct;
        this.stream.write(`${line}\n`);
      }
    }
  }
}
