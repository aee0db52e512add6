/**
 * bench/crud: create / get-by-id / list (with and without count) against Rampart on SQLite
 * and PostgreSQL, with 10k and 100k seeded messages across 100 rooms, and the same operations
 * against a minimal Fastify + better-sqlite3 server. The server runs as its own process;
 * autocannon drives it from this one, 50 connections, over loopback.
 *
 *   npm run bench:crud                      # everything (about 8 minutes)
 *   npm run bench:crud -- --sizes 10000 --backends sqlite --duration 5
 */
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type autocannon from 'autocannon';
import { seedChat } from '../../examples/chat/seed.ts';
import { createApp } from '../../src/app.js';
import chat from '../../test/fixtures/open-chat.ts';
import { backendMatrix, makeBackend } from '../../test/helpers/backends.js';
import { freePort, ROOT } from '../../test/helpers/processes.js';
import { log, measure, rssMb, spawnServer, waitReady } from '../lib.ts';

const { values } = parseArgs({
  options: {
    sizes: { type: 'string', default: '10000,100000' },
    backends: { type: 'string', default: 'sqlite,postgres' },
    duration: { type: 'string', default: '10' },
    warmup: { type: 'string', default: '2' },
    connections: { type: 'string', default: '50' },
  },
});
const sizes = values.sizes.split(',').map(Number);
const duration = Number(values.duration);
const warmup = Number(values.warmup);
const connections = Number(values.connections);
const wanted = values.backends.split(',');

interface Row {
  server: string;
  size: number;
  op: string;
  rps: number;
  p50: number;
  p99: number;
  non2xx: number;
  errors: number;
  rssMb: number;
}
const rows: Row[] = [];
const idle: Array<{ server: string; size: number; rssMb: number }> = [];

interface Ops {
  get: (id: string) => string;
  list: (room: string, count: boolean) => string;
  create: string;
}

async function drive(server: string, size: number, base: string, pid: number, ops: Ops, msgIds: string[], roomIds: string[]) {
  const pick = <T>(a: T[]) => a[Math.floor(Math.random() * a.length)] as T;
  const plan: Array<[string, autocannon.Request]> = [
    ['get by id', { method: 'GET', setupRequest: (r) => ({ ...r, path: ops.get(pick(msgIds)) }) }],
    ['list newest 20', { method: 'GET', setupRequest: (r) => ({ ...r, path: ops.list(pick(roomIds), false) }) }],
    ['list newest 20 + count', { method: 'GET', setupRequest: (r) => ({ ...r, path: ops.list(pick(roomIds), true) }) }],
    [
      'create message',
      {
        method: 'POST',
        path: ops.create,
        headers: { 'content-type': 'application/json' },
        setupRequest: (r) => ({ ...r, body: JSON.stringify({ room: pick(roomIds), body: 'benchmark message body', author: 'bench' }) }),
      },
    ],
  ];
  for (const [op, request] of plan) {
    const figures = await measure({ url: base, connections, warmup, duration, request: () => request });
    const row = { server, size, op, ...figures, rssMb: rssMb(pid) };
    rows.push(row);
    log(
      `  ${server.padEnd(22)} ${String(size).padStart(6)} ${op.padEnd(24)} ${String(row.rps).padStart(7)} req/s  p50 ${row.p50} ms  p99 ${row.p99} ms  non-2xx ${row.non2xx}  RSS ${row.rssMb} MB`,
    );
  }
}

const matrix = (await backendMatrix()).filter((b) => wanted.includes(b.name) && !b.skip);
for (const { name } of matrix) {
  for (const size of sizes) {
    log(`\n${name}, ${size} messages: seeding…`);
    const backend = await makeBackend(name, { LOG_LEVEL: 'warn' });
    const seeder = await createApp(backend.config, chat);
    await seeder.migrator.up();
    const roomIds = await seedChat(seeder.records, { rooms: 100, messages: size });
    const sample = await seeder.storage.reader.selectFrom('messages').select('id').orderBy('id').limit(5000).execute();
    const msgIds = sample.map((r) => r.id as string);
    await seeder.stop();

    const port = await freePort();
    // The records layer itself: no read cache (bench/protect measures it), no rate limits.
    const env = { ...backend.env, PORT: String(port), LOG_LEVEL: 'warn', RAMPART_CACHE_TTL_MS: '0' };
    const child = spawnServer([join(ROOT, 'bin/rampart.js'), 'serve', '--app', 'test/fixtures/open-chat.ts'], env);
    const base = `http://127.0.0.1:${port}`;
    await waitReady(`${base}/readyz`, child);
    await new Promise((r) => setTimeout(r, 1500));
    idle.push({ server: `rampart (${name})`, size, rssMb: rssMb(child.pid as number) });
    log(`  idle RSS ${idle.at(-1)?.rssMb} MB`);
    const M = '/api/v1/collections/messages/records';
    await drive(
      `rampart (${name})`,
      size,
      base,
      child.pid as number,
      {
        get: (id) => `${M}/${id}`,
        list: (room, count) => `${M}?filter=${encodeURIComponent(`room = "${room}"`)}&limit=20${count ? '&count=true' : ''}`,
        create: M,
      },
      msgIds,
      roomIds,
    );
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));

    if (name === 'sqlite') {
      const bport = await freePort();
      const b = spawnServer(['--import', 'tsx', join(ROOT, 'bench/crud/baseline-server.ts')], {
        PORT: String(bport),
        BASELINE_DB: join(backend.config.storage.dataDir, 'rampart.db'),
      });
      const bbase = `http://127.0.0.1:${bport}`;
      await waitReady(`${bbase}/messages/x`, b);
      await new Promise((r) => setTimeout(r, 1500));
      idle.push({ server: 'baseline', size, rssMb: rssMb(b.pid as number) });
      await drive(
        'baseline',
        size,
        bbase,
        b.pid as number,
        {
          get: (id) => `/messages/${id}`,
          list: (room, count) => `/rooms/${room}/messages?limit=20${count ? '&count=true' : ''}`,
          create: '/messages',
        },
        msgIds,
        roomIds,
      );
      b.kill('SIGTERM');
      await new Promise((r) => b.once('exit', r));
    }
    await backend.cleanup();
  }
}

const out: string[] = [];
out.push(
  `bench/crud — ${connections} connections, ${duration} s per operation after ${warmup} s warm-up, Node ${process.version}, ${(await import('node:os')).cpus().length} cores`,
);
out.push('');
out.push('| server | messages | operation | req/s | p50 ms | p99 ms | non-2xx | errors | server RSS MB | vs baseline |');
out.push('|---|---:|---|---:|---:|---:|---:|---:|---:|---:|');
for (const r of rows) {
  const base = rows.find((b) => b.server === 'baseline' && b.size === r.size && b.op === r.op);
  const ratio = base && r.server !== 'baseline' ? `${Math.round((r.rps / base.rps) * 100)}%` : '';
  out.push(`| ${r.server} | ${r.size} | ${r.op} | ${r.rps} | ${r.p50} | ${r.p99} | ${r.non2xx} | ${r.errors} | ${r.rssMb} | ${ratio} |`);
}
out.push('');
out.push('| server | messages | idle RSS MB |');
out.push('|---|---:|---:|');
for (const i of idle) out.push(`| ${i.server} | ${i.size} | ${i.rssMb} |`);
process.stdout.write(`\n${out.join('\n')}\n`);
