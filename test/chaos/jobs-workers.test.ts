/**
 * Jobs across real worker processes: SIGKILL a random worker every 2 s while 200 jobs run
 * (nothing lost, every side effect once), and SIGSTOP a worker past its lease (its late
 * completion refused). Both backends: SQLite workers share the file, PostgreSQL workers the
 * database. Each test prints what it measured.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { RampartApp } from '../../src/app.js';
import jobsApp from '../fixtures/jobs-app.ts';
import { backendMatrix, makeBackend } from '../helpers/backends.js';
import { controlApp } from '../helpers/jobs.js';
import { type RampartProcess, startWorker } from '../helpers/processes.js';

const APP = 'test/fixtures/jobs-app.ts';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function rows(app: RampartApp, table: string): Promise<Array<Record<string, unknown>>> {
  return app.storage.db.selectFrom(table).selectAll().execute();
}

for (const { name, skip } of await backendMatrix()) {
  describe(`job workers under SIGKILL and SIGSTOP (${name})`, { skip }, () => {
    test('200 jobs, 3 workers, a random worker SIGKILLed every 2 s: nothing lost, each side effect once', async () => {
      const backend = await makeBackend(name);
      const env = {
        ...backend.env,
        RAMPART_JOBS_LEASE_MS: '1500',
        RAMPART_JOBS_POLL_MS: '100',
        RAMPART_JOBS_CONCURRENCY: '3',
        RAMPART_SCHEDULER: 'false',
        FIXTURE_JOB_MS: '600',
      };
      const app = await controlApp(backend, jobsApp);
      const workers: RampartProcess[] = [];
      try {
        const enqueued = await app.jobs.queue.enqueueMany(
          app.storage.db,
          Array.from({ length: 200 }, (_, n) => ({ name: 'work', payload: { n } })),
        );
        for (let i = 0; i < 3; i++) workers.push(await startWorker(env, APP));
        const started = Date.now();
        let kills = 0;
        let nextKill = Date.now() + 2000;
        for (;;) {
          const stats = (await app.jobs.queue.stats()).find((s) => s.queue === 'default');
          if (stats && stats.counts.completed + stats.counts.dead === 200) break;
          assert.ok(Date.now() - started < 180_000, `jobs did not finish: ${JSON.stringify(stats)}`);
          if (Date.now() >= nextKill) {
            const i = Math.floor(Math.random() * workers.length);
            (workers[i] as RampartProcess).child.kill('SIGKILL');
            await (workers[i] as RampartProcess).exited;
            kills++;
            workers[i] = await startWorker(env, APP);
            nextKill = Date.now() + 2000;
          }
          await sleep(100);
        }
        const elapsed = Date.now() - started;
        const jobs = await app.jobs.queue.list({ queue: 'default', limit: 1000 });
        const ids = new Set(enqueued.map((e) => e.id));
        const finished = jobs.filter((j) => ids.has(j.id));
        const completed = finished.filter((j) => j.state === 'completed').length;
        const dead = finished.filter((j) => j.state === 'dead').length;
        const lost = 200 - completed - dead;
        const executions = await rows(app, 'executions');
        const effects = await rows(app, 'effects');
        const effectsPerJob = new Map<string, number>();
        for (const e of effects) effectsPerJob.set(String(e.job), (effectsPerJob.get(String(e.job)) ?? 0) + 1);
        const duplicateEffects = [...effectsPerJob.values()].filter((n) => n > 1).length;
        const missingEffects = finished.filter((j) => j.state === 'completed' && !effectsPerJob.has(j.id)).length;
        const reaped = finished.filter((j) =>
          JSON.parse(j.errors).some((e: { message: string }) => /lease expired/.test(e.message)),
        ).length;
        process.stdout.write(
          `# ${name}: 200 jobs, 3 workers, ${kills} SIGKILLs in ${(elapsed / 1000).toFixed(1)} s: completed ${completed}, dead ${dead}, lost ${lost}; ` +
            `${executions.length} executions (${executions.length - 200} repeated after a kill; ${reaped} jobs taken back from a dead worker); ` +
            `duplicate side effects ${duplicateEffects}, missing side effects ${missingEffects}\n`,
        );
        assert.ok(kills >= 2, `at least two workers were killed (${kills})`);
        assert.equal(lost, 0);
        assert.equal(completed, 200, 'retries were enough for every job');
        assert.equal(duplicateEffects, 0);
        assert.equal(missingEffects, 0);
        assert.equal(effects.length, 200);
      } finally {
        for (const w of workers) w.child.kill('SIGKILL');
        await Promise.all(workers.map((w) => w.exited));
        await app.stop();
        await backend.cleanup();
      }
    });

    test('a worker SIGSTOPped for twice its lease: the job runs elsewhere, the late completion is refused', async () => {
      const backend = await makeBackend(name);
      const env = {
        ...backend.env,
        RAMPART_JOBS_LEASE_MS: '1000',
        RAMPART_JOBS_POLL_MS: '50',
        // One slot: while A runs the job it does not poll for more, so the freeze cannot land in
        // a claim (on SQLite a claim holds the database's write lock, which would hold B up too).
        RAMPART_JOBS_CONCURRENCY: '1',
        RAMPART_SCHEDULER: 'false',
        // Long enough for worker B to start while A still runs it.
        FIXTURE_JOB_MS: '4000',
        FIXTURE_JOB_JITTER: '0',
        LOG_LEVEL: 'info',
      };
      const app = await controlApp(backend, jobsApp);
      const started: RampartProcess[] = [];
      try {
        const a = await startWorker({ ...env, RAMPART_NODE_NAME: 'worker-a' }, APP);
        started.push(a);
        const { id } = await app.jobs.enqueue('work', { n: 1 });
        const until = Date.now() + 10_000;
        while ((await rows(app, 'executions')).length === 0) {
          assert.ok(Date.now() < until, 'worker A started the job');
          await sleep(20);
        }
        // B is up and polling before A freezes, so the pause is exactly twice the lease
        // whatever B's start-up takes.
        const b = await startWorker({ ...env, RAMPART_NODE_NAME: 'worker-b' }, APP);
        started.push(b);
        a.child.kill('SIGSTOP');
        await sleep(2000);
        a.child.kill('SIGCONT');
        const done = Date.now() + 10_000;
        while (!/completion refused|failure of a job attempt refused|lost the lease/.test(a.output())) {
          assert.ok(Date.now() < done, `worker A reported its lost lease: ${a.output()}`);
          await sleep(50);
        }
        // Let both finish whatever they still do (B's attempt takes 4 s).
        const settle = Date.now() + 15_000;
        while ((await app.jobs.queue.get(id)).state !== 'completed' && Date.now() < settle) await sleep(100);
        await sleep(300);
        const job = await app.jobs.queue.get(id);
        const executions = await rows(app, 'executions');
        const effects = (await rows(app, 'effects')).filter((e) => e.job === id);
        const refused = /completion refused|failure of a job attempt refused/.test(a.output());
        process.stdout.write(
          `# ${name}: worker A stopped ${2000} ms with a 1000 ms lease: job ${job.state} by ${job.worker} on attempt ${job.attempts} (fence ${job.fence}); ` +
            `executions ${executions.length}; A's late result refused: ${refused ? 'yes' : 'aborted at its heartbeat'}; side effect applied by ${effects[0]?.worker === String(a.child.pid) ? 'A (first to get there)' : 'B'}, duplicates ${effects.length - 1}\n`,
        );
        assert.equal(job.state, 'completed');
        assert.equal(job.worker, 'worker-b');
        assert.equal(job.fence, 2);
        assert.equal(executions.length, 2, 'A and B each ran it once');
        assert.equal(effects.length, 1, 'one side effect');
      } finally {
        for (const w of started) {
          w.child.kill('SIGCONT');
          w.child.kill('SIGKILL');
        }
        await Promise.all(started.map((w) => w.exited));
        await app.stop();
        await backend.cleanup();
      }
    });

    test('SIGTERM: a running job finishes within the grace period; a longer one is released and runs elsewhere', async () => {
      const backend = await makeBackend(name);
      const env = { ...backend.env, RAMPART_JOBS_POLL_MS: '50', RAMPART_SCHEDULER: 'false', RAMPART_JOBS_SHUTDOWN_GRACE_MS: '1000' };
      const app = await controlApp(backend, jobsApp);
      const started: RampartProcess[] = [];
      try {
        const a = await startWorker({ ...env, RAMPART_NODE_NAME: 'worker-a' }, APP);
        started.push(a);
        const short = await app.jobs.enqueue('work', { n: 1, ms: 300 });
        const long = await app.jobs.enqueue('work', { n: 2, ms: 5000 });
        const until = Date.now() + 10_000;
        while ((await rows(app, 'executions')).length < 2) {
          assert.ok(Date.now() < until, 'worker A started both jobs');
          await sleep(20);
        }
        const t0 = Date.now();
        a.child.kill('SIGTERM');
        const code = await a.exited;
        const stopMs = Date.now() - t0;
        const s = await app.jobs.queue.get(short.id);
        const l = await app.jobs.queue.get(long.id);
        process.stdout.write(
          `# ${name}: SIGTERM with a 1000 ms grace: exit ${code} after ${stopMs} ms; the 300 ms job ${s.state}, the 5 s job ${l.state} (attempts counted ${l.attempts})\n`,
        );
        assert.equal(code, 0);
        assert.ok(stopMs < 3000, `stopped within the grace period (${stopMs} ms)`);
        assert.equal(s.state, 'completed');
        assert.equal(l.state, 'waiting', 'released, not failed');
        assert.equal(l.attempts, 0, 'a released attempt is not counted');
        const b = await startWorker({ ...env, RAMPART_NODE_NAME: 'worker-b' }, APP);
        started.push(b);
        const done = Date.now() + 15_000;
        while ((await app.jobs.queue.get(long.id)).state !== 'completed') {
          assert.ok(Date.now() < done, 'worker B ran the released job');
          await sleep(50);
        }
        assert.equal((await app.jobs.queue.get(long.id)).worker, 'worker-b');
      } finally {
        for (const w of started) w.child.kill('SIGKILL');
        await Promise.all(started.map((w) => w.exited));
        await app.stop();
        await backend.cleanup();
      }
    });
  });
}
