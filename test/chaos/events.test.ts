/**
 * Domain events under failures, with real processes on PostgreSQL and brokers of the test's own
 * (a RabbitMQ node and a NATS server on free ports, killed and restarted; the machine's brokers are
 * never touched):
 *  - 10,000 changes while the relays (`rampart worker` processes) are SIGKILLed every few seconds
 *    and each broker is SIGKILLed and restarted once: every committed change's event reaches both
 *    brokers (lost 0), repeats carry the same id, and each record's events arrive in commit order;
 *  - both brokers down for EVENTS_OUTAGE_S (60) seconds under write load: the API's latency is
 *    unchanged, events wait in the outbox (its age in the metrics, the breaker open), and the
 *    backlog drains in order once the brokers are back.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { createApp, type RampartApp } from '../../src/app.js';
import { loadConfig } from '../../src/core/config.js';
import { OUTBOX } from '../../src/events/events.js';
import app from '../fixtures/events-app.ts';
import { makeBackend, pgUnavailable, type TestBackend } from '../helpers/backends.js';
import {
  orderReport,
  PrivateNats,
  PrivateRabbit,
  privateNatsUnavailable,
  RabbitCollector,
  type Received,
  readStream,
} from '../helpers/brokers.js';
import { type RampartProcess, startRampart, startWorker } from '../helpers/processes.js';

const APP = 'test/fixtures/events-app.ts';
const OUTAGE_S = Number(process.env.EVENTS_OUTAGE_S ?? 60);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const print = (s: string) => process.stdout.write(`# ${s}\n`);
const skip = (await pgUnavailable()) ?? privateNatsUnavailable() ?? false;

/** What a broker received against what was committed: lost events, repeats, per-record order. */
function check(name: string, committed: Set<string>, received: Received[]) {
  const r = orderReport(received);
  const got = new Set(received.map((e) => e.id));
  const lost = [...committed].filter((id) => !got.has(id)).length;
  const unknown = [...got].filter((id) => !committed.has(id)).length;
  return { name, committed: committed.size, received: received.length, ...r, lost, unknown };
}

