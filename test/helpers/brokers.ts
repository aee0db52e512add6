/**
 * RabbitMQ and NATS JetStream for the events tests: the machine's shared brokers (never stopped
 * by a test), brokers of a test's own on free ports (killed and restarted by the chaos tests), and
 * collectors that read back what was published.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import amqp from 'amqplib';
import { AckPolicy, DeliverPolicy, type NatsConnection, connect as natsConnect } from 'nats';
import { freePort } from './processes.js';

export const RABBIT_URL = process.env.TEST_AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';
export const NATS_URL = process.env.TEST_NATS_URL ?? 'nats://127.0.0.1:4222';

/** Why a broker cannot be used (undefined when it can); CI fails instead of skipping. */
export async function brokerUnavailable(
  kind: 'rabbitmq' | 'nats',
  url = kind === 'rabbitmq' ? RABBIT_URL : NATS_URL,
): Promise<string | undefined> {
  try {
    if (kind === 'rabbitmq') await (await amqp.connect(url, { timeout: 2000 })).close();
    else await (await natsConnect({ servers: new URL(url).host, timeout: 2000 })).close();
    return undefined;
  } catch (err) {
    const why = `${kind} at ${url} is not reachable (${(err as Error).message})`;
    if (process.env.CI) throw new Error(`${why}; CI needs it`);
    return why;
  }
}

/** A received event: the CloudEvents envelope. */
export interface Received {
  id: string;
  type: string;
  subject?: string;
  partitionkey: string;
  recordversion?: number;
  data: any;
  [k: string]: unknown;
}

/**
 * A durable queue of its own bound to `exchange`: it keeps what is routed there (across a broker
 * restart), and `drain` reads it back on a fresh connection.
 */
export class RabbitCollector {
  private constructor(
    private readonly url: string,
    readonly queue: string,
  ) {}

  static async bind(url: string, exchange: string, pattern = '#'): Promise<RabbitCollector> {
    const conn = await amqp.connect(url);
    try {
      const ch = await conn.createChannel();
      await ch.assertExchange(exchange, 'topic', { durable: true });
      const queue = `${exchange}.collector`;
      await ch.assertQueue(queue, { durable: true });
      await ch.bindQueue(queue, exchange, pattern);
      return new RabbitCollector(url, queue);
    } finally {
      await conn.close();
    }
  }

  /** Everything in the queue, in queue order (with its routing key), after `quietMs` without a new message. */
  async drain(quietMs = 1000): Promise<Array<Received & { topic: string }>> {
    const conn = await amqp.connect(this.url);
    try {
      const ch = await conn.createChannel();
      const out: Array<Received & { topic: string }> = [];
      let lastAt = Date.now();
      while (Date.now() - lastAt < quietMs) {
        const m = await ch.get(this.queue, { noAck: true });
        if (m === false) {
          await new Promise((r) => setTimeout(r, 50));
          continue;
        }
        out.push({ ...JSON.parse(m.content.toString()), topic: m.fields.routingKey });
        lastAt = Date.now();
      }
      return out;
    } finally {
      await conn.close();
    }
  }

  async close(): Promise<void> {
    const conn = await amqp.connect(this.url).catch(() => undefined);
    if (!conn) return;
    const ch = await conn.createChannel();
    await ch.deleteQueue(this.queue).catch(() => {});
    await conn.close().catch(() => {});
  }
}

/** Reads every message a JetStream stream holds, from its start, in stream order. */
export async function readStream(url: string, stream: string): Promise<Array<Received & { topic: string }>> {
  const nc = await natsConnect({ servers: new URL(url).host });
  try {
    const jsm = await nc.jetstreamManager();
    const total = (await jsm.streams.info(stream)).state.messages;
    const name = `collector_${Math.random().toString(36).slice(2, 8)}`;
    await jsm.consumers.add(stream, {
      name,
      ack_policy: AckPolicy.None,
      deliver_policy: DeliverPolicy.All,
      inactive_threshold: 60_000_000_000,
    });
    const c = await nc.jetstream().consumers.get(stream, name);
    const out: Array<Received & { topic: string }> = [];
    while (out.length < total) {
      const batch = await c.fetch({ max_messages: Math.min(1000, total - out.length), expires: 2000 });
      let n = 0;
      for await (const m of batch) {
        out.push({ ...JSON.parse(new TextDecoder().decode(m.data)), topic: m.subject });
        n++;
      }
      if (n === 0) break;
    }
    await jsm.consumers.delete(stream, name).catch(() => {});
    return out;
  } finally {
    await nc.close();
  }
}

export async function deleteStream(url: string, stream: string): Promise<void> {
  const nc = await natsConnect({ servers: new URL(url).host });
  try {
    await (await nc.jetstreamManager()).streams.delete(stream).catch(() => {});
  } finally {
    await nc.close();
  }
}

export async function natsConnection(url: string): Promise<NatsConnection> {
  return natsConnect({ servers: new URL(url).host });
}

/**
 * Per record (ordering key), checks first deliveries: versions strictly increase (commit order),
 * and a repeat of an id is a duplicate, not a new event.
 */
