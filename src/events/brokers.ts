/**
 * The two brokers behind one small interface: publish a batch in order and learn how much of it
 * the broker took (RabbitMQ publisher confirms; JetStream acks), and consume a destination with an
 * ack after the message was handled. Connections are made on first use and again after a loss;
 * consumers come back by themselves (jittered backoff) once the broker answers again.
 */
import amqp from 'amqplib';
import { AckPolicy, type ConsumerMessages, type JsMsg, type NatsConnection, connect as natsConnect, headers as natsHeaders } from 'nats';
import type { Logger } from 'pino';
import type { BrokerDef, BrokerKind } from './declare.js';

/** One event to publish. */
export interface Outgoing {
  eventId: string;
  type: string;
  topic: string;
  payload: string;
  createdAt: number;
}

/** A message taken from a broker. */
export interface Incoming {
  body: Buffer;
  topic: string;
  /** The broker's message id (AMQP message-id, `Nats-Msg-Id`), if any. */
  messageId?: string;
  /** Times the broker delivered it before. */
  redelivered: boolean;
}

/** What a consumer's messages are handed to; a throw leaves the message with the broker (redelivered later). */
export type IncomingHandler = (m: Incoming) => Promise<void>;

export interface ConsumeTarget {
  queue?: string;
  bindings?: Array<{ exchange: string; routingKey: string }>;
  stream?: string;
  consumer?: string;
  filterSubject?: string;
  prefetch: number;
}

export interface BrokerClient {
  readonly kind: BrokerKind;
  readonly name: string;
  /**
   * Publish in order to `exchange` (RabbitMQ) or the rows' subjects (NATS). Resolves to how many
   * leading events the broker confirmed and, when that is not all, why the rest were not.
   */
  publish(target: { exchange?: string; declare?: boolean }, items: Outgoing[]): Promise<{ confirmed: number; error?: Error }>;
  /** Consume until `close`; reconnects by itself. */
  consume(name: string, target: ConsumeTarget, handle: IncomingHandler): void;
  /** Connected right now (for status and metrics). */
  connected(): boolean;
  close(): Promise<void>;
}

export interface BrokerOptions {
  name: string;
  url: string;
  def: BrokerDef;
  timeoutMs: number;
  log: Logger;
}

export function brokerClient(kind: BrokerKind, o: BrokerOptions): BrokerClient {
  return kind === 'rabbitmq' ? new RabbitClient(o) : new NatsClient(o);
}

/** Settle within `ms` or reject with a timeout. */
function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** Leading successes of settled results, and the first failure after them. */
function leading(results: Array<Error | null>): { confirmed: number; error?: Error } {
  const firstBad = results.findIndex((r) => r !== null);
  return firstBad === -1 ? { confirmed: results.length } : { confirmed: firstBad, error: results[firstBad] ?? undefined };
}

const backoffMs = (attempt: number) => Math.min(30_000, 250 * 2 ** Math.min(attempt, 7)) * (0.5 + Math.random() * 0.5);

class RabbitClient implements BrokerClient {
  readonly kind = 'rabbitmq' as const;
  readonly name: string;
  private conn?: amqp.ChannelModel;
  private pub?: { ch: amqp.ConfirmChannel; closed: Promise<Error>; drained?: Promise<unknown> };
  private opening?: Promise<amqp.ChannelModel>;
  private readonly declared = new Set<string>();
  private readonly consumers: Array<{ name: string; target: ConsumeTarget; handle: IncomingHandler; attempt: number }> = [];
  private closed = false;
  private retryTimer?: NodeJS.Timeout;

  constructor(private readonly o: BrokerOptions) {
    this.name = o.name;
  }

  connected(): boolean {
    return this.conn !== undefined;
  }

  private connection(): Promise<amqp.ChannelModel> {
    if (this.conn) return Promise.resolve(this.conn);
    this.opening ??= (async () => {
      const c = await amqp.connect(this.o.url, {
        timeout: this.o.timeoutMs,
        clientProperties: { connection_name: `rampart ${this.name}` },
      });
      c.on('error', (err: Error) => this.o.log.warn({ broker: this.name, err: err.message }, 'broker connection error'));
      c.on('close', () => {
        if (this.conn !== c) return;
        this.conn = undefined;
        this.pub = undefined;
        this.declared.clear();
        if (!this.closed) {
          this.o.log.warn({ broker: this.name }, 'broker connection lost');
          this.scheduleConsumers();
        }
      });
      this.conn = c;
      return c;
    })().finally(() => {
      this.opening = undefined;
    });
    return this.opening;
  }

