/**
 * Domain events out to message brokers, from a transactional outbox, and other services' events
 * in through an inbox.
 *
 * Out: a record change (or `ctx.emit` in a hook) that matches a destination writes one outbox row
 * per destination in the change's own transaction, so an event exists exactly when its change
 * committed. Relays (where jobs run) publish the rows afterwards, at least once: a row is marked
 * published only after the broker confirmed it (RabbitMQ publisher confirms, JetStream acks).
 *
 * Order: each row carries an ordering key (the record's id by default) hashed to one of N
 * partitions per destination. A relay publishes a partition only while it holds that partition's
 * lease, in row id order, stopping at the first event the broker did not confirm. Two events of
 * one record are written by transactions that both lock the record's row, so their ids follow
 * commit order; events of one key are therefore published in commit order, while partitions go in
 * parallel and several relays share them. A relay that loses its lease (frozen, killed) at worst
 * publishes again what another relay publishes: duplicates, with the same event id, never an
 * event ahead of an earlier one of its key.
 *
 * Broker down: rows wait (bounded by RAMPART_EVENTS_MAX_PENDING_HOURS, then dropped, logged and
 * counted), the relay backs off behind a circuit breaker, writes are not slowed (they only insert
 * rows). In: consumers take messages from a queue or a JetStream consumer, remember the event id
 * in the inbox and enqueue the handler's job in one transaction, then ack; a redelivered or
 * republished event finds its id and is acked without a second job.
 */
import { createHash, randomBytes } from 'node:crypto';
import { type Kysely, sql } from 'kysely';
import type { Logger } from 'pino';
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { Clock } from '../core/clock.js';
import type { EventsConfig } from '../core/config-events.js';
import { uuidv7 } from '../core/ids.js';
import { type JobDef, type JobsClient, job, type QueueDef, type ScheduleDef, schedule } from '../jobs/define.js';
import { currentTraceparent } from '../observability/tracing.js';
import type { EmitFn, HookRegistry, RecordData, WriteKind } from '../records/hooks.js';
import type { RecordsService } from '../records/service.js';
import { type OutboundPolicy, outboundPolicy, type PolicyObserver } from '../resilience/policy.js';
import type { Storage } from '../storage/types.js';
import { type BrokerClient, brokerClient, type Incoming, type Outgoing } from './brokers.js';
import { brokerKind, checkEvents, type EventsDef, type InboundEvent, type PublishDef, topicOf, typeMatches, validType } from './declare.js';

export const OUTBOX = '_rampart_outbox';
export const LEASES = '_rampart_outbox_leases';
export const RELAYS = '_rampart_outbox_relays';
export const INBOX = '_rampart_inbox';
/** Jobs that run inbound events, one per consumer: `rampart.inbox.<consumer>`. */
export const INBOX_JOB = 'rampart.inbox.';
/** The version of the envelope and of the record data in it (CloudEvents extension `schemaversion`). */
export const SCHEMA_VERSION = 1;
const WAKE = 'rampart_outbox';
const ACTIONS: Record<WriteKind, string> = {
  create: 'created',
  update: 'updated',
  delete: 'deleted',
  restore: 'restored',
  purge: 'purged',
};

interface Route {
  name: string;
  def: PublishDef;
  broker: BrokerClient;
  policy: OutboundPolicy;
  /** No publishing before this time (backoff after a failure), epoch ms. */
  resumeAt: number;
  failures: number;
}

/** An event before it is routed. */
interface Emitted {
  type: string;
  data: unknown;
  key: string;
  subject?: string;
  collection?: string;
  recordVersion?: number;
  record?: Record<string, unknown>;
}

/** One destination's state, for `rampart events status` and the admin API. */
export interface DestinationStatus {
  destination: string;
  broker: string;
  kind: string;
  connected: boolean;
  breaker: string;
  pending: number;
  oldestPendingS: number | null;
  publishedLastHour: number;
  partitions: Array<{ part: number; holder: string | null; expiresInMs: number | null }>;
}

export interface EventsDeps {
  storage: Storage;
  records: RecordsService;
  clock: Clock;
  config: EventsConfig;
  def: EventsDef | undefined;
  log: Logger;
  registry: Registry;
  observer: PolicyObserver;
  jobsFor: (db: Kysely<any>) => JobsClient;
  /** This process's name (leases and logs). */
  node: string;
}

