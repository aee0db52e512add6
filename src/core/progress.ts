/**
 * Progress for long operations (migrations, seeding, benchmarks). On a TTY it redraws one
 * line; otherwise it prints a line at most every `everyMs` so CI logs stay readable.
 */
export interface Progress {
  /** Report that `done` of `total` units are finished. */
  update(done: number): void;
  /** Print the final line. */
  finish(message?: string): void;
}

export function createProgress(label: string, total: number, out: NodeJS.WriteStream = process.stderr, everyMs = 1000): Progress {
  const started = Date.now();
  // The first line waits one interval: a fast operation prints only its final line.
  let lastPrint = started;
  let last = 0;
  const line = (done: number): string => {
    const pct = total > 0 ? Math.min(100, Math.floor((done / total) * 100)) : 100;
    const width = 24;
    const filled = Math.round((pct / 100) * width);
    const secs = (Date.now() - started) / 1000;
    const rate = secs > 0 ? Math.round(done / secs) : 0;
    return `${label} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${pct}% ${done}/${total} (${rate}/s)`;
  };
  return {
    update(done) {
      last = done;
      const now = Date.now();
      if (out.isTTY) {
        if (now - lastPrint >= 100) {
          out.write(`\r${line(done)}`);
          lastPrint = now;
        }
      } else if (now - lastPrint >= everyMs) {
        out.write(`${line(done)}\n`);
        lastPrint = now;
      }
    },
    finish(message) {
      const text = `${line(last > 0 ? last : total)}${message ? ` ${message}` : ''}`;
      out.write(out.isTTY ? `\r${text}\n` : `${text}\n`);
    },
  };
}