  /** The publishing channel, with one promise for its closing that every publish in flight shares. */
  private async channel(): Promise<NonNullable<RabbitClient['pub']>> {
    if (this.pub) return this.pub;
    const conn = await this.connection();
    const ch = await conn.createConfirmChannel();
    ch.on('error', (err: Error) => this.o.log.warn({ broker: this.name, err: err.message }, 'broker channel error'));
    const closed = new Promise<Error>((resolve) =>
      ch.once('close', () => {
        if (this.pub?.ch === ch) this.pub = undefined;
        this.declared.clear();
        resolve(new Error('the broker channel closed'));
      }),
    );
    this.pub = { ch, closed };
    return this.pub;
  }

  async publish(target: { exchange?: string; declare?: boolean }, items: Outgoing[]): Promise<{ confirmed: number; error?: Error }> {
    const exchange = target.exchange as string;
    const pub = await within(this.channel(), this.o.timeoutMs, `connecting to ${this.name}`);
    const { ch } = pub;
    if (target.declare !== false && !this.declared.has(exchange)) {
      await within(ch.assertExchange(exchange, 'topic', { durable: true }), this.o.timeoutMs, `declaring ${exchange}`);
      this.declared.add(exchange);
    }
    const confirms: Array<Promise<Error | null>> = [];
    for (const e of items) {
      let room = true;
      confirms.push(
        new Promise((resolve) => {
          room = ch.publish(
            exchange,
            e.topic,
            Buffer.from(e.payload),
            {
              persistent: true,
              messageId: e.eventId,
              type: e.type,
              contentType: 'application/cloudevents+json',
              timestamp: Math.floor(e.createdAt / 1000),
              appId: 'rampart',
            },
            (err) => resolve(err ? new Error(`the broker refused the event (${String(err?.message ?? err)})`) : null),
          );
        }),
      );
      if (!room) {
        // The socket's buffer is full: wait for it to drain (one wait shared by every publisher), or the channel to close.
        pub.drained ??= new Promise((resolve) => ch.once('drain', resolve)).finally(() => {
          pub.drained = undefined;
        });
        if ((await Promise.race([pub.drained.then(() => null), pub.closed])) !== null) break;
      }
    }
    const results = await within(Promise.all(confirms), this.o.timeoutMs, `confirms from ${this.name}`).catch((err: Error) =>
      items.map(() => err),
    );
    return leading(results.length < items.length ? [...results, new Error('the broker channel closed')] : results);
  }

  consume(name: string, target: ConsumeTarget, handle: IncomingHandler): void {
    const c = { name, target, handle, attempt: 0 };
    this.consumers.push(c);
    void this.startConsumer(c);
  }

  private scheduleConsumers(): void {
    if (this.consumers.length === 0 || this.retryTimer || this.closed) return;
    const attempt = Math.max(...this.consumers.map((c) => c.attempt));
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      for (const c of this.consumers) void this.startConsumer(c);
    }, backoffMs(attempt));
    this.retryTimer.unref();
  }

  private async startConsumer(c: (typeof this.consumers)[number]): Promise<void> {
    if (this.closed) return;
    try {
      const conn = await this.connection();
      const ch = await conn.createChannel();
      ch.on('error', (err: Error) => this.o.log.warn({ broker: this.name, consumer: c.name, err: err.message }, 'consumer channel error'));
      const queue = c.target.queue as string;
      await ch.assertQueue(queue, { durable: true });
      for (const b of c.target.bindings ?? []) {
        await ch.assertExchange(b.exchange, 'topic', { durable: true });
        await ch.bindQueue(queue, b.exchange, b.routingKey);
      }
      await ch.prefetch(c.target.prefetch);
      await ch.consume(queue, (msg) => {
        if (!msg) return;
        c.handle({
          body: msg.content,
          topic: msg.fields.routingKey,
          messageId: typeof msg.properties.messageId === 'string' ? msg.properties.messageId : undefined,
          redelivered: msg.fields.redelivered,
        }).then(
          () => ch.ack(msg),
          // Not taken: the broker keeps it and hands it out again after a pause.
          () => setTimeout(() => ch.nack(msg, false, true), 1000).unref(),
        );
      });
      c.attempt = 0;
      this.o.log.info({ broker: this.name, consumer: c.name, queue }, 'consuming');
    } catch (err) {
      c.attempt++;
      this.o.log.warn({ broker: this.name, consumer: c.name, err: (err as Error).message }, 'consumer could not start; retrying');
      this.scheduleConsumers();
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.retryTimer);
    const c = this.conn;
    this.conn = undefined;
    await c?.close().catch(() => {});
  }
}

class NatsClient implements BrokerClient {
  readonly kind = 'nats' as const;
  readonly name: string;
  private nc?: NatsConnection;
  private opening?: Promise<NatsConnection>;
  private streamReady = false;
  private closed = false;
  private readonly running: ConsumerMessages[] = [];

  constructor(private readonly o: BrokerOptions) {
    this.name = o.name;
  }

  connected(): boolean {
    return this.nc !== undefined && !this.nc.isClosed() && this.up;
  }

  private up = false;

