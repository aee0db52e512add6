/**
 * How an app declares its domain events: the brokers, which events go to which destination, and
 * the consumers of other services' events. Checked once at startup, like jobs and collections.
 *
 * Event types are `<collection>.<action>` for record changes (`created`, `updated`, `deleted`
 * for a soft delete, `restored`, `purged`) and any dotted name for events app code emits
 * (`ctx.emit('billing.invoice-paid', data)` in a hook). Patterns: an exact type, `messages.*`,
 * `*.purged`, or `*`.
 */
import type { JobContext } from '../jobs/define.js';
import { SchemaError } from '../records/schema.js';

/** A broker: RabbitMQ (`amqp://`) or NATS JetStream (`nats://`). `RAMPART_BROKERS` sets or overrides the URL by name. */
export interface BrokerDef {
  /** Connection URL; usually left to `RAMPART_BROKERS` (it holds credentials). */
  url?: string;
  /** NATS: a JetStream stream the relay makes sure exists (created when missing, never changed). */
  stream?: { name: string; subjects: string[] };
}

/** Where a set of events is published. */
export interface PublishDef {
  /** Event type patterns: `messages.created`, `rooms.*`, `*.purged`, `billing.invoice-paid`, `*`. */
  events: string[];
  /** The broker's name. */
  broker: string;
  /** RabbitMQ: the exchange (declared as a durable topic exchange unless `declare` is false). */
  exchange?: string;
  /** RabbitMQ: the routing key, a template over `{type}`, `{collection}`, `{action}`, `{key}` (default `{type}`). */
  routingKey?: string;
  /** NATS: the subject, the same kind of template (default `rampart.{type}`). */
  subject?: string;
  /** Declare the exchange at connect (RabbitMQ; default true). */
  declare?: boolean;
  /** The record field whose value orders events (default `id`: each record's events in commit order). */
  orderingKey?: string;
}

/** An event another service published, as a consumer's handler gets it. */
export interface InboundEvent {
  /** The event's id (CloudEvents `id`, else the message id, else a hash of the body): the deduplication key. */
  id: string;
  /** CloudEvents `type`, when the message is a CloudEvent. */
  type?: string;
  /** CloudEvents `source`. */
  source?: string;
  /** CloudEvents `subject`. */
  subject?: string;
  /** CloudEvents `time`. */
  time?: string;
  /** The event's data: CloudEvents `data`, else the whole JSON body, else the body as text. */
  data: unknown;
  /** Where it came from: the routing key or subject. */
  topic: string;
}

/** A consumer of a broker destination: each event runs `handler` once (a job, with retries and dead-lettering). */
export interface ConsumeDef {
  /** The broker's name. */
  broker: string;
  /** RabbitMQ: the queue (declared durable). */
  queue?: string;
  /** RabbitMQ: bindings of the queue, declared at connect. */
  bindings?: Array<{ exchange: string; routingKey: string }>;
  /** NATS: the stream… */
  stream?: string;
  /** …and the durable consumer's name (created when missing, with explicit acks). */
  consumer?: string;
  /** NATS: only subjects matching this (when the consumer is created). */
  filterSubject?: string;
  /** Messages taken from the broker before their jobs are written (default 100). */
  prefetch?: number;
  /** Attempts of the handler after the first before the event is dead-lettered (default 5). */
  retries?: number;
  /** Backoff between attempts. */
  backoff?: { baseMs?: number; capMs?: number };
  /** Time one attempt may take, ms (default 60000). */
  timeoutMs?: number;
  /** Handles one event; a throw is retried. */
  handler(event: InboundEvent, ctx: JobContext): Promise<unknown> | unknown;
}

/** The `events` part of an app. */
export interface EventsDef {
  brokers?: Record<string, BrokerDef>;
  /** Destinations by name (the name labels metrics and the CLI). */
  publish?: Record<string, PublishDef>;
  /** Consumers by name (the name is the inbox's and the job's). */
  consume?: Record<string, ConsumeDef>;
}

export type BrokerKind = 'rabbitmq' | 'nats';

