/**
 * Domain events from the outbox to each broker (the machine's RabbitMQ and NATS JetStream), on
 * PostgreSQL and SQLite:
 *  - throughput: BENCH_EVENTS (50,000) changes written with the relay stopped (a backlog), then
 *    the relay started (PostgreSQL: a `rampart worker` process; SQLite: in this process, as in
 *    embedded mode); events/s from its start until the outbox is empty;
 *  - latency: changes written at BENCH_EVENTS_RATE (1,000) events/s for 10 s (batches of 10 every
 *    10 ms); from each event's time (written at its commit) to a consumer in this process
 *    receiving it, p50/p99.
 * Progress goes to stderr, the result table to stdout.
 */
import amqp from 'amqplib';
import { createApp, type RampartApp } from '../../src/app.js';
import { loadConfig } from '../../src/core/config.js';
import { eventsApp } from '../../test/fixtures/events-app.ts';
import { makeBackend } from '../../test/helpers/backends.js';
import { deleteStream, NATS_URL, natsConnection, RABBIT_URL } from '../../test/helpers/brokers.js';
import { startWorker } from '../../test/helpers/processes.js';
import { log } from '../lib.js';

const EVENTS = Number(process.env.BENCH_EVENTS ?? 50_000);
const RATE = Number(process.env.BENCH_EVENTS_RATE ?? 1000);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Row {
  backend: string;
  broker: string;
  eventsPerS: number;
  p50: number;
  p99: number;
}

/** Write `n` creates in batches of `size` (one transaction each). */
async function writeBatches(a: RampartApp, n: number, size: number, tag: string): Promise<void> {
  for (let i = 0; i < n; i += size) {
    const ops = Array.from({ length: Math.min(size, n - i) }, (_, k) => ({
      op: 'create',
      collection: 'orders',
      data: { item: `${tag}${i + k}`, n: i + k },
    }));
    await a.records.batch(ops);
    if ((i / size) % 100 === 0) process.stderr.write(`\r  wrote ${i + ops.length}/${n}`);
  }
  process.stderr.write('\n');
}

/** A consumer of what the app publishes; calls `seen` with each event's envelope time. */
async function consume(broker: 'rabbit' | 'nats', tag: string, seen: (timeMs: number) => void): Promise<() => Promise<void>> {
  if (broker === 'rabbit') {
    const conn = await amqp.connect(RABBIT_URL);
    const ch = await conn.createChannel();
    await ch.assertExchange(`bench_${tag}`, 'topic', { durable: true });
    const { queue } = await ch.assertQueue('', { exclusive: true });
    await ch.bindQueue(queue, `bench_${tag}`, '#');
    await ch.consume(queue, (m) => m && seen(Date.parse(JSON.parse(m.content.toString()).time)), { noAck: true });
    return async () => {
      await ch.deleteExchange(`bench_${tag}`).catch(() => {});
      await conn.close();
    };
  }
  const nc = await natsConnection(NATS_URL);
  const sub = nc.subscribe(`b${tag}.>`, { callback: (_err, m) => seen(Date.parse(JSON.parse(new TextDecoder().decode(m.data)).time)) });
  return async () => {
    sub.unsubscribe();
    await nc.close();
    await deleteStream(NATS_URL, `B_${tag}`);
  };
}