  private connection(): Promise<NatsConnection> {
    if (this.nc && !this.nc.isClosed()) return Promise.resolve(this.nc);
    this.opening ??= (async () => {
      const servers: string[] = [];
      let user: string | undefined;
      let pass: string | undefined;
      for (const part of this.o.url.split(',')) {
        const u = new URL(part.trim());
        if (u.username) user = decodeURIComponent(u.username);
        if (u.password) pass = decodeURIComponent(u.password);
        servers.push(`${u.hostname}:${u.port || '4222'}`);
      }
      const nc = await natsConnect({
        servers,
        user,
        pass,
        name: `rampart ${this.name}`,
        timeout: this.o.timeoutMs,
        maxReconnectAttempts: -1,
        reconnectTimeWait: 500,
        reconnectJitter: 500,
      });
      this.up = true;
      void (async () => {
        for await (const s of nc.status()) {
          if (s.type === 'disconnect') {
            this.up = false;
            this.o.log.warn({ broker: this.name }, 'broker connection lost');
          } else if (s.type === 'reconnect') {
            this.up = true;
            this.o.log.info({ broker: this.name }, 'broker connection back');
          }
        }
      })().catch(() => {});
      this.nc = nc;
      return nc;
    })().finally(() => {
      this.opening = undefined;
    });
    return this.opening;
  }

  private async ensureStream(nc: NatsConnection): Promise<void> {
    const s = this.o.def.stream;
    if (!s || this.streamReady) return;
    const jsm = await nc.jetstreamManager({ timeout: this.o.timeoutMs });
    try {
      await jsm.streams.info(s.name);
    } catch {
      await jsm.streams.add({ name: s.name, subjects: s.subjects });
      this.o.log.info({ broker: this.name, stream: s.name, subjects: s.subjects }, 'stream created');
    }
    this.streamReady = true;
  }

  async publish(_target: unknown, items: Outgoing[]): Promise<{ confirmed: number; error?: Error }> {
    const nc = await within(this.connection(), this.o.timeoutMs, `connecting to ${this.name}`);
    await within(this.ensureStream(nc), this.o.timeoutMs, `stream on ${this.name}`);
    const js = nc.jetstream({ timeout: this.o.timeoutMs });
    // Sent in order on one connection; each is acked once stored (a resent id within the stream's
    // duplicate window is recognised and stored once).
    const acks = items.map((e) => {
      const h = natsHeaders();
      h.set('Content-Type', 'application/cloudevents+json');
      h.set('Rampart-Event-Type', e.type);
      return js.publish(e.topic, Buffer.from(e.payload), { msgID: e.eventId, headers: h, timeout: this.o.timeoutMs }).then(
        () => null,
        (err: Error) => new Error(`JetStream did not store the event (${err.message})`),
      );
    });
    return leading(await Promise.all(acks));
  }

  consume(name: string, target: ConsumeTarget, handle: IncomingHandler): void {
    void (async () => {
      let attempt = 0;
      while (!this.closed) {
        try {
          const nc = await this.connection();
          const jsm = await nc.jetstreamManager({ timeout: this.o.timeoutMs });
          const stream = target.stream as string;
          const durable = target.consumer as string;
          try {
            await jsm.consumers.info(stream, durable);
          } catch {
            await jsm.consumers.add(stream, {
              durable_name: durable,
              ack_policy: AckPolicy.Explicit,
              ack_wait: 30_000_000_000,
              ...(target.filterSubject ? { filter_subject: target.filterSubject } : {}),
            });
          }
          const c = await nc.jetstream().consumers.get(stream, durable);
          const messages = await c.consume({ max_messages: target.prefetch });
          this.running.push(messages);
          this.o.log.info({ broker: this.name, consumer: name, stream, durable }, 'consuming');
          attempt = 0;
          const inFlight = new Set<Promise<void>>();
          for await (const m of messages) {
            const p = this.handleOne(m, handle).finally(() => inFlight.delete(p));
            inFlight.add(p);
            if (inFlight.size >= target.prefetch) await Promise.race(inFlight);
          }
        } catch (err) {
          if (this.closed) return;
          this.o.log.warn({ broker: this.name, consumer: name, err: (err as Error).message }, 'consumer stopped; retrying');
        }
        await new Promise((r) => setTimeout(r, backoffMs(attempt++)).unref());
      }
    })();
  }

  private async handleOne(m: JsMsg, handle: IncomingHandler): Promise<void> {
    try {
      await handle({
        body: Buffer.from(m.data),
        topic: m.subject,
        messageId: m.headers?.get('Nats-Msg-Id') || undefined,
        redelivered: m.redelivered,
      });
      m.ack();
    } catch {
      m.nak(1000);
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const m of this.running) m.stop();
    const nc = this.nc;
    this.nc = undefined;
    await nc?.drain().catch(() => nc.close());
  }
}
