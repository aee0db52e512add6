/**
 * Domain events to RabbitMQ and NATS JetStream, on each backend, against the machine's brokers
 * (each test run uses its own exchange, queue, stream and subjects): every kind of change and an
 * event emitted by a hook reach both brokers as CloudEvents, in order, routed by type; a rolled-back
 * write publishes nothing; `replay` sends events again with their ids; status shows the outbox and
 * the partitions; consumers of other services' events run their handler once per event id, through
 * failures and duplicates; bad declarations are refused at startup.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import amqp from 'amqplib';
import { createApp } from '../../src/app.js';
import { loadConfig } from '../../src/core/config.js';
import type { InboundEvent } from '../../src/events/declare.js';
import { OUTBOX } from '../../src/events/events.js';
import { collection, defineApp, f, SchemaError } from '../../src/records/schema.js';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { backendMatrix, makeBackend } from '../helpers/backends.js';
import {
  brokerUnavailable,
  deleteStream,
  NATS_URL,
  natsConnection,
  orderReport,
  RABBIT_URL,
  RabbitCollector,
  readStream,
} from '../helpers/brokers.js';

const OPEN = { list: 'true', view: 'true', create: 'true', update: 'true', delete: 'true' };

function appFor(tag: string, handled: Map<string, number>, attempts: Map<string, number>) {
  // Both consumers: each event fails twice, then is handled.
  const handler = (event: InboundEvent) => {
    const n = (attempts.get(event.id) ?? 0) + 1;
    attempts.set(event.id, n);
    if (n <= 2) throw new Error(`failing attempt ${n} on purpose`);
    handled.set(event.id, (handled.get(event.id) ?? 0) + 1);
  };
  return defineApp({
    collections: {
      orders: collection({
        fields: {
          item: f.text({ required: true }),
          qty: f.integer(),
          secret: f.text({ hidden: true }),
        },
        rules: OPEN,
        hooks: {
          onCreate: (record) => {
            if (record.item === 'explode') throw new Error('the hook refused this order');
          },
          onUpdate: async (record, ctx) => {
            if (ctx.change === 'update' && record.qty === 99)
              await ctx.emit('billing.invoice-paid', { order: record.id, amount: 99 }, { key: record.id });
          },
        },
      }),
      notes: collection({ fields: { text: f.text() }, rules: OPEN }),
    },
    events: {
      brokers: { rabbit: {}, nats: { stream: { name: `RT_${tag}`, subjects: [`rt${tag}.>`] } } },
      publish: {
        toRabbit: { events: ['orders.*', 'billing.*'], broker: 'rabbit', exchange: `rampart_t_${tag}` },
        toNats: { events: ['*'], broker: 'nats', subject: `rt${tag}.{type}` },
      },
      consume: {
        fromRabbit: {
          broker: 'rabbit',
          queue: `rampart_t_${tag}.in`,
          bindings: [{ exchange: `rampart_t_${tag}.upstream`, routingKey: 'shipments.#' }],
          retries: 4,
          backoff: { baseMs: 10, capMs: 50 },
          handler,
        },
        fromNats: {
          broker: 'nats',
          stream: `RT_${tag}_UP`,
          consumer: 'rampart',
          retries: 4,
          backoff: { baseMs: 10, capMs: 50 },
          handler,
        },
      },
    },
  });
}

const until = async (what: string, ok: () => Promise<boolean> | boolean, ms = 15_000) => {
  const end = Date.now() + ms;
  while (!(await ok())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
};

const why = (await brokerUnavailable('rabbitmq')) ?? (await brokerUnavailable('nats'));

for (const b of await backendMatrix()) {
  describe(`domain events to brokers (${b.name})`, { skip: b.skip || why || false }, () => {
    const tag = `${b.name.slice(0, 2)}${process.pid}${Math.random().toString(36).slice(2, 6)}`;
    const handled = new Map<string, number>();
    const attempts = new Map<string, number>();
    let t: TestApp;
    let rabbit: RabbitCollector;
    const env = {
      RAMPART_BROKERS: JSON.stringify({ rabbit: RABBIT_URL, nats: NATS_URL }),
      RAMPART_EVENTS_POLL_MS: '100',
      RAMPART_EVENTS_PARTITIONS: '4',
    };

    before(async () => {
      rabbit = await RabbitCollector.bind(RABBIT_URL, `rampart_t_${tag}`);
      const nc = await natsConnection(NATS_URL);
      await (await nc.jetstreamManager()).streams.add({ name: `RT_${tag}_UP`, subjects: [`up${tag}.>`] });
      await nc.close();
      t = await startTestApp(b.name, appFor(tag, handled, attempts), env);
    });
    after(async () => {
      await t?.close();
      await rabbit?.close();
      await deleteStream(NATS_URL, `RT_${tag}`);
      await deleteStream(NATS_URL, `RT_${tag}_UP`);
      const conn = await amqp.connect(RABBIT_URL);
      const ch = await conn.createChannel();
      for (const e of [`rampart_t_${tag}`, `rampart_t_${tag}.upstream`]) await ch.deleteExchange(e).catch(() => {});
      await ch.deleteQueue(`rampart_t_${tag}.in`).catch(() => {});
      await conn.close();
    });

    test('every kind of change, and an event a hook emits, reach both brokers as CloudEvents in commit order', async () => {
      const r = t.app.records;
      const o = await r.create('orders', { item: 'tea', qty: 1, secret: 's3cret' });
      await r.update('orders', o.id, { qty: 2 });
      await r.update('orders', o.id, { qty: 99 });
      await r.delete('orders', o.id);
      await r.restore('orders', o.id);
      await r.purge('orders', o.id);
      const note = await r.create('notes', { text: 'only to NATS' });
      const fromRabbit = await rabbit.drain(1500);
      let fromNats: Awaited<ReturnType<typeof readStream>> = [];
      await until('NATS to have 8 events', async () => {
        fromNats = await readStream(NATS_URL, `RT_${tag}`).catch(() => []);
        return fromNats.length >= 8;
      });
      const types = (xs: Array<{ type: string }>) => xs.map((x) => x.type);
      const expected = [
        'orders.created',
        'orders.updated',
        'billing.invoice-paid',
        'orders.updated',
        'orders.deleted',
        'orders.restored',
        'orders.purged',
      ];
      assert.deepEqual(types(fromRabbit), expected, 'RabbitMQ: the orders and billing events, in commit order');
      // Order holds per ordering key (the record): the note's event may come before or after the order's.
      const natsOrders = fromNats.filter((e) => e.partitionkey === o.id);
      assert.deepEqual(types(natsOrders), expected, 'NATS: the same, in the same order');
      assert.deepEqual(
        fromNats.filter((e) => e.partitionkey !== o.id).map((e) => [e.type, e.subject]),
        [['notes.created', note.id]],
        'NATS: also what RabbitMQ is not routed',
      );
      const created = fromRabbit[0];
      assert.ok(created);
      assert.equal(created.specversion, '1.0');
      assert.equal(created.source, '/rampart');
      assert.equal(created.subject, o.id);
      assert.equal(created.partitionkey, o.id);
      assert.equal(created.schemaversion, 1);
      assert.equal(created.recordversion, 1);
      assert.equal(created.collection, 'orders');
      assert.equal(created.datacontenttype, 'application/json');
      assert.match(String(created.time), /^\d{4}-\d\d-\d\dT/);
      assert.equal(created.data.item, 'tea');
      assert.equal(created.data.secret, undefined, 'hidden fields are not published');
      assert.equal(created.topic, 'orders.created', 'routing key: the type');
      assert.equal(fromNats[0]?.topic, `rt${tag}.orders.created`, 'subject from the template');
      const paid = fromRabbit.find((e) => e.type === 'billing.invoice-paid');
      assert.deepEqual(paid?.data, { order: o.id, amount: 99 });
      assert.equal(paid?.partitionkey, o.id);
      const ids = new Set(fromRabbit.map((e) => e.id));
      assert.equal(ids.size, fromRabbit.length, 'one id per event');
      assert.deepEqual(
        natsOrders.map((e) => e.id),
        fromRabbit.map((e) => e.id),
        'each event has the same id at every destination',
      );
      assert.deepEqual(
        fromRabbit.filter((e) => e.type !== 'billing.invoice-paid').map((e) => e.recordversion),
        [1, 2, 3, 4, 5, 5],
        'record versions with each change (a purge carries the last)',
      );
      const pending = await t.app.storage.db.selectFrom(OUTBOX).select('id').where('published_at', 'is', null).execute();
      assert.equal(pending.length, 0, 'nothing left pending');
    });

    test('a write whose transaction rolls back publishes nothing', async () => {
      const before = await t.app.storage.db.selectFrom(OUTBOX).select('id').execute();
      const res = await t.req('POST', '/api/v1/collections/orders/records', { item: 'explode', qty: 1 });
      assert.ok(res.status >= 400, `the write failed (${res.status})`);
      await assert.rejects(t.app.records.create('orders', { item: 'explode' }));
      const ok = await t.app.records.create('orders', { item: 'after' });
      const got = await rabbit.drain(1000);
      assert.deepEqual(
        got.map((e) => e.data.item),
        ['after'],
        'only the committed write was published',
      );
      assert.equal(got[0]?.subject, ok.id);
      const rows = await t.app.storage.db.selectFrom(OUTBOX).select('id').execute();
      assert.equal(rows.length - before.length, 2, 'one outbox row per destination, for the committed write only');
    });

    test('replay publishes a range again with the original ids; status shows the outbox and the partitions', async () => {
      const since = Date.now();
      const o = await t.app.records.create('orders', { item: 'again', qty: 3 });
      const first = await rabbit.drain(800);
      assert.equal(first.length, 1);
      const n = await t.app.events.replay({ since, destination: 'toRabbit' });
      assert.equal(n, 1);
      const again = await rabbit.drain(1000);
      assert.deepEqual(
        again.map((e) => [e.id, e.subject]),
        [[first[0]?.id, o.id]],
        'the same event, with the same id',
      );
      const status = await t.app.events.status();
      const toRabbit = status.find((s) => s.destination === 'toRabbit');
      assert.ok(toRabbit);
      assert.equal(toRabbit.pending, 0);
      assert.equal(toRabbit.kind, 'rabbitmq');
      assert.equal(toRabbit.connected, true);
      assert.equal(toRabbit.breaker, 'closed');
      assert.ok(toRabbit.publishedLastHour >= 3);
      assert.equal(toRabbit.partitions.filter((p) => p.holder !== null).length, 4, 'all 4 partitions held by this relay');
      const metrics = await (await fetch(`${t.url}/metrics`)).text();
      assert.match(metrics, /rampart_events_published_total\{destination="toRabbit"\} \d+/);
      assert.match(metrics, /rampart_events_pending\{destination="toNats"\} 0/);
      assert.match(metrics, /rampart_events_oldest_pending_seconds\{destination="toRabbit"\} 0/);
      assert.match(metrics, /rampart_broker_up\{broker="rabbit"\} 1/);
    });

    test('consumers run their handler once per event id: failures are retried, duplicates acked without a second run', async () => {
      const conn = await amqp.connect(RABBIT_URL);
      const ch = await conn.createConfirmChannel();
      const ex = `rampart_t_${tag}.upstream`;
      await ch.assertExchange(ex, 'topic', { durable: true });
      // The consumer declared and bound its queue at start-up.
      await until(
        'the consumer queue',
        async () =>
          await ch.checkQueue(`rampart_t_${tag}.in`).then(
            () => true,
            () => false,
          ),
      );
      const rabbitIds: string[] = [];
      for (let i = 0; i < 10; i++) {
        const id = `ship-r-${tag}-${i}`;
        rabbitIds.push(id);
        const body = Buffer.from(JSON.stringify({ specversion: '1.0', id, source: '/shipping', type: 'shipments.sent', data: { n: i } }));
        // Each published twice: a producer retrying after a lost confirm.
        ch.publish(ex, 'shipments.sent', body, { persistent: true });
        ch.publish(ex, 'shipments.sent', body, { persistent: true });
      }
      // A plain JSON message (not a CloudEvent): its AMQP message-id identifies it.
      ch.publish(ex, 'shipments.plain', Buffer.from('{"hello":"world"}'), { messageId: `plain-${tag}`, persistent: true });
      rabbitIds.push(`plain-${tag}`);
      await ch.waitForConfirms();
      await conn.close();
      const nc = await natsConnection(NATS_URL);
      const js = nc.jetstream();
      const natsIds: string[] = [];
      for (let i = 0; i < 10; i++) {
        const id = `ship-n-${tag}-${i}`;
        natsIds.push(id);
        const body = JSON.stringify({ specversion: '1.0', id, source: '/shipping', type: 'shipments.sent', data: { n: i } });
        // Two JetStream messages carrying one event (no Nats-Msg-Id: the stream cannot tell them apart).
        await js.publish(`up${tag}.shipments`, body);
        await js.publish(`up${tag}.shipments`, body);
      }
      await nc.close();
      const all = [...rabbitIds, ...natsIds];
      await until('every inbound event handled', () => all.every((id) => handled.has(id)), 30_000);
      await t.app.jobs.settle({ queues: ['rampart.inbox'], delayed: true, timeoutMs: 10_000 });
      const counts = all.map((id) => handled.get(id));
      const tries = all.map((id) => attempts.get(id));
      process.stdout.write(
        `# inbound: ${all.length} events (RabbitMQ ones published twice, NATS ones stored twice): handled ${counts.filter((c) => c === 1).length}x once; attempts per event ${[...new Set(tries)].join('/')}\n`,
      );
      assert.deepEqual(
        counts,
        all.map(() => 1),
        'each event handled exactly once',
      );
      assert.deepEqual(
        tries,
        all.map(() => 3),
        'two failures then a success, each',
      );
      const metrics = await (await fetch(`${t.url}/metrics`)).text();
      assert.match(metrics, /rampart_events_consumed_total\{consumer="fromRabbit",outcome="duplicate"\} 10/);
      assert.match(metrics, /rampart_events_consumed_total\{consumer="fromNats",outcome="duplicate"\} 10/);
    });
  });
}

describe('events declarations', () => {
  test('a destination or consumer whose broker has no URL, or the wrong kind, is refused at startup', async () => {
    const backend = await makeBackend('sqlite');
    try {
      const make = (events: unknown, brokers: Record<string, string> = {}) =>
        createApp(loadConfig({ env: { ...backend.env, RAMPART_BROKERS: JSON.stringify(brokers) } }), {
          collections: { notes: collection({ fields: { text: f.text() } }) },
          events: events as never,
        });
      await assert.rejects(make({ publish: { out: { events: ['notes.*'], broker: 'nope', exchange: 'x' } } }), (e: Error) => {
        assert.ok(e instanceof SchemaError);
        assert.match(e.message, /events\.publish\.out: broker "nope" has no URL/);
        return true;
      });
      await assert.rejects(make({ publish: { out: { events: ['notes.*'], broker: 'b' } } }, { b: RABBIT_URL }), /needs an exchange/);
      await assert.rejects(
        make({ publish: { out: { events: ['notes'], broker: 'b', subject: 'x' } } }, { b: NATS_URL }),
        /not an event type or pattern/,
      );
      await assert.rejects(make({ consume: { c: { broker: 'b', handler: () => {} } } }, { b: NATS_URL }), /needs a stream and a consumer/);
      assert.throws(() => loadConfig({ env: { ...backend.env, RAMPART_BROKERS: '{"b": "http://x"}' } }), /RAMPART_BROKERS/);
    } finally {
      await backend.cleanup();
    }
  });

  test('the order report counts duplicates apart and flags a record event ahead of an earlier one', () => {
    const e = (id: string, key: string, v: number) => ({ id, type: 't.x', partitionkey: key, recordversion: v, data: null });
    assert.deepEqual(orderReport([e('1', 'a', 1), e('2', 'a', 2), e('1', 'a', 1), e('3', 'b', 1)]), {
      unique: 3,
      duplicates: 1,
      violations: 0,
    });
    assert.deepEqual(orderReport([e('2', 'a', 2), e('1', 'a', 1)]), { unique: 2, duplicates: 0, violations: 1 });
  });
});
