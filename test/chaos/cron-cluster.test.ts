/**
 * Cron across real nodes. Three nodes run a one-second schedule; the leader is SIGKILLed, later
 * the next leader is SIGSTOPped past its lease and resumed: every tick fires once (no
 * duplicates, none missed, never early). Twenty nodes started at once apply each migration once
 * and register one row per schedule. Each test prints what it measured.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { describe, test } from 'node:test';
import type { RampartApp } from '../../src/app.js';
import jobsApp from '../fixtures/jobs-app.ts';
import { backendMatrix, makeBackend } from '../helpers/backends.js';
import { controlApp } from '../helpers/jobs.js';
import { type RampartProcess, startWorker } from '../helpers/processes.js';

const APP = 'test/fixtures/jobs-app.ts';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** How long the three-node run lasts (seconds). */
const RUN_S = Number(process.env.CRON_TEST_S ?? 40);
const LEASE_MS = 2000;
const LIBFAKETIME = '/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1';

async function leader(app: RampartApp): Promise<string | undefined> {
  const r = await app.storage.db
    .selectFrom('_rampart_leases')
    .select(['holder', 'expires_at'])
    .where('name', '=', 'rampart.scheduler')
    .executeTakeFirst();
  return r && Number(r.expires_at) > (await app.storage.dbNow()) ? String(r.holder) : undefined;
}

