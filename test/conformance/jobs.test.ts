/**
 * The queue and scheduler on both backends, in one process: the outbox, options (unique key,
 * priority, delay, timeout, retries and backoff, rate limit, concurrency), fencing, dead
 * letters and redrive, the operators' API, metrics, readiness, and cron's missed-tick policy.
 * The multi-process guarantees (SIGKILL, SIGSTOP, several schedulers) are in test/chaos/.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { sql } from 'kysely';
import { job, PermanentJobError, schedule } from '../../src/jobs/define.js';
import { collection, defineApp, f } from '../../src/records/schema.js';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { backendMatrix } from '../helpers/backends.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** What the handlers of the test app saw, by test. */
const seen = {
  ran: [] as string[],
  attemptsAt: new Map<string, number[]>(),
  running: 0,
  maxRunning: 0,
  aborted: [] as string[],
  healOnRedrive: false,
};

const app = defineApp({
  collections: {
    notes: collection({
      fields: { title: f.text({ required: true }), fail: f.boolean() },
      rules: { list: 'true', view: 'true', create: 'true' },
      hooks: {
        // Inside the write's transaction: the job exists exactly when the note does.
        onCreate: async (note, ctx) => {
          await ctx.jobs.enqueue('record', { tag: `note:${note.title}` });
          if (note.fail === true) throw new Error('vetoed after the enqueue');
        },
      },
    }),
  },
  queues: {
    serial: { concurrency: 1 },
    pair: { concurrency: 2 },
    limited: { concurrency: 20, rateLimit: { max: 5, perMs: 500 } },
  },
  jobs: {
    record: job<{ tag: string }>({
      handler: ({ tag }) => {
        seen.ran.push(tag);
        return { ok: tag };
      },
    }),
    serialRecord: job<{ tag: string }>({ queue: 'serial', handler: ({ tag }) => void seen.ran.push(tag) }),
    slowPair: job({
      queue: 'pair',
      handler: async () => {
        seen.running++;
        seen.maxRunning = Math.max(seen.maxRunning, seen.running);
        await sleep(60);
        seen.running--;
      },
    }),
    limited: job({ queue: 'limited', handler: () => undefined }),
    poison: job<{ key: string }>({
      retries: 3,
      backoff: { baseMs: 100, capMs: 300 },
      handler: ({ key }) => {
        const list = seen.attemptsAt.get(key) ?? [];
        list.push(Date.now());
        seen.attemptsAt.set(key, list);
        if (!seen.healOnRedrive) throw new Error(`poisoned ${key}`);
      },
    }),
    permanent: job({
      handler: () => {
        throw new PermanentJobError('cannot ever work');
      },
    }),
    hangs: job({
      retries: 0,
      timeoutMs: 200,
      handler: (_p, ctx) =>
        new Promise((_, reject) => {
          ctx.signal.addEventListener('abort', () => {
            seen.aborted.push(ctx.id);
            reject(ctx.signal.reason);
          });
        }),
    }),
    secret: job({ sensitive: true, handler: () => 'sent' }),
    tick: job({ handler: () => undefined }),
  },
  schedules: {
    everySecond: schedule('* * * * * *', 'tick'),
    skipMissed: schedule('* * * * *', 'tick', { missed: 'skip' }),
    catchUpMissed: schedule('* * * * *', 'tick', { missed: 'catch-up' }),
  },
});

