/**
 * bench/protect: what the protection stack costs, and how fast the Redis limiter decides.
 *
 * 1. get-by-id throughput of `rampart serve` (SQLite, 10k messages) with the protection stack
 *    off (no rate limits, no read cache, no load shedding) and on (rate limits per IP with
 *    two windows, load shedding, and then also the read cache), autocannon over loopback.
 *    Limits are set high enough that nothing is refused: the figures are the cost of deciding.
 * 2. Rate-limit decisions per second against Redis (REDIS_URL, default the local server):
 *    one decision = one request checked against two windows (minute and day) of one class,
 *    many at once over the node's single auto-pipelined connection, as the API makes them.
 *
 *   npm run bench:protect
 *   npm run bench:protect -- --duration 5 --rounds 1 --decisions 100000
 */
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { seedChat } from '../../examples/chat/seed.ts';
import { createApp } from '../../src/app.js';
import { RateLimits } from '../../src/protect/rate-limits.js';
import { openRedis } from '../../src/storage/redis.js';
import chat from '../../test/fixtures/open-chat.ts';
import { makeBackend } from '../../test/helpers/backends.js';
import { freePort, ROOT } from '../../test/helpers/processes.js';
import { log, measure, rssMb, spawnServer, waitReady } from '../lib.ts';

const { values } = parseArgs({
  options: {
    duration: { type: 'string', default: '8' },
    warmup: { type: 'string', default: '2' },
    connections: { type: 'string', default: '50' },
    decisions: { type: 'string', default: '300000' },
    concurrency: { type: 'string', default: '512' },
    rounds: { type: 'string', default: '3' },
    redis: { type: 'string', default: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379' },
  },
});
const duration = Number(values.duration);
const warmup = Number(values.warmup);
const connections = Number(values.connections);

const HIGH = '{"anonymous": "100000000/min, 900000000/day"}';
const stacks: Array<[string, Record<string, string>]> = [
  ['off', { RAMPART_RATE_LIMITS: 'off', RAMPART_CACHE_TTL_MS: '0', RAMPART_SHED_EVENT_LOOP_DELAY_MS: '0' }],
  ['on: limits + shedding', { RAMPART_RATE_LIMITS: HIGH, RAMPART_CACHE_TTL_MS: '0' }],
  ['on: limits + shedding + read cache', { RAMPART_RATE_LIMITS: HIGH }],
];

log('seeding 10,000 messages…');
const backend = await makeBackend('sqlite', { LOG_LEVEL: 'warn' });
const seeder = await createApp(backend.config, chat);
await seeder.migrator.up();
await seedChat(seeder.records, { rooms: 100, messages: 10_000 });
const sample = await seeder.storage.reader.selectFrom('messages').select('id').orderBy('id').limit(5000).execute();
const ids = sample.map((r) => r.id as string);
await seeder.stop();

const rounds = Number(values.rounds);
const runs = new Map<string, Array<{ rps: number; p50: number; p99: number; non2xx: number; rss: number }>>();
// The stacks take turns, round after round, and each reports its median: on two shared cores
// the machine's own drift over a minute is as large as the differences being measured.
for (let round = 1; round <= rounds; round++) {
  for (const [stack, env] of stacks) {
    const port = await freePort();
    const child = spawnServer([join(ROOT, 'bin/rampart.js'), 'serve', '--app', 'test/fixtures/open-chat.ts'], {
      ...backend.env,
      ...env,
      PORT: String(port),
      LOG_LEVEL: 'warn',
    });
    const base = `http://127.0.0.1:${port}`;
    await waitReady(`${base}/readyz`, child);
    await new Promise((r) => setTimeout(r, 1000));
    const f = await measure({
      url: base,
      connections,
      warmup,
      duration,
      request: () => ({
        method: 'GET',
        setupRequest: (r) => ({ ...r, path: `/api/v1/collections/messages/records/${ids[Math.floor(Math.random() * ids.length)]}` }),
      }),
    });
    runs.set(stack, [...(runs.get(stack) ?? []), { ...f, rss: rssMb(child.pid as number) }]);
    log(
      `  round ${round}/${rounds}  ${stack.padEnd(36)} ${String(f.rps).padStart(7)} req/s  p50 ${f.p50} ms  p99 ${f.p99} ms  non-2xx ${f.non2xx}`,
    );
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
  }
}
const median = <T>(xs: T[], by: (x: T) => number) => [...xs].sort((a, b) => by(a) - by(b))[Math.floor(xs.length / 2)] as T;
const rows = stacks.map(([stack]) => ({ stack, ...median(runs.get(stack) ?? [], (r) => r.rps) }));
await backend.cleanup();

log(`\nRedis limiter: ${values.decisions} decisions, ${values.concurrency} at a time, ${values.redis}…`);
const redis = await openRedis(values.redis);
if (!(await redis.ready(3000))) throw new Error(`Redis at ${values.redis} does not answer`);
const limits = new RateLimits(
  {
    anonymous: [
      { points: 1_000_000, durationS: 60 },
      { points: 10_000_000, durationS: 86_400 },
    ],
    user: [],
    auth: [],
  },
  { kind: 'redis', client: redis.client },
  'memory',
);
const total = Number(values.decisions);
const run = `bench-${process.pid}`;
let next = 0;
let fallbacks = 0;
const started = performance.now();
let lastReport = started;
await Promise.all(
  Array.from({ length: Number(values.concurrency) }, async () => {
    while (next < total) {
      const i = next++;
      // 1,000 distinct clients, as many addresses hit one node.
      const d = await limits.check([['anonymous', `${run}-${i % 1000}`]]);
      if (!d.allowed) fallbacks++;
      if (i % 50_000 === 0 && performance.now() - lastReport > 1000) {
        lastReport = performance.now();
        log(`  ${i} decisions…`);
      }
    }
  }),
);
const seconds = (performance.now() - started) / 1000;
const perSecond = Math.round(total / seconds);
await redis.close();
log(`  ${perSecond} decisions/s (${(seconds * 1000).toFixed(0)} ms), refused ${fallbacks}`);

const off = rows[0]?.rps ?? 1;
const out = [
  `bench/protect — get by id, SQLite 10k messages, ${connections} connections, ${duration} s after ${warmup} s warm-up, median of ${rounds} alternating rounds, Node ${process.version}`,
  '',
  '| protection stack | req/s | p50 ms | p99 ms | non-2xx | server RSS MB | vs off |',
  '|---|---:|---:|---:|---:|---:|---:|',
  ...rows.map((r) => `| ${r.stack} | ${r.rps} | ${r.p50} | ${r.p99} | ${r.non2xx} | ${r.rss} | ${Math.round((r.rps / off) * 100)}% |`),
  '',
  `Redis limiter: ${perSecond} requests checked/s = ${perSecond * 2} window decisions/s (each request: two windows, minute and day; ${values.concurrency} in flight, one connection)`,
];
process.stdout.write(`\n${out.join('\n')}\n`);
process.exit(0);
