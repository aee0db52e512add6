/**
 * bench/auth: token refresh and password login per second at 20 connections, with p50/p99 and
 * the server's RSS, on SQLite and PostgreSQL. The server runs as its own process; autocannon
 * drives it over loopback. Every refresh presents a token once and carries its successor
 * forward (each request is a real rotation, not the concurrent-retry grace path).
 *
 *   npm run bench:auth                                  # both backends (about 2 minutes)
 *   npm run bench:auth -- --backends sqlite --duration 5
 */
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type autocannon from 'autocannon';
import { backendMatrix, makeBackend } from '../../test/helpers/backends.js';
import { freePort, ROOT } from '../../test/helpers/processes.js';
import { type Figures, log, measure, rssMb, spawnServer, waitReady } from '../lib.ts';

const { values } = parseArgs({
  options: {
    backends: { type: 'string', default: 'sqlite,postgres' },
    duration: { type: 'string', default: '10' },
    warmup: { type: 'string', default: '2' },
    connections: { type: 'string', default: '20' },
  },
});
const duration = Number(values.duration);
const warmup = Number(values.warmup);
const connections = Number(values.connections);
const PASSWORD = 'benchmark password';

interface Row extends Figures {
  backend: string;
  op: string;
  rssMb: number;
  peakRssMb: number;
}
const rows: Row[] = [];

async function post(base: string, path: string, body: unknown): Promise<any> {
  const r = await fetch(`${base}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  if (!r.ok) throw new Error(`${path}: ${r.status} ${await r.text()}`);
  return r.json();
}

const matrix = (await backendMatrix()).filter((b) => values.backends.split(',').includes(b.name) && !b.skip);
for (const { name } of matrix) {
  const backend = await makeBackend(name, { LOG_LEVEL: 'warn' });
  const port = await freePort();
  // Limits sized for a benchmark: one client address signs in thousands of times.
  const env = { ...backend.env, PORT: String(port), LOG_LEVEL: 'warn', RAMPART_LOGIN_IP_MAX_FAILURES: '100000' };
  const child = spawnServer([join(ROOT, 'bin/rampart.js'), 'serve', '--app', 'test/fixtures/open-chat.ts'], env);
  const base = `http://127.0.0.1:${port}`;
  await waitReady(`${base}/readyz`, child);
  log(`\n${name}: creating ${connections} users…`);
  const emails: string[] = [];
  for (let i = 0; i < connections; i++) {
    const email = `bench-${i}@example.com`;
    await post(base, '/api/v1/auth/signup', { email, password: PASSWORD });
    emails.push(email);
  }
  let peak = rssMb(child.pid as number);
  const sampler = setInterval(() => {
    peak = Math.max(peak, rssMb(child.pid as number));
  }, 100);

  // A fresh session per connection for each run: tokens rotate, so a run cannot reuse the last run's.
  const sessions = async () =>
    Promise.all(
      Array.from({ length: 4 * connections }, (_, i) =>
        post(base, '/api/v1/auth/login', { email: emails[i % connections], password: PASSWORD }),
      ),
    );
  const plans: Array<[string, () => Promise<autocannon.Request>]> = [
    [
      'refresh',
      async () => {
        const pool = (await sessions()).map((s) => s.refresh_token as string);
        return {
          method: 'POST',
          path: '/api/v1/auth/refresh',
          headers: { 'content-type': 'application/json' },
          // autocannon resets its per-connection context on every request, so tokens live in a
          // shared queue: a request takes one, its response puts the successor back (one use each).
          setupRequest: (req) => ({ ...req, body: JSON.stringify({ refresh_token: pool.shift() }) }),
          onResponse: (status, body) => {
            if (status === 200) pool.push(JSON.parse(body).refresh_token);
          },
        } as autocannon.Request;
      },
    ],
    [
      'password login',
      async () => {
        let n = 0;
        return {
          method: 'POST',
          path: '/api/v1/auth/login',
          headers: { 'content-type': 'application/json' },
          setupRequest: (req) => ({ ...req, body: JSON.stringify({ email: emails[n++ % emails.length], password: PASSWORD }) }),
        };
      },
    ],
  ];
  for (const [op, make] of plans) {
    const figures = await measure({
      url: base,
      connections,
      warmup,
      duration,
      request: make,
      beforeMeasure: () => {
        peak = rssMb(child.pid as number);
      },
    });
    const row: Row = { backend: name, op, ...figures, rssMb: rssMb(child.pid as number), peakRssMb: peak };
    rows.push(row);
    log(
      `  ${name.padEnd(9)} ${op.padEnd(15)} ${String(row.rps).padStart(6)} req/s  p50 ${row.p50} ms  p99 ${row.p99} ms  non-2xx ${row.non2xx}  RSS ${row.rssMb} MB (peak ${peak})`,
    );
  }
  clearInterval(sampler);
  child.kill('SIGTERM');
  await new Promise((r) => child.once('exit', r));
  await backend.cleanup();
}

const out = [
  `bench/auth — ${connections} connections, ${duration} s per operation after ${warmup} s warm-up, Node ${process.version}, ${(await import('node:os')).cpus().length} cores`,
  '',
  '| backend | operation | req/s | p50 ms | p99 ms | non-2xx | errors | RSS MB | peak RSS MB |',
  '|---|---|---:|---:|---:|---:|---:|---:|---:|',
  ...rows.map(
    (r) => `| ${r.backend} | ${r.op} | ${r.rps} | ${r.p50} | ${r.p99} | ${r.non2xx} | ${r.errors} | ${r.rssMb} | ${r.peakRssMb} |`,
  ),
];
process.stdout.write(`\n${out.join('\n')}\n`);
