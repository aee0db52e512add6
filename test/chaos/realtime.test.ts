/**
 * Realtime under failures, with real processes on PostgreSQL: the node a client is connected to
 * is SIGKILLed and the client resumes on the other node; the LISTEN connection is terminated
 * by the database; Redis (the fan-out) is killed and restarted. Each time, while writes go on
 * through another node, the client ends up with every event once: 0 missed, 0 duplicates.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { makeBackend, pgUnavailable, type TestBackend } from '../helpers/backends.js';
import { type RampartProcess, startRampart } from '../helpers/processes.js';
import { type Msg, RtClient } from '../helpers/realtime.js';
import { PrivateRedis, privateRedisUnavailable, redisCommand } from '../helpers/redis.js';

const skip = (await pgUnavailable()) ?? false;

/** Writes messages through `url` until stopped; resolves to the ids the node acknowledged. */
function writer(url: string, room: string, tag: string) {
  let on = true;
  const acked: string[] = [];
  const done = (async () => {
    let i = 0;
    while (on) {
      try {
        const r = await fetch(`${url}/api/v1/collections/messages/records`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ room, body: `${tag}-${i++}`, author: tag }),
        });
        if (r.status === 201) acked.push(((await r.json()) as { id: string }).id);
      } catch {}
      await new Promise((r) => setTimeout(r, 5));
    }
    return acked;
  })();
  return {
    acked,
    stop: () => {
      on = false;
      return done;
    },
  };
}

function report(what: string, acked: string[], got: Msg[]): void {
  const ids = got.map((e) => e.record.id as string);
  const seen = new Set(ids);
  const missed = acked.filter((id) => !seen.has(id)).length;
  const dups = ids.length - seen.size;
  process.stdout.write(`# ${what}: ${acked.length} writes acknowledged, ${seen.size} received, ${missed} missed, ${dups} duplicates\n`);
  assert.equal(missed, 0, 'no acknowledged write is missed');
  assert.equal(dups, 0, 'none is received twice');
}

describe('realtime chaos (PostgreSQL, real processes)', { skip }, () => {
  let backend: TestBackend;
  const procs: RampartProcess[] = [];
  const redis = new PrivateRedis();
  const clients: RtClient[] = [];
  const serve = async (env: Record<string, string> = {}) => {
    const { PORT: _any, ...base } = backend.env;
    const p = await startRampart({ ...base, RAMPART_REALTIME_POLL_MS: '500', ...env });
    procs.push(p);
    return p;
  };
  let room: string;
  let survivor: RampartProcess;
  before(async () => {
    backend = await makeBackend('postgres');
    const first = await serve();
    const r = await fetch(`${first.url}/api/v1/collections/rooms/records`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'chaos' }),
    });
    room = ((await r.json()) as { id: string }).id;
  });
  after(async () => {
    for (const c of clients) c.close();
    for (const p of procs) if (p.child.exitCode === null) p.child.kill('SIGKILL');
    await redis.stop();
    await backend?.cleanup();
  });

  test('SIGKILL the node a client is on; it resumes on the other node with its last event id: 0 missed', async () => {
    const a = procs[0] as RampartProcess;
    const b = await serve();
    survivor = b;
    const c1 = await RtClient.connect(a.url);
    clients.push(c1);
    const spec = { id: 'm', collection: 'messages', filter: 'author = "k"' };
    await c1.subscribe(spec);
    const w = writer(b.url, room, 'k');
    await c1.until((e) => e.length >= 20);
    a.child.kill('SIGKILL');
    await a.exited;
    const last = c1.events().at(-1)?.id as number;
    await new Promise((r) => setTimeout(r, 300));
    const c2 = await RtClient.connect(b.url);
    clients.push(c2);
    c2.send({ type: 'resume', last_event_id: last, subscriptions: [spec] });
    await c2.next((m) => m.type === 'subscribed');
    await new Promise((r) => setTimeout(r, 500));
    const acked = await w.stop();
    await c2.until((e) => e.some((m) => m.record.id === acked.at(-1)));
    report('node killed, client resumed elsewhere', acked, [...c1.events(), ...c2.events()]);
  });

  test('the LISTEN connection is terminated mid-stream: recovered from the log, 0 missed', async () => {
    const [a, b] = [await serve(), survivor];
    const c = await RtClient.connect(a.url);
    clients.push(c);
    await c.subscribe({ id: 'l', collection: 'messages', filter: 'author = "l"' });
    const w = writer(b.url, room, 'l');
    await c.until((e) => e.length >= 10);
    const admin = new pg.Client({ connectionString: backend.env.DATABASE_URL });
    await admin.connect();
    const killed = await admin.query(
      "select pg_terminate_backend(pid) from pg_stat_activity where application_name = 'rampart-listen' and datname = current_database()",
    );
    await admin.end();
    assert.ok(killed.rowCount && killed.rowCount >= 1, 'LISTEN connections were terminated');
    await new Promise((r) => setTimeout(r, 1500));
    const acked = await w.stop();
    await c.until((e) => e.some((m) => m.record.id === acked.at(-1)));
    report(`LISTEN connections terminated (${killed.rowCount})`, acked, c.events());
  });

  test('Redis fan-out: Redis is killed and restarted mid-stream: 0 missed', { skip: privateRedisUnavailable() ?? false }, async () => {
    await redis.start();
    const env = { REDIS_URL: redis.url, RAMPART_REALTIME_FANOUT: 'redis' };
    const [a, b] = [await serve(env), await serve(env)];
    const c = await RtClient.connect(a.url);
    clients.push(c);
    await c.subscribe({ id: 'r', collection: 'messages', filter: 'author = "r"' });
    const w = writer(b.url, room, 'r');
    await c.until((e) => e.length >= 10);
    const atKill = c.events().length;
    await redis.kill();
    await new Promise((r) => setTimeout(r, 1000));
    const during = c.events().length - atKill;
    // The node says so, and stays ready: events come from the log meanwhile.
    const down = await fetch(`${a.url}/readyz`);
    assert.equal(down.status, 200);
    assert.equal(((await down.json()) as { realtime: { up: boolean } }).realtime.up, false);
    await redis.start();
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal(((await (await fetch(`${a.url}/readyz`)).json()) as { realtime: { up: boolean } }).realtime.up, true);
    const acked = await w.stop();
    await c.until((e) => e.some((m) => m.record.id === acked.at(-1)));
    process.stdout.write(`# while Redis was down (1 s): ${during} events still arrived (read from the log by its periodic look)\n`);
    report('Redis killed and restarted', acked, c.events());
    assert.match(await redisCommand(redis.port, 'PING'), /PONG/);
  });
});
