/**
 * Real processes for chaos and CLI tests: a private PostgreSQL cluster (never the shared
 * one other tests use), Rampart itself as a child process, and free loopback ports.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

import { freePort } from '../../deploy/local/cluster.js';
import { archiveOutput } from './log-capture.js';

export { freePort };
export const ROOT = resolve(import.meta.dirname, '../..');
const PG_BIN = process.env.PG_BIN ?? '/usr/lib/postgresql/15/bin';

/** Why a private PostgreSQL cannot be started here, or undefined when it can. */
export function privatePgUnavailable(): string | undefined {
  if (!existsSync(join(PG_BIN, 'initdb'))) return `no PostgreSQL binaries in ${PG_BIN}`;
  if (process.getuid?.() !== 0) return 'starting a private PostgreSQL needs root (to run it as the postgres user)';
  try {
    execFileSync('id', ['postgres'], { stdio: 'ignore' });
  } catch {
    return 'no postgres system user';
  }
  return undefined;
}

/** A PostgreSQL cluster of our own in a temp dir, on a free port. */
export class PrivatePostgres {
  readonly dir = mkdtempSync(join(tmpdir(), 'rampart-pg-'));
  port = 0;

  private ctl(...args: string[]): void {
    execFileSync('runuser', ['-u', 'postgres', '--', join(PG_BIN, 'pg_ctl'), '-D', join(this.dir, 'data'), ...args], {
      stdio: 'pipe',
      timeout: 60_000,
    });
  }

  get url(): string {
    return `postgres://postgres@127.0.0.1:${this.port}/postgres`;
  }

  async init(): Promise<void> {
    this.port = await freePort();
    chmodSync(this.dir, 0o777);
    execFileSync(
      'runuser',
      ['-u', 'postgres', '--', join(PG_BIN, 'initdb'), '-D', join(this.dir, 'data'), '-A', 'trust', '-U', 'postgres'],
      {
        stdio: 'pipe',
        timeout: 120_000,
      },
    );
    this.start();
  }

  /** Server settings added to the command line (`-c name=value` each). */
  settings: Record<string, string> = {};

  start(): void {
    const extra = Object.entries(this.settings)
      .map(([k, v]) => ` -c ${k}=${v}`)
      .join('');
    this.ctl(
      '-o',
      `-p ${this.port} -k ${this.dir} -c listen_addresses=127.0.0.1 -c fsync=off${extra}`,
      '-l',
      join(this.dir, 'log'),
      '-w',
      'start',
    );
  }

  /**
   * Make this cluster a streaming standby of `primary` (pg_basebackup -R) and start it. With
   * `sync`, the primary waits for it at every commit (synchronous_standby_names = '*').
   */
  async initReplicaOf(primary: PrivatePostgres): Promise<void> {
    this.port = await freePort();
    chmodSync(this.dir, 0o777);
    execFileSync(
      'runuser',
      [
        '-u',
        'postgres',
        '--',
        join(PG_BIN, 'pg_basebackup'),
        '-h',
        '127.0.0.1',
        '-p',
        String(primary.port),
        '-U',
        'postgres',
        '-D',
        join(this.dir, 'data'),
        '-R',
        '-X',
        'stream',
      ],
      { stdio: 'pipe', timeout: 120_000 },
    );
    this.start();
  }

  /** Promote a standby to primary (what Patroni does after a failure). */
  promote(): void {
    this.ctl('-w', 'promote');
  }

  /** SIGKILL the postmaster and every backend: a machine that died, no shutdown at all. */
  killHard(): void {
    const pid = Number(readFileSync(join(this.dir, 'data', 'postmaster.pid'), 'utf8').split('\n')[0]);
    let children: number[] = [];
    try {
      children = execFileSync('pgrep', ['-P', String(pid)], { encoding: 'utf8' })
        .split('\n')
        .filter(Boolean)
        .map(Number);
    } catch {}
    for (const p of [pid, ...children]) {
      try {
        process.kill(p, 'SIGKILL');
      } catch {}
    }
  }

  /** Run SQL as postgres on this cluster (psql), returning what it prints. */
  psql(query: string): string {
    return execFileSync(join(PG_BIN, 'psql'), ['-h', '127.0.0.1', '-p', String(this.port), '-U', 'postgres', '-At', '-c', query], {
      encoding: 'utf8',
      timeout: 30_000,
    }).trim();
  }

  /** Stop at once, like a crash: no checkpoint, clients cut off. */
  stopImmediate(): void {
    this.ctl('-m', 'immediate', '-w', 'stop');
  }

  destroy(): void {
    try {
      this.ctl('-m', 'immediate', '-w', 'stop');
    } catch {}
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** A `rampart` child process. */
export interface RampartProcess {
  child: ChildProcess;
  url: string;
  output(): string;
  /** Resolves with the exit code. */
  exited: Promise<number | null>;
}

/** Start `rampart worker --app <app>` with a metrics port and wait until it answers. */
export async function startWorker(env: Record<string, string>, app: string, extra: string[] = []): Promise<RampartProcess> {
  const port = String(await freePort());
  return startRampart({ ...env, PORT: port }, ['worker', '--app', app, '--metrics-port', port, ...extra], '/readyz');
}

/** Start `rampart serve` (or another command) and wait until `ready` (default /readyz) answers 200. */
export async function startRampart(
  env: Record<string, string>,
  args = ['serve', '--app', 'test/fixtures/open-chat.ts'],
  ready = '/readyz',
  /** A command the process runs under (`faketime -f +1h`). */
  prefix: string[] = [],
): Promise<RampartProcess> {
  const port = env.PORT ?? String(await freePort());
  const argv = [process.execPath, join(ROOT, 'bin/rampart.js'), ...args];
  const child = spawn(prefix[0] ?? (argv[0] as string), [...prefix.slice(1), ...(prefix.length > 0 ? argv : argv.slice(1))], {
    cwd: ROOT,
    // Rate limits off unless a test sets them (tests send far more from one address than a client);
    // no drain delay (no proxy in front) unless a test sets one.
    // Its log lines on stdout (tests read them), copied for the suite's secrets scan at exit.
    env: {
      PATH: process.env.PATH ?? '',
      LOG_LEVEL: 'warn',
      RAMPART_RATE_LIMITS: 'off',
      RAMPART_DRAIN_DELAY_MS: '0',
      ...env,
      PORT: port,
      RAMPART_LOG_FILE: '',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout?.on('data', (d) => {
    out += d;
  });
  child.stderr?.on('data', (d) => {
    out += d;
  });
  const exited = new Promise<number | null>((res) =>
    child.on('exit', (code) => {
      archiveOutput(args[0] ?? 'rampart', out);
      res(code);
    }),
  );
  const url = `http://127.0.0.1:${port}`;
  // Generous: twenty processes starting at once on two loaded cores take a while (each compiles its modules).
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`rampart exited with ${child.exitCode}: ${out}`);
    try {
      const r = await fetch(`${url}${ready}`);
      if (r.status === 200) return { child, url, output: () => out, exited };
    } catch {}
    await new Promise((r) => setTimeout(r, 100));
  }
  child.kill('SIGKILL');
  throw new Error(`rampart did not become ready: ${out}`);
}
