/**
 * bench/realtime: one `rampart serve` node (SQLite), 2,000 WebSocket clients in 100 rooms, each
 * subscribed to its room's messages (`filter: room = "…"`). Prints:
 *   - RSS of the server per 1,000 idle connections (subscribed, nothing flowing);
 *   - deliveries per second at full speed (messages written in batches of 100 through the API,
 *     each delivered to the 20 clients of its room);
 *   - delivery latency p50 / p99 (commit → client) at a paced 20,000 deliveries per second.
 * The rules are the open fixture's (`true`): the access check is the cached fast path, as it is
 * for the example chat's membership rules once each (user, room) answer is cached.
 *
 *   npm run bench:realtime
 *   npm run bench:realtime -- --clients 1000 --duration 5 --rate 10000
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Worker } from 'node:worker_threads';
import { freePort } from '../../test/helpers/processes.js';
import { log, rssMb, spawnServer, waitReady } from '../lib.ts';

const { values } = parseArgs({
  options: {
    clients: { type: 'string', default: '2000' },
    rooms: { type: 'string', default: '100' },
    duration: { type: 'string', default: '8' },
    rate: { type: 'string', default: '20000' },
    writers: { type: 'string', default: '4' },
  },
});
const CLIENTS = Number(values.clients);
const ROOMS = Number(values.rooms);
const DURATION = Number(values.duration);
const RATE = Number(values.rate);
const perRoom = CLIENTS / ROOMS;

const dir = mkdtempSync(join(tmpdir(), 'rampart-bench-rt-'));
const port = await freePort();
const url = `http://127.0.0.1:${port}`;
const server = spawnServer(['bin/rampart.js', 'serve', '--app', 'test/fixtures/open-chat.ts'], {
  RAMPART_DATA_DIR: dir,
  PORT: String(port),
  LOG_LEVEL: 'warn',
  RAMPART_RATE_LIMITS: 'off',
  RAMPART_CACHE_TTL_MS: '0',
  RAMPART_SHED_EVENT_LOOP_DELAY_MS: '0',
  // Every client comes from 127.0.0.1, anonymously.
  RAMPART_REALTIME_MAX_CONNECTIONS_PER_USER: String(CLIENTS + 100),
  RAMPART_JOBS_IN_PROCESS: 'false',
});
await waitReady(`${url}/readyz`, server);
const pid = server.pid as number;

const post = async (path: string, body: unknown) => {
  const r = await fetch(`${url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  if (r.status >= 300) throw new Error(`${path}: ${r.status} ${await r.text()}`);
  return r.json() as Promise<any>;
};
const rooms: string[] = [];
for (let i = 0; i < ROOMS; i++) rooms.push((await post('/api/v1/collections/rooms/records', { name: `bench-${i}` })).id);

/** CPU seconds the server process has used (user + system). */
const cpuS = () => {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
  return (Number(f[11]) + Number(f[12])) / 100;
};
/** Write `count` messages in one batch request, spread over the rooms. */
let seq = 0;
const batch = (count: number) =>
  post('/api/v1/batch', {
    operations: Array.from({ length: count }, () => {
      const room = rooms[seq++ % ROOMS];
      return { op: 'create', collection: 'messages', data: { room, body: `t=${Date.now()} bench`, author: 'bench' } };
    }),
  });
/** Writers send batches back to back for `secs`; resolves to the messages written. */
async function writeFlat(secs: number): Promise<number> {
  let n = 0;
  const stopAt = Date.now() + secs * 1000;
  await Promise.all(
    Array.from({ length: Number(values.writers) }, async () => {
      while (Date.now() < stopAt) {
        await batch(100);
        n += 100;
      }
    }),
  );
  return n;
}

// The clients live in worker threads (this thread writes): each thread holds a share of the
// sockets, counts deliveries and, when asked, times them (the commit time is in the body).
const THREADS = 2;
let received = 0;
const latencies: number[] = [];
await new Promise((r) => setTimeout(r, 1000));
const rss0 = rssMb(pid);
log(`server RSS before clients: ${rss0} MB; connecting ${CLIENTS} clients in ${THREADS} threads…`);
const workers = Array.from({ length: THREADS }, (_, w) => {
  const mine = Array.from({ length: CLIENTS }, (_, n) => n).filter((n) => n % THREADS === w);
  // An eval'd bootstrap, so the TypeScript entry loads through tsx (a .ts Worker entry does not on Node 20).
  const entry = JSON.stringify(new URL('./clients.ts', import.meta.url).href);
  return new Worker(`import('tsx/esm/api').then((tsx) => { tsx.register(); return import(${entry}); })`, {
    eval: true,
    workerData: { url, rooms: mine.map((n) => rooms[n % ROOMS]) },
  });
});
const ask = (type: string) =>
  Promise.all(
    workers.map(
      (w) =>
        new Promise<any>((resolve) => {
          const on = (m: any) => {
            if (m.type !== type) return;
            w.off('message', on);
            resolve(m);
          };
          w.on('message', on);
          w.postMessage({ type });
        }),
    ),
  );
