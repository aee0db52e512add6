/**
 * Configuration keys of domain events to message brokers (read by config.ts with the others).
 */
import { bool, int, jsonObject, type KeySpec, nonEmpty } from './config-parsers.js';

/** Domain events: brokers, the outbox relay, the inbox. */
export interface EventsConfig {
  /** Broker URLs by name (`amqp://…` for RabbitMQ, `nats://…` for NATS), over the app's declarations. */
  brokers: Record<string, string>;
  /** Run the outbox relay and the inbound consumers where jobs run (`serve` with in-process jobs, `worker`). */
  relay: boolean;
  /** Ordering partitions per destination: one relay publishes a partition at a time, partitions go in parallel. */
  partitions: number;
  /** Events one relay publishes from a partition in one go (then waits for the broker's confirms). */
  batch: number;
  /** How often a relay looks at the outbox when nothing woke it, ms. */
  pollMs: number;
  /** How long a relay's claim on a partition lasts unless renewed, ms (a dead relay's partitions move on after it). */
  leaseMs: number;
  /** How long a publish may wait for the broker's confirm, ms. */
  publishTimeoutMs: number;
  /** How long an open breaker refuses before one trial publish, ms. */
  breakerOpenMs: number;
  /** Days published events stay in the outbox, for `rampart events replay`. */
  keepDays: number;
  /** Hours an unpublished event may wait (a broker down that long): older ones are dropped, logged and counted. */
  maxPendingHours: number;
  /** Days inbound event ids are remembered for deduplication. */
  inboxKeepDays: number;
  /** The CloudEvents `source` of the events this app publishes. */
  source: string;
}

const brokerUrls = (raw: string): Record<string, string> | undefined => {
  const o = jsonObject(raw);
  if (!o) return undefined;
  for (const v of Object.values(o)) if (typeof v !== 'string' || !/^(amqps?|nats|tls):\/\//.test(v)) return undefined;
  return o as Record<string, string>;
};

export const EVENTS_KEYS = {
  RAMPART_BROKERS: {
    expected: 'a JSON object of broker URLs by name: {"rabbit": "amqp://user:pass@host:5672", "nats": "nats://host:4222"}',
    parse: brokerUrls,
    default: {} as Record<string, string>,
    secret: true,
  },
  RAMPART_EVENTS_RELAY: { expected: 'true or false', parse: bool, default: true },
  RAMPART_EVENTS_PARTITIONS: { expected: '1 to 256', parse: int(1, 256), default: 16 },
  RAMPART_EVENTS_BATCH: { expected: '1 to 10000', parse: int(1, 10_000), default: 500 },
  RAMPART_EVENTS_POLL_MS: { expected: 'milliseconds, 10 to 60000', parse: int(10, 60_000), default: 1000 },
  RAMPART_EVENTS_LEASE_MS: { expected: 'milliseconds, 1000 to 600000', parse: int(1000, 600_000), default: 10_000 },
  RAMPART_EVENTS_PUBLISH_TIMEOUT_MS: { expected: 'milliseconds, 100 to 120000', parse: int(100, 120_000), default: 5000 },
  RAMPART_EVENTS_BREAKER_OPEN_MS: { expected: 'milliseconds, 100 to 600000', parse: int(100, 600_000), default: 5000 },
  RAMPART_EVENTS_KEEP_DAYS: { expected: 'days, 0 to 3650', parse: int(0, 3650), default: 7 },
  RAMPART_EVENTS_MAX_PENDING_HOURS: { expected: 'hours, 1 to 87600', parse: int(1, 87_600), default: 168 },
  RAMPART_INBOX_KEEP_DAYS: { expected: 'days, 1 to 3650', parse: int(1, 3650), default: 7 },
  RAMPART_EVENTS_SOURCE: { expected: 'a URI reference', parse: nonEmpty, default: '/rampart' },
} satisfies Record<string, KeySpec<unknown>>;

type V = { [K in keyof typeof EVENTS_KEYS]: (typeof EVENTS_KEYS)[K]['default'] };

export function eventsSlice(v: V): EventsConfig {
  return {
    brokers: v.RAMPART_BROKERS,
    relay: v.RAMPART_EVENTS_RELAY,
    partitions: v.RAMPART_EVENTS_PARTITIONS,
    batch: v.RAMPART_EVENTS_BATCH,
    pollMs: v.RAMPART_EVENTS_POLL_MS,
    leaseMs: v.RAMPART_EVENTS_LEASE_MS,
    publishTimeoutMs: v.RAMPART_EVENTS_PUBLISH_TIMEOUT_MS,
    breakerOpenMs: v.RAMPART_EVENTS_BREAKER_OPEN_MS,
    keepDays: v.RAMPART_EVENTS_KEEP_DAYS,
    maxPendingHours: v.RAMPART_EVENTS_MAX_PENDING_HOURS,
    inboxKeepDays: v.RAMPART_INBOX_KEEP_DAYS,
    source: v.RAMPART_EVENTS_SOURCE,
  };
}
