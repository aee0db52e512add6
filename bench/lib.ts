/** What the benchmark scripts share: starting a server process, waiting for it, measuring its memory. */
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import autocannon from 'autocannon';
import { ROOT } from '../test/helpers/processes.js';

/** Resident memory of a process in MB. */
export const rssMb = (pid: number) => {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Math.round(Number(m[1]) / 1024) : 0;
};

/** Progress lines go to stderr; the result table to stdout. */
export const log = (s: string) => process.stderr.write(`${s}\n`);

/** Poll `url` until it answers below 500 (or the server exits). */
export async function waitReady(url: string, child: ChildProcess) {
  for (let i = 0; i < 300; i++) {
    if (child.exitCode !== null) throw new Error(`server exited with ${child.exitCode}`);
    try {
      const r = await fetch(url);
      if (r.status < 500) return;
    } catch {}
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`server at ${url} did not start`);
}

/** A Node process from the repository root with only PATH and `env` in its environment. */
export function spawnServer(args: string[], env: Record<string, string>): ChildProcess {
  // BENCH_SERVER_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof" profiles the server.
  const nodeArgs = process.env.BENCH_SERVER_NODE_ARGS?.split(' ').filter(Boolean) ?? [];
  const child = spawn(process.execPath, [...nodeArgs, ...args], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', ...env },
    // BENCH_SERVER_LOGS=1 shows the server's log lines (set LOG_LEVEL in the script for more).
    stdio: ['ignore', process.env.BENCH_SERVER_LOGS ? 'inherit' : 'ignore', 'inherit'],
  });
  // A benchmark that fails half-way must not leave its server running.
  const kill = () => child.kill('SIGKILL');
  process.once('exit', kill);
  child.once('exit', () => process.off('exit', kill));
  return child;
}

/** What one measured autocannon run gives a result table. */
export interface Figures {
  rps: number;
  p50: number;
  p99: number;
  non2xx: number;
  errors: number;
}

/**
 * Drive `url` with one request plan: a warm-up run (not counted), then the measured run.
 * `request` is called before each run, so a plan can start from fresh state (tokens that rotate).
 * `beforeMeasure` runs between the two (to reset a sampler).
 */
export async function measure(opts: {
  url: string;
  connections: number;
  warmup: number;
  duration: number;
  request: () => autocannon.Request | Promise<autocannon.Request>;
  beforeMeasure?: () => void;
}): Promise<Figures> {
  const run = async (secs: number) =>
    autocannon({
      url: opts.url,
      connections: opts.connections,
      duration: secs,
      requests: [await opts.request()],
    }) as unknown as Promise<autocannon.Result>;
  await run(opts.warmup);
  opts.beforeMeasure?.();
  const r = await run(opts.duration);
  return { rps: Math.round(r.requests.average), p50: r.latency.p50, p99: r.latency.p99, non2xx: r.non2xx, errors: r.errors + r.timeouts };
}