export function orderReport(received: Received[]): { unique: number; duplicates: number; violations: number } {
  const seen = new Set<string>();
  const last = new Map<string, number>();
  let duplicates = 0;
  let violations = 0;
  for (const e of received) {
    if (seen.has(e.id)) {
      duplicates++;
      continue;
    }
    seen.add(e.id);
    const v = e.recordversion ?? 0;
    const prev = last.get(e.partitionkey);
    if (prev !== undefined && v <= prev) violations++;
    last.set(e.partitionkey, v);
  }
  return { unique: seen.size, duplicates, violations };
}

/** A NATS server with JetStream of a test's own, on a free port, with its store in a temp dir (kept across restarts). */
export class PrivateNats {
  private proc?: ChildProcess;
  readonly dir = mkdtempSync(join(tmpdir(), 'rampart-nats-'));
  private constructor(readonly port: number) {}

  static async start(): Promise<PrivateNats> {
    const n = new PrivateNats(await freePort());
    await n.startAgain();
    return n;
  }

  get url(): string {
    return `nats://127.0.0.1:${this.port}`;
  }

  async startAgain(): Promise<void> {
    this.proc = spawn('nats-server', ['-a', '127.0.0.1', '-p', String(this.port), '-js', '-sd', this.dir], { stdio: 'ignore' });
    const until = Date.now() + 15_000;
    while (Date.now() < until) {
      try {
        await (await natsConnect({ servers: `127.0.0.1:${this.port}`, timeout: 500 })).close();
        return;
      } catch {
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    throw new Error('nats-server did not start');
  }

  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const p = this.proc;
    if (!p || p.exitCode !== null) return;
    const exited = new Promise((r) => p.once('exit', r));
    p.kill(signal);
    await exited;
  }

  async stop(): Promise<void> {
    await this.kill('SIGTERM');
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export function privateNatsUnavailable(): string | undefined {
  try {
    execFileSync('nats-server', ['--version'], { stdio: 'ignore' });
    return undefined;
  } catch {
    const why = 'nats-server is not installed';
    if (process.env.CI) throw new Error(`${why}; CI needs it`);
    return why;
  }
}

/**
 * A RabbitMQ node of a test's own (its own node name, ports and data directory), so it can be
 * killed and restarted without touching the machine's broker. Boots in a few seconds.
 */
export class PrivateRabbit {
  readonly dir = mkdtempSync(join(tmpdir(), 'rampart-rabbit-'));
  private constructor(
    readonly port: number,
    private readonly distPort: number,
    readonly node: string,
  ) {}

  static async start(): Promise<PrivateRabbit> {
    const port = await freePort();
    const r = new PrivateRabbit(port, await freePort(), `rampart_t${port}@localhost`);
    mkdirSync(join(r.dir, 'log'), { recursive: true });
    writeFileSync(join(r.dir, 'enabled_plugins'), '[].\n');
    // Its own listener (the machine's /etc/rabbitmq/rabbitmq.conf names 5672).
    writeFileSync(join(r.dir, 'rabbitmq.conf'), `listeners.tcp.local = 127.0.0.1:${port}\n`);
    await r.startAgain();
    return r;
  }

  get url(): string {
    return `amqp://guest:guest@127.0.0.1:${this.port}`;
  }

  private env(): NodeJS.ProcessEnv {
    return {
      ...process.env,
      RABBITMQ_NODENAME: this.node,
      RABBITMQ_DIST_PORT: String(this.distPort),
      RABBITMQ_MNESIA_BASE: join(this.dir, 'mnesia'),
      RABBITMQ_LOG_BASE: join(this.dir, 'log'),
      RABBITMQ_ENABLED_PLUGINS_FILE: join(this.dir, 'enabled_plugins'),
      RABBITMQ_PID_FILE: join(this.dir, 'pid'),
      RABBITMQ_CONFIG_FILE: join(this.dir, 'rabbitmq.conf'),
    };
  }

  private proc?: ChildProcess;

  async startAgain(): Promise<void> {
    // The server itself, not Debian's wrapper (which switches to the rabbitmq user and drops the environment).
    const bin = existsSync('/usr/lib/rabbitmq/bin/rabbitmq-server') ? '/usr/lib/rabbitmq/bin/rabbitmq-server' : 'rabbitmq-server';
    this.proc = spawn(bin, [], { cwd: this.dir, env: this.env(), stdio: 'ignore', detached: true });
    const until = Date.now() + 60_000;
    while (Date.now() < until) {
      try {
        await (await amqp.connect(this.url, { timeout: 1000 })).close();
        return;
      } catch {
        await new Promise((r) => setTimeout(r, 250));
      }
    }
    throw new Error('rabbitmq-server did not start within 60 s');
  }

  /** Kill the whole node (the Erlang VM and its helpers). */
  async kill(): Promise<void> {
    const p = this.proc;
    if (!p?.pid || p.exitCode !== null) return;
    const exited = new Promise((r) => p.once('exit', r));
    try {
      process.kill(-p.pid, 'SIGKILL');
    } catch {}
    await exited;
  }

  async stop(): Promise<void> {
    await this.kill();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