let progress = 0;
for (const w of workers) {
  w.on('message', (m: any) => {
    if (m.type !== 'progress') return;
    progress += m.n;
    if (progress % 500 === 0) log(`  ${progress} / ${CLIENTS} connected and subscribed`);
  });
}
await ask('ready');
const counts = async () => (await ask('count')).reduce((n: number, m: any) => n + m.n, 0);
await new Promise((r) => setTimeout(r, 3000));
const rssIdle = rssMb(pid);
const perThousandKb = ((rssIdle - rss0) * 1024) / (CLIENTS / 1000);
log(`server RSS with ${CLIENTS} idle subscribed clients: ${rssIdle} MB`);

// Full speed: writers send batches back to back; deliveries are counted at the clients.
log(`full speed for ${DURATION} s…`);
const fullStart = Date.now();
const cpu0 = cpuS();
const written = await writeFlat(DURATION);
const expected = written * perRoom;
const drainUntil = Date.now() + 30_000;
for (;;) {
  received = await counts();
  if (received >= expected || Date.now() > drainUntil) break;
  await new Promise((r) => setTimeout(r, 20));
}
const fullSecs = (Date.now() - fullStart) / 1000;
const cpuUsed = cpuS() - cpu0;
const serverCpu = cpuUsed / fullSecs;

const deliveriesPerS = Math.round(received / fullSecs);
const fullReceived = received;
const lost = expected - received;
log(`  ${written} messages written, ${received} deliveries in ${fullSecs.toFixed(1)} s`);

// Paced: RATE deliveries per second = RATE / perRoom messages per second, in batches every 50 ms.
log(`paced at ${RATE} deliveries/s for ${DURATION} s…`);
await ask('time');
const perTick = Math.max(1, Math.round(RATE / perRoom / 20));
const pacedStart = Date.now();
let pacedWritten = 0;
for (let tick = 0; Date.now() < pacedStart + DURATION * 1000; tick++) {
  void batch(perTick).then(() => {
    pacedWritten += perTick;
  });
  const next = pacedStart + (tick + 1) * 50;
  await new Promise((r) => setTimeout(r, Math.max(0, next - Date.now())));
}
await new Promise((r) => setTimeout(r, 1500));
for (const m of await ask('latencies')) latencies.push(...m.latencies);
latencies.sort((a, b) => a - b);
const pct = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))] ?? Number.NaN;
const pacedRate = Math.round(latencies.length / DURATION);

for (const w of workers) await w.terminate();
await new Promise((r) => setTimeout(r, 1000));
// What the writes alone cost the server (the clients are gone), to tell it apart from delivering.
log(`writes alone for ${DURATION} s (clients gone)…`);
const w0 = cpuS();
const wStart = Date.now();
const aloneWritten = await writeFlat(DURATION);
const cpuPerMessage = (cpuS() - w0) / aloneWritten;
const aloneRate = Math.round(aloneWritten / ((Date.now() - wStart) / 1000));

server.kill('SIGTERM');
await new Promise((r) => server.once('exit', r));
rmSync(dir, { recursive: true, force: true });

// CPU left for delivering once the writes' share (measured alone) is taken out.
const deliveryCpu = Math.max(0.001, cpuUsed - written * cpuPerMessage);
const rows = [
  ['clients / rooms', `${CLIENTS} / ${ROOMS} (${perRoom} per room)`],
  [
    'deliveries/s at full speed',
    `${deliveriesPerS.toLocaleString('en-US')} (${written.toLocaleString('en-US')} messages, ${lost} not delivered)`,
  ],
  [
    'server CPU at full speed',
    `${Math.round(serverCpu * 100)}% of one core, writes included (${Math.round(deliveriesPerS / serverCpu).toLocaleString('en-US')} deliveries per CPU-second)`,
  ],
  [
    'writes alone (no clients)',
    `${aloneRate.toLocaleString('en-US')} messages/s, ${Math.round(cpuPerMessage * 1e6)} µs of server CPU each`,
  ],
  [
    'delivery alone (writes taken out)',
    `${Math.round(fullReceived / deliveryCpu).toLocaleString('en-US')} deliveries per server CPU-second`,
  ],
  [
    `latency at ${RATE.toLocaleString('en-US')} deliveries/s`,
    `p50 ${pct(0.5)} ms, p99 ${pct(0.99)} ms (${pacedRate.toLocaleString('en-US')}/s measured, ${pacedWritten} messages)`,
  ],
  [
    'server RSS per 1,000 idle connections',
    `${Math.round(perThousandKb).toLocaleString('en-US')} KB (${(perThousandKb / 1000).toFixed(1)} KB each; ${rss0} → ${rssIdle} MB)`,
  ],
];
console.log('\nbench/realtime (one node, SQLite, WebSocket)\n');
for (const [k, v] of rows) console.log(`  ${String(k).padEnd(40)} ${v}`);
process.exit(0);
