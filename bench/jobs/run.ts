/**
 * Job queue throughput and pickup latency, on SQLite and PostgreSQL, with the worker in the
 * enqueuing process (embedded mode) and in 1 and 4 `rampart worker` processes.
 *  - throughput: JOBS no-op jobs enqueued in batches of 500 while the workers run them; jobs/s
 *    from the first enqueue until the last completion;
 *  - pickup latency: 300 jobs enqueued one at a time, 10 ms apart; the time from each job's
 *    commit to its start, both by the database clock (p50/p99).
 * Progress goes to stderr, the result table to stdout. PostgreSQL is the server at TEST_PG_URL
 * (default 127.0.0.1:5432), a fresh database per run.
 */
import { createApp, type RampartApp } from '../../src/app.js';
import { loadConfig } from '../../src/core/config.js';
import { makeBackend } from '../../test/helpers/backends.js';
import { freePort } from '../../test/helpers/processes.js';
import { log, rssMb, spawnServer, waitReady } from '../lib.js';
import benchApp from './app.ts';

process.setMaxListeners(0);
const JOBS = Number(process.env.BENCH_JOBS ?? 20_000);
const CONCURRENCY = '100';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Row {
  backend: string;
  workers: string;
  jobsPerS: number;
  p50: number;
  p99: number;
  rss: number;
}

/** A fresh database (temp SQLite directory, or a new PostgreSQL database on BENCH_PG_URL's server). */
async function freshEnv(backend: 'sqlite' | 'postgres'): Promise<{ env: Record<string, string>; cleanup(): Promise<void> }> {
  const b = await makeBackend(backend, {
    LOG_LEVEL: 'warn',
    RAMPART_JOBS_CONCURRENCY: CONCURRENCY,
    RAMPART_SCHEDULER: 'false',
    // SQLite cannot notify other processes: their workers poll.
    RAMPART_JOBS_POLL_MS: backend === 'sqlite' ? '20' : '1000',
    RAMPART_DB_POOL_MAX: '20',
  });
  return { env: b.env, cleanup: () => b.cleanup() };
}

async function completed(app: RampartApp): Promise<number> {
  const r = await app.storage.db
    .selectFrom('_rampart_jobs')
    .select((eb) => eb.fn.countAll().as('n'))
    .where('state', '=', 'completed')
    .executeTakeFirstOrThrow();
  return Number(r.n);
}

async function run(backend: 'sqlite' | 'postgres', workers: number): Promise<Row> {
  const label = workers === 0 ? 'in-process' : `${workers} process${workers > 1 ? 'es' : ''}`;
  log(`== ${backend}, worker ${label}`);
  const { env, cleanup } = await freshEnv(backend);
  const app = await createApp(loadConfig({ env: { ...env, RAMPART_JOBS_IN_PROCESS: String(workers === 0) } }), benchApp);
  const children: ReturnType<typeof spawnServer>[] = [];
  try {
    await app.migrator.up();
    if (workers === 0) await app.jobs.startWorker();
    for (let i = 0; i < workers; i++) {
      const port = await freePort();
      const child = spawnServer(['bin/rampart.js', 'worker', '--app', 'bench/jobs/app.ts', '--metrics-port', String(port)], env);
      children.push(child);
      await waitReady(`http://127.0.0.1:${port}/healthz`, child);
    }
    // Throughput.
    const started = performance.now();
    let lastLog = 0;
    for (let i = 0; i < JOBS; i += 500) {
      await app.jobs.queue.enqueueMany(
        app.storage.db,
        Array.from({ length: Math.min(500, JOBS - i) }, () => ({ name: 'noop' })),
      );
    }
    const enqueuedMs = performance.now() - started;
    let rss = 0;
    for (;;) {
      const done = await completed(app);
      for (const c of children) rss = Math.max(rss, rssMb(c.pid as number));
      if (performance.now() - lastLog > 1000) {
        log(`  ${done}/${JOBS} completed (${((performance.now() - started) / 1000).toFixed(1)} s)`);
        lastLog = performance.now();
      }
      if (done >= JOBS) break;
      await sleep(20);
    }
    const seconds = (performance.now() - started) / 1000;
    const jobsPerS = Math.round(JOBS / seconds);
    log(`  ${JOBS} jobs in ${seconds.toFixed(2)} s (enqueued in ${(enqueuedMs / 1000).toFixed(2)} s): ${jobsPerS} jobs/s`);
    // Pickup latency: one job at a time, the workers idle in between.
    const ids: string[] = [];
    for (let i = 0; i < 300; i++) {
      ids.push((await app.jobs.enqueue('noop')).id);
      await sleep(10);
      if (i % 100 === 99) log(`  latency: ${i + 1}/300 enqueued`);
    }
    while ((await completed(app)) < JOBS + 300) await sleep(20);
    const rows = await app.storage.db.selectFrom('_rampart_jobs').select(['created_at', 'started_at']).where('id', 'in', ids).execute();
    const lat = rows.map((r) => Number(r.started_at) - Number(r.created_at)).sort((a, b) => a - b);
    const pct = (p: number) => lat[Math.min(lat.length - 1, Math.floor((p / 100) * lat.length))] as number;
    if (workers === 0) rss = rssMb(process.pid);
    log(`  pickup latency p50 ${pct(50)} ms, p99 ${pct(99)} ms; worker RSS ${rss} MB`);
    return { backend, workers: label, jobsPerS, p50: pct(50), p99: pct(99), rss };
  } finally {
    for (const c of children) c.kill('SIGTERM');
    await Promise.all(children.map((c) => new Promise((r) => (c.exitCode !== null ? r(null) : c.once('exit', r)))));
    await app.stop();
    await cleanup();
  }
}

const only = process.env.BENCH_BACKENDS?.split(',') ?? ['sqlite', 'postgres'];
const results: Row[] = [];
for (const backend of ['sqlite', 'postgres'] as const) {
  if (!only.includes(backend)) continue;
  for (const workers of backend === 'sqlite' ? [0, 1, 4] : [0, 1, 4]) results.push(await run(backend, workers));
}
process.stdout.write(`\n${JOBS} no-op jobs per run; ${CONCURRENCY} concurrent jobs per worker\n\n`);
process.stdout.write('| backend | worker | jobs/s | pickup p50 ms | pickup p99 ms | worker RSS MB |\n|---|---|---:|---:|---:|---:|\n');
for (const r of results) {
  process.stdout.write(`| ${r.backend} | ${r.workers} | ${r.jobsPerS.toLocaleString('en')} | ${r.p50} | ${r.p99} | ${r.rss} |\n`);
}
