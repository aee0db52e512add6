/**
 * Real processes for chaos and CLI tests: a private PostgreSQL cluster (never the shared
 * one other tests use), Rampart itself as a child process, and free loopback ports.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

export const ROOT = resolve(import.meta.dirname, '../..');
const PG_BIN = process.env.PG_BIN ?? '/usr/lib/postgresql/15/bin';

export function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => res(port));
    });
  });
}

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

  start(): void {
    this.ctl('-o', `-p ${this.port} -k ${this.dir} -c listen_addresses=127.0.0.1 -c fsync=off`, '-l', join(this.dir, 'log'), '-w', 'start');
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
    // Rate limits off unless a test sets them: tests send far more from one address than a client.
    env: { PATH: process.env.PATH ?? '', LOG_LEVEL: 'warn', RAMPART_RATE_LIMITS: 'off', ...env, PORT: port },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout?.on('data', (d) => {
    out += d;
  });
  child.stderr?.on('data', (d) => {
    out += d;
  });
  const exited = new Promise<number | null>((res) => child.on('exit', (code) => res(code)));
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 30_000;
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