async function run(backend: 'sqlite' | 'postgres', broker: 'rabbit' | 'nats'): Promise<Row> {
  log(`== ${backend} → ${broker === 'rabbit' ? 'RabbitMQ' : 'NATS JetStream'}`);
  const tag = `${backend.slice(0, 2)}${broker.slice(0, 2)}${Date.now() % 100000}`;
  const b = await makeBackend(backend, {
    LOG_LEVEL: 'warn',
    RAMPART_BROKERS: JSON.stringify({ rabbit: RABBIT_URL, nats: NATS_URL }),
    EVENTS_BROKERS: broker,
    EVENTS_EXCHANGE: `bench_${tag}`,
    EVENTS_PREFIX: `b${tag}`,
    EVENTS_STREAM: `B_${tag}`,
    RAMPART_EVENTS_POLL_MS: '50',
    RAMPART_SCHEDULER: 'false',
    RAMPART_DB_POOL_MAX: '20',
  });
  const app = eventsApp({ exchange: `bench_${tag}`, prefix: `b${tag}`, stream: `B_${tag}`, brokers: [broker] });
  // PostgreSQL: the relay in a `rampart worker` process (woken by NOTIFY). SQLite: in this process,
  // as in embedded mode (`rampart serve` runs it; SQLite cannot wake another process, which would poll).
  const inProcess = backend === 'sqlite';
  const control = await createApp(
    loadConfig({ env: { ...b.env, RAMPART_EVENTS_RELAY: String(inProcess), RAMPART_JOBS_IN_PROCESS: 'false' } }),
    app,
  );
  await control.migrator.up();
  let received = 0;
  const latencies: number[] = [];
  let measuring = false;
  const stopConsumer = await consume(broker, tag, (t) => {
    received++;
    if (measuring) latencies.push(Date.now() - t);
  });
  let relay: Awaited<ReturnType<typeof startWorker>> | undefined;
  try {
    log(`  backlog: ${EVENTS} events with the relay stopped`);
    await writeBatches(control, EVENTS, 100, 'backlog');
    const t0 = performance.now();
    if (inProcess) await control.events.start();
    else relay = await startWorker(b.env, 'test/fixtures/events-app.ts');
    const started = performance.now();
    for (let left = await control.events.pending(); left > 0; left = await control.events.pending()) {
      process.stderr.write(`\r  relay: ${EVENTS - left}/${EVENTS} published`);
      await sleep(100);
    }
    const done = performance.now();
    const eventsPerS = Math.round(EVENTS / ((done - started) / 1000));
    process.stderr.write(
      `\n  ${eventsPerS} events/s (relay ${inProcess ? 'in process' : 'process'} ready ${((started - t0) / 1000).toFixed(1)} s after start)\n`,
    );
    while (received < EVENTS) await sleep(50);
    log(`  latency: ${RATE} events/s for 10 s`);
    measuring = true;
    const perTick = RATE / 100;
    const end = performance.now() + 10_000;
    let next = performance.now();
    let i = 0;
    while (performance.now() < end) {
      await control.records.batch(
        Array.from({ length: perTick }, (_, k) => ({ op: 'create', collection: 'orders', data: { item: `live${i}`, n: k } })),
      );
      i++;
      next += 10;
      const wait = next - performance.now();
      if (wait > 0) await sleep(wait);
    }
    const target = EVENTS + i * perTick;
    const waitUntil = Date.now() + 30_000;
    while (received < target && Date.now() < waitUntil) await sleep(50);
    measuring = false;
    const sorted = latencies.sort((x, y) => x - y);
    const q = (p: number) => sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] ?? 0;
    const rate = Math.round((i * perTick) / 10);
    log(`  ${sorted.length} events at ${rate}/s written: p50 ${q(0.5)} ms, p99 ${q(0.99)} ms`);
    return { backend, broker: broker === 'rabbit' ? 'RabbitMQ' : 'NATS JetStream', eventsPerS, p50: q(0.5), p99: q(0.99) };
  } finally {
    relay?.child.kill('SIGTERM');
    await relay?.exited;
    await stopConsumer();
    await control.stop();
    await b.cleanup();
  }
}

const rows: Row[] = [];
for (const backend of ['postgres', 'sqlite'] as const)
  for (const broker of ['rabbit', 'nats'] as const) rows.push(await run(backend, broker));
process.stdout.write(
  '\n| backend | broker | published events/s (backlog) | commit → consumer p50 | p99 (at 1,000 events/s) |\n|---|---|---:|---:|---:|\n',
);
for (const r of rows)
  process.stdout.write(`| ${r.backend} | ${r.broker} | ${r.eventsPerS.toLocaleString('en-US')} | ${r.p50} ms | ${r.p99} ms |\n`);
