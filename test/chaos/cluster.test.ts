/**
 * The cluster under fire, through the shipped nginx config: three `rampart serve` nodes and a
 * worker on a private PostgreSQL and a private Redis (never the machine's shared ones), driven by
 * 24 clients from their own loopback addresses. A node is SIGKILLed, restarted node by node,
 * SIGSTOPped; Redis is SIGKILLed; PostgreSQL is stopped in immediate mode. Each test prints what
 * it measured. (The cron leader's death is test/chaos/cron-cluster.test.ts.)
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { alive, LocalCluster } from '../../deploy/local/cluster.js';
import { type Outcome, seedChat, startLoad, summarize } from '../helpers/load.js';
import { PrivatePostgres, privatePgUnavailable } from '../helpers/processes.js';
import { PrivateRedis, privateRedisUnavailable } from '../helpers/redis.js';

function nginxUnavailable(): string | undefined {
  try {
    execFileSync('nginx', ['-v'], { stdio: 'ignore' });
    return undefined;
  } catch {
    if (process.env.CI === 'true') throw new Error('nginx is not installed (.ci/run installs it)');
    return 'nginx is not installed (apt-get install -y nginx)';
  }
}

const skip = nginxUnavailable() ?? privatePgUnavailable() ?? privateRedisUnavailable() ?? false;
if (skip) process.stdout.write(`# skipping the cluster chaos tests: ${skip}\n`);

/** Seconds of load in the node-kill test (the 60; shorter when iterating locally). */
const LOAD_S = Number(process.env.CLUSTER_LOAD_S ?? 60);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const print = (line: string) => process.stdout.write(`# ${line}\n`);