/** FNV-1a: a stable, fast hash of the ordering key to its partition. */
function partitionOf(key: string, partitions: number): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) {
    h ^= key.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0) % partitions;
}

export class DomainEvents {
  private readonly routes: Route[] = [];
  private readonly brokers = new Map<string, BrokerClient>();
  private readonly holder: string;
  private readonly pendingTx = new WeakMap<object, Map<string, number>>();
  /** Partitions this relay holds, per destination, and until when. */
  private readonly held = new Map<string, { parts: number[]; until: number }>();
  /** When this relay last renewed its leases. */
  private claimedAt = 0;
  private stopped = true;
  private loop?: Promise<void>;
  private wake?: () => void;
  private unlisten?: () => void;
  private pendingCache?: { at: number; rows: Array<{ destination: string; n: number; oldest: number | null }> };
  private readonly m: {
    written: Counter<'destination'>;
    published: Counter<'destination'>;
    failures: Counter<'destination'>;
    expired: Counter<'destination'>;
    latency: Histogram<'destination'>;
    consumed: Counter<'consumer' | 'outcome'>;
  };

  constructor(private readonly d: EventsDeps) {
    this.holder = `${d.node}:${randomBytes(4).toString('hex')}`;
    const urls = checkEvents(d.def, d.config.brokers);
    const client = (name: string) => {
      let b = this.brokers.get(name);
      if (!b) {
        const url = urls[name] as string;
        b = brokerClient(brokerKind(url), {
          name,
          url,
          def: d.def?.brokers?.[name] ?? {},
          timeoutMs: d.config.publishTimeoutMs,
          log: d.log,
        });
        this.brokers.set(name, b);
      }
      return b;
    };
    const policies = new Map<string, OutboundPolicy>();
    for (const [name, def] of Object.entries(d.def?.publish ?? {})) {
      let policy = policies.get(def.broker);
      if (!policy) {
        policy = outboundPolicy(
          `broker:${def.broker}`,
          {
            timeoutMs: d.config.publishTimeoutMs * 3,
            breaker: { failures: 3 },
            halfOpenAfterMs: d.config.breakerOpenMs,
            isFailureResult: (r) => (r as { error?: Error }).error !== undefined,
          },
          d.observer,
        );
        policies.set(def.broker, policy);
      }
      this.routes.push({ name, def, broker: client(def.broker), policy, resumeAt: 0, failures: 0 });
    }
    for (const c of Object.values(d.def?.consume ?? {})) client(c.broker);
    const registers = [d.registry];
    const labelNames = ['destination'] as const;
    this.m = {
      written: new Counter({
        name: 'rampart_events_written_total',
        help: 'Events written to the outbox, by destination',
        labelNames,
        registers,
      }),
      published: new Counter({
        name: 'rampart_events_published_total',
        help: 'Events the broker confirmed, by destination',
        labelNames,
        registers,
      }),
      failures: new Counter({
        name: 'rampart_events_publish_failures_total',
        help: 'Publish attempts that failed or were refused by an open breaker, by destination',
        labelNames,
        registers,
      }),
      expired: new Counter({
        name: 'rampart_events_expired_total',
        help: 'Events dropped unpublished after RAMPART_EVENTS_MAX_PENDING_HOURS, by destination',
        labelNames,
        registers,
      }),
      latency: new Histogram({
        name: 'rampart_events_publish_latency_seconds',
        help: 'From the event being written to the broker confirming it, by destination',
        labelNames,
        buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 15, 60, 300],
        registers,
      }),
      consumed: new Counter({
        name: 'rampart_events_consumed_total',
        help: 'Inbound events by consumer and outcome: new (its job enqueued), duplicate (seen before), failed (left with the broker)',
        labelNames: ['consumer', 'outcome'],
        registers,
      }),
    };
    if (this.routes.length > 0) {
      const self = this;
      new Gauge({
        name: 'rampart_events_pending',
        help: 'Events written and not yet confirmed by the broker, by destination',
        labelNames,
        registers,
        async collect() {
          this.reset();
          for (const r of self.routes) this.set({ destination: r.name }, 0);
          for (const row of await self.pendingByDestination().catch(() => [])) this.set({ destination: row.destination }, row.n);
        },
      });
      new Gauge({
        name: 'rampart_events_oldest_pending_seconds',
        help: 'Age of the oldest unpublished event, by destination (0 when none)',
        labelNames,
        registers,
        async collect() {
          this.reset();
          const now = self.d.clock.now();
          for (const r of self.routes) this.set({ destination: r.name }, 0);
          for (const row of await self.pendingByDestination().catch(() => [])) {
            this.set({ destination: row.destination }, row.oldest === null ? 0 : Math.max(0, (now - row.oldest) / 1000));
          }
        },
      });
    }
    if (this.brokers.size > 0) {
      const self = this;
      new Gauge({
        name: 'rampart_broker_up',
        help: '1 while this process is connected to the broker (it connects when it first publishes or consumes)',
        labelNames: ['broker'],
        registers,
        collect() {
          for (const [broker, b] of self.brokers) this.set({ broker }, b.connected() ? 1 : 0);
        },
      });
    }
  }

  /** Whether anything is published (destinations declared). */
  get publishing(): boolean {
    return this.routes.length > 0;
  }

  /** Record changes become events: hooks on every collection (in the change's transaction). */
  registerHooks(hooks: HookRegistry, collections: string[]): void {
    if (!this.publishing) return;
    for (const collection of collections) {
      for (const event of ['Create', 'Update', 'Delete', 'Purge'] as const) {
        hooks.add(collection, `on${event}`, {
          id: `rampart.events.${event}`,
          priority: 15_000,
          fn: async (record: RecordData, ctx) => {
            const change = ctx.change ?? (event.toLowerCase() as WriteKind);
            const action = ACTIONS[change];
            await this.write(ctx.db, {
              type: `${collection}.${action}`,
              key: record.id,
              subject: record.id,
              collection,
              recordVersion: record.version,
              record,
              data: this.visible(collection, record),
            });
          },
        });
      }
    }
  }

  /** `ctx.emit` on a connection or transaction. */
  emitter(db: Kysely<any>): EmitFn {
    return async (type, data, opts) => {
      if (!validType(type)) throw new Error(`event type ${JSON.stringify(type)} must be dotted words (billing.invoice-paid)`);
      const text = JSON.stringify(data ?? null);
      if (text.length > 256 * 1024) throw new Error('event data must be at most 256 KB of JSON');
      await this.write(db, { type, data: JSON.parse(text), key: opts?.key ?? opts?.subject ?? type, subject: opts?.subject });
    };
  }

  private visible(collection: string, record: RecordData): Record<string, unknown> {
    const fields = Object.keys(this.d.records.visibleSchema(collection).fields);
    const out: Record<string, unknown> = {};
    for (const k of ['id', 'created_at', 'updated_at', 'deleted_at', 'version', ...fields]) if (k in record) out[k] = record[k];
    return out;
  }

  /** Write the outbox rows of one event, on `db` (a transaction: they commit with it). */
  private async write(db: Kysely<any>, e: Emitted): Promise<void> {
    const routes = this.routes.filter((r) => r.def.events.some((p) => typeMatches(p, e.type)));
    if (routes.length === 0) return;
    const now = this.d.clock.now();
    const id = uuidv7(now);
    const traceparent = currentTraceparent();
    const rows = routes.map((r) => {
      const orderField = r.def.orderingKey;
      const ordered = orderField && e.record && e.record[orderField] !== null && e.record[orderField] !== undefined;
      const key = ordered ? String(e.record?.[orderField as string]) : e.key;
      const envelope = {
        specversion: '1.0',
        id,
        source: this.d.config.source,
        type: e.type,
        ...(e.subject ? { subject: e.subject } : {}),
        time: new Date(now).toISOString(),
        datacontenttype: 'application/json',
        schemaversion: SCHEMA_VERSION,
        partitionkey: key,
        ...(e.collection ? { collection: e.collection } : {}),
        ...(e.recordVersion !== undefined ? { recordversion: e.recordVersion } : {}),
        // The CloudEvents distributed-tracing extension: consumers continue the writer's trace.
        ...(traceparent ? { traceparent } : {}),
        data: e.data,
      };
      return {
        event_id: id,
        destination: r.name,
        part: partitionOf(key, this.d.config.partitions),
        okey: key,
        type: e.type,
        payload: JSON.stringify(envelope),
        created_at: now,
        published_at: null,
      };
    });
    await db.insertInto(OUTBOX).values(rows).execute();
    if (db === this.d.storage.db) {
      for (const r of rows) this.m.written.inc({ destination: r.destination });
      await this.d.storage.notify(db, WAKE, '');
      return;
    }
    // In a transaction: counted, and the relays woken, once it commits (one wake-up per transaction).
    let tx = this.pendingTx.get(db);
    if (!tx) {
      const fresh = new Map<string, number>();
      tx = fresh;
      this.pendingTx.set(db, fresh);
      await this.d.storage.notify(db, WAKE, '');
      this.d.storage.beforeCommit(db, async () => {
        this.pendingTx.delete(db);
        for (const [destination, n] of fresh) this.m.written.inc({ destination }, n);
      });
    }
    for (const r of rows) tx.set(r.destination, (tx.get(r.destination) ?? 0) + 1);
  }

  // --- relay ----------------------------------------------------------------------------------

  /** Start the relay and the consumers (where jobs run). */
  async start(): Promise<void> {
    if (!this.d.config.relay) return;
    this.stopped = false;
    for (const [name, c] of Object.entries(this.d.def?.consume ?? {})) {
      const b = this.brokers.get(c.broker) as BrokerClient;
      b.consume(
        name,
        {
          queue: c.queue,
          bindings: c.bindings,
          stream: c.stream,
          consumer: c.consumer,
          filterSubject: c.filterSubject,
          prefetch: c.prefetch ?? 100,
        },
        (m) => this.receive(name, m),
      );
    }
    if (!this.publishing) return;
    this.unlisten = await this.d.storage.listen(WAKE, () => this.wake?.());
    this.loop = this.relay();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.wake?.();
    this.unlisten?.();
    if (this.loop) {
      await this.loop;
      // Let other relays take the partitions at once. (A process that never relayed — an API
      // node with jobs elsewhere, a CLI command — holds none and has nothing to give back.)
      await this.d.storage.db
        .updateTable(LEASES)
        .set({ expires_at: 0 })
        .where('holder', '=', this.holder)
        .execute()
        .catch(() => {});
      await this.d.storage.db
        .deleteFrom(RELAYS)
        .where('id', '=', this.holder)
        .execute()
        .catch(() => {});
    }
    await Promise.all([...this.brokers.values()].map((b) => b.close()));
  }

  private async relay(): Promise<void> {
    let woken = false;
    while (!this.stopped) {
      woken = false;
      try {
        await this.relayOnce();
      } catch (err) {
        this.d.log.warn({ err: (err as Error).message }, 'outbox relay round failed');
      }
      if (this.stopped) break;
      if (woken) continue;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, this.d.config.pollMs);
        timer.unref();
        function done() {
          clearTimeout(timer);
          resolve();
        }
        this.wake = () => {
          woken = true;
          done();
        };
      });
      this.wake = undefined;
    }
  }

  /**
   * One round: every third of a lease, say this relay is alive and renew (or rebalance) its share
   * of partitions; then drain those of its partitions that have pending events.
   */
  private async relayOnce(): Promise<void> {
    const db = this.d.storage.db;
    const now = this.d.clock.now();
    const renew = now - this.claimedAt >= this.d.config.leaseMs / 3 || this.routes.some((r) => !this.held.has(r.name));
    let share = 0;
    if (renew) {
      await db
        .insertInto(RELAYS)
        .values({ id: this.holder, seen_at: now })
        .onConflict((oc) => oc.column('id').doUpdateSet({ seen_at: now }))
        .execute();
      const alive = await db
        .selectFrom(RELAYS)
        .select((eb) => eb.fn.countAll().as('n'))
        .where('seen_at', '>', now - this.d.config.leaseMs)
        .executeTakeFirst();
      share = Math.ceil(this.d.config.partitions / Math.max(1, Number(alive?.n ?? 1)));
      this.claimedAt = now;
    }
    await Promise.all(
      this.routes.map(async (r) => {
        if (renew) this.held.set(r.name, { parts: await this.claim(r.name, share), until: now + this.d.config.leaseMs });
        const held = this.held.get(r.name);
        if (!held || held.parts.length === 0 || this.d.clock.now() < r.resumeAt) return;
        const busy = await db
          .selectFrom(OUTBOX)
          .select('part')
          .where('destination', '=', r.name)
          .where('published_at', 'is', null)
          .where('part', 'in', held.parts)
          .groupBy('part')
          .execute();
        await Promise.all(busy.map((b) => this.drain(r, Number(b.part), held.until)));
      }),
    );
  }

  /** Renew this relay's partitions of a destination (up to `share`), release the rest, take free ones. */
  private async claim(destination: string, share: number): Promise<number[]> {
    const db = this.d.storage.db;
    const now = this.d.clock.now();
    const until = now + this.d.config.leaseMs;
    const rows = await db.selectFrom(LEASES).selectAll().where('destination', '=', destination).execute();
    const mine = rows.filter((r) => r.holder === this.holder && Number(r.expires_at) > now).map((r) => Number(r.part));
    const keep = mine.slice(0, share);
    const give = mine.slice(share);
    if (give.length > 0) {
      await db
        .updateTable(LEASES)
        .set({ expires_at: 0 })
        .where('destination', '=', destination)
        .where('holder', '=', this.holder)
        .where('part', 'in', give)
        .execute();
    }
    let held: number[] = [];
    if (keep.length > 0) {
      const renewed = await db
        .updateTable(LEASES)
        .set({ expires_at: until })
        .where('destination', '=', destination)
        .where('holder', '=', this.holder)
        .where('part', 'in', keep)
        .returning('part')
        .execute();
      held = renewed.map((r) => Number(r.part));
    }
    const taken = new Map(rows.map((r) => [Number(r.part), r]));
    const free: number[] = [];
    for (let p = 0; p < this.d.config.partitions; p++) {
      const row = taken.get(p);
      if (!row || (Number(row.expires_at) <= now && row.holder !== this.holder) || (row.holder === this.holder && !mine.includes(p))) {
        free.push(p);
      }
    }
    // Start at a random place, so relays starting together do not all race for the same partitions.
    const offset = Math.floor(Math.random() * Math.max(1, free.length));
    for (const p of [...free.slice(offset), ...free.slice(0, offset)]) {
      if (held.length >= share) break;
      const got = await db
        .insertInto(LEASES)
        .values({ destination, part: p, holder: this.holder, expires_at: until })
        .onConflict((oc) =>
          oc
            .columns(['destination', 'part'])
            .doUpdateSet({ holder: this.holder, expires_at: until })
            .where(`${LEASES}.expires_at`, '<=', now),
        )
        .returning('part')
        .execute();
      if (got.length > 0) held.push(p);
    }
    return held;
  }

  /** Publish a partition's pending events in order until it is empty, the broker fails, or the lease runs short. */
  private async drain(r: Route, part: number, leaseUntil: number): Promise<void> {
    const db = this.d.storage.db;
    // Stop in time to renew the lease before it runs out (a publish may take up to its timeout).
    const deadline = leaseUntil - Math.min(this.d.config.publishTimeoutMs, this.d.config.leaseMs / 2);
    while (!this.stopped && this.d.clock.now() < deadline && this.d.clock.now() >= r.resumeAt) {
      const rows = await db
        .selectFrom(OUTBOX)
        .select(['id', 'event_id', 'type', 'okey', 'payload', 'created_at'])
        .where('destination', '=', r.name)
        .where('part', '=', part)
        .where('published_at', 'is', null)
        .orderBy('id')
        .limit(this.d.config.batch)
        .execute();
      if (rows.length === 0) return;
      // The routing key or subject from the destination's template as configured now (a corrected
      // template applies to events already waiting).
      const template = r.broker.kind === 'rabbitmq' ? (r.def.routingKey ?? '{type}') : (r.def.subject ?? 'rampart.{type}');
      const items: Outgoing[] = rows.map((x) => ({
        eventId: x.event_id as string,
        type: x.type as string,
        topic: topicOf(template, x.type as string, x.okey as string),
        payload: x.payload as string,
        createdAt: Number(x.created_at),
      }));
      let result: { confirmed: number; error?: Error };
      try {
        result = await r.policy.execute(() => r.broker.publish({ exchange: r.def.exchange, declare: r.def.declare }, items));
      } catch (err) {
        result = { confirmed: 0, error: err as Error };
      }
      if (result.confirmed > 0) {
        const done = rows.slice(0, result.confirmed);
        const now = this.d.clock.now();
        await db
          .updateTable(OUTBOX)
          .set({ published_at: now })
          .where(
            'id',
            'in',
            done.map((x) => x.id),
          )
          .execute();
        this.m.published.inc({ destination: r.name }, done.length);
        for (const x of done) this.m.latency.observe({ destination: r.name }, (now - Number(x.created_at)) / 1000);
      }
      if (result.error) {
        this.m.failures.inc({ destination: r.name });
        r.failures++;
        // Back off with full jitter, up to the breaker's open period (the breaker, shared by the
        // broker's destinations, fails fast meanwhile and lets one trial through after it).
        const delay = Math.random() * Math.min(this.d.config.breakerOpenMs, 200 * 2 ** Math.min(r.failures, 16));
        r.resumeAt = Math.max(r.resumeAt, this.d.clock.now() + delay);
        if (r.failures === 1 || r.failures % 20 === 0) {
          this.d.log.warn(
            { destination: r.name, broker: r.broker.name, failures: r.failures, err: result.error.message },
            'publishing events failed; they stay in the outbox and are retried',
          );
        }
        return;
      }
      if (r.failures > 0) this.d.log.info({ destination: r.name, after_failures: r.failures }, 'publishing events again');
      r.failures = 0;
      if (rows.length < this.d.config.batch) return;
    }
  }

  // --- inbox ----------------------------------------------------------------------------------

  /** An inbound message: remembered by event id and its job enqueued in one transaction; a repeat is only acked. */
  private async receive(consumer: string, m: Incoming): Promise<void> {
    const event = parseInbound(m);
    try {
      const fresh = await this.d.storage.transaction(async (db) => {
        const inserted = await db
          .insertInto(INBOX)
          .values({ consumer, event_id: event.id, received_at: this.d.clock.now() })
          .onConflict((oc) => oc.columns(['consumer', 'event_id']).doNothing())
          .returning('event_id')
          .execute();
        if (inserted.length === 0) return false;
        await this.d.jobsFor(db).enqueue(`${INBOX_JOB}${consumer}`, event);
        return true;
      });
      this.m.consumed.inc({ consumer, outcome: fresh ? 'new' : 'duplicate' });
    } catch (err) {
      this.m.consumed.inc({ consumer, outcome: 'failed' });
      this.d.log.warn(
        { consumer, event: event.id, err: (err as Error).message },
        'inbound event not taken; the broker will deliver it again',
      );
      throw err;
    }
  }

  /** The inbox jobs (one per consumer) and the housekeeping of the outbox and inbox. */
  jobs(): { jobs: Record<string, JobDef>; queues: Record<string, QueueDef>; schedules: Record<string, ScheduleDef> } {
    const jobs: Record<string, JobDef> = {};
    for (const [name, c] of Object.entries(this.d.def?.consume ?? {})) {
      jobs[`${INBOX_JOB}${name}`] = job<InboundEvent>({
        queue: 'rampart.inbox',
        retries: c.retries ?? 5,
        backoff: c.backoff,
        timeoutMs: c.timeoutMs ?? 60_000,
        handler: (event, ctx) => c.handler(event, ctx),
      });
    }
    jobs['rampart.events-sweep'] = job({
      queue: 'rampart.housekeeping',
      retries: 3,
      handler: async () => this.sweep(),
    });
    return {
      jobs,
      queues: { 'rampart.inbox': { concurrency: 10 } },
      schedules: { 'rampart.events-sweep': schedule('17 * * * *', 'rampart.events-sweep') },
    };
  }

  /** Drop published events past their keep time, inbox ids past theirs, and pending events past the bound. */
  async sweep(): Promise<{ published: number; inbox: number; expired: number }> {
    const db = this.d.storage.db;
    const now = this.d.clock.now();
    const published = await db
      .deleteFrom(OUTBOX)
      .where('published_at', 'is not', null)
      .where('published_at', '<', now - this.d.config.keepDays * 86_400_000)
      .executeTakeFirst();
    const inbox = await db
      .deleteFrom(INBOX)
      .where('received_at', '<', now - this.d.config.inboxKeepDays * 86_400_000)
      .executeTakeFirst();
    // Relays gone for a day (killed, never stopped) leave their row behind.
    await db
      .deleteFrom(RELAYS)
      .where('seen_at', '<', now - 86_400_000)
      .execute();
    const cutoff = now - this.d.config.maxPendingHours * 3_600_000;
    const stale = await db
      .selectFrom(OUTBOX)
      .select(['destination', (eb) => eb.fn.countAll().as('n')])
      .where('published_at', 'is', null)
      .where('created_at', '<', cutoff)
      .groupBy('destination')
      .execute();
    let expired = 0;
    for (const s of stale) {
      const n = Number(s.n);
      expired += n;
      this.m.expired.inc({ destination: s.destination as string }, n);
      this.d.log.error(
        { destination: s.destination, events: n, max_pending_hours: this.d.config.maxPendingHours },
        'events waited longer than the outbox keeps them unpublished: dropped',
      );
    }
    if (expired > 0) await db.deleteFrom(OUTBOX).where('published_at', 'is', null).where('created_at', '<', cutoff).execute();
    return { published: Number(published.numDeletedRows), inbox: Number(inbox.numDeletedRows), expired };
  }

  // --- status and replay ----------------------------------------------------------------------

  private async pendingByDestination(): Promise<Array<{ destination: string; n: number; oldest: number | null }>> {
    const now = Date.now();
    if (this.pendingCache && now - this.pendingCache.at < 1000) return this.pendingCache.rows;
    const rows = await this.d.storage.db
      .selectFrom(OUTBOX)
      .select(['destination', (eb) => eb.fn.countAll().as('n'), (eb) => eb.fn.min('created_at').as('oldest')])
      .where('published_at', 'is', null)
      .groupBy('destination')
      .execute();
    const out = rows.map((r) => ({
      destination: r.destination as string,
      n: Number(r.n),
      oldest: r.oldest === null ? null : Number(r.oldest),
    }));
    this.pendingCache = { at: now, rows: out };
    return out;
  }

  /** Events written and not yet confirmed by their broker, at every destination. */
  async pending(): Promise<number> {
    const row = await this.d.storage.db
      .selectFrom(OUTBOX)
      .select((eb) => eb.fn.countAll().as('n'))
      .where('published_at', 'is', null)
      .executeTakeFirst();
    return Number(row?.n ?? 0);
  }

  /** Every destination: pending events, oldest age, published in the last hour, who holds which partition. */
  async status(): Promise<DestinationStatus[]> {
    const db = this.d.storage.db;
    const now = this.d.clock.now();
    this.pendingCache = undefined;
    const pending = new Map((await this.pendingByDestination()).map((p) => [p.destination, p]));
    const recent = await db
      .selectFrom(OUTBOX)
      .select(['destination', (eb) => eb.fn.countAll().as('n')])
      .where('published_at', '>=', now - 3_600_000)
      .groupBy('destination')
      .execute();
    const leases = await db.selectFrom(LEASES).selectAll().execute();
    return this.routes.map((r) => {
      const p = pending.get(r.name);
      return {
        destination: r.name,
        broker: r.broker.name,
        kind: r.broker.kind,
        connected: r.broker.connected(),
        breaker: r.policy.state(),
        pending: p?.n ?? 0,
        oldestPendingS: p?.oldest ? Math.round((now - p.oldest) / 100) / 10 : null,
        publishedLastHour: Number(recent.find((x) => x.destination === r.name)?.n ?? 0),
        partitions: leases
          .filter((l) => l.destination === r.name)
          .sort((a, b) => Number(a.part) - Number(b.part))
          .map((l) => {
            const live = Number(l.expires_at) > now;
            return {
              part: Number(l.part),
              holder: live ? (l.holder as string) : null,
              expiresInMs: live ? Number(l.expires_at) - now : null,
            };
          }),
      };
    });
  }

  /**
   * Publish again the events written in [since, until) (to one destination, or all): they become
   * pending and the relays send them in their order, with their original ids. Only events still
   * kept (RAMPART_EVENTS_KEEP_DAYS) can be replayed.
   */
  async replay(o: { since: number; until?: number; destination?: string }): Promise<number> {
    if (o.destination && !this.routes.some((r) => r.name === o.destination))
      throw new Error(`there is no destination ${JSON.stringify(o.destination)}`);
    let q = this.d.storage.db
      .updateTable(OUTBOX)
      .set({ published_at: null })
      .where('published_at', 'is not', null)
      .where('created_at', '>=', o.since);
    if (o.until !== undefined) q = q.where('created_at', '<', o.until);
    if (o.destination) q = q.where('destination', '=', o.destination);
    const r = await q.executeTakeFirst();
    await this.d.storage.notify(this.d.storage.db, WAKE, '');
    return Number(r.numUpdatedRows);
  }

  /** The destinations' names. */
  destinations(): string[] {
    return this.routes.map((r) => r.name);
  }
}