for (const { name, skip } of await backendMatrix()) {
  describe(`cron across nodes (${name})`, { skip }, () => {
    test(`three nodes, a one-second schedule for ${RUN_S} s, the leader SIGKILLed, the next one SIGSTOPped: every tick once`, {
      skip: name === 'sqlite' ? 'cluster mode runs on PostgreSQL (the scheduler suite in test/conformance covers SQLite)' : false,
    }, async () => {
      const backend = await makeBackend(name);
      const env = {
        ...backend.env,
        RAMPART_SCHEDULER_LEASE_MS: String(LEASE_MS),
        RAMPART_JOBS_POLL_MS: '200',
        FIXTURE_CRON: '1',
      };
      const app = await controlApp(backend, jobsApp);
      const nodes = new Map<string, RampartProcess>();
      const start = async (node: string) => nodes.set(node, await startWorker({ ...env, RAMPART_NODE_NAME: node }, APP));
      try {
        await Promise.all(['node-1', 'node-2', 'node-3'].map(start));
        const t0 = Date.now();
        const at = (s: number) => sleep(Math.max(0, t0 + s * 1000 - Date.now()));

        await at(RUN_S * 0.3);
        const killed = (await leader(app)) as string;
        assert.ok(nodes.has(killed), `a leader is elected (${killed})`);
        nodes.get(killed)?.child.kill('SIGKILL');
        const killedAt = await app.storage.dbNow();
        await nodes.get(killed)?.exited;
        nodes.delete(killed);
        await start('node-4');

        await at(RUN_S * 0.6);
        const paused = (await leader(app)) as string;
        assert.ok(paused && paused !== killed, `another node leads (${paused})`);
        nodes.get(paused)?.child.kill('SIGSTOP');
        const pausedAt = await app.storage.dbNow();
        await sleep(2 * LEASE_MS + 1000);
        nodes.get(paused)?.child.kill('SIGCONT');
        const resumedAt = await app.storage.dbNow();

        await at(RUN_S);
        for (const n of nodes.values()) n.child.kill('SIGTERM');
        await Promise.all([...nodes.values()].map((n) => n.exited));
        nodes.clear();

        const ticks = (
          await app.storage.db.selectFrom('_rampart_cron_ticks').selectAll().where('schedule', '=', 'everySecond').orderBy('tick').execute()
        ).map((r) => ({ tick: Number(r.tick), firedAt: Number(r.fired_at), node: String(r.node), job: String(r.job_id) }));
        const jobs = await app.storage.db
          .selectFrom('_rampart_jobs')
          .select(['tick', (eb) => eb.fn.countAll().as('n')])
          .where('schedule', '=', 'everySecond')
          .groupBy('tick')
          .execute();
        const first = ticks[0]?.tick as number;
        const last = ticks[ticks.length - 1]?.tick as number;
        const duplicateTicks = jobs.filter((j) => Number(j.n) > 1).length;
        const missed = (last - first) / 1000 + 1 - ticks.length;
        const early = ticks.filter((t) => t.firedAt < t.tick).length;
        const takeover = ticks.find((t) => t.firedAt > killedAt && t.node !== killed);
        const takeoverMs = (takeover?.firedAt ?? Number.NaN) - killedAt;
        const byNode = new Map<string, number>();
        for (const t of ticks) byNode.set(t.node, (byNode.get(t.node) ?? 0) + 1);
        const afterResume = ticks.filter((t) => t.node === paused && t.firedAt >= resumedAt).length;
        const latest = Math.max(...ticks.map((t) => t.firedAt - t.tick));
        process.stdout.write(
          `# ${name}: ${ticks.length} ticks over ${((last - first) / 1000).toFixed(0)} s on ${byNode.size} nodes (${[...byNode].map(([n, c]) => `${n} ${c}`).join(', ')}): ` +
            `duplicate ticks ${duplicateTicks}, missed ${missed}, early ${early}, latest ${latest} ms after its time; ` +
            `leader ${killed} SIGKILLed: next tick fired by ${takeover?.node} ${takeoverMs} ms later (lease ${LEASE_MS} ms + one tick = ${LEASE_MS + 1000} ms); ` +
            `leader ${paused} SIGSTOPped ${resumedAt - pausedAt} ms: ticks it fired after resuming ${afterResume}\n`,
        );
        assert.equal(duplicateTicks, 0);
        assert.equal(ticks.length, jobs.length, 'one job per tick');
        assert.equal(missed, 0);
        assert.equal(early, 0);
        assert.ok(takeoverMs <= LEASE_MS + 1000 + 500, `takeover within lease + one tick (${takeoverMs} ms)`);
      } finally {
        for (const n of nodes.values()) {
          n.child.kill('SIGCONT');
          n.child.kill('SIGKILL');
        }
        await Promise.all([...nodes.values()].map((n) => n.exited));
        await app.stop();
        await backend.cleanup();
      }
    });

    test('a scheduler whose clock is an hour ahead or behind fires every tick on time by the database clock', {
      skip: name === 'sqlite' ? "SQLite's clock is the process's own: skew needs a database server" : faketimeMissing(),
    }, async () => {
      const backend = await makeBackend(name);
      // libfaketime preloaded into the node process itself (the faketime wrapper would take the signals).
      const env = {
        ...backend.env,
        FIXTURE_CRON: '1',
        RAMPART_SCHEDULER_LEASE_MS: String(LEASE_MS),
        LD_PRELOAD: LIBFAKETIME,
        FAKETIME_DONT_FAKE_MONOTONIC: '1',
      };
      const app = await controlApp(backend, jobsApp);
      try {
        for (const skew of ['+1h', '-1h']) {
          const from = await app.storage.dbNow();
          const node = await startWorker({ ...env, FAKETIME: skew, RAMPART_NODE_NAME: `skewed${skew}` }, APP);
          await sleep(5000);
          node.child.kill('SIGTERM');
          assert.equal(await node.exited, 0);
          const ticks = (
            await app.storage.db
              .selectFrom('_rampart_cron_ticks')
              .selectAll()
              .where('schedule', '=', 'everySecond')
              .where('node', '=', `skewed${skew}`)
              .execute()
          ).map((r) => ({ tick: Number(r.tick), firedAt: Number(r.fired_at) }));
          const early = ticks.filter((t) => t.firedAt < t.tick).length;
          const ahead = ticks.filter((t) => t.tick > from + 60_000).length;
          const latest = Math.max(...ticks.map((t) => t.firedAt - t.tick));
          process.stdout.write(
            `# ${name}: a node with its clock ${skew} fired ${ticks.length} ticks in 5 s: early ${early}, from the future ${ahead}, latest ${latest} ms after its time\n`,
          );
          assert.ok(ticks.length >= 3, `it fired ticks (${ticks.length})`);
          assert.equal(early, 0);
          assert.equal(ahead, 0);
          assert.ok(latest < 1500, `on time (${latest} ms)`);
        }
      } finally {
        await app.stop();
        await backend.cleanup();
      }
    });

    test('twenty nodes started at once: each migration runs once, one row per schedule', async () => {
      const backend = await makeBackend(name);
      const env = { ...backend.env, FIXTURE_CRON: '1', RAMPART_JOBS_POLL_MS: '500' };
      const nodes: RampartProcess[] = [];
      let app: RampartApp | undefined;
      try {
        const t0 = Date.now();
        const started = await Promise.allSettled(
          Array.from({ length: 20 }, (_, i) => startWorker({ ...env, RAMPART_NODE_NAME: `n${i}` }, APP)),
        );
        for (const s of started) if (s.status === 'fulfilled') nodes.push(s.value);
        const upMs = Date.now() - t0;
        const failures = started
          .filter((s) => s.status === 'rejected')
          .map((s) => String((s as PromiseRejectedResult).reason).slice(0, 300));
        app = await controlApp(backend, jobsApp);
        const migrations = await app.storage.db.selectFrom('_rampart_migrations').select('name').execute();
        const names = migrations.map((m) => String(m.name));
        const schedules = await app.storage.db.selectFrom('_rampart_schedules').select('name').execute();
        // The nodes declare everySecond too (FIXTURE_CRON=1 in their environment).
        const declared = [...app.jobs.registry.schedules.keys(), 'everySecond'];
        process.stdout.write(
          `# ${name}: 20 nodes started at once, ${nodes.length} up in ${upMs} ms; migrations recorded ${names.length} (${new Set(names).size} distinct: ${names.join(', ')}); ` +
            `schedule rows ${schedules.length} for ${declared.length} schedules\n`,
        );
        assert.equal(failures.length, 0, failures.join('\n'));
        assert.equal(nodes.length, 20);
        assert.equal(new Set(names).size, names.length, 'no migration twice');
        assert.ok(names.includes('0001_auth') && names.includes('0002_jobs'));
        assert.deepEqual(schedules.map((s) => String(s.name)).sort(), declared.sort());
      } finally {
        for (const n of nodes) n.child.kill('SIGTERM');
        const codes = await Promise.all(nodes.map((n) => n.exited));
        await app?.stop();
        await backend.cleanup();
        assert.ok(
          codes.every((c) => c === 0),
          `every node stopped cleanly on SIGTERM (${codes.join(',')})`,
        );
      }
    });
  });
}

function faketimeMissing(): string | false {
  return existsSync(LIBFAKETIME) ? false : `libfaketime is not installed (apt-get install faketime; looked for ${LIBFAKETIME})`;
}