describe('cluster behind nginx under failures', { skip, concurrency: false }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'rampart-cluster-'));
  const pgi = new PrivatePostgres();
  const redis = new PrivateRedis();
  let cluster: LocalCluster;
  let db: pg.Pool;
  let room: string;
  const readIds: string[] = [];

  before(async () => {
    await pgi.init();
    await redis.start();
    cluster = new LocalCluster({
      databaseUrl: pgi.url,
      redisUrl: redis.url,
      dir,
      app: 'test/fixtures/open-chat.ts',
      env: {
        LOG_LEVEL: 'warn',
        // Limits on and shared through Redis, set far above what 24 test clients send.
        RAMPART_RATE_LIMITS: '{"anonymous": "1000000/min", "user": "1000000/min", "auth": "1000/min"}',
      },
    });
    await cluster.up();
    db = new pg.Pool({ connectionString: pgi.url, max: 2 });
    db.on('error', () => {});
    const seeded = await seedChat(cluster.url, 50);
    room = seeded.room;
    readIds.push(...seeded.ids);
  });

  after(async () => {
    await cluster?.down().catch(() => {});
    await db?.end().catch(() => {});
    await redis.stop();
    pgi.destroy();
    if (!process.env.KEEP_CLUSTER_DIR) rmSync(dir, { recursive: true, force: true });
    else print(`cluster logs kept in ${dir}`);
  });

  const load = () =>
    startLoad({
      url: cluster.url,
      clients: 24,
      writeShare: 0.3,
      readIds,
      collection: 'messages',
      createBody: (token) => ({ room, body: token, author: 'load' }),
      pauseOnFailureMs: 20,
      // Under nginx's 100 r/s per address: the limit is not what these tests are about.
      maxRatePerClient: 80,
    });

  /** Every acknowledged create is stored once; no create is stored twice. */
  async function checkWrites(outcomes: Outcome[]): Promise<{ acked: number; duplicates: number; lost: number }> {
    const tokens = outcomes.filter((o) => o.method === 'POST' && o.token).map((o) => o.token as string);
    const { rows } = await db.query<{ body: string; n: string }>(
      'select body, count(*) as n from messages where body = any($1::text[]) group by body',
      [tokens],
    );
    const stored = new Map(rows.map((r) => [r.body, Number(r.n)]));
    const acked = outcomes.filter((o) => o.status === 201);
    return {
      acked: acked.length,
      duplicates: rows.filter((r) => Number(r.n) > 1).length,
      lost: acked.filter((o) => !stored.has(o.token as string)).length,
    };
  }

  const report = (name: string, outcomes: Outcome[]) => {
    const s = summarize(outcomes);
    print(
      `${name}: ${s.total} requests, ${s.failed} failed (${(s.failedShare * 100).toFixed(3)}%; GETs ${s.failedGets}), ` +
        `p50 ${s.p50.toFixed(1)} ms, p99 ${s.p99.toFixed(1)} ms, max ${s.max.toFixed(0)} ms; ${s.resent} resent after a stale kept-alive connection; ` +
        JSON.stringify(s.byStatus),
    );
    return s;
  };

  test(`a node SIGKILLed 20 s into ${LOAD_S} s of load: no GET fails, under 0.1% fail, no create applied twice`, async () => {
    const victim = cluster.nodes[1] as (typeof cluster.nodes)[number];
    const l = load();
    await sleep(Math.min(20_000, (LOAD_S * 1000) / 3));
    cluster.signal(victim, 'SIGKILL');
    const killedAt = performance.now();
    await sleep(LOAD_S * 1000 - Math.min(20_000, (LOAD_S * 1000) / 3));
    l.stop();
    const outcomes = await l.done;
    const s = report('node SIGKILL', outcomes);
    const w = await checkWrites(outcomes);
    print(
      `node SIGKILL: ${w.acked} creates acknowledged, ${w.lost} lost, ${w.duplicates} applied twice; killed ${((killedAt - l.t0) / 1000).toFixed(1)} s in`,
    );
    assert.equal(s.failedGets, 0, 'nginx retries idempotent requests on another node');
    assert.ok(s.failedShare < 0.001, `failed share ${s.failedShare}`);
    assert.equal(w.duplicates, 0);
    assert.equal(w.lost, 0);
    await cluster.restart(victim);
  });

  test('a rolling restart of every node under load: no request fails', async () => {
    const pids = cluster.nodes.map((n) => n.pid);
    const l = load();
    await sleep(2000);
    await cluster.rollingRestart(print);
    await sleep(2000);
    l.stop();
    const outcomes = await l.done;
    const s = report('rolling restart', outcomes);
    const w = await checkWrites(outcomes);
    assert.ok(
      cluster.nodes.every((n, i) => n.pid !== pids[i]),
      'every node is a new process',
    );
    assert.equal(s.failed, 0, JSON.stringify(s.byStatus));
    assert.equal(w.duplicates, 0);
    assert.equal(w.lost, 0);
  });

  test('a node SIGSTOPped (accepts TCP, never answers): under 0.1% fail, p99 within the proxy timeout', async () => {
    const victim = cluster.nodes[2] as (typeof cluster.nodes)[number];
    const l = load();
    await sleep(3000);
    cluster.signal(victim, 'SIGSTOP');
    // Longer than nginx's 10 s read timeout and its 5 s fail_timeout: the frozen node is timed
    // out, left out, and tried again while still frozen.
    await sleep(25_000);
    cluster.signal(victim, 'SIGCONT');
    await sleep(3000);
    l.stop();
    const outcomes = await l.done;
    const s = report('node SIGSTOP', outcomes);
    const w = await checkWrites(outcomes);
    print(`node SIGSTOP: ${w.acked} creates acknowledged, ${w.duplicates} applied twice`);
    assert.ok(s.failedShare < 0.001, `failed share ${s.failedShare}`);
    // nginx's proxy_read_timeout is 10 s; a GET that hit the frozen node is retried after it.
    assert.ok(s.p99 <= 10_500, `p99 ${s.p99} ms`);
    assert.equal(w.duplicates, 0);
    assert.equal(w.lost, 0);
  });

  test('Redis SIGKILLed under load, then restarted: CRUD never 5xx, realtime degraded then back, no process restarted', async () => {
    const pids = [...cluster.nodes, ...cluster.workers].map((m) => m.pid);
    // What each node's /readyz says of its realtime fan-out and of Redis (shown, not decisive).
    let redisUp: boolean[] = [];
    const realtimeUp = async () => {
      const answers = await Promise.all(
        cluster.nodes.map(
          async (n) =>
            (await (await fetch(`http://127.0.0.1:${n.port}/readyz`)).json()) as { realtime: { up: boolean }; redis?: { up: boolean } },
        ),
      );
      redisUp = answers.map((r) => r.redis?.up === true);
      return answers.map((r) => r.realtime.up);
    };
    assert.deepEqual(await realtimeUp(), [true, true, true]);
    assert.deepEqual(redisUp, [true, true, true], 'every node reports Redis up');
    const l = load();
    await sleep(3000);
    await redis.kill();
    await sleep(1500);
    const during = await realtimeUp();
    const redisDuring = redisUp;
    await sleep(5000);
    await redis.start();
    const back = performance.now();
    let recovered = await realtimeUp();
    while ((recovered.includes(false) || redisUp.includes(false)) && performance.now() - back < 10_000) {
      await sleep(100);
      recovered = await realtimeUp();
    }
    const recoveredMs = performance.now() - back;
    await sleep(2000);
    l.stop();
    const outcomes = await l.done;
    const s = report('Redis SIGKILL', outcomes);
    print(
      `Redis SIGKILL: realtime up during the outage ${JSON.stringify(during)}, Redis up ${JSON.stringify(redisDuring)}; all up again ${recoveredMs.toFixed(0)} ms after Redis returned`,
    );
    assert.equal(outcomes.filter((o) => o.status >= 500 || o.status === 0).length, 0, JSON.stringify(s.byStatus));
    assert.ok(
      during.every((u) => !u),
      'every node reports realtime degraded',
    );
    assert.deepEqual(recovered, [true, true, true]);
    assert.deepEqual(redisDuring, [false, false, false], 'every node reported Redis down during the outage');
    assert.deepEqual(redisUp, [true, true, true], 'and up again after');
    assert.ok(
      [...cluster.nodes, ...cluster.workers].every((m, i) => m.pid === pids[i] && alive(m.pid)),
      'no process restarted',
    );
  });

  test('PostgreSQL stopped (immediate) under load: fast 503 + Retry-After through nginx, no crash, back within 5 s', async () => {
    const pids = [...cluster.nodes, ...cluster.workers].map((m) => m.pid);
    const l = load();
    await sleep(2000);
    pgi.stopImmediate();
    const downAt = performance.now();
    await sleep(4000);
    pgi.start();
    const upAt = performance.now();
    await sleep(7000);
    l.stop();
    const outcomes = await l.done;
    const s = report('PostgreSQL restart', outcomes);
    // Outcome times are relative to the load's start; the marks are shifted to the same origin.
    const rel = (t: number) => t - l.t0;
    const failures = outcomes.filter((o) => o.status < 200 || o.status >= 300);
    const other = failures.filter((o) => o.status !== 503);
    const unavailable = failures.filter((o) => o.status === 503);
    const slow503 = unavailable.map((o) => o.ms).sort((a, b) => a - b);
    const lastFailure = Math.max(0, ...failures.map((o) => o.at));
    const recoveredAfter = lastFailure - rel(upAt);
    print(
      `PostgreSQL restart: ${unavailable.length} × 503 (p99 ${(slow503[Math.floor(slow503.length * 0.99)] ?? 0).toFixed(0)} ms, ` +
        `${unavailable.filter((o) => !o.retryAfter).length} without Retry-After), ${other.length} other failures; ` +
        `down ${((upAt - downAt) / 1000).toFixed(1)} s; last failure ${(recoveredAfter / 1000).toFixed(2)} s after PostgreSQL was back`,
    );
    assert.ok(unavailable.length > 0, 'the outage was seen');
    assert.equal(other.length, 0, `only 503s: ${JSON.stringify(s.byStatus)}`);
    assert.equal(unavailable.filter((o) => !o.retryAfter).length, 0);
    assert.ok((slow503[Math.floor(slow503.length * 0.99)] ?? 0) < 1500, 'fast failures');
    assert.ok(recoveredAfter < 5000, `recovered ${recoveredAfter} ms after PostgreSQL returned`);
    assert.ok(
      [...cluster.nodes, ...cluster.workers].every((m, i) => m.pid === pids[i] && alive(m.pid)),
      'no process exited',
    );
  });
});