describe('domain events under failures', { skip }, () => {
  let backend: TestBackend;
  let nats: PrivateNats;
  let rabbit: PrivateRabbit;
  let control: RampartApp;
  let n = 0;

  before(async () => {
    backend = await makeBackend('postgres');
    [nats, rabbit] = await Promise.all([PrivateNats.start(), PrivateRabbit.start()]);
    // Writes only (no relay): the outbox rows name the destinations; each run's relays route them.
    control = await createApp(
      loadConfig({
        env: {
          ...backend.env,
          RAMPART_BROKERS: JSON.stringify({ rabbit: rabbit.url, nats: nats.url }),
          RAMPART_EVENTS_RELAY: 'false',
          RAMPART_JOBS_IN_PROCESS: 'false',
          RAMPART_SCHEDULER: 'false',
        },
      }),
      app,
    );
    await control.migrator.up();
  });
  after(async () => {
    await control?.stop();
    await Promise.all([nats?.stop(), rabbit?.stop()]);
    await backend?.cleanup();
  });

  /** The environment of a run: its own exchange, subjects and stream. */
  const runEnv = (): { tag: string; env: Record<string, string> } => {
    const tag = `r${++n}`;
    return {
      tag,
      env: {
        ...backend.env,
        LOG_LEVEL: 'warn',
        RAMPART_BROKERS: JSON.stringify({ rabbit: rabbit.url, nats: nats.url }),
        EVENTS_EXCHANGE: `chaos_${tag}`,
        EVENTS_PREFIX: `c${tag}`,
        EVENTS_STREAM: `C_${tag}`,
        RAMPART_EVENTS_POLL_MS: '200',
        RAMPART_EVENTS_LEASE_MS: '3000',
        RAMPART_EVENTS_PUBLISH_TIMEOUT_MS: '2000',
        RAMPART_EVENTS_BREAKER_OPEN_MS: '1000',
      },
    };
  };

  const pending = () => control.events.pending();

  const committed = async (destination: string, since: number) =>
    new Set(
      (
        await control.storage.db
          .selectFrom(OUTBOX)
          .select('event_id')
          .where('destination', '=', destination)
          .where('id', '>', since)
          .execute()
      ).map((r) => r.event_id as string),
    );

  const lastOutboxId = async () =>
    Number(
      (
        await control.storage.db
          .selectFrom(OUTBOX)
          .select((eb) => eb.fn.max('id').as('m'))
          .executeTakeFirst()
      )?.m ?? 0,
    );

  test('10,000 changes while relays are SIGKILLed every 3 s and each broker is killed once: lost 0, order violations 0', {
    timeout: 300_000,
  }, async () => {
    const { tag, env } = runEnv();
    const collector = await RabbitCollector.bind(rabbit.url, `chaos_${tag}`);
    const since = await lastOutboxId();
    const relays: RampartProcess[] = await Promise.all([startWorker(env, APP), startWorker(env, APP)]);
    const started = Date.now();
    let writing = true;
    let kills = 0;
    const killer = (async () => {
      while (writing) {
        await sleep(3000);
        if (!writing) break;
        const victim = relays.shift();
        victim?.child.kill('SIGKILL');
        kills++;
        relays.push(await startWorker(env, APP));
      }
    })();
    const brokers = (async () => {
      await sleep(5000);
      await nats.kill();
      const natsDown = Date.now();
      await sleep(2000);
      await nats.startAgain();
      print(`events chaos: NATS SIGKILLed ${((natsDown - started) / 1000).toFixed(1)} s in, back after ${Date.now() - natsDown} ms`);
      await sleep(3000);
      await rabbit.kill();
      const rabbitDown = Date.now();
      await sleep(2000);
      await rabbit.startAgain();
      print(
        `events chaos: RabbitMQ SIGKILLed ${((rabbitDown - started) / 1000).toFixed(1)} s in, back after ${Date.now() - rabbitDown} ms`,
      );
    })();
    // 10,000 changes: 400 orders created, then 9,600 updates of random orders, 8 writers at once.
    const ids: string[] = [];
    const CREATES = 400;
    const CHANGES = 10_000;
    for (let i = 0; i < CREATES; i += 8) {
      ids.push(
        ...(await Promise.all(Array.from({ length: 8 }, (_, k) => control.records.create('orders', { item: `o${i + k}`, n: 0 })))).map(
          (r) => r.id,
        ),
      );
    }
    let next = CREATES;
    const writer = async () => {
      for (let i = next++; i < CHANGES; i = next++)
        await control.records.update('orders', ids[Math.floor(Math.random() * ids.length)] as string, { n: i });
    };
    await Promise.all(Array.from({ length: 8 }, writer));
    const wrote = Date.now();
    writing = false;
    await killer;
    await brokers;
    const drainStart = Date.now();
    while ((await pending()) > 0 && Date.now() - drainStart < 120_000) await sleep(200);
    const left = await pending();
    print(
      `events chaos: ${CHANGES} changes in ${((wrote - started) / 1000).toFixed(1)} s with ${kills} relay SIGKILLs; outbox empty ${((Date.now() - wrote) / 1000).toFixed(1)} s after the last write (${left} left)`,
    );
    const [viaRabbit, viaNats] = await Promise.all([collector.drain(1500), readStream(nats.url, `C_${tag}`)]);
    const reports = [
      check('RabbitMQ', await committed('rabbit', since), viaRabbit),
      check('NATS', await committed('nats', since), viaNats),
    ];
    for (const r of reports) {
      print(
        `events chaos ${r.name}: ${r.committed} committed, ${r.received} received (${r.unique} distinct, ${r.duplicates} repeats with the same id), lost ${r.lost}, order violations ${r.violations}`,
      );
    }
    for (const p of relays) p.child.kill('SIGTERM');
    await Promise.all(relays.map((p) => p.exited));
    await collector.close();
    assert.equal(left, 0, 'the outbox drained');
    for (const r of reports) {
      assert.equal(r.committed, CHANGES, `${r.name}: one outbox row per change`);
      assert.equal(r.lost, 0, `${r.name}: no committed change lost`);
      assert.equal(r.unknown, 0, `${r.name}: nothing that was not committed`);
      assert.equal(r.violations, 0, `${r.name}: per-record commit order`);
    }
  });

  test(`both brokers down for ${OUTAGE_S} s under write load: API latency unchanged, the backlog drains after, in order`, {
    timeout: (OUTAGE_S + 180) * 1000,
  }, async () => {
    const { tag, env } = runEnv();
    const collector = await RabbitCollector.bind(rabbit.url, `chaos_${tag}`);
    const since = await lastOutboxId();
    const { PORT: _port, ...serveEnv } = env;
    const node = await startRampart(serveEnv, ['serve', '--app', APP]);
    const samples: Array<{ at: number; ms: number; status: number }> = [];
    let loading = true;
    // 4 clients, each creating and then updating its own orders, ~50 writes/s each.
    const client = async (c: number) => {
      const mine: string[] = [];
      let i = 0;
      while (loading) {
        const t0 = performance.now();
        const update = mine.length > 0 && i % 3 !== 0;
        const res = update
          ? await fetch(`${node.url}/api/v1/collections/orders/records/${mine[i % mine.length]}`, {
              method: 'PATCH',
              headers: { 'content-type': 'application/json' },
              body: JSON.stringify({ n: i }),
            })
          : await fetch(`${node.url}/api/v1/collections/orders/records`, {
              method: 'POST',
              headers: { 'content-type': 'application/json' },
              body: JSON.stringify({ item: `c${c}-${i}`, n: i }),
            });
        const body = (await res.json()) as { id?: string };
        if (!update && res.status === 201 && body.id) mine.push(body.id);
        samples.push({ at: Date.now(), ms: performance.now() - t0, status: res.status });
        i++;
        await sleep(20);
      }
    };
    const load = Promise.all([0, 1, 2, 3].map(client));
    await sleep(10_000);
    const downAt = Date.now();
    await Promise.all([nats.kill(), rabbit.kill()]);
    await sleep(OUTAGE_S * 1000 - 5000);
    const metrics = await (await fetch(`${node.url}/metrics`)).text();
    const oldest = Number(/rampart_events_oldest_pending_seconds\{destination="nats"\} ([\d.]+)/.exec(metrics)?.[1] ?? 0);
    const breaker = /rampart_circuit_breaker_state\{dependency="broker:nats"\} (\d)/.exec(metrics)?.[1];
    const pendingDuring = await pending();
    await sleep(5000);
    await Promise.all([nats.startAgain(), rabbit.startAgain()]);
    const upAt = Date.now();
    await sleep(5000);
    loading = false;
    await load;
    const loadEnd = Date.now();
    while ((await pending()) > 0 && Date.now() - upAt < 120_000) await sleep(100);
    const drained = Date.now();
    const left = await pending();
    const p99 = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length * 0.99)] ?? 0;
    const before = samples.filter((s) => s.at < downAt).map((s) => s.ms);
    const during = samples.filter((s) => s.at >= downAt && s.at < upAt).map((s) => s.ms);
    const failed = samples.filter((s) => s.status >= 400).length;
    const [viaRabbit, viaNats] = await Promise.all([collector.drain(1500), readStream(nats.url, `C_${tag}`)]);
    const reports = [
      check('RabbitMQ', await committed('rabbit', since), viaRabbit),
      check('NATS', await committed('nats', since), viaNats),
    ];
    print(
      `broker outage ${OUTAGE_S} s: ${samples.length} writes (${failed} failed); API p99 ${p99(before).toFixed(1)} ms before, ${p99(during).toFixed(1)} ms during; ` +
        `${pendingDuring} events waiting near the end (oldest ${oldest.toFixed(0)} s, breaker ${breaker === '2' ? 'open' : breaker === '1' ? 'half-open' : 'closed'}); backlog drained ${((drained - upAt) / 1000).toFixed(1)} s after the brokers were back (${((drained - loadEnd) / 1000).toFixed(1)} s after the load stopped)`,
    );
    for (const r of reports)
      print(
        `broker outage ${r.name}: ${r.committed} committed, ${r.unique} received, lost ${r.lost}, repeats ${r.duplicates}, order violations ${r.violations}`,
      );
    node.child.kill('SIGTERM');
    await node.exited;
    await collector.close();
    assert.equal(failed, 0, 'no write failed');
    assert.ok(p99(during) < p99(before) * 1.5 + 20, `API p99 unchanged (${p99(before).toFixed(1)} → ${p99(during).toFixed(1)} ms)`);
    assert.ok(oldest > OUTAGE_S - 15, `the outbox's age was in the metrics (${oldest} s)`);
    // Open (2), or half-open (1) at the moment of a trial publish: not closed.
    assert.ok(breaker === '1' || breaker === '2', `the breaker was not closed (${breaker})`);
    assert.ok(pendingDuring > 0, 'events waited in the outbox');
    assert.equal(left, 0, 'the backlog drained');
    for (const r of reports) {
      assert.equal(r.lost, 0, `${r.name}: nothing lost`);
      assert.equal(r.violations, 0, `${r.name}: in order`);
    }
  });
});
