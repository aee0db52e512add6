/**
 * A Redis server of our own (never the machine's shared one, which other tests use), on a
 * free loopback port, that tests may SIGKILL and start again on the same port.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { createConnection } from 'node:net';
import { freePort } from './processes.js';

/**
 * Why a private Redis cannot be started here, or undefined when it can. CI sets
 * RAMPART_REQUIRE_REDIS=1, which turns the skip into a failure.
 */
export function privateRedisUnavailable(): string | undefined {
  try {
    execFileSync('redis-server', ['--version'], { stdio: 'ignore' });
    return undefined;
  } catch {
    if (process.env.RAMPART_REQUIRE_REDIS === '1') throw new Error('redis-server is not installed, and RAMPART_REQUIRE_REDIS=1');
    return 'redis-server is not installed';
  }
}

/** One reply of a command over a raw socket (enough for PING, DBSIZE, KEYS). */
export function redisCommand(port: number, ...args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = createConnection({ host: '127.0.0.1', port });
    let out = '';
    s.on('error', reject);
    s.on('data', (d) => {
      out += d.toString();
      if (out.endsWith('\r\n')) {
        s.end();
        resolve(out);
      }
    });
    s.write(`*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`);
  });
}

export class PrivateRedis {
  port = 0;
  private proc: ChildProcess | undefined;

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  /** Start it (on the same port as before, after a kill). */
  async start(): Promise<void> {
    if (this.port === 0) this.port = await freePort();
    this.proc = spawn('redis-server', ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {
      stdio: 'ignore',
    });
    const until = Date.now() + 10_000;
    for (;;) {
      try {
        if ((await redisCommand(this.port, 'PING')).startsWith('+PONG')) return;
      } catch {}
      if (Date.now() > until) throw new Error(`redis-server did not start on port ${this.port}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** SIGKILL: no goodbye to clients, counters lost. */
  async kill(): Promise<void> {
    const p = this.proc;
    if (!p || p.exitCode !== null) return;
    const exited = new Promise((r) => p.once('exit', r));
    p.kill('SIGKILL');
    await exited;
  }

  async stop(): Promise<void> {
    await this.kill();
  }
}
