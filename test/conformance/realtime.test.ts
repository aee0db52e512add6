/**
 * Realtime conformance: the same assertions on each fan-out — in process (SQLite), PostgreSQL
 * NOTIFY, and Redis pub/sub (on PostgreSQL) — with two nodes on one database where the fan-out
 * crosses processes' boundaries (here: two apps in this process, each with its own connections).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { createApp, type RampartApp } from '../../src/app.js';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { pgUnavailable } from '../helpers/backends.js';
import { type Msg, RtClient } from '../helpers/realtime.js';
import { PrivateRedis, privateRedisUnavailable } from '../helpers/redis.js';

const pg = await pgUnavailable();
const redis = privateRedisUnavailable();
const redisServer = new PrivateRedis();

const variants: Array<{ name: string; backend: 'sqlite' | 'postgres'; env: Record<string, string>; skip: string | false; nodes: number }> =
  [
    { name: 'embedded (SQLite, in process)', backend: 'sqlite', env: {}, skip: false, nodes: 1 },
    { name: 'PostgreSQL LISTEN/NOTIFY', backend: 'postgres', env: { RAMPART_REALTIME_FANOUT: 'database' }, skip: pg ?? false, nodes: 2 },
    {
      name: 'Redis pub/sub',
      backend: 'postgres',
      env: { RAMPART_REALTIME_FANOUT: 'redis' },
      skip: pg ?? redis ?? false,
      nodes: 2,
    },
  ];

const ids = (events: Msg[]) => events.map((e) => e.record.id as string);

for (const v of variants) {
  describe(`realtime: ${v.name}`, { skip: v.skip }, () => {
    let t: TestApp;
    let second: RampartApp | undefined;
    let writeUrl: string;
    const clients: RtClient[] = [];
    const connect = async (url = t.url) => {
      const c = await RtClient.connect(url);
      clients.push(c);
      return c;
    };
    const post = async (path: string, body: unknown) => {
      const r = await fetch(`${writeUrl}${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
      assert.equal(r.status, 201, await r.clone().text());
      return (await r.json()) as Msg;
    };
    let room: Msg;

    before(async () => {
      const env: Record<string, string> = { RAMPART_REALTIME_POLL_MS: '200', ...v.env };
      if (env.RAMPART_REALTIME_FANOUT === 'redis') {
        await redisServer.start();
        env.REDIS_URL = redisServer.url;
      }
      t = await startTestApp(v.backend, undefined, env);
      writeUrl = t.url;
      if (v.nodes === 2) {
        // A second node on the same database: writes go through it, clients listen on the first.
        second = await createApp(t.backend.config, (await import('../fixtures/open-chat.ts')).default);
        writeUrl = await second.start();
      }
      room = await post('/api/v1/collections/rooms/records', { name: `room-${Date.now()}` });
    });
    after(async () => {
      for (const c of clients) c.close();
      await second?.stop();
      await t?.close();
      if (v.env.RAMPART_REALTIME_FANOUT === 'redis') await redisServer.stop();
    });

    test('a subscriber receives every change made through the other node, in order, each once', async () => {
      const c = await connect();
      const live = await c.subscribe({ id: 'm', collection: 'messages' });
      assert.equal(live.type, 'subscribed');
      const made: string[] = [];
      for (let i = 0; i < 40; i++)
        made.push((await post('/api/v1/collections/messages/records', { room: room.id, body: `m${i}`, author: 'a' })).id);
      await c.until((e) => e.length >= 40);
      const got = ids(c.events('m'));
      assert.deepEqual(got, made, 'every change, in commit order, once');
      const evIds = c.events('m').map((e) => e.id as number);
      assert.deepEqual(
        evIds,
        [...evIds].sort((a, b) => a - b),
        'event ids increase',
      );
      process.stdout.write(`# ${v.name}: delivery ratio ${(got.length / made.length).toFixed(2)} (${got.length}/${made.length})\n`);
      // Updates and deletes arrive as such.
      const target = made[0] as string;
      await fetch(`${writeUrl}/api/v1/collections/messages/records/${target}`, {
        method: 'PATCH',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ body: 'edited' }),
      });
      await fetch(`${writeUrl}/api/v1/collections/messages/records/${target}`, { method: 'DELETE' });
      await c.until((e) => e.length >= 42);
      const [upd, del] = c.events('m').slice(40);
      assert.equal(upd?.action, 'updated');
      assert.equal(upd?.record.body, 'edited');
      assert.equal(del?.action, 'deleted');
      assert.ok(del?.record.deleted_at);
    });

    test('one record, and a filter, select what a subscription receives', async () => {
      const c = await connect();
      const other = await post('/api/v1/collections/rooms/records', { name: `other-${Date.now()}` });
      await c.subscribe({ id: 'r', collection: 'rooms', record: room.id });
      await c.subscribe({ id: 'f', collection: 'messages', filter: `room = "${other.id}" && body contains "HELLO"` });
      await post('/api/v1/collections/messages/records', { room: room.id, body: 'hello there', author: 'a' });
      await post('/api/v1/collections/messages/records', { room: other.id, body: 'well, hello', author: 'a' });
      await post('/api/v1/collections/messages/records', { room: other.id, body: 'bye', author: 'a' });
      await fetch(`${writeUrl}/api/v1/collections/rooms/records/${other.id}`, {
        method: 'PATCH',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ topic: 'not this one' }),
      });
      await fetch(`${writeUrl}/api/v1/collections/rooms/records/${room.id}`, {
        method: 'PATCH',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ topic: 'this one' }),
      });
      await c.until((e) => e.some((m) => m.subs.includes('r')));
      await c.until((e) => e.some((m) => m.subs.includes('f')));
      await new Promise((r) => setTimeout(r, 300));
      assert.deepEqual(
        c.events('f').map((e) => e.record.body),
        ['well, hello'],
      );
      assert.deepEqual(
        c.events('r').map((e) => e.record.topic),
        ['this one'],
      );
      const bad = await c.subscribe({ id: 'bad', collection: 'messages', filter: 'nope = 1' });
      assert.equal(bad.type, 'error');
      assert.equal(bad.code, 'E_INVALID_FILTER');
      const missing = await c.subscribe({ id: 'x', collection: 'nothing' });
      assert.equal(missing.code, 'E_COLLECTION_NOT_FOUND');
    });

    test('a client that resumes with its last event id gets exactly what it missed, then live events', async () => {
      const c1 = await connect();
      await c1.subscribe({ id: 'm', collection: 'messages', filter: `room = "${room.id}"` });
      await post('/api/v1/collections/messages/records', { room: room.id, body: 'before', author: 'a' });
      await c1.until((e) => e.length >= 1);
      const last = c1.events().at(-1)?.id as number;
      c1.close();
      const missed: string[] = [];
      for (let i = 0; i < 10; i++)
        missed.push((await post('/api/v1/collections/messages/records', { room: room.id, body: `gap${i}`, author: 'a' })).id);
      const c2 = await connect();
      c2.send({ type: 'resume', last_event_id: last, subscriptions: [{ id: 'm', collection: 'messages', filter: `room = "${room.id}"` }] });
      const live = await c2.next((m) => m.type === 'subscribed');
      assert.ok(live.last_event_id >= last);
      const after1 = (await post('/api/v1/collections/messages/records', { room: room.id, body: 'after', author: 'a' })).id;
      await c2.until((e) => e.length >= 11);
      assert.deepEqual(ids(c2.events()), [...missed, after1]);
      const subscribedAt = c2.messages.findIndex((m) => m.type === 'subscribed');
      const firstLive = c2.messages.findIndex((m) => m.type === 'event' && m.record.id === after1);
      assert.ok(subscribedAt < firstLive, 'the replay comes before "subscribed", live events after it');
    });

    test('a resume point older than the log gets an explicit resync', async () => {
      const c = await connect();
      await post('/api/v1/collections/messages/records', { room: room.id, body: 'x', author: 'a' });
      await new Promise((r) => setTimeout(r, 50));
      await t.app.realtime.log.prune(Date.now() + 1000);
      const r = await c.subscribe({ id: 'old', collection: 'messages', since: 1 });
      assert.equal(r.type, 'subscribed');
      const resync = await c.next((m) => m.type === 'resync');
      assert.equal(resync.id, 'old');
    });

    test('nothing committed after "subscribed" is missed while writes run during the subscribe', async () => {
      const c = await connect();
      let writing = true;
      const made: Array<{ id: string; at: number }> = [];
      const writer = (async () => {
        while (writing) {
          const m = await post('/api/v1/collections/messages/records', { room: room.id, body: 'race', author: 'w' });
          made.push({ id: m.id, at: made.length });
        }
      })();
      await new Promise((r) => setTimeout(r, 100));
      const live = await c.subscribe({ id: 'race', collection: 'messages', filter: 'author = "w"' });
      const liveAtMsgs = made.length;
      await new Promise((r) => setTimeout(r, 300));
      writing = false;
      await writer;
      const lastMade = made.at(-1)?.id;
      await c.until((e) => e.some((m) => m.record.id === lastMade));
      const got = new Set(ids(c.events('race')));
      // Every write that started after the client was told it is live is there.
      const required = made.slice(liveAtMsgs + 1);
      assert.ok(required.length > 0, 'writes happened after the subscription was live');
      for (const m of required) assert.ok(got.has(m.id), `missed ${m.id}`);
      assert.equal(got.size, c.events('race').length, 'no duplicates');
      assert.ok(live.last_event_id > 0);
    });

    test('channels carry messages and presence between clients on both nodes', async () => {
      const alice = await t.signIn();
      const bob = await t.signIn();
      const ca = await RtClient.connect(t.url, alice.access);
      const cb = await RtClient.connect(second ? writeUrl : t.url, bob.access);
      clients.push(ca, cb);
      ca.send({ type: 'join', id: 'j', channel: `room:${room.id}`, meta: { name: 'alice' } });
      const joinedA = await ca.next((m) => m.type === 'joined');
      assert.deepEqual(
        joinedA.presence.map((p: Msg) => p.user),
        [alice.id],
      );
      cb.send({ type: 'join', id: 'j', channel: `room:${room.id}`, meta: { name: 'bob' } });
      await cb.next((m) => m.type === 'joined');
      const seen = await ca.next((m) => m.type === 'presence' && m.joins.some((j: Msg) => j.user === bob.id));
      assert.deepEqual(seen.joins[0].meta, { name: 'bob' });
      cb.send({ type: 'publish', channel: `room:${room.id}`, event: 'typing', data: { on: true } });
      const msg = await ca.next((m) => m.type === 'message');
      assert.deepEqual({ event: msg.event, from: msg.from, data: msg.data }, { event: 'typing', from: bob.id, data: { on: true } });
      cb.close();
      const left = await ca.next((m) => m.type === 'presence' && m.leaves.some((l: Msg) => l.user === bob.id));
      assert.ok(left);
      ca.send({ type: 'join', id: 'nope', channel: 'secret:1' });
      const err = await ca.next((m) => m.type === 'error' && m.id === 'nope');
      assert.equal(err.code, 'E_CHANNEL_NOT_FOUND');
    });
  });
}