for (const { name, skip } of await backendMatrix()) {
  describe(`jobs and cron on ${name}`, { skip }, () => {
    let t: TestApp;
    let adminAuth: Record<string, string>;
    const jobRow = (id: string) => t.app.jobs.queue.get(id);
    before(async () => {
      t = await startTestApp(name, app, {
        RAMPART_JOBS_POLL_MS: '50',
        RAMPART_JOBS_LEASE_MS: '2000',
        RAMPART_SCHEDULER_LEASE_MS: '2000',
      });
      adminAuth = (await t.signIn({ role: 'admin' })).auth;
    });
    after(async () => t?.close());

    test('outbox: a job enqueued in a hook commits with the write, and is gone when the write rolls back', async () => {
      const ok = await t.req('POST', '/api/v1/collections/notes/records', { title: 'kept' });
      assert.equal(ok.status, 201);
      const vetoed = await t.req('POST', '/api/v1/collections/notes/records', { title: 'vetoed', fail: true });
      assert.equal(vetoed.status, 500);
      const batch = await t.req('POST', '/api/v1/batch', {
        operations: [
          { op: 'create', collection: 'notes', data: { title: 'in-batch' } },
          { op: 'create', collection: 'notes', data: {} },
        ],
      });
      assert.equal(batch.status, 400);
      await t.app.jobs.settle();
      assert.ok(seen.ran.includes('note:kept'));
      assert.ok(!seen.ran.includes('note:vetoed'), 'the rolled-back write left no job');
      assert.ok(!seen.ran.includes('note:in-batch'), 'the rolled-back batch left no job');
      const jobs = await t.app.jobs.queue.list({ queue: 'default', limit: 200 });
      assert.equal(jobs.filter((j) => j.payload.includes('note:vetoed') || j.payload.includes('note:in-batch')).length, 0);
    });

    test('a unique key makes a second enqueue return the waiting job; once it finished a new one is added', async () => {
      await t.app.jobs.queue.setPaused('serial', true);
      const a = await t.app.jobs.enqueue('serialRecord', { tag: 'u1' }, { uniqueKey: 'report:1' });
      const b = await t.app.jobs.enqueue('serialRecord', { tag: 'u2' }, { uniqueKey: 'report:1' });
      assert.equal(a.existing, false);
      assert.deepEqual(b, { id: a.id, existing: true });
      await t.app.jobs.queue.setPaused('serial', false);
      await t.app.jobs.settle();
      const c = await t.app.jobs.enqueue('serialRecord', { tag: 'u3' }, { uniqueKey: 'report:1' });
      assert.equal(c.existing, false);
      assert.notEqual(c.id, a.id);
      await t.app.jobs.settle();
      assert.ok(seen.ran.includes('u1') && !seen.ran.includes('u2') && seen.ran.includes('u3'));
    });

    test('twenty concurrent enqueues with one unique key add one job', async () => {
      await t.app.jobs.queue.setPaused('serial', true);
      const key = `race:${name}`;
      const results = await Promise.all(
        Array.from({ length: 20 }, (_, i) => t.app.jobs.enqueue('serialRecord', { tag: `race${i}` }, { uniqueKey: key })),
      );
      const ids = new Set(results.map((r) => r.id));
      const rows = (await t.app.jobs.queue.list({ queue: 'serial', limit: 200 })).filter((j) => j.unique_key === key);
      process.stdout.write(
        `# ${name}: 20 concurrent enqueues with one unique key -> ${rows.length} job, ${results.filter((r) => !r.existing).length} created\n`,
      );
      assert.equal(ids.size, 1);
      assert.equal(rows.length, 1);
      assert.equal(results.filter((r) => !r.existing).length, 1);
      await t.app.jobs.queue.setPaused('serial', false);
      await t.app.jobs.settle();
    });

    test('higher priority runs first; a delayed job waits for its time by the database clock', async () => {
      await t.app.jobs.queue.setPaused('serial', true);
      for (const p of [0, 5, 1]) await t.app.jobs.enqueue('serialRecord', { tag: `${name}:prio${p}` }, { priority: p });
      const delayed = await t.app.jobs.enqueue('serialRecord', { tag: 'delayed' }, { delayMs: 400 });
      await t.app.jobs.queue.setPaused('serial', false);
      await t.app.jobs.settle();
      assert.deepEqual(
        seen.ran.filter((x) => x.startsWith(`${name}:prio`)),
        [`${name}:prio5`, `${name}:prio1`, `${name}:prio0`],
      );
      await sleep(600);
      await t.app.jobs.settle();
      const row = await jobRow(delayed.id);
      assert.equal(row.state, 'completed');
      assert.ok(
        (row.started_at as number) - row.created_at >= 400,
        `started ${(row.started_at as number) - row.created_at} ms after enqueue`,
      );
    });

    test('per-queue concurrency holds', async () => {
      seen.maxRunning = 0;
      await t.app.jobs.queue.enqueueMany(
        t.app.storage.db,
        Array.from({ length: 8 }, () => ({ name: 'slowPair' })),
      );
      await t.app.jobs.settle();
      assert.equal(seen.maxRunning, 2);
    });

    test('a rate-limited queue starts at most max jobs in any window', async () => {
      const t0 = Date.now();
      const enqueued = await t.app.jobs.queue.enqueueMany(
        t.app.storage.db,
        Array.from({ length: 15 }, () => ({ name: 'limited' })),
      );
      await t.app.jobs.settle({ timeoutMs: 10_000 });
      const ids = new Set(enqueued.map((e) => e.id));
      // The starts as the database recorded them (what the limit governs; each job ran once).
      const jobs = (await t.app.jobs.queue.list({ queue: 'limited', limit: 100 })).filter((j) => ids.has(j.id));
      const starts = jobs.map((j) => j.started_at as number).sort((a, b) => a - b);
      assert.equal(starts.length, 15);
      assert.ok(jobs.every((j) => j.state === 'completed' && j.attempts === 1));
      let worst = 0;
      for (const s of starts) worst = Math.max(worst, starts.filter((x) => x >= s && x < s + 500).length);
      const span = (starts[14] as number) - (starts[0] as number);
      process.stdout.write(
        `# ${name} rate limit 5 per 500 ms: 15 jobs in ${Date.now() - t0} ms, first to last start ${span} ms, busiest 500 ms window ${worst}\n`,
      );
      assert.ok(worst <= 5, `busiest window had ${worst} starts`);
      assert.ok(span >= 1000, 'three windows were needed');
    });

    test('a poison job: exactly the configured attempts, backoff within bounds, dead letter with history, then redrive', async () => {
      seen.healOnRedrive = false;
      const { id } = await t.app.jobs.enqueue('poison', { key: name });
      const until = Date.now() + 10_000;
      while ((await jobRow(id)).state !== 'dead' && Date.now() < until) await sleep(50);
      const row = await jobRow(id);
      assert.equal(row.state, 'dead');
      assert.equal(row.attempts, 4);
      const times = seen.attemptsAt.get(name) as number[];
      assert.equal(times.length, 4, 'retries 3 = 4 attempts');
      const gaps = times.slice(1).map((x, i) => x - (times[i] as number));
      // Full jitter: the delay before attempt n+1 is in [0, min(300, 100 · 2^(n−1))]; polling adds at most ~poll time.
      const bounds = [100, 200, 300];
      for (const [i, g] of gaps.entries()) assert.ok(g <= (bounds[i] as number) + 150, `gap ${i + 1}: ${g} ms > ${bounds[i]} ms + slack`);
      process.stdout.write(`# ${name} poison job: 4 attempts, gaps ${gaps.join(', ')} ms (bounds 100, 200, 300 + poll)\n`);
      const errors = JSON.parse(row.errors);
      assert.equal(errors.length, 4);
      assert.deepEqual(
        errors.map((e: { attempt: number }) => e.attempt),
        [1, 2, 3, 4],
      );
      assert.match(errors[0].message, /poisoned/);
      assert.ok(errors[0].stack);
      // Redrive through the operators' API: the job gets its attempts back.
      seen.healOnRedrive = true;
      const r = await t.req('POST', '/api/v1/admin/queues/default/redrive', undefined, adminAuth);
      assert.equal(r.status, 200);
      assert.equal(r.body.redriven, 1);
      await t.app.jobs.settle();
      const healed = await jobRow(id);
      assert.equal(healed.state, 'completed');
      assert.equal(healed.attempts, 1);
      assert.equal(JSON.parse(healed.errors).length, 4, 'the history stays');
    });

    test('a permanent failure is dead-lettered at once; a timed-out attempt is aborted through its signal', async () => {
      const p = await t.app.jobs.enqueue('permanent', {});
      const h = await t.app.jobs.enqueue('hangs', {});
      await sleep(400);
      await t.app.jobs.settle();
      const pr = await jobRow(p.id);
      assert.equal(pr.state, 'dead');
      assert.equal(pr.attempts, 1);
      const hr = await jobRow(h.id);
      assert.equal(hr.state, 'dead');
      assert.match(JSON.parse(hr.errors)[0].message, /timed out after 200 ms/);
      assert.ok(seen.aborted.includes(h.id), 'the handler saw its signal abort');
    });

    test('fencing: after a lease expired and the job was taken back, the first worker cannot finish it', async () => {
      const q = t.app.jobs.queue;
      // Workers "A" and "B" are this test; the app's own worker stands aside.
      await t.app.jobs.worker?.stop(0);
      const { id } = await t.app.jobs.enqueue('serialRecord', { tag: 'fenced' });
      // A takes it with a short lease, then goes silent.
      const a = (await q.claim([{ queue: 'serial', limit: 1 }], ['serialRecord'], 'A', 100)).rows[0];
      assert.ok(a);
      assert.equal(a.id, id);
      await sleep(150);
      const reaped = await q.reap();
      assert.equal(reaped.length, 1);
      // B takes it once its backoff (at most 1 s for a first retry) has passed.
      let b: typeof a | undefined;
      for (let i = 0; i < 60 && !b; i++) {
        b = (await q.claim([{ queue: 'serial', limit: 1 }], ['serialRecord'], 'B', 5000)).rows[0];
        if (!b) await sleep(50);
      }
      assert.ok(b && b.fence === a.fence + 1);
      assert.equal((await q.complete([{ id, fence: a.fence }])).size, 0, "A's late completion is refused");
      assert.equal(await q.fail({ id, fence: a.fence }, { message: 'late' }, 'A'), undefined, "A's late failure is refused");
      assert.equal((await q.heartbeat([{ id, fence: a.fence }], 1000)).size, 0, "A's heartbeat is refused");
      assert.equal((await q.complete([{ id, fence: b.fence }])).size, 1, 'B completes');
      const row = await jobRow(id);
      assert.equal(row.state, 'completed');
      assert.equal(row.attempts, 2);
      assert.match(JSON.parse(row.errors)[0].message, /lease expired/);
      // The app's worker was stopped for this test: start a fresh one.
      t.app.jobs.worker = undefined;
      await t.app.jobs.startWorker();
    });

    test('operators: list, inspect, cancel, retry, discard, pause; admins only; bad input is a 4xx', async () => {
      assert.equal((await t.req('GET', '/api/v1/admin/jobs')).status, 401);
      const user = await t.signIn();
      assert.equal((await t.req('GET', '/api/v1/admin/jobs', undefined, user.auth)).status, 403);
      assert.equal((await t.req('POST', '/api/v1/admin/queues/serial/pause', undefined, user.auth)).status, 403);
      const paused = await t.req('POST', '/api/v1/admin/queues/serial/pause', undefined, adminAuth);
      assert.deepEqual(paused.body, { queue: 'serial', paused: true });
      const { id } = await t.app.jobs.enqueue('serialRecord', { tag: 'admin' });
      const listed = await t.req('GET', '/api/v1/admin/jobs?queue=serial&state=waiting', undefined, adminAuth);
      assert.equal(listed.status, 200);
      assert.ok(listed.body.items.some((j: { id: string }) => j.id === id));
      const one = await t.req('GET', `/api/v1/admin/jobs/${id}`, undefined, adminAuth);
      assert.equal(one.status, 200);
      assert.deepEqual(one.body.payload, { tag: 'admin' });
      const queues = await t.req('GET', '/api/v1/admin/queues', undefined, adminAuth);
      const serial = queues.body.items.find((q: { queue: string }) => q.queue === 'serial');
      assert.equal(serial.paused, true);
      assert.equal(serial.counts.waiting, 1);
      assert.equal(
        (await t.req('DELETE', `/api/v1/admin/jobs/${id}`, undefined, adminAuth)).status,
        409,
        'waiting jobs are cancelled, not discarded',
      );
      const cancelled = await t.req('POST', `/api/v1/admin/jobs/${id}/cancel`, undefined, adminAuth);
      assert.equal(cancelled.body.state, 'cancelled');
      assert.equal((await t.req('POST', `/api/v1/admin/jobs/${id}/cancel`, undefined, adminAuth)).body.code, 'E_JOB_STATE');
      const retried = await t.req('POST', `/api/v1/admin/jobs/${id}/retry`, undefined, adminAuth);
      assert.equal(retried.body.state, 'waiting');
      await t.req('POST', '/api/v1/admin/queues/serial/resume', undefined, adminAuth);
      await t.app.jobs.settle();
      assert.equal((await jobRow(id)).state, 'completed');
      assert.equal((await t.req('DELETE', `/api/v1/admin/jobs/${id}`, undefined, adminAuth)).status, 204);
      assert.equal((await t.req('GET', `/api/v1/admin/jobs/${id}`, undefined, adminAuth)).body.code, 'E_JOB_NOT_FOUND');
      for (const [path, code] of [
        ['/api/v1/admin/jobs?state=lost', 'E_INVALID_QUERY'],
        ['/api/v1/admin/jobs?limit=0', 'E_INVALID_QUERY'],
        ['/api/v1/admin/jobs?cursor=%27%3B--', 'E_INVALID_CURSOR'],
        ['/api/v1/admin/jobs?bogus=1', 'E_INVALID_QUERY'],
        ['/api/v1/admin/jobs/not-a-uuid', 'E_VALIDATION'],
      ] as const) {
        const r = await t.req('GET', path, undefined, adminAuth);
        assert.ok(r.status >= 400 && r.status < 500, `${path}: ${r.status}`);
        assert.match(String(r.headers['content-type']), /problem\+json/);
        if (code !== 'E_VALIDATION') assert.equal(r.body.code, code, path);
      }
      assert.equal((await t.req('POST', '/api/v1/admin/queues/nope/pause', undefined, adminAuth)).body.code, 'E_QUEUE_NOT_FOUND');
      assert.equal((await t.req('POST', '/api/v1/admin/schedules/nope/run', undefined, adminAuth)).body.code, 'E_SCHEDULE_NOT_FOUND');
      // A sensitive payload (a mail with a sign-in link) is never shown, and is erased once done.
      const s = await t.app.jobs.enqueue('secret', { link: 'https://x/?token=ot_secret' });
      assert.equal((await t.req('GET', `/api/v1/admin/jobs/${s.id}`, undefined, adminAuth)).body.payload, null);
      await t.app.jobs.settle();
      assert.equal((await jobRow(s.id)).payload, 'null');
    });

    test('metrics show attempts, dead letters and depth; /readyz reports a lagging queue when asked to', async () => {
      const m = (await t.req('GET', '/metrics')).raw;
      assert.match(m, /rampart_job_attempts_total\{queue="default",job="poison",outcome="dead"\} 1/);
      assert.match(m, /rampart_job_attempts_total\{queue="default",job="record",outcome="completed"\} \d+/);
      assert.match(m, /rampart_jobs\{queue="default",state="dead"\} \d+/);
      assert.match(m, /rampart_jobs_oldest_due_seconds\{queue="serial"\} 0/);
      const lagging = await startTestApp(name, app, { RAMPART_JOBS_READY_MAX_LAG_S: '1', RAMPART_JOBS_POLL_MS: '50' });
      try {
        assert.equal((await lagging.req('GET', '/readyz')).status, 200);
        await lagging.app.jobs.queue.setPaused('serial', true);
        await lagging.app.jobs.enqueue('serialRecord', { tag: 'lag' });
        await sleep(1300);
        const r = await lagging.req('GET', '/readyz');
        assert.equal(r.status, 503);
        assert.deepEqual(r.body.failing, ['jobs']);
        assert.match(r.body.checks.jobs.error, /queue serial lags/);
      } finally {
        await lagging.close();
      }
    });

    test('a lost notification connection delays jobs, never loses them', {
      skip: name === 'sqlite' ? 'SQLite notifies in-process only' : false,
    }, async () => {
      const listeners = () =>
        sql<{
          pid: number;
        }>`select pid from pg_stat_activity where application_name = 'rampart-listen' and datname = current_database()`.execute(
          t.app.storage.db,
        );
      const before = (await listeners()).rows.map((r) => r.pid);
      assert.equal(before.length, 1, 'one listening connection');
      await sql`select pg_terminate_backend(${before[0]})`.execute(t.app.storage.db);
      const { id } = await t.app.jobs.enqueue('record', { tag: `${name}:after-listener-loss` });
      const until = Date.now() + 5000;
      while ((await jobRow(id)).state !== 'completed') {
        assert.ok(Date.now() < until, 'the job ran (by polling)');
        await sleep(20);
      }
      while ((await listeners()).rows.length === 0) {
        assert.ok(Date.now() < until + 5000, 'the listener reconnected');
        await sleep(50);
      }
      assert.notEqual((await listeners()).rows[0]?.pid, before[0]);
    });

    test('cron: every-second ticks fire once each, by the database clock; GET schedules shows them', async () => {
      await sleep(3200);
      const ticks = await t.app.storage.db
        .selectFrom('_rampart_cron_ticks')
        .selectAll()
        .where('schedule', '=', 'everySecond')
        .orderBy('tick')
        .execute();
      assert.ok(ticks.length >= 3, `${ticks.length} ticks`);
      for (const [i, tk] of ticks.entries()) {
        assert.ok(Number(tk.fired_at) >= Number(tk.tick), 'never early');
        if (i > 0) assert.equal(Number(tk.tick) - Number(ticks[i - 1]?.tick), 1000, 'no tick missed');
      }
      const r = await t.req('GET', '/api/v1/admin/schedules', undefined, adminAuth);
      const s = r.body.items.find((x: { name: string }) => x.name === 'everySecond');
      assert.equal(s.last_node, t.app.jobs.node);
      assert.ok(['waiting', 'active', 'completed'].includes(s.last_status), s.last_status);
      assert.ok(Date.parse(s.next_tick) > Date.parse(s.last_tick));
      assert.ok(
        r.body.items.some((x: { name: string }) => x.name === 'rampart.clean-auth'),
        'built-in schedules are listed',
      );
      const run = await t.req('POST', '/api/v1/admin/schedules/rampart.clean-jobs/run', undefined, adminAuth);
      assert.equal(run.status, 202);
      await t.app.jobs.settle();
      assert.equal((await jobRow(run.body.job_id)).state, 'completed');
    });

    test('cron after an outage: skip drops the missed ticks, catch-up runs one job for them', async () => {
      const db = t.app.storage.db;
      // An outage: no node fires for 30 minutes (the scheduler stops, the clock of its last pass is
      // moved back), then a node starts and takes the lease.
      await t.app.jobs.scheduler?.stop();
      t.app.jobs.scheduler = undefined;
      const count = async (s: string) =>
        Number(
          (
            await db
              .selectFrom('_rampart_cron_ticks')
              .select((eb) => eb.fn.countAll().as('n'))
              .where('schedule', '=', s)
              .executeTakeFirstOrThrow()
          ).n,
        );
      const skippedCounts = async () => {
        const rows = await db
          .selectFrom('_rampart_schedules')
          .select(['name', 'skipped'])
          .where('name', 'in', ['skipMissed', 'catchUpMissed'])
          .execute();
        return (n: string) => Number(rows.find((r) => r.name === n)?.skipped ?? 0);
      };
      // Earlier tests ran the scheduler too: a minute boundary during them fired these schedules
      // on time. Only what happens after the outage counts.
      const firedBefore = { skip: await count('skipMissed'), catchUp: await count('catchUpMissed') };
      const skippedBefore = await skippedCounts();
      const resumed = await t.app.storage.dbNow();
      const back = resumed - 30 * 60_000;
      await db.updateTable('_rampart_schedules').set({ last_tick: back }).where('name', 'in', ['skipMissed', 'catchUpMissed']).execute();
      await t.app.jobs.startScheduler();
      await sleep(1500);
      // A minute that begins during these 1.5 s is a new, on-time tick for both schedules.
      const newMinutes = Math.floor((await t.app.storage.dbNow()) / 60_000) - Math.floor(resumed / 60_000);
      const skipped = (await count('skipMissed')) - firedBefore.skip;
      const caught = (await count('catchUpMissed')) - firedBefore.catchUp;
      const skippedAfter = await skippedCounts();
      const skippedOf = (n: string) => skippedAfter(n) - skippedBefore(n);
      process.stdout.write(
        `# ${name} 30-minute outage: skip fired ${skipped} (skipped ${skippedOf('skipMissed')}), catch-up fired ${caught} (skipped ${skippedOf('catchUpMissed')})\n`,
      );
      // Ticks within the last minute are on time (lateAfterMs 60 s): at most one of those, plus
      // one per minute that began meanwhile.
      assert.ok(skipped <= 1 + newMinutes, `skip fired ${skipped} (${newMinutes} new minutes)`);
      assert.ok(caught >= 1 && caught <= 2 + newMinutes, `catch-up fired ${caught} (${newMinutes} new minutes)`);
      assert.ok(skippedOf('skipMissed') >= 28);
      assert.equal(skippedOf('skipMissed') + skipped, skippedOf('catchUpMissed') + caught, 'both saw the same ticks');
    });
  });
}