export function brokerKind(url: string): BrokerKind {
  return /^amqps?:/.test(url) ? 'rabbitmq' : 'nats';
}

const NAME = /^[a-z][a-z0-9_-]{0,62}$/i;
const TYPE = /^[a-z0-9][a-z0-9_-]*(\.[a-z0-9][a-z0-9_-]*)+$/i;

/** Whether an event type matches a pattern. */
export function typeMatches(pattern: string, type: string): boolean {
  if (pattern === '*' || pattern === type) return true;
  const dot = type.indexOf('.');
  const head = type.slice(0, dot);
  const tail = type.slice(dot + 1);
  return pattern === `${head}.*` || pattern === `*.${tail}`;
}

/** Whether a custom event's type is well formed (dotted words). */
export function validType(type: string): boolean {
  return TYPE.test(type) && type.length <= 200;
}

/** Fill a destination template for an event of `type` (`collection.action`) with ordering key `key`. */
export function topicOf(template: string, type: string, key: string): string {
  const dot = type.indexOf('.');
  const v: Record<string, string> = { type, collection: type.slice(0, dot), action: type.slice(dot + 1), key };
  return template.replace(/\{(type|collection|action|key)\}/g, (_, k: string) => v[k] ?? '');
}

/** The brokers' URLs, configuration over declarations; every name a route or consumer uses must have one. */
export function checkEvents(def: EventsDef | undefined, configured: Record<string, string>): Record<string, string> {
  const urls: Record<string, string> = {};
  for (const [name, b] of Object.entries(def?.brokers ?? {})) {
    if (!NAME.test(name)) throw new SchemaError(`events.brokers: ${JSON.stringify(name)} is not a valid name`);
    if (b.url) urls[name] = b.url;
  }
  Object.assign(urls, configured);
  const need = (where: string, broker: string, kind?: BrokerKind) => {
    const url = urls[broker];
    if (!url)
      throw new SchemaError(
        `${where}: broker ${JSON.stringify(broker)} has no URL (declare it under events.brokers or in RAMPART_BROKERS)`,
      );
    if (kind && brokerKind(url) !== kind) throw new SchemaError(`${where}: broker ${JSON.stringify(broker)} is not ${kind}`);
    return brokerKind(url);
  };
  for (const [name, p] of Object.entries(def?.publish ?? {})) {
    const where = `events.publish.${name}`;
    if (!NAME.test(name)) throw new SchemaError(`${where}: not a valid destination name`);
    if (!Array.isArray(p.events) || p.events.length === 0) throw new SchemaError(`${where}: events must list event types or patterns`);
    for (const e of p.events) {
      if (e !== '*' && !/^(\*|[a-z0-9][a-z0-9_-]*)\.(\*|[a-z0-9][a-z0-9_.-]*)$/i.test(e)) {
        throw new SchemaError(`${where}: ${JSON.stringify(e)} is not an event type or pattern`);
      }
    }
    const kind = need(where, p.broker);
    if (kind === 'rabbitmq' && !p.exchange) throw new SchemaError(`${where}: a RabbitMQ destination needs an exchange`);
    if (kind === 'nats' && p.exchange) throw new SchemaError(`${where}: NATS destinations have a subject, not an exchange`);
    if (p.orderingKey !== undefined && !/^[a-z_][a-z0-9_]*$/i.test(p.orderingKey))
      throw new SchemaError(`${where}: orderingKey must be a field name`);
  }
  for (const [name, c] of Object.entries(def?.consume ?? {})) {
    const where = `events.consume.${name}`;
    if (!NAME.test(name)) throw new SchemaError(`${where}: not a valid consumer name`);
    if (typeof c.handler !== 'function') throw new SchemaError(`${where}: handler must be a function`);
    const kind = need(where, c.broker);
    if (kind === 'rabbitmq' && !c.queue) throw new SchemaError(`${where}: a RabbitMQ consumer needs a queue`);
    if (kind === 'nats' && !(c.stream && c.consumer)) throw new SchemaError(`${where}: a NATS consumer needs a stream and a consumer name`);
  }
  return urls;
}