/** What a consumer's handler gets from a raw message: CloudEvents when it is one, else the JSON or text body. */
export function parseInbound(m: Incoming): InboundEvent {
  const text = m.body.toString('utf8');
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  const ce =
    json && typeof json === 'object' && !Array.isArray(json) && 'specversion' in json ? (json as Record<string, unknown>) : undefined;
  const str = (v: unknown) => (typeof v === 'string' && v !== '' ? v : undefined);
  const id = str(ce?.id) ?? m.messageId ?? createHash('sha256').update(m.body).digest('hex');
  return {
    id,
    type: str(ce?.type),
    source: str(ce?.source),
    subject: str(ce?.subject),
    time: str(ce?.time),
    data: ce ? (ce.data ?? null) : (json ?? text),
    topic: m.topic,
  };
}

/** The outbox tables (system migration 0007). */
export async function createEventTables(db: Kysely<any>, storage: Storage): Promise<void> {
  const int = sql.raw(storage.columnTypes.integer);
  const serial = storage.kind === 'postgres' ? sql.raw('bigserial') : sql.raw('integer');
  await db.schema
    .createTable(OUTBOX)
    .addColumn('id', serial, (c) => c.primaryKey())
    .addColumn('event_id', 'text', (c) => c.notNull())
    .addColumn('destination', 'text', (c) => c.notNull())
    .addColumn('part', 'integer', (c) => c.notNull())
    .addColumn('okey', 'text', (c) => c.notNull())
    .addColumn('type', 'text', (c) => c.notNull())
    .addColumn('payload', 'text', (c) => c.notNull())
    .addColumn('created_at', int, (c) => c.notNull())
    .addColumn('published_at', int)
    .execute();
  // The relay's read: a partition's pending events in order (a partial index stays small).
  await db.schema
    .createIndex('_rampart_outbox_pending')
    .on(OUTBOX)
    .columns(['destination', 'part', 'id'])
    .where(sql.ref('published_at'), 'is', null)
    .execute();
  await db.schema.createIndex('_rampart_outbox_created').on(OUTBOX).column('created_at').execute();
  await db.schema
    .createTable(LEASES)
    .addColumn('destination', 'text', (c) => c.notNull())
    .addColumn('part', 'integer', (c) => c.notNull())
    .addColumn('holder', 'text', (c) => c.notNull())
    .addColumn('expires_at', int, (c) => c.notNull())
    .addPrimaryKeyConstraint('_rampart_outbox_leases_pk', ['destination', 'part'])
    .execute();
  await db.schema
    .createTable(RELAYS)
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('seen_at', int, (c) => c.notNull())
    .execute();
  await db.schema
    .createTable(INBOX)
    .addColumn('consumer', 'text', (c) => c.notNull())
    .addColumn('event_id', 'text', (c) => c.notNull())
    .addColumn('received_at', int, (c) => c.notNull())
    .addPrimaryKeyConstraint('_rampart_inbox_pk', ['consumer', 'event_id'])
    .execute();
  await db.schema.createIndex('_rampart_inbox_received').on(INBOX).column('received_at').execute();
}

export async function dropEventTables(db: Kysely<any>): Promise<void> {
  for (const t of [INBOX, RELAYS, LEASES, OUTBOX]) await db.schema.dropTable(t).ifExists().execute();
}
